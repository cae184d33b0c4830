"""The event heap's order, the least-outstanding index, and arrivals that leave other replicas' windows alone."""

from __future__ import annotations

import numpy as np

from kairos.engine import EngineCore, KVCacheManager, SchedulerConfig
from kairos.metrics.itl import ItlCollector
from kairos.sim.events import EventQueue, Priority
from kairos.sim.executor import SimExecutor
from kairos.sim.replica import PrefixHasher, ReplicaSet, SimClock, SimReplica
from kairos.sim.runner import Simulation
from kairos.workload.spec import RequestSpec

from helpers import LinearModel


def test_events_pop_by_time_then_priority_then_key_then_push_order():
    queue = EventQueue()
    popped: list[str] = []
    def note(_t, name):
        popped.append(name)
    queue.push(2.0, Priority.ARRIVAL, note, "late arrival")
    queue.push(1.0, Priority.STEP_END, note, "step end of replica 1", key=1)
    queue.push(1.0, Priority.STEP_END, note, "step end of replica 0", key=0)
    queue.push(1.0, Priority.DELIVERY, note, "delivery")
    queue.push(1.0, Priority.ARRIVAL, note, "arrival a")
    queue.push(1.0, Priority.ARRIVAL, note, "arrival b")
    queue.push(1.0, Priority.RELEASED, note, "released")
    while queue:
        t, _, _, _, handler, payload = queue.pop()
        handler(t, payload)
    assert popped == ["released", "arrival a", "arrival b", "delivery", "step end of replica 0",
                      "step end of replica 1", "late arrival"]


def _replicas(n: int, num_blocks: int = 4000) -> list[SimReplica]:
    itl, hasher = ItlCollector(), PrefixHasher(16)
    return [SimReplica(i, EngineCore(SchedulerConfig(), KVCacheManager(num_blocks, 16, True), itl=itl),
                       SimExecutor(LinearModel()), hasher) for i in range(n)]


def test_the_least_outstanding_index_agrees_with_a_scan():
    rng = np.random.default_rng(3)
    replicas = _replicas(7)
    fleet = ReplicaSet(replicas, SimClock())
    for _ in range(2000):
        replica = replicas[int(rng.integers(7))]
        if replica.num_outstanding() and rng.random() < 0.45:
            fleet.finished(replica)
        else:
            fleet.routed(replica)
        scan = min(replicas, key=lambda r: (r.num_outstanding(), r.index))
        assert fleet.least_outstanding() is scan


class _LongToOneRestToZero:
    """Sends the first request to replica 1 and every later one to replica 0, after reading
    replica 1's KV usage (mid-window, while replica 1 decodes)."""

    name = "long_to_one"

    def __init__(self) -> None:
        self.readings: list[float] = []

    def route(self, spec, replicas):
        if spec.request_id == "long":
            return 1
        self.readings.append(replicas[1].kv_usage())
        return 0


def test_a_request_cuts_only_the_window_of_the_replica_it_goes_to():
    specs = [RequestSpec("long", 0.0, 64, 600)]
    specs += [RequestSpec(f"r{i}", 0.05 + 0.05 * i, 32, 8) for i in range(30)]
    runs = {}
    for fast in (True, False):
        replicas, router = _replicas(2, num_blocks=200), _LongToOneRestToZero()
        sim = Simulation(specs, replicas, router, max_model_len=1 << 20, itl=ItlCollector(), fast_decode=fast)
        runs[fast] = (sim.run(), router.readings, replicas)
    (fast, fast_readings, fast_replicas), (slow, slow_readings, _) = runs[True], runs[False]
    # Mid-window readings are what stepping one iteration at a time shows, and so is every timeline.
    assert fast_readings == slow_readings and len(set(fast_readings)) > 5
    assert [(r.request_id, r.first_token_s, r.finish_s) for r in fast.records] == \
           [(r.request_id, r.first_token_s, r.finish_s) for r in slow.records]
    # Replica 1's 600 decode steps ran as a few windows: the arrivals at replica 0 never cut them.
    assert slow.replicas[1]["steps"] >= 600 and fast_replicas[1].window_id < 10
