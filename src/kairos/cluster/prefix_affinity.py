"""Cache-aware routing after SGLang's router (sgl-router `cache_aware` policy)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial

from kairos.cluster.prefix_keys import (
    DEFAULT_BLOCK_SIZE,
    PrefixBlockKeys,
    default_prefix_block_keys,
)
from kairos.cluster.replica import ReplicaView
from kairos.cluster.routed_blocks import RoutedBlocks
from kairos.errors import KairosError
from kairos.workload.spec import RequestSpec


@dataclass
class PrefixAffinity:
    """Send a request where its prompt prefix is cached, unless load is out of balance.

    Per request, as sgl-router's cache-aware policy does:
    1. If the outstanding counts are imbalanced (max - min > `balance_abs_threshold`
       and max > `balance_rel_threshold` * min), go to the least-outstanding replica.
    2. Else take each replica's match ratio (cached prefix tokens / prompt length);
       if the best ratio exceeds `cache_threshold`, go to that replica (ties: fewer
       outstanding, lower index).
    3. Else go to the replica with the lowest cache_usage (SGLang: the smallest
       tree), where new content displaces the least (ties: fewer outstanding).
    The prompt's blocks are then recorded for the chosen replica.

    Reads: num_outstanding, cached_prefix_tokens, cache_usage, plus a router-side
    LRU record per replica of the block keys it routed there. The cached prefix of a
    replica is the larger of its own probe (exact, but blind to requests routed and
    not yet scheduled) and that record (immediate, but approximate: it ignores
    evictions by the engine), so a burst of requests sharing a prefix stays together.

    Knobs (defaults of sgl-router's original release, `sglang_router.Router`:
    cache_threshold=0.5, balance_abs_threshold=32, balance_rel_threshold=1.0001;
    the later SGLang model gateway ships 0.3 / 64 / 1.5):
    - cache_threshold: minimum match ratio for affinity to win;
    - balance_abs_threshold, balance_rel_threshold: when load overrides affinity;
    - max_tracked_blocks: capacity of each replica's record (sgl-router bounds its
      tree by max_tree_size); set it near a replica's KV block count;
    - block_size: tokens per block key;
    - prefix_block_keys: the engine's block-key function for a prompt (default:
      `default_prefix_block_keys` at `block_size`).
    Trade-off: high prefix hit rates and lower TTFT on shared-prefix workloads; load
    may skew up to the balance thresholds before it is corrected, and the fallback
    to least cache usage ignores load until those thresholds trip.
    """

    cache_threshold: float = 0.5
    balance_abs_threshold: int = 32
    balance_rel_threshold: float = 1.0001
    max_tracked_blocks: int = 1 << 16
    block_size: int = DEFAULT_BLOCK_SIZE
    prefix_block_keys: PrefixBlockKeys | None = None
    name: str = field(default="prefix_affinity", init=False)
    _block_keys: PrefixBlockKeys = field(init=False, repr=False)
    _routed: dict[int, RoutedBlocks] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.cache_threshold <= 1.0:
            raise KairosError(
                f"prefix_affinity cache_threshold must be in [0, 1], got {self.cache_threshold}"
            )
        if self.max_tracked_blocks < 1 or self.block_size < 1:
            raise KairosError("prefix_affinity max_tracked_blocks and block_size must be >= 1")
        self._block_keys = self.prefix_block_keys or partial(
            default_prefix_block_keys, block_size=self.block_size
        )

    def route(self, spec: RequestSpec, replicas: Sequence[ReplicaView]) -> int:
        keys = self._block_keys(spec)
        load = {r.index: r.num_outstanding() for r in replicas}
        if self._imbalanced(load.values()):
            chosen = min(replicas, key=lambda r: (load[r.index], r.index)).index
        else:
            chosen = self._by_cache(spec, keys, replicas, load)
        self._record(chosen).record(keys)
        return chosen

    def _imbalanced(self, loads: Iterable[int]) -> bool:
        values = list(loads)
        most, least = max(values), min(values)
        return (
            most - least > self.balance_abs_threshold
            and most > self.balance_rel_threshold * least
        )

    def _by_cache(
        self,
        spec: RequestSpec,
        keys: list[int],
        replicas: Sequence[ReplicaView],
        load: dict[int, int],
    ) -> int:
        ratio = {r.index: self._match_ratio(spec, keys, r) for r in replicas}
        best = min(replicas, key=lambda r: (-ratio[r.index], load[r.index], r.index))
        if ratio[best.index] > self.cache_threshold:
            return best.index
        return min(replicas, key=lambda r: (r.cache_usage(), load[r.index], r.index)).index

    def _match_ratio(self, spec: RequestSpec, keys: list[int], replica: ReplicaView) -> float:
        if spec.prompt_len <= 0:
            return 0.0
        routed = self._routed.get(replica.index)
        recorded = routed.matched_blocks(keys) * self.block_size if routed is not None else 0
        matched = max(replica.cached_prefix_tokens(spec), recorded)
        return min(matched, spec.prompt_len) / spec.prompt_len

    def _record(self, index: int) -> RoutedBlocks:
        if index not in self._routed:
            self._routed[index] = RoutedBlocks(self.max_tracked_blocks)
        return self._routed[index]
