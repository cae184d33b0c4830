"""`kairos bench`: load an OpenAI-compatible server with a workload and measure every request."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from kairos.bench import PROMPT_FORMATS, BenchOptions, EngineFacts, run_bench
from kairos.bench.results import device_name
from kairos.bench.runner import DEFAULT_TIMEOUT_S
from kairos.cli.overrides import parse_set, workload_override
from kairos.cli.consoles import err, out
from kairos.cli.progress import LazyProgress
from kairos.errors import KairosError
from kairos.metrics import render_summary
from kairos.scenario.load import load_scenario

# Scenario sections that mean something to a benchmark; the engine is the server's.
BENCH_SECTIONS = ("workload", "slo", "seed")


def register(app: typer.Typer) -> None:
    """Add the `bench` command to the kairos app."""
    app.command()(bench)


def bench(
    url: Annotated[str, typer.Option(help="Server base URL, e.g. http://localhost:8000 (a trailing /v1 is fine).")],
    scenario: Annotated[Path | None, typer.Argument(help="Scenario YAML; only its workload, slo and seed sections are used. Default: the built-in scenario's.")] = None,
    model: Annotated[str | None, typer.Option(help="Model name sent in each request. Default: the first id of GET /v1/models.")] = None,
    workload: Annotated[str | None, typer.Option(help="'synthetic' or 'trace:PATH' (Azure CSV, Mooncake JSONL, BurstGPT CSV, Kairos JSONL).")] = None,
    rate: Annotated[float | None, typer.Option(help="Synthetic arrival rate, requests (or sessions) per second.")] = None,
    num_requests: Annotated[int | None, typer.Option(help="Number of requests (a trace's first N arrivals).")] = None,
    time_scale: Annotated[float | None, typer.Option(help="Replay a trace k times faster.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (workload and prompt tokens).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="A workload.*, slo.* or seed field, KEY=VALUE (workload.output_len=128). Repeatable.")] = None,
    prompt_format: Annotated[str, typer.Option(help="token-ids (exact lengths; vLLM, SGLang, kairos serve) or text (about N words, for servers that take only text).")] = "token-ids",
    vocab_size: Annotated[int, typer.Option(help="Prompt token ids stay below this (and above vocab-size/32, where special tokens often sit).")] = 32000,
    concurrency: Annotated[int | None, typer.Option("--concurrency", "--max-concurrency", help="Closed loop: at most C requests in flight, each end sending the next due, as vllm bench --max-concurrency (whose name works too); sets workload.concurrency. Default: the scenario's (none: open loop).")] = None,
    timeout: Annotated[float, typer.Option(min=0.001, help="Per-request timeout in seconds; a request past it is recorded as failed.")] = DEFAULT_TIMEOUT_S,
    exact_lengths: Annotated[bool, typer.Option("--exact-lengths/--no-exact-lengths", help="Ask for exactly the workload's output length (ignore_eos, min_tokens); turn off for servers that reject those fields.")] = True,
    api_key: Annotated[str | None, typer.Option(envvar="OPENAI_API_KEY", show_envvar=False, help="Bearer token for the server (default: $OPENAI_API_KEY).")] = None,
    max_num_seqs: Annotated[int | None, typer.Option(help="Record the server's max_num_seqs in meta.json.")] = None,
    max_num_batched_tokens: Annotated[int | None, typer.Option(help="Record the server's max_num_batched_tokens in meta.json.")] = None,
    tp: Annotated[int | None, typer.Option(help="Record the server's tensor-parallel size in meta.json.")] = None,
    block_size: Annotated[int | None, typer.Option(help="Record the server's KV block size in meta.json.")] = None,
    num_gpu_blocks: Annotated[int | None, typer.Option(help="Record the server's KV block count in meta.json.")] = None,
    prefix_caching: Annotated[bool | None, typer.Option("--prefix-caching/--no-prefix-caching", help="Record whether the server caches prefixes in meta.json.")] = None,
    gpu: Annotated[str | None, typer.Option(help="Record the server's GPU in meta.json: a catalog name (`kairos gpus`) or the device name CUDA reports.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Run directory: meta.json, requests.jsonl, report.json, requests.csv.")] = None,
    warm_up: Annotated[bool, typer.Option("--warm-up/--no-warm-up", help="Before measuring, run the server through every step size: a prompt of each length up to --max-num-batched-tokens alone, then bursts of 1 to --max-num-seqs requests, so that kernels an engine builds per shape (vLLM on CPU) exist before the run. Needs those two options (a Kairos server reports them).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No table, no progress bar.")] = False,
) -> None:
    """Benchmark an OpenAI-compatible server (Kairos, vLLM, SGLang) with a workload."""
    overrides: dict[str, Any] = {}
    for key, value in (("workload.rate", rate), ("workload.num_requests", num_requests),
                       ("workload.concurrency", concurrency), ("workload.time_scale", time_scale),
                       ("seed", seed)):
        if value is not None:
            overrides[key] = value
    if workload is not None:
        overrides.update(workload_override(workload))
    extra = parse_set(set_ or [])
    for key in extra:
        if key.split(".")[0] not in BENCH_SECTIONS:
            raise KairosError(f"--set {key}: bench reads only workload.*, slo.* and seed;"
                              " the engine is whatever the server runs")
    overrides.update(extra)
    if prompt_format not in PROMPT_FORMATS:
        raise KairosError(f"--prompt-format must be one of {', '.join(PROMPT_FORMATS)},"
                          f" got '{prompt_format}'")
    spec = load_scenario(scenario, overrides)
    if spec.workload.kind == "trace" and rate is not None:
        raise KairosError("--rate applies to synthetic workloads; replay a trace faster with --time-scale")

    options = BenchOptions(
        url=url, model=model, prompt_format=prompt_format,  # type: ignore[arg-type]
        vocab_size=vocab_size, timeout_s=timeout,
        exact_lengths=exact_lengths, api_key=api_key, warm_up=warm_up,
        engine=EngineFacts(max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens,
                           tensor_parallel_size=tp, block_size=block_size,
                           num_gpu_blocks=num_gpu_blocks, enable_prefix_caching=prefix_caching,
                           device_name=None if gpu is None else device_name(gpu)),
    )
    warming = LazyProgress("warming up", err, enabled=not quiet)

    def warm_progress(done: int, total: int) -> None:
        warming(done, total)
        if done == total:
            warming.close()  # one live display at a time: the benchmark's bar comes next

    with warming, LazyProgress("benchmarking", err, enabled=not quiet) as progress:
        run = run_bench(spec, options, progress=progress, warm_progress=warm_progress,
                        warn=lambda m: err.print(f"warning: {m}", markup=False))
    info = run.report["bench"]
    if not quiet:
        out.print(f"[bold]{info['model']}[/] at {info['url']}, {len(run.lines):,} requests,"
                  f" {spec.workload.kind} workload, {info['prompt_format']} prompts")
        out.print(render_summary(run.report))
    if info["failed"]:
        kinds = ", ".join(f"{n} {kind}" for kind, n in info["failures"].items())
        err.print(f"[red]{info['failed']:,} of {len(run.lines):,} requests failed:[/] {kinds}")
    if info["short_outputs"]:
        err.print(f"warning: {info['short_outputs']:,} requests got fewer output tokens than"
                  " asked (does the server honour ignore_eos and min_tokens?)")
    if output is not None:
        run.write(output)
        out.print(f"wrote {output}/ (meta.json, requests.jsonl, report.json, requests.csv)", markup=False)
