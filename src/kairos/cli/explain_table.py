"""The `--explain` table: why each sampled step takes the time it does."""

from __future__ import annotations

from rich.table import Table


def explain_table(rows: list[dict]) -> Table:
    """One row per sampled step: its batch, its predicted time and that time by operator (ms)."""
    operators: list[str] = []
    for row in rows:
        operators.extend(name for name in row["operators_ms"] if name not in operators)
    table = Table(title="Sampled steps: predicted time by operator (ms)")
    # Spaced names let rich wrap the long operator headers instead of cutting them.
    for col in ("t (s)", "rep", "prefill tok", "decodes", "KV tok", "total",
                *(name.replace("_", " ") for name in operators)):
        table.add_column(col, justify="right")
    for row in rows:
        ops = row["operators_ms"]
        table.add_row(
            f"{row['time_s']:.2f}", str(row["replica"]), f"{row['prefill_tokens']:,}",
            str(row["decodes"]), f"{row['prefill_context_tokens'] + row['decode_kv_tokens']:,}",
            f"{row['total_ms']:.2f}", *(f"{ops.get(name, 0.0):.2f}" for name in operators),
        )
    return table
