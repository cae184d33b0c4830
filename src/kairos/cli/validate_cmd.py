"""`kairos validate`: replay a measured run in simulation and report the prediction error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from kairos.bench.run_format import load_measured_run
from kairos.cli.consoles import err, out
from kairos.cli.progress import LazyProgress
from kairos.validate import replay_scenario, validate_run

VALIDATION_FILE = "validation.json"


def register(app: typer.Typer) -> None:
    """Add the `validate` command to the kairos app."""
    app.command()(validate)


def validate(
    against: Annotated[Path, typer.Option(help="Measured run directory (meta.json + requests.jsonl), from vLLM or `kairos bench`.")],
    gpu: Annotated[Optional[str], typer.Option(help="GPU of the run; default: from meta.json's device name.")] = None,
    model: Annotated[Optional[str], typer.Option(help="Model of the run; default: meta.json's model.")] = None,
    perf: Annotated[str, typer.Option(help="Step-time model: auto, roofline, kernels or calibrated:PROFILE.")] = "auto",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help=f"Write {VALIDATION_FILE} here.")] = None,
    machine_speed: Annotated[bool, typer.Option("--machine-speed/--no-machine-speed", help="Scale a calibrated profile to the machine's speed during the run, where the server timed its reference step (kairos serve --reference-step-ms) at calibration and in the run.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No table, no progress bar.")] = False,
) -> None:
    """Compare a simulated replay of a measured run with what was measured (TTFT, TPOT, E2E)."""
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
        if "engine_steps" in result:
            out.print(steps_table(result["engine_steps"]))
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        path = output / VALIDATION_FILE
        path.write_text(json.dumps(result, indent=2, sort_keys=True, allow_nan=False) + "\n")
        out.print(f"wrote {path}", markup=False)


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


def steps_table(steps: dict) -> Table:
    """The run's logged engine steps, predicted by the step-time model (kairos.validate.steps)."""
    table = Table(title="Engine steps the server logged, predicted one by one")
    for col in ("steps", "count", "measured (s)", "predicted (s)", "error"):
        table.add_column(col, justify="left" if col == "steps" else "right")
    for kind, cell in [*steps["by_kind"].items(), ("all", steps)]:
        table.add_row(kind, f"{cell['steps']:,}", f"{cell['measured_s']:,.3f}", f"{cell['predicted_s']:,.3f}",
                      f"{cell['error_pct']:+.1f} %")
    return table
