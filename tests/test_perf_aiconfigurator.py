"""The aiconfigurator step-time model: one engine's steps, lockstep ranks, and what it cannot model."""

from __future__ import annotations

import numpy as np
import pytest

from kairos.engine.batch_shape import BatchShape
from kairos.errors import KairosError
from kairos.hardware import load_gpu
from kairos.models import load_model
from kairos.perf.parallel import Parallelism
from kairos.scenario.step_models import make_step_time_model

pytest.importorskip("aiconfigurator_core")
from kairos.perf.aiconfigurator import AiconfiguratorModel  # noqa: E402


def prefill(tokens: int, ctx: int = 0) -> BatchShape:
    return BatchShape(prefill_new=(tokens,), prefill_ctx=(ctx,), num_sampled=1)


def decode(n: int, kv_each: int) -> BatchShape:
    return BatchShape(num_decodes=n, decode_kv_sum=n * kv_each, num_sampled=n)


@pytest.fixture(scope="module")
def dense() -> AiconfiguratorModel:
    return AiconfiguratorModel(load_model("llama-3.1-8b"), load_gpu("h100"), Parallelism(1))


def test_step_time_grows_with_work(dense):
    assert 0 < dense.step_time(prefill(256)) < dense.step_time(prefill(2048)) < dense.step_time(prefill(8192))
    assert dense.step_time(prefill(1024)) < dense.step_time(prefill(1024, ctx=8192))
    assert dense.step_time(decode(8, 1000)) < dense.step_time(decode(64, 1000)) < dense.step_time(decode(64, 8000))


def test_decode_window_is_step_by_step(dense):
    window = dense.decode_window(32, 32 * 500, 5)
    singles = [dense.step_time(BatchShape(num_decodes=32, decode_kv_sum=32 * 500 + i * 32, num_sampled=32))
               for i in range(5)]
    assert np.array_equal(window, np.array(singles))


def test_tensor_parallelism_speeds_up_a_big_model():
    model, gpu = load_model("llama-3.1-70b").with_precision("fp8", None), load_gpu("h100")
    tp2, tp4 = (AiconfiguratorModel(model, gpu, Parallelism(tp)) for tp in (2, 4))
    assert tp4.step_time(decode(16, 2000)) < tp2.step_time(decode(16, 2000))
    assert tp4.step_time(prefill(4096)) < tp2.step_time(prefill(4096))


def test_fp8_weights_decode_faster_than_bf16():
    gpu = load_gpu("h100")
    bf16 = AiconfiguratorModel(load_model("llama-3.1-8b"), gpu, Parallelism(1))
    fp8 = AiconfiguratorModel(load_model("llama-3.1-8b").with_precision("fp8", None), gpu, Parallelism(1))
    assert fp8.step_time(decode(1, 1000)) < bf16.step_time(decode(1, 1000))


def test_lockstep_step_waits_for_the_busiest_rank():
    moe = AiconfiguratorModel(load_model("qwen3-30b-a3b"), load_gpu("h100"), Parallelism(1, dp=2, ep=True))
    busy, light = decode(64, 2000), decode(2, 100)
    both_busy = moe.rank_step_time([busy, busy])
    assert moe.rank_step_time([busy, light]) == pytest.approx(both_busy, rel=0.05)
    # An idle rank runs a dummy batch but does not make the step cheaper than its busy peer's.
    assert moe.rank_step_time([busy, BatchShape()]) >= moe.rank_step_time([light, BatchShape()])


def test_registry_builds_it_with_overheads_and_refuses_moe_dp_elsewhere():
    model, gpu = load_model("qwen3-30b-a3b"), load_gpu("h100")
    parallel = Parallelism(1, dp=2, ep=True)
    resolved = make_step_time_model("aiconfigurator", model, gpu, 1, parallel=parallel)
    assert resolved.used == "aiconfigurator"
    assert resolved.model.rank_step_time([decode(8, 500), BatchShape()]) > 0
    with pytest.raises(KairosError, match="needs --perf aiconfigurator"):
        make_step_time_model("roofline", model, gpu, 1, parallel=parallel)


def test_unmodelled_deployments_are_clear_errors():
    with pytest.raises(KairosError, match="no system for GPU 'rtx-4090'"):
        AiconfiguratorModel(load_model("llama-3.1-8b"), load_gpu("rtx-4090"), Parallelism(1))
    # aiconfigurator-core measured no int4 GEMMs for vLLM on H200: said at construction.
    with pytest.raises(KairosError, match="aiconfigurator-core"):
        AiconfiguratorModel(load_model("llama-3.1-8b").with_precision("int4", None), load_gpu("h200"),
                            Parallelism(1))
