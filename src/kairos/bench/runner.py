"""One benchmark end to end: build the workload, probe the server, send the load, collect."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kairos.bench.client import (
    CompletionClient,
    ServerInfo,
    class_headers,
    completion_body,
    normalize_url,
    raise_open_file_limit,
)
from kairos.bench.engine_steps import ENGINE_PATH, STEPS_COUNT_PATH, STEPS_FILE, STEPS_PATH, write_engine_steps
from kairos.bench.loadgen import LoadRun, generate_load
from kairos.bench.prompts import DEFAULT_VOCAB_SIZE, PromptBuilder, PromptFormat
from kairos.bench.results import (
    EngineFacts,
    build_bench_report,
    build_meta,
    request_lines,
)
from kairos.bench.run_format import RequestLine, write_measured_run
from kairos.bench.server_counters import ServerCounters, engine_phases, run_counters
from kairos.bench.stream import StreamResult
from kairos.bench.warmup import WarmUpPlan, warm_up
from kairos.errors import KairosError
from kairos.metrics import RequestRecord, write_report
from kairos.scenario.schema import Scenario
from kairos.workload import RequestSpec, build_workload
from kairos.workload.spec import SLO, Span

DEFAULT_TIMEOUT_S = 600.0
ProgressFn = Callable[[int, int], None]
# How long to wait for the server to log the run's last steps.
STEP_LOG_WAIT_S = 2.0


@dataclass(frozen=True, slots=True)
class BenchOptions:
    """How to load a server: where it is, what to send, and what is known of its engine."""

    url: str
    model: str | None = None  # None: the first model the server lists
    prompt_format: PromptFormat = "token-ids"
    vocab_size: int = DEFAULT_VOCAB_SIZE
    timeout_s: float = DEFAULT_TIMEOUT_S
    exact_lengths: bool = True  # ask for exactly output_len tokens (ignore_eos, min_tokens)
    warm_up: bool = False  # run the server through every step size first (kairos.bench.warmup)
    api_key: str | None = None
    engine: EngineFacts = field(default_factory=EngineFacts)


@dataclass(frozen=True, slots=True)
class BenchRun:
    """A finished benchmark: the run files' content, the report and its records.

    `steps` is the server's step log over the run (`kairos serve` only; else empty).
    """

    meta: dict[str, Any]
    lines: list[RequestLine]
    report: dict[str, Any]
    records: list[RequestRecord]
    shared: dict[str, tuple[Span, ...]] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)

    def write(self, run_dir: str | Path) -> list[Path]:
        """meta.json, requests.jsonl (and shared_spans.jsonl, engine_steps.jsonl), report.json and
        requests.csv under `run_dir`."""
        paths = write_measured_run(run_dir, self.meta, self.lines, self.shared)
        steps_path = write_engine_steps(run_dir, self.steps)
        return [*paths, *([steps_path] if steps_path else []), *write_report(run_dir, self.report, self.records)]


def run_bench(scenario: Scenario, options: BenchOptions, *, progress: ProgressFn | None = None,
              warn: Callable[[str], None] | None = None, warm_progress: ProgressFn | None = None) -> BenchRun:
    """Send the scenario's workload to the server and measure every request.

    Only the scenario's `workload`, `slo` and `seed` matter here: the engine is
    whatever the server runs; `workload.concurrency` caps the requests in flight
    (meta.json records it as `max_concurrency` too, as vLLM's benchmark names it).
    Raises KairosError before sending anything if the server cannot be reached or
    does not serve the model.
    """
    specs = build_workload(scenario.workload, scenario.seed, warn=warn)
    base_url = normalize_url(options.url)
    prompts = PromptBuilder(options.prompt_format, options.vocab_size, scenario.seed)
    raise_open_file_limit()
    concurrency = scenario.workload.concurrency
    server, model, load, steps, (counters, phases) = asyncio.run(
        _send_all(specs, options, concurrency, base_url, prompts, progress, warn, warm_progress))
    settings = {
        # Whether the server is `kairos serve` (it publishes its engine): block counts differ (see replay).
        "kairos_engine": server.engine is not None,
        "prompt_format": options.prompt_format,
        "vocab_size": options.vocab_size,
        "max_concurrency": concurrency,
        "timeout_s": options.timeout_s,
        "exact_lengths": options.exact_lengths,
        "warmed_up": options.warm_up,
    }
    # Through JSON text, so that an infinite rate becomes "Infinity" as the config's
    # serializer writes it (model_dump keeps float inf, which strict JSON refuses).
    sections = {"workload": json.loads(scenario.workload.model_dump_json()),
                "slo": json.loads(scenario.slo.model_dump_json()), "seed": scenario.seed}
    lines = request_lines(load)
    max_model_len = server.model_entry(model).get("max_model_len")
    meta = build_meta(load, lines, model=model, url=base_url, server_version=server.version,
                      max_model_len=max_model_len if isinstance(max_model_len, int) else None,
                      facts=options.engine.completed_from(server.engine),
                      bench={**settings, **sections, **_measured_counters(counters, phases)})
    slo = SLO(scenario.slo.ttft_ms, scenario.slo.tpot_ms, scenario.slo.e2e_ms)
    bench = {"url": base_url, "model": model, "server_version": server.version, **settings}
    report, records = build_bench_report(load, lines, sections, slo, bench, counters)
    # Prompts sent as given token ids share what their ids share; spans describe the rest.
    shared = {sent.spec.request_id: sent.spec.shared for sent in load.sent
              if sent.spec.shared and sent.spec.prompt_token_ids is None}
    return BenchRun(meta, lines, report, records, shared, steps)


def _measured_counters(counters: dict[str, Any], phases: dict[str, float] | None) -> dict[str, Any]:
    """meta.json's record of the server's counters over the run, where they were read."""
    if counters.get("prefix_cache_hit_rate") is None:
        return {}
    record = {"prefix_cache_hit_rate": counters["prefix_cache_hit_rate"], "preemptions": counters["preemptions"]}
    if phases is not None:
        record["engine_phases"] = phases
    return {"server_counters": record}


async def _send_all(specs: list[RequestSpec], options: BenchOptions, concurrency: int | None,
                    base_url: str, prompts: PromptBuilder, progress: ProgressFn | None,
                    warn: Callable[[str], None] | None, warm_progress: ProgressFn | None
                    ) -> tuple[ServerInfo, str, LoadRun, list[dict[str, Any]],
                               tuple[dict[str, Any], dict[str, float] | None]]:
    async with CompletionClient(base_url, timeout_s=options.timeout_s, api_key=options.api_key,
                                max_connections=concurrency) as client:
        server = await client.probe()
        model = _pick_model(server, options.model, base_url)
        if options.warm_up:
            facts = options.engine.completed_from(server.engine)
            max_model_len = server.model_entry(model).get("max_model_len")
            plan = WarmUpPlan.for_engine(facts.max_num_batched_tokens, facts.max_num_seqs,
                                         max_model_len if isinstance(max_model_len, int) else None)
            await warm_up(client, model, options.vocab_size, plan, progress=warm_progress)
        # A Kairos server logs its engine steps: keep those the run makes.
        first_step = await _steps_logged(client) if server.engine is not None else None
        before = ServerCounters.parse(await client.get_text("/metrics"))
        ended = 0

        def on_end() -> None:
            nonlocal ended
            ended += 1
            if progress is not None:
                progress(ended, len(specs))

        async def send(spec: RequestSpec) -> StreamResult:
            body = completion_body(spec, model, prompts.prompt(spec), options.exact_lengths)
            return await client.stream(body, class_headers(spec))

        load = await generate_load(specs, send, max_concurrency=concurrency, on_end=on_end)
        after = ServerCounters.parse(await client.get_text("/metrics"))
        steps = [] if first_step is None else await _run_steps(client, first_step, warn)
    return server, model, load, steps, (run_counters(before, after), engine_phases(before, after))


async def _steps_logged(client: CompletionClient) -> int | None:
    """How many steps the server's step log has numbered so far (None: it keeps no log)."""
    log = await client.get_json(STEPS_COUNT_PATH)
    count = log.get("next") if log is not None else None
    return count if isinstance(count, int) else None


async def _run_steps(client: CompletionClient, first: int, warn: Callable[[str], None] | None
                     ) -> list[dict[str, Any]]:
    """The steps the server logged from number `first` on.

    The engine logs a step when the next one starts or when it goes idle, just
    after the last tokens went out: wait (briefly) until the log holds every
    step the engine reports having taken.
    """
    deadline = time.monotonic() + STEP_LOG_WAIT_S
    while True:
        engine = await client.get_json(ENGINE_PATH)
        log = await client.get_json(f"{STEPS_PATH}?since={first}")
        steps = log.get("steps") if log is not None else None
        logged = log.get("next") if log is not None else None
        if not isinstance(steps, list) or not isinstance(logged, int):
            return []
        if logged - len(steps) > first:
            if warn is not None:
                warn(f"the server's step log no longer holds the run's first {logged - len(steps) - first} "
                     f"steps: {STEPS_FILE} not written")
            return []
        taken = ((engine or {}).get("stats") or {}).get("steps")
        if not isinstance(taken, int) or logged >= taken or time.monotonic() > deadline:
            return steps
        await asyncio.sleep(0.01)


def _pick_model(server: ServerInfo, wanted: str | None, base_url: str) -> str:
    served = server.model_ids
    if wanted is None:
        if not served:
            raise KairosError(f"{base_url}/v1/models lists no model; pass --model NAME")
        return served[0]
    if served and wanted not in served:
        raise KairosError(f"{base_url} does not serve model '{wanted}'"
                          f" (it serves: {', '.join(served)})")
    return wanted
