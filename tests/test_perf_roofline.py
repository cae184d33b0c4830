"""Roofline step-time model: monotonicity, TP and MoE effects, and internal consistency."""

from __future__ import annotations

import numpy as np
import pytest

from kairos.engine.batch_shape import BatchShape
from kairos.errors import KairosError
from kairos.hardware import load_gpu
from kairos.models import load_model
from kairos.perf import RooflineModel, RooflineParams


def roofline(model: str = "llama-3.1-8b", gpu: str = "h100", tp: int = 1) -> RooflineModel:
    return RooflineModel(load_model(model), load_gpu(gpu), tp)


def decode(n: int, kv_sum: int) -> BatchShape:
    return BatchShape(num_decodes=n, decode_kv_sum=kv_sum, num_sampled=n)


def prefill(new: int, ctx: int = 0, sampled: int = 1) -> BatchShape:
    return BatchShape(prefill_new=(new,), prefill_ctx=(ctx,), num_sampled=sampled)


def test_name_is_roofline() -> None:
    assert roofline().name == "roofline"


def test_decode_step_grows_with_batch_and_context() -> None:
    model = roofline()
    by_batch = [model.step_time(decode(n, n * 1000)) for n in (1, 8, 64, 256)]
    assert by_batch == sorted(by_batch) and by_batch[0] < by_batch[-1]
    by_context = [model.step_time(decode(32, 32 * ctx)) for ctx in (100, 1000, 8000, 32000)]
    assert by_context == sorted(by_context) and by_context[0] < by_context[-1]


def test_single_decode_is_bound_by_streaming_the_weights() -> None:
    model, gpu = load_model("llama-3.1-8b"), load_gpu("h100")
    params = RooflineParams()
    # A decode step streams every weight but the input embedding table (it reads one row).
    streamed = model.weight_bytes - model.vocab_size * model.hidden_size * model.dtype_bytes
    floor = streamed / (gpu.memory_bw * params.memory_efficiency)
    t = roofline().step_time(decode(1, 100))
    assert floor < t < floor * 1.2


@pytest.mark.parametrize(("model", "gpu", "tp"), [
    ("llama-3.1-8b", "h100", 1), ("llama-3.1-70b", "h100", 4), ("qwen3-30b-a3b", "rtx-pro-6000", 2),
    ("mixtral-8x7b", "a100-80gb", 2),
])
def test_decode_window_equals_repeated_step_time(model: str, gpu: str, tp: int) -> None:
    step_model = roofline(model, gpu, tp)
    for n, kv_sum in [(1, 17), (7, 7 * 300), (200, 200 * 1500)]:
        window = step_model.decode_window(n, kv_sum, 25)
        assert window.shape == (25,) and window.dtype == np.float64
        stepped = [step_model.step_time(decode(n, kv_sum + i * n)) for i in range(25)]
        np.testing.assert_allclose(window, stepped, rtol=1e-12, atol=0)


def test_decode_window_of_zero_steps_is_empty() -> None:
    assert roofline().decode_window(4, 400, 0).shape == (0,)


def test_prefill_chunk_cost_grows_with_cached_context() -> None:
    model = roofline()
    times = [model.step_time(prefill(512, ctx)) for ctx in (0, 2048, 8192, 32768)]
    assert all(a < b for a, b in zip(times, times[1:]))


def test_prefill_cost_grows_with_chunk_size() -> None:
    model = roofline()
    times = [model.step_time(prefill(c)) for c in (128, 512, 2048, 8192)]
    assert all(a < b for a, b in zip(times, times[1:]))


def test_tp2_speeds_up_llama_70b_prefill_and_decode() -> None:
    tp1, tp2 = roofline("llama-3.1-70b", tp=1), roofline("llama-3.1-70b", tp=2)
    for shape in (prefill(8192), decode(64, 64 * 2000)):
        assert tp2.step_time(shape) < 0.75 * tp1.step_time(shape)
        assert tp2.breakdown(shape)["tp_comm"] > 0 == tp1.breakdown(shape)["tp_comm"]


def test_moe_decode_reads_only_the_experts_it_touches() -> None:
    moe = roofline("qwen3-30b-a3b")
    model, gpu = load_model("qwen3-30b-a3b"), load_gpu("h100")
    all_weights = model.weight_bytes / (gpu.memory_bw * RooflineParams().memory_efficiency)
    single = moe.step_time(decode(1, 1000))
    assert single < 0.25 * all_weights
    # A dense model of the same total size pays for all of its weights.
    assert single < 0.25 * roofline("qwen3-32b").step_time(decode(1, 1000))
    # Larger batches touch more distinct experts.
    assert moe.breakdown(decode(64, 64_000))["moe_experts"] > 4 * moe.breakdown(decode(1, 1000))["moe_experts"]


def test_breakdown_sums_to_step_time() -> None:
    mixed = BatchShape(
        prefill_new=(512, 300), prefill_ctx=(1024, 0), num_decodes=100, decode_kv_sum=150_000, num_sampled=101
    )
    for model, tp in (("llama-3.1-70b", 4), ("qwen3-30b-a3b", 1)):
        step_model = roofline(model, tp=tp)
        parts = step_model.breakdown(mixed)
        assert sum(parts.values()) == pytest.approx(step_model.step_time(mixed), rel=1e-12)
        assert all(v >= 0 for v in parts.values())
        assert parts["attention_prefill"] > 0 and parts["attention_decode"] > 0


def test_lm_head_runs_only_for_sampled_tokens() -> None:
    model = roofline()
    assert model.breakdown(prefill(512, sampled=0))["lm_head"] == 0
    assert model.step_time(prefill(512, sampled=0)) < model.step_time(prefill(512, sampled=1))


def test_invalid_tp_is_rejected() -> None:
    with pytest.raises(KairosError):
        roofline("llama-3.1-8b", tp=3)
