"""Step times from aiconfigurator-core's own forward-pass estimator (`--perf aiconfigurator`).

aiconfigurator-core (the `kernels` extra) composes a whole forward pass from its
measured kernel database: GEMMs at the weights' precision, attention (GQA and MLA),
fused MoE with its dispatch, tensor-parallel all-reduces and expert-parallel
all-to-alls from measured collectives, for vLLM, SGLang and TensorRT-LLM.
`RustForwardPassPerfModel` answers one engine step from the counts, sums and
variances of its prefill and decode work, per attention data-parallel rank, in a
few microseconds; with several ranks it prices the lockstep step (the slowest rank,
the others padded with dummy work). Its MoE kernels were measured with tokens routed
by a power law (alpha 1.01): that is the expert load imbalance this model carries.

What it predicts is GPU time; the engine's host time per step is added by
`perf.overheads` as for the `kernels` model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np

from kairos.engine.batch_shape import BatchShape
from kairos.errors import KairosError
from kairos.hardware import GPU
from kairos.models import ModelArch, aiconfigurator_model_configs, catalog_config
from kairos.perf.base import StepTimeModel
from kairos.perf.kernels.database import SYSTEMS
from kairos.perf.parallel import Parallelism

EXTRA_MESSAGE = "--perf aiconfigurator needs the optional extra: pip install 'kairos[kernels]'"

# Kairos weight precision -> aiconfigurator's quantisation mode of (GEMMs, fused MoE).
# gpt-oss's mxfp4 experts run vLLM's W4A16 MXFP4 MoE kernels.
WEIGHT_MODES = {
    "bf16": (None, None),
    "fp16": (None, None),
    "fp8": ("fp8", "fp8"),
    "fp8_block": ("fp8_block", "fp8_block"),
    "nvfp4": ("nvfp4", "nvfp4"),
    "mxfp4": ("nvfp4", "w4a16_mxfp4"),
    "int4": ("int4", "int4"),
}


def quant_modes(model: ModelArch) -> tuple[str | None, str | None]:
    """aiconfigurator's (GEMM, MoE) modes for the model's weights. A checkpoint that quantizes
    only its routed experts keeps 16-bit GEMMs; aiconfigurator has one mode for all GEMMs,
    so a dense one that leaves attention out ("mlp") is costed with its MLP's, where most
    GEMM time is."""
    gemm, moe = WEIGHT_MODES[model.weights_dtype]
    if model.quant_scope == "experts" or (model.quant_scope == "mlp" and model.is_moe):
        gemm = None  # an MoE model's quantized MLPs are its experts: the GEMMs stay 16-bit
    return gemm, (moe if model.is_moe else None)


def aiconfigurator_system(gpu: GPU) -> str:
    """The aiconfigurator system of a catalog GPU, or a KairosError naming those covered."""
    system = SYSTEMS.get(gpu.name)
    if system is None:
        raise KairosError(f"aiconfigurator-core has no system for GPU '{gpu.name}' "
                          f"(covered: {', '.join(sorted(SYSTEMS))}); use --perf kernels or roofline")
    return system


def model_path_for(model: ModelArch, config: dict | None = None) -> str:
    """What aiconfigurator-core is told the model is: an id it ships a config for, or a
    folder holding `config` (default: the catalog's config.json; aiconfigurator reads
    local folders)."""
    configs = aiconfigurator_model_configs()
    if configs is None:
        raise KairosError(EXTRA_MESSAGE)
    if model.hf_id and (configs / f"{model.hf_id.replace('/', '--')}_config.json").is_file():
        return model.hf_id
    config = config if config is not None else catalog_config(model.name)
    if config is None:
        raise KairosError(f"aiconfigurator-core has no config for model '{model.name}': "
                          "use a catalog model (`kairos models`) or --perf kernels")
    text = json.dumps(config, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"kairos-aiconfigurator-{os.getuid()}" / f"{model.name}-{digest}"
    if not (folder / "config.json").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        # Written whole, then renamed: a concurrent reader never sees half a file.
        partial = folder / f"config.json.{os.getpid()}"
        partial.write_text(text)
        partial.replace(folder / "config.json")
    return str(folder)


@cache
def _native_model(config_json: str):
    try:
        from aiconfigurator_core.sdk import RustForwardPassPerfModel
    except ImportError as err:
        raise KairosError(EXTRA_MESSAGE) from err
    # aiconfigurator logs every low-fidelity table it loads; its errors reach the user as ours.
    logging.getLogger("aiconfigurator_core").setLevel(logging.ERROR)
    try:
        return RustForwardPassPerfModel.from_native(json.loads(config_json))
    except (ValueError, RuntimeError) as err:
        raise KairosError(f"aiconfigurator-core cannot model this deployment: {_first_line(err)}") from err


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__


class AiconfiguratorModel(StepTimeModel):
    """GPU time of one engine step (or one lockstep step of DP ranks) from aiconfigurator-core.

    Needs the `kernels` extra. `backend` and `version` pick the measured framework
    (default vLLM, aiconfigurator's current version for the system). `config` is the
    model's Hugging Face config where neither aiconfigurator-core nor the catalog has it.
    Raises KairosError when aiconfigurator-core has no data for a part of the
    deployment (a precision not measured on the GPU, say), checked at construction.
    """

    name = "aiconfigurator"

    def __init__(self, model: ModelArch, gpu: GPU, parallel: Parallelism, *, config: dict | None = None,
                 backend: str = "vllm", version: str | None = None) -> None:
        gemm, moe = quant_modes(model)
        self.model = model
        self.parallel = parallel
        self.system = aiconfigurator_system(gpu)
        self.notes: list[str] = []  # where a deployment is costed otherwise than it runs
        self.config = {
            "schema_version": 1, "model_name": model_path_for(model, config), "system_name": self.system,
            "backend": backend, "backend_version": version, "tp_size": parallel.tp, "pp_size": 1,
            "attention_dp_size": parallel.dp if model.is_moe else 1,
            "moe_tp_size": parallel.moe_tp if model.is_moe else None,
            "moe_ep_size": parallel.moe_ep if model.is_moe else None,
            "weight_dtype": gemm, "moe_dtype": moe, "kv_cache_dtype": "fp8" if model.kv_cache_dtype == "fp8" else None,
        }
        try:
            self._native = _native_model(json.dumps(self.config, sort_keys=True))
        except KairosError as err:
            # An expert shard that does not split into 128-wide blocks (1536 / tp 8) has no
            # block-fp8 kernel; vLLM then runs it on its per-channel fp8 path.
            if moe != "fp8_block" or "weight_block_size" not in str(err):
                raise
            self.config["moe_dtype"] = "fp8"
            self._native = _native_model(json.dumps(self.config, sort_keys=True))
            self.notes.append(f"{model.name}'s experts split {parallel.moe_tp} ways do not fit 128x128 fp8 "
                              "blocks: costed with per-channel fp8 MoE kernels")
        # Fail here, not mid-run, where the database lacks a table this deployment needs.
        self.rank_step_time([BatchShape(prefill_new=(16,), prefill_ctx=(0,), num_sampled=1)])
        self.rank_step_time([BatchShape(num_decodes=1, decode_kv_sum=16, num_sampled=1)])

    def step_time(self, shape: BatchShape) -> float:
        """Seconds of GPU time for one step of one engine."""
        return self.rank_step_time([shape])

    def rank_step_time(self, shapes: Sequence[BatchShape]) -> float:
        """Seconds for one lockstep step of data-parallel ranks, one shape each."""
        try:
            ms = self._native.estimate_forward_pass_time_ms([_metrics(s) for s in shapes])
        except (ValueError, RuntimeError) as err:
            raise KairosError(f"aiconfigurator-core cannot estimate a step of {self.model.name} on "
                              f"{self.system}: {_first_line(err)}") from err
        return float(ms or 0.0) * 1e-3

    def decode_window(self, num_decodes: int, decode_kv_sum: int, steps: int, decode_kv_max: int = 0
                      ) -> np.ndarray:
        """Seconds for each of `steps` pure-decode steps; step i attends to kv_sum + i * n tokens."""
        return np.array([self.step_time(BatchShape(num_decodes=num_decodes,
                                                   decode_kv_sum=decode_kv_sum + i * num_decodes,
                                                   num_sampled=num_decodes))
                         for i in range(steps)])

    def idle_penalty(self, idle_s: float) -> float:
        """GPU kernel models know nothing of cold caches after an idle gap."""
        return 0.0

    def breakdown(self, shape: BatchShape) -> dict[str, float]:
        """The whole forward pass: the native estimator returns one figure per step."""
        return {"forward": self.step_time(shape)}


def _metrics(shape: BatchShape) -> dict:
    """One rank's step as aiconfigurator's forward-pass metrics (scheduled work only)."""
    scheduled: dict[str, float] = {}
    if shape.prefill_new:
        new = np.asarray(shape.prefill_new, dtype=np.float64)
        scheduled.update(num_prefill_requests=len(new), sum_prefill_tokens=int(new.sum()),
                         var_prefill_length=float(new.var()),
                         sum_prefill_kv_tokens=int(sum(shape.prefill_ctx)))
    if shape.num_decodes:
        # The step shape carries the decodes' KV sum, not its spread: costed as uniform,
        # exact where decode attention is bandwidth bound (linear in the total KV read).
        scheduled.update(num_decode_requests=shape.num_decodes, sum_decode_kv_tokens=shape.decode_kv_sum,
                         var_decode_kv_tokens=0.0)
    return {"scheduled_requests": scheduled}
