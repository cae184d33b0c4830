"""From a finished load run to its files: requests.jsonl lines, meta.json, and the report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kairos import __version__
from kairos.bench.loadgen import LoadRun, Sent
from kairos.bench.run_format import RUN_SCHEMA_VERSION, RequestLine, measure
from kairos.errors import KairosError
from kairos.hardware import load_gpu
from kairos.metrics import (
    ItlCollector,
    RequestRecord,
    build_report,
    round_floats,
    stats_ms,
    summarize,
)
from kairos.workload.spec import SLO


@dataclass(frozen=True, slots=True)
class EngineFacts:
    """Engine settings the user declares about the server (a client cannot read them).

    They go into meta.json under vLLM's names, so that `kairos validate` can set
    up a simulated twin of the measured server; None means not known.
    """

    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    tensor_parallel_size: int | None = None
    block_size: int | None = None
    num_gpu_blocks: int | None = None
    enable_prefix_caching: bool | None = None
    device_name: str | None = None

    def completed_from(self, server: dict[str, Any] | None) -> EngineFacts:
        """These facts, with what `kairos serve` reports (GET /kairos/engine) filling the gaps."""
        if not server:
            return self
        reported = {
            "max_num_seqs": server.get("max_num_seqs"),
            "max_num_batched_tokens": server.get("max_num_batched_tokens"),
            "tensor_parallel_size": 1,
            "block_size": server.get("block_size"),
            "num_gpu_blocks": server.get("num_gpu_blocks"),
            "enable_prefix_caching": server.get("enable_prefix_caching"),
            "device_name": server.get("device"),
        }
        declared = {name: getattr(self, name) for name in reported}
        return EngineFacts(**{name: declared[name] if declared[name] is not None else value
                              for name, value in reported.items()})


def device_name(gpu: str) -> str:
    """What meta.json records for the user's GPU: a catalog GPU's display name, which
    `kairos validate` maps back to the catalog, or the name as given (as CUDA reports it)."""
    try:
        return load_gpu(gpu).display_name
    except KairosError:
        return gpu


def request_lines(load: LoadRun) -> list[RequestLine]:
    """One requests.jsonl line per request, in workload order."""
    return [_line(sent, load) for sent in load.sent]


def failure_counts(lines: list[RequestLine]) -> dict[str, int]:
    """Failed requests per kind of failure (the reason up to its first colon), most first."""
    kinds = Counter(line.error.split(":")[0] for line in lines if line.error is not None)
    return dict(kinds.most_common())


def build_meta(load: LoadRun, lines: list[RequestLine], *, model: str, url: str,
               server_version: str | None, max_model_len: int | None, facts: EngineFacts,
               bench: dict[str, Any]) -> dict[str, Any]:
    """meta.json: what is known of the server and engine, and how the load was made."""
    engine = {"model": model, "max_model_len": max_model_len,
              "tensor_parallel_size": facts.tensor_parallel_size,
              "max_num_seqs": facts.max_num_seqs,
              "max_num_batched_tokens": facts.max_num_batched_tokens}
    kv_cache = {"num_gpu_blocks": facts.num_gpu_blocks, "block_size": facts.block_size,
                "enable_prefix_caching": facts.enable_prefix_caching}
    meta: dict[str, Any] = {
        "schema_version": RUN_SCHEMA_VERSION,
        "model": model,
        "url": url,
        "server_version": server_version,
        "engine_kwargs": _known(engine),
        "kv_cache": _known(kv_cache),
        "hardware": _known({"device_name": facts.device_name}),
        "num_requests": len(lines),
        "started_at": _iso(load.started_wall),
        "finished_at": _iso(load.wall_time(load.finished_ts)),
        "kairos_bench": {"kairos_version": __version__, **bench,
                         "failed": sum(1 for line in lines if line.error is not None)},
    }
    return {key: value for key, value in meta.items() if value not in (None, {})}


def build_bench_report(load: LoadRun, lines: list[RequestLine], scenario: dict[str, Any],
                       slo: SLO | None, bench: dict[str, Any], counters: dict[str, Any]
                       ) -> tuple[dict[str, Any], list[RequestRecord]]:
    """report.json's content and the records behind it, as `kairos simulate` builds them.

    Records come from the measured lines (the same path `kairos validate` reads
    back), so the report agrees with the files. ITL covers completed requests.
    What a client cannot see is the server's word (`counters`: prefix-cache hit
    rate and preemptions from its /metrics) or null: not measured, as the queue
    time always is.
    """
    records = [measured.to_record(sent.spec)
               for measured, sent in zip(measure(lines), load.sent)]
    itl = ItlCollector()
    for line, sent in zip(lines, load.sent):
        if line.error is None:
            for gap in sent.result.token_gaps():
                itl.add(gap)
    summary = {**summarize(records, itl, slo), **counters, "queue_ms": None}
    short = sum(1 for line, sent in zip(lines, load.sent)
                if line.error is None and line.output_toks < sent.spec.output_len)
    block = {
        **bench,
        "started_at": _iso(load.started_wall),
        "finished_at": _iso(load.wall_time(load.finished_ts)),
        "failed": sum(1 for line in lines if line.error is not None),
        "failures": failure_counts(lines),
        "short_outputs": short,
        "send_lag_ms": stats_ms([sent.send_lag_s for sent in load.sent]),
    }
    report = build_report(scenario, summary, [], load.finished_ts - load.started_ts,
                          extra={"bench": round_floats(block)})
    return report, records


def _line(sent: Sent, load: LoadRun) -> RequestLine:
    result = sent.result
    error = result.error
    if error is None and result.first_token_ts is None:
        error = "empty answer: no tokens streamed"
    return RequestLine(
        request_id=sent.spec.request_id,
        # The server's own count wins: a text prompt's length is only approximate.
        input_toks=result.usage_prompt_tokens if result.usage_prompt_tokens is not None
        else sent.spec.prompt_len,
        output_toks=result.output_tokens,
        arrival_time=load.wall_time(result.sent_ts),
        queued_ts=result.sent_ts,
        scheduled_ts=None,
        first_token_ts=result.first_token_ts,
        # A failed request never finished, whatever tokens it got.
        last_token_ts=result.last_token_ts if error is None else None,
        error=error,
    )


def _known(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


def _iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
