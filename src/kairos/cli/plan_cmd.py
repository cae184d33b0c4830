"""`kairos plan`: a deployment's capacity under an SLO, or the cheapest deployment for a rate."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from kairos.cli.consoles import err, out
from kairos.cli.overrides import parse_set, workload_override
from kairos.cli.progress import LazyProgress
from kairos.errors import KairosError
from kairos.html.page import require_plotly
from kairos.html.plan_page import PAGE_FILE, write_plan_page
from kairos.plan import Probe, Sized, SloTarget, cheapest, find_capacity, launch_plan
from kairos.plan.capacity import rate_knob, with_knob
from kairos.plan.cheapest import colocated, knob_for_rate, with_layout, with_pool_sizes
from kairos.plan.executors import TrialExecutor, make_executor
from kairos.plan.search import SearchSpace, TrialResult
from kairos.plan.search import search as search_deployments
from kairos.scenario.load import apply_overrides, load_scenario, validate_scenario
from kairos.scenario.run import run_scenario
from kairos.scenario.schema import Scenario

PLAN_FILE = "plan.json"


def register(app: typer.Typer) -> None:
    """Add the `plan` command to the kairos app."""
    app.command()(plan)


def plan(
    scenario: Annotated[Optional[Path], typer.Argument(help="Scenario YAML (model, workload, engine, SLO); the built-in default when omitted.")] = None,
    capacity: Annotated[bool, typer.Option("--capacity", help="The highest request rate the scenario's deployment sustains within the SLO.")] = False,
    target_rate: Annotated[Optional[float], typer.Option(help="The cheapest deployment (GPU kind, TP, replicas) meeting the SLO at this many requests per second; with cluster.pools, the scenario's P/D layout sized beside the colocated candidates.")] = None,
    search: Annotated[bool, typer.Option("--search", help="Optuna over deployments within --total-gpus: the Pareto front of output tokens/s/GPU against tokens/s/user at each one's capacity.")] = False,
    ttft: Annotated[Optional[float], typer.Option(help="TTFT target, ms (default: the scenario's slo.ttft_ms).")] = None,
    tpot: Annotated[Optional[float], typer.Option(help="TPOT target, ms (default: slo.tpot_ms).")] = None,
    e2e: Annotated[Optional[float], typer.Option(help="E2E target, ms (default: slo.e2e_ms).")] = None,
    percentile: Annotated[float, typer.Option(help="The percentile that must meet every target.")] = 90.0,
    gpu: Annotated[Optional[str], typer.Option(help="--target-rate, --search: GPU kinds to try, comma-separated (default: the scenario's).")] = None,
    tp: Annotated[str, typer.Option(help="--target-rate, --search: tensor-parallel sizes to try, comma-separated.")] = "1,2,4,8",
    max_replicas: Annotated[int, typer.Option(min=1, help="--target-rate: the most replicas a candidate may use.")] = 64,
    prices: Annotated[Optional[Path], typer.Option(help="--target-rate: JSON {gpu: USD per GPU-hour}; ranks by cost instead of GPU count.")] = None,
    tolerance: Annotated[float, typer.Option(help="Relative gap between the highest rate met and the lowest missed when the search stops.")] = 0.02,
    workers: Annotated[Optional[int], typer.Option(min=1, help="--target-rate, --search: processes at once (default: one per CPU).")] = None,
    total_gpus: Annotated[Optional[int], typer.Option(min=1, help="--search: the GPU budget of a deployment (default: 8).")] = None,
    trials: Annotated[int, typer.Option(min=1, help="--search: deployments to judge (repeats are free; more for a resumed study).")] = 50,
    objectives: Annotated[str, typer.Option(help="--search: tokens_per_gpu and/or tokens_per_user (two: NSGA-II; one: TPE).")] = "tokens_per_gpu,tokens_per_user",
    batched_tokens: Annotated[str, typer.Option(help="--search: max_num_batched_tokens choices.")] = "1024,2048,4096,8192",
    max_seqs: Annotated[str, typer.Option(help="--search: max_num_seqs choices.")] = "64,128,256",
    prefill_max_seqs: Annotated[str, typer.Option(help="--search --disagg: the prefill pool's max_num_seqs choices (1: one prompt at a time).")] = "1,8,64",
    routers: Annotated[Optional[str], typer.Option(help="--search: router choices (default: the scenario's).")] = None,
    policies: Annotated[Optional[str], typer.Option(help="--search: scheduling policy choices (default: the scenario's).")] = None,
    disagg: Annotated[bool, typer.Option("--disagg", help="--search: also try prefill/decode pools.")] = False,
    storage: Annotated[Optional[str], typer.Option(help="--search: Optuna storage, e.g. sqlite:///study.db, to resume a study.")] = None,
    study: Annotated[str, typer.Option(help="--search: the study's name in --storage.")] = "kairos-plan",
    ray_address: Annotated[Optional[str], typer.Option(help="--search: run trials as Ray tasks on this cluster (auto, HOST:PORT, or local).")] = None,
    workload: Annotated[Optional[str], typer.Option(help="'synthetic' or 'trace:PATH'.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Any scenario field, KEY=VALUE with a dotted key. Repeatable.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help=f"Write {PLAN_FILE} here.")] = None,
    html: Annotated[Optional[Path], typer.Option("--html", help=f"Write {PAGE_FILE} here (and {PLAN_FILE}, without -o): the Pareto scatter, probes or candidates, and the ranked table.")] = None,
) -> None:
    """Plan by simulation: capacity under an SLO (--capacity), the cheapest deployment for a rate (--target-rate), or the Pareto front of deployments in a GPU budget (--search)."""
    if capacity + (target_rate is not None) + search != 1:
        raise KairosError("say what to plan: --capacity, --target-rate R or --search (one of them)")
    overrides: dict[str, Any] = dict(workload_override(workload)) if workload is not None else {}
    overrides.update(parse_set(set_ or []))
    spec = load_scenario(scenario, overrides)
    target = SloTarget(ttft if ttft is not None else spec.slo.ttft_ms, tpot if tpot is not None else spec.slo.tpot_ms,
                       e2e if e2e is not None else spec.slo.e2e_ms, percentile)
    if html is not None:
        require_plotly()  # before the search, not after it
    started = time.perf_counter()
    if capacity:
        result = _capacity(spec, target, tolerance)
    elif search:
        space = SearchSpace(
            tuple(_names(gpu) or [spec.hardware.gpu]), tuple(_ints("--tp", tp)), total_gpus or 8,
            tuple(_ints("--batched-tokens", batched_tokens)), tuple(_ints("--max-seqs", max_seqs)),
            tuple(_names(routers) or [spec.cluster.router]), tuple(_names(policies) or [spec.engine.policy]), disagg,
            tuple(_ints("--prefill-max-seqs", prefill_max_seqs)))
        result = _search(spec, target, space, trials, _names(objectives), storage, study,
                         max(tolerance, 0.05), make_executor(workers, ray_address))
    else:
        result = _target_rate(spec, target, target_rate, gpu, tp, max_replicas, prices, tolerance, workers)
    result = {"slo": {**target.targets(), "percentile": target.percentile}, **result,
              "wall_s": round(time.perf_counter() - started, 2)}
    out.print(f"planned in {result['wall_s']:.1f} s")
    output = output if output is not None else html
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        (output / PLAN_FILE).write_text(json.dumps(result, indent=2) + "\n")
        out.print(f"wrote {output / PLAN_FILE}", markup=False)
    if html is not None:
        chosen = _chosen(spec, result)
        run = None
        if chosen is not None:
            with LazyProgress("running the chosen deployment", err) as progress:
                run = run_scenario(chosen, progress=progress, timeseries=True)
        out.print(f"wrote {write_plan_page(html, result, run)}", markup=False)


def _capacity(spec: Scenario, target: SloTarget, tolerance: float) -> dict[str, Any]:
    table = Table("load", "meets", *[f"p{target.percentile:g} {m.upper()} ms" for m in target.targets()],
                  "served req/s", "wall s", title=f"capacity search ({target.describe()})")

    def show(p: Probe) -> None:
        table.add_row(f"{p.knob:.4g}", "yes" if p.meets else "no" + (" (stopped)" if p.incomplete else ""),
                      *[_ms(p.observed_ms[m]) for m in target.targets()], f"{p.throughput_rps:.2f}", f"{p.wall_s:.1f}")
        err.print(f"  {p.knob:.4g}: {'meets' if p.meets else 'misses'}", markup=False)

    result = find_capacity(spec, target, tolerance=tolerance, on_probe=show)
    out.print(table)
    unit = "x trace speed" if result.knob_name == "workload.time_scale" else "req/s"
    if result.best is None:
        out.print(f"[bold red]no load tried meets {target.describe()}[/] (lowest: {result.first_failing.knob:.4g} {unit})")
    else:
        above = f"; {result.first_failing.knob:.4g} misses" if result.first_failing is not None else \
            " (still meeting at the highest load tried)"
        out.print(f"capacity: [bold]{result.best.knob:.4g} {unit}[/]"
                  f" meets {target.describe()}{above}")
        for line in launch_plan(spec):
            out.print(line, markup=False, soft_wrap=True)
    return {"question": "capacity", "knob": result.knob_name,
            "capacity": None if result.best is None else result.best.knob,
            "first_failing": None if result.first_failing is None else result.first_failing.knob,
            "probes": [_probe_json(p) for p in result.probes],
            "launch": launch_plan(spec) if result.best is not None else []}


def _target_rate(spec: Scenario, target: SloTarget, rate: float, gpus: str | None, tps: str, max_replicas: int,
                 prices_path: Path | None, tolerance: float, workers: int | None) -> dict[str, Any]:
    gpu_list = _names(gpus) or [spec.hardware.gpu]
    tp_list = _ints("--tp", tps)
    prices = _load_prices(prices_path)
    candidates = len(gpu_list) * len(tp_list) + (spec.cluster.pools is not None)
    done = 0

    def progress(s: Sized) -> None:
        nonlocal done
        done += 1
        verdict = f"{s.gpus} GPUs" if s.replicas is not None else s.reason
        err.print(f"  [{done}/{candidates}] {s.layout()}: {verdict}", markup=False)
        bar(done, candidates)

    with LazyProgress("sizing candidates", err) as bar:
        sized = cheapest(spec, target, rate, gpus=gpu_list, tps=tp_list, max_replicas=max_replicas,
                         tolerance=max(tolerance, 0.05), prices=prices, workers=workers, on_done=progress)
    table = Table("rank", "deployment", "GPUs", *(["USD/h"] if prices else []), "1-replica load",
                  *[f"p{target.percentile:g} {m.upper()} ms" for m in target.targets()],
                  title=f"cheapest deployment for {rate:g} req/s ({target.describe()})")
    for rank, s in enumerate(sized, 1):
        observed = s.at_target.observed_ms if s.at_target is not None else {}
        table.add_row(str(rank) if s.replicas is not None else "-",
                      s.layout() if s.replicas is not None else f"{s.layout()}: {s.reason}", str(s.gpus or "-"),
                      *([f"{s.cost_per_hour:.2f}" if s.cost_per_hour is not None else "-"] if prices else []),
                      f"{s.replica_capacity:.3g}" if not s.disaggregated else "-",
                      *[_ms(observed.get(m)) for m in target.targets()])
    out.print(table)
    best = sized[0] if sized and sized[0].replicas is not None else None
    launch: list[str] = []
    if best is None:
        out.print(f"[bold red]no candidate meets {target.describe()} at {rate:g} req/s[/]")
    else:
        launch = launch_plan(_sized_scenario(spec, best.to_json()))
        out.print(f"cheapest: [bold]{best.layout()}[/] ({best.gpus} GPUs)")
        for line in launch:
            out.print(line, markup=False, soft_wrap=True)
    return {"question": "target_rate", "target_rate_rps": rate,
            "candidates": [s.to_json() for s in sized], "best": None if best is None else best.to_json(),
            "launch": launch}


def _search(spec: Scenario, target: SloTarget, space: SearchSpace, trials: int, objectives: list[str],
            storage: str | None, study: str, tolerance: float, executor: TrialExecutor) -> dict[str, Any]:
    judged = 0

    def progress(t: TrialResult) -> None:
        nonlocal judged
        judged += 1
        verdict = t.error or f"{t.tokens_per_gpu:,.0f} tok/s/GPU, {t.tokens_per_user:,.1f} tok/s/user"
        err.print(f"  trial {t.number}: {t.deployment}: {verdict} ({t.wall_s:.1f} s)", markup=False)
        bar(judged, trials)

    try:
        with LazyProgress("judging deployments", err) as bar:
            result = search_deployments(spec, target, space, trials=trials, objectives=objectives, storage=storage,
                                        study_name=study, seed=spec.seed, tolerance=tolerance, executor=executor,
                                        on_trial=progress)
    finally:
        executor.close()
    table = Table("rank", "pareto", "deployment", "GPUs", "capacity req/s", "tok/s/GPU", "tok/s/user",
                  title=f"search over {len(result.trials)} deployments ({target.describe()})")
    ranked = [t for t in result.trials if t.error is None]
    for rank, t in enumerate(ranked[:20], 1):
        table.add_row(str(rank), "*" if t.pareto else "", t.deployment, str(t.gpus),
                      f"{t.capacity_rps:.3g}", f"{t.tokens_per_gpu:,.0f}", f"{t.tokens_per_user:,.1f}")
    out.print(table)
    failed = len(result.trials) - len(ranked)
    if failed:
        out.print(f"{failed} deployment(s) could not run or met the SLO at no rate (reasons in plan.json)")
    launch = {}
    for t in result.pareto[:3]:
        chosen = validate_scenario(apply_overrides(spec.model_dump(mode="json"), t.overrides), "search")
        launch[t.deployment] = launch_plan(chosen)
    for name, lines in launch.items():
        out.print(f"[bold]{name}[/]")
        for line in lines:
            out.print("  " + line, markup=False, soft_wrap=True)
    return {"question": "search", "space": asdict(space), "objectives": objectives,
            "trials": [t.to_json() for t in result.trials], "pareto": [t.to_json() for t in result.pareto],
            "best": ranked[0].to_json() if ranked else None, "launch": launch}


def _chosen(spec: Scenario, result: dict[str, Any]) -> Scenario | None:
    """The planned deployment at its planned load (None when nothing met the SLO)."""
    if result["question"] == "capacity":
        return None if result["capacity"] is None else with_knob(spec, result["knob"], result["capacity"])
    best = result["best"]
    if best is None:
        return None
    if result["question"] == "target_rate":
        chosen = _sized_scenario(spec, best)
        return with_knob(chosen, rate_knob(chosen)[0], knob_for_rate(chosen, result["target_rate_rps"]))
    chosen = validate_scenario(apply_overrides(spec.model_dump(mode="json"), best["overrides"]), "search")
    return with_knob(chosen, rate_knob(chosen)[0], best["capacity_knob"])


def _sized_scenario(spec: Scenario, sized: dict[str, Any]) -> Scenario:
    """The scenario laid out as a --target-rate candidate (`Sized.to_json()`) says."""
    if sized["prefill_gpu"] is not None:
        return with_pool_sizes(spec, sized["prefill_replicas"], sized["replicas"])
    return with_layout(colocated(spec), sized["gpu"], sized["tp"], sized["replicas"])


def _names(text: str | None) -> list[str]:
    return [n.strip().lower() for n in (text or "").split(",") if n.strip()]


def _ints(option: str, text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise KairosError(f"{option} takes comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise KairosError(f"{option} takes positive integers, got {text!r}")
    return values


def _load_prices(path: Path | None) -> dict[str, float] | None:
    if path is None:
        return None
    try:
        prices = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise KairosError(f"--prices {path}: {e}") from None
    if not isinstance(prices, dict) or not all(isinstance(v, (int, float)) and v > 0 for v in prices.values()):
        raise KairosError(f"--prices {path}: expected {{\"gpu\": USD per GPU-hour > 0, ...}}")
    return {str(k).lower(): float(v) for k, v in prices.items()}


def _probe_json(p: Probe) -> dict[str, Any]:
    return {**asdict(p), "wall_s": round(p.wall_s, 3)}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"

