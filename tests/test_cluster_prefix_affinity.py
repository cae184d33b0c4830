"""Cache-aware routing (sgl-router style), its block keys and its routed-block record."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from kairos.cluster import (
    PrefixAffinity,
    RoutedBlocks,
    default_prefix_block_keys,
    make_router,
)
from kairos.errors import KairosError
from kairos.workload.spec import RequestSpec, Span


def spec(rid: str, stream: int, shared: int = 512, prompt: int = 600) -> RequestSpec:
    """A prompt whose first `shared` tokens come from content stream `stream`."""
    return RequestSpec(rid, 0.0, prompt_len=prompt, output_len=16,
                       shared=(Span(stream, 0, shared),))


@dataclass
class FakeReplica:
    """A replica whose prefix cache holds the first `cached[stream]` tokens of streams."""

    index: int
    outstanding: int = 0
    usage: float = 0.0
    cached: dict[int, int] = field(default_factory=dict)

    def num_running(self) -> int:
        return 0

    def num_waiting(self) -> int:
        return self.outstanding

    def num_outstanding(self) -> int:
        return self.outstanding

    def kv_usage(self) -> float:
        return 0.0

    def cache_usage(self) -> float:
        return self.usage

    def cached_prefix_tokens(self, spec: RequestSpec) -> int:
        if not spec.shared:
            return 0
        return min(self.cached.get(spec.shared[0].key, 0), spec.shared[0].length)


def send(router, request: RequestSpec, replicas: list[FakeReplica]) -> int:
    """Route and account the request as outstanding, as a cluster would."""
    chosen = router.route(request, replicas)
    replicas[chosen].outstanding += 1
    return chosen


def test_defaults_follow_sgl_router():
    router = make_router("prefix_affinity")
    assert (router.cache_threshold, router.balance_abs_threshold,
            router.balance_rel_threshold) == (0.5, 32, 1.0001)


def test_sticks_to_the_replica_caching_the_prefix():
    replicas = [FakeReplica(0), FakeReplica(1, outstanding=3, cached={7: 512})]
    router = make_router("prefix_affinity")
    assert router.route(spec("a", 7), replicas) == 1  # 512/600 > 0.5, load balanced enough


def test_short_match_falls_back_to_least_cache_usage():
    replicas = [FakeReplica(0, usage=0.9, cached={7: 256}), FakeReplica(1, usage=0.2)]
    router = make_router("prefix_affinity")
    assert router.route(spec("a", 7), replicas) == 1  # 256/600 <= 0.5


def test_cache_usage_ties_go_to_fewer_outstanding():
    replicas = [FakeReplica(0, outstanding=2, usage=0.5), FakeReplica(1, outstanding=1, usage=0.5)]
    assert make_router("prefix_affinity").route(spec("a", 7), replicas) == 1


def test_imbalance_overrides_affinity():
    replicas = [FakeReplica(0, outstanding=40, cached={7: 512}), FakeReplica(1, outstanding=2)]
    router = make_router("prefix_affinity")
    assert router.route(spec("a", 7), replicas) == 1


def test_both_thresholds_are_needed_for_imbalance():
    # Absolute gap 33 > 32, but 1000 is not > 1.5 * 967: still balanced, affinity wins.
    replicas = [FakeReplica(0, outstanding=1000, cached={7: 512}), FakeReplica(1, outstanding=967)]
    router = make_router("prefix_affinity", balance_rel_threshold=1.5)
    assert router.route(spec("a", 7), replicas) == 0


def test_burst_of_shared_prefix_sticks_before_any_replica_caches_it():
    # No replica has scheduled anything yet: only the router's own record can match.
    replicas = [FakeReplica(i) for i in range(4)]
    router = make_router("prefix_affinity")
    picks = {send(router, spec(f"r{i}", stream=42), replicas) for i in range(20)}
    assert len(picks) == 1


def test_unrelated_prompts_spread_across_replicas():
    replicas = [FakeReplica(i) for i in range(4)]
    router = make_router("prefix_affinity")
    for i in range(40):
        send(router, spec(f"r{i}", stream=i), replicas)
    assert [r.outstanding for r in replicas] == [10, 10, 10, 10]


def test_groups_stick_and_spread():
    replicas = [FakeReplica(i) for i in range(3)]
    router = make_router("prefix_affinity")
    placement: dict[int, set[int]] = {}
    for i in range(30):
        group = i % 3
        placement.setdefault(group, set()).add(send(router, spec(f"r{i}", group), replicas))
    assert all(len(chosen) == 1 for chosen in placement.values())
    assert {next(iter(chosen)) for chosen in placement.values()} == {0, 1, 2}


def test_custom_block_key_function_is_used():
    calls: list[str] = []

    def keys(request: RequestSpec) -> list[int]:
        calls.append(request.request_id)
        return [1, 2, 3]

    router = PrefixAffinity(prefix_block_keys=keys, block_size=100)
    replicas = [FakeReplica(0), FakeReplica(1)]
    first = send(router, spec("a", 1, prompt=400), replicas)
    assert send(router, spec("b", 2, prompt=400), replicas) == first  # 300/400 tokens recorded
    assert calls == ["a", "b"]


def test_bad_knobs_are_user_errors():
    with pytest.raises(KairosError):
        make_router("prefix_affinity", cache_threshold=1.5)
    with pytest.raises(KairosError):
        make_router("prefix_affinity", max_tracked_blocks=0)


def test_default_keys_cover_full_shared_prompt_blocks_only():
    keys = default_prefix_block_keys(spec("a", 7, shared=100, prompt=600))
    assert len(keys) == 6  # 100 shared tokens: six full 16-token blocks
    assert len(default_prefix_block_keys(spec("a", 7, shared=512, prompt=40))) == 2
    assert default_prefix_block_keys(RequestSpec("u", 0.0, 64, 4)) == []


def test_default_keys_are_chained_prefix_hashes():
    a = default_prefix_block_keys(spec("a", 7, shared=64))
    b = default_prefix_block_keys(spec("b", 7, shared=128))
    other = default_prefix_block_keys(spec("c", 8, shared=64))
    assert b[:4] == a
    assert not set(other) & set(b)
    shifted = RequestSpec("d", 0.0, 600, 4, shared=(Span(7, 16, 64),))
    assert not set(default_prefix_block_keys(shifted)) & set(b)


def test_default_keys_handle_blocks_spanning_two_spans():
    split = RequestSpec("s", 0.0, 600, 4, shared=(Span(1, 0, 24), Span(2, 0, 40)))
    whole = RequestSpec("w", 0.0, 600, 4, shared=(Span(1, 0, 24), Span(3, 0, 40)))
    keys_split = default_prefix_block_keys(split)
    keys_whole = default_prefix_block_keys(whole)
    assert len(keys_split) == 4
    assert keys_split[0] == keys_whole[0]  # block 0 lies inside span 1 in both
    assert keys_split[1] != keys_whole[1]  # block 1 straddles into span 2 vs span 3


def test_default_keys_from_token_ids():
    ids = tuple(range(40))
    with_ids = RequestSpec("t", 0.0, 40, 4, prompt_token_ids=ids)
    same_start = RequestSpec("u", 0.0, 40, 4, prompt_token_ids=ids[:32] + (99,) * 8)
    keys = default_prefix_block_keys(with_ids)
    assert len(keys) == 2
    assert default_prefix_block_keys(same_start) == keys
    assert default_prefix_block_keys(with_ids, block_size=8)[:1] != keys[:1]


def test_routed_blocks_match_leading_run_and_evict_tails_first():
    record = RoutedBlocks(capacity=5)
    record.record([1, 2, 3])
    assert record.matched_blocks([1, 2, 3, 4]) == 3
    assert record.matched_blocks([2, 3]) == 2
    assert record.matched_blocks([9, 1]) == 0
    record.record([10, 11, 12])
    assert len(record) == 5
    # The oldest prompt lost its tail block, not its head.
    assert record.matched_blocks([1, 2, 3]) == 2
    assert record.matched_blocks([10, 11, 12]) == 3


def test_router_record_is_bounded_per_replica():
    # 512 shared tokens are 32 blocks; a record of 8 blocks keeps only 128 tokens of
    # the prefix (its head), below the 0.5 threshold, so the next request balances.
    bounded = PrefixAffinity(max_tracked_blocks=8)
    replicas = [FakeReplica(0), FakeReplica(1)]
    assert send(bounded, spec("a", 5), replicas) == 0
    assert send(bounded, spec("b", 5), replicas) == 1
    roomy = PrefixAffinity()
    replicas = [FakeReplica(0), FakeReplica(1)]
    assert send(roomy, spec("a", 5), replicas) == 0
    assert send(roomy, spec("b", 5), replicas) == 0


def test_routed_blocks_stay_prefix_closed_under_eviction():
    # Binary-search matching relies on it: compare with a linear scan on random
    # prompts drawn from a few shared prefix trees.
    rng = random.Random(5)
    record = RoutedBlocks(capacity=40)
    for step in range(500):
        prompt = spec(f"r{step}", stream=rng.randrange(4), shared=16 * rng.randrange(1, 12))
        keys = default_prefix_block_keys(prompt)
        probe = default_prefix_block_keys(spec("p", rng.randrange(4), shared=16 * 12))
        linear = next((i for i, key in enumerate(probe) if key not in record), len(probe))
        assert record.matched_blocks(probe) == linear
        record.record(keys)
