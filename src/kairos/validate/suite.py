"""The measured-silicon suite: aiconfigurator-core's measured serving rows, each simulated.

aiconfigurator-core (the `kernels` extra) ships `systems/silicon_sample.csv`: steady
serving points measured on real GPUs (vLLM, SGLang, TensorRT-LLM), each a model,
GPU, parallelism, precision, ISL/OSL and client concurrency with the mean TTFT and
TPOT it measured. `kairos validate --suite aiconfigurator` replays every aggregated
row of a backend as a closed-loop workload of that concurrency (fixed ISL and OSL,
random prompts, so no prefix hits) on the engine's default settings for the GPU,
behind the engine's API front-end (kairos.perf.front_end, nearest measured version), and
compares the simulated means with the measured ones.

A row records its concurrency C but not how many prompts the benchmark sent; the
common convention is `--num-prompts` = 10 x C (`PROMPTS_PER_CLIENT`), all due at
once, so each client sends 10 requests back to back. The first round starts as
one synchronized wave of C identical prompts. Real runs then drift apart (timing
noise), and their later rounds run in a staggered steady state where a new prompt's
prefill joins the others' decodes; identical requests in a deterministic
simulation would instead stay in lockstep waves for ever. So between the wave and
the other rounds each client sends one unmeasured request whose output is 1/C,
2/C, ... C/C of the OSL, which spreads the clients evenly over a request's life.
The means cover the wave and the staggered rounds, as the benchmark's do.

H100 and H200 rows are the development set; B200, B300 and GB200 rows the test set.

A peer's estimates of the same rows (aiconfigurator's own serving estimate, written
by benchmarks/aiconfigurator_peer/estimate.py) can stand beside ours: each row
gains the peer's numbers and errors, and the summary compares the two on the rows
both answered.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import re
import statistics
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from functools import partial
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from kairos.errors import KairosError
from kairos.models import resolve_model
from kairos.perf.aiconfigurator import SYSTEMS
from kairos.perf.front_end import measured_front_ends
from kairos.hardware import load_gpu
from kairos.scenario.run import PoolDeployments, build_simulation, resolve_deployment, resolve_pools
from kairos.scenario.schema import Scenario
from kairos.workload.spec import RequestSpec

SUITE_NAMES = ("aiconfigurator",)
MODES = ("agg", "disagg")
DEV_GPUS = ("h100", "h200")
TEST_GPUS = ("b200", "b300", "gb200")
SUITE_FILE = "suite.json"
# Requests each client sends (the benchmark's --num-prompts / concurrency).
PROMPTS_PER_CLIENT = 10
# vLLM's defaults for `vllm serve` on a GPU of at least 70 GiB (all the suite's GPUs).
ENGINE_DEFAULTS = {"max_num_seqs": 1024, "max_num_batched_tokens": 8192}
# aiconfigurator's quantisation mode of the GEMMs -> Kairos weight precision.
WEIGHT_DTYPES = {"": "bf16", "bfloat16": "bf16", "fp8": "fp8", "fp8_block": "fp8", "fp8_static": "fp8",
                 "nvfp4": "nvfp4", "w4a16_mxfp4": "mxfp4", "int4_wo": "int4"}
# Weight precisions that a row's quantisation label does not tell apart.
PRECISION_FAMILY = {"bf16": "16-bit", "fp16": "16-bit", "fp8": "fp8", "fp8_block": "fp8",
                    "nvfp4": "fp4", "mxfp4": "fp4", "int4": "int4"}
_GPU_OF_SYSTEM = {system: gpu for gpu, system in SYSTEMS.items()}
_CONCURRENCY = re.compile(r"silicon_concurrency=(\d+)")


@dataclass(frozen=True, slots=True)
class PoolShape:
    """One pool of a disaggregated row: its engines (workers), TP, attention DP and expert parallelism."""

    workers: int
    tp: int
    dp: int
    ep: bool


@dataclass(frozen=True, slots=True)
class SuiteRow:
    """One measured serving point: deployment, load and the measured means (a disaggregated row's
    deployment is its two pools)."""

    id: str
    gpu: str
    model: str
    backend: str
    backend_version: str
    isl: int
    osl: int
    concurrency: int
    tp: int
    dp: int
    ep: bool
    weights_mode: str
    ttft_ms: float
    tpot_ms: float
    prefill: PoolShape | None = None
    decode: PoolShape | None = None


def silicon_csv() -> Path:
    """The measured rows inside the installed aiconfigurator-core."""
    try:
        path = Path(str(resources.files("aiconfigurator_core") / "systems" / "silicon_sample.csv"))
    except ModuleNotFoundError as err:
        raise KairosError("the aiconfigurator suite needs the optional extra: pip install 'kairos[kernels]'") from err
    if not path.is_file():
        raise KairosError(f"aiconfigurator-core has no measured rows at {path}")
    return path


def load_rows(backend: str = "vllm", gpus: Iterable[str] | None = None, path: Path | None = None,
              mode: str = "agg") -> list[SuiteRow]:
    """The rows of `backend` on `gpus` (catalog names; None: every GPU) in `mode`: agg (aggregated) or
    disagg (prefill/decode disaggregated)."""
    if mode not in MODES:
        raise KairosError(f"suite mode must be one of {', '.join(MODES)}, got '{mode}'")
    wanted = set(gpus) if gpus is not None else None
    rows = []
    with open(path or silicon_csv(), newline="") as f:
        for raw in csv.DictReader(f):
            if raw["backend"] != backend or raw["mode"] != mode:
                continue
            gpu = _GPU_OF_SYSTEM.get(raw["system"], raw["system"])
            if wanted is not None and gpu not in wanted:
                continue
            rows.append(_row(raw, gpu))
    if not rows:
        kind = "aggregated" if mode == "agg" else "disaggregated"
        raise KairosError(f"no measured {kind} {backend} rows on {', '.join(sorted(wanted or ['any GPU']))}")
    return rows


def _row(raw: dict[str, str], gpu: str) -> SuiteRow:
    def number(key: str, default: float = 0.0) -> float:
        text = raw.get(key) or ""
        return float(text) if text else default

    def pool(prefix: str) -> PoolShape:
        tp = int(number(f"{prefix}_tp_size", 1)) or 1
        return PoolShape(int(number(f"{prefix}_num_workers", 1)) or 1, tp,
                         int(number(f"{prefix}_attention_dp_size", 1)) or 1, int(number(f"{prefix}_moe_ep_size", 0)) > 1)

    found = _CONCURRENCY.search(raw["silicon_data_source"])
    pools = (pool("prefill"), pool("decode")) if raw["mode"] == "disagg" else (None, None)
    # An aggregated row's batch size is its concurrency; a disaggregated one's decode batch is a
    # capacity, not the load (0: not recorded, the row is skipped).
    concurrency = int(found.group(1)) if found else (0 if pools[1] is not None else int(number("batch_size", 1)))
    tp = int(number("tp_size", 1))
    moe_tp, moe_ep = int(number("moe_tp_size", 1)) or 1, int(number("moe_ep_size", 1)) or 1
    # aiconfigurator's GPU count is tp x attention_dp = moe_tp x moe_ep; an empty
    # attention_dp_size is implied by the MoE layout.
    dp = int(number("attention_dp_size", 0)) or max(1, moe_tp * moe_ep // tp)
    return SuiteRow(
        id=raw["id"], gpu=gpu, model=raw["model_path"], backend=raw["backend"],
        backend_version=raw["backend_version"], isl=int(number("isl")), osl=int(number("osl")),
        concurrency=concurrency, tp=tp, dp=dp, ep=moe_ep > 1, weights_mode=raw.get("gemm_quant_mode") or "",
        ttft_ms=number("silicon_ttft_ms"), tpot_ms=number("silicon_tpot_ms"), prefill=pools[0], decode=pools[1],
    )


def row_scenario(row: SuiteRow, perf: str) -> Scenario:
    """The deployment of `row` as a scenario (KairosError where Kairos cannot express it);
    its workload is built by `row_requests`."""
    weights = WEIGHT_DTYPES.get(row.weights_mode)
    if weights is None:
        raise KairosError(f"weight quantisation '{row.weights_mode}' has no Kairos precision")
    # A row's label names a family of formats: where the checkpoint is stored in one of
    # that family (gpt-oss's MXFP4 experts labelled nvfp4, a block-fp8 checkpoint labelled
    # fp8), vLLM serves it as stored; otherwise it served another checkpoint of the model
    # (an NVFP4 republish) or quantized a 16-bit one online, in the label's format.
    checkpoint = resolve_model(row.model).arch.weights_dtype
    if PRECISION_FAMILY[checkpoint] == PRECISION_FAMILY[weights]:
        weights = None
    data = {
        "model": {"name": row.model, "weights_dtype": weights},
        "hardware": {"gpu": row.gpu, "tp": row.tp, "dp": row.dp, "ep": row.ep},
        "engine": {**ENGINE_DEFAULTS, "enable_prefix_caching": False, "front_end": _front_end(row)},
        "workload": {"kind": "synthetic", "concurrency": row.concurrency, "rate": math.inf,
                     "input_len": row.isl, "output_len": row.osl, "prefixes": None},
        "perf": perf,
    }
    if row.prefill is not None and row.decode is not None:
        if not row.concurrency:
            raise KairosError("the row records no client concurrency (no silicon_concurrency in its source)")
        data["hardware"] = {"gpu": row.gpu}
        data["cluster"] = {"pools": {"prefill": _pool(row.prefill, "prefill"), "decode": _pool(row.decode, "decode")},
                           "disaggregation": {"decider": "always", "link": _link(row), "overlap": True}}
    return Scenario.model_validate(data)


def _pool(shape: PoolShape, name: str) -> dict:
    if shape.dp > 1 or shape.ep:
        raise KairosError(f"the {name} pool runs data-parallel attention or experts: not modelled in pools")
    return {"replicas": shape.workers, "tp": shape.tp}


def _link(row: SuiteRow) -> str:
    """KV between the pools: the GPUs' NVLink when both fit one 8-GPU node, else InfiniBand NDR."""
    assert row.prefill is not None and row.decode is not None
    gpus = row.prefill.workers * row.prefill.tp + row.decode.workers * row.decode.tp
    return load_gpu(row.gpu).interconnect if gpus <= 8 else "ib-ndr"


def _front_end(row: SuiteRow) -> str | None:
    """The row's engine front-end, where one of its versions was measured."""
    if row.backend not in {f.engine for f in measured_front_ends()}:
        return None
    return f"{row.backend}=={row.backend_version}" if row.backend_version else row.backend


def row_requests(row: SuiteRow, prompts_per_client: int = PROMPTS_PER_CLIENT
                 ) -> tuple[list[RequestSpec], set[str]]:
    """The benchmark's requests in sending order, all due at 0 and sent as client slots free:
    the synchronized first round, the unmeasured staggering round, then the other rounds;
    and the ids of the measured ones."""
    c = row.concurrency
    wave = [RequestSpec(f"r0-{k}", 0.0, row.isl, row.osl) for k in range(c)]
    stagger = [RequestSpec(f"stagger-{k}", 0.0, row.isl, max(1, math.ceil(row.osl * (k + 1) / c)))
               for k in range(c)]
    rounds = [RequestSpec(f"r{j}-{k}", 0.0, row.isl, row.osl) for j in range(1, prompts_per_client)
              for k in range(c)]
    return wave + stagger + rounds, {spec.request_id for spec in wave + rounds}


def run_row(row: SuiteRow, perf: str = "aiconfigurator", prompts_per_client: int = PROMPTS_PER_CLIENT) -> dict:
    """Simulate one row: its entry of suite.json (`skipped` says why where it could not run)."""
    entry: dict = {"id": row.id, "gpu": row.gpu, "model": row.model, "isl": row.isl, "osl": row.osl,
                   "concurrency": row.concurrency, "tp": row.tp, "dp": row.dp, "ep": row.ep,
                   "weights": row.weights_mode or "bf16", "backend_version": row.backend_version,
                   "prompts_per_client": prompts_per_client,
                   "skipped": None}
    if row.prefill is not None and row.decode is not None:
        entry["pools"] = {"prefill": dataclasses.asdict(row.prefill), "decode": dataclasses.asdict(row.decode)}
    try:
        scenario = row_scenario(row, perf)
        deployment = resolve_pools(scenario) or resolve_deployment(scenario)
        specs, measured_ids = row_requests(row, prompts_per_client)
        records = build_simulation(scenario, deployment, specs).run().records
    except KairosError as err:
        entry["skipped"] = str(err)
        return entry
    measured = [r for r in records if r.request_id in measured_ids]
    unfinished = sum(1 for r in measured if not r.finished)
    if unfinished:
        entry["skipped"] = f"{unfinished} of {len(measured)} requests did not complete: {measured[0].rejected_reason}"
        return entry
    simulated = {"ttft_ms": statistics.fmean(1e3 * (r.first_token_s - r.arrival_s) for r in measured),
                 "tpot_ms": statistics.fmean(1e3 * (r.finish_s - r.first_token_s) / (r.output_tokens - 1)
                                             for r in measured if r.output_tokens > 1)}
    for metric, value in (("ttft_ms", row.ttft_ms), ("tpot_ms", row.tpot_ms)):
        entry[metric] = {"measured": value, "simulated": simulated[metric],
                         "error_pct": _error_pct(simulated[metric], value)}
    entry["perf"] = (deployment.decode if isinstance(deployment, PoolDeployments) else deployment).perf.used
    return entry


def run_suite(rows: list[SuiteRow], perf: str = "aiconfigurator", jobs: int | None = None,
              progress: Callable[[int, int], None] | None = None,
              prompts_per_client: int = PROMPTS_PER_CLIENT) -> dict:
    """Every row simulated (in `jobs` processes), with the summary by split, GPU and model."""
    jobs = jobs or os.cpu_count() or 1
    entries: list[dict] = []
    simulate = partial(run_row, perf=perf, prompts_per_client=prompts_per_client)
    with ProcessPoolExecutor(jobs) if jobs > 1 else nullcontext() as pool:
        for entry in (pool.map(simulate, rows) if pool is not None else map(simulate, rows)):
            entries.append(entry)
            if progress is not None:
                progress(len(entries), len(rows))
    return {"suite": "aiconfigurator", "perf": perf, "prompts_per_client": prompts_per_client,
            "rows": entries, "summary": summarize(entries)}


def load_peer(path: Path) -> tuple[str, dict[str, dict]]:
    """A peer's estimates: its name and {row id: {"ttft_ms", "tpot_ms"} | {"skipped"}}."""
    try:
        data = json.loads(path.read_text())
        source, rows = str(data["source"]), data["rows"]
        for row_id, estimate in rows.items():
            if estimate.get("skipped") is None and not all(
                    math.isfinite(float(estimate[m])) and float(estimate[m]) > 0 for m in ("ttft_ms", "tpot_ms")):
                raise ValueError(f"row {row_id}: ttft_ms and tpot_ms must be positive numbers")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise KairosError(f"cannot read peer estimates {path}: {err}") from err
    return source, rows


def attach_peer(result: dict, source: str, estimates: dict[str, dict]) -> dict:
    """`result` (run_suite's) with the peer's estimate and error on each row it answered,
    and a summary of both on the rows both answered."""
    for entry in result["rows"]:
        estimate = estimates.get(entry["id"])
        if estimate is None:
            continue
        if estimate.get("skipped") is not None or entry["skipped"] is not None:
            entry["aiconfigurator"] = {"skipped": estimate.get("skipped") or "not simulated by Kairos"}
            continue
        entry["aiconfigurator"] = {metric: {"estimated": float(estimate[metric]),
                                            "error_pct": _error_pct(float(estimate[metric]),
                                                                    entry[metric]["measured"])}
                                   for metric in ("ttft_ms", "tpot_ms")}
        entry["aiconfigurator"]["skipped"] = None
    result["peer"] = source
    result["summary"] = summarize(result["rows"])
    return result


def _error_pct(value: float, measured: float) -> float:
    return 100.0 * (value - measured) / measured


def summarize(entries: list[dict]) -> dict:
    """Rows simulated and median / mean |error| of TTFT and TPOT, by split, GPU and model;
    where a peer's estimates are attached, both on the rows both answered."""
    def group(key: Callable[[dict], str]) -> dict[str, dict]:
        keys = sorted({key(e) for e in entries})
        return {k: _stats([e for e in entries if key(e) == k]) for k in keys}

    return {
        "all": _stats(entries),
        "by_split": group(lambda e: "dev" if e["gpu"] in DEV_GPUS else "test" if e["gpu"] in TEST_GPUS else "other"),
        "by_gpu": group(lambda e: e["gpu"]),
        "by_model": group(lambda e: e["model"]),
    }


def _stats(entries: list[dict]) -> dict:
    done = [e for e in entries if e["skipped"] is None]
    stats: dict = {"rows": len(entries), "simulated": len(done),
                   "simulated_pct": 100.0 * len(done) / len(entries) if entries else 0.0}
    for metric in ("ttft_ms", "tpot_ms"):
        stats[metric] = _abs_errors([e[metric]["error_pct"] for e in done])
    both = [e for e in done if "aiconfigurator" in e and e["aiconfigurator"]["skipped"] is None]
    if both:
        stats["head_to_head"] = {"rows": len(both), **{
            f"{who}_{metric}": _abs_errors([(e if who == "kairos" else e["aiconfigurator"])[metric]["error_pct"]
                                            for e in both])
            for who in ("kairos", "aiconfigurator") for metric in ("ttft_ms", "tpot_ms")}}
    return stats


def _abs_errors(errors: list[float]) -> dict:
    magnitudes = [abs(e) for e in errors]
    return {"median_abs_error_pct": statistics.median(magnitudes) if magnitudes else None,
            "mean_abs_error_pct": statistics.fmean(magnitudes) if magnitudes else None}

