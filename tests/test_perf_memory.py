"""KV-cache sizing: sanity against known deployments and the does-not-fit message."""

from __future__ import annotations

import pytest

from kairos.errors import KairosError
from kairos.hardware import load_gpu
from kairos.models import load_model
from kairos.perf import kv_cache_blocks

GIB = 2**30


def test_llama_8b_on_one_h100_gets_about_55_to_60_gib_of_kv() -> None:
    model = load_model("llama-3.1-8b")
    blocks = kv_cache_blocks(model, load_gpu("h100"), 1, 16, 0.9, 2048)
    assert 28_000 <= blocks <= 30_000
    assert 55 <= blocks * 16 * model.kv_bytes_per_token / GIB <= 60


def test_llama_8b_on_rtx_4090_matches_the_measured_vllm_run() -> None:
    # shared/data/validation/vllm-0.19-rtx4090-llama-3.1-8b/meta.json: vLLM 0.19, bf16,
    # gpu_memory_utilization 0.9, max_num_batched_tokens 2048, max_num_seqs 256 -> 2588 blocks.
    blocks = kv_cache_blocks(load_model("llama-3.1-8b"), load_gpu("rtx-4090"), 1, 16, 0.9, 2048, max_num_seqs=256)
    assert blocks == pytest.approx(2588, rel=0.10)


def test_more_utilization_and_smaller_batches_leave_more_blocks() -> None:
    model, gpu = load_model("llama-3.1-8b"), load_gpu("h100")
    assert kv_cache_blocks(model, gpu, 1, 16, 0.95, 2048) > kv_cache_blocks(model, gpu, 1, 16, 0.9, 2048)
    assert kv_cache_blocks(model, gpu, 1, 16, 0.9, 2048) > kv_cache_blocks(model, gpu, 1, 16, 0.9, 16384)


def test_block_count_scales_inversely_with_block_size() -> None:
    model, gpu = load_model("qwen3-14b"), load_gpu("h200")
    small, large = (kv_cache_blocks(model, gpu, 1, size, 0.9, 8192) for size in (16, 32))
    assert small // 2 - 1 <= large <= small // 2


def test_tp2_gives_llama_70b_room_on_h100s() -> None:
    model, gpu = load_model("llama-3.1-70b"), load_gpu("h100")
    assert kv_cache_blocks(model, gpu, 2, 16, 0.9, 8192) < kv_cache_blocks(model, gpu, 4, 16, 0.9, 8192)


def test_model_that_does_not_fit_says_how_much_is_missing_and_which_tp_fits() -> None:
    with pytest.raises(KairosError) as info:
        kv_cache_blocks(load_model("llama-3.1-70b"), load_gpu("h100"), 1, 16, 0.9, 8192)
    message = str(info.value)
    assert "llama-3.1-70b needs 131.4 GiB of weights" in message
    assert "offers 72.0 GiB at gpu_memory_utilization 0.9" in message
    assert message.endswith("GiB missing per GPU; try --tp 2")


def test_suggested_tp_skips_sizes_that_cannot_split_the_heads() -> None:
    # 70B needs 4 RTX 4090s' worth of weights plus reserve: tp 8 is the first that fits.
    with pytest.raises(KairosError, match="try --tp 8$"):
        kv_cache_blocks(load_model("llama-3.1-70b"), load_gpu("rtx-4090"), 1, 16, 0.9, 2048)


@pytest.mark.parametrize("utilization", [0, -0.1, 1.5])
def test_invalid_utilization_is_rejected(utilization: float) -> None:
    with pytest.raises(KairosError, match="gpu_memory_utilization"):
        kv_cache_blocks(load_model("llama-3.1-8b"), load_gpu("h100"), 1, 16, utilization, 2048)
