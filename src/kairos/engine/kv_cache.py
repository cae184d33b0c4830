"""Paged KV cache: a pool of fixed-size blocks with a prefix cache on top.

Blocks are in one of three states: in use (ref count > 0), cached (free but
holding content registered under its hash, so a later request can reuse it),
or free (no content worth keeping). Allocation takes free blocks first and then
evicts cached blocks least recently released first, as vLLM's free queue does.

As in vLLM (v1/core/block_pool.py), every full block a request computed is
cached, its own tokens and generated ones included, and so is a second block
holding content already cached (a duplicate): lookups get the oldest copy, and
the next takes over when it is evicted. Shared content is registered when it is
allocated, before it is computed, so a request admitted later in the same step
hits it; blocks a remote KV load fills wait until it lands (vLLM's
delay_cache_blocks): a transfer may take many steps. Content only its own
request can hit (a simulated request's unique tokens) is registered when the
request releases its blocks, which no lookup can tell apart: indexed by hash if
it was preempted (it looks it up on resuming), else only marked cached, which
puts it in the LRU where vLLM has it.
Deviation: content registered at allocation that a preemption leaves uncomputed is dropped (vLLM would serve hits on unwritten KV).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kairos.engine.block_hash import extend_hashes, shareable_blocks
from kairos.engine.block_pool import SMALL_POP, CachedFreeLru, FreeBlocks
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

    The scheduler uses it only through `lookup`, `allocate`, `cache_blocks`, `free`
    and the free-block count, the same narrow interface vLLM's scheduler has.
    """

    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True) -> None:
        if num_blocks <= 0 or block_size <= 0:
            raise ValueError("num_blocks and block_size must be positive")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self._ref = np.zeros(num_blocks, dtype=np.int32)
        # Free blocks with no registered content; pop() hands out the lowest id first.
        self._free = FreeBlocks(num_blocks)
        self._cached_free = CachedFreeLru(num_blocks)
        # Cached: holds content and goes to the LRU when released. Indexed: found by hash.
        self._hashed = np.zeros(num_blocks, dtype=bool)
        self._indexed = np.zeros(num_blocks, dtype=bool)
        self._num_cached = 0
        self._hash_of = np.zeros(num_blocks, dtype=np.uint64)
        # Content hash -> the oldest block holding it; later copies, oldest first, in _dups.
        self._by_hash: dict[int, int] = {}
        self._dups: dict[int, list[int]] = {}
        self._num_dups = 0
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
        return self._num_cached

    def usage(self) -> float:
        """Fraction of blocks in use by running requests."""
        return self._num_used / self.num_blocks

    def block_table(self, req: Request) -> list[int]:
        return self._tables.get(req.uid, [])

    def blocks_needed(self, req: Request, num_tokens: int) -> int:
        """New blocks `req` needs so that its first `num_tokens` tokens have slots."""
        have = len(self._tables.get(req.uid, ()))
        return max(0, -(-num_tokens // self.block_size) - have)

    def blocks_short(self, req: Request, num_tokens: int, hit_blocks: list[int]) -> bool:
        """Whether the free blocks cannot hold `req`'s first `num_tokens` tokens after its hits."""
        needed = -(-num_tokens // self.block_size) - len(self._tables.get(req.uid, ())) - len(hit_blocks)
        if hit_blocks:
            hits = np.asarray(hit_blocks, dtype=np.int64)
            needed += int(np.count_nonzero(self._ref[hits] == 0))
        return needed > self.num_free_blocks

    def holders(self) -> set[int]:
        """Uids of the requests whose block tables hold blocks (for invariant checks)."""
        return {uid for uid, table in self._tables.items() if table}

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
        if max_blocks <= 0:
            return [], 0
        hashes = extend_hashes(req, max_blocks, self.block_size)
        hits: list[int] = []
        by_hash = self._by_hash
        for j in range(max_blocks):
            block = by_hash.get(hashes[j])
            if block is None:
                break
            hits.append(block)
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
    def allocate(self, req: Request, num_new_tokens: int, hit_blocks: list[int] | None = None,
                 delay_cache: bool = False) -> bool:
        """Give `req` slots for `num_new_tokens` more tokens (after `hit_blocks`, if any).

        Returns False and changes nothing when there are not enough blocks. With
        `delay_cache` the new blocks are not offered to the prefix cache: a remote
        load fills them later, and `cache_blocks` registers them once it has.
        """
        table = self._tables.get(req.uid)
        if table is None:
            table = self._tables[req.uid] = []
        bs = self.block_size
        num_hit = len(hit_blocks) if hit_blocks else 0
        total = req.num_computed + num_hit * bs + num_new_tokens
        needed = -(-total // bs) - len(table) - num_hit
        if num_hit:
            hits = np.asarray(hit_blocks, dtype=np.int64)
            idle_hits = hits[self._ref[hits] == 0]
            if needed > self.num_free_blocks - len(idle_hits):
                return False
            # Reused blocks leave the cached-free LRU before anything is evicted.
            self._cached_free.remove(idle_hits)
            self._ref[hits] += 1
            self._num_used += len(idle_hits)
            table.extend(hit_blocks)
            self._registered[req.uid] = len(table)
        elif needed > len(self._free) + len(self._cached_free):
            return False
        if needed > 0:
            self._take(table, needed)
        if self.enable_prefix_caching and not delay_cache:
            upto = min(total // bs, shareable_blocks(req, bs))
            if upto > self._registered.get(req.uid, 0):
                self._register(req, table, upto)
        return True

    def cache_blocks(self, req: Request, num_tokens: int) -> None:
        """Offer the full blocks of `req`'s first `num_tokens` tokens, now written, to the prefix cache."""
        if not self.enable_prefix_caching:
            return
        table = self._tables.get(req.uid)
        if table:
            upto = min(num_tokens // self.block_size, len(table), shareable_blocks(req, self.block_size))
            self._register(req, table, upto)

    def _take(self, table: list[int], count: int) -> None:
        """Append `count` fresh blocks to `table`: free ones first, then evict cached ones."""
        free = self._free
        take = min(count, len(free))
        if take:
            new = free.take(take)
            table.extend(new)
            self._ref[new] = 1
        if count - take > SMALL_POP:
            evicted = self._cached_free.pop_oldest(count - take)
            self._forget(evicted)
            self._ref[evicted] = 1
            table.extend(evicted.tolist())
        elif count > take:
            few = self._cached_free.pop_few(count - take)
            self._forget_few(few)
            ref = self._ref
            for block in few:
                ref[block] = 1
            table.extend(few)
        self._num_used += count

    def free(self, req: Request, preempted: bool = False) -> None:
        """Release `req`'s blocks; every full block it computed stays cached (vLLM caches them all)."""
        table = self._tables.pop(req.uid, None)
        if table is None:
            return
        if self.enable_prefix_caching:
            computed_blocks = min(req.num_computed // self.block_size, len(table))
            if preempted:
                self._unregister_uncomputed(req, table, computed_blocks)
                self._register(req, table, computed_blocks)
            else:
                self._register(req, table, min(computed_blocks, shareable_blocks(req, self.block_size)))
                # The rest only this request could hit, and it is done: cached, not indexed.
                done = self._registered.get(req.uid, 0)
                if computed_blocks > done:
                    own = np.asarray(table[done:computed_blocks], dtype=np.int64)
                    self._hashed[own] = True
                    self._num_cached += len(own)
        self._registered.pop(req.uid, None)
        # Reverse order: a sequence's tail blocks become the first to be evicted.
        blocks = np.asarray(table[::-1], dtype=np.int64)
        ref = self._ref
        ref[blocks] -= 1
        released = blocks[ref[blocks] == 0]
        self._num_used -= len(released)
        cached = self._hashed[released]
        self._cached_free.push(released[cached])
        self._free.extend(released[~cached].tolist())

    def _unregister_uncomputed(self, req: Request, table: list[int], computed_blocks: int) -> None:
        """Forget content registered ahead of computation (at allocation) that never got computed.

        A request preempted in the same step that allocated for it (the priority
        policy can pick an already-scheduled victim) leaves blocks registered for
        tokens that were never written; only blocks no one else holds are dropped.
        """
        registered = self._registered.get(req.uid, 0)
        if registered <= computed_blocks:
            return
        blocks = np.asarray(table[computed_blocks:registered], dtype=np.int64)
        self._forget(blocks[(self._ref[blocks] == 1) & self._hashed[blocks]])
        self._registered[req.uid] = computed_blocks

    def _register(self, req: Request, table: list[int], upto: int) -> None:
        """Offer `req`'s full blocks [registered, upto) to the prefix cache."""
        done = self._registered.get(req.uid, 0)
        if upto <= done:
            return
        hashes = extend_hashes(req, upto, self.block_size)[done:upto]
        own = table[done:upto]
        by_hash = self._by_hash
        dups = [(h, b) for h, b in zip(hashes, own) if h in by_hash]
        if dups:
            # Content another block already holds: cached as a later copy, as vLLM's
            # BlockHashToBlockMap.insert does; lookups keep getting the oldest copy.
            for h, b in dups:
                self._dups.setdefault(h, []).append(b)
            self._num_dups += len(dups)
            held = {h for h, _ in dups}
            by_hash.update((h, b) for h, b in zip(hashes, own) if h not in held)
        else:
            by_hash.update(zip(hashes, own))
        blocks = np.asarray(own, dtype=np.int64)
        self._hash_of[blocks] = np.asarray(hashes, dtype=np.uint64)
        self._hashed[blocks] = True
        self._indexed[blocks] = True
        self._num_cached += len(blocks)
        self._registered[req.uid] = upto

    def _forget(self, blocks: np.ndarray) -> None:
        """Take cached blocks' content out of the prefix cache; a later copy of the same content takes over."""
        indexed = blocks[self._indexed[blocks]]
        hashes = self._hash_of[indexed].tolist()
        if not self._num_dups:
            by_hash = self._by_hash
            for h in hashes:
                del by_hash[h]
        else:
            for b, h in zip(indexed.tolist(), hashes):
                self._unindex(b, h)
        self._indexed[indexed] = False
        self._hashed[blocks] = False
        self._num_cached -= len(blocks)

    def _forget_few(self, blocks: list[int]) -> None:
        """_forget for a few blocks, element by element."""
        indexed, hashed, hash_of = self._indexed, self._hashed, self._hash_of
        for b in blocks:
            if indexed.item(b):
                self._unindex(b, hash_of.item(b))
                indexed[b] = False
            hashed[b] = False
        self._num_cached -= len(blocks)

    def _unindex(self, block: int, h: int) -> None:
        """Drop `block` from the hash index; the oldest later copy of its content takes its place."""
        copies = self._dups.get(h)
        if copies is None:
            del self._by_hash[h]
            return
        if self._by_hash[h] == block:
            self._by_hash[h] = copies.pop(0)
        else:
            copies.remove(block)
        self._num_dups -= 1
        if not copies:
            del self._dups[h]

    def reset_prefix_cache(self) -> None:
        """Forget all cached content that no request is using (as vLLM's reset_prefix_cache)."""
        idle = self._cached_free.pop_oldest(len(self._cached_free))
        self._forget(idle)
        self._free.extend(idle.tolist())

    def check_invariants(self, full: bool = True) -> None:
        """Blocks are conserved: free + cached-free + in use == total.

        The cheap form (counters and ref counts) runs after every step of a checked
        run; `full` also checks every table, the LRU and the hash index.
        """
        free, cached, used = len(self._free), len(self._cached_free), self._num_used
        assert free + cached + used == self.num_blocks, (free, cached, used, self.num_blocks)
        assert int(np.count_nonzero(self._ref)) == used, "ref counts disagree with the used count"
        if not full:
            return
        counts = np.zeros(self.num_blocks, dtype=np.int32)
        for table in self._tables.values():
            np.add.at(counts, np.asarray(table, dtype=np.int64), 1)
        assert np.array_equal(counts, self._ref), "ref counts disagree with block tables"
        assert int((self._ref > 0).sum()) == used
        assert all(self._ref[b] == 0 for b in self._free)
        lru = self._cached_free.blocks()
        assert len(lru) == cached
        assert all(self._ref[b] == 0 and self._hashed[b] for b in lru)
        assert int(self._hashed.sum()) == self._num_cached
        assert not (self._indexed & ~self._hashed).any(), "an indexed block is not cached"
        assert int(self._indexed.sum()) == len(self._by_hash) + self._num_dups
        assert self._num_dups == sum(len(copies) for copies in self._dups.values())
        assert all(self._hash_of[b] == h and self._indexed[b] for h, b in self._by_hash.items())
        assert all(copies and h in self._by_hash and self._by_hash[h] not in copies
                   and all(self._hash_of[b] == h and self._indexed[b] for b in copies)
                   for h, copies in self._dups.items())
