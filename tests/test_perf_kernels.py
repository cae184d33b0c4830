"""Kernel step-time model: exactness on the measured grid, monotonicity, extrapolation and
fallback warnings, decode-window identity, and leave-one-out accuracy on every covered GPU."""

from __future__ import annotations

import dataclasses
import logging
import re
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("aiconfigurator_core")

from kairos.engine.batch_shape import BatchShape
from kairos.errors import KairosError
from kairos.hardware import load_gpu
from kairos.models import load_model
from kairos.perf import KernelModel, RooflineModel, covered_gpus, kernel_coverage
from kairos.perf.kernels import database, ops
from kairos.perf.kernels.loo import decode_shape, operator_errors, prefill_shape, step_check
from kairos.perf.kernels.model import open_database

COVERED = ["a100-80gb", "b200", "b300", "gb200", "h100", "h200", "l40s", "rtx-pro-6000"]


def kernels(model: str = "llama-3.1-8b", gpu: str = "h100", tp: int = 1) -> KernelModel:
    return KernelModel(load_model(model), load_gpu(gpu), tp)


@pytest.fixture
def fresh_warnings(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> pytest.LogCaptureFixture:
    """Forget which warnings were already logged, and capture the next ones."""
    monkeypatch.setattr(ops, "_WARNED", set())
    caplog.set_level(logging.WARNING, logger="kairos.perf.kernels")
    return caplog


# ---- coverage and errors -------------------------------------------------------------


def test_coverage_maps_catalog_names_to_database_systems() -> None:
    assert covered_gpus() == COVERED
    assert kernel_coverage("h100") and kernel_coverage("a100")  # aliases resolve too
    assert not kernel_coverage("rtx-4090")


def test_uncovered_gpu_error_names_the_covered_ones() -> None:
    covered = "covered: a100-80gb, b200, b300, gb200, h100, h200, l40s, rtx-pro-6000"
    with pytest.raises(KairosError, match=rf"rtx-4090.*{re.escape(covered)}"):
        kernels(gpu="rtx-4090")


def test_missing_extra_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(database, "systems_root", lambda: None)
    open_database.cache_clear()
    with pytest.raises(KairosError) as err:
        kernels()
    assert str(err.value) == (
        "the kernels step-time model needs the optional extra: pip install 'kairos[kernels]'")
    assert not kernel_coverage("h100")
    open_database.cache_clear()


def test_importing_perf_loads_neither_the_database_nor_pandas() -> None:
    heavy = "{'pandas', 'pyarrow', 'aiconfigurator_core'}"
    code = f"import sys, kairos.perf; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_unknown_framework_and_too_old_version_are_errors() -> None:
    with pytest.raises(KairosError, match="frameworks: sglang, trtllm, vllm"):
        KernelModel(load_model("llama-3.1-8b"), load_gpu("h100"), framework="tgi")
    with pytest.raises(KairosError, match=r"at or before 0\.19\.0"):
        KernelModel(load_model("llama-3.1-8b"), load_gpu("h100"), version="0.19.0")


# ---- exactness on the grid ------------------------------------------------------------


def test_measured_grid_points_come_back_exactly() -> None:
    model = kernels()
    db, layers = model.tables, 32
    grid = db.gemm("bfloat16")
    n, k = list(grid.n).index(6144), list(grid.k).index(4096)  # llama-3.1-8b qkv_proj at tp 1
    for i, m in enumerate(grid.m):
        shape = BatchShape(prefill_new=(int(m),), prefill_ctx=(0,))
        assert model.breakdown(shape)["qkv_proj"] == pytest.approx(grid.seconds[i, n, k] * layers, rel=1e-12)
    gen = db.attention("generation", 32, 8, 128, "bfloat16")
    for i, b in enumerate(gen.batch):
        for j, kv in enumerate(gen.seq):
            if not np.isnan(gen.seconds[i, j]):
                got = model.breakdown(decode_shape(int(b), int(kv)))["attention_decode"]
                assert got == pytest.approx(gen.seconds[i, j] * layers, rel=1e-12)
    ctx = db.attention("context", 32, 8, 128, "bfloat16")
    for j, s in enumerate(ctx.seq):
        got = model.breakdown(prefill_shape(int(s)))["attention_prefill"]
        assert got == pytest.approx(ctx.seconds[0, j] * layers, rel=1e-12)


def test_tensor_parallel_all_reduce_comes_from_the_table() -> None:
    model = kernels("llama-3.1-70b", "h100", tp=4)
    curve = model.tables.all_reduce(4)
    elements = 32 * 8192  # 32 tokens of hidden size 8192: a measured message size
    expected = 161 * curve.seconds[list(curve.elements).index(elements)]  # 2 per layer x 80 + embedding
    shape = BatchShape(prefill_new=(32,), prefill_ctx=(0,))
    assert model.breakdown(shape)["tp_comm"] == pytest.approx(expected, rel=1e-12)


def test_moe_experts_use_the_fused_moe_table() -> None:
    model = kernels("qwen3-30b-a3b", "h100")
    tokens, seconds = model.tables.moe("bfloat16", 2048, 768, 8, 128, 1)
    shape = BatchShape(prefill_new=(int(tokens[5]),), prefill_ctx=(0,))
    assert model.breakdown(shape)["moe_experts"] == pytest.approx(seconds[5] * 48, rel=1e-12)


# ---- shape of the predictions -----------------------------------------------------------


@pytest.mark.parametrize("gpu", COVERED)
def test_step_time_grows_with_batch_context_and_prompt(gpu: str) -> None:
    # Measured points are kept exactly, so their noise is too: where a kernel's time is
    # flat (GEMMs at m <= 8, about +-3% on B200) neighbouring sizes may swap order.
    # Monotonicity holds across steps larger than that noise.
    model = kernels(gpu=gpu)
    by_batch = [model.step_time(decode_shape(n, 1000)) for n in (1, 32, 128, 512)]
    assert by_batch == sorted(by_batch) and by_batch[0] < by_batch[-1]
    by_context = [model.step_time(decode_shape(32, kv)) for kv in (100, 1000, 8000, 32000)]
    assert by_context == sorted(by_context) and by_context[0] < by_context[-1]
    by_prompt = [model.step_time(prefill_shape(n)) for n in (128, 512, 2048, 8192)]
    assert by_prompt == sorted(by_prompt) and by_prompt[0] < by_prompt[-1]


def test_breakdown_sums_to_step_time_and_mirrors_roofline_keys() -> None:
    model = kernels("llama-3.1-70b", tp=4)
    shape = BatchShape(prefill_new=(300, 40), prefill_ctx=(0, 4000), num_decodes=17, decode_kv_sum=17 * 2500,
                       num_sampled=18)
    parts = model.breakdown(shape)
    assert sum(parts.values()) == pytest.approx(model.step_time(shape), rel=1e-12)
    roofline = RooflineModel(load_model("llama-3.1-70b"), load_gpu("h100"), 4).breakdown(shape)
    assert set(parts) == set(roofline) - {"overhead"} | {"elementwise"}


def test_prefix_chunk_costs_its_share_of_the_causal_square() -> None:
    model = kernels()
    full, chunk = model.breakdown(prefill_shape(4096)), model.breakdown(
        BatchShape(prefill_new=(2048,), prefill_ctx=(2048,)))
    share = (4096**2 - 2048**2) / 4096**2
    assert chunk["attention_prefill"] == pytest.approx(full["attention_prefill"] * share, rel=1e-12)


@pytest.mark.parametrize(("model_name", "gpu", "tp"), [
    ("llama-3.1-8b", "h100", 1), ("llama-3.1-70b", "h200", 4), ("llama-2-7b", "rtx-pro-6000", 1),
    ("qwen2.5-7b", "a100-80gb", 1), ("qwen3-30b-a3b", "b200", 2), ("mixtral-8x7b", "l40s", 2),
])
def test_decode_window_is_bit_identical_to_single_steps(model_name: str, gpu: str, tp: int) -> None:
    model = kernels(model_name, gpu, tp)
    for n, kv_sum in [(1, 17), (7, 7 * 300), (200, 200 * 1500), (64, 64 * 3000), (3000, 3000 * 50)]:
        window = model.decode_window(n, kv_sum, 40)
        assert window.shape == (40,) and window.dtype == np.float64
        stepped = [model.step_time(BatchShape(num_decodes=n, decode_kv_sum=kv_sum + i * n, num_sampled=n))
                   for i in range(40)]
        assert np.array_equal(window, np.asarray(stepped))
    assert model.decode_window(4, 400, 0).shape == (0,)


# ---- outside the grid ------------------------------------------------------------------


def test_decode_beyond_measured_kv_follows_the_last_segment(fresh_warnings: pytest.LogCaptureFixture) -> None:
    model = kernels()
    a, b, c = (model.breakdown(decode_shape(256, kv))["attention_decode"] for kv in (8192, 16384, 32768))
    assert (c - b) / 16384 == pytest.approx((b - a) / 8192, rel=1e-9)
    assert "beyond the measured 1024" in fresh_warnings.text
    model.breakdown(decode_shape(256, 65536))
    decode_warnings = [r for r in fresh_warnings.records if "decode attention" in r.getMessage()]
    assert len(decode_warnings) == 1  # once per operator


def test_gemm_beyond_largest_m_scales_in_proportion(fresh_warnings: pytest.LogCaptureFixture) -> None:
    model = kernels()
    last = model.breakdown(prefill_shape(32768))["qkv_proj"]
    beyond = model.breakdown(prefill_shape(49152))["qkv_proj"]
    assert beyond == pytest.approx(last * 1.5, rel=1e-12)
    assert "qkv_proj GEMM m at 49152 tokens is beyond the measured 32768" in fresh_warnings.text


def test_unmeasured_head_size_falls_back_to_the_roofline(fresh_warnings: pytest.LogCaptureFixture) -> None:
    arch = dataclasses.replace(load_model("llama-3.1-8b"), name="odd-heads", head_dim=80)
    model = KernelModel(arch, load_gpu("h100"))
    roofline = RooflineModel(arch, load_gpu("h100"))
    assert "no generation attention measured" in fresh_warnings.text
    assert "no context attention measured" in fresh_warnings.text
    for b, kv in [(1, 2048), (16, 512), (256, 4096)]:  # points of the tabulated roofline grid
        shape = decode_shape(b, kv)
        assert model.breakdown(shape)["attention_decode"] == pytest.approx(
            roofline.breakdown(shape)["attention_decode"], rel=1e-9)


# ---- leave-one-out against the database's own measurements ------------------------------


@pytest.mark.parametrize("gpu", COVERED)
def test_held_out_measurements_are_predicted_from_their_neighbours(gpu: str) -> None:
    model, gpu_spec = load_model("llama-3.1-8b"), load_gpu(gpu)
    tables = open_database(gpu_spec)
    for label, err in operator_errors(model, tables).items():
        print(f"{gpu} {label}: median {np.median(err):.1%} over {len(err)} points")
        assert np.median(err) < 0.10, label
    shapes = [(f"decode b={b} kv={kv}", decode_shape(b, kv)) for kv in (1024, 4096) for b in (1, 8, 32, 128)]
    shapes += [(f"prefill {n}", prefill_shape(n)) for n in (512, 2048, 8192)]
    checks = [step_check(model, gpu_spec, tables, shape, label) for label, shape in shapes]
    errors = [check.error for check in checks]
    print(f"{gpu} composed steps held out: median {np.median(errors):.1%}, max {max(errors):.1%}")
    assert np.median(errors) < 0.06
    assert max(errors) < 0.30
