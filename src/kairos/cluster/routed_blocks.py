"""A router-side, bounded LRU record of the prompt blocks sent to one replica."""

from __future__ import annotations

from collections.abc import Sequence


class RoutedBlocks:
    """Approximates one replica's prefix cache from what the router sent it.

    The engine's cache only learns a prompt once it is scheduled; this record knows
    it the moment it is routed, so a burst of requests sharing a prefix can follow
    the first one. Holds at most `capacity` block keys, evicting least recently
    routed first.

    Stored as an append-only log of keys plus each key's position in it: touching
    a prompt's keys is two C-level bulk updates, and eviction walks the log from
    the oldest entry, skipping entries a later touch superseded.
    """

    __slots__ = ("_keys", "_log", "_log_start", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._keys: dict[int, int] = {}  # key -> absolute position of its live log entry
        self._log: list[int] = []
        self._log_start = 0  # absolute position of _log[0]

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
        newest_first = list(reversed(keys))
        start = self._log_start + len(self._log)
        self._log.extend(newest_first)
        self._keys.update(zip(newest_first, range(start, start + len(newest_first))))
        excess = len(self._keys) - self.capacity
        if excess <= 0:
            if len(self._log) > 2 * len(self._keys) + 4096:
                self._compact()
            return
        log, live = self._log, self._keys
        i = 0
        while excess:
            key = log[i]
            if live.get(key) == self._log_start + i:
                del live[key]
                excess -= 1
            i += 1
        del log[:i]
        self._log_start += i

    def _compact(self) -> None:
        """Drop superseded log entries (keys touched again and again without eviction)."""
        order = sorted(self._keys, key=self._keys.__getitem__)
        self._log = order
        self._log_start = 0
        self._keys = {key: i for i, key in enumerate(order)}
