"""The physical block pool: reference counts, free blocks and the LRU of cached free blocks.

Every operation works on whole lists of blocks with numpy, because a simulated
hour of long-context traffic allocates, caches and evicts millions of blocks.
"""

from __future__ import annotations

import numpy as np

# Compact the LRU list once this many dead entries sit at its front.
_COMPACT_AT = 1 << 16
# Evictions of at most this many blocks (a decode crossing into a new block) run in plain
# Python: cheaper than numpy's per-call cost.
SMALL_POP = 8


class FreeBlocks:
    """Free blocks holding nothing, as a stack: the most recently freed are taken first, then the never
    used ones from the lowest id up. The never-used ones are only a counter, so a replica's pool costs
    nothing before it is used: a fleet of hundreds of replicas is mostly untouched blocks."""

    __slots__ = ("_recycled", "_next_fresh", "_num_blocks")

    def __init__(self, num_blocks: int) -> None:
        self._recycled: list[int] = []
        self._next_fresh = 0  # blocks from here to num_blocks - 1 were never used
        self._num_blocks = num_blocks

    def __len__(self) -> int:
        return len(self._recycled) + self._num_blocks - self._next_fresh

    def __iter__(self):
        yield from self._recycled
        yield from range(self._next_fresh, self._num_blocks)

    def take(self, count: int) -> list[int]:
        """The top `count` blocks (count <= len(self)), in stack order: fresh ones (highest id first),
        then the recycled ones in the order they were freed."""
        recycled = self._recycled
        if count <= len(recycled):
            taken = recycled[len(recycled) - count:]
            del recycled[len(recycled) - count:]
            return taken
        fresh = count - len(recycled)
        first = self._next_fresh
        taken = list(range(first + fresh - 1, first - 1, -1)) + recycled
        self._next_fresh = first + fresh
        recycled.clear()
        return taken

    def extend(self, blocks: list[int]) -> None:
        self._recycled.extend(blocks)


class CachedFreeLru:
    """Free blocks that hold registered content, least recently released first.

    An append-only list plus, per block, the absolute position of its live entry:
    taking a block out (a prefix hit) only forgets its position, and eviction skips
    the stale entries it meets. Both are O(1) per block with no Python loop.
    """

    def __init__(self, num_blocks: int) -> None:
        self._entries: list[int] = []
        self._base = 0  # absolute position of _entries[0]
        self._head = 0  # entries before this index are all dead
        self._pos = np.full(num_blocks, -1, dtype=np.int64)
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __contains__(self, block: int) -> bool:
        return self._pos[block] >= 0

    def push(self, blocks: np.ndarray) -> None:
        """Append blocks as the most recently released, in the given order."""
        if not len(blocks):
            return
        if len(self._entries) - self._head > 4 * self._size + _COMPACT_AT:
            self._compact()
        start = self._base + len(self._entries)
        self._entries.extend(blocks.tolist())
        self._pos[blocks] = np.arange(start, start + len(blocks))
        self._size += len(blocks)

    def remove(self, blocks: np.ndarray) -> None:
        """Take blocks out (they are about to be reused by a prefix hit)."""
        self._pos[blocks] = -1
        self._size -= len(blocks)

    def pop_oldest(self, count: int) -> np.ndarray:
        """Remove and return the `count` least recently released blocks."""
        if count <= 0:
            return np.empty(0, dtype=np.int64)
        if count <= SMALL_POP:
            return np.array(self.pop_few(count), dtype=np.int64)
        taken: list[np.ndarray] = []
        need = count
        entries = self._entries
        while need:
            stop = min(len(entries), self._head + 2 * need)
            if stop == self._head:
                raise AssertionError("evicting more blocks than the LRU holds")
            chunk = np.asarray(entries[self._head:stop], dtype=np.int64)
            absolute = np.arange(self._base + self._head, self._base + stop)
            live = np.flatnonzero(self._pos[chunk] == absolute)[:need]
            if len(live):
                taken.append(chunk[live])
                need -= len(live)
                self._head += int(live[-1]) + 1 if not need else stop - self._head
            else:
                self._head = stop
        blocks = np.concatenate(taken) if len(taken) > 1 else taken[0]
        self._pos[blocks] = -1
        self._size -= count
        if self._head >= _COMPACT_AT and self._head * 2 >= len(entries):
            del entries[:self._head]
            self._base += self._head
            self._head = 0
        return blocks

    def pop_few(self, count: int) -> list[int]:
        """pop_oldest for at most SMALL_POP blocks, as a list: a plain scan."""
        if count > self._size:
            raise AssertionError("evicting more blocks than the LRU holds")
        entries, pos = self._entries, self._pos
        head, base = self._head, self._base
        taken: list[int] = []
        while len(taken) < count:
            block = entries[head]
            if pos.item(block) == base + head:
                taken.append(block)
                pos[block] = -1
            head += 1
        self._head = head
        self._size -= count
        if head >= _COMPACT_AT and head * 2 >= len(entries):
            del entries[:head]
            self._base += head
            self._head = 0
        return taken

    def _compact(self) -> None:
        """Rewrite the list with live entries only (blocks hit and freed again pile up stale ones)."""
        live = self.blocks()
        self._entries = live
        self._base = 0
        self._head = 0
        self._pos[:] = -1
        if live:
            self._pos[np.asarray(live, dtype=np.int64)] = np.arange(len(live))

    def blocks(self) -> list[int]:
        """Live blocks, oldest first (for checks and tests)."""
        start = self._base + self._head
        return [b for i, b in enumerate(self._entries[self._head:], start) if self._pos[b] == i]
