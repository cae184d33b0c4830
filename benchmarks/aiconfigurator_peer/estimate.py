#!/usr/bin/env python3
"""aiconfigurator's own serving estimate for the rows of the measured-silicon suite.

For every aggregated row of one backend in aiconfigurator-core's `silicon_sample.csv`
(the rows `kairos validate --suite aiconfigurator` replays) this calls aiconfigurator's
single-point estimator, `aiconfigurator.cli.api.cli_estimate(mode="agg", ...)` (what
`aiconfigurator cli estimate` runs), and writes

    {"source": "aiconfigurator 0.12.0 estimate",
     "rows": {ROW_ID: {"ttft_ms": x, "tpot_ms": y} | {"skipped": "reason"}}, ...}

It runs in the venv made by setup.sh (aiconfigurator is not a Kairos dependency):

    benchmarks/aiconfigurator_peer/.venv/bin/python benchmarks/aiconfigurator_peer/estimate.py \
        --backend vllm --gpu h100,h200 -o /tmp/peer_dev.json

How a row becomes a call (the same mapping as aiconfigurator's own silicon-sample
tools, tools/*/predict_silicon_sample.py upstream):
- batch_size: the row's `batch_size` column. aiconfigurator's agg batch is per
  attention-DP rank (its result's concurrency is batch_size x attention_dp_size), and
  the CSV's batch_size is the measured client concurrency (silicon_concurrency=) divided
  by attention_dp_size, so this is the measured concurrency, not a different load.
- tp_size, moe_tp_size, moe_ep_size from the row (a 0 or empty MoE width is left to
  aiconfigurator); attention_dp_size from the row, empty -> moe_tp x moe_ep / tp as
  Kairos reads it (aiconfigurator requires tp x attention_dp = moe_tp x moe_ep).
- gemm/moe (and, where the CSV has such columns, kvcache/fmha/comm) quant modes from
  the row; empty -> None, which aiconfigurator infers from the checkpoint.
- backend_version: the row's version where aiconfigurator has a queryable database for
  it; otherwise (every vLLM row with aiconfigurator 0.12.0, whose only vLLM database is
  0.24.0) aiconfigurator's default ("current") database, as its own tools fall back.
  The version used per system is recorded under "database_versions".
- model_path: the row's, except two ids aiconfigurator-core ships no config for (it
  would fetch one from the Hugging Face hub): MODEL_ALIASES maps them to shipped
  configs of the same architecture.
- Where aiconfigurator has no perf data for the row's quant label as given, the
  checkpoint's own modes (None) are used if they are of the label's format family
  (gpt-oss: nvfp4 -> w4a16_mxfp4 experts; Kimi-K2.5: int4_wo experts; MiniMax-M2.5:
  fp8 -> fp8_block); rows estimated through a substitution are listed under "fallbacks".
- TTFT and TPOT are EstimateResult.ttft / .tpot (ms).
An exception of aiconfigurator on a row makes that row `skipped` with its message.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import os
import re
import statistics
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from contextlib import redirect_stdout
from importlib import metadata, resources
from pathlib import Path

# Kairos catalog GPU -> aiconfigurator system (kairos.perf.kernels.database.SYSTEMS).
SYSTEMS = {"a100-80gb": "a100_sxm", "b200": "b200_sxm", "b300": "b300_sxm", "gb200": "gb200",
           "h100": "h100_sxm", "h200": "h200_sxm", "l40s": "l40s", "rtx-pro-6000": "rtx_pro_6000_server"}
GPU_SETS = {"dev": ("h100", "h200"), "test": ("b200", "b300", "gb200")}
_GPU_OF_SYSTEM = {system: gpu for gpu, system in SYSTEMS.items()}
_CONCURRENCY = re.compile(r"silicon_concurrency=(\d+)")
QUANT_COLUMNS = ("gemm_quant_mode", "moe_quant_mode", "kvcache_quant_mode", "fmha_quant_mode", "comm_quant_mode")
# Messages of aiconfigurator meaning "no queryable database of that version".
_MISSING_VERSION = ("old-style raw version query", "Failed to load perf database", "No database found")
# Rows' model ids that aiconfigurator-core ships no config for (it would download one from
# the Hugging Face hub) -> a shipped config of the same architecture (identical
# config.json fields; aiconfigurator's own InferenceX adapter maps llama70b the same
# way). The row's quant label still sets the precision (the -FP8 republish: fp8).
MODEL_ALIASES = {
    "meta-llama/Llama-3.1-70B": "meta-llama/Meta-Llama-3.1-70B",
    "nvidia/Llama-3.1-8B-Instruct-FP8": "meta-llama/Meta-Llama-3.1-8B",
}
PROGRESS_EVERY = 50


def silicon_csv() -> Path:
    return Path(str(resources.files("aiconfigurator_core") / "systems" / "silicon_sample.csv"))


def systems_of(spec: str | None) -> set[str] | None:
    """--gpu: comma-separated Kairos names (h100), aiconfigurator systems (h100_sxm) or dev/test."""
    if not spec:
        return None
    systems: set[str] = set()
    for name in (n.strip().lower() for n in spec.split(",") if n.strip()):
        for gpu in GPU_SETS.get(name, (name,)):
            systems.add(SYSTEMS.get(gpu, gpu))
    return systems


def _int(raw: dict[str, str], key: str) -> int | None:
    text = (raw.get(key) or "").strip()
    return int(float(text)) if text else None


def load_rows(path: Path, backend: str, systems: set[str] | None) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return [raw for raw in csv.DictReader(f)
                if raw["backend"] == backend and raw["mode"] == "agg"
                and (systems is None or raw["system"] in systems)]


def shipped_config(model_path: str) -> bool:
    configs = resources.files("aiconfigurator_core") / "model_configs"
    return (configs / f"{model_path.replace('/', '--')}_config.json").is_file()


def model_for(model_path: str) -> str:
    alias = MODEL_ALIASES.get(model_path)
    return alias if alias is not None and not shipped_config(model_path) else model_path


def weight_family(mode: str | None) -> str:
    """The storage format family of an aiconfigurator quant mode (nvfp4 and gpt-oss's
    w4a16_mxfp4 are both 4-bit floats; fp8 and fp8_block both fp8)."""
    mode = (mode or "bfloat16").lower()
    if "fp4" in mode:
        return "fp4"
    if mode.startswith("fp8"):
        return "fp8"
    if mode in ("int4_wo", "w4afp8"):
        return "int4"
    if mode in ("int8_wo", "sq"):
        return "int8"
    if mode in ("bfloat16", "float16", "half"):
        return "16-bit"
    return mode


def estimate_kwargs(raw: dict[str, str]) -> dict:
    """cli_estimate's arguments for one CSV row (see the module docstring)."""
    tp = _int(raw, "tp_size") or 1
    moe_tp, moe_ep = _int(raw, "moe_tp_size") or None, _int(raw, "moe_ep_size") or None
    dp = _int(raw, "attention_dp_size") or max(1, (moe_tp or 1) * (moe_ep or 1) // tp)
    batch = _int(raw, "batch_size")
    if batch is None:  # no batch column: the measured concurrency, split over the DP ranks
        found = _CONCURRENCY.search(raw.get("silicon_data_source") or "")
        batch = max(1, int(found.group(1)) // dp) if found else 1
    kwargs = dict(
        model_path=model_for(raw["model_path"]), system_name=raw["system"], mode="agg",
        backend_name=raw["backend"], backend_version=(raw.get("backend_version") or "").strip() or None,
        isl=_int(raw, "isl"), osl=_int(raw, "osl"), batch_size=batch,
        tp_size=tp, pp_size=_int(raw, "pp_size") or 1, attention_dp_size=dp,
        moe_tp_size=moe_tp, moe_ep_size=moe_ep,
    )
    for column in QUANT_COLUMNS:
        kwargs[column] = (raw.get(column) or "").strip() or None
    return kwargs


# --- worker side -------------------------------------------------------------------------

_MISSING: set[tuple[str, str, str]] = set()  # (system, backend, version) without a database
_DATABASE_MODE = "SILICON"


def _init_worker(database_mode: str) -> None:
    """aiconfigurator logs data-fallback notes for each load; keep stderr for progress."""
    global _DATABASE_MODE
    _DATABASE_MODE = database_mode
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return f"{type(err).__name__}: {text}"[:240]


def _call(kwargs: dict):
    """cli_estimate, with the row's backend version where aiconfigurator has a database of
    it and its default (current) database otherwise."""
    from aiconfigurator.cli.api import cli_estimate

    key = (kwargs["system_name"], kwargs["backend_name"], str(kwargs["backend_version"]))
    if key in _MISSING:
        kwargs = {**kwargs, "backend_version": None}
    try:
        with redirect_stdout(io.StringIO()):
            return cli_estimate(**kwargs)
    except ValueError as err:
        if kwargs["backend_version"] is None or not any(m in str(err) for m in _MISSING_VERSION):
            raise
        _MISSING.add(key)
        with redirect_stdout(io.StringIO()):
            return cli_estimate(**{**kwargs, "backend_version": None})


def estimate_row(raw: dict[str, str]) -> tuple[str, dict, str | None, str | None]:
    """(row id, its entry, database version used, note on a fallback taken). Never raises."""
    try:
        kwargs = {**estimate_kwargs(raw), "database_mode": _DATABASE_MODE}
    except (ValueError, KeyError) as err:
        return raw.get("id", "?"), {"skipped": f"unreadable row: {_one_line(err)}"}, None, None
    notes = []
    if kwargs["model_path"] != raw["model_path"]:
        notes.append(f"model config {kwargs['model_path']}")
    try:
        try:
            result = _call(kwargs)
        except Exception as err:
            # The row's quant label names a format family (gpt-oss's MXFP4 experts and
            # Kimi-K2.5's INT4 experts are labelled nvfp4 / int4_wo for every GEMM).
            # Where aiconfigurator has no data for the label as given, the checkpoint's
            # own modes (None: aiconfigurator infers them) are used if they are of the
            # label's family; a label of another family stays a refusal.
            label = kwargs["gemm_quant_mode"] or kwargs["moe_quant_mode"]
            if type(err).__name__ != "PerfDataNotAvailableError" or label is None:
                raise
            try:
                result = _call({**kwargs, "gemm_quant_mode": None, "moe_quant_mode": None})
            except Exception as again:
                raise RuntimeError(f"{_one_line(err)[:110]}; with the checkpoint's quant modes: "
                                   f"{_one_line(again)[:110]}") from None
            inferred = (result.raw.get("gemm"), result.raw.get("moe"))
            if weight_family(label) not in {weight_family(m) for m in inferred if m}:
                raise RuntimeError(f"{_one_line(err)[:160]} (checkpoint modes {inferred[0]}/{inferred[1]} "
                                   f"are not {label})") from None
            notes.append(f"quant {kwargs['gemm_quant_mode']}/{kwargs['moe_quant_mode']} has no data: "
                         f"checkpoint modes {inferred[0]}/{inferred[1]}")
        ttft, tpot = float(result.ttft), float(result.tpot)
        if not (math.isfinite(ttft) and math.isfinite(tpot) and ttft > 0 and tpot > 0):
            return raw["id"], {"skipped": f"non-positive or non-finite estimate (ttft={ttft}, tpot={tpot})"}, None, None
        return (raw["id"], {"ttft_ms": ttft, "tpot_ms": tpot}, str(result.backend_version),
                "; ".join(notes) or None)
    except Exception as err:  # aiconfigurator's refusal of a row is data, not a crash
        return raw["id"], {"skipped": _one_line(err)}, None, None


# --- driver ------------------------------------------------------------------------------

def _abs_err(estimate: float, measured: float) -> float:
    return abs(100.0 * (estimate - measured) / measured)


def report(rows: list[dict[str, str]], entries: dict[str, dict]) -> list[str]:
    """Per-GPU and overall: rows estimated, median |error %| of TTFT and TPOT vs measured."""
    groups: dict[str, list[dict[str, str]]] = {}
    for raw in rows:
        groups.setdefault(_GPU_OF_SYSTEM.get(raw["system"], raw["system"]), []).append(raw)
    lines = [f"{'gpu':<8} {'estimated':>11} {'TTFT med|err|%':>15} {'TPOT med|err|%':>15}"]
    for name, members in [*sorted(groups.items()), ("all", rows)]:
        ttft, tpot = [], []
        for raw in members:
            entry = entries[raw["id"]]
            if "ttft_ms" in entry and raw.get("silicon_ttft_ms") and raw.get("silicon_tpot_ms"):
                ttft.append(_abs_err(entry["ttft_ms"], float(raw["silicon_ttft_ms"])))
                tpot.append(_abs_err(entry["tpot_ms"], float(raw["silicon_tpot_ms"])))
        med = (lambda xs: f"{statistics.median(xs):.1f}" if xs else "-")
        lines.append(f"{name:<8} {f'{len(ttft)}/{len(members)}':>11} {med(ttft):>15} {med(tpot):>15}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="vllm", help="backend column to select (default vllm)")
    parser.add_argument("--gpu", default=None,
                        help="comma-separated GPUs: Kairos names (h100,h200,b200,b300,gb200), "
                             "aiconfigurator systems (h100_sxm) or dev/test; default every GPU")
    parser.add_argument("--csv", type=Path, default=None, help="silicon_sample.csv (default: aiconfigurator-core's)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: cores)")
    parser.add_argument("--database-mode", default="SILICON",
                        choices=("SILICON", "HYBRID", "EMPIRICAL", "SOL"),
                        help="aiconfigurator's database mode (default SILICON, as `aiconfigurator cli estimate`)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N selected rows (smoke test)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="JSON to write")
    args = parser.parse_args(argv)

    path = args.csv or silicon_csv()
    rows = load_rows(path, args.backend, systems_of(args.gpu))
    if args.limit is not None:
        rows = rows[:args.limit]
    if not rows:
        print(f"no aggregated {args.backend} rows for --gpu {args.gpu or 'any'} in {path}", file=sys.stderr)
        return 1
    version = metadata.version("aiconfigurator")
    print(f"aiconfigurator {version}: {len(rows)} {args.backend} agg rows of {path}, {args.jobs} jobs",
          file=sys.stderr)

    # Grouping by system and model keeps each worker's loaded databases warm; results are
    # keyed by row id and written in CSV order, so the output does not depend on --jobs.
    order = sorted(range(len(rows)), key=lambda i: (rows[i]["system"], rows[i]["model_path"], i))
    entries: dict[str, dict] = {}
    used: dict[str, set[str]] = {}
    fallbacks: dict[str, str] = {}
    start = time.monotonic()

    def record(done: int, row_id: str, entry: dict, db_version: str | None, note: str | None,
               system: str) -> None:
        entries[row_id] = entry
        if note:
            fallbacks[row_id] = note
        if db_version:
            used.setdefault(system, set()).add(db_version)
        if done % PROGRESS_EVERY == 0 or done == len(rows):
            skipped = sum(1 for e in entries.values() if "skipped" in e)
            print(f"  {done}/{len(rows)} rows, {skipped} skipped, {time.monotonic() - start:.0f} s",
                  file=sys.stderr, flush=True)

    ordered = [rows[i] for i in order]
    if args.jobs <= 1:
        _init_worker(args.database_mode)
        results = map(estimate_row, ordered)
        for done, (raw, result) in enumerate(zip(ordered, results), 1):
            record(done, *result, raw["system"])
    else:
        chunk = max(1, min(16, len(rows) // (4 * args.jobs)))
        with ProcessPoolExecutor(max_workers=args.jobs, initializer=_init_worker,
                                 initargs=(args.database_mode,)) as pool:
            for done, (raw, result) in enumerate(
                    zip(ordered, pool.map(estimate_row, ordered, chunksize=chunk)), 1):
                record(done, *result, raw["system"])
    wall = time.monotonic() - start

    out = {"source": f"aiconfigurator {version} estimate",
           "backend": args.backend,
           "database_mode": args.database_mode,
           "database_versions": {system: sorted(v) for system, v in sorted(used.items())},
           "rows": {raw["id"]: entries[raw["id"]] for raw in rows},
           # Rows estimated through a documented substitution (see the module docstring).
           "fallbacks": {raw["id"]: fallbacks[raw["id"]] for raw in rows if raw["id"] in fallbacks}}
    args.output.write_text(json.dumps(out, indent=1) + "\n")
    estimated = sum(1 for e in out["rows"].values() if "ttft_ms" in e)
    print(f"{estimated} of {len(rows)} rows estimated in {wall:.0f} s "
          f"({wall * args.jobs / len(rows):.2f} s per row per job) -> {args.output}", file=sys.stderr)
    for line in report(rows, entries):
        print(line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
