"""The `kairos plan --html` page: the search's Pareto scatter with the chosen point and the ranked table,
or a capacity search's probes, or the sized candidates of --target-rate (built from plan.json's content);
then the chosen deployment run at its planned load, as `kairos simulate --html` shows a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kairos.html.page import Page, require_plotly
from kairos.html.simulate_page import add_run, scenario_facts
from kairos.scenario.run import ScenarioRun

PAGE_FILE = "plan.html"


def write_plan_page(out_dir: str | Path, plan: dict[str, Any], chosen: ScenarioRun | None = None) -> Path:
    """Write OUT_DIR/plan.html for a plan (the dict `kairos plan` writes as plan.json) and the run of
    its chosen deployment at the planned load, if any."""
    return plan_page(plan, chosen).write(Path(out_dir) / PAGE_FILE)


def plan_page(plan: dict[str, Any], chosen: ScenarioRun | None = None) -> Page:
    require_plotly()
    slo = plan["slo"]
    targets = ", ".join(f"{k.upper()} {v:g} ms" for k, v in slo.items() if k != "percentile")
    page = Page(f"Kairos plan: {plan['question'].replace('_', ' ')}")
    page.facts([("SLO", f"p{slo['percentile']:g} {targets}, every request completed"),
                ("planned in", f"{plan['wall_s']:.1f} s")])
    if plan["question"] == "search":
        _search(page, plan)
    elif plan["question"] == "capacity":
        _capacity(page, plan)
    else:
        _target_rate(page, plan)
    if plan.get("launch"):
        page.heading("Launch")
        launch = plan["launch"]
        groups = launch.items() if isinstance(launch, dict) else [("", launch)]
        page.table("launch-table", ["deployment", "command"],
                   [[name, line] for name, lines in groups for line in lines])
    if chosen is not None:
        page.heading("The chosen deployment at its planned load")
        page.facts(scenario_facts(chosen.report))
        add_run(page, chosen.report, chosen.records, chosen.timeseries)
    return page


def _search(page: Page, plan: dict[str, Any]) -> None:
    import plotly.graph_objects as go

    ok = [t for t in plan["trials"] if t["error"] is None]
    front = sorted((t for t in ok if t["pareto"]), key=lambda t: t["tokens_per_user"])
    best = plan.get("best")
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=[t["tokens_per_user"] for t in ok], y=[t["tokens_per_gpu"] for t in ok],
                                mode="markers", name="deployments", marker={"color": "#9aa5b1", "size": 8},
                                text=[t["deployment"] for t in ok], hoverinfo="text+x+y"))
    figure.add_trace(go.Scatter(x=[t["tokens_per_user"] for t in front], y=[t["tokens_per_gpu"] for t in front],
                                mode="lines+markers", name="Pareto front", line={"color": "#1f77b4"},
                                marker={"size": 10}, text=[t["deployment"] for t in front], hoverinfo="text+x+y"))
    if best is not None:
        figure.add_trace(go.Scatter(x=[best["tokens_per_user"]], y=[best["tokens_per_gpu"]], mode="markers",
                                    name="chosen", marker={"color": "#d62728", "size": 16, "symbol": "star"},
                                    text=[best["deployment"]], hoverinfo="text+x+y"))
    figure.update_layout(title="Output tokens/s per GPU against tokens/s per user, at each one's capacity",
                         xaxis_title="tokens/s/user (1 / mean TPOT)", yaxis_title="tokens/s/GPU", height=520)
    page.heading("Pareto front")
    page.figure("pareto", figure)
    page.heading("Ranked deployments")
    page.table("ranked-table", ["rank", "pareto", "deployment", "GPUs", "capacity req/s", "tokens/s/GPU",
                                "tokens/s/user"],
               [[i, "*" if t["pareto"] else "", t["deployment"], t["gpus"], t["capacity_rps"], t["tokens_per_gpu"],
                 t["tokens_per_user"]] for i, t in enumerate(ok, 1)])
    failed = [t for t in plan["trials"] if t["error"] is not None]
    if failed:
        page.heading("Deployments that did not meet the SLO or could not run")
        page.table("failed-table", ["deployment", "why"], [[t["deployment"], t["error"]] for t in failed])


def _capacity(page: Page, plan: dict[str, Any]) -> None:
    import plotly.graph_objects as go

    probes = sorted(plan["probes"], key=lambda p: p["knob"])
    loads = [p["knob"] for p in probes]
    figure = go.Figure()
    for metric, target in ((m, v) for m, v in plan["slo"].items() if m != "percentile"):
        figure.add_trace(go.Scatter(x=loads, y=[p["observed_ms"].get(metric) for p in probes],
                                    mode="lines+markers", name=f"p{plan['slo']['percentile']:g} {metric.upper()}"))
        # A trace, not add_hline: on a log axis a shape's y is read as a power of ten.
        figure.add_trace(go.Scatter(x=[loads[0], loads[-1]], y=[target, target], mode="lines",
                                    line={"dash": "dot"}, name=f"{metric.upper()} target"))
    if plan["capacity"] is not None:
        figure.add_vline(x=plan["capacity"], line_color="#d62728", annotation_text="capacity")
    figure.update_layout(title="The search's probes", xaxis_title=plan["knob"], yaxis_title="ms",
                         yaxis_type="log", height=480)
    page.facts([("capacity", f"{plan['capacity']:.4g} ({plan['knob']})" if plan["capacity"] is not None
                 else "no load tried meets the SLO")])
    page.heading("Probes")
    page.figure("probes", figure)
    metrics = [m for m in plan["slo"] if m != "percentile"]
    page.table("probes-table", ["load", "meets", "stopped early",
                                *[f"p{plan['slo']['percentile']:g} {m.upper()} ms" for m in metrics]],
               [[p["knob"], "yes" if p["meets"] else "no", "yes" if p["incomplete"] else "",
                 *[p["observed_ms"].get(m) for m in metrics]] for p in probes])


def _target_rate(page: Page, plan: dict[str, Any]) -> None:
    import plotly.graph_objects as go

    sized = [c for c in plan["candidates"] if c["replicas"] is not None]
    figure = go.Figure(go.Bar(x=[c["layout"] for c in sized], y=[c["gpus"] for c in sized], name="GPUs"))
    figure.update_layout(title=f"GPUs each candidate needs for {plan['target_rate_rps']:g} req/s",
                         yaxis_title="GPUs", height=420)
    best = plan.get("best")
    page.facts([("cheapest", f"{best['layout']}, {best['gpus']} GPUs" if best is not None
                 else f"no candidate meets the SLO at {plan['target_rate_rps']:g} req/s")])
    page.heading("Candidates")
    page.figure("candidates", figure)
    page.table("candidates-table", ["deployment", "GPUs", "USD/h", "one-replica load", "note"],
               [[c["layout"], c["gpus"] or "-", c["cost_per_hour"] or "-",
                 c["replica_capacity"] if c["prefill_gpu"] is None else "-", c["reason"]] for c in plan["candidates"]])
