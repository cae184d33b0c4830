"""Each scheduling policy's mechanism, on its queue alone and inside an engine."""

from __future__ import annotations

import pytest

from kairos.engine import EngineCore, KVCacheManager, SchedulerConfig
from kairos.engine.policies import POLICIES, StepContext, make_waiting_queue
from kairos.engine.request import Request
from kairos.errors import KairosError
from kairos.predict import make_predictor
from kairos.workload.spec import SLO, RequestSpec, Span

from helpers import simulate


def req(uid: int, arrival: float = 0.0, prompt: int = 10, output: int = 10, **spec_fields) -> Request:
    r = Request(RequestSpec(f"r{uid}", arrival, prompt, output, **spec_fields), uid, arrival)
    r.predicted_output = output
    return r


def drain(queue) -> list[str]:
    out = []
    while len(queue):
        out.append(queue.pop().request_id)
    return out


def test_every_policy_has_a_summary_and_builds():
    oracle = make_predictor("oracle")
    for name in POLICIES.names():
        assert POLICIES.summaries()[name]
        queue = make_waiting_queue(name, predictor=oracle)
        queue.add(req(0))
        assert len(queue) == 1 and queue.peek().request_id == "r0"


def test_bad_knobs_and_missing_predictors_are_one_line_errors():
    with pytest.raises(KairosError, match="has no knob bogus"):
        make_waiting_queue("laps", {"bogus": 1})
    with pytest.raises(KairosError, match="give it a predictor"):
        make_waiting_queue("sjf")
    with pytest.raises(KairosError, match="max_wait_s"):
        make_waiting_queue("laps", {"max_wait_s": 0})


def test_sjf_serves_the_shortest_prediction_first_and_preempts_the_longest():
    queue = make_waiting_queue("sjf", predictor=make_predictor("oracle"))
    for uid, output in enumerate([300, 20, 100, 20]):
        queue.add(req(uid, arrival=uid, output=output))
    assert drain(queue) == ["r1", "r3", "r2", "r0"]
    running = [req(0, output=50), req(1, output=500), req(2, output=5)]
    assert queue.pick_victim(running).request_id == "r1"


def test_srpt_ranks_a_preempted_request_by_what_it_has_left():
    queue = make_waiting_queue("srpt", predictor=make_predictor("oracle"))
    long_done = req(0, output=300)
    long_done.num_output = 290  # 10 left
    queue.requeue(long_done)
    queue.add(req(1, output=50))
    assert drain(queue) == ["r0", "r1"]


def test_edf_orders_by_deadline_then_targets_and_puts_requests_without_any_last():
    queue = make_waiting_queue("edf")
    queue.add(req(0, arrival=0.0))                                    # no target
    queue.add(req(1, arrival=1.0, deadline_s=10.0))                    # due 11
    queue.add(req(2, arrival=2.0, slo=SLO(e2e_ms=5000)))               # due 7
    queue.add(req(3, arrival=3.0, slo=SLO(ttft_ms=500)))               # due 3.5
    assert drain(queue) == ["r3", "r2", "r1", "r0"]


def test_slack_serves_least_slack_first_and_moves_hopeless_requests_back():
    queue = make_waiting_queue("slack", predictor=make_predictor("oracle"))
    # Latest starts: r0 due 10 less 100 tokens x 50 ms = 5; r1 due 8 less 10 x 50 ms = 7.5.
    queue.add(req(0, output=100, deadline_s=10.0))
    queue.add(req(1, output=10, deadline_s=8.0))
    queue.add(req(2, arrival=0.5))  # no target
    queue.advance(1.0)
    assert queue.peek().request_id == "r0"
    queue.advance(6.0)  # r0 can no longer make it: behind r2 (earlier arrival first among the rest)
    assert drain(queue) == ["r1", "r0", "r2"]


def test_vtc_gives_the_least_served_tenant_the_next_turn_and_lifts_newcomers():
    queue = make_waiting_queue("vtc")
    flood = [req(i, arrival=i * 0.01, prompt=100, output=10, tenant="flood") for i in range(4)]
    for r in flood:
        queue.add(r)
    queue.advance(0.0)
    first = queue.pop()
    first.num_computed = 100
    queue.served(first, 100)  # flood: 100 prompt tokens served
    quiet = req(9, arrival=1.0, prompt=100, output=10, tenant="quiet")
    queue.add(quiet)
    queue.advance(1.0)
    # The newcomer is lifted to the backlogged tenants' least counter, not below.
    assert queue.counters["quiet"] == queue.counters["flood"] == 100
    assert queue.pop().request_id == "r1"  # tie: the older head goes first
    queue.served(flood[1], 50)
    assert queue.pop() is quiet
    running = [flood[1], quiet]
    assert queue.pick_victim(running) is flood[1]


def test_laps_serves_short_prompts_first_until_a_long_one_waited_too_long():
    queue = make_waiting_queue("laps", {"short_tokens": 100, "max_wait_s": 2.0})
    queue.add(req(0, arrival=0.0, prompt=1000))
    queue.add(req(1, arrival=0.5, prompt=50))
    shared = req(2, arrival=0.6, prompt=1000, shared=(Span(1, 0, 950),))  # a follow-up: 50 new tokens
    queue.add(shared)
    queue.advance(1.0)
    assert queue.pop().request_id == "r1"
    assert queue.pop() is shared
    queue.add(req(3, arrival=1.5, prompt=50))
    queue.advance(2.5)  # r0 has waited 2.5 s
    assert drain(queue) == ["r0", "r3"]


def test_past_future_admits_only_what_the_projected_peak_fits():
    kv = KVCacheManager(20, 16)  # 320 tokens
    queue = make_waiting_queue("past_future", predictor=make_predictor("oracle"))
    running = [req(i, prompt=64, output=64) for i in range(2)]  # each grows to 128 tokens: 16 blocks
    for r in running:
        assert kv.allocate(r, 64)
        r.num_computed = 64
    ctx = StepContext(0.0, running, kv, 0)
    assert queue.admit(req(5, prompt=16, output=16), 16, ctx) == 16  # peak ~ 18 blocks
    assert queue.admit(req(6, prompt=64, output=64), 64, ctx) == 0  # would need ~ 25


def test_filler_keeps_best_effort_work_within_the_batch_budget():
    queue = make_waiting_queue("filler", {"batch_tokens": 100})
    batch = req(0, prompt=500, slo_class="batch")
    chat = req(1, arrival=1.0, prompt=50, slo_class="interactive")
    queue.add(batch)
    queue.add(chat)
    assert queue.peek() is chat  # interactive first
    kv = KVCacheManager(100, 16)
    assert queue.admit(chat, 50, StepContext(0.0, [], kv, 80)) == 50
    assert queue.admit(batch, 500, StepContext(0.0, [], kv, 80)) == 20
    assert queue.admit(batch, 500, StepContext(0.0, [], kv, 100)) == 0
    assert queue.pick_victim([batch, chat]) is batch


def test_filler_in_an_engine_never_gives_best_effort_prefills_more_than_the_budget():
    specs = [RequestSpec(f"b{i}", 0.0, 400, 20, slo_class="batch") for i in range(4)]
    specs += [RequestSpec(f"i{i}", 0.05 * i, 30, 20, slo_class="interactive") for i in range(10)]
    cfg = SchedulerConfig(max_num_batched_tokens=512, policy="filler", policy_options=(("batch_tokens", 64),))
    engine = EngineCore(cfg, KVCacheManager(500, 16), check_invariants=True)
    for spec in specs:
        engine.add_request(spec, spec.arrival_s)
    now = 0.0
    while engine.has_work():
        out = engine.schedule(now)
        best_effort_prefill = sum(n for r, n in out.scheduled if r.spec.slo_class == "batch" and n > 1)
        interactive = sum(n for r, n in out.scheduled if r.spec.slo_class != "batch")
        assert best_effort_prefill <= max(0, 64 - interactive) or best_effort_prefill == 0
        now += 0.01
        engine.update(out, now)
    assert engine.stats.tokens == sum(s.prompt_len + s.output_len - 1 for s in specs)


@pytest.mark.parametrize("policy", POLICIES.names())
def test_every_request_finishes_once_under_every_policy(policy):
    specs = [RequestSpec(f"r{i}", 0.02 * i, 50 + 37 * (i % 7), 5 + 41 * (i % 5), tenant="ab"[i % 2],
                         slo_class=("batch" if i % 3 == 0 else "interactive"), slo=SLO(ttft_ms=300, e2e_ms=4000),
                         deadline_s=3.0 + i % 4) for i in range(60)]
    cfg = SchedulerConfig(max_num_seqs=8, max_num_batched_tokens=256, policy=policy)
    result = simulate(specs, num_blocks=80, replicas=2, config=cfg, predictor=("histogram", {"min_samples": 4}))
    assert sorted(r.request_id for r in result.records) == sorted(s.request_id for s in specs)
    assert all(r.output_tokens == s.output_len for r, s in
               zip(sorted(result.records, key=lambda r: r.request_id), sorted(specs, key=lambda s: s.request_id)))
