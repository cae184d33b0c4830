"""Prefill/decode disaggregation in the engine core, as vLLM v1 runs it with a pull connector.

Decode side (`remote_prefill`, vLLM's do_remote_prefill): admission reserves the
whole prompt's blocks and waits for the transfer (WAITING_FOR_REMOTE_KVS) without
computing; once it lands, a one-token step samples the first token. Prefill side
(`remote_decode`, do_remote_decode): the request ends with its first token and
keeps its blocks until the decode side has pulled them (delay_free_blocks).
"""

from __future__ import annotations

import random

import pytest

from kairos.engine import EngineCore, KVCacheManager, Request, RequestStatus, SchedulerConfig
from kairos.engine.block_hash import prompt_prefix_hashes
from kairos.engine.scheduler import BLOCKED_KV
from kairos.workload.spec import RequestSpec, Span

BS = 16
LOADING = RequestStatus.WAITING_FOR_REMOTE_KV


def spec(name: str, prompt: int, output: int = 5, **kw) -> RequestSpec:
    return RequestSpec(name, 0.0, prompt, output, **kw)


def engine(num_blocks: int = 100, prefix: bool = True, **cfg) -> EngineCore:
    return EngineCore(SchedulerConfig(**cfg), KVCacheManager(num_blocks, BS, prefix), check_invariants=True)


def step(core: EngineCore, now: float, dt: float = 0.01):
    """Schedule and update one step; returns its output, result and the time it ended."""
    out = core.schedule(now)
    result = core.update(out, now + dt)
    core.check_kv()
    return out, result, now + dt


def run_until_idle(core: EngineCore, now: float) -> float:
    while core.has_work():
        _, _, now = step(core, now)
    return now


def test_admission_reserves_the_whole_prompt_and_reports_the_transfer():
    core = engine()
    r = core.add_request(spec("r", 100), 0.0, remote_prefill=True)
    out = core.schedule(0.0)
    assert out.remote_kv == [(r, 100)] and out.scheduled == [] and out.num_admitted == 0
    assert r.status == LOADING and r.num_computed == 0
    assert len(core.kv.block_table(r)) == 7  # ceil(100 / 16)
    assert core.kv.num_used_blocks == 7
    assert r.first_scheduled_s is None and r.cached_tokens == 0
    # Not running, still counted as waiting (as vLLM counts it), and no work until it lands.
    assert core.num_running == 0 and core.num_waiting == 1 and not core.has_work()
    core.check_kv()


def test_blocked_while_kv_is_short_then_admitted():
    core = engine(num_blocks=10)
    a = core.add_request(spec("a", 80, 3), 0.0)  # 5 blocks, then a 6th for its output
    out, _, now = step(core, 0.0)
    r = core.add_request(spec("r", 100), now, remote_prefill=True)  # 7 blocks
    out, _, now = step(core, now)
    assert out.remote_kv == [] and out.waiting_blocked == BLOCKED_KV
    assert r.status == RequestStatus.WAITING and not core.kv.block_table(r)
    while a.status != RequestStatus.FINISHED:
        out, _, now = step(core, now)
        assert out.remote_kv == []
    out = core.schedule(now)
    assert out.remote_kv == [(r, 100)] and r.status == LOADING


def test_requests_behind_it_are_admitted_and_it_neither_counts_as_running_nor_takes_budget():
    core = engine(max_num_seqs=1, max_num_batched_tokens=64)
    r = core.add_request(spec("r", 100), 0.0, remote_prefill=True)
    b = core.add_request(spec("b", 64, 3), 0.0)
    out = core.schedule(0.0)
    assert out.remote_kv == [(r, 100)]
    assert out.scheduled == [(b, 64)] and out.num_admitted == 1
    core.update(out, 0.01)
    core.check_kv()


def test_nothing_is_computed_until_the_kv_lands():
    core = engine()
    r = core.add_request(spec("r", 100), 0.0, remote_prefill=True)
    core.add_request(spec("b", 30, 20), 0.0)
    now = 0.0
    for _ in range(30):
        out, _, now = step(core, now)
        assert all(req is not r for req, _ in out.scheduled)
    assert r.status == LOADING and r.num_computed == 0 and r.num_output == 0
    assert not core.has_work()  # b is done; r only waits for its transfer
    assert core.schedule(now).is_empty


def test_after_landing_one_token_step_samples_the_first_token_then_it_decodes():
    core = engine()
    r = core.add_request(spec("r", 100, 4), 0.0, remote_prefill=True)
    core.schedule(0.0)
    core.remote_kv_landed(r)
    assert r.status == RequestStatus.WAITING and r.num_computed == 99 and core.has_work()
    core.check_kv()
    out, result, now = step(core, 1.0)
    assert out.scheduled == [(r, 1)] and out.num_admitted == 1
    assert out.shape.prefill_new == (1,) and out.shape.prefill_ctx == (99,) and out.shape.num_sampled == 1
    assert result.first_tokens == [r] and r.num_output == 1
    # Queue time runs to this admission, as vLLM's SCHEDULED event does.
    assert r.first_scheduled_s == 1.0 and r.first_token_s == now
    out, _, now = step(core, now)
    assert out.shape.num_decodes == 1 and out.shape.decode_kv_sum == 101
    now = run_until_idle(core, now)
    assert r.status == RequestStatus.FINISHED and r.num_output == 4 and core.kv.num_used_blocks == 0


def test_local_prefix_hits_shrink_the_transfer():
    core = engine()
    shared = (Span(3, 0, 64),)
    core.add_request(spec("a", 80, 2, shared=shared), 0.0)
    run_until_idle(core, 0.0)
    r = core.add_request(spec("r", 100, shared=shared), 1.0, remote_prefill=True)
    out = core.schedule(1.0)
    assert out.remote_kv == [(r, 36)] and r.cached_tokens == 64
    assert core.kv.stats.hits == 64 and core.kv.stats.queries == 80 + 100
    core.remote_kv_landed(r)
    assert r.num_computed == 99


def test_a_whole_prompt_hit_still_pulls_its_last_block():
    # The local hit stops short of the last token (as vLLM's), so the connector
    # reports the rest as external: a transfer always brings at least one token.
    core = engine()
    shared = (Span(4, 0, 64),)
    core.add_request(spec("a", 64, 2, shared=shared), 0.0)
    run_until_idle(core, 0.0)
    r = core.add_request(spec("r", 64, shared=shared), 1.0, remote_prefill=True)
    assert core.schedule(1.0).remote_kv == [(r, 16)]
    core.remote_kv_landed(r)
    assert r.num_computed == 63


def test_loaded_blocks_enter_the_prefix_cache_only_when_they_land():
    core = engine()
    kv = core.kv
    s = spec("r", 100, shared=(Span(5, 0, 64),))
    r = core.add_request(s, 0.0, remote_prefill=True)
    core.schedule(0.0)
    hashes = prompt_prefix_hashes(s, BS)
    assert len(hashes) == 4 and kv.probe(hashes) == 0 and kv.num_cached_blocks == 0
    core.remote_kv_landed(r)
    assert kv.probe(hashes) == 4 and kv.num_cached_blocks == 4
    core.check_kv()
    d = core.add_request(spec("d", 90, shared=(Span(5, 0, 64),)), 1.0)
    core.schedule(1.0)
    assert d.cached_tokens == 64


def test_token_id_prompt_caches_its_full_blocks_on_landing():
    core = engine()
    ids = tuple(range(100))
    r = core.add_request(spec("r", 100, prompt_token_ids=ids), 0.0, remote_prefill=True)
    core.schedule(0.0)
    assert core.kv.num_cached_blocks == 0
    core.remote_kv_landed(r)
    assert core.kv.num_cached_blocks == 6  # 100 // 16 full blocks
    b = core.add_request(spec("b", 100, prompt_token_ids=ids), 0.0)
    core.schedule(0.0)
    assert b.cached_tokens == 96


def test_landed_request_goes_before_a_waiting_one_blocked_on_kv():
    # vLLM 0.32 drains requests holding KV blocks before the waiting queue, so a
    # low-priority landed request is not stuck behind one that cannot get blocks.
    core = engine(num_blocks=10, policy="priority")
    r = core.add_request(spec("r", 40, priority=5), 0.0, remote_prefill=True)
    core.schedule(0.0)
    w = core.add_request(spec("w", 120, priority=0), 0.0)  # 8 blocks: not beside r's 3
    core.remote_kv_landed(r)
    out = core.schedule(0.0)
    assert out.scheduled == [(r, 1)] and out.waiting_blocked == BLOCKED_KV
    assert w.status == RequestStatus.WAITING


def test_a_loading_request_is_never_preempted():
    core = engine(num_blocks=12, prefix=False)
    a = core.add_request(spec("a", 40, 100), 0.0)
    b = core.add_request(spec("b", 40, 100), 0.0)
    r = core.add_request(spec("r", 40), 0.0, remote_prefill=True)  # the newest: fcfs's first victim if running
    now = 0.0
    while core.scheduler.num_preemptions == 0:
        out, _, now = step(core, now)
        assert r not in out.preempted
    assert r.status == LOADING and r.preemptions == 0 and b.preemptions == 1
    assert len(core.kv.block_table(r)) == 3 and a.status == RequestStatus.RUNNING


def test_decode_window_runs_past_a_loading_request():
    core = engine()
    core.add_request(spec("a", 20, 50), 0.0)
    out, _, now = step(core, 0.0)
    r = core.add_request(spec("r", 100), now, remote_prefill=True)
    out = core.schedule(now)
    assert out.remote_kv == [(r, 100)] and out.shape.num_decodes == 1
    # The loading request is no admissible work: the window runs to the completion.
    assert core.steady_decode_steps(out, 1000) == 49
    core.update(out, now + 0.01)
    core.remote_kv_landed(r)
    out = core.schedule(now + 0.01)
    assert out.num_admitted == 1 and core.steady_decode_steps(out, 1000) == 0


def test_prefill_only_request_holds_its_blocks_until_released():
    core = engine(num_blocks=10)
    kv = core.kv
    p = core.add_request(spec("p", 100, 50), 0.0, remote_decode=True)
    assert p.max_output == 1
    out, result, now = step(core, 0.0)
    assert result.finished == [p] and result.first_tokens == [p] and p.finish_reason == "length"
    assert p.status == RequestStatus.FINISHED and kv.num_used_blocks == 7 and core.held == {p.uid: p}
    assert not core.has_work()
    # The held blocks are not free: a request needing them waits.
    c = core.add_request(spec("c", 60, 2), now)
    out, _, now = step(core, now)
    assert out.waiting_blocked == BLOCKED_KV and c.status == RequestStatus.WAITING
    core.release_held(p)
    core.check_kv()
    # Released like any finished request: its 6 full blocks are cached and free to evict.
    assert kv.num_used_blocks == 0 and kv.num_cached_blocks == 6 and kv.num_free_blocks == 10
    with pytest.raises(ValueError):
        core.release_held(p)
    out, _, now = step(core, now)
    assert out.scheduled == [(c, 60)]


def test_aborted_prefill_only_request_frees_at_once():
    core = engine()
    p = core.add_request(spec("p", 100), 0.0, remote_decode=True)
    core.abort(p, 0.0)
    assert core.held == {} and core.kv.num_used_blocks == 0


def test_abort_while_loading_keeps_the_blocks_until_the_transfer_ends():
    # vLLM frees an aborted request's blocks only once the load into them is done,
    # and caches none of them: their content never arrived.
    core = engine()
    r = core.add_request(spec("r", 100, shared=(Span(6, 0, 64),)), 0.0, remote_prefill=True)
    core.schedule(0.0)
    core.abort(r, 0.5)
    assert r.status == RequestStatus.FINISHED and core.kv.num_used_blocks == 7 and core.num_waiting == 0
    core.check_kv()
    core.remote_kv_landed(r)
    core.check_kv()
    assert core.kv.num_used_blocks == 0 and core.kv.num_cached_blocks == 0
    with pytest.raises(ValueError):
        core.remote_kv_landed(r)


def test_landing_twice_is_an_error():
    core = engine()
    r = core.add_request(spec("r", 100), 0.0, remote_prefill=True)
    core.schedule(0.0)
    core.remote_kv_landed(r)
    with pytest.raises(ValueError):
        core.remote_kv_landed(r)


def test_preempted_after_landing_recomputes_locally():
    # One transfer per request (NixlConnector clears do_remote_prefill): a resumed
    # request computes its prompt itself.
    core = engine()
    r = core.add_request(spec("r", 100, 10), 0.0, remote_prefill=True)
    core.schedule(0.0)
    core.remote_kv_landed(r)
    _, _, now = step(core, 0.0)
    core.scheduler.running.remove(r)
    core.scheduler._preempt(r)
    out = core.schedule(now)
    assert out.remote_kv == [] and out.scheduled and out.scheduled[0][0] is r


@pytest.mark.parametrize("seed", range(6))
def test_blocks_are_conserved_on_random_disaggregated_traffic(seed):
    rng = random.Random(seed)
    core = EngineCore(SchedulerConfig(max_num_seqs=rng.choice([2, 4, 16]),
                                      max_num_batched_tokens=rng.choice([32, 128, 512]),
                                      policy=rng.choice(["fcfs", "priority"])),
                      KVCacheManager(rng.choice([24, 40, 400]), BS, rng.random() < 0.8),
                      check_invariants=True)
    arrivals = []
    for i in range(60):
        shared = (Span(rng.randint(0, 2), 0, rng.choice([16, 64])),) if rng.random() < 0.5 else ()
        kind = rng.choice(["local", "remote_prefill", "remote_decode"])
        arrivals.append((rng.randint(0, 300), spec(f"r{i}", rng.randint(1, 180) + (shared[0].length if shared else 0),
                                                     rng.randint(1, 120), shared=shared, priority=rng.randint(0, 2)),
                         kind))
    arrivals.sort(key=lambda a: a[0])
    landings: dict[int, list[Request]] = {}
    releases: dict[int, list[Request]] = {}
    live: list[Request] = []
    reqs: list[Request] = []
    now, tick = 0.0, 0
    while tick < 20_000 and (arrivals or core.has_work() or core.scheduler.loading or core.held):
        while arrivals and arrivals[0][0] <= tick:
            _, s, kind = arrivals.pop(0)
            req = core.add_request(s, now, remote_prefill=kind == "remote_prefill",
                                   remote_decode=kind == "remote_decode")
            reqs.append(req)
            live.append(req)
        for req in landings.pop(tick, ()):
            core.remote_kv_landed(req)
        for req in releases.pop(tick, ()):
            core.release_held(req)
        if live and rng.random() < 0.01:
            victim = live.pop(rng.randrange(len(live)))
            core.abort(victim, now)
        out = core.schedule(now)
        loading = set(map(id, core.scheduler.loading.values()))
        assert not any(id(r) in loading for r, _ in out.scheduled)
        for req, n in out.remote_kv:
            assert n > 0 and req.status == LOADING
            landings.setdefault(tick + rng.randint(1, 12), []).append(req)
        now += 0.01
        result = core.update(out, now)
        for req in result.finished:
            live.remove(req)
            if req.uid in core.held:
                releases.setdefault(tick + rng.randint(1, 8), []).append(req)
        core.check_kv()
        tick += 1
    assert all(r.status == RequestStatus.FINISHED for r in reqs)
    assert not core.held and not core.scheduler.loading and core.kv.num_used_blocks == 0
    for r in reqs:
        if r.finish_reason == "length":
            assert r.num_output == r.max_output
            assert r.first_scheduled_s is not None and r.first_scheduled_s <= r.first_token_s <= r.finish_s


# ---- live migration into an engine: reserve first, then load ------------------------------
def decoding(core: EngineCore, prompt: int = 100, output: int = 20, steps: int = 5) -> tuple[Request, float]:
    """A request on `core` that has decoded `steps` tokens."""
    req = core.add_request(spec("m", prompt, output), 0.0)
    now = 0.0
    for _ in range(steps):
        _, _, now = step(core, now)
    return req, now


def test_a_reservation_holds_blocks_that_grow_then_load_the_migrated_request():
    source, target = engine(), engine(num_blocks=20)
    req, now = decoding(source)
    reserved = target.reserve(req, req.num_computed + 1)
    assert reserved is not None and reserved.status == RequestStatus.RESERVED
    assert target.kv.num_used_blocks == 7 and not target.has_work() and target.num_waiting == 0
    target.check_kv()
    assert target.reserve_more(reserved, 120) and target.kv.num_used_blocks == 8
    assert not target.reserve_more(reserved, 400) and target.kv.num_used_blocks == 8  # nothing changes
    for _ in range(3):
        _, _, now = step(source, now)
    source.detach(req)
    assert target.load_reserved(reserved, req)
    assert reserved.status == LOADING and reserved.num_output == req.num_output == 8
    assert reserved.first_token_s == req.first_token_s and not target.reserved
    target.check_kv()
    target.remote_kv_landed(reserved)
    source.release_held(req)
    out, _, now = step(target, now)
    assert out.scheduled == [(reserved, 1)] and reserved.num_output == 9
    run_until_idle(target, now)
    assert reserved.num_output == 20 and target.kv.num_used_blocks == 0 == source.kv.num_used_blocks


def test_a_reservation_that_does_not_fit_takes_nothing_and_a_released_one_gives_all_back():
    source, target = engine(), engine(num_blocks=5)
    req, _ = decoding(source)
    assert target.reserve(req, req.num_tokens) is None
    assert target.kv.num_used_blocks == 0 and not target.reserved
    target.check_kv()
    reserved = target.reserve(req, 64)
    assert not target.load_reserved(reserved, req)  # 105 tokens need 7 blocks: the request stays where it is
    assert reserved.status == RequestStatus.RESERVED and reserved.num_output == 0
    target.release_reservation(reserved)
    assert target.kv.num_used_blocks == 0 and target.kv.num_free_blocks == 5
    target.check_kv()


def test_a_queued_request_that_never_ran_is_withdrawn_and_one_that_ran_is_not():
    core = engine(max_num_seqs=1)
    ran, _ = decoding(core, steps=1)
    queued = core.add_request(spec("q", 50), 0.0)
    core.withdraw(queued)
    assert core.num_waiting == 0 and queued.status == RequestStatus.MIGRATED
    with pytest.raises(ValueError, match="has run here"):
        core.withdraw(ran)
    core.check_kv()
