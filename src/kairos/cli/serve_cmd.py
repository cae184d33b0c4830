"""`kairos serve`: run the real engine behind an OpenAI-compatible HTTP server."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from kairos.cli.overrides import parse_options
from kairos.cli.plugins import plugins_epilog
from kairos.engine.policies import POLICIES
from kairos.errors import KairosError
from kairos.predict import PREDICTORS

_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 1 << 10, "mi": 1 << 20, "gi": 1 << 30}


def register(app: typer.Typer) -> None:
    """Add the `serve` command to the kairos app."""
    app.command(epilog=plugins_epilog(("--policy", POLICIES), ("--predictor", PREDICTORS)))(serve)


def serve(
    model: Annotated[str, typer.Option(help="tiny, small or medium (random-init presets with a byte tokenizer), or a local Hugging Face model directory.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    device: Annotated[str, typer.Option(help="Torch device: cpu, cuda, cuda:1.")] = "cpu",
    dtype: Annotated[str, typer.Option(help="Weights and activations: auto (float32 on CPU, the checkpoint's half type on GPU), float32, or bfloat16 (on a CPU only with native bfloat16: AVX512-BF16 or AMX).")] = "auto",
    attention: Annotated[str, typer.Option(help="Attention kernels: native (C++ varlen kernels over the paged pool, CPU float32, built with the system C++ compiler on first use), sdpa (torch SDPA over padded groups), or auto (native where it builds and applies, else sdpa).")] = "auto",
    block_size: Annotated[int, typer.Option(min=1, help="Tokens per KV cache block.")] = 16,
    num_blocks: Annotated[int | None, typer.Option(min=1, help="KV cache blocks (default: as many as --kv-cache-memory buys).")] = None,
    kv_cache_memory: Annotated[str | None, typer.Option(help="KV cache size in bytes, e.g. 268435456 or 256MiB (default: 256 MiB on CPU, most free memory on GPU).")] = None,
    max_num_seqs: Annotated[int, typer.Option(min=1, help="Most requests running at once.")] = 256,
    max_num_batched_tokens: Annotated[int, typer.Option(min=1, help="Token budget per engine step.")] = 2048,
    prefix_caching: Annotated[bool, typer.Option("--prefix-caching/--no-prefix-caching", help="Reuse the KV blocks of shared prompt prefixes.")] = True,
    policy: Annotated[str, typer.Option(help=f"Scheduling policy: {POLICIES.choices()} (see below; `kairos policies`).")] = "fcfs",
    policy_option: Annotated[list[str] | None, typer.Option(metavar="KEY=VALUE", help="A knob of the policy, KEY=VALUE (short_tokens=512). Repeatable.")] = None,
    predictor: Annotated[str | None, typer.Option(help=f"Output-length predictor: {PREDICTORS.choices()} (default: histogram for policies that need one; oracle predicts each request's max_tokens).")] = None,
    predictor_option: Annotated[list[str] | None, typer.Option(metavar="KEY=VALUE", help="A knob of the predictor, KEY=VALUE (quantile=0.9). Repeatable.")] = None,
    max_waiting: Annotated[int, typer.Option(min=1, help="Requests allowed to wait; more are refused with HTTP 429.")] = 1024,
    seed: Annotated[int, typer.Option(help="Seed of the preset's random weights and of sampling without a request seed.")] = 0,
    served_model_name: Annotated[str | None, typer.Option(help="Model name clients send and /v1/models lists (default: --model).")] = None,
    engine_process: Annotated[bool, typer.Option("--engine-process/--no-engine-process", help="Run the engine in a process of its own (as vLLM V1 does), so HTTP work never stalls a step; --no-engine-process runs it on a thread of the server.")] = True,
    threads: Annotated[int | None, typer.Option(min=1, help="Torch threads of the engine (default: torch's, usually one per core).")] = None,
    busy_poll_ms: Annotated[float, typer.Option(min=0, help="Milliseconds an idle engine keeps polling for work before it sleeps: steady step times (a sleeping CPU, above all a virtual one, wakes slow) for a core spent while idle.")] = 0.0,
    engine_cpus: Annotated[str | None, typer.Option(help="Pin the engine process to these CPUs, e.g. 1 or 2-3 (Linux): the HTTP side and other programs then no longer preempt its steps; start the server under `taskset` to keep them off these CPUs.")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="KAIROS_API_KEY", show_envvar=False, help="Require this key as `Authorization: Bearer KEY` on every /v1 route, as vLLM's --api-key does (401 without it); /health, /metrics and /kairos/* stay open (default: $KAIROS_API_KEY, else none).")] = None,
    reference_step_ms: Annotated[float, typer.Option(min=0, help="Time a fixed reference step of the model at most this often while idle, and every 2 times that between two steps of a busy spell (milliseconds; 0: never), and log it with every step: the machine's speed, which `kairos calibrate --url` and `kairos validate` correct for. Pair it with --busy-poll-ms.")] = 0.0,
) -> None:
    """Serve a model over an OpenAI-compatible API (completions, chat, /metrics, /kairos/engine)."""
    if num_blocks is not None and kv_cache_memory is not None:
        raise KairosError("give --num-blocks or --kv-cache-memory, not both")
    policy = POLICIES.canonical(policy)
    policy_options = tuple(sorted(parse_options(policy_option or [], "--policy-option").items()))
    predictor = None if predictor is None else PREDICTORS.canonical(predictor)
    predictor_options = tuple(sorted(parse_options(predictor_option or [], "--predictor-option").items()))
    if attention not in ("auto", "native", "sdpa"):
        raise KairosError(f"unknown --attention '{attention}': use auto, native or sdpa")
    try:
        from kairos.serve.cpu_affinity import parse_cpu_list
        from kairos.serve.runner import RunnerConfig
        from kairos.serve.server import ServeConfig, run_server
    except ImportError as exc:
        raise KairosError(f"kairos serve needs the engine extra ({exc.name} is missing): "
                          "pip install 'kairos[engine]'") from None
    runner = RunnerConfig(block_size=block_size, num_blocks=num_blocks,
                          kv_cache_memory=None if kv_cache_memory is None else parse_bytes(kv_cache_memory),
                          enable_prefix_caching=prefix_caching, max_num_seqs=max_num_seqs,
                          max_num_batched_tokens=max_num_batched_tokens, policy=policy,
                          policy_options=policy_options, predictor=predictor, predictor_options=predictor_options,
                          seed=seed, attention=attention)
    run_server(ServeConfig(model=model, served_model_name=served_model_name, device=device, dtype=dtype, seed=seed,
                           runner=runner, max_waiting=max_waiting, host=host, port=port,
                           engine_process=engine_process, threads=threads, busy_poll_s=busy_poll_ms / 1e3,
                           reference_every_s=reference_step_ms / 1e3, api_key=api_key or None,
                           engine_cpus=None if engine_cpus is None else parse_cpu_list(engine_cpus)))


def parse_bytes(text: str) -> int:
    """'268435456', '256MiB', '2G' -> bytes (KiB/MiB/GiB are powers of 2, K/M/G of 10)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]i?)?b?\s*", text.lower())
    if match is None:
        raise KairosError(f"--kv-cache-memory: cannot read '{text}' as bytes (e.g. 268435456, 256MiB, 2GiB)")
    value = int(float(match.group(1)) * _UNITS[match.group(2) or ""])
    if value <= 0:
        raise KairosError("--kv-cache-memory must be positive")
    return value
