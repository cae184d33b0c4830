"""`kairos validate`: replay a measured run in simulation and report the prediction error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from kairos.bench.run_format import load_measured_run
from kairos.cli.consoles import err, out
from kairos.cli.plugins import plugins_epilog
from kairos.cli.progress import LazyProgress
from kairos.errors import KairosError, unknown_name_error
from kairos.hardware import load_gpu
from kairos.scenario.step_models import STEP_TIME_MODELS
from kairos.validate import replay_scenario, validate_run
from kairos.validate.suite import (PROMPTS_PER_CLIENT, SUITE_FILE, SUITE_NAMES, attach_peer, load_peer, load_rows,
                                  run_suite)

VALIDATION_FILE = "validation.json"


def register(app: typer.Typer) -> None:
    """Add the `validate` command to the kairos app."""
    app.command(epilog=plugins_epilog(("--perf", STEP_TIME_MODELS)))(validate)


def validate(
    against: Annotated[Optional[Path], typer.Option(help="Measured run directory (meta.json + requests.jsonl), from vLLM or `kairos bench`.")] = None,
    suite: Annotated[Optional[str], typer.Option(help="Instead of one run, a suite of measured rows: 'aiconfigurator' (aiconfigurator-core's silicon_sample.csv; needs the kernels extra).")] = None,
    backend: Annotated[str, typer.Option(help="Suite only: the serving framework whose rows are replayed.")] = "vllm",
    mode: Annotated[str, typer.Option(help="Suite only: agg (aggregated rows) or disagg (prefill/decode disaggregated rows, as cluster.pools).")] = "agg",
    gpu: Annotated[Optional[str], typer.Option(help="GPU of the run; default: from meta.json's device name. With --suite: comma-separated GPUs (h100,h200); default all.")] = None,
    model: Annotated[Optional[str], typer.Option(help="Model of the run; default: meta.json's model.")] = None,
    perf: Annotated[str, typer.Option(help=f"Step-time model: {STEP_TIME_MODELS.choices()} (--suite: default aiconfigurator).")] = "auto",
    jobs: Annotated[Optional[int], typer.Option(min=1, help="Suite only: processes simulating rows at once; default one per CPU.")] = None,
    prompts_per_client: Annotated[int, typer.Option(min=1, help="Suite only: requests each client sent (the benchmark's --num-prompts / concurrency; the rows do not record it).")] = PROMPTS_PER_CLIENT,
    peer: Annotated[Optional[Path], typer.Option(help="Suite only: a peer's estimates of the same rows (benchmarks/aiconfigurator_peer/estimate.py), put beside ours.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help=f"Write {VALIDATION_FILE} (a suite: {SUITE_FILE}) here.")] = None,
    machine_speed: Annotated[bool, typer.Option("--machine-speed/--no-machine-speed", help="Scale a calibrated profile to the machine's speed during the run, where the server timed its reference step (kairos serve --reference-step-ms) at calibration and in the run.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No table, no progress bar.")] = False,
) -> None:
    """Compare a simulated replay of a measured run (or a suite of measured rows) with what was measured."""
    if suite is not None:
        if against is not None:
            raise KairosError("give either --against RUN or --suite NAME, not both")
        _validate_suite(suite, backend, mode, gpu, "aiconfigurator" if perf == "auto" else perf, jobs,
                        prompts_per_client, peer, output, quiet)
        return
    if peer is not None:
        raise KairosError("--peer goes with --suite")
    if against is None:
        raise KairosError("nothing to validate: give --against RUN_DIR or --suite aiconfigurator")
    run = load_measured_run(against)
    scenario = replay_scenario(run, gpu=gpu, model=model, perf=perf)
    with LazyProgress("replaying", err, enabled=not quiet) as progress:
        result = validate_run(run, scenario, progress=progress, machine_speed=machine_speed)
    if not quiet:
        out.print(f"[bold]{result['model']}[/] on {result['gpu']}, perf {result['perf']}, "
                  f"{result['kv_blocks']:,} KV blocks, {result['num_requests']} requests")
        if "machine_speed" in result:
            out.print(speed_line(result["machine_speed"]), markup=False)
        out.print(validation_table(result))
        if "server_counters" in result:
            out.print(counters_line(result["server_counters"]), markup=False)
        if "engine_steps" in result:
            out.print(steps_table(result["engine_steps"]))
    if output is not None:
        _write_json(output / VALIDATION_FILE, result)


def _validate_suite(name: str, backend: str, mode: str, gpus: str | None, perf: str, jobs: int | None,
                    prompts_per_client: int, peer: Path | None, output: Path | None, quiet: bool) -> None:
    if name not in SUITE_NAMES:
        raise unknown_name_error("suite", name, SUITE_NAMES)
    wanted = [load_gpu(g.strip()).name for g in gpus.split(",")] if gpus else None
    rows = load_rows(backend, wanted, mode=mode)
    estimates = load_peer(peer) if peer is not None else None  # a bad file fails before the long run
    with LazyProgress(f"simulating {len(rows)} measured rows", err, enabled=not quiet) as progress:
        result = run_suite(rows, perf, jobs, progress=progress, prompts_per_client=prompts_per_client)
    if estimates is not None:
        result = attach_peer(result, *estimates)
    if not quiet:
        out.print(suite_table(result["summary"]))
        if estimates is not None:
            out.print(f"peer: {result['peer']}; its errors and ours on the rows both answered", markup=False)
    if output is not None:
        _write_json(output / SUITE_FILE, result)


def _write_json(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=True, allow_nan=False) + "\n")
    out.print(f"wrote {path}", markup=False)


def suite_table(summary: dict) -> Table:
    """Rows simulated and median |error| by split, GPU and model."""
    table = Table(title="Measured-silicon suite: simulated vs measured means")
    peer = "head_to_head" in summary["all"]
    columns = ["group", "rows", "simulated", "median |TTFT err|", "median |TPOT err|"]
    if peer:
        columns += ["both answered", "TTFT: ours / peer", "TPOT: ours / peer"]
    for col in columns:
        table.add_column(col, justify="left" if col == "group" else "right")

    def pct(cell: dict | None) -> str:
        value = None if cell is None else cell["median_abs_error_pct"]
        return "-" if value is None else f"{value:.1f} %"

    groups = [("all", summary["all"]), *summary["by_split"].items(), *summary["by_gpu"].items(),
              *summary["by_model"].items()]
    for name, stats in groups:
        cells = [name, str(stats["rows"]), f"{stats['simulated']} ({stats['simulated_pct']:.0f} %)",
                 pct(stats["ttft_ms"]), pct(stats["tpot_ms"])]
        if peer:
            both = stats.get("head_to_head", {})
            cells += [str(both.get("rows", 0))] + [
                f"{pct(both.get(f'kairos_{m}'))} / {pct(both.get(f'aiconfigurator_{m}'))}" for m in ("ttft_ms", "tpot_ms")]
        table.add_row(*cells)
    return table


def speed_line(speed: dict) -> str:
    """How fast the machine ran during the run against at calibration, and what was done about it."""
    line = (f"machine speed: reference step {speed['run_reference_s'] * 1e3:.3f} ms in the run, "
            f"{speed['calibration_reference_s'] * 1e3:.3f} ms at calibration")
    if not speed["applied"]:
        return f"{line}: not applied (--no-machine-speed), factor {speed['factor']:.3f}"
    if "timeline" in speed:
        timeline = speed["timeline"]
        return (f"{line}\n  host work scaled by the speed at each step's start: {timeline['min']:.3f} to "
                f"{timeline['max']:.3f} (run mean {speed['factor']:.3f})")
    return f"{line}: step times scaled by {speed['factor']:.3f}"


def validation_table(result: dict) -> Table:
    table = Table(title=f"Simulated vs measured: {result['run']}")
    for col in ("metric", "stat", "measured (ms)", "simulated (ms)", "error"):
        table.add_column(col, justify="left" if col in ("metric", "stat") else "right")
    for metric, stats in result["metrics"].items():
        for stat, cell in stats.items():
            table.add_row(metric.removesuffix("_ms").upper(), stat, f"{cell['measured']:,.2f}",
                          f"{cell['simulated']:,.2f}", f"{cell['error_pct']:+.1f} %")
    return table


def counters_line(counters: dict) -> str:
    """The server's prefix-cache hit rate and preemptions against the simulation's, in one line."""
    parts = []
    if "prefix_cache_hit_rate" in counters:
        cell = counters["prefix_cache_hit_rate"]
        parts.append(f"prefix-cache hit rate {cell['measured']:.1%} measured, {cell['simulated']:.1%} simulated "
                     f"({cell['error_points']:+.1f} points)")
    if "preemptions" in counters:
        cell = counters["preemptions"]
        parts.append(f"preemptions {cell['measured']:,} measured, {cell['simulated']:,} simulated")
    phases = counters.get("engine_phases", {})
    if phases:
        parts.append("engine's own time per request, measured/simulated: " + ", ".join(
            f"{key.removesuffix('_ms')} {phases[key]['measured']:,.1f}/{phases[key]['simulated']:,.1f} ms"
            for key in ("queue_ms", "prefill_ms", "decode_ms") if key in phases)
            + (f", steps {phases['steps']['measured']:,}/{phases['steps']['simulated']:,}" if "steps" in phases else ""))
    return "; ".join(parts)


def steps_table(steps: dict) -> Table:
    """The run's logged engine steps, predicted by the step-time model (kairos.validate.steps)."""
    table = Table(title="Engine steps the server logged, predicted one by one")
    for col in ("steps", "count", "measured (s)", "predicted (s)", "error"):
        table.add_column(col, justify="left" if col == "steps" else "right")
    for kind, cell in [*steps["by_kind"].items(), ("all", steps)]:
        table.add_row(kind, f"{cell['steps']:,}", f"{cell['measured_s']:,.3f}", f"{cell['predicted_s']:,.3f}",
                      f"{cell['error_pct']:+.1f} %")
    return table
