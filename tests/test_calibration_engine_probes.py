"""`kairos calibrate`: crafted requests give the intended step shapes, and a quick run end to end
writes a profile that loads, predicts its own points and drives a simulation."""

from __future__ import annotations

import json
import statistics

import pytest
import typer

torch = pytest.importorskip("torch")

from kairos.calibration.model import CalibratedModel  # noqa: E402
from kairos.calibration.profile import MeasuredPoint  # noqa: E402
from kairos.cli import calibrate_cmd  # noqa: E402
from kairos.cli.errors import run_app  # noqa: E402
from kairos.cli.main import app as kairos_app  # noqa: E402
from kairos.models.arch import ModelArch  # noqa: E402
from kairos.probes.engine import (  # noqa: E402
    DEFAULT_AXES, QUICK_AXES, WARMUP_STEPS, StepProbe, StepSpec, calibration_grid,
)
from kairos.serve import EngineRunner, RunnerConfig, load_model  # noqa: E402


@pytest.fixture(scope="module")
def probe():
    runner = EngineRunner(load_model("tiny"), RunnerConfig(num_blocks=512, ignore_eos=True,
                                                          max_num_batched_tokens=256))
    return StepProbe(runner, repeats=3)


@pytest.mark.parametrize("spec, new, ctx, decodes, sampled", [
    (StepSpec(1, 48), (48,), (0,), 0, 1),
    (StepSpec(1, 64, prefix=96), (64,), (96,), 0, 1),
    (StepSpec(3, 32, prefix=32), (32, 32, 32), (32, 32, 32), 0, 3),
    (StepSpec(1, 256, prefix=32, final=False), (256,), (32,), 0, 0),
    (StepSpec(decodes=5, decode_prompt=40), (), (), 5, 5),
    (StepSpec(1, 64, prefix=64, decodes=6, decode_prompt=40), (64,), (64,), 6, 7),
    (StepSpec(1, 250, final=False, decodes=6, decode_prompt=40), (250,), (0,), 6, 6),
])
def test_probe_builds_the_shape_it_was_asked_for(probe, spec, new, ctx, decodes, sampled):
    point = probe.measure(spec)
    shape = point.shape
    assert (shape.prefill_new, shape.prefill_ctx, shape.num_decodes, shape.num_sampled) == (new, ctx, decodes, sampled)
    if decodes:
        # The middle timed step: after the prompt, the first sampled token and the earlier steps.
        per_request = spec.decode_prompt + 1 + WARMUP_STEPS + 1
        assert shape.decode_kv_sum == decodes * per_request
    assert point.kind == spec.kind and len(point.times_s) == 3
    assert point.time_s == statistics.median(point.times_s) > 0
    # Every request of the point was released: the next point starts from an idle engine.
    assert not probe.runner.has_work() and probe.runner.kv.num_used_blocks == 0


@pytest.mark.parametrize("axes", [DEFAULT_AXES, QUICK_AXES])
@pytest.mark.parametrize("budget, seqs, max_len", [(2048, 256, 4096), (512, 32, 1024), (100, 4, 300)])
def test_grid_stays_within_the_engine_limits(axes, budget, seqs, max_len):
    grid = calibration_grid(budget, seqs, max_len, steps=4, axes=axes)
    assert {s.kind for s in grid} == {"prefill", "decode", "mixed"}
    for s in grid:
        assert s.chunks * s.chunk + s.decodes <= budget and s.chunks + s.decodes <= seqs
        assert s.prefix + s.chunk + 1 <= max_len and s.decode_prompt + 4 <= max_len
        assert s.final or s.chunk + s.decodes == budget


def kairos(capsys, app, *args: str) -> tuple[int, str, str]:
    code = run_app(app, list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def calibrate_app() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)
    calibrate_cmd.register(app)
    return app


@pytest.fixture(scope="module")
def quick_profile(tmp_path_factory):
    path = tmp_path_factory.mktemp("calibrate") / "tmp" / "profile.json"
    code = run_app(calibrate_app(), ["calibrate", "--model", "tiny", "--quick", "-o", str(path)])
    assert code == 0
    return path


def test_quick_calibration_writes_a_profile_that_predicts_its_points(quick_profile):
    profile = json.loads(quick_profile.read_text())
    assert profile["schema"] == "kairos.calibration/v2" and profile["model"] == "tiny"
    assert profile["engine"] == {"block_size": 16, "max_num_batched_tokens": 2048, "max_num_seqs": 256,
                                 "num_blocks": profile["engine"]["num_blocks"], "attention_min_split_slots": 2048,
                                 "attention": profile["engine"]["attention"]}
    assert profile["engine"]["attention"] in ("varlen", "padded")
    assert profile["torch_version"] == torch.__version__ and profile["torch_threads"] >= 1
    assert {p["kind"] for p in profile["points"]} == {"prefill", "decode", "mixed"}
    model = CalibratedModel(quick_profile)
    points = [MeasuredPoint.from_dict(p) for p in profile["points"]]
    errors = sorted(abs(model.step_time(p.shape) / p.time_s - 1) * 100 for p in points)
    assert statistics.median(errors) == pytest.approx(profile["fit"]["median_abs_error_pct"])
    # Loose: other programs may share the machine; a real misfit is off by several times.
    assert statistics.median(errors) < 40
    arch = model.arch()
    assert (arch.hidden_size, arch.num_layers, arch.vocab_size, arch.dtype_bytes) == (64, 2, 512, 4)
    assert ModelArch.from_hf_config(profile["model_config"], name="x").num_kv_heads == 2


def test_simulate_runs_on_the_calibrated_profile(capsys, quick_profile, tmp_path):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(json.loads(quick_profile.read_text())["model_config"]))
    code, out, err = kairos(capsys, kairos_app, "simulate", "--model", str(config), "--perf",
                            f"calibrated:{quick_profile}", "--num-requests", "30", "-o", str(tmp_path))
    assert code == 0, err
    assert "perf calibrated" in out
    report = json.loads((tmp_path / "report.json").read_text())
    # Prompts past the tiny model's 4096 positions are rejected, not simulated.
    assert report["summary"]["num_requests"] == 30 and report["summary"]["completed"] > 20


def test_calibrate_reports_bad_input_in_one_line(capsys, tmp_path):
    code, _, err = kairos(capsys, calibrate_app(), "calibrate", "--model", "huge", "-o", str(tmp_path / "p.json"))
    assert code == 2 and "unknown model" in err and "Traceback" not in err


def test_calibrate_refuses_limits_that_leave_too_few_shapes_before_measuring(capsys, tmp_path):
    code, _, err = kairos(capsys, calibrate_app(), "calibrate", "--model", "tiny", "--quick", "--max-num-seqs", "1",
                          "--max-num-batched-tokens", "40", "-o", str(tmp_path / "p.json"))
    assert code == 2 and "fewer than the 9 terms" in err and "drop --quick" in err
    assert not (tmp_path / "p.json").exists()
