"""Trace loaders: real traces, BurstGPT filtering, malformed input, Kairos JSONL round-trip."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kairos.errors import KairosError
from kairos.workload import (
    SLO,
    RequestSpec,
    Span,
    WorkloadConfig,
    build_workload,
    content_key,
    content_keys,
    detect_format,
    load_kairos_jsonl,
    load_trace,
    save_kairos_jsonl,
)

TRACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "traces"
needs_traces = pytest.mark.skipif(not TRACES.is_dir(), reason="shared trace data not present")

REAL_TRACES = [
    ("azure_llm_2023_conv.csv", "azure", 19_366),
    ("azure_llm_2023_code.csv", "azure", 8_819),
    ("mooncake_conversation.jsonl", "mooncake", 12_031),
    ("mooncake_synthetic.jsonl", "mooncake", 3_993),
]


@pytest.fixture(scope="module")
def real_loads() -> dict[str, list[RequestSpec]]:
    return {name: load_trace(TRACES / name).requests for name, _, _ in REAL_TRACES}


def _arrivals(specs: list[RequestSpec]) -> np.ndarray:
    return np.array([spec.arrival_s for spec in specs])


# --- real traces -------------------------------------------------------------------


@needs_traces
@pytest.mark.parametrize(("name", "fmt", "rows"), REAL_TRACES)
def test_real_trace_loads_every_row_sorted_from_zero(real_loads, name, fmt, rows) -> None:
    specs = real_loads[name]
    assert detect_format(TRACES / name) == fmt
    assert len(specs) == rows
    arrivals = _arrivals(specs)
    assert arrivals[0] == 0.0
    assert np.all(np.diff(arrivals) >= 0)
    assert len({spec.request_id for spec in specs}) == rows
    assert all(spec.prompt_len >= 1 and spec.output_len >= 1 for spec in specs)
    assert all(spec.shared_len <= spec.prompt_len for spec in specs)


@needs_traces
def test_azure_arrivals_follow_timestamps() -> None:
    specs = load_trace(TRACES / "azure_llm_2023_conv.csv").requests
    # First two rows: 18:15:46.6805900 and 18:15:50.9951690.
    assert specs[1].arrival_s == pytest.approx(4.314579, abs=1e-9)
    assert (specs[0].prompt_len, specs[0].output_len, specs[0].shared) == (374, 44, ())
    assert specs[-1].arrival_s == pytest.approx(3501.721937, abs=1e-6)


@needs_traces
@pytest.mark.parametrize("name", [name for name, _, _ in REAL_TRACES])
def test_time_scale_and_num_requests(real_loads, name) -> None:
    full = real_loads[name]
    fast = load_trace(TRACES / name, time_scale=2.0).requests
    assert _arrivals(fast)[-1] == pytest.approx(_arrivals(full)[-1] / 2)
    prefix = load_trace(TRACES / name, num_requests=100).requests
    assert prefix == full[:100]


@needs_traces
def test_mooncake_spans_cover_hash_blocks(real_loads) -> None:
    path = TRACES / "mooncake_conversation.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    specs = real_loads["mooncake_conversation.jsonl"]
    for spec, row in zip(specs, _rows_of(specs, rows)):
        ids = row["hash_ids"]
        assert spec.prompt_len == row["input_length"]
        assert spec.shared_len == min(row["input_length"], 512 * len(ids))
        assert all(span.start == 0 and span.length <= 512 for span in spec.shared)
        assert all(span.length == 512 for span in spec.shared[:-1])
        assert [span.key for span in spec.shared] == [
            content_key("mooncake", h) for h in ids[: len(spec.shared)]
        ]
    # Hash id 0 opens many conversations: they all share one first block.
    pairs = zip(specs, _rows_of(specs, rows))
    opened_by_0 = [spec for spec, row in pairs if row["hash_ids"][0] == 0]
    firsts = {spec.shared[0] for spec in opened_by_0}
    assert len(opened_by_0) > 100 and len(firsts) == 1


def _rows_of(specs: list[RequestSpec], rows: list[dict]) -> list[dict]:
    """The file row each Mooncake spec came from (its id is mooncake-<row index>)."""
    return [rows[int(spec.request_id.removeprefix("mooncake-"))] for spec in specs]


def test_mooncake_truncation_and_unique_tail(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(
        '{"timestamp": 5, "input_length": 700, "output_length": 3, "hash_ids": [7, 8]}\n'
        '{"timestamp": 9, "input_length": 1500, "output_length": 3, "hash_ids": [7, 9]}\n'
        '{"timestamp": 7, "input_length": 300, "output_length": 3, "hash_ids": [7, 8, 9]}\n'
    )
    short, third, long = load_trace(path).requests
    assert [s.request_id for s in (short, third, long)] == [
        "mooncake-0", "mooncake-2", "mooncake-1"
    ]
    assert [s.arrival_s for s in (short, third, long)] == [0.0, 0.002, 0.004]
    k7, k8, k9 = (content_key("mooncake", h) for h in (7, 8, 9))
    assert short.shared == (Span(k7, 0, 512), Span(k8, 0, 188))
    assert third.shared == (Span(k7, 0, 300),)
    assert long.shared == (Span(k7, 0, 512), Span(k9, 0, 512))  # tokens 1024.. are unique
    assert short.shared[0] is long.shared[0]  # one object per distinct block


# --- BurstGPT ----------------------------------------------------------------------

BURST_V1 = """Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type
0,ChatGPT,100,20,120,Conversation log
3,GPT-4,50,0,50,Conversation log
5,ChatGPT,70,0,70,API log
6,ChatGPT,80,9,89,API log
9,GPT-4,40,4,44,API log
12,ChatGPT,30,3,33,Conversation log
"""

BURST_V3 = (
    "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type,Session ID,Elapsed time\n"
) + """10,ChatGPT,100,20,120,Conversation log,s1,1.5
11,ChatGPT,120,0,120,Conversation log,s1,0.0
14,GPT-4,50,5,55,API log,,2.0
"""


@pytest.fixture
def burst(tmp_path: Path) -> Path:
    path = tmp_path / "burst.csv"
    path.write_text(BURST_V1)
    return path


def test_burstgpt_skips_failed_requests(burst: Path) -> None:
    load = load_trace(burst)
    assert [s.request_id for s in load.requests] == [
        "burstgpt-0", "burstgpt-3", "burstgpt-4", "burstgpt-5"
    ]
    assert load.skipped == {"zero response tokens (failed requests)": 2}
    assert load.num_skipped == 2
    assert load.warnings == [f"{burst}: skipped 2 rows with zero response tokens (failed requests)"]


@pytest.mark.parametrize(
    ("model", "log_type", "ids", "skipped"),
    [
        ("ChatGPT", None, [0, 3, 5], 1),
        ("gpt-4", None, [4], 1),
        (None, "Conversation log", [0, 5], 1),
        ("ChatGPT", "api log", [3], 1),
        ("GPT-4", "API log", [4], 0),
    ],
)
def test_burstgpt_filters(burst: Path, model, log_type, ids, skipped) -> None:
    load = load_trace(burst, burstgpt_model=model, burstgpt_log_type=log_type)
    assert [s.request_id for s in load.requests] == [f"burstgpt-{i}" for i in ids]
    assert load.num_skipped == skipped
    assert load.requests[0].arrival_s == 0.0


def test_burstgpt_v3_sessions_and_unknown_filter(tmp_path: Path, burst: Path) -> None:
    path = tmp_path / "v3.csv"
    path.write_text(BURST_V3)
    specs = load_trace(path).requests
    assert [(s.session_id, s.arrival_s) for s in specs] == [("s1", 0.0), (None, 4.0)]
    with pytest.raises(KairosError, match="unknown BurstGPT model 'gpt4': did you mean gpt-4"):
        load_trace(burst, burstgpt_model="gpt4")
    with pytest.raises(KairosError, match="no requests left to replay; skipped 1 row with zero"):
        load_trace(burst, burstgpt_model="GPT-4", burstgpt_log_type="Conversation log")


def test_burstgpt_filters_rejected_on_other_formats(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,3,4\n")
    with pytest.raises(KairosError, match="only to BurstGPT traces, but this is a azure"):
        load_trace(path, burstgpt_model="ChatGPT")


# --- malformed input ----------------------------------------------------------------

AZ = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
AZ_ROW = "2023-11-16 18:15:46.6805900,374,44\n"
MC_ROW = '{"timestamp": 0, "input_length": 10, "output_length": 5, "hash_ids": [1]}\n'
KA_ROW = '{"request_id": "r0", "arrival_s": 0.0, "prompt_len": 10, "output_len": 5}\n'


@pytest.mark.parametrize(
    ("name", "text", "fmt", "where", "what"),
    [
        ("a.csv", AZ + AZ_ROW + "2023-11-16 18:1x:46,3,4\n", "auto", 3, "TIMESTAMP is not a date"),
        ("a.csv", AZ + AZ_ROW + "\n" + "2023-11-16 18:15:47,abc,4\n", "auto", 4, "not an integer"),
        ("a.csv", AZ + AZ_ROW + "2023-11-16 18:15:47,3,-4\n", "auto", 3, "must not be negative"),
        ("a.csv", AZ + AZ_ROW + "2023-11-16 18:15:47,3\n", "auto", 3, "expected 3 fields"),
        ("a.csv", "TIMESTAMP,Context,Generated\n" + AZ_ROW, "azure", 1, "not an Azure trace"),
        ("b.csv", BURST_V1 + "x,ChatGPT,1,1,2,API log\n", "auto", 8, "Timestamp is not a number"),
        ("b.csv", "Timestamp,Model,Request tokens,Response tokens\n", "burstgpt", 1, "no column"),
        ("m.jsonl", MC_ROW + MC_ROW[:-3] + "\n", "auto", 2, "invalid JSON"),
        ("m.jsonl", MC_ROW + "\n" + MC_ROW.replace('"input_length": 10', '"input_length": "10"'),
         "auto", 3, "input_length must be an integer"),
        ("m.jsonl", MC_ROW + MC_ROW.replace("[1]", "[1, -2]"), "auto", 2, "hash_ids must be"),
        ("m.jsonl", MC_ROW + MC_ROW.replace('"timestamp": 0', '"timestamp": -1'),
         "auto", 2, "timestamp must be a finite number >= 0"),
        ("m.jsonl", MC_ROW + '{"timestamp": 0, "input_length": 3, "hash_ids": []}\n',
         "auto", 2, "missing field 'output_length'"),
        ("m.jsonl", MC_ROW + "[1, 2]\n", "mooncake", 2, "expected a JSON object"),
        ("k.jsonl", KA_ROW + KA_ROW.replace("r0", "r1").replace("10", "0"), "auto", 2,
         "prompt_len must be an integer >= 1"),
        ("k.jsonl", KA_ROW + KA_ROW, "auto", 2, "duplicate request_id"),
        ("k.jsonl", KA_ROW.replace("}", ', "after": "r9"}'), "auto", 1, "does not name an earlier"),
        ("k.jsonl", KA_ROW.replace("}", ', "priorty": 1}'), "auto", 1, "unknown field 'priorty'"),
        ("k.jsonl", KA_ROW.replace("}", ', "shared": [[1, 0, 99]]}'), "auto", 1, "cover 99"),
        ("k.jsonl", KA_ROW.replace("}", ', "slo": {"ttft_ms": "fast"}}'), "auto", 1, "slo.ttft_ms"),
        ("k.jsonl", KA_ROW.replace("}", ', "deadline_s": 0}'), "auto", 1, "deadline_s must be"),
        ("k.jsonl", KA_ROW.replace("}", ', "deadline_s": "soon"}'), "auto", 1, "deadline_s must be"),
        ("k.jsonl", KA_ROW.replace("}", ', "slo_class": ""}'), "auto", 1, "slo_class must be"),
        ("k.jsonl", KA_ROW.replace("}", ', "tenant": 7}'), "auto", 1, "tenant must be"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path, name, text, fmt, where, what) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(KairosError) as info:
        load_trace(path, fmt)
    message = str(info.value)
    assert message.startswith(f"{path}:{where}: "), message
    assert what in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("", "file is empty"),
        (AZ, "no rows after its header"),
        ("hello,world\n1,2\n", "cannot tell the trace format"),
        ('{"foo": 1}\n', "cannot tell the trace format"),
    ],
)
def test_unusable_files(tmp_path: Path, text: str, what: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(KairosError, match=what):
        load_trace(path)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(KairosError, match="no such file"):
        load_trace(tmp_path / "missing.csv")
    path = tmp_path / "a.csv"
    path.write_text(AZ + AZ_ROW)
    with pytest.raises(KairosError, match="unknown trace format 'azur': did you mean azure"):
        load_trace(path, "azur")
    with pytest.raises(KairosError, match="time_scale"):
        load_trace(path, time_scale=0)
    with pytest.raises(KairosError, match="num_requests"):
        load_trace(path, num_requests=0)


# --- Kairos JSONL -------------------------------------------------------------------


def _generated_workloads() -> list[list[RequestSpec]]:
    sessions = WorkloadConfig(num_requests=60, sessions={"turns": {"kind": "uniform", "max": 5}})
    zipf = WorkloadConfig(num_requests=40, prefixes={"popularity": "zipf"}, arrival="gamma", cv=3)
    plain = WorkloadConfig(num_requests=30, prefixes=None, input_len=64, output_len=8)
    return [build_workload(cfg, seed) for seed, cfg in enumerate((sessions, zipf, plain))]


def _decorate(specs: list[RequestSpec]) -> list[RequestSpec]:
    """Give specs every optional field a generator or a user could set."""
    out = []
    for i, spec in enumerate(specs):
        extra: dict = {"priority": i % 3 - 1, "tenant": f"t{i % 2}" if i % 4 else None}
        if i % 3 == 0:
            extra["slo"] = SLO(ttft_ms=250.0, tpot_ms=None if i % 2 else 20.5, e2e_ms=1e4 / 3)
        elif i % 3 == 1:
            extra["slo"] = SLO()
        if i % 4 == 1:
            extra.update(slo_class="batch" if i % 8 == 1 else "interactive", deadline_s=600.0 + i / 7)
        if i % 5 == 0:
            extra["prompt_token_ids"] = tuple(range(i, i + spec.prompt_len))
        out.append(dataclasses.replace(spec, **extra))
    return out


def test_kairos_jsonl_round_trips_generated_workloads(tmp_path: Path) -> None:
    for n, specs in enumerate(_generated_workloads()):
        for variant in (specs, _decorate(specs)):
            path = tmp_path / f"w{n}.jsonl"
            save_kairos_jsonl(path, variant)
            assert load_kairos_jsonl(path).requests == variant
            assert detect_format(path) == "kairos"
            assert load_trace(path).requests == variant  # already sorted, first at 0


def test_kairos_jsonl_omits_defaults(tmp_path: Path) -> None:
    path = tmp_path / "w.jsonl"
    save_kairos_jsonl(path, [RequestSpec("a", 0.5, 10, 2)])
    assert json.loads(path.read_text()) == {
        "request_id": "a", "arrival_s": 0.5, "prompt_len": 10, "output_len": 2
    }


def test_kairos_replay_keeps_sessions_closed(tmp_path: Path) -> None:
    specs = _generated_workloads()[0]
    path = tmp_path / "w.jsonl"
    save_kairos_jsonl(path, specs)
    for n in (1, 7, 23):
        kept = load_trace(path, num_requests=n, time_scale=4).requests
        ids = {spec.request_id for spec in kept}
        assert len(kept) == n
        assert all(spec.after is None or spec.after in ids for spec in kept)


_spans = st.builds(Span, st.integers(0, 2**63 - 1), st.integers(0, 10**6), st.integers(1, 600))
_finite = st.floats(0, 1e7, allow_nan=False, allow_infinity=False)


@st.composite
def _specs(draw: st.DrawFn) -> RequestSpec:
    prompt_len = draw(st.integers(1, 50))
    output_len = draw(st.integers(1, 50))
    shared = draw(st.lists(_spans, max_size=4).filter(
        lambda spans: sum(s.length for s in spans) <= prompt_len + output_len
    ))
    target = st.none() | _finite
    slo = draw(st.none() | st.builds(SLO, target, target, target))
    return RequestSpec(
        request_id=draw(st.text(min_size=1, max_size=8)),
        arrival_s=draw(_finite),
        prompt_len=prompt_len,
        output_len=output_len,
        shared=tuple(shared),
        prompt_token_ids=draw(st.none() | st.tuples(*[st.integers(0, 2**31)] * prompt_len)),
        session_id=draw(st.none() | st.text(min_size=1, max_size=5)),
        tenant=draw(st.none() | st.text(min_size=1, max_size=5)),
        priority=draw(st.integers(-5, 5)),
        slo=slo,
        slo_class=draw(st.none() | st.text(min_size=1, max_size=5)),
        deadline_s=draw(st.none() | st.floats(1e-6, 1e7, allow_nan=False, allow_infinity=False)),
        think_s=draw(_finite),
    )


@settings(max_examples=40, deadline=None)
@given(st.lists(_specs(), max_size=5, unique_by=lambda spec: spec.request_id))
def test_kairos_jsonl_round_trips_any_spec(tmp_path_factory, specs) -> None:
    path = tmp_path_factory.mktemp("rt") / "w.jsonl"
    save_kairos_jsonl(path, specs)
    if specs:
        assert load_kairos_jsonl(path).requests == specs


# --- content keys -------------------------------------------------------------------


@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=20))
def test_content_keys_match_content_key(ids: list[int]) -> None:
    keys = content_keys("mooncake", np.array(ids, dtype=np.int64)).tolist()
    assert keys == [content_key("mooncake", i) for i in ids]
    assert all(0 <= key < 2**63 for key in keys)


def test_content_key_is_stable_across_processes_and_namespaced() -> None:
    # A changed key scheme would silently change every report: pin one value.
    assert content_key("session", 1, 2) == 4725684647114792143
    code = "from kairos.workload import content_key; print(content_key('session', 3, 4))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # str hashes differ, keys must not
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert int(out.stdout) == content_key("session", 3, 4)
    assert content_key("session", 3, 4) != content_key("session", 4, 3)
    assert content_key("mooncake", 5) != content_key("sysprompt", 5)
    assert len({content_key(ns, i) for ns in ("a", "b") for i in range(1000)}) == 2000
