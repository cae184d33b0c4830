"""How one replica spreads a model over GPUs, as vLLM runs it: tensor, data and expert parallelism."""

from __future__ import annotations

from dataclasses import dataclass

from kairos.errors import KairosError


@dataclass(frozen=True, slots=True)
class Parallelism:
    """The GPUs of one served replica (one `vllm serve`): `tp` x `dp` of them.

    - `tp`: tensor parallelism inside each engine: every GEMM sharded, an all-reduce
      after attention and after the MLP of each layer.
    - `dp`: vLLM's data-parallel engine cores (`--data-parallel-size`), each with its
      own scheduler and KV cache behind the server's internal load balancer. For an
      MoE model the ranks share the expert layers and step in lockstep: every step
      waits for the slowest rank, and an idle rank runs a dummy batch. A dense model's
      ranks are independent engines.
    - `ep`: `--enable-expert-parallel`: an MoE model's experts are split over all
      tp x dp GPUs (all-to-all dispatch and combine) instead of each expert's weights
      being tensor-sharded over them.
    """

    tp: int = 1
    dp: int = 1
    ep: bool = False

    def __post_init__(self) -> None:
        if self.tp < 1 or self.dp < 1:
            raise KairosError(f"tp and dp must be at least 1, got tp {self.tp}, dp {self.dp}")

    @property
    def gpus(self) -> int:
        return self.tp * self.dp

    @property
    def moe_tp(self) -> int:
        """Ranks each expert's weights are tensor-sharded over."""
        return 1 if self.ep else self.gpus

    @property
    def moe_ep(self) -> int:
        """Ranks the experts are divided among."""
        return self.gpus if self.ep else 1

    def describe(self) -> dict[str, int | bool]:
        """What ran, for report.json."""
        return {"tp": self.tp, "dp": self.dp, "ep": self.ep, "moe_tp": self.moe_tp, "moe_ep": self.moe_ep}
