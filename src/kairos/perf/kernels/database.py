"""Reader for the measured kernel database shipped in aiconfigurator-core (Apache-2.0).

Layout inside the package: `aiconfigurator_core/systems/<system>.yaml` (GPU specs and
an empirical memory-op model) and
`systems/data/<system>/<family>/<framework>/<version>/<op>_perf.parquet`, one row per
measured kernel call with its latency in milliseconds. The families used here:

- `gemm/gemm_perf.parquet`: m, n, k, gemm_dtype, kernel_source;
- `attention/{context,generation}_attention_perf.parquet`: batch_size, isl (prompt
  length), step (decode steps after the prompt, so a decode token attends to
  isl + step tokens), num_heads and num_key_value_heads per GPU, head_dim,
  kv_cache_dtype, window_size, kernel_source;
- `comm/<framework>/custom_allreduce_perf.parquet` and `comm/nccl/nccl_perf.parquet`:
  num_gpus, message_size (elements);
- `moe/moe_perf.parquet`: num_tokens, hidden_size, inter_size (whole model, split by
  moe_tp_size), topk, num_experts, moe_tp_size, moe_ep_size, distribution.

The package's own Python/Rust API (`AicEngine`) predicts whole engine steps from a
JSON engine spec; the raw tables are read directly instead (pyarrow, imported lazily)
so that Kairos composes steps from its own batch shapes and interpolation rules.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
import yaml

from kairos.errors import KairosError
from kairos.hardware import GPU, load_gpu

if TYPE_CHECKING:
    import pandas as pd
    from packaging.version import Version

EXTRA_MESSAGE = "the kernels step-time model needs the optional extra: pip install 'kairos[kernels]'"

# Kairos catalog name -> database system. The database measured the RTX PRO 6000
# Blackwell *Server* Edition; the catalog's Workstation Edition is the same GB202 part
# with the same memory and clocks, so its kernels run at the same speed.
SYSTEMS = {
    "a100-80gb": "a100_sxm",
    "b200": "b200_sxm",
    "b300": "b300_sxm",
    "gb200": "gb200",
    "h100": "h100_sxm",
    "h200": "h200_sxm",
    "l40s": "l40s",
    "rtx-pro-6000": "rtx_pro_6000_server",
}

Phase = Literal["context", "generation"]
MS = 1e-3  # the database stores milliseconds


@dataclass(frozen=True, slots=True)
class GemmGrid:
    """Seconds of one (m x k) @ (k x n) GEMM on a rectilinear grid; NaN where not measured."""

    m: np.ndarray
    n: np.ndarray
    k: np.ndarray
    seconds: np.ndarray  # shape (len(m), len(n), len(k))


@dataclass(frozen=True, slots=True)
class AttentionGrid:
    """Seconds of one attention call (one layer) over (batch, seq); NaN where not measured.

    `seq` is the prompt length for context attention and the KV length each decode
    token attends to for generation attention.
    """

    batch: np.ndarray
    seq: np.ndarray
    seconds: np.ndarray  # shape (len(batch), len(seq))


@dataclass(frozen=True, slots=True)
class MessageCurve:
    """Seconds of one collective call by message size in elements."""

    elements: np.ndarray
    seconds: np.ndarray


@dataclass(frozen=True, slots=True)
class MemoryModel:
    """aiconfigurator's rule for memory-bound kernels (norms, activations, rotary):
    launch latency plus bytes over an empirical fraction of the datasheet bandwidth."""

    bandwidth: float
    efficiency: float
    launch_s: float

    def seconds_per_byte(self) -> float:
        return 1.0 / (self.bandwidth * self.efficiency)


class KernelTables(Protocol):
    """What the kernel model reads; `KernelDatabase` and held-out views implement it."""

    system: str

    def gemm(self, dtype: str) -> GemmGrid | None: ...

    def attention(
        self, phase: Phase, heads: int, kv_heads: int, head_dim: int, kv_dtype: str
    ) -> AttentionGrid | None: ...

    def attention_configs(self, phase: Phase, head_dim: int, kv_dtype: str) -> set[tuple[int, int]]: ...

    def all_reduce(self, num_gpus: int) -> MessageCurve | None: ...

    def all_gather(self, num_gpus: int) -> MessageCurve | None: ...

    def moe(
        self, dtype: str, hidden: int, inter: int, topk: int, experts: int, tp: int
    ) -> tuple[np.ndarray, np.ndarray] | None: ...

    def memory(self) -> MemoryModel: ...


def systems_root() -> Path | None:
    """The installed database folder, found without importing the compiled package."""
    spec = importlib.util.find_spec("aiconfigurator_core")
    if spec is None or not spec.submodule_search_locations or importlib.util.find_spec("pyarrow") is None:
        return None
    root = Path(next(iter(spec.submodule_search_locations))) / "systems"
    return root if (root / "data").is_dir() else None


def covered_gpus(framework: str = "vllm") -> list[str]:
    """Kairos GPU names with GEMM and attention measurements for `framework`."""
    root = systems_root()
    if root is None:
        return []
    return sorted(
        name for name, system in SYSTEMS.items()
        if all((root / "data" / system / family / framework).is_dir() for family in ("gemm", "attention"))
    )


def kernel_coverage(gpu_name: str, framework: str = "vllm") -> bool:
    """Whether the kernel database covers this GPU (catalog name or alias; False when the
    extra is not installed). `--perf auto` uses it to pick kernels or the roofline."""
    return load_gpu(gpu_name).name in covered_gpus(framework)


def _version_key(version: str) -> Version | None:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(version)
    except InvalidVersion:
        return None


@cache
def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pandas()


def _pick_kernel(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of the kernel the collector swept most widely.

    The collector sweeps the framework's default backend over the full grid and
    alternatives over a subset; the most-measured source is the default (FA3 on
    Hopper, FlashInfer/TRT-LLM on B200, FA2 on Ampere, Ada and RTX PRO 6000).
    """
    counts = df["kernel_source"].value_counts()
    best = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[0][0]
    return df[df["kernel_source"] == best]


class KernelDatabase:
    """Measured kernel tables of one GPU and serving framework.

    Each table comes from the newest version of its op family at or before `version`
    (all versions when None), so families re-measured less often are backfilled from
    older versions, never from newer ones.
    """

    def __init__(self, gpu: GPU, framework: str = "vllm", version: str | None = None) -> None:
        root = systems_root()
        if root is None:
            raise KairosError(EXTRA_MESSAGE)
        system = SYSTEMS.get(gpu.name)
        covered = covered_gpus(framework) or covered_gpus()  # an unknown framework: name vLLM's
        if system is None or not (root / "data" / system).is_dir():
            raise KairosError(
                f"GPU '{gpu.name}' is not in the kernel database (covered: {', '.join(covered)}); "
                "use --perf roofline"
            )
        self.system = system
        self.framework = framework
        self._data = root / "data" / system
        self._spec_path = root / f"{system}.yaml"
        frameworks = sorted({p.name for p in self._data.glob("*/*") if p.is_dir()} - {"nccl"})
        if framework not in frameworks:
            raise KairosError(
                f"kernel database has no '{framework}' measurements for {gpu.name} "
                f"(frameworks: {', '.join(frameworks)})"
            )
        self._limit: Version | None = None
        if version is not None:
            self._limit = _version_key(version)
            if self._limit is None or not any(key <= self._limit for key, _ in self._versions()):
                raise KairosError(
                    f"kernel database has no {framework} version '{version}' for {gpu.name} "
                    f"(versions: {', '.join(self.available_versions())})"
                )
        self.versions: dict[str, str] = {}
        self._attention_tables: dict[tuple[Phase, str], pd.DataFrame | None] = {}
        self._gemm_grids: dict[str, GemmGrid | None] = {}
        when = f" at or before {version}" if version else ""
        for family, table in [("gemm", "gemm"), ("attention", "context_attention"),
                              ("attention", "generation_attention")]:
            if self._path(family, f"{table}_perf.parquet") is None:
                raise KairosError(
                    f"kernel database has no {framework} {table} measurements{when} for {gpu.name} "
                    f"(versions: {', '.join(self.available_versions())})"
                )

    def _versions(self) -> list[tuple[Version, str]]:
        names = {p.name for p in self._data.glob(f"*/{self.framework}/*") if p.is_dir()}
        return sorted((key, name) for name in names if (key := _version_key(name)) is not None)

    def available_versions(self) -> list[str]:
        """Versions of this framework measured on this GPU, in any op family, oldest first."""
        return [name for _, name in self._versions()]

    def _path(self, family: str, filename: str, framework: str | None = None) -> Path | None:
        """The table file of the newest admissible version that has it.

        `framework` overrides the serving framework for framework-independent tables
        (NCCL), whose versions are the library's, so the version limit does not apply.
        """
        folder = self._data / family / (framework or self.framework)
        limit = None if framework else self._limit
        candidates = []
        for path in folder.glob(f"*/{filename}"):
            key = _version_key(path.parent.name)
            if key is not None and (limit is None or key <= limit):
                candidates.append((key, path))
        if not candidates:
            return None
        path = max(candidates, key=lambda item: item[0])[1]
        self.versions[f"{family}/{filename.removesuffix('_perf.parquet')}"] = path.parent.name
        return path

    def _table(self, family: str, filename: str, framework: str | None = None) -> pd.DataFrame | None:
        path = self._path(family, filename, framework)
        return None if path is None else _read_parquet(path)

    # ---- tables ------------------------------------------------------------------------

    def gemm(self, dtype: str) -> GemmGrid | None:
        if dtype not in self._gemm_grids:
            self._gemm_grids[dtype] = self._gemm(dtype)
        return self._gemm_grids[dtype]

    def _gemm(self, dtype: str) -> GemmGrid | None:
        df = self._table("gemm", "gemm_perf.parquet")
        df = df[df["gemm_dtype"] == dtype] if df is not None else None
        if df is None or df.empty:
            return None
        latency = _pick_kernel(df).groupby(["m", "n", "k"])["latency"].median()
        m, n, k = (np.asarray(level, dtype=np.float64) for level in latency.index.levels)
        seconds = np.full((len(m), len(n), len(k)), np.nan)
        codes = latency.index.codes
        seconds[codes[0], codes[1], codes[2]] = latency.to_numpy() * MS
        return GemmGrid(m, n, k, seconds)

    def _attention_table(self, phase: Phase, kv_dtype: str) -> pd.DataFrame | None:
        key = (phase, kv_dtype)
        if key not in self._attention_tables:
            df = self._table("attention", f"{phase}_attention_perf.parquet")
            assert df is not None  # checked in __init__
            keep = (df["kv_cache_dtype"] == kv_dtype) & (df["beam_width"] == 1)
            if "window_size" in df:  # sliding-window rows; Kairos models full attention
                keep &= df["window_size"] == 0
            df = df[keep]
            self._attention_tables[key] = _pick_kernel(df) if not df.empty else None
        return self._attention_tables[key]

    def attention_configs(self, phase: Phase, head_dim: int, kv_dtype: str) -> set[tuple[int, int]]:
        """Measured (heads, kv_heads) per GPU for this head size."""
        df = self._attention_table(phase, kv_dtype)
        if df is None:
            return set()
        rows = df[df["head_dim"] == head_dim][["num_heads", "num_key_value_heads"]].drop_duplicates()
        return {(int(h), int(kv)) for h, kv in rows.itertuples(index=False)}

    def attention(
        self, phase: Phase, heads: int, kv_heads: int, head_dim: int, kv_dtype: str
    ) -> AttentionGrid | None:
        df = self._attention_table(phase, kv_dtype)
        if df is None:
            return None
        df = df[
            (df["num_heads"] == heads) & (df["num_key_value_heads"] == kv_heads)
            & (df["head_dim"] == head_dim)
        ]
        if df.empty:
            return None
        seq = df["isl"] + df["step"] if phase == "generation" else df["isl"]
        table = df.assign(seq=seq).pivot_table(
            index="batch_size", columns="seq", values="latency", aggfunc="median")
        return AttentionGrid(
            table.index.to_numpy(dtype=np.float64), table.columns.to_numpy(dtype=np.float64),
            table.to_numpy(dtype=np.float64) * MS,
        )

    def all_reduce(self, num_gpus: int) -> MessageCurve | None:
        df = self._table("comm", "custom_allreduce_perf.parquet")
        if df is None:
            return None
        if "allreduce_dtype" in df:
            df = df[df["allreduce_dtype"] == "bfloat16"]
        # Decode and mixed steps run under CUDA graphs in vLLM, so graph-captured
        # all-reduce timings apply where both were measured.
        graph = df[df["kernel_source"].str.contains("graph")]
        df = graph if not graph.empty else df
        return _message_curve(df[df["num_gpus"] == num_gpus])

    def all_gather(self, num_gpus: int) -> MessageCurve | None:
        df = self._table("comm", "nccl_perf.parquet", framework="nccl")
        if df is None:
            return None
        df = df[(df["op_name"] == "all_gather") & (df["nccl_dtype"] == "half") & (df["num_gpus"] == num_gpus)]
        return _message_curve(df)

    def moe(
        self, dtype: str, hidden: int, inter: int, topk: int, experts: int, tp: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """(tokens, seconds) of the fused-MoE kernel for this shape with expert weights split over `tp`."""
        df = self._table("moe", "moe_perf.parquet")
        if df is None:
            return None
        df = df[
            (df["moe_dtype"] == dtype) & (df["hidden_size"] == hidden) & (df["inter_size"] == inter)
            & (df["topk"] == topk) & (df["num_experts"] == experts) & (df["moe_tp_size"] == tp)
            & (df["moe_ep_size"] == 1)
        ]
        # Uniform routing first (what the roofline assumes too), else the mildest skew.
        for distribution in ("balanced", "power_law_1.01", "power_law_1.2"):
            rows = df[df["distribution"] == distribution]
            if not rows.empty:
                latency = _pick_kernel(rows).groupby("num_tokens")["latency"].median()
                return latency.index.to_numpy(dtype=np.float64), latency.to_numpy() * MS
        return None

    def memory(self) -> MemoryModel:
        spec = yaml.safe_load(self._spec_path.read_text())["gpu"]
        return MemoryModel(
            bandwidth=float(spec["mem_bw"]),
            efficiency=float(spec.get("mem_bw_empirical_scaling_factor", 0.8)),
            launch_s=float(spec.get("mem_empirical_constant_latency", 3e-6)),
        )


def _message_curve(df: pd.DataFrame) -> MessageCurve | None:
    if df.empty:
        return None
    latency = df.groupby("message_size")["latency"].median()
    return MessageCurve(latency.index.to_numpy(dtype=np.float64), latency.to_numpy() * MS)
