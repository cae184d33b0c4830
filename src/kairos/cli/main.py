"""The `kairos` command: parse, build, run, print. Logic lives in the packages it calls."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from kairos.cli.catalogs import gpus_table, models_table
from kairos.cli.errors import run_app
from kairos.cli import bench_cmd, calibrate_cmd, plan_cmd, policies_cmd, serve_cmd, validate_cmd
from kairos.cli.overrides import parse_options, parse_set, workload_override
from kairos.cli.explain_table import explain_table
from kairos.cli.consoles import err, out
from kairos.cli.plugins import plugins_epilog
from kairos.cli.progress import LazyProgress
from kairos.cluster import ROUTERS
from kairos.engine import POLICIES
from kairos.errors import KairosError
from kairos.html.page import require_plotly
from kairos.html.simulate_page import write_simulate_page
from kairos.predict import PREDICTORS
from kairos.metrics import render_summary, write_report
from kairos.metrics.timeseries import write_timeseries
from kairos.scenario.step_models import STEP_TIME_MODELS
from kairos.scenario.load import load_scenario
from kairos.scenario.run import run_scenario

app = typer.Typer(
    name="kairos", no_args_is_help=True, add_completion=False, rich_markup_mode="rich",
    help="Plan, simulate and run LLM inference serving. Add --debug to any command for tracebacks.",
)


@app.command(epilog=plugins_epilog(("--router", ROUTERS), ("--policy", POLICIES), ("--perf", STEP_TIME_MODELS)))
def simulate(
    scenario: Annotated[Optional[Path], typer.Argument(help="Scenario YAML; the built-in default when omitted.")] = None,
    model: Annotated[Optional[str], typer.Option(help="Model: catalog name, Hugging Face id or config.json path.")] = None,
    gpu: Annotated[Optional[str], typer.Option(help="GPU kind (see `kairos gpus`).")] = None,
    tp: Annotated[Optional[int], typer.Option(help="Tensor-parallel GPUs per replica.")] = None,
    replicas: Annotated[Optional[int], typer.Option(help="Engine replicas.")] = None,
    router: Annotated[Optional[str], typer.Option(help=f"Router: {ROUTERS.choices()}.")] = None,
    workload: Annotated[Optional[str], typer.Option(help="'synthetic' or 'trace:PATH' (Azure CSV, Mooncake JSONL, BurstGPT CSV, Kairos JSONL).")] = None,
    rate: Annotated[Optional[float], typer.Option(help="Synthetic arrival rate, requests (or sessions) per second.")] = None,
    num_requests: Annotated[Optional[int], typer.Option(help="Number of requests (a trace's first N arrivals).")] = None,
    concurrency: Annotated[Optional[int], typer.Option(help="Closed loop: at most C requests in flight, each end sending the next due (as vllm bench --max-concurrency).")] = None,
    time_scale: Annotated[Optional[float], typer.Option(help="Replay a trace k times faster.")] = None,
    perf: Annotated[Optional[str], typer.Option(help=f"Step-time model: {STEP_TIME_MODELS.choices()}.")] = None,
    policy: Annotated[Optional[str], typer.Option(help=f"Scheduling policy: {POLICIES.choices()} (`kairos policies`).")] = None,
    policy_option: Annotated[Optional[list[str]], typer.Option(metavar="KEY=VALUE", help="A knob of the policy, KEY=VALUE (short_tokens=512). Repeatable.")] = None,
    predictor: Annotated[Optional[str], typer.Option(help=f"Output-length predictor: {PREDICTORS.choices()} (default: histogram for policies that need one).")] = None,
    predictor_option: Annotated[Optional[list[str]], typer.Option(metavar="KEY=VALUE", help="A knob of the predictor, KEY=VALUE (sigma=0.5). Repeatable.")] = None,
    max_num_seqs: Annotated[Optional[int], typer.Option(help="Most requests running at once.")] = None,
    max_num_batched_tokens: Annotated[Optional[int], typer.Option(help="Token budget per step.")] = None,
    prefix_caching: Annotated[Optional[bool], typer.Option("--prefix-caching/--no-prefix-caching", help="Prefix caching on or off.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Any scenario field, KEY=VALUE with a dotted key (engine.block_size=32). Repeatable.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write report.json and requests.csv here.")] = None,
    html: Annotated[Optional[Path], typer.Option("--html", help="Write report.html here (latency CDFs, per-replica time series; needs kairos[html]), with timeseries.csv, and report.json unless -o puts it elsewhere.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No table, no progress bar.")] = False,
    explain: Annotated[bool, typer.Option("--explain", help="Show a sample of steps with their time split by operator (also in report.json).")] = False,
) -> None:
    """Simulate a scenario and print its summary (TTFT, TPOT, ITL, E2E, goodput)."""
    overrides: dict[str, Any] = {}
    for key, value in (("model.name", model), ("hardware.gpu", gpu), ("hardware.tp", tp),
                       ("cluster.replicas", replicas), ("cluster.router", router),
                       ("workload.rate", rate), ("workload.num_requests", num_requests),
                       ("workload.concurrency", concurrency),
                       ("workload.time_scale", time_scale), ("perf.model", perf),
                       ("engine.policy", policy), ("engine.predictor", predictor),
                       ("engine.max_num_seqs", max_num_seqs),
                       ("engine.max_num_batched_tokens", max_num_batched_tokens),
                       ("engine.enable_prefix_caching", prefix_caching), ("seed", seed)):
        if value is not None:
            overrides[key] = value
    if workload is not None:
        overrides.update(workload_override(workload))
    # Knob by knob, so that they add to the scenario file's options rather than replace them.
    for section, items, option in (("policy_options", policy_option, "--policy-option"),
                                   ("predictor_options", predictor_option, "--predictor-option")):
        overrides.update({f"engine.{section}.{key}": value
                          for key, value in parse_options(items or [], option).items()})
    overrides.update(parse_set(set_ or []))
    spec = load_scenario(scenario, overrides)
    if spec.workload.kind == "trace" and rate is not None:
        raise KairosError("--rate applies to synthetic workloads; replay a trace faster with --time-scale")

    if html is not None:
        require_plotly()  # before the run, not after it
    with LazyProgress("simulating", err, enabled=not quiet) as progress:
        run = run_scenario(spec, progress=progress, warn=lambda m: err.print(f"warning: {m}", markup=False),
                           explain=explain, timeseries=html is not None)
    if not quiet:
        deployment = run.report["deployment"]
        pools = [(name, deployment[name]) for name in ("prefill", "decode")] if "decode" in deployment \
            else [("", deployment)]
        for name, d in pools:
            for note in d["notes"]:
                err.print(f"note: {note}", markup=False)
            layout = f"tp {d['tp']}" + (f" x dp {d['dp']}" if d["dp"] > 1 else "") + (", ep" if d["ep"] else "")
            out.print(f"{name + ' pool: ' if name else ''}[bold]{d['model']}[/] ({d['weights_dtype']}) on "
                      f"{d['replicas']} x {d['gpus_per_replica']} {d['gpu']} ({layout}), "
                      f"{d['kv_blocks_per_replica']:,} KV blocks per replica, perf {d['perf']}")
        if "link" in deployment:
            link = deployment["link"]
            out.print(f"KV over {link['name']} ({link['bandwidth_gb_s']:g} GB/s, {link['latency_us']:g} us), decider "
                      f"{deployment['decider']}{', layer by layer' if deployment['overlap'] else ''}; "
                      f"{spec.workload.kind} workload")
        else:
            out.print(f"{spec.workload.kind} workload")
        out.print(render_summary(run.report))
        if explain:
            out.print(explain_table(run.report["explain"]))
    # --html alone keeps the page's data beside it; with -o the data goes there, the page to --html.
    output = output if output is not None or html is None else html
    if output is not None:
        report_path, csv_path = write_report(output, run.report, run.records)
        out.print(f"wrote {report_path} and {csv_path}", markup=False)
    if html is not None:
        series_path = write_timeseries(output, run.timeseries)
        page_path = write_simulate_page(html, run.report, run.records, run.timeseries)
        out.print(f"wrote {series_path} and {page_path}", markup=False)


@app.command()
def models() -> None:
    """List the bundled model catalog."""
    out.print(models_table())


@app.command()
def gpus() -> None:
    """List the bundled GPU catalog."""
    out.print(gpus_table())


bench_cmd.register(app)
calibrate_cmd.register(app)
plan_cmd.register(app)
policies_cmd.register(app)
serve_cmd.register(app)
validate_cmd.register(app)


def main() -> None:
    raise SystemExit(run_app(app))


if __name__ == "__main__":
    main()
