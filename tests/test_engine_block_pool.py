"""The cached-free LRU keeps its order through hits, evictions and compaction."""

import numpy as np

from kairos.engine.block_pool import _COMPACT_AT, CachedFreeLru


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
