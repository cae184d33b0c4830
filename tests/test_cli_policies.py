"""`kairos policies`, and the policy and predictor options of `kairos simulate` and `kairos serve`."""

from __future__ import annotations

import json

import pytest

from cli_helpers import kairos, one_line_error
from kairos.cli.overrides import parse_options
from kairos.engine.policies import POLICIES
from kairos.errors import KairosError
from kairos.predict import PREDICTORS


def test_policies_lists_every_policy_and_predictor_with_knob_defaults(capsys):
    code, out, err = kairos(capsys, "policies")
    assert code == 0, err
    for name in (*POLICIES.names(), *PREDICTORS.names()):
        assert name in out
    assert "short_tokens=256" in out and "sigma=0.5" in out and "quantile=0.5" in out
    assert "predictor=" not in out  # set from --predictor, not a knob
    # The plug-in's own refusal decides the vLLM column.
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 3}
    assert "no:" in rows["past_future"] and "no:" in rows["filler"] and "yes" in rows["sjf"].split("│")[5]


def test_policies_name_shows_the_full_docstring_and_knobs(capsys):
    code, out, _ = kairos(capsys, "policies", "SJF")
    assert code == 0
    assert "DriftSched" in out and "A long request can wait" in out and "default histogram" in out
    code, out, _ = kairos(capsys, "policies", "laps")
    assert "short_tokens (default 256)" in out and "max_wait_s (default 2.0)" in out
    code, out, _ = kairos(capsys, "policies", "noisy")
    assert code == 0 and "lognormal" in out and "sigma (default 0.5)" in out


def test_unknown_policy_name_is_one_line_with_close_matches(capsys):
    line = one_line_error(capsys, "policies", "sjff")
    assert "unknown scheduling policy 'sjff'" in line and "sjf" in line


def test_option_values_parse_as_int_then_float_then_text():
    assert parse_options(["a=1", "b=1.5", "c=batch", "d=1e3", "e="], "--x") == {
        "a": 1, "b": 1.5, "c": "batch", "d": 1000.0, "e": ""}
    for bad in ("noequals", "=3", "a.b=1"):
        with pytest.raises(KairosError, match="--x expects KEY=VALUE"):
            parse_options([bad], "--x")


def test_simulate_policy_and_predictor_options_reach_the_scenario(capsys, tmp_path):
    code, _, err = kairos(capsys, "simulate", "--num-requests", "20", "--policy", "slack",
                          "--policy-option", "tpot_ms=40", "--predictor", "noisy",
                          "--predictor-option", "sigma=0.25", "--predictor-option", "seed=3", "-q", "-o", str(tmp_path))
    assert code == 0, err
    report = json.loads((tmp_path / "report.json").read_text())
    engine = report["scenario"]["engine"]
    assert engine["policy"] == "slack" and engine["policy_options"] == {"tpot_ms": 40}
    assert engine["predictor"] == "noisy" and engine["predictor_options"] == {"sigma": 0.25, "seed": 3}
    assert report["prediction"]["requests"] == 20


@pytest.mark.parametrize("args, message", [
    (("--policy", "laps", "--policy-option", "short=1"), "has no knob short"),
    (("--policy-option", "oops"), "--policy-option expects KEY=VALUE"),
    (("--predictor-option", "sigma=0.5"), "predictor options given without a predictor"),
])
def test_simulate_bad_policy_options_are_one_line_errors(capsys, args, message):
    assert message in one_line_error(capsys, "simulate", "--num-requests", "5", "-q", *args)


def test_serve_passes_policy_and_predictor_to_the_engine_config(capsys, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("fastapi")
    from kairos.serve import server

    started = []
    monkeypatch.setattr(server, "run_server", started.append)
    code, _, err = kairos(capsys, "serve", "--model", "tiny", "--policy", "LAPS", "--policy-option",
                          "short_tokens=64", "--predictor", "Histogram", "--predictor-option", "quantile=0.9")
    assert code == 0, err
    runner = started[0].runner
    assert (runner.policy, runner.policy_options) == ("laps", (("short_tokens", 64),))
    assert (runner.predictor, runner.predictor_options) == ("histogram", (("quantile", 0.9),))


@pytest.mark.parametrize("args, message", [
    (("--policy", "laps", "--policy-option", "short_tokens=0"), "scheduling policy 'laps': short_tokens"),
    (("--policy", "vtc", "--policy-option", "weight=1"), "has no knob weight"),
    (("--policy", "sjf", "--predictor", "noisy", "--predictor-option", "sigma=-1"), "sigma must be >= 0"),
    (("--predictor", "oracle", "--predictor-option", "x=1"), "has no knob x"),
])
def test_serve_bad_policy_knobs_fail_before_the_server_starts(capsys, monkeypatch, args, message):
    pytest.importorskip("torch")
    pytest.importorskip("fastapi")
    from kairos.serve import server

    monkeypatch.setattr(server, "run_server", lambda config: pytest.fail("the server started"))
    assert message in one_line_error(capsys, "serve", "--model", "tiny", *args)
