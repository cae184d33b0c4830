"""A router-side, bounded LRU record of the prompt blocks sent to one replica."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence


class RoutedBlocks:
    """Approximates one replica's prefix cache from what the router sent it.

    The engine's cache only learns a prompt once it is scheduled; this record knows
    it the moment it is routed, so a burst of requests sharing a prefix can follow
    the first one. Holds at most `capacity` block keys, evicting least recently
    routed first.
    """

    __slots__ = ("_keys", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._keys: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def matched_blocks(self, keys: Sequence[int]) -> int:
        """Length of the leading run of `keys` recorded here.

        Keys are chained (each names its whole prefix) and `record` touches a
        prompt's blocks tail first, so a block is never older than its descendants
        and LRU eviction keeps the record prefix-closed: membership along `keys`
        is a run of hits then misses, found by binary search.
        """
        lo, hi = 0, len(keys)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if keys[mid - 1] in self._keys:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def record(self, keys: Sequence[int]) -> None:
        # Tail first, so the head ends most recent: eviction trims prompts from the
        # tail and never leaves a block whose prefix is forgotten.
        for key in reversed(keys):
            self._keys[key] = None
            self._keys.move_to_end(key)
        while len(self._keys) > self.capacity:
            self._keys.popitem(last=False)
