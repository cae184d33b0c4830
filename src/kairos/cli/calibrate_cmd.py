"""`kairos calibrate`: time the real engine's steps on this machine and fit a step-time profile."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from kairos.cli.consoles import err, out
from kairos.cli.progress import LazyProgress
from kairos.errors import KairosError


# A point whose repeats spread wider than this share of their median was measured on a busy machine.
NOISY_SPREAD = 0.5


def register(app: typer.Typer) -> None:
    """Add the `calibrate` command to the kairos app."""
    app.command()(calibrate)


def calibrate(
    output: Annotated[Path, typer.Option("--output", "-o", help="Profile JSON to write (use it as --perf calibrated:PROFILE).")],
    model: Annotated[str | None, typer.Option(help="tiny, small or medium (random-init presets), or a local Hugging Face model directory.")] = None,
    url: Annotated[str | None, typer.Option(help="Calibrate a running server through its API instead, HTTP overhead included: `kairos serve` from its step log; a server without one (vLLM) from probes timed by its Prometheus /metrics, which needs --model-config, --max-num-seqs and --max-num-batched-tokens.")] = None,
    model_config: Annotated[Path | None, typer.Option(help="With --url to a server without a step log (vLLM): the served model's config.json (or its directory); vLLM does not publish the architecture.")] = None,
    device: Annotated[str, typer.Option(help="Torch device: cpu, cuda, cuda:1.")] = "cpu",
    block_size: Annotated[int | None, typer.Option(min=1, help="Tokens per KV cache block (default 16; with --url, the server's).")] = None,
    max_num_batched_tokens: Annotated[int | None, typer.Option(min=1, help="Token budget per engine step; the largest prefill chunk measured (default 2048). With --url to vLLM: the server's --max-num-batched-tokens (required).")] = None,
    max_num_seqs: Annotated[int | None, typer.Option(min=1, help="Most requests running at once; caps the decode batches measured (default 256). With --url to vLLM: the server's --max-num-seqs (required).")] = None,
    repeats: Annotated[int, typer.Option(min=1, help="Timed steps per grid point (after one warm-up step; the median is kept), or with --url passes over the grid of loads, each in a shuffled order.")] = 3,
    load_requests: Annotated[int, typer.Option(min=0, help="With --url to a server without a step log (vLLM): Poisson requests of the load phase that scales the probes' fit to served traffic (0: none; a third with --quick).")] = 100,
    quick: Annotated[bool, typer.Option("--quick", help="A small grid (seconds for the tiny model): for smoke tests, not for accuracy.")] = False,
    threads: Annotated[int | None, typer.Option(min=1, help="Torch CPU threads while measuring (default: torch's default); match what serving uses.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No table, no progress bar.")] = False,
) -> None:
    """Measure the real engine's step time over a grid of batch shapes and fit a calibrated step-time model."""
    if (model is None) == (url is None):
        raise KairosError("give either --model (measure an engine in this process) or --url (a running server)")
    if url is not None:
        from kairos.bench.client import normalize_url
        from kairos.probes.blackbox import calibrate_blackbox, has_step_log
        from kairos.probes.served import calibrate_served

        base_url = normalize_url(url)
        if has_step_log(base_url):
            with LazyProgress("calibration loads", err, enabled=not quiet) as progress:
                profile = calibrate_served(base_url, quick=quick, passes=repeats, progress=progress)
        else:
            with LazyProgress("calibration probes", err, enabled=not quiet) as progress:
                profile = calibrate_blackbox(base_url, model_config=model_config, max_num_seqs=max_num_seqs,
                                             max_num_batched_tokens=max_num_batched_tokens, block_size=block_size,
                                             quick=quick, passes=repeats, load_requests=load_requests,
                                             progress=progress)
        _write(output, profile, quiet)
        return
    if model_config is not None:
        raise KairosError("--model-config goes with --url (a server without a step log); with --model the "
                          "model's own config is read")
    try:
        from kairos.probes.engine import calibrate as measure
        from kairos.serve.loader import load_model
        from kairos.serve.runner import RunnerConfig
    except ImportError as exc:
        raise KairosError(f"kairos calibrate needs the engine extra ({exc.name} is missing): "
                          "pip install 'kairos[engine]'") from None
    loaded = load_model(model, device)
    config = RunnerConfig(block_size=block_size or 16, max_num_seqs=max_num_seqs or 256,
                          max_num_batched_tokens=max_num_batched_tokens or 2048)
    with LazyProgress("measuring steps", err, enabled=not quiet) as progress:
        profile = measure(loaded, config, repeats=repeats, quick=quick, threads=threads, progress=progress)
    _write(output, profile, quiet)
    if not quiet:
        noisy = noisy_points(profile)
        if noisy:
            err.print(f"warning: {noisy} of {len(profile['points'])} points' repeats spread over "
                      f"{NOISY_SPREAD:.0%} of their median: the machine was busy (other programs, or more "
                      "torch threads than idle cores); rerun when it is idle or with fewer --threads")
    out.print(f"wrote {output}", markup=False)


def _write(output: Path, profile: dict[str, Any], quiet: bool) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(profile, indent=1, allow_nan=False) + "\n")
    if not quiet and profile["measurement"].get("method") == "black-box":
        _print_blackbox(profile)
    elif not quiet:
        took = profile["measurement"]["wall_time_s"]
        out.print(f"[bold]{profile['model']}[/] on {profile['device']} ({profile['device_name']}, "
                  f"{profile['torch_threads']} torch threads): {len(profile['points'])} steps in {took:.1f} s")
        out.print(fit_table(profile))
        out.print(fit_summary(profile))
        tau = profile.get("idle_time_constant_s", 0.0)
        if tau:
            out.print(f"a step after an idle gap of t is slower by idle_wake x (1 - exp(-t / {tau * 1e3:g} ms))")
        http = profile["measurement"].get("http_latency_s")
        if http is not None:  # measured through a server's API
            out.print(f"front-end latency {profile['request_latency_s'] * 1e3:.2f} ms per request "
                      f"(of which outside the server's TTFT: {http * 1e3:.2f} ms)")


def _print_blackbox(profile: dict[str, Any]) -> None:
    measured = profile["measurement"]
    out.print(f"[bold]{profile['model']}[/] served by {measured['server']} at {profile['device']}: "
              f"{len(profile['points'])} step shapes from {measured['probes']} probes in "
              f"{measured['wall_time_s']:.1f} s (black box: probes timed by /metrics)")
    out.print(fit_table(profile))
    out.print(fit_summary(profile))
    out.print("by kind: " + "; ".join(f"{kind} ({e['points']}) median {e['median_abs_error_pct']:.1f} %, "
                                      f"max {e['max_abs_error_pct']:.1f} %"
                                      for kind, e in profile["fit_by_kind"].items()))
    front = measured["front_end"]
    under_load = f"under load; {front['request_s'] * 1e3:.2f} ms on " if "load_phase" in measured else ""
    out.print(f"front-end time {profile['request_latency_s'] * 1e3:.2f} ms per request "
              f"+ {front['per_input_token_s'] * 1e6:.2f} us per prompt token ({under_load}"
              f"{front['samples']} idle requests)")
    load = measured.get("load_phase")
    if load:
        out.print(f"load phase: {load['requests']} Poisson requests at {load['rate_per_s']:.2f}/s; steps "
                  f"{load['factor']:.3f} x the probes' fit; mean TTFT {load['measured']['ttft_s'] * 1e3:.2f} ms "
                  f"measured, {load['probes_fit']['ttft_s'] * 1e3:.2f} -> {load['fitted']['ttft_s'] * 1e3:.2f} ms "
                  f"simulated; TPOT {load['measured']['tpot_s'] * 1e3:.2f} ms, "
                  f"{load['probes_fit']['tpot_s'] * 1e3:.2f} -> {load['fitted']['tpot_s'] * 1e3:.2f} ms")
    for line in measured["skipped"]:
        err.print(f"skipped: {line}", markup=False)
    for line in measured["warnings"]:
        err.print(f"warning: {line}", markup=False)


# What one unit of each term counts, for the coefficient table.
TERM_UNITS = {"step": "step", "prefill_tokens": "prefill token", "prefill_attention_slots": "query-key pair",
              "prefill_chunks": "prefill chunk", "decodes": "decode", "decode_attention_slots": "decode KV slot",
              "sampled": "sampled token", "mixed": "mixed step", "idle_wake": "first step after a long idle gap"}


def fit_table(profile: dict[str, Any]) -> Table:
    table = Table(title="Fitted step time")
    for col in ("term", "microseconds", "per"):
        table.add_column(col, justify="right" if col == "microseconds" else "left")
    # Padded attention kernels pay for the pairs and slots of the padding too.
    padded = "padded " if (profile.get("engine") or {}).get("attention", "padded") == "padded" else ""
    for term in profile["terms"]:
        unit = TERM_UNITS.get(term, "")
        table.add_row(term, f"{profile['coefficients'][term] * 1e6:.4g}", padded + unit if "attention" in term else unit)
    return table


def fit_summary(profile: dict[str, Any]) -> str:
    fit = profile["fit"]
    return (f"|error| on the measured points: median {fit['median_abs_error_pct']:.1f} %, "
            f"p90 {fit['p90_abs_error_pct']:.1f} %; held out ({fit['folds']}-fold cross-validation): "
            f"median {fit['heldout_median_abs_error_pct']:.1f} %, p90 {fit['heldout_p90_abs_error_pct']:.1f} %")


def noisy_points(profile: dict[str, Any]) -> int:
    """Points whose timed repeats spread wider than NOISY_SPREAD of their median."""
    return sum(1 for p in profile["points"]
               if (max(p["times_s"]) - min(p["times_s"])) > NOISY_SPREAD * p["time_s"])
