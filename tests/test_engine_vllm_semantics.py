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
