"""`kairos models` and `kairos gpus`: the bundled catalogs as tables."""

from __future__ import annotations

from rich.table import Table

from kairos.hardware import list_gpus, load_gpu
from kairos.models import list_models, load_model

GIB = 1024**3


def models_table() -> Table:
    table = Table(title="Models (use the name, a Hugging Face id, or a path to config.json)")
    for col in ("name", "hugging face id", "params", "active", "weights", "layers", "heads (kv)",
                "KV / token", "max len"):
        table.add_column(col, justify="left" if col in ("name", "hugging face id") else "right")
    for name in list_models():
        m = load_model(name)
        table.add_row(
            name, m.hf_id, f"{m.num_params / 1e9:.1f} B", f"{m.num_active_params / 1e9:.1f} B", m.weights_dtype,
            str(m.num_layers), f"{m.num_heads} ({'MLA' if m.is_mla else m.num_kv_heads})",
            f"{m.kv_bytes_per_token / 1024:.0f} KiB", f"{m.max_position_embeddings:,}",
        )
    return table


def gpus_table() -> Table:
    table = Table(title="GPUs (dense peak figures; sources in hardware/gpus.json)")
    for col in ("name", "gpu", "bf16 TFLOP/s", "fp8 TFLOP/s", "memory", "bandwidth", "interconnect"):
        table.add_column(col, justify="left" if col in ("name", "gpu") else "right")
    for name in list_gpus():
        g = load_gpu(name)
        fp8 = f"{g.fp8_flops / 1e12:,.0f}" if g.fp8_flops else "-"
        table.add_row(
            name, g.display_name, f"{g.bf16_flops / 1e12:,.0f}", fp8, f"{g.memory_bytes / GIB:.0f} GiB",
            f"{g.memory_bw / 1e12:.2f} TB/s", f"{g.interconnect_bw / 1e9:.0f} GB/s {g.interconnect}",
        )
    return table
