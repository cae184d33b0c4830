"""The load generator's pacing, closed-loop follow-ups and concurrency cap, without HTTP."""

from __future__ import annotations

import asyncio
import time

import pytest

from kairos.bench.loadgen import LoadRun, generate_load
from kairos.bench.stream import StreamResult
from kairos.errors import KairosError
from kairos.workload import RequestSpec


class FakeSend:
    """Answers every request after `service_s`; counts requests in flight."""

    def __init__(self, service_s: float = 0.02, fail: set[str] = frozenset()) -> None:
        self.service_s, self.fail = service_s, fail
        self.in_flight = self.most_in_flight = 0

    async def __call__(self, spec: RequestSpec) -> StreamResult:
        result = StreamResult(sent_ts=time.monotonic())
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(self.service_s)
        self.in_flight -= 1
        if spec.request_id in self.fail:
            result.error = "HTTP 500"
        else:
            result.token_ts, result.token_counts = [time.monotonic()], [1]
        return result


def run(specs, send, **kwargs) -> LoadRun:
    return asyncio.run(generate_load(specs, send, **kwargs))


def test_open_loop_sends_at_arrival_times_and_keeps_workload_order():
    specs = [RequestSpec(f"r{i}", arrival, 8, 1) for i, arrival in enumerate([0.1, 0.0, 0.05])]
    ended = []
    load = run(specs, FakeSend(service_s=0.2), on_end=lambda: ended.append(1))
    assert [s.spec.request_id for s in load.sent] == ["r0", "r1", "r2"]
    for sent in load.sent:
        offset = sent.result.sent_ts - load.started_ts
        # Lower bounds are exact; upper bounds are loose, since a busy CI machine delays wakeups.
        assert sent.spec.arrival_s - 0.005 <= offset < sent.spec.arrival_s + 0.25
        assert 0 <= sent.send_lag_s < 0.25
    assert len(ended) == 3 and load.finished_ts - load.started_ts >= 0.3


def test_follow_ups_wait_for_their_predecessor_even_when_it_failed():
    specs = [RequestSpec("a", 0.0, 8, 1), RequestSpec("b", 0.0, 8, 1, after="a", think_s=0.05),
             RequestSpec("c", 0.0, 8, 1, after="b", think_s=0.0)]
    load = run(specs, FakeSend(service_s=0.03, fail={"a"}))
    a, b, c = load.sent
    assert 0.08 <= b.result.sent_ts - a.result.sent_ts < 0.5
    assert 0.03 <= c.result.sent_ts - b.result.sent_ts < 0.5
    assert a.result.error == "HTTP 500" and c.result.error is None


def test_max_concurrency_caps_requests_in_flight():
    specs = [RequestSpec(f"r{i}", 0.0, 8, 1) for i in range(6)]
    send = FakeSend(service_s=0.02)
    load = run(specs, send, max_concurrency=2)
    assert send.most_in_flight == 2
    lags = sorted(s.send_lag_s for s in load.sent)
    assert 0.04 <= lags[-1] < 0.5  # the last pair waited for two rounds
    unbounded = FakeSend(service_s=0.02)
    run(specs, unbounded)
    assert unbounded.most_in_flight == 6


def test_follow_up_of_a_missing_request_is_an_error():
    with pytest.raises(KairosError, match="follows gone, which is not in the workload"):
        run([RequestSpec("b", 0.0, 8, 1, after="gone")], FakeSend())
