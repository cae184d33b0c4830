"""The steady-decode fast path gives exactly the timelines of stepping one iteration at a time."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from kairos.cluster import make_router
from kairos.cluster.disaggregation import make_decider
from kairos.cluster.migration import make_migration_policy
from kairos.engine import EngineCore, KVCacheManager, SchedulerConfig
from kairos.hardware import Link
from kairos.metrics.itl import ItlCollector
from kairos.sim.disaggregated import DisaggregatedSimulation
from kairos.sim.executor import SimExecutor
from kairos.sim.migration import MigratingSimulation
from kairos.engine.policies import POLICIES
from kairos.sim.lifecycle import FleetChange
from kairos.sim.replica import PrefixHasher, ReplicaState, SimReplica
from kairos.sim.runner import Simulation
from kairos.workload.spec import SLO, RequestSpec, Span

from helpers import LinearModel, simulate
from test_sim_concurrency import assert_closed_loop, assert_closed_loop_at_most, closed_loop

# Knobs that make each migration policy move often on the tiny replicas these tests build.
MIGRATION_KNOBS = {"imbalance": {"gap": 0.05}, "kv_pressure": {"high": 0.5, "low": 0.4}, "balanced": {"threshold": 4.0}}


@st.composite
def workloads(draw):
    n = draw(st.integers(1, 40))
    specs, t = [], 0.0
    for i in range(n):
        t += draw(st.floats(0.0, 0.5))
        shared = ()
        if draw(st.booleans()):
            shared = (Span(draw(st.integers(0, 2)), 0, draw(st.integers(1, 300))),)
        prompt = draw(st.integers(1, 400)) + (shared[0].length if shared else 0)
        after = None
        think = 0.0
        if i and draw(st.integers(0, 4)) == 0:
            after, think = f"r{draw(st.integers(0, i - 1))}", draw(st.floats(0.0, 1.0))
        slo_class = draw(st.sampled_from([None, "interactive", "batch"]))
        slo = SLO(ttft_ms=draw(st.sampled_from([None, 200.0, 2000.0])),
                  tpot_ms=draw(st.sampled_from([None, 5.0, 50.0])), e2e_ms=draw(st.sampled_from([None, 3000.0])))
        specs.append(RequestSpec(f"r{i}", t, prompt, draw(st.integers(1, 300)), shared=shared,
                                 priority=draw(st.integers(0, 2)), after=after, think_s=think,
                                 tenant=draw(st.sampled_from([None, "a", "b", "c"])), slo=slo, slo_class=slo_class,
                                 deadline_s=draw(st.sampled_from([None, 1.0, 10.0]))))
    return specs


def timelines(result):
    return [(r.request_id, r.arrival_s, r.first_scheduled_s, r.first_token_s, r.finish_s,
             r.output_tokens, r.cached_tokens, r.preemptions, r.replica, r.rejected_reason)
            for r in result.records]


@settings(max_examples=60, deadline=None)
@given(workloads(), st.sampled_from([60, 150, 1000]), st.sampled_from([1, 3]),
       st.sampled_from(["fcfs", "priority"]), st.sampled_from([4, 64]),
       st.sampled_from(["round_robin", "least_kv", "least_demand", "prefix_affinity", "least_outstanding",
                        "power_of_two"]))
def test_fast_path_matches_single_steps(specs, blocks, replicas, policy, max_seqs, router):
    cfg = SchedulerConfig(max_num_seqs=max_seqs, max_num_batched_tokens=256, policy=policy)
    kw = dict(num_blocks=blocks, replicas=replicas, config=cfg, router=router)
    assert_same_runs(simulate(specs, fast=True, **kw), simulate(specs, fast=False, **kw))


# Knobs that make each policy's mechanism bite on the small workloads drawn here.
POLICY_KNOBS = {"laps": {"short_tokens": 100, "max_wait_s": 0.3}, "filler": {"batch_tokens": 100},
                "past_future": {"headroom": 0.1}}


@settings(max_examples=80, deadline=None)
@given(workloads(), st.sampled_from([60, 150, 1000]), st.sampled_from([1, 2]), st.sampled_from(POLICIES.names()),
       st.sampled_from([4, 64]), st.sampled_from(["oracle", "noisy", "histogram"]))
def test_fast_path_matches_single_steps_under_every_policy(specs, blocks, replicas, policy, max_seqs, predictor):
    cfg = SchedulerConfig(max_num_seqs=max_seqs, max_num_batched_tokens=256, policy=policy,
                          policy_options=tuple(POLICY_KNOBS.get(policy, {}).items()))
    knobs = {"sigma": 1.0} if predictor == "noisy" else {"min_samples": 2} if predictor == "histogram" else {}
    kw = dict(num_blocks=blocks, replicas=replicas, config=cfg, router="least_outstanding",
              predictor=(predictor, knobs))
    assert_same_runs(simulate(specs, fast=True, **kw), simulate(specs, fast=False, **kw))


@settings(max_examples=60, deadline=None)
@given(workloads(), st.integers(1, 6), st.booleans(), st.sampled_from([60, 150, 1000]),
       st.sampled_from([1, 3]), st.sampled_from([4, 64]),
       st.sampled_from(["round_robin", "least_kv", "least_demand", "prefix_affinity", "least_outstanding",
                        "power_of_two"]))
def test_fast_path_matches_single_steps_in_a_closed_loop(specs, concurrency, at_once, blocks, replicas,
                                                         max_seqs, router):
    """Slot releases send requests at the instant a window ends on a completion (or a
    rejection ends at its arrival): the fused and the stepped runs still agree."""
    if at_once:  # rate .inf: every request due at t=0
        specs = [replace(spec, arrival_s=0.0) for spec in specs]
    cfg = SchedulerConfig(max_num_seqs=max_seqs, max_num_batched_tokens=256)
    kw = dict(num_blocks=blocks, replicas=replicas, config=cfg, router=router)
    fast = closed_loop(specs, concurrency, fast=True, **kw)
    assert_same_runs(fast, closed_loop(specs, concurrency, fast=False, **kw))
    if at_once and not any(spec.after for spec in specs):
        assert_closed_loop(fast.records, concurrency)
    else:
        assert_closed_loop_at_most(fast.records, concurrency)


def assert_same_runs(fast, slow):
    assert timelines(fast) == timelines(slow)
    assert fast.preemptions == slow.preemptions
    assert fast.prefix_hits == slow.prefix_hits
    assert [r["steps"] for r in fast.replicas] == [r["steps"] for r in slow.replicas]
    assert fast.itl.count == slow.itl.count
    f, s = fast.itl.summary(), slow.itl.summary()
    for key in s:
        assert abs(f[key] - s[key]) <= 1e-9 * max(1.0, abs(s[key]))


def test_fast_path_really_fuses_steps():
    specs = [RequestSpec(f"r{i}", 0.0, 100, 500) for i in range(8)]
    fast = simulate(specs, fast=True)
    slow = simulate(specs, fast=False)
    assert timelines(fast) == timelines(slow)
    assert fast.replicas[0]["steps"] == slow.replicas[0]["steps"] >= 500
    assert slow.events >= 500 and fast.events < 20


def _replicas(n, blocks, cfg, first=0, serving=None):
    itl, hasher = ItlCollector(), PrefixHasher(16)
    serving = n if serving is None else serving
    return [SimReplica(first + i, EngineCore(cfg, KVCacheManager(blocks, 16, True), itl=itl, check_invariants=True),
                       SimExecutor(LinearModel()), hasher, ReplicaState.SERVING if i < serving else ReplicaState.STOPPED)
            for i in range(n)], itl


@st.composite
def fleet_changes(draw, serving):
    """Starts and drains at random times that never drain more replicas than are up, nor all at the end."""
    changes, up, started = [], serving, 0
    for _ in range(draw(st.integers(1, 4))):
        at_s = draw(st.floats(0.0, 8.0))
        if draw(st.booleans()) or up == 1:
            n = draw(st.integers(1, 2))
            changes.append(FleetChange(at_s, start=n, startup_s=draw(st.sampled_from([0.0, 0.3, 2.0]))))
            up, started = up + n, started + n
        else:
            n = draw(st.integers(1, up - 1))
            changes.append(FleetChange(at_s, drain=n))
            up -= n
    return sorted(changes, key=lambda c: c.at_s), started


@settings(max_examples=60, deadline=None)
@given(workloads(), st.data(), st.sampled_from([60, 150, 1000]), st.sampled_from([None, *MIGRATION_KNOBS]),
       st.sampled_from(["round_robin", "least_kv", "least_demand", "prefix_affinity", "least_outstanding",
                        "power_of_two"]))
def test_fast_path_matches_single_steps_with_lifecycle_changes(specs, data, blocks, policy, router):
    """Replicas start and drain (their requests migrated out, with a policy) at random times: the fused
    and the stepped runs agree, and every request ends once."""
    changes, started = data.draw(fleet_changes(2))
    cfg = SchedulerConfig(max_num_seqs=8, max_num_batched_tokens=256)
    runs = []
    for fast in (True, False):
        replicas, itl = _replicas(2 + started, blocks, cfg, serving=2)
        if policy is None:
            sim = Simulation(specs, replicas, make_router(router), max_model_len=1 << 20, itl=itl, fast_decode=fast,
                             lifecycle=changes)
        else:
            sim = MigratingSimulation(
                specs, replicas, make_router(router), policy=make_migration_policy(policy, **MIGRATION_KNOBS[policy]),
                link=Link("test", 1e9, 5e-6), kv_bytes=lambda n: 4096 * n, interval_s=0.01, max_stages=3,
                max_model_len=1 << 20, itl=itl, fast_decode=fast, lifecycle=changes)
        runs.append(sim.run())
        for replica in replicas:
            replica.core.check_kv()
            assert replica.state is not ReplicaState.DRAINING or replica.num_outstanding()
    assert_same_runs(*runs)
    assert runs[0].lifecycle == runs[1].lifecycle and runs[0].migration == runs[1].migration
    assert sorted(r.request_id for r in runs[0].records) == sorted(s.request_id for s in specs)
    assert all(r.finished or "unfinished" not in r.rejected_reason for r in runs[0].records)


@settings(max_examples=40, deadline=None)
@given(workloads(), st.sampled_from([150, 1000]), st.sampled_from(["always", "prefix_threshold"]),
       st.booleans(), st.sampled_from([2e8, 1e10]))
def test_fast_path_matches_single_steps_with_kv_transfers(specs, blocks, decider, overlap, bandwidth):
    specs = [replace(spec, after=None) for spec in specs]  # turns would wait on both pools: kept simple
    cfg = SchedulerConfig(max_num_seqs=8, max_num_batched_tokens=256)
    runs = []
    for fast in (True, False):
        prefill, _ = _replicas(2, blocks, cfg)
        decode, itl = _replicas(2, blocks, cfg, first=2)
        for replica in prefill:
            replica.core.itl = itl
        sim = DisaggregatedSimulation(
            specs, prefill, decode, make_router("least_outstanding"), make_router("round_robin"),
            decider=make_decider(decider, 64), link=Link("test", bandwidth, 5e-6), kv_bytes=lambda n: 4096 * n,
            overlap=overlap, num_layers=4, max_model_len=1 << 20, itl=itl, fast_decode=fast)
        runs.append(sim.run())
    assert_same_runs(*runs)
    assert runs[0].disaggregation == runs[1].disaggregation


@settings(max_examples=40, deadline=None)
@given(workloads(), st.sampled_from([60, 150]), st.sampled_from(list(MIGRATION_KNOBS)),
       st.sampled_from(["round_robin", "least_outstanding"]))
def test_fast_path_matches_single_steps_with_migrations(specs, blocks, policy, router):
    cfg = SchedulerConfig(max_num_seqs=8, max_num_batched_tokens=256)
    runs = []
    for fast in (True, False):
        replicas, itl = _replicas(3, blocks, cfg)
        sim = MigratingSimulation(
            specs, replicas, make_router(router), policy=make_migration_policy(policy, **MIGRATION_KNOBS[policy]),
            link=Link("test", 1e9, 5e-6), kv_bytes=lambda n: 4096 * n, interval_s=0.01, max_stages=3,
            max_model_len=1 << 20, itl=itl, fast_decode=fast)
        runs.append(sim.run())
    assert_same_runs(*runs)
    assert runs[0].migration == runs[1].migration
