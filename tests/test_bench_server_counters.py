"""Reading a server's Prometheus counters around a benchmark."""

from __future__ import annotations

import pytest

from kairos.bench.server_counters import ServerCounters, engine_phases, phase_totals, run_counters


def _page(hits: float, queries: float, preemptions: float, phases: dict[str, tuple[float, float]] | None,
          steps: float = 0.0) -> str:
    lines = [f'vllm:prefix_cache_hits_total{{engine="0"}} {hits}',
             f'vllm:prefix_cache_queries_total{{engine="0"}} {queries}',
             f'vllm:num_preemptions_total{{engine="0"}} {preemptions}']
    for phase, (total, count) in (phases or {}).items():
        lines += [f'vllm:request_{phase}_time_seconds_sum{{engine="0",model_name="m"}} {total}',
                  f'vllm:request_{phase}_time_seconds_count{{engine="0",model_name="m"}} {count}',
                  f'vllm:request_{phase}_time_seconds_bucket{{engine="0",le="0.1"}} {count}']
    if phases:
        lines.append(f'vllm:iteration_tokens_total_count{{engine="0"}} {steps}')
    return "\n".join(lines) + "\n"


def test_the_runs_counters_are_the_differences():
    before = ServerCounters.parse(_page(10, 100, 1, None))
    after = ServerCounters.parse(_page(40, 200, 4, None))
    assert run_counters(before, after) == {"prefix_cache_hit_rate": pytest.approx(0.3), "preemptions": 3}
    assert run_counters(None, after) == {"prefix_cache_hit_rate": None, "preemptions": None}
    assert ServerCounters.parse("up 1\n") is None


def test_engine_phases_are_mean_times_per_request_over_the_run():
    before = ServerCounters.parse(_page(0, 0, 0, {"queue": (1.0, 2), "prefill": (2.0, 2), "decode": (4.0, 2)}, 50))
    after = ServerCounters.parse(_page(0, 0, 0, {"queue": (1.5, 7), "prefill": (2.5, 7), "decode": (9.0, 7)}, 150))
    phases = engine_phases(before, after)
    assert phases == {"queue_ms": pytest.approx(100.0), "prefill_ms": pytest.approx(100.0),
                      "decode_ms": pytest.approx(1000.0), "requests": 5, "steps": 100}


def test_engine_phases_need_the_histograms_and_a_finished_request():
    without = ServerCounters.parse(_page(0, 0, 0, None))
    assert without is not None and without.engine == {}
    assert engine_phases(without, without) is None
    same = ServerCounters.parse(_page(0, 0, 0, {"queue": (1.0, 2), "prefill": (2.0, 2), "decode": (4.0, 2)}, 5))
    assert engine_phases(same, same) is None


def test_phase_totals_add_up_label_sets():
    text = ('vllm:request_prefill_time_seconds_sum{engine="0"} 1.5\n'
            'vllm:request_prefill_time_seconds_sum{engine="1"} 0.5\n'
            'vllm:request_prefill_time_seconds_count{engine="0"} 3\n'
            'vllm:request_queue_time_seconds_sum 0.25\n'
            'vllm:request_prefill_time_seconds_bucket{le="0.1"} 2\n')
    assert phase_totals(text) == {"queue_sum": 0.25, "queue_count": 0.0, "prefill_sum": 2.0, "prefill_count": 3.0,
                                  "decode_sum": 0.0, "decode_count": 0.0}
