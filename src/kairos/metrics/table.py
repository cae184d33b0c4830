"""Terminal rendering of a report: headline figures, latency table, per-class, per-tenant and per-replica tables."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table

# A measured run's report holds null where the client could not see a figure.
NOT_MEASURED = "not measured"
_LATENCY_ROWS: tuple[tuple[str, str], ...] = (
    ("TTFT", "ttft_ms"),
    ("TPOT", "tpot_ms"),
    ("ITL", "itl_ms"),
    ("E2E", "e2e_ms"),
    ("Queue", "queue_ms"),
)


def render_summary(report: dict[str, Any]) -> RenderableType:
    """A compact rich view of a report (what `kairos simulate` prints)."""
    summary = report["summary"]
    parts: list[RenderableType] = [_headline(summary), _latencies(summary)]
    for key, title in (("by_class", "By class"), ("by_tenant", "By tenant")):
        if summary.get(key):
            parts.append(_group_table(title, summary[key]))
    if report.get("disaggregation"):
        parts.append(_disaggregation(report["disaggregation"]))
    if report.get("migration"):
        parts.append(_migration(report["migration"]))
    replicas = report.get("replicas") or []
    if len(replicas) > 1:
        parts.append(_replica_table(replicas))
    return Group(*parts)


def _headline(summary: dict[str, Any]) -> Table:
    table = Table(box=box.ROUNDED, show_header=False, title="Kairos summary", title_justify="left")
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    throughput = summary["throughput"]
    goodput = summary["goodput"]
    requests = f"{summary['completed']:,} completed / {summary['num_requests']:,}"
    if summary.get("rejected"):
        requests += f"  [red]({summary['rejected']:,} rejected)[/red]"
    table.add_row("Requests", requests)
    table.add_row("Duration", f"{summary['duration_s']:,.2f} s")
    table.add_row(
        "Throughput",
        f"{throughput['requests_per_s']:,.2f} req/s   "
        f"{throughput['input_tokens_per_s']:,.0f} in tok/s   "
        f"{throughput['output_tokens_per_s']:,.0f} out tok/s",
    )
    table.add_row(
        "Goodput",
        f"{goodput['requests_per_s']:,.2f} req/s   "
        f"SLO attainment {_percent(goodput['slo_attainment'])}",
    )
    preemptions, hit_rate = summary["preemptions"], summary["prefix_cache_hit_rate"]
    table.add_row("Preemptions", NOT_MEASURED if preemptions is None else f"{preemptions:,}")
    table.add_row("Prefix cache hits", NOT_MEASURED if hit_rate is None else _percent(hit_rate))
    return table


def _latencies(summary: dict[str, Any]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, title="Latency (ms)", title_justify="left")
    table.add_column("", style="bold cyan")
    for key in ("mean", "p50", "p90", "p99"):
        table.add_column(key, justify="right")
    for label, key in _LATENCY_ROWS:
        stats = summary[key]
        if stats is None:
            table.add_row(label, *[NOT_MEASURED] * 4)
        else:
            table.add_row(label, *(f"{stats[s]:,.2f}" for s in ("mean", "p50", "p90", "p99")))
    return table


def _group_table(title: str, groups: dict[str, Any]) -> Table:
    """Each class's or tenant's goodput, attainment, tokens served and tail latencies."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, title=title, title_justify="left")
    table.add_column("", style="bold cyan")
    for name in ("requests", "goodput req/s", "SLO met", "tokens served", "TTFT p50/p99 ms",
                 "TPOT p50/p99 ms"):
        table.add_column(name, justify="right")
    for name, group in sorted(groups.items()):
        goodput = group["goodput"]
        table.add_row(
            name,
            f"{group['completed']:,} / {group['requests']:,}",
            f"{goodput['requests_per_s']:,.2f}",
            _percent(goodput["slo_attainment"]),
            f"{group['input_tokens'] + group['output_tokens']:,}",
            *(f"{group[key]['p50']:,.1f} / {group[key]['p99']:,.1f}" for key in ("ttft_ms", "tpot_ms")),
        )
    return table


def _disaggregation(pd: dict[str, Any]) -> Table:
    """Where a disaggregated cluster's TTFT went: the remote prefill, the KV transfer, the first decode step."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, title_justify="left",
                  title=f"Disaggregation: {pd['remote']:,} prefilled remotely, {pd['local']:,} locally, "
                        f"{pd['kv_bytes'] / 1e9:,.2f} GB of KV moved")
    table.add_column("ms", style="bold cyan")
    for stat in ("mean", "p50", "p99"):
        table.add_column(stat, justify="right")
    for label, key in (("prefill (with its queue)", "prefill_ms"), ("KV transfer", "transfer_ms"),
                       ("first decode step", "first_decode_step_ms")):
        stats = pd.get(key)
        table.add_row(label, *(NOT_MEASURED if stats is None else f"{stats[s]:,.1f}" for s in ("mean", "p50", "p99")))
    return table


def _migration(m: dict[str, Any]) -> Table:
    """How many requests moved between replicas, what they carried, and how long each stopped."""
    table = Table(box=box.ROUNDED, show_header=False, title=f"Migration ({m['policy']})", title_justify="left")
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    table.add_row("Migrations", f"{m['migrations']:,} ({m['abandoned']:,} abandoned: the request ended first)")
    table.add_row("KV moved", f"{m['kv_bytes'] / 1e9:,.2f} GB")
    downtime = m.get("downtime_ms")
    table.add_row("Downtime", NOT_MEASURED if downtime is None else
                  f"mean {downtime['mean']:,.2f} ms   p50 {downtime['p50']:,.2f}   p99 {downtime['p99']:,.2f}")
    return table


def _replica_table(replicas: list[dict[str, Any]]) -> Table:
    rows = [_flatten(stats) for stats in replicas]
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, title="Replicas", title_justify="left")
    table.add_column("#", style="bold cyan", justify="right")
    for name in columns:
        table.add_column(name, justify="right")
    for index, row in enumerate(rows):
        table.add_row(str(index), *(_cell(row.get(name)) for name in columns))
    return table


def _flatten(stats: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested stats become dotted column names (e.g. kv.usage)."""
    flat: dict[str, Any] = {}
    for key, value in stats.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3f}"
    return str(value)


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.1f} %"
