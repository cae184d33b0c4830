"""Paged attention equals plain causal attention computed request by request on contiguous K/V."""

from __future__ import annotations

import random

import pytest

torch = pytest.importorskip("torch")

from kairos.serve.attention import build_attention_metadata, paged_attention, write_kv  # noqa: E402

BLOCK = 4
HEADS, KV_HEADS, DIM = 4, 2, 8




def naive(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start: int) -> torch.Tensor:
    """q [n, H, D] at positions start.. over k, v [start + n, KVH, D], causal."""
    group = HEADS // KV_HEADS
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = torch.einsum("qhd,khd->hqk", q, k) * DIM ** -0.5
    q_pos = torch.arange(start, start + q.shape[0])[:, None]
    scores = scores.masked_fill(torch.arange(k.shape[0])[None, :] > q_pos, float("-inf"))
    return torch.einsum("hqk,khd->qhd", scores.softmax(-1), v).reshape(q.shape[0], -1)


@pytest.mark.parametrize("seed", range(4))
def test_paged_attention_matches_naive(seed):
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    # Mixed batch: decodes with short and very long contexts, prefill chunks with and without a cached prefix.
    shapes = [(rng.randint(1, 12), 1) for _ in range(6)] + [(150, 1), (0, rng.randint(2, 9)), (rng.randint(1, 20), 7)]
    rng.shuffle(shapes)
    num_blocks = 200
    free = list(range(1, num_blocks))
    rng.shuffle(free)
    pool = torch.zeros(2, num_blocks, BLOCK, KV_HEADS, DIM)
    starts, lens, tables, ks, vs = [], [], [], [], []
    for start, n in shapes:
        total = start + n
        table = [free.pop() for _ in range(-(-total // BLOCK))]
        k, v = torch.randn(total, KV_HEADS, DIM, generator=gen), torch.randn(total, KV_HEADS, DIM, generator=gen)
        for p in range(start):  # the cached prefix is already in the pool
            pool[0, table[p // BLOCK], p % BLOCK] = k[p]
            pool[1, table[p // BLOCK], p % BLOCK] = v[p]
        starts.append(start), lens.append(n), tables.append(table), ks.append(k), vs.append(v)
    meta = build_attention_metadata(starts, lens, tables, BLOCK, HEADS // KV_HEADS, torch.device("cpu"))
    assert len(meta.groups) >= 3  # decodes split by context length, prefills apart
    q = torch.randn(sum(lens), HEADS, DIM, generator=gen)
    new_k = torch.cat([k[s:] for k, s in zip(ks, starts)])
    new_v = torch.cat([v[s:] for v, s in zip(vs, starts)])
    write_kv(pool, new_k, new_v, meta.slot_mapping)
    out = paged_attention(q, pool, meta, DIM ** -0.5)
    row = 0
    for start, n, k, v in zip(starts, lens, ks, vs):
        torch.testing.assert_close(out[row:row + n], naive(q[row:row + n], k, v, start))
        row += n


def test_steady_decode_batch_keeps_order_without_scatter():
    meta = build_attention_metadata([5, 6, 7], [1, 1, 1], [[0, 1], [2, 3], [4, 5]], BLOCK, 2, torch.device("cpu"))
    assert len(meta.groups) == 1 and meta.groups[0].src is None
    assert meta.positions.tolist() == [5, 6, 7]
    assert meta.slot_mapping.tolist() == [1 * BLOCK + 1, 3 * BLOCK + 2, 5 * BLOCK + 3]


def test_groups_split_only_where_the_padding_saved_pays_for_the_extra_group():
    from kairos.serve.attention import min_split_slots

    def groups(starts: list[int], min_slots: int) -> int:
        tables = [list(range(i * 1000, i * 1000 + s // BLOCK + 1)) for i, s in enumerate(starts)]
        return len(build_attention_metadata(starts, [1] * len(starts), tables, BLOCK, 2, torch.device("cpu"),
                                            min_split_slots=min_slots).groups)

    short_and_long = [300, 300, 900]  # split saves 3 x 901 - (2 x 301 + 901) = 1,200 padded slots
    assert groups(short_and_long, 0) == 2
    assert groups(short_and_long, 1200) == 2 and groups(short_and_long, 1201) == 1
    assert groups([200] * 8 + [3000], 2048) == 2  # saves ~22,000 slots
    # The tiny preset's K and V: 2 x 2 heads x 16 dims x 4 bytes = 256 bytes per slot and layer.
    assert min_split_slots(torch.device("cpu"), 2, 16, torch.float32) == 2048
    assert min_split_slots(torch.device("cuda"), 2, 16, torch.float32) == 32768


@pytest.mark.parametrize("min_slots", [0, 64, 2048, None])
def test_prefill_slot_count_matches_the_executors_padded_batches(min_slots):
    # The calibrated step-time model counts the executor's padded prefill work without torch.
    from kairos.perf.attention_groups import prefill_attention_slots

    rng = random.Random(11)
    for _ in range(200):
        k = rng.randint(1, 6)
        shapes = [(rng.choice([0, rng.randint(0, 400)]), rng.choice([1, rng.randint(2, 300)])) for _ in range(k)]
        shapes += [(rng.randint(1, 500), 1) for _ in range(rng.randint(0, 3))]  # decodes
        starts, lens = [s for s, _ in shapes], [n for _, n in shapes]
        tables = [list(range(i * 1000, i * 1000 + -(-(s + n) // BLOCK))) for i, (s, n) in enumerate(shapes)]
        split = 1 << 60 if min_slots is None else min_slots
        meta = build_attention_metadata(starts, lens, tables, BLOCK, 2, torch.device("cpu"), min_split_slots=split)
        padded = sum(g.token_idx.shape[0] * g.token_idx.shape[1] * g.mask.shape[-1]
                     for g in meta.groups if g.token_idx.shape[1] > 1 or g.mask.shape[-2] > 1)
        chunks = [(n, s) for s, n in shapes if n > 1]
        expected = prefill_attention_slots([n for n, _ in chunks], [s for _, s in chunks], BLOCK, min_slots)
        assert padded == expected, shapes
