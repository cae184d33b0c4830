"""The engine core decides as vLLM 0.32's v1 scheduler and KV cache manager do.

Each test names the vLLM behaviour it checks; the scenarios are built so that
the behaviour changes an observable outcome (a prefix hit, a victim, a counter).
"""

from __future__ import annotations

from kairos.engine import EngineCore, KVCacheManager, Request, SchedulerConfig
from kairos.workload.spec import RequestSpec, Span

BS = 16


def spec(name: str, prompt: int, output: int = 1, t: float = 0.0, **kw) -> RequestSpec:
    return RequestSpec(name, t, prompt, output, **kw)


def run_to_end(core: EngineCore, s: RequestSpec, now: float) -> tuple[Request, float]:
    """Add one request and step until the engine is idle; returns it and the time."""
    req = core.add_request(s, now)
    while core.has_work():
        out = core.schedule(now)
        now += 0.01
        core.update(out, now)
        core.kv.check_invariants()
    return req, now


def admit(core: EngineCore, s: RequestSpec, now: float) -> Request:
    """Add one request and schedule one step; returns the request."""
    req = core.add_request(s, now)
    core.schedule(now)
    return req


def test_unshared_blocks_are_cached_and_evicted_in_release_order():
    # vLLM caches every full block a request computed, its own tokens too, and a
    # finished request frees them tail first to the end of the LRU free queue
    # (block_pool.py free_blocks). So a later allocation evicts the older
    # request's tail blocks, then its shared prefix, before a newer request's
    # blocks: only the first block of A's prefix is left to hit.
    kv = KVCacheManager(10, BS)
    core = EngineCore(SchedulerConfig(), kv)
    _, now = run_to_end(core, spec("a", 64, shared=(Span(1, 0, 32),)), 0.0)
    _, now = run_to_end(core, spec("b", 64, shared=(Span(2, 0, 32),)), now)
    assert kv.num_cached_blocks == 8
    _, now = run_to_end(core, spec("c", 80), now)  # 2 free blocks and 3 evicted: A's tail, then A1
    d = admit(core, spec("d", 48, shared=(Span(1, 0, 48),)), now)
    assert d.cached_tokens == BS


def test_duplicate_block_is_cached_and_serves_hits_after_the_first_copy_is_evicted():
    # A full-prompt hit stops at num_tokens - 1 (kv_cache_manager.py
    # get_computed_blocks), so B recomputes A's last block into a block of its
    # own. vLLM caches that copy too (BlockHashToBlockMap.insert keeps both) and
    # frees it into the LRU, so evicting A's copy leaves B's to hit.
    kv = KVCacheManager(20, BS)
    core = EngineCore(SchedulerConfig(), kv)
    prefix = (Span(1, 0, 64),)
    _, now = run_to_end(core, spec("a", 64, shared=prefix), 0.0)
    _, now = run_to_end(core, spec("e", 32, shared=(Span(2, 0, 32),)), now)
    b, now = run_to_end(core, spec("b", 64, shared=prefix), now)
    assert b.cached_tokens == 48
    assert kv.num_cached_blocks == 7  # A's 4, E's 2 and B's copy of A's last block
    # LRU: A3, E1, E0, B3, A2, A1, A0. C takes the 13 free blocks and evicts A3, E1, E0.
    _, now = run_to_end(core, spec("c", 16 * 16), now)
    d = admit(core, spec("d", 80, shared=(Span(1, 0, 80),)), now)
    assert d.cached_tokens == 64


def test_request_admitted_in_the_same_step_hits_blocks_allocated_but_not_yet_computed():
    # vLLM caches a request's full blocks when it allocates them for the tokens
    # it schedules (allocate_slots -> cache_blocks), so a request admitted after
    # it in the same step already hits them.
    kv = KVCacheManager(100, BS)
    core = EngineCore(SchedulerConfig(max_num_batched_tokens=512), kv)
    prefix = (Span(3, 0, 64),)
    a = core.add_request(spec("a", 64, shared=prefix), 0.0)
    b = core.add_request(spec("b", 100, shared=prefix), 0.0)
    out = core.schedule(0.0)
    assert out.scheduled == [(a, 64), (b, 36)]
    assert b.cached_tokens == 64


def test_prefix_cache_counters_count_nothing_when_caching_is_off():
    # KVCacheManager.record_prefix_cache_stats returns early when the prefix cache
    # lookup is disabled: vllm:prefix_cache_queries stays 0.
    kv = KVCacheManager(100, BS, enable_prefix_caching=False)
    core = EngineCore(SchedulerConfig(), kv)
    run_to_end(core, spec("a", 100, 3), 0.0)
    assert (kv.stats.queries, kv.stats.hits) == (0, 0)


def test_resumed_request_is_not_counted_again_in_prefix_cache_counters():
    # PrefixCacheStats.record puts a preempted request's lookup in preempted_*,
    # which vllm:prefix_cache_queries/hits do not include.
    kv = KVCacheManager(100, BS)
    core = EngineCore(SchedulerConfig(), kv)
    req = core.add_request(spec("a", 100, 5), 0.0)
    core.update(core.schedule(0.0), 0.1)
    core.scheduler.running.remove(req)
    core.scheduler._preempt(req)
    out = core.schedule(0.2)
    assert out.scheduled == [(req, 101 - 96)]  # resumed with its own 6 blocks cached
    assert (kv.stats.queries, kv.stats.hits) == (100, 0)


def test_priority_victim_among_equal_ranks_is_the_first_running_request():
    # vLLM picks max(running, key=(priority, arrival_time)): among requests of the
    # same priority that arrived together the first in running order is preempted,
    # even when it was already scheduled this step.
    kv = KVCacheManager(5, BS, enable_prefix_caching=False)
    core = EngineCore(SchedulerConfig(policy="priority"), kv)
    a = core.add_request(spec("a", 32, 50), 0.0)
    b = core.add_request(spec("b", 32, 50), 0.0)
    core.update(core.schedule(0.0), 0.1)
    out = core.schedule(0.1)  # a takes the last free block for its next token; b needs one
    assert out.preempted == [a]
    assert out.scheduled == [(b, 1)]
    assert (a.preemptions, b.preemptions) == (1, 0)
