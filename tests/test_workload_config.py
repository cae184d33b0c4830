"""The workload section of a scenario: defaults, validation, building from a trace."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from kairos.workload import (
    EmpiricalLength,
    FixedLength,
    LognormalLength,
    PrefixConfig,
    SessionConfig,
    UniformLength,
    WorkloadConfig,
    build_workload,
)

TRACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "traces"
MODELS: list[type[BaseModel]] = [
    WorkloadConfig, PrefixConfig, SessionConfig,
    FixedLength, UniformLength, LognormalLength, EmpiricalLength,
]


@pytest.mark.parametrize("model", MODELS)
def test_every_field_is_documented_and_unknown_keys_fail(model: type[BaseModel]) -> None:
    assert model.__doc__
    assert model.model_config.get("extra") == "forbid"
    for name, field in model.model_fields.items():
        assert field.description, f"{model.__name__}.{name} has no description"
        assert not field.is_required(), f"{model.__name__}.{name} has no default"


def test_built_in_default() -> None:
    cfg = WorkloadConfig()
    assert (cfg.kind, cfg.num_requests, cfg.arrival) == ("synthetic", None, "poisson")
    assert (cfg.rate, cfg.cv, cfg.time_scale) == (6.0, 1.0, 1.0)
    assert cfg.input_len == LognormalLength(median=700, sigma=1.0, min=16, max=8192)
    assert cfg.output_len == LognormalLength(median=200, sigma=0.8, min=4, max=2048)
    assert cfg.prefixes == PrefixConfig(num=4, length=256)
    assert cfg.sessions is None
    # A dumped (resolved) scenario loads back to the same config.
    assert WorkloadConfig.model_validate(cfg.model_dump()) == cfg
    assert WorkloadConfig.model_validate_json(cfg.model_dump_json()) == cfg


def test_infinite_rate_is_an_offline_batch() -> None:
    cfg = WorkloadConfig(rate=float("inf"), num_requests=5)
    assert WorkloadConfig.model_validate_json(cfg.model_dump_json()) == cfg
    assert {spec.arrival_s for spec in build_workload(cfg, seed=0)} == {0.0}


def test_overrides_and_shorthand() -> None:
    cfg = WorkloadConfig.model_validate(
        {"num_requests": 10, "rate": 2.5, "input_len": 128, "output_len": {"kind": "uniform",
         "min": 1, "max": 9}, "sessions": {"turns": 4}, "prefixes": None}
    )
    assert cfg.input_len == FixedLength(value=128)
    assert cfg.sessions.turns == FixedLength(value=4)
    specs = build_workload(cfg, seed=0)
    assert len(specs) == 10 and specs[0].prompt_len == 128


@pytest.mark.parametrize(
    ("data", "what"),
    [
        ({"rate": 0}, "greater than 0"),
        ({"rate": -3}, "greater than 0"),
        ({"cv": 0}, "greater than 0"),
        ({"num_requests": 0}, "greater than or equal to 1"),
        ({"time_scale": 0}, "greater than 0"),
        ({"arrival": "burst"}, "'poisson', 'gamma' or 'constant'"),
        ({"rte": 3}, "Extra inputs are not permitted"),
        ({"input_len": {"kind": "uniform", "min": 9, "max": 3}}, "min (9) must not exceed max (3)"),
        ({"input_len": {"kind": "lognormal", "median": 0}}, "greater than 0"),
        ({"input_len": {"kind": "fixed", "value": 0}}, "greater than or equal to 1"),
        ({"input_len": {"kind": "zipf"}}, "does not match any of the expected tags"),
        ({"input_len": {"kind": "empirical"}}, "needs a trace `path`"),
        ({"sessions": {"turns": {"kind": "empirical", "path": "x"}}}, "does not match"),
        ({"sessions": {"think_time_s": -1}}, "greater than or equal to 0"),
        ({"prefixes": {"num": 0}}, "greater than or equal to 1"),
        ({"kind": "trace"}, "a trace workload needs `path`"),
        ({"path": "t.csv"}, "set kind: trace"),
        ({"format": "csv", "kind": "trace", "path": "t.csv"}, "'auto', 'azure'"),
    ],
)
def test_invalid_configs_are_rejected(data: dict, what: str) -> None:
    with pytest.raises(ValidationError, match=what.replace("(", r"\(").replace(")", r"\)")):
        WorkloadConfig.model_validate(data)


def test_trace_workload_reports_skipped_rows(tmp_path: Path) -> None:
    path = tmp_path / "burst.csv"
    path.write_text(
        "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
        "4,ChatGPT,10,2,12,Conversation log\n"
        "6,ChatGPT,10,0,10,Conversation log\n"
        "8,GPT-4,10,3,13,API log\n"
        "9,ChatGPT,11,3,14,API log\n"
    )
    cfg = WorkloadConfig(
        kind="trace", path=str(path), time_scale=2, num_requests=5, burstgpt_model="ChatGPT"
    )
    warnings: list[str] = []
    specs = build_workload(cfg, seed=0, warn=warnings.append)
    assert [(spec.request_id, spec.arrival_s) for spec in specs] == [
        ("burstgpt-0", 0.0), ("burstgpt-3", 2.5)
    ]
    assert warnings == [f"{path}: skipped 1 row with zero response tokens (failed requests)"]


@pytest.mark.skipif(not TRACES.is_dir(), reason="shared trace data not present")
def test_trace_workload_from_shared_data() -> None:
    cfg = WorkloadConfig(kind="trace", path=str(TRACES / "mooncake_synthetic.jsonl"),
                         num_requests=25)
    specs = build_workload(cfg, seed=123)
    assert len(specs) == 25 and specs[0].arrival_s == 0.0
    assert build_workload(cfg, seed=7) == specs  # seed plays no part in a replay
