"""Kernel step-time model: each operator's latency looked up in a measured kernel database.

A step is composed like the roofline's: per layer the QKV and output projection
GEMMs, the MLP GEMMs (or router, shared experts and fused-MoE kernel), attention and
the tensor-parallel all-reduces, with m = the step's token count and n/k split over
`tp`; then the lm_head GEMM over the sampled tokens. Context attention is looked up
per prefill chunk and generation attention for the whole decode batch.

What the database includes: the GPU time of each kernel, measured alone by
aiconfigurator's collector in the serving framework's own code path (for the
all-reduce, its CUDA-graph-captured variant). Not included, by design: gaps between
kernels, host work (scheduling, input preparation, sampling, detokenisation) and
CUDA-graph padding of decode batches, which belong to the engine overhead model.
Norms, rotary embedding and SiLU-and-mul are not in the database; they use
aiconfigurator's own memory-op rule from the system spec (launch latency + bytes
over 80% of datasheet bandwidth).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from functools import cache

import numpy as np

from kairos.engine.batch_shape import BatchShape
from kairos.errors import KairosError
from kairos.hardware import GPU
from kairos.models import ModelArch
from kairos.perf.base import ComposedStepModel
from kairos.perf.kernels import ops
from kairos.perf.kernels.curves import Curve, fill_gaps, interpolate_loglog
from kairos.perf.kernels.database import AttentionGrid, KernelDatabase, KernelTables, Phase
from kairos.perf.roofline import RooflineModel

# Activations between kernels stay bf16 even for FP8 checkpoints.
ACT_BYTES = 2


def gemm_dtype(model: ModelArch) -> str:
    """The database's GEMM table for the model's weights: 16-bit or fp8; 4-bit weights have
    kernels (and scopes) this composition does not model."""
    if model.weights_dtype in ("bf16", "fp16"):
        return "bfloat16"
    if model.weights_dtype in ("fp8", "fp8_block"):
        return "fp8"
    raise KairosError(f"--perf kernels composes 16-bit and fp8 GEMMs only, not {model.weights_dtype} "
                      f"weights: use --perf aiconfigurator")


@cache
def open_database(gpu: GPU, framework: str = "vllm", version: str | None = None) -> KernelDatabase:
    """One shared reader per (GPU, framework, version): tables are parsed once per process."""
    return KernelDatabase(gpu, framework, version)


@dataclass(frozen=True, slots=True)
class _DecodeRow:
    """Generation attention (all layers) for one decode batch size at each KV knot.

    `slope[a]` is the gradient to the right of knot a (the last segment's beyond the
    last knot), so a lookup anchors on a knot and grid points come back exactly.
    """

    value: list[float]
    slope: list[float]
    value_np: np.ndarray
    slope_np: np.ndarray
    measured_kv: float  # beyond this mean KV length the row is extrapolated


class KernelModel(ComposedStepModel):
    """Step time of `model` on `tp` GPUs of kind `gpu` from measured kernel latencies.

    Needs the optional extra (`pip install 'kairos[kernels]'`). `framework` and
    `version` pick the measurements (default: vLLM, newest per op family). `tables`
    replaces the database, e.g. with one that holds points out for leave-one-out tests.

    Interpolation: GEMMs piecewise-linear in m and bilinear in (n, k); generation
    attention bilinear in (batch, KV length); context attention log-log in the prompt
    length; collectives linear in message size. Outside the grid see `curves`; every
    extrapolation or roofline fallback logs one warning per operator.

    Decode attention is looked up at the batch's mean KV length (decode_kv_sum /
    num_decodes), since the step shape carries only the sum: a batch mixing short and
    long contexts is costed like a uniform one, which is exact where the kernel is
    bandwidth bound (cost linear in total KV) and close elsewhere.
    """

    name = "kernels"

    def __init__(
        self, model: ModelArch, gpu: GPU, tp: int = 1, framework: str = "vllm", version: str | None = None,
        *, tables: KernelTables | None = None,
    ) -> None:
        model.check_tp(tp)
        self.model = model
        self.gpu = gpu
        self.tp = tp
        self.tables = tables if tables is not None else open_database(gpu, framework, version)
        self._system = self.tables.system
        self._roofline = RooflineModel(model, gpu, tp)
        token_ops, sampled_ops = self._operator_curves()
        self._token_ops, self._sampled_ops = token_ops, sampled_ops
        self._token_limit, self._token_table, self._token_total = _tabulate(token_ops)
        self._sampled_limit, self._sampled_table, self._sampled_total = _tabulate(sampled_ops)
        self._build_decode_attention()
        self._build_prefill_attention()

    # ---- construction ----------------------------------------------------------------

    def _operator_curves(self) -> tuple[dict[str, list[Curve]], dict[str, list[Curve]]]:
        model, tp, system = self.model, self.tp, self._system
        layers, h = model.num_layers, model.hidden_size
        q = model.num_heads // tp * model.head_dim
        kv = model.kv_heads_per_gpu(tp) * model.head_dim
        dtype = gemm_dtype(model)
        grid = self.tables.gemm(dtype)
        memory = self.tables.memory()

        def gemms(key: str, shapes: list[tuple[str, int, int]], count: int = layers) -> list[Curve]:
            """The GEMMs (label, n, k) making up operator `key`, or its roofline if none are measured."""
            if grid is not None:
                return [ops.gemm_curve(grid, n, k, count, label, system) for label, n, k in shapes]
            # The roofline's 'mlp' also counts SiLU-and-mul, so 'elementwise' overlaps it a little.
            ops.warn_once(f"{system}:gemm:{dtype}", (
                f"kernels: no {dtype} GEMMs measured on {system}; GEMMs use the roofline"))
            if key == "lm_head":
                return [ops.roofline_sampled_curve(self._roofline, key, key)]
            return [ops.roofline_token_curve(self._roofline, key, key)]

        token: dict[str, list[Curve]] = {
            "embedding": [ops.memory_curve(memory, 1, 2 * h * ACT_BYTES, "embedding")],
            "qkv_proj": gemms("qkv_proj", [("qkv_proj", q + 2 * kv, h)]),
            "o_proj": gemms("o_proj", [("o_proj", h, q)]),
        }
        # Per layer: rotary reads and writes q and k; each SiLU-and-mul reads 2w, writes w.
        elementwise_bytes = 2 * (q + kv) * ACT_BYTES
        elementwise_kernels = 1
        if model.is_moe:
            token["moe_router"] = gemms("moe_router", [("moe_router", model.num_experts, h)])
            if model.num_shared_experts:
                width = model.num_shared_experts * model.shared_expert_intermediate_size // tp
                token["shared_experts"] = gemms(
                    "shared_experts", [("shared_gate_up", 2 * width, h), ("shared_down", h, width)])
                elementwise_bytes += 3 * width * ACT_BYTES
                elementwise_kernels += 1
        else:
            width = model.intermediate_size // tp
            token["mlp"] = gemms("mlp", [("gate_up", 2 * width, h), ("down", h, width)])
            elementwise_bytes += 3 * width * ACT_BYTES
            elementwise_kernels += 1
        # Two fused residual-add + RMSNorm kernels per layer, each reading and writing
        # the hidden state and the residual, plus the final norm.
        token["norms"] = [ops.memory_curve(memory, 2 * layers + 1, 4 * h * ACT_BYTES, "norms")]
        token["elementwise"] = [ops.memory_curve(
            memory, elementwise_kernels * layers, elementwise_bytes / elementwise_kernels, "elementwise")]
        if model.is_moe:
            token["moe_experts"] = [self._moe_curve(dtype)]
        sampled = {"lm_head": gemms("lm_head", [("lm_head", -(-model.vocab_size // tp), h)], count=1)}
        token["tp_comm"] = [self._all_reduce_curve(2 * layers + 1)] if tp > 1 else []
        sampled["tp_comm"] = [self._gather_curve()] if tp > 1 else []
        return token, sampled

    def _moe_curve(self, dtype: str) -> Curve:
        m = self.model
        found = self.tables.moe(dtype, m.hidden_size, m.moe_intermediate_size, m.experts_per_token,
                                m.num_experts, self.tp)
        if found is None:
            ops.warn_once(f"{self._system}:moe:{m.name}:{self.tp}", (
                f"kernels: no fused-MoE measurement for {m.name} at tp={self.tp} on {self._system}; "
                "moe_experts uses the roofline"))
            return ops.roofline_token_curve(self._roofline, "moe_experts", "moe_experts")
        tokens, seconds = found
        return Curve(tokens, seconds * m.num_layers, "proportional", "moe_experts tokens")

    def _all_reduce_curve(self, calls: int) -> Curve:
        # Two all-reduces per layer (after attention and after the MLP) plus one after the
        # vocab-parallel embedding, each of tokens x hidden elements.
        found = self.tables.all_reduce(self.tp)
        if found is None:
            ops.warn_once(f"{self._system}:all_reduce:{self.tp}", (
                f"kernels: no all-reduce measured for {self.tp} GPUs on {self._system}; "
                "tp_comm uses the roofline"))
            return ops.roofline_token_curve(self._roofline, "tp_comm", "all_reduce")
        h = self.model.hidden_size
        return Curve(found.elements / h, found.seconds * calls, "proportional", "all_reduce tokens")

    def _gather_curve(self) -> Curve:
        # vLLM V1 all-gathers the vocab-sharded logits of the sampled tokens.
        found = self.tables.all_gather(self.tp)
        if found is None:
            ops.warn_once(f"{self._system}:all_gather:{self.tp}", (
                f"kernels: no all-gather measured for {self.tp} GPUs on {self._system}; "
                "the logits gather uses the roofline"))
            return ops.roofline_sampled_curve(self._roofline, "tp_comm", "logits_gather")
        vocab = self.model.vocab_size
        return Curve(found.elements / vocab, found.seconds, "proportional", "logits all_gather")

    def _attention(self, phase: Phase) -> tuple[AttentionGrid, int]:
        m, tp = self.model, self.tp
        kv_dtype = "fp8" if m.kv_cache_dtype == "fp8" else "bfloat16"
        found = ops.attention_grid(
            self.tables, phase, m.num_heads // tp, m.kv_heads_per_gpu(tp), m.head_dim, kv_dtype)
        if found is not None:
            return found
        ops.warn_once(f"{self._system}:{phase}:{m.name}:{tp}", (
            f"kernels: no {phase} attention measured for {m.num_heads // tp}/{m.kv_heads_per_gpu(tp)} heads "
            f"of size {m.head_dim} on {self._system}; it uses the roofline"))
        return ops.roofline_attention_grid(self._roofline, phase, m.num_layers), 1

    def _build_decode_attention(self) -> None:
        grid, scale = self._attention("generation")
        rows = ~np.isnan(grid.seconds).all(axis=1)  # batch sizes with at least one measurement
        seconds = grid.seconds[rows]
        filled = np.array([fill_gaps(grid.seq, row, "secant") for row in seconds])
        measured = [float(grid.seq[~np.isnan(row)].max()) for row in seconds]
        self._kv_knots = grid.seq
        self._kv_knot_list = [float(x) for x in grid.seq]
        self._decode_batch = grid.batch[rows]
        self._decode_filled = filled * self.model.num_layers
        self._decode_measured = measured
        self._decode_scale = scale
        self._decode_rows: dict[int, _DecodeRow] = {}

    def _build_prefill_attention(self) -> None:
        grid, scale = self._attention("context")
        row = grid.seconds[list(grid.batch).index(scale)] * self.model.num_layers
        known = ~np.isnan(row)
        x, y = grid.seq[known], row[known]
        limit = int(x[-1])
        table = np.zeros(limit + 1)
        table[1:] = interpolate_loglog(np.arange(1, limit + 1, dtype=np.float64), x, y)
        table[x.astype(int)] = y  # measured points exactly, not through exp(log(.))
        self._context_knots = (x, y)
        self._context_limit = limit
        self._context_table = table.tolist()

    # ---- explanation -------------------------------------------------------------------

    def breakdown(self, shape: BatchShape) -> dict[str, float]:
        """Seconds per operator for one step (all layers); the values sum to step_time.

        Keys follow the roofline's, without its fixed 'overhead' (not part of this model)
        and with 'elementwise' (rotary embedding and SiLU-and-mul kernels).
        """
        tokens = self._per_op(
            self._token_ops, self._token_table, self._token_limit, shape.num_tokens, "tokens")
        sampled = self._per_op(
            self._sampled_ops, self._sampled_table, self._sampled_limit, shape.num_sampled, "sampled tokens")
        times = {name: t for name, t in tokens.items() if name not in ("moe_experts", "tp_comm")}
        times.update(self._attention_breakdown(shape))
        if "moe_experts" in tokens:
            times["moe_experts"] = tokens["moe_experts"]
        times["lm_head"] = sampled["lm_head"]
        times["tp_comm"] = tokens["tp_comm"] + sampled["tp_comm"]
        return times

    # ---- terms -------------------------------------------------------------------------

    def _base_time(self, tokens: int, sampled: int) -> float:
        """Everything but attention: it depends only on the token and sampled counts."""
        return self._tokens_time(tokens) + self._sampled_time(sampled)

    def _tokens_time(self, tokens: int) -> float:
        if tokens <= self._token_limit:
            return self._token_total[tokens]
        return sum(self._beyond(self._token_ops, tokens, "tokens").values())

    def _sampled_time(self, sampled: int) -> float:
        if sampled <= self._sampled_limit:
            return self._sampled_total[sampled]
        return sum(self._beyond(self._sampled_ops, sampled, "sampled tokens").values())

    def _per_op(
        self, curves: dict[str, list[Curve]], table: dict[str, np.ndarray], limit: int, size: int, unit: str,
    ) -> dict[str, float]:
        if size <= limit:
            return {name: float(values[size]) for name, values in table.items()}
        return self._beyond(curves, size, unit)

    def _beyond(self, curves: dict[str, list[Curve]], size: int, unit: str) -> dict[str, float]:
        """Per-operator seconds past the tabulated range, warning for each curve it extrapolates."""
        out = {}
        for name, op_curves in curves.items():
            t = 0.0
            for curve in op_curves:
                if size > curve.last:
                    ops.warn_once(f"{self._system}:{curve.label}:beyond", (
                        f"kernels: {curve.label} at {size} {unit} is beyond the measured {curve.last:g} "
                        f"on {self._system}; extrapolated ({curve.beyond})"))
                t += float(curve(size))
            out[name] = t
        return out

    def _prefill_attention(self, new: int, ctx: int) -> float:
        """A chunk of `new` query tokens over `ctx` cached tokens plus itself (causal)."""
        total = ctx + new
        t = self._context(total)
        if ctx:
            # The chunk computes only its own rows of the causal square of the whole
            # prompt: scale by that share of (query, key) pairs (aiconfigurator's prefix
            # rule), but never below a prefix-free chunk of the same length.
            t = max(t * ((total * total - ctx * ctx) / (total * total)), self._context(new))
        return t

    def _context(self, tokens: int) -> float:
        if tokens <= self._context_limit:
            return self._context_table[tokens]
        ops.warn_once(f"{self._system}:context:beyond", (
            f"kernels: context attention over {tokens} tokens is beyond the measured {self._context_limit} "
            f"on {self._system}; extrapolated along the last segment's power law"))
        x, y = self._context_knots
        return float(interpolate_loglog(float(tokens), x, y))

    def _decode_row(self, num_decodes: int) -> _DecodeRow:
        row = self._decode_rows.get(num_decodes)
        if row is None:
            row = self._decode_rows[num_decodes] = self._make_decode_row(num_decodes)
        return row

    def _make_decode_row(self, num_decodes: int) -> _DecodeRow:
        batch, filled, measured = self._decode_batch, self._decode_filled, self._decode_measured
        b = float(num_decodes * self._decode_scale)
        if b > batch[-1]:
            ops.warn_once(f"{self._system}:generation:batch", (
                f"kernels: decode batch {num_decodes} is beyond the measured batch {batch[-1]:g} on "
                f"{self._system}; extrapolated along the last batch segment"))
            if len(batch) > 1:
                value = filled[-1] + (filled[-1] - filled[-2]) / (batch[-1] - batch[-2]) * (b - batch[-1])
            else:
                value = filled[-1] * (b / batch[-1])
            limit = 0.0
        else:
            i = max(int(np.searchsorted(batch, b, side="right")) - 1, 0)
            if batch[i] >= b:  # on a measured batch size (or below the smallest)
                value, limit = filled[i], measured[i]
            else:
                w = (b - batch[i]) / (batch[i + 1] - batch[i])
                value = filled[i] * (1.0 - w) + filled[i + 1] * w
                limit = min(measured[i], measured[i + 1])
        x = self._kv_knots
        slope = np.empty_like(value)
        slope[:-1] = np.diff(value) / np.diff(x)
        slope[-1] = slope[-2] if len(x) > 1 else 0.0
        return _DecodeRow(value.tolist(), slope.tolist(), value, slope, limit)

    def _decode_attention(self, num_decodes: int, kv_sum: int) -> float:
        row = self._decode_row(num_decodes)
        mean = kv_sum / num_decodes
        if mean > row.measured_kv:
            self._warn_decode_kv(num_decodes, mean)
        x = self._kv_knot_list
        mean = max(mean, x[0])
        a = bisect_right(x, mean) - 1
        return row.value[a] + row.slope[a] * (mean - x[a])

    def _decode_attention_many(self, num_decodes: int, kv_sums: np.ndarray) -> np.ndarray:
        """_decode_attention for many KV sums: the same float operations, elementwise."""
        row = self._decode_row(num_decodes)
        means = kv_sums / num_decodes
        if len(means) and means[-1] > row.measured_kv:
            self._warn_decode_kv(num_decodes, float(means[-1]))
        x = self._kv_knots
        means = np.maximum(means, x[0])
        a = np.searchsorted(x, means, side="right") - 1
        return row.value_np[a] + row.slope_np[a] * (means - x[a])

    def _warn_decode_kv(self, num_decodes: int, mean: float) -> None:
        limit = self._decode_row(num_decodes).measured_kv
        if limit > 0:  # 0: the batch itself is beyond the grid, which warned already
            ops.warn_once(f"{self._system}:generation:kv", (
                f"kernels: decode attention for batch {num_decodes} at mean KV length {mean:.0f} is "
                f"beyond the measured {limit:g} on {self._system}; extrapolated along the last KV segment"))


def _tabulate(curves: dict[str, list[Curve]]) -> tuple[int, dict[str, np.ndarray], list[float]]:
    """Dense per-size tables (index = token count) up to the first curve's last knot.

    Within that range no curve extrapolates, so lookups there never need to warn.
    """
    lasts = [curve.last for op in curves.values() for curve in op]
    limit = int(min(lasts)) if lasts else 1 << 20
    sizes = np.arange(limit + 1, dtype=np.float64)
    table = {}
    for name, op in curves.items():
        values = np.zeros(limit + 1)
        for curve in op:
            values = values + curve(sizes)
        values[0] = 0.0  # no tokens, no kernels
        table[name] = values
    total = np.zeros(limit + 1)
    for values in table.values():
        total = total + values
    return limit, table, total.tolist()
