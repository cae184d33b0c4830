"""Measured against simulated latencies, per metric and statistic, as validation.json holds them."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from kairos.bench.run_format import MeasuredRun
from kairos.metrics import RequestRecord, round_floats
from kairos.sim.runner import SimResult

VALIDATION_SCHEMA = "kairos.validation/v1"
STATISTICS = ("mean", "p50", "p90", "p99")


def compare_runs(run: MeasuredRun, simulated: list[RequestRecord]) -> dict:
    """{"schema", "run", "num_requests", "metrics": {metric: {stat: {measured, simulated, error_pct}}}}.

    Only requests completed both in the run and in the simulation are compared,
    matched by request id. error_pct = 100 x (simulated - measured) / measured.
    """
    sim_by_id = {r.request_id: r for r in simulated if r.finished}
    pairs = [(m, sim_by_id[m.request_id]) for m in run.completed if m.request_id in sim_by_id]
    series = {
        "ttft_ms": ([m.ttft_s for m, _ in pairs], [s.ttft_s for _, s in pairs]),
        "tpot_ms": ([m.tpot_s for m, s in pairs if m.tpot_s is not None and s.tpot_s is not None],
                    [s.tpot_s for m, s in pairs if m.tpot_s is not None and s.tpot_s is not None]),
        "e2e_ms": ([m.e2e_s for m, _ in pairs], [s.e2e_s for _, s in pairs]),
    }
    metrics = {name: _compare(measured, sim) for name, (measured, sim) in series.items()}
    return round_floats({
        "schema": VALIDATION_SCHEMA,
        "run": str(run.path),
        "num_requests": len(pairs),
        "metrics": metrics,
    })


def compare_counters(meta: dict, outcome: SimResult, request_latency: Callable[[int], float] | None) -> dict:
    """The server's prefix-cache hit rate, preemptions and engine phase times over the run
    against those of the simulation's `outcome` (`request_latency`: its front-end time).

    Measured where `kairos bench` read the server's /metrics (meta.json's
    kairos_bench.server_counters); {} otherwise. The hit rate's error is in
    percentage points, as a rate's is.
    """
    measured = (meta.get("kairos_bench") or {}).get("server_counters") or {}
    out: dict = {}
    if measured.get("engine_phases"):
        phases = _simulated_phases(outcome, request_latency)
        out["engine_phases"] = {
            key: {"measured": value, "simulated": phases[key],
                  **({"error_pct": 100.0 * (phases[key] - value) / value} if value else {})}
            for key, value in measured["engine_phases"].items() if key in phases}
    if measured.get("prefix_cache_hit_rate") is not None:
        rate = float(measured["prefix_cache_hit_rate"])
        hit_rate = outcome.prefix_cache_hit_rate
        out["prefix_cache_hit_rate"] = {"measured": rate, "simulated": hit_rate,
                                        "error_points": 100.0 * (hit_rate - rate)}
    if measured.get("preemptions") is not None:
        out["preemptions"] = {"measured": int(measured["preemptions"]), "simulated": outcome.preemptions}
    return round_floats(out)


def _simulated_phases(outcome: SimResult, request_latency: Callable[[int], float] | None) -> dict[str, float]:
    """The simulation's mean engine time per finished request in each phase, as vLLM's
    histograms time them (queue from reaching the engine, after the front-end's latency)."""
    done = [r for r in outcome.records
            if r.finished and r.first_scheduled_s is not None and r.first_token_s is not None]
    if not done:
        return {}
    latency = request_latency or (lambda _: 0.0)
    n = len(done)
    return {
        "queue_ms": 1e3 * sum(r.first_scheduled_s - r.arrival_s - latency(r.input_tokens) for r in done) / n,
        "prefill_ms": 1e3 * sum(r.first_token_s - r.first_scheduled_s for r in done) / n,
        "decode_ms": 1e3 * sum(r.finish_s - r.first_token_s for r in done) / n,
        "requests": n,
        "steps": sum(rep["steps"] for rep in outcome.replicas),
    }


def _compare(measured: list[float], simulated: list[float]) -> dict:
    if not measured:
        return {}
    out = {}
    for stat, m, s in zip(STATISTICS, _stats_ms(measured), _stats_ms(simulated)):
        out[stat] = {"measured": m, "simulated": s, "error_pct": 100.0 * (s - m) / m if m else 0.0}
    return out


def _stats_ms(values: list[float]) -> list[float]:
    ms = np.asarray(values, dtype=np.float64) * 1e3
    return [float(ms.mean()), *(float(v) for v in np.percentile(ms, [50, 90, 99]))]
