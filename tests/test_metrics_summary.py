"""Request timeline definitions, the summary block and goodput under SLOs."""

from __future__ import annotations

import numpy as np
import pytest

from kairos.metrics import ItlCollector, RequestRecord, meets_slo, summarize
from kairos.workload.spec import SLO, RequestSpec


def done(
    rid: str,
    arrival: float,
    ttft: float,
    e2e: float,
    out: int = 11,
    slo: SLO | None = None,
    queue: float = 0.0,
    preemptions: int = 0,
) -> RequestRecord:
    return RequestRecord(
        request_id=rid,
        arrival_s=arrival,
        input_tokens=100,
        output_tokens=out,
        first_scheduled_s=arrival + queue,
        first_token_s=arrival + ttft,
        finish_s=arrival + e2e,
        preemptions=preemptions,
        slo=slo,
    )


def rejected(rid: str, arrival: float) -> RequestRecord:
    return RequestRecord(rid, arrival, input_tokens=100, rejected_reason="prompt exceeds KV cache")


def test_record_latency_definitions():
    record = done("a", arrival=1.0, ttft=0.2, e2e=1.2, out=11, queue=0.05)
    assert record.finished
    assert record.ttft_s == pytest.approx(0.2)
    assert record.e2e_s == pytest.approx(1.2)
    assert record.queue_s == pytest.approx(0.05)
    assert record.tpot_s == pytest.approx((1.2 - 0.2) / 10)


def test_tpot_undefined_for_single_token_and_unfinished():
    assert done("a", 0.0, 0.1, 0.1, out=1).tpot_s is None
    pending = RequestRecord("b", 0.0, input_tokens=5, output_tokens=3, first_token_s=0.1)
    assert pending.tpot_s is None and pending.e2e_s is None and not pending.finished


def test_record_for_spec_copies_identity_and_slo():
    spec = RequestSpec("r1", arrival_s=3.0, prompt_len=64, output_len=8, slo=SLO(ttft_ms=100))
    record = RequestRecord.for_spec(spec, arrival_s=4.5, replica=2)
    assert (record.request_id, record.arrival_s, record.input_tokens) == ("r1", 4.5, 64)
    assert record.replica == 2 and record.slo == spec.slo and record.output_tokens == 0


def test_summary_counts_throughput_and_latencies():
    records = [
        done("a", 0.0, ttft=0.1, e2e=1.0, preemptions=1),
        done("b", 0.5, ttft=0.3, e2e=1.5, preemptions=2),
        rejected("c", 0.7),
    ]
    summary = summarize(records, ItlCollector(), None, prefix_cache_hit_rate=0.25)
    assert summary["num_requests"] == 3
    assert summary["completed"] == 2
    assert summary["rejected"] == 1
    assert summary["duration_s"] == 2.0  # first arrival 0.0 to last finish 2.0
    assert summary["throughput"] == {
        "requests_per_s": 1.0,
        "input_tokens_per_s": 100.0,
        "output_tokens_per_s": 11.0,
    }
    ttfts = np.array([0.1, 0.3]) * 1000
    assert summary["ttft_ms"]["mean"] == pytest.approx(200.0)
    assert summary["ttft_ms"]["p90"] == pytest.approx(np.percentile(ttfts, 90))
    assert summary["tpot_ms"]["p50"] == pytest.approx(np.percentile([90.0, 120.0], 50))
    assert summary["preemptions"] == 3
    assert summary["prefix_cache_hit_rate"] == 0.25
    # No SLO given: every completed request is good; rejected ones still count against.
    assert summary["goodput"] == {"requests_per_s": 1.0, "slo_attainment": pytest.approx(2 / 3)}


def test_summary_of_nothing_is_valid_and_zero():
    summary = summarize([], ItlCollector(), SLO(ttft_ms=1))
    assert summary["num_requests"] == 0 and summary["duration_s"] == 0.0
    assert summary["ttft_ms"] == {"mean": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0}
    assert summary["goodput"] == {"requests_per_s": 0.0, "slo_attainment": 0.0}


def test_goodput_with_scenario_defaults():
    records = [
        done("fast", 0.0, ttft=0.1, e2e=1.0),  # tpot 90 ms
        done("slow_first_token", 0.0, ttft=0.6, e2e=1.5),
        done("slow_decode", 0.0, ttft=0.1, e2e=3.1),  # tpot 300 ms
    ]
    summary = summarize(records, ItlCollector(), SLO(ttft_ms=500, tpot_ms=100))
    assert summary["goodput"]["slo_attainment"] == pytest.approx(1 / 3)
    assert summary["goodput"]["requests_per_s"] == pytest.approx(1 / 3.1, abs=1e-6)


def test_per_request_slo_overrides_defaults_field_by_field():
    defaults = SLO(ttft_ms=500, e2e_ms=2000)
    relaxed_ttft = done("a", 0.0, ttft=0.8, e2e=1.0, slo=SLO(ttft_ms=1000))
    assert meets_slo(relaxed_ttft, defaults)
    # The request's own ttft target does not lift the scenario's e2e target.
    too_long = done("b", 0.0, ttft=0.8, e2e=2.5, slo=SLO(ttft_ms=1000))
    assert not meets_slo(too_long, defaults)
    stricter = done("c", 0.0, ttft=0.3, e2e=1.0, slo=SLO(ttft_ms=200))
    assert not meets_slo(stricter, defaults)


def test_tpot_target_skipped_for_single_token_outputs():
    one_token = done("a", 0.0, ttft=0.1, e2e=0.1, out=1)
    assert meets_slo(one_token, SLO(tpot_ms=1.0))


def test_rejected_requests_never_meet_slo():
    assert not meets_slo(rejected("c", 0.0), None)


def test_summary_floats_are_rounded_to_six_decimals():
    records = [done("a", 0.0, ttft=1 / 3, e2e=2 / 3)]
    summary = summarize(records, ItlCollector(), None)
    assert summary["ttft_ms"]["mean"] == 333.333333
    assert summary["duration_s"] == 0.666667


def _classed(rid: str, arrival: float, ttft: float, e2e: float, slo_class: str | None,
             tenant: str | None, out: int = 11, **fields: object) -> RequestRecord:
    record = done(rid, arrival, ttft, e2e, out=out)
    record.slo_class, record.tenant = slo_class, tenant
    for name, value in fields.items():
        setattr(record, name, value)
    return record


def test_record_for_spec_copies_the_request_class():
    spec = RequestSpec("r", 0.0, 8, 2, tenant="t1", slo_class="batch", deadline_s=60.0)
    record = RequestRecord.for_spec(spec, arrival_s=0.0)
    assert (record.tenant, record.slo_class, record.deadline_s) == ("t1", "batch", 60.0)


def test_a_missed_deadline_is_not_goodput():
    assert meets_slo(_classed("a", 0.0, 0.1, 2.0, None, None, deadline_s=2.0), None)
    assert not meets_slo(_classed("a", 0.0, 0.1, 2.5, None, None, deadline_s=2.0), None)


def test_goodput_by_class_and_by_tenant():
    interactive = SLO(ttft_ms=200)
    records = [
        _classed("a", 0.0, ttft=0.1, e2e=1.0, slo_class="interactive", tenant="t0", slo=interactive),
        _classed("b", 0.0, ttft=0.3, e2e=1.0, slo_class="interactive", tenant="t1", slo=interactive),
        _classed("c", 0.0, ttft=0.5, e2e=4.0, slo_class="batch", tenant="t0", out=21, deadline_s=5.0),
        _classed("d", 0.0, ttft=0.5, e2e=6.0, slo_class="batch", tenant="t0", deadline_s=5.0),
        rejected("e", 1.0),
    ]
    records[-1].tenant = "t1"
    summary = summarize(records, ItlCollector(), SLO(e2e_ms=10_000))
    assert summary["duration_s"] == 6.0
    by_class = summary["by_class"]
    assert set(by_class) == {"interactive", "batch", "(none)"}
    inter = by_class["interactive"]
    assert (inter["requests"], inter["completed"]) == (2, 2)
    assert (inter["input_tokens"], inter["output_tokens"]) == (200, 22)
    # Only "a" meets its 200 ms TTFT: one request and its 11 tokens over 6 s.
    assert inter["goodput"] == {"requests_per_s": pytest.approx(1 / 6, abs=1e-6),
                                "output_tokens_per_s": pytest.approx(11 / 6, abs=1e-6),
                                "slo_attainment": 0.5}
    assert inter["ttft_ms"]["p50"] == pytest.approx(200.0)
    batch = by_class["batch"]
    assert batch["goodput"]["slo_attainment"] == 0.5  # "d" finished past its deadline
    assert batch["goodput"]["output_tokens_per_s"] == pytest.approx(21 / 6, abs=1e-6)
    assert batch["e2e_ms"]["p99"] == pytest.approx(np.percentile([4000.0, 6000.0], 99))
    assert by_class["(none)"]["requests"] == 1 and by_class["(none)"]["completed"] == 0
    by_tenant = summary["by_tenant"]
    assert set(by_tenant) == {"t0", "t1"}
    assert (by_tenant["t0"]["requests"], by_tenant["t0"]["input_tokens"]) == (3, 300)
    assert by_tenant["t0"]["output_tokens"] == 11 + 21 + 11
    assert by_tenant["t1"]["goodput"]["slo_attainment"] == 0.0  # "b" too slow, "e" rejected
    total = sum(group["goodput"]["requests_per_s"] for group in by_tenant.values())
    assert total == pytest.approx(summary["goodput"]["requests_per_s"], abs=1e-5)


def test_no_classes_no_breakdown():
    summary = summarize([done("a", 0.0, 0.1, 1.0)], ItlCollector(), None)
    assert "by_class" not in summary and "by_tenant" not in summary
