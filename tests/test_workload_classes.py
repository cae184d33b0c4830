"""Request classes and tenants mixed into synthetic and trace workloads by share."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError

from kairos.workload import (
    SLO,
    RequestSpec,
    WorkloadConfig,
    build_workload,
    save_kairos_jsonl,
)
from kairos.workload.classes import RequestClass, SloTargets, TenantConfig, unit_indices

CLASSES = [
    {"name": "interactive", "share": 7, "slo": {"ttft_ms": 500, "tpot_ms": 50}},
    {"name": "batch", "share": 3, "priority": 1, "deadline_s": 600},
]
TENANTS = {"count": 4, "shares": [0.7, 0.1, 0.1, 0.1]}


def _mixed(**fields: object) -> WorkloadConfig:
    return WorkloadConfig.model_validate({"classes": CLASSES, "tenants": TENANTS, **fields})


def test_class_models_are_documented_and_strict() -> None:
    for model in (RequestClass, SloTargets, TenantConfig):
        assert model.__doc__
        assert model.model_config.get("extra") == "forbid"
        assert all(field.description for field in model.model_fields.values())


def test_classes_and_tenants_follow_their_shares() -> None:
    specs = build_workload(_mixed(num_requests=20_000, prefixes=None), seed=1)
    classes = Counter(spec.slo_class for spec in specs)
    assert classes["interactive"] / len(specs) == pytest.approx(0.7, abs=0.015)
    assert classes["batch"] + classes["interactive"] == len(specs)
    tenants = Counter(spec.tenant for spec in specs)
    assert set(tenants) == {"t0", "t1", "t2", "t3"}
    assert tenants["t0"] / len(specs) == pytest.approx(0.7, abs=0.015)
    assert tenants["t3"] / len(specs) == pytest.approx(0.1, abs=0.01)


def test_a_class_sets_slo_priority_and_deadline() -> None:
    specs = build_workload(_mixed(num_requests=200), seed=2)
    for spec in specs:
        if spec.slo_class == "interactive":
            assert (spec.slo, spec.priority, spec.deadline_s) == (SLO(500.0, 50.0), 0, None)
        else:
            assert (spec.slo, spec.priority, spec.deadline_s) == (None, 1, 600.0)


def test_default_workload_is_unchanged_and_classes_move_nothing_else() -> None:
    plain = build_workload(WorkloadConfig(num_requests=300), seed=3)
    assert all((s.tenant, s.slo_class, s.slo, s.deadline_s, s.priority) == (None, None, None, None, 0)
               for s in plain)
    mixed = build_workload(_mixed(num_requests=300), seed=3)
    unclassed = [dataclasses.replace(s, tenant=None, slo_class=None, slo=None, deadline_s=None, priority=0)
                 for s in mixed]
    assert unclassed == plain
    assert build_workload(_mixed(num_requests=300), seed=3) == mixed  # deterministic
    assert build_workload(_mixed(num_requests=300), seed=4) != mixed


def test_tenants_alone_leave_classes_and_keep_the_class_draws() -> None:
    with_both = build_workload(_mixed(num_requests=100), seed=5)
    classes_only = build_workload(WorkloadConfig(classes=CLASSES, num_requests=100), seed=5)
    assert [s.slo_class for s in classes_only] == [s.slo_class for s in with_both]
    assert {s.tenant for s in classes_only} == {None}


def test_a_session_keeps_one_class_and_tenant() -> None:
    specs = build_workload(_mixed(num_requests=400, sessions={"turns": 4}), seed=6)
    by_session: dict[str, set[tuple[str | None, str | None]]] = {}
    for spec in specs:
        assert spec.session_id is not None
        by_session.setdefault(spec.session_id, set()).add((spec.slo_class, spec.tenant))
    assert all(len(pairs) == 1 for pairs in by_session.values())
    assert len({pair for pairs in by_session.values() for pair in pairs}) > 2


def test_class_lengths_override_the_workload_lengths() -> None:
    classes = [{"name": "chat", "share": 1}, {"name": "summarise", "share": 1, "input_len": 4000,
                                                "output_len": 30}]
    base = WorkloadConfig(num_requests=400, prefixes=None, input_len=100, output_len=50)
    specs = build_workload(base.model_copy(update={"classes": [RequestClass(**c) for c in classes]}), seed=7)
    plain = build_workload(base, seed=7)
    for spec, before in zip(specs, plain):
        expected = (100, 50) if spec.slo_class == "chat" else (4000, 30)
        assert (spec.prompt_len, spec.output_len) == expected
        assert spec.arrival_s == before.arrival_s
    assert Counter(s.slo_class for s in specs)["summarise"] > 150


def test_class_lengths_in_sessions_keep_turns_chained() -> None:
    classes = [RequestClass(name="short", output_len=5), RequestClass(name="long", output_len=90)]
    cfg = WorkloadConfig(num_requests=120, sessions={"turns": 3}, classes=classes)
    specs = build_workload(cfg, seed=8)
    by_id = {s.request_id: s for s in specs}
    for spec in specs:
        assert spec.output_len == (5 if spec.slo_class == "short" else 90)
        if spec.after is not None:
            before = by_id[spec.after]
            assert spec.prompt_len > before.prompt_len + before.output_len


def test_trace_workloads_get_classes_by_the_same_draw(tmp_path: Path) -> None:
    source = build_workload(WorkloadConfig(num_requests=500, prefixes=None), seed=9)
    tagged = [dataclasses.replace(s, tenant="old", slo_class="old", priority=5) for s in source]
    path = tmp_path / "w.jsonl"
    save_kairos_jsonl(path, tagged)
    trace = WorkloadConfig(kind="trace", path=str(path), classes=CLASSES, tenants=TENANTS)
    replayed = build_workload(trace, seed=9)
    synthetic = build_workload(_mixed(num_requests=500, prefixes=None), seed=9)
    assert [(s.slo_class, s.tenant, s.priority) for s in replayed] == [
        (s.slo_class, s.tenant, s.priority) for s in synthetic
    ]
    untouched = build_workload(WorkloadConfig(kind="trace", path=str(path)), seed=9)
    assert {(s.tenant, s.slo_class, s.priority) for s in untouched} == {("old", "old", 5)}


def test_units_are_sessions_then_after_chains_then_requests() -> None:
    specs = [
        RequestSpec("a", 0, 1, 1), RequestSpec("b", 0, 1, 1, after="a"),
        RequestSpec("c", 0, 1, 1, session_id="s"), RequestSpec("d", 0, 1, 1),
        RequestSpec("e", 0, 1, 1, session_id="s"), RequestSpec("f", 0, 1, 1, after="b"),
    ]
    assert unit_indices(specs) == [0, 0, 1, 2, 1, 0]


@pytest.mark.parametrize(
    ("workload", "what"),
    [
        ({"classes": [{"name": "a", "share": 0}]}, "greater than 0"),
        ({"classes": [{"name": "a"}, {"name": "a"}]}, "duplicate class name 'a'"),
        ({"classes": [{"name": "a", "deadline_s": 0}]}, "deadline_s"),
        ({"classes": [{"name": "a", "slo": {"ttft": 5}}]}, "ttft"),
        ({"classes": [{"share": 1}]}, "name"),
        ({"tenants": {"count": 2, "shares": [1]}}, "1 entries for 2 tenants"),
        ({"tenants": {"count": 2, "shares": [1, -1]}}, "must all be finite numbers > 0"),
        ({"tenants": {"count": 0}}, "count"),
        ({"kind": "trace", "path": "x.csv", "classes": [{"name": "a", "input_len": 9}]},
         "only synthetic workloads"),
    ],
)
def test_invalid_classes_are_rejected(workload: dict, what: str) -> None:
    with pytest.raises(ValidationError, match=what):
        WorkloadConfig.model_validate(workload)
