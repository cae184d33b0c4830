"""Load-balancing routers and the router registry, on fake replicas."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from kairos.cluster import ROUTERS, ReplicaView, make_router, router_knobs
from kairos.errors import KairosError
from kairos.workload.spec import RequestSpec

SPEC = RequestSpec("r", arrival_s=0.0, prompt_len=32, output_len=8)


@dataclass
class FakeReplica:
    index: int
    outstanding: int = 0
    kv: float = 0.0
    cached: float = 0.0
    queued: float = 0.0  # blocks queued requests will take, as a share of the cache

    def num_running(self) -> int:
        return self.outstanding

    def num_waiting(self) -> int:
        return 0

    def num_outstanding(self) -> int:
        return self.outstanding

    def kv_usage(self) -> float:
        return self.kv

    def kv_demand(self) -> float:
        return self.kv + self.queued

    def cache_usage(self) -> float:
        return self.cached

    def cached_prefix_tokens(self, spec: RequestSpec) -> int:
        return 0


def fleet(outstanding: list[int], kv: list[float] | None = None) -> list[FakeReplica]:
    kv = kv or [0.0] * len(outstanding)
    return [FakeReplica(i, o, k) for i, (o, k) in enumerate(zip(outstanding, kv, strict=True))]


def test_fake_replica_satisfies_the_view_protocol():
    view: ReplicaView = FakeReplica(0)
    assert view.index == 0


def test_round_robin_cycles():
    router = make_router("round_robin")
    replicas = fleet([5, 0, 9])
    assert [router.route(SPEC, replicas) for _ in range(7)] == [0, 1, 2, 0, 1, 2, 0]


def test_routers_return_replica_index_not_position():
    subset = [FakeReplica(4, 3), FakeReplica(7, 1)]
    assert make_router("round_robin").route(SPEC, subset) == 4
    assert make_router("least_outstanding").route(SPEC, subset) == 7


def test_least_outstanding_picks_minimum_ties_to_lowest_index():
    router = make_router("least_outstanding")
    assert router.route(SPEC, fleet([4, 2, 3])) == 1
    assert router.route(SPEC, fleet([4, 1, 1])) == 1


def test_least_kv_picks_lowest_usage_then_outstanding_then_index():
    router = make_router("least_kv")
    assert router.route(SPEC, fleet([0, 9, 0], kv=[0.5, 0.1, 0.3])) == 1
    assert router.route(SPEC, fleet([5, 2, 2], kv=[0.2, 0.2, 0.2])) == 1
    assert router.route(SPEC, fleet([5, 3, 2], kv=[0.2, 0.2, 0.2])) == 2


def test_least_demand_counts_what_queued_requests_will_take():
    router = make_router("least_demand")
    replicas = fleet([1, 1, 1], kv=[0.3, 0.1, 0.2])
    assert router.route(SPEC, replicas) == 1
    replicas[1].queued = 0.5  # free blocks, but promised to its queue: least_kv would still pick it
    assert make_router("least_kv").route(SPEC, replicas) == 1
    assert router.route(SPEC, replicas) == 2


def test_power_of_two_is_deterministic_per_seed():
    replicas = fleet([3, 1, 4, 1, 5, 9, 2, 6])
    picks = [make_router("power_of_two", seed=11) for _ in range(2)]
    runs = [[router.route(SPEC, replicas) for _ in range(50)] for router in picks]
    assert runs[0] == runs[1]
    other = make_router("power_of_two", seed=12)
    assert [other.route(SPEC, replicas) for _ in range(50)] != runs[0]


def test_power_of_two_never_picks_the_worse_of_its_pair():
    # Distinct loads: the most loaded replica loses every pair it is in, and the
    # second most loaded can only win against the most loaded.
    loads = [7, 2, 9, 4, 0, 5]
    replicas = fleet(loads)
    router = make_router("power_of_two", seed=3)
    picks = [router.route(SPEC, replicas) for _ in range(2000)]
    assert loads.index(max(loads)) not in picks
    share = picks.count(loads.index(7)) / len(picks)
    # 7 is picked only when paired with 9: probability 2 / (6 * 5) = 1/15.
    assert share == pytest.approx(1 / 15, abs=0.02)
    assert len(set(picks)) == len(loads) - 1


def test_power_of_two_single_replica():
    assert make_router("power_of_two").route(SPEC, [FakeReplica(3)]) == 3


def test_registry_names_and_errors():
    assert ROUTERS.names() == (
        "round_robin", "least_outstanding", "least_kv", "least_demand", "power_of_two", "prefix_affinity",
    )
    for name in ROUTERS.names():
        assert make_router(name).name == name
    assert make_router("Least-Outstanding").name == "least_outstanding"
    with pytest.raises(KairosError, match="did you mean round_robin"):
        make_router("round_robbin")
    with pytest.raises(KairosError, match="no knob cache_threshold"):
        make_router("least_kv", cache_threshold=0.3)
    assert "cache_threshold" in router_knobs("prefix_affinity")
    assert router_knobs("power_of_two") == ()
