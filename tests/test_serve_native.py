"""The native varlen kernels attend exactly as the padded SDPA path does, on random paged batches."""

from __future__ import annotations

import random

import pytest

torch = pytest.importorskip("torch")

from kairos.serve.attention import build_attention_metadata  # noqa: E402
from kairos.serve.config import ModelConfig  # noqa: E402
from kairos.serve.native.build import NativeUnavailable, load_kernels  # noqa: E402
from kairos.serve.native.varlen import allocate_native_pool, build_varlen_metadata  # noqa: E402
from kairos.serve.rope import inverse_frequencies, rotary_cos_sin  # noqa: E402

KERNELS = load_kernels()
pytestmark = pytest.mark.skipif(isinstance(KERNELS, NativeUnavailable), reason=f"no native kernels: {KERNELS}")

SHAPES = {  # heads, kv_heads, head_dim: GQA, MHA, MQA, a wide group, an odd head size
    "gqa": (8, 4, 32), "mha": (4, 4, 16), "mqa": (4, 1, 64), "wide-group": (16, 1, 128), "odd-dim": (6, 2, 24)}


def random_batch(rng: random.Random, block: int, num_blocks: int) -> tuple[list[int], list[int], list[list[int]]]:
    """Decodes of unequal lengths and prefill chunks with and without cached context, in random order."""
    shapes = [(rng.randint(1, 200), 1) for _ in range(7)] + [(0, rng.randint(1, 40)), (rng.randint(1, 90), 33),
                                                             (rng.randint(1, 5), 9), (300, 1)]
    rng.shuffle(shapes)
    free = list(range(num_blocks))
    rng.shuffle(free)
    starts, lens, tables = [], [], []
    for start, n in shapes:
        blocks = -(-(start + n) // block) + rng.randint(0, 2)  # a table may hold blocks beyond the step
        starts.append(start), lens.append(n), tables.append([free.pop() for _ in range(blocks)])
    return starts, lens, tables


@pytest.mark.parametrize("block", [4, 16, 32])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_native_matches_sdpa(shape, block):
    heads, kv_heads, dim = SHAPES[shape]
    rng = random.Random(f"{shape}-{block}")
    gen = torch.Generator().manual_seed(rng.randrange(1 << 30))
    num_blocks = 400 // block * 12
    starts, lens, tables = random_batch(rng, block, num_blocks)
    config = ModelConfig(vocab_size=300, hidden_size=heads * dim, intermediate_size=16, num_layers=1,
                         num_heads=heads, num_kv_heads=kv_heads, head_dim=dim)
    native_pool = allocate_native_pool(config, num_blocks, block)[0]
    sdpa_pool = torch.zeros(2, num_blocks, block, kv_heads, dim)
    native = build_varlen_metadata(starts, lens, tables, block, KERNELS)
    padded = build_attention_metadata(starts, lens, tables, block, heads // kv_heads, torch.device("cpu"))
    assert torch.equal(native.positions, padded.positions)
    # The cached context: earlier steps' K/V, written through each path's own layout.
    cached = [i for i, s in enumerate(starts) if s]
    past_args = ([0] * len(cached), [starts[i] for i in cached], [tables[i] for i in cached], block)
    past = build_varlen_metadata(*past_args, KERNELS)
    past_padded = build_attention_metadata(*past_args, heads // kv_heads, torch.device("cpu"))
    rows = past.num_tokens
    inv_freq = inverse_frequencies(config)
    k0, v0 = torch.randn(rows, kv_heads, dim, generator=gen), torch.randn(rows, kv_heads, dim, generator=gen)
    q0 = torch.randn(rows, heads, dim, generator=gen)
    cos, sin = rotary_cos_sin(past.positions, inv_freq, torch.float32)
    past.attend(q0, k0, v0, native_pool, dim ** -0.5, cos, sin)
    past_padded.attend(q0, k0, v0, sdpa_pool, dim ** -0.5, cos, sin)
    # This step: q/k/v as the model hands them over (strided slices of a fused projection).
    t = native.num_tokens
    fused = torch.randn(t, (heads + 2 * kv_heads) * dim, generator=gen)
    q, k, v = fused.split((heads * dim, kv_heads * dim, kv_heads * dim), dim=-1)
    q, k, v = q.view(t, heads, dim), k.view(t, kv_heads, dim), v.view(t, kv_heads, dim)
    cos, sin = rotary_cos_sin(native.positions, inv_freq, torch.float32)
    got = native.attend(q, k, v, native_pool, dim ** -0.5, cos, sin)
    want = padded.attend(q, k, v, sdpa_pool, dim ** -0.5, cos, sin)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_varlen_metadata_is_exact():
    meta = build_varlen_metadata([5, 0, 7], [1, 3, 2], [[4, 1], [2], [0, 3, 6]], 4, KERNELS)
    assert meta.positions.tolist() == [5, 0, 1, 2, 7, 8]
    assert meta.seqs.tolist() == [[0, 1, 5], [1, 3, 0], [4, 2, 7]]
    assert meta.tables.tolist() == [[4, 1, 0], [2, 0, 0], [0, 3, 6]]
    assert meta.tables.dtype == meta.seqs.dtype == torch.int32


def test_built_library_is_reused():
    from kairos.serve.native import build

    assert build._build(build._compiler()) == KERNELS.path  # cached by source hash: nothing recompiled


def test_disabled_by_environment(monkeypatch):
    from kairos.serve.native import build

    monkeypatch.setenv("KAIROS_NATIVE", "0")
    build.load_kernels.cache_clear()
    try:
        assert isinstance(build.load_kernels(), NativeUnavailable)
    finally:
        monkeypatch.delenv("KAIROS_NATIVE")
        build.load_kernels.cache_clear()


def test_loading_the_kernels_leaves_subnormal_floats_alone():
    """The library must not switch the process to flush-to-zero (as -ffast-math's crtfastmath.o does):
    the simulator and numpy share the process and its floating-point state."""
    import numpy as np

    smallest, one = 5e-324, 1.0  # the smallest subnormal double
    assert smallest * one > 0.0
    assert np.float32(1e-40) * np.float32(1.0) > 0.0
