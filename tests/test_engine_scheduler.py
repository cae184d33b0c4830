"""Scheduler and KV cache behaviour: budget, chunking, preemption, prefix hits, invariants."""

from __future__ import annotations

import random

import pytest

from kairos.engine import EngineCore, KVCacheManager, RequestStatus, SchedulerConfig
from kairos.workload.spec import RequestSpec, Span

from helpers import simulate


def spec(i: int, prompt: int, output: int, t: float = 0.0, **kw) -> RequestSpec:
    return RequestSpec(f"r{i}", t, prompt, output, **kw)


def run_engine(core: EngineCore, specs, dt=0.01, max_steps=100_000):
    """Step an engine to completion with a fixed step time; returns the outputs."""
    for s in specs:
        core.add_request(s, 0.0)
    now, outs = 0.0, []
    while core.has_work() and len(outs) < max_steps:
        out = core.schedule(now)
        now += dt
        outs.append(out)
        core.update(out, now)
        core.kv.check_invariants()
    return outs


def test_chunked_prefill_never_exceeds_budget():
    cfg = SchedulerConfig(max_num_seqs=8, max_num_batched_tokens=512)
    core = EngineCore(cfg, KVCacheManager(4000, 16))
    rng = random.Random(1)
    outs = run_engine(core, [spec(i, rng.randint(1, 3000), rng.randint(1, 50)) for i in range(40)])
    assert all(o.num_tokens <= 512 for o in outs)
    assert all(len(o.scheduled) <= 8 for o in outs)
    # Long prompts really were split across steps.
    assert any(len(o.shape.prefill_new) and max(o.shape.prefill_new) == 512 for o in outs)
    assert not core.has_work()


def test_decodes_go_before_prefill_chunks():
    cfg = SchedulerConfig(max_num_seqs=8, max_num_batched_tokens=64)
    core = EngineCore(cfg, KVCacheManager(1000, 16))
    core.add_request(spec(0, 10, 20), 0.0)
    out = core.schedule(0.0)
    core.update(out, 0.01)
    core.add_request(spec(1, 500, 5), 0.01)
    out = core.schedule(0.01)
    # The running decode takes one token; the new prompt gets the remaining 63.
    assert [(r.request_id, n) for r, n in out.scheduled] == [("r0", 1), ("r1", 63)]


def test_batch_shape_counts_decodes_by_sum_and_longest():
    core = EngineCore(SchedulerConfig(max_num_seqs=8, max_num_batched_tokens=4096), KVCacheManager(1000, 16))
    for i, prompt in enumerate((10, 300, 40)):
        core.add_request(spec(i, prompt, 5), 0.0)
    out = core.schedule(0.0)
    core.update(out, 0.01)
    shape = core.schedule(0.01).shape
    # Each decode attends to its prompt and the token sampled after it.
    assert (shape.num_decodes, shape.decode_kv_sum, shape.decode_kv_max) == (3, 11 + 301 + 41, 301)


def test_preemption_when_kv_runs_out_and_all_finish():
    cfg = SchedulerConfig(max_num_seqs=32, max_num_batched_tokens=2048)
    kv = KVCacheManager(60, 16)  # 960 tokens of KV for 10 requests needing ~300 each
    core = EngineCore(cfg, kv)
    specs = [spec(i, 100, 200) for i in range(10)]
    run_engine(core, specs)
    assert core.scheduler.num_preemptions > 0
    assert kv.num_used_blocks == 0


def test_fcfs_preempts_newest_first():
    cfg = SchedulerConfig(max_num_seqs=4, max_num_batched_tokens=4096)
    core = EngineCore(cfg, KVCacheManager(12, 16, enable_prefix_caching=False))
    reqs = [core.add_request(spec(i, 40, 100), 0.0) for i in range(4)]
    now = 0.0
    while core.scheduler.num_preemptions == 0:
        out = core.schedule(now)
        now += 0.01
        core.update(out, now)
    assert reqs[3].preemptions == 1 and reqs[3].status == RequestStatus.PREEMPTED
    assert all(r.preemptions == 0 for r in reqs[:3])


def test_priority_policy_serves_urgent_first_and_preempts_lowest():
    cfg = SchedulerConfig(max_num_seqs=1, max_num_batched_tokens=4096, policy="priority")
    core = EngineCore(cfg, KVCacheManager(100, 16))
    core.add_request(spec(0, 10, 2, priority=5), 0.0)
    core.add_request(spec(1, 10, 2, priority=0), 0.0)
    out = core.schedule(0.0)
    assert [r.request_id for r, _ in out.scheduled] == ["r1"]


def test_prefix_hit_reuses_blocks_and_counts_stats():
    cfg = SchedulerConfig()
    kv = KVCacheManager(100, 16)
    core = EngineCore(cfg, kv)
    shared = (Span(7, 0, 320),)
    a = core.add_request(spec(0, 400, 3, shared=shared), 0.0)
    run_engine(core, [])
    b = core.add_request(spec(1, 400, 3, shared=shared), 1.0)
    out = core.schedule(1.0)
    assert b.cached_tokens == 320
    assert out.scheduled == [(b, 80)]
    assert kv.stats.hits == 320 and kv.stats.queries == 800
    assert a.cached_tokens == 0


def test_full_prompt_hit_still_computes_last_token():
    kv = KVCacheManager(100, 16)
    core = EngineCore(SchedulerConfig(), kv)
    shared = (Span(9, 0, 64),)
    run_engine(core, [spec(0, 64, 2, shared=shared)])
    b = core.add_request(spec(1, 64, 2, shared=shared), 1.0)
    out = core.schedule(1.0)
    assert b.cached_tokens == 48 and out.scheduled[0][1] == 16


def test_resumed_request_hits_its_own_blocks():
    kv = KVCacheManager(1000, 16)
    core = EngineCore(SchedulerConfig(), kv)
    req = core.add_request(spec(0, 200, 50), 0.0)
    out = core.schedule(0.0)
    core.update(out, 0.1)
    core.scheduler.running.remove(req)
    core.scheduler._preempt(req)
    kv.check_invariants()
    out = core.schedule(0.2)
    # 201 tokens to recompute; 12 full blocks (192 tokens) come back from the cache.
    assert out.scheduled == [(req, 9)]


@pytest.mark.parametrize("seed", range(4))
def test_invariants_on_random_workloads(seed):
    rng = random.Random(seed)
    specs = []
    t = 0.0
    for i in range(120):
        t += rng.expovariate(20.0)
        shared = (Span(rng.randint(0, 3), 0, rng.choice([0, 64, 200])),) if rng.random() < 0.5 else ()
        prompt = rng.randint(1, 600) + (shared[0].length if shared else 0)
        specs.append(spec(i, prompt, rng.randint(1, 120), t, shared=shared,
                          priority=rng.randint(0, 3)))
    policy = rng.choice(["fcfs", "priority"])
    cfg = SchedulerConfig(max_num_seqs=rng.choice([4, 16, 64]),
                          max_num_batched_tokens=rng.choice([128, 512, 2048]), policy=policy)
    result = simulate(specs, num_blocks=rng.choice([80, 200, 2000]), config=cfg,
                      replicas=rng.choice([1, 2]), router="least_outstanding")
    assert len(result.records) == len(specs)
    assert len({r.request_id for r in result.records}) == len(specs)
    for rec, s in zip(sorted(result.records, key=lambda r: r.request_id),
                      sorted(specs, key=lambda s: s.request_id)):
        assert rec.rejected_reason is None
        assert rec.output_tokens == s.output_len
        assert rec.arrival_s <= rec.first_scheduled_s <= rec.first_token_s <= rec.finish_s


def test_reset_prefix_cache_forgets_idle_content_only():
    kv = KVCacheManager(100, 16)
    core = EngineCore(SchedulerConfig(), kv)
    shared = (Span(5, 0, 160),)
    run_engine(core, [spec(0, 200, 2, shared=shared)])
    # Every full block it computed stays cached (201 tokens: 12 blocks), as in vLLM.
    assert kv.num_cached_blocks == 12
    kv.reset_prefix_cache()
    kv.check_invariants()
    assert kv.num_cached_blocks == 0 and kv.num_free_blocks == 100
    b = core.add_request(spec(1, 200, 2, shared=shared), 1.0)
    core.schedule(1.0)
    assert b.cached_tokens == 0
