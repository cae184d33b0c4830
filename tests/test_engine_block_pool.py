"""The cached-free LRU keeps its order through hits, evictions and compaction."""

import numpy as np

from kairos.engine.block_pool import _COMPACT_AT, SMALL_POP, CachedFreeLru


def test_lru_order_survives_heavy_reuse_and_compaction():
    lru = CachedFreeLru(8)
    lru.push(np.array([0, 1, 2, 3]))
    # Blocks hit and released again, many times over: stale entries pile up, then compact.
    for _ in range(_COMPACT_AT // 2 + 10):
        lru.remove(np.array([1, 2]))
        lru.push(np.array([2, 1]))
    assert len(lru) == 4 and len(lru._entries) < _COMPACT_AT + 20
    assert lru.blocks() == [0, 3, 2, 1]
    assert lru.pop_oldest(3).tolist() == [0, 3, 2]
    assert lru.blocks() == [1] and 1 in lru and 0 not in lru


def test_few_and_bulk_evictions_take_the_same_oldest_blocks():
    lru = CachedFreeLru(32)
    lru.push(np.arange(20))
    lru.remove(np.array([0, 3, 11]))  # prefix hits: their stale entries are skipped
    assert lru.pop_oldest(SMALL_POP + 2).tolist() == [1, 2, 4, 5, 6, 7, 8, 9, 10, 12]
    assert lru.pop_few(2) == [13, 14]
    assert lru.pop_oldest(2).tolist() == [15, 16] and lru.blocks() == [17, 18, 19]
