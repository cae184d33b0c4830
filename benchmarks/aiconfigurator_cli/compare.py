"""Merge aiconfigurator's answer (its printed report and --save-dir CSVs) with Kairos's (kairos.json)
into OUT/compare.json and OUT/compare.md.

Usage: python benchmarks/aiconfigurator_cli/compare.py OUT
Reads OUT/aiconfigurator.txt, OUT/aiconfigurator_meta.json, OUT/aiconfigurator_results/ and OUT/kairos.json.
A field aiconfigurator did not print is null, with a note; nothing is filled in.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path
from typing import Any

OSL = 512


def number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def cell(text: str) -> Any:
    """A table cell: a number when it is one (`112 (=28x4)` -> 112 and the detail kept), else the text."""
    text = text.strip()
    m = re.fullmatch(r"([\d.,]+)\s*(\(.*\))?", text)
    if m and number(m.group(1)) is not None:
        value = number(m.group(1))
        return int(value) if value is not None and value.is_integer() and "." not in m.group(1) else value
    return text


def tables(text: str) -> dict[str, list[dict[str, Any]]]:
    """The `agg/disagg Top Configurations` tables of the report, as rows keyed by column name."""
    found: dict[str, list[dict[str, Any]]] = {}
    for m in re.finditer(r"^(\w+) Top Configurations.*?\n((?:[+|].*\n)+)", text, re.M):
        lines = [line for line in m.group(2).splitlines() if line.startswith("|")]
        header = [h.strip() for h in lines[0].strip("|").split("|")]
        found[m.group(1)] = [dict(zip(header, (cell(c) for c in line.strip("|").split("|")))) for line in lines[1:]]
    return found


def best_block(text: str) -> dict[str, float | None]:
    fields = {"tokens_per_s": r"Best Throughput:\s*([\d.,]+)", "tokens_per_s_per_gpu": r"Per-GPU Throughput:\s*([\d.,]+)",
              "tokens_per_s_per_user": r"Per-User Throughput:\s*([\d.,]+)", "request_rate_rps": r"Request Rate:\s*([\d.,]+)",
              "ttft_ms": r"TTFT:\s*([\d.,]+)ms", "tpot_ms": r"TPOT:\s*([\d.,]+)ms",
              "request_latency_ms": r"Request Latency:\s*([\d.,]+)ms"}
    block = text.split("Overall Best Configuration:", 1)[-1]
    out = {}
    for key, pattern in fields.items():
        m = re.search(pattern, block)
        out[key] = number(m.group(1)) if m else None
    return out


def read_csv(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with path.open() as f:
        return [{k: (number(v) if number(v) is not None else v) for k, v in row.items()} for row in csv.DictReader(f)]


def pareto_points(rows: list[dict[str, Any]], mode: str) -> list[dict[str, Any]]:
    keys = ["tokens/s/gpu_cluster", "tokens/s/gpu", "tokens/s/user", "concurrency", "request_rate", "ttft", "tpot",
            "num_total_gpus"] + (["parallel", "bs"] if mode == "agg" else
                                 ["(p)workers", "(p)parallel", "(p)bs", "(d)workers", "(d)parallel", "(d)bs"])
    return [{k: r.get(k) for k in keys} for r in rows]


def aiconfigurator(out: Path, notes: list[str]) -> dict[str, Any]:
    text = (out / "aiconfigurator.txt").read_text()
    meta = json.loads((out / "aiconfigurator_meta.json").read_text())
    chosen = re.search(r"Best Experiment Chosen:\s*(\w+) at ([\d.,]+) tokens/s/gpu(?: \((\w+) ([\d.]+)x better than (\w+)\))?", text)
    if chosen is None:
        notes.append("aiconfigurator's report has no 'Best Experiment Chosen' line: its run failed or changed format")
    mode = chosen.group(1) if chosen else None
    top = tables(text)
    results = sorted((out / "aiconfigurator_results").glob("*/*/"), key=lambda p: p.stat().st_mtime)
    save = results[-1] if results else None
    if save is None:
        notes.append("aiconfigurator wrote no --save-dir results: Pareto points missing")
    best = best_block(text)
    for key, value in best.items():
        if value is None:
            notes.append(f"aiconfigurator: {key} not printed (null)")
    ratio = None
    if chosen and chosen.group(4):
        ratio = float(chosen.group(4)) if chosen.group(3) == "disagg" else 1 / float(chosen.group(4))
    else:
        notes.append("aiconfigurator printed no disagg-vs-agg ratio (one mode had no result)")
    config = top.get(mode, [None])[0] if mode else None
    return {
        "command": meta["command"], "version": meta.get("version"), "wall_s": meta["wall_s"], "rc": meta["rc"],
        "save_dir_run": {"command": meta.get("save_command"), "wall_s": meta.get("save_wall_s")},
        "mode": mode, "config": config, **best, "disagg_over_agg": ratio,
        "top": top,
        "pareto": {m: pareto_points(read_csv(save / m / "pareto.csv"), m) for m in ("agg", "disagg")} if save else None,
        "results_dir": str(save.relative_to(out)) if save else None,
    }


def fmt(v: Any, digits: int = 1) -> str:
    return "-" if v is None else f"{v:,.{digits}f}" if isinstance(v, float) else str(v)


def layout(c: dict[str, Any]) -> str:
    if c.get("mode") == "disagg":
        p, d = c["prefill"], c["decode"]
        return f"{p['replicas']} prefill TP{p['tp']} + {d['replicas']} decode TP{d['tp']}"
    return f"{c['replicas']} x TP{c['tp']}"


def markdown(result: dict[str, Any]) -> str:
    a, k = result["aiconfigurator"], result["kairos"]
    lines = ["# Qwen3-32B on 32 H200s, ISL 3000 / OSL 512, TTFT 1000 ms, TPOT 10 ms", "",
             f"aiconfigurator: `{a['command']}` ({a['wall_s']:.1f} s)", "",
             "| planner | layout | GPUs | req/s | tokens/s/GPU | tokens/s/user | TTFT ms | TPOT ms |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for mode, rows in (a.get("top") or {}).items():
        for r in rows:
            if mode == "agg":
                desc = f"agg {r.get('replicas')} x {r.get('parallel')} bs {r.get('bs')}"
            else:
                desc = (f"disagg {r.get('replicas')} x ({r.get('(p)workers')} prefill {r.get('(p)parallel')} bs {r.get('(p)bs')}"
                        f" + {r.get('(d)workers')} decode {r.get('(d)parallel')} bs {r.get('(d)bs')})")
            used = r.get("total_gpus (used)")
            lines.append(f"| aiconfigurator | {desc} | {used} | {fmt(r.get('req/s'), 2)} | {fmt(r.get('tokens/s/gpu'))}"
                         f" | {fmt(r.get('tokens/s/user'))} | {fmt(r.get('TTFT'))} | - |")
    for c in k["candidates"]:
        lines.append(f"| Kairos --capacity p{k['percentile']:g} | {layout(c)} | {c['gpus']} | {fmt(c.get('capacity_rps'), 2)}"
                     f" | {fmt(c.get('tokens_per_s_per_gpu'))} | {fmt(c.get('tokens_per_s_per_user'))}"
                     f" | {fmt(c.get('ttft_ms'))} | {fmt(c.get('tpot_ms'), 2)} |")
    search = k.get("search")
    if search and search.get("trials"):
        pareto = [t for t in search["trials"] if t.get("pareto")]
        for t in pareto:
            lines.append(f"| Kairos --search (Pareto) | {describe_overrides(t['overrides'])} | {t['gpus']}"
                         f" | {fmt(t['capacity_rps'], 2)} | {fmt(t['tokens_per_gpu'])} | {fmt(t['tokens_per_user'])}"
                         f" | - | {fmt(t.get('tpot_mean_ms'), 2)} (mean) |")
    lines += ["", "Wall time: aiconfigurator " + fmt(a["wall_s"]) + " s; Kairos --capacity runs "
              + fmt(sum(c["wall_s"] for c in k["candidates"])) + " s"
              + (f", --search {fmt(search['wall_s'])} s" if search else "") + ".", "", "Notes:", ""]
    lines += [f"- {n}" for n in result["notes"]]
    return "\n".join(lines) + "\n"


def describe_overrides(o: dict[str, Any]) -> str:
    pools = o.get("cluster.pools")
    if pools:
        p, d = pools["prefill"], pools["decode"]
        return f"{p['replicas']} prefill TP{p['tp']} + {d['replicas']} decode TP{d['tp']}"
    return f"{o.get('cluster.replicas')} x TP{o.get('hardware.tp')}"


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: compare.py OUT")
    out = Path(sys.argv[1])
    for need in ("aiconfigurator.txt", "aiconfigurator_meta.json", "kairos.json"):
        if not (out / need).exists():
            sys.exit(f"compare.py: {out / need} is missing: run benchmarks/plan_vs_aiconfigurator.sh {out}")
    notes: list[str] = []
    aic = aiconfigurator(out, notes)
    kairos = json.loads((out / "kairos.json").read_text())
    notes += kairos.pop("notes", [])
    best = kairos.get("best")
    if best and aic.get("tokens_per_s_per_gpu"):
        notes.append(f"best tokens/s/GPU: aiconfigurator {aic['mode']} {aic['tokens_per_s_per_gpu']:.1f}, Kairos --capacity"
                     f" {layout(best)} {best['tokens_per_s_per_gpu']:.1f}"
                     f" ({best['tokens_per_s_per_gpu'] / aic['tokens_per_s_per_gpu']:.2f}x)")
    coloc = [c for c in kairos["candidates"] if c.get("mode") == "colocated" and c.get("tokens_per_s_per_gpu")]
    disagg = [c for c in kairos["candidates"] if c.get("mode") == "disagg" and c.get("tokens_per_s_per_gpu")]
    if coloc and disagg:
        ratio = max(c["tokens_per_s_per_gpu"] for c in disagg) / max(c["tokens_per_s_per_gpu"] for c in coloc)
        kairos["disagg_over_colocated"] = round(ratio, 3)
        notes.append(f"disagg over colocated (best of each): aiconfigurator {fmt(aic['disagg_over_agg'], 2)}x,"
                     f" Kairos {ratio:.2f}x")
    result = {"question": {"model": "Qwen/Qwen3-32B", "gpu": "h200_sxm", "total_gpus": 32, "isl": 3000, "osl": OSL,
                           "ttft_ms": 1000, "tpot_ms": 10, "backend": "vllm"},
              "aiconfigurator": aic, "kairos": kairos, "notes": notes}
    (out / "compare.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "compare.md").write_text(markdown(result))
    print(f"wrote {out / 'compare.json'} and {out / 'compare.md'}")


if __name__ == "__main__":
    main()
