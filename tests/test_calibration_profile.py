"""The profile file: schema v2, v1 files converted on load, one-line errors for bad attention kinds."""

from __future__ import annotations

import json

import pytest

from kairos.calibration.model import CalibratedModel
from kairos.calibration.profile import SCHEMA, V1_SCHEMA, Profile, load_profile
from kairos.engine.batch_shape import BatchShape
from kairos.errors import KairosError

from test_calibration_model import TINY_CONFIG, TRUE, profile

# A profile as `kairos calibrate` wrote it before schema v2 (no engine.attention).
V1_PROFILE = {
    "schema": V1_SCHEMA, "model": "tiny", "model_config": TINY_CONFIG, "dtype": "float32", "dtype_bytes": 4,
    "device": "cpu", "engine": {"block_size": 16, "max_num_batched_tokens": 2048, "max_num_seqs": 256,
                                "num_blocks": 4096, "attention_min_split_slots": 2048},
    "terms": list(TRUE), "coefficients": dict(TRUE), "idle_time_constant_s": 3e-3,
    "machine_speed": {"reference_step_s": 0.001, "steps_with_reading": 1.0},
    "points": [{"kind": "decode", "prefill_new": [], "prefill_ctx": [], "num_decodes": 1, "decode_kv_sum": 17,
                "num_sampled": 1, "decode_kv_max": 17, "time_s": 0.002, "times_s": [0.002], "idle_s": 0.0,
                "reference_s": 0.0}],
}


def test_a_v1_profile_loads_as_v2_with_padded_attention(tmp_path):
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(V1_PROFILE))
    loaded = load_profile(path)
    assert loaded["schema"] == SCHEMA
    assert loaded["engine"] == {**V1_PROFILE["engine"], "attention": "padded"}
    assert {k: v for k, v in loaded.items() if k not in ("schema", "engine")} == {
        k: v for k, v in V1_PROFILE.items() if k not in ("schema", "engine")}
    model = CalibratedModel(path)
    assert model.layout.kind == "padded" and model.layout.min_split_slots == 2048
    as_v2 = CalibratedModel({**V1_PROFILE, "schema": SCHEMA})
    shape = BatchShape((64, 32), (512, 0), 3, 900, 5, 400)
    assert model.step_time(shape) == as_v2.step_time(shape)
    assert model.profile["machine_speed"]["reference_step_s"] == 0.001


def test_a_profile_round_trips_through_its_document():
    data = profile(engine={"attention": "varlen", "block_size": 16, "num_gpu_blocks": 64}, device="cpu")
    document = Profile.read(data).document()
    assert document == data and Profile.read(json.loads(json.dumps(document))).document() == data


@pytest.mark.parametrize("engine, message", [
    ({"attention": "flash"}, "engine.attention must be one of padded, varlen, got 'flash'"),
    (3, "'engine' must be an object"),
])
def test_bad_engine_settings_fail_with_one_line(engine, message):
    with pytest.raises(KairosError, match=message) as info:
        Profile.read(profile(engine=engine), "p.json")
    assert str(info.value).startswith("p.json: ") and "\n" not in str(info.value)
