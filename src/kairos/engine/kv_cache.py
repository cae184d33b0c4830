"""Paged KV cache: a pool of fixed-size blocks with a prefix cache on top.

Blocks are in one of three states: in use (ref count > 0), cached (free but
holding content registered under its hash, so a later request can reuse it),
or free (no content worth keeping). Allocation takes free blocks first and then
evicts cached blocks least recently released first, as vLLM's free queue does.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from kairos.engine.block_hash import extend_hashes, shareable_blocks
from kairos.engine.request import Request


@dataclass(slots=True)
class PrefixCacheStats:
    """Prompt tokens looked up in the prefix cache and how many were found."""

    queries: int = 0
    hits: int = 0

    @property
    def hit_rate(self) -> float:
        return self.hits / self.queries if self.queries else 0.0


class KVCacheManager:
    """Block pool, per-request block tables and the prefix cache.

    The scheduler uses it only through `lookup`, `allocate`, `free` and the
    free-block count, the same narrow interface vLLM's scheduler has.
    """

    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True) -> None:
        if num_blocks <= 0 or block_size <= 0:
            raise ValueError("num_blocks and block_size must be positive")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self._ref = [0] * num_blocks
        # Free blocks with no registered content; pop() hands out the lowest id first.
        self._free: list[int] = list(range(num_blocks - 1, -1, -1))
        # Free blocks with registered content, least recently released first.
        self._cached_free: OrderedDict[int, None] = OrderedDict()
        self._hash_of: dict[int, int] = {}
        self._by_hash: dict[int, int] = {}
        self._num_used = 0
        self._tables: dict[int, list[int]] = {}
        # Per request: how many of its leading blocks have been offered to the prefix cache.
        self._registered: dict[int, int] = {}
        self.stats = PrefixCacheStats()

    # ---- queries ---------------------------------------------------------------
    @property
    def num_free_blocks(self) -> int:
        """Blocks an allocation may take (free plus evictable cached)."""
        return len(self._free) + len(self._cached_free)

    @property
    def num_used_blocks(self) -> int:
        return self._num_used

    @property
    def num_cached_blocks(self) -> int:
        """Blocks holding registered content, in use or not."""
        return len(self._hash_of)

    def usage(self) -> float:
        """Fraction of blocks in use by running requests."""
        return self._num_used / self.num_blocks

    def block_table(self, req: Request) -> list[int]:
        return self._tables.get(req.uid, [])

    def blocks_needed(self, req: Request, num_tokens: int) -> int:
        """New blocks `req` needs so that its first `num_tokens` tokens have slots."""
        have = len(self._tables.get(req.uid, ()))
        return max(0, -(-num_tokens // self.block_size) - have)

    def lookup(self, req: Request) -> tuple[list[int], int]:
        """Blocks holding the longest cached prefix of `req` and the tokens they cover.

        At least one token is always left to compute, so that the step samples.
        """
        if not self.enable_prefix_caching:
            return [], 0
        max_blocks = (req.num_tokens - 1) // self.block_size
        if req.preemptions == 0:
            # Never-preempted requests can only hit content other requests may share.
            max_blocks = min(max_blocks, shareable_blocks(req, self.block_size))
        hits: list[int] = []
        by_hash = self._by_hash
        chunk = 32
        j = 0
        while j < max_blocks:
            hashes = extend_hashes(req, min(max_blocks, j + chunk), self.block_size)
            while j < len(hashes) and j < max_blocks:
                block = by_hash.get(hashes[j])
                if block is None:
                    return hits, len(hits) * self.block_size
                hits.append(block)
                j += 1
        return hits, len(hits) * self.block_size

    def probe(self, hashes: list[int]) -> int:
        """Number of leading block hashes present in the cache (read-only, for routers)."""
        by_hash = self._by_hash
        n = 0
        for h in hashes:
            if h not in by_hash:
                break
            n += 1
        return n

    # ---- changes ---------------------------------------------------------------
    def allocate(self, req: Request, num_new_tokens: int, hit_blocks: list[int] | None = None) -> bool:
        """Give `req` slots for `num_new_tokens` more tokens (after `hit_blocks`, if any).

        Returns False and changes nothing when there are not enough blocks.
        """
        table = self._tables.get(req.uid)
        if table is None:
            table = self._tables[req.uid] = []
        ref = self._ref
        bs = self.block_size
        num_hit = len(hit_blocks) if hit_blocks else 0
        total = req.num_computed + num_hit * bs + num_new_tokens
        needed = -(-total // bs) - len(table) - num_hit
        if needed > 0 or num_hit:
            reusable = sum(1 for b in hit_blocks if ref[b] == 0) if num_hit else 0
            if needed > len(self._free) + len(self._cached_free) - reusable:
                return False
        if num_hit:
            for b in hit_blocks:
                if ref[b] == 0:
                    del self._cached_free[b]
                    self._num_used += 1
                ref[b] += 1
            table.extend(hit_blocks)
            self._registered[req.uid] = len(table)
        if needed > 0:
            free = self._free
            for _ in range(needed):
                if free:
                    b = free.pop()
                else:
                    b, _ = self._cached_free.popitem(last=False)
                    del self._by_hash[self._hash_of.pop(b)]
                ref[b] = 1
                table.append(b)
            self._num_used += needed
        if self.enable_prefix_caching:
            self._register(req, table, min(total // bs, shareable_blocks(req, bs)))
        return True

    def free(self, req: Request, preempted: bool = False) -> None:
        """Release `req`'s blocks. A preempted request keeps its content cached for its resume."""
        table = self._tables.pop(req.uid, None)
        if table is None:
            return
        if preempted and self.enable_prefix_caching:
            self._register(req, table, req.num_computed // self.block_size)
        self._registered.pop(req.uid, None)
        ref = self._ref
        hash_of = self._hash_of
        # Reverse order: a sequence's tail blocks become the first to be evicted.
        for b in reversed(table):
            ref[b] -= 1
            if ref[b] == 0:
                self._num_used -= 1
                if b in hash_of:
                    self._cached_free[b] = None
                else:
                    self._free.append(b)

    def _register(self, req: Request, table: list[int], upto: int) -> None:
        """Offer `req`'s full blocks [registered, upto) to the prefix cache."""
        done = self._registered.get(req.uid, 0)
        if upto <= done:
            return
        hashes = extend_hashes(req, upto, self.block_size)
        by_hash = self._by_hash
        hash_of = self._hash_of
        for j in range(done, upto):
            h = hashes[j]
            b = table[j]
            # Keep the first copy of a content; a duplicate block stays unregistered.
            if h not in by_hash and b not in hash_of:
                by_hash[h] = b
                hash_of[b] = h
        self._registered[req.uid] = upto

    def reset_prefix_cache(self) -> None:
        """Forget all cached content that is not in use."""
        for b in list(self._cached_free):
            del self._by_hash[self._hash_of.pop(b)]
            self._free.append(b)
        self._cached_free.clear()

    def check_invariants(self) -> None:
        """Blocks are conserved: free + cached-free + in use == total, and refs match tables."""
        free, cached, used = len(self._free), len(self._cached_free), self._num_used
        assert free + cached + used == self.num_blocks, (free, cached, used, self.num_blocks)
        counts = [0] * self.num_blocks
        for table in self._tables.values():
            for b in table:
                counts[b] += 1
        assert counts == self._ref, "ref counts disagree with block tables"
        assert sum(1 for r in self._ref if r > 0) == used
        assert all(self._ref[b] == 0 for b in self._free)
        assert all(self._ref[b] == 0 and b in self._hash_of for b in self._cached_free)
        assert len(self._by_hash) == len(self._hash_of)
