"""The vLLM plug-in's queue adapter against fake vLLM requests (no vLLM needed), and the plug-in's import."""

from __future__ import annotations

import importlib.util
import json
from collections import deque
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest

from kairos.engine.policies import make_waiting_queue
from kairos.engine.request import Request
from kairos.errors import KairosError
from kairos.integrations.vllm_queue import CONFIG_ENV, PluginConfig, PolicyWaitingQueue, build_queue
from kairos.predict import make_predictor
from kairos.workload.spec import RequestSpec


@dataclass(eq=False)
class FakeRequest:
    """The fields of vllm.v1.request.Request the adapter reads."""

    request_id: str
    arrival_time: float
    num_prompt_tokens: int
    max_tokens: int
    priority: int = 0
    num_computed_tokens: int = 0
    num_output_tokens: int = 0
    sampling_params: Any = None


def fake(i: int, max_tokens: int, prompt: int = 16, **extra: Any) -> FakeRequest:
    params = SimpleNamespace(extra_args=extra or None)
    return FakeRequest(f"r{i}", float(i), prompt, max_tokens, sampling_params=params)


def queue(policy: str = "sjf", predictor: str | None = "oracle", **options: Any) -> PolicyWaitingQueue:
    return build_queue(PluginConfig(policy=policy, policy_options=options, predictor=predictor))


def drain(q: PolicyWaitingQueue) -> list[str]:
    return [q.pop_request().request_id for _ in range(len(q))]


LENGTHS = [300, 5, 120, 5, 40, 900, 1, 77]


def test_sjf_orders_the_waiting_queue_as_the_kairos_policy():
    q = queue("sjf")
    requests = [fake(i, n) for i, n in enumerate(LENGTHS)]
    for r in requests:
        q.add_request(r)
    reference = make_waiting_queue("sjf", predictor=make_predictor("oracle"))
    for i, n in enumerate(LENGTHS):
        shadow = Request(RequestSpec(f"r{i}", float(i), 16, n), i, float(i))
        shadow.predicted_output = n
        reference.add(shadow)
    expected = [reference.pop().request_id for _ in LENGTHS]
    assert q.peek_request().request_id == expected[0]
    assert [r.request_id for r in q] == expected  # iteration in the policy's order
    assert drain(q) == expected == ["r6", "r1", "r3", "r4", "r7", "r2", "r0", "r5"]
    assert not q
    with pytest.raises(IndexError):
        q.peek_request()


def test_fcfs_prepends_like_vllms_deque():
    q = queue("fcfs", predictor=None)
    a, b, c, d = (fake(i, 10) for i in range(4))
    q.add_request(a)
    q.add_request(b)
    q.prepend_request(c)  # a preempted request goes first
    assert drain(q) == ["r2", "r0", "r1"]
    for r in (a, b):
        q.add_request(r)
    reference: deque[str] = deque(["r0", "r1"])
    reference.extendleft(["r2", "r3"])
    q.prepend_requests([c, d])
    assert drain(q) == list(reference)


def test_preempted_request_is_reranked_on_what_it_has_left():
    q = queue("srpt")
    long, short = fake(0, 100), fake(1, 60)
    q.add_request(long)
    q.add_request(short)
    assert q.pop_request() is short
    running = q.pop_request()
    assert running is long
    running.num_output_tokens = 90  # 10 left: now ahead of a fresh 60-token request
    q.add_request(fake(2, 60))
    q.prepend_request(running)
    assert q.peek_request() is long


def test_remove():
    q = queue("sjf")
    requests = [fake(i, n) for i, n in enumerate(LENGTHS)]
    for r in requests:
        q.add_request(r)
    q.remove_request(requests[6])
    q.remove_requests([requests[1], fake(99, 3)])  # one never queued: no error, as vLLM's FCFS filter
    assert len(q) == len(LENGTHS) - 2
    assert drain(q)[:2] == ["r3", "r4"]
    with pytest.raises(ValueError, match="r0 is not in the waiting queue"):
        q.remove_request(requests[0])


def vllm_fcfs_victims(q: PolicyWaitingQueue, running: list[FakeRequest], count: int) -> list[str]:
    """What vLLM's FCFS branch preempts after the plug-in ordered its running list: the last, repeatedly."""
    ordered = q.preemption_order(running)
    return [ordered.pop().request_id for _ in range(count)]


def test_victims_are_the_policys_picks():
    q = queue("sjf")
    running = [fake(i, n) for i, n in enumerate(LENGTHS)]
    for r in running:
        q.add_request(r)
    admitted = [q.pop_request() for _ in LENGTHS]  # admission order: shortest first
    shadows = {s.request_id: s for s in (q._track(r).shadow for r in admitted)}
    rest = [shadows[r.request_id] for r in admitted]
    expected = []
    for _ in range(3):
        victim = q.policy.pick_victim(rest)
        expected.append(victim.request_id)
        rest.remove(victim)
    assert vllm_fcfs_victims(q, admitted, 3) == expected == ["r5", "r0", "r2"]
    # The order does not depend on how an earlier step left the list.
    assert vllm_fcfs_victims(q, list(reversed(admitted)), 3) == expected


def test_fcfs_keeps_vllms_running_list():
    q = queue("fcfs", predictor=None)
    running = [fake(i, n) for i, n in enumerate(LENGTHS)]
    assert q.preemption_order(running) is running


def test_generic_victim_order_for_tenant_fairness():
    q = queue("vtc", predictor=None)
    reqs = [fake(0, 10, tenant="a"), fake(1, 10, tenant="b"), fake(2, 10, tenant="a")]
    for r in reqs:
        q.add_request(r)
    running = [q.pop_request() for _ in reqs]
    for r in running:
        r.num_computed_tokens = 16 if r.request_id != "r1" else 4
        q.served(r, r.num_computed_tokens)
    assert q.policy.counters == {"a": 32.0, "b": 4.0}
    # The newest of the most-served tenant first.
    assert vllm_fcfs_victims(q, running, 3) == ["r2", "r0", "r1"]


def test_request_classes_come_from_vllm_xargs():
    q = queue("edf", predictor=None)
    q.add_request(fake(0, 10))
    q.add_request(fake(1, 10, deadline_s=0.5, tenant="t", slo_class="batch"))
    q.add_request(fake(2, 10, e2e_ms=2000))
    spec = q._track(fake(1, 10)).shadow.spec
    assert (spec.tenant, spec.slo_class, spec.deadline_s) == ("t", "batch", 0.5)
    assert drain(q) == ["r1", "r2", "r0"]
    q.add_request(fake(3, 10, deadline_s="soon", e2e_ms=None))  # malformed: ignored, not an engine crash
    assert q._track(fake(3, 10)).shadow.spec.deadline_s is None


class RecordingPredictor:
    def __init__(self) -> None:
        self.observed: list[tuple[str, int]] = []

    def predict(self, spec: RequestSpec, generated: int = 0) -> int:
        return max(spec.output_len, generated + 1)

    def observe(self, spec: RequestSpec, output_len: int) -> None:
        self.observed.append((spec.request_id, output_len))


def test_finished_requests_teach_the_predictor_and_drop_their_shadow():
    predictor = RecordingPredictor()
    q = PolicyWaitingQueue(make_waiting_queue("sjf", predictor=predictor), predictor)
    done, aborted = fake(0, 10), fake(1, 10)
    for r in (done, aborted):
        q.add_request(r)
        q.pop_request()
    done.num_output_tokens = 7
    q.finished(done, completed=True)
    q.finished(aborted, completed=False)
    assert predictor.observed == [("r0", 7)]
    assert not q._tracked


def test_config_from_additional_config_or_environment():
    section = {"policy": "laps", "policy_options": {"short_tokens": 64}}
    assert PluginConfig.load({"kairos": section}, {}) == PluginConfig(**section)
    assert PluginConfig.load({}, {CONFIG_ENV: json.dumps(section)}) == PluginConfig(**section)
    assert PluginConfig.load(None, {}) == PluginConfig()
    with pytest.raises(KairosError, match=r"unknown key\(s\) \['polcy'\]"):
        PluginConfig.load({"kairos": {"polcy": "sjf"}}, {})
    with pytest.raises(KairosError, match="is not JSON"):
        PluginConfig.load({}, {CONFIG_ENV: "{sjf"})


@pytest.mark.parametrize("policy", ["past_future", "filler"])
def test_policies_the_plugin_cannot_run_are_refused(policy: str):
    with pytest.raises(KairosError, match=f"'{policy}' .* vLLM plug-in cannot"):
        queue(policy)


def test_sjf_without_a_named_predictor_learns_with_the_histogram():
    from kairos.predict.predictors import HistogramPredictor
    assert isinstance(queue("sjf", predictor=None).predictor, HistogramPredictor)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_plugin_without_vllm_is_a_clear_import_error():
    with pytest.raises(ImportError, match="install vLLM"):
        importlib.import_module("kairos.integrations.vllm")


def test_plugin_classes_with_vllm():
    pytest.importorskip("vllm")
    from vllm.v1.core.sched.request_queue import RequestQueue
    from vllm.v1.core.sched.scheduler import Scheduler

    from kairos.integrations.vllm import KairosScheduler

    assert issubclass(KairosScheduler, Scheduler)
    assert isinstance(queue(), RequestQueue)
