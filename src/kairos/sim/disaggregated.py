"""Prefill/decode disaggregation on the event core: two pools, a decider and a KV link between them.

A request is routed decode-first, as llm-d's disaggregation handler does: the
decode pool's router picks a replica, and the decider looks at how much of the
prompt that replica lacks in its prefix cache. A request kept local runs wholly
there. A remote one is queued on the decode replica waiting for its KV (vLLM's
WAITING_FOR_REMOTE_KVS): when the decode engine admits it, it reserves the
blocks and the prefill pool's router picks a prefill replica, which computes
the prompt and one token (vLLM's prefill-only request, its blocks held until
the decode side has them). The KV then crosses the decode replica's link,
shared by the transfers into that replica (`TransferLink`); with `overlap`, the
layers computed before the prefill's last one were sent while it ran
(`bytes_after_prefill`). When the KV lands, the decode engine computes the last
prompt token and samples the first token the client sees: TTFT is the prefill
(with its queue), the transfer and the first decode step, each reported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from kairos.cluster.disaggregation import Decider
from kairos.cluster.kv_transfer import bytes_after_prefill
from kairos.cluster.router import Router
from kairos.engine.request import Request
from kairos.engine.scheduler import SchedulerOutput
from kairos.hardware import Link
from kairos.engine.kv_cache import KVCacheManager
from kairos.metrics.itl import ItlCollector
from kairos.metrics.percentiles import stats_ms
from kairos.metrics.record import RequestRecord
from kairos.sim.replica import ReplicaSet, SimReplica
from kairos.sim.runner import ProgressFn, SimResult, Simulation
from kairos.sim.transfers import TransferLinks
from kairos.workload.spec import RequestSpec


@dataclass(slots=True)
class _Remote:
    """A request prefilled on the prefill pool: its decode-side request and where it stands."""

    decode: Request
    decode_replica: SimReplica
    tokens: int = 0  # prompt tokens whose KV crosses the link
    sent_s: float = 0.0  # when the prefill replica got it
    prefill: Request | None = None
    prefill_replica: SimReplica | None = None
    prefill_done_s: float = 0.0
    nbytes: int = 0


@dataclass(slots=True)
class _Stats:
    prefill_s: list[float] = field(default_factory=list)  # prefill-pool queue + prefill, per request
    transfer_s: list[float] = field(default_factory=list)  # the prefill's end to the KV landing
    bytes_moved: int = 0
    local: int = 0


class DisaggregatedSimulation(Simulation):
    """A Simulation over a prefill and a decode pool (see the module docstring).

    `replicas` are both pools' (prefill first: their indices order equal-time step ends);
    `kv_bytes(tokens)` is what the busiest GPU pair moves for that many prompt tokens.
    """

    def __init__(self, specs: Sequence[RequestSpec], prefill: list[SimReplica], decode: list[SimReplica],
                 prefill_router: Router, decode_router: Router, *, decider: Decider, link: Link,
                 kv_bytes: Callable[[int], int], overlap: bool, num_layers: int, max_model_len: int,
                 itl: ItlCollector, fast_decode: bool = True, progress: ProgressFn | None = None,
                 request_latency: Callable[[int], float] | None = None, concurrency: int | None = None) -> None:
        super().__init__(specs, [*prefill, *decode], decode_router, max_model_len=max_model_len, itl=itl,
                         fast_decode=fast_decode, progress=progress, request_latency=request_latency,
                         concurrency=concurrency)
        self.prefill = ReplicaSet(prefill, self.clock)
        self.decode = ReplicaSet(decode, self.clock)
        self.prefill_router = prefill_router
        self.decider = decider
        self.link = link
        self.kv_bytes = kv_bytes
        self.overlap = overlap
        self.num_layers = num_layers
        # One link into each decode replica: the transfers it pulls share its bandwidth.
        self._transfers = TransferLinks(self._events, link, [r.index for r in decode],
                                        lambda key, t: self._land(self._remote_by_decode[key], t))
        self._remote_by_decode: dict[int, _Remote] = {}  # id(decode request) ->
        self._remote_by_prefill: dict[int, _Remote] = {}  # id(prefill request) ->
        self._landed: dict[str, float] = {}  # request id -> when its KV landed
        self._stats = _Stats()

    # ---- routing ---------------------------------------------------------------------
    def _deliver(self, t: float, request: tuple[RequestSpec, RequestRecord]) -> None:
        spec, record = request
        replica = self.replicas[self.router.route(spec, self.decode)]
        uncached = spec.prompt_len - replica.cached_prefix_tokens(spec)
        if not self.decider.remote(spec, uncached):
            self._stats.local += 1
            self._admit(replica, spec, record, t)
            return
        req = self._admit(replica, spec, record, t, remote_prefill=True)
        self._remote_by_decode[id(req)] = _Remote(req, replica)

    def _kv_needs(self, spec: RequestSpec) -> list[tuple[str, KVCacheManager, int]]:
        # A decode replica holds it all; a prefill replica its prompt and one token.
        return [("a decode replica", self.decode[0].core.kv, spec.prompt_len + spec.output_len),
                ("a prefill replica", self.prefill[0].core.kv, spec.prompt_len + 1)]

    # ---- the decode side reserved the KV: prefill it --------------------------------
    def _scheduled(self, replica: SimReplica, out: SchedulerOutput, t: float) -> None:
        for req, tokens in out.remote_kv:
            remote = self._remote_by_decode[id(req)]
            remote.tokens = tokens
            spec = replace(req.spec, output_len=1, after=None, think_s=0.0)
            target = self.replicas[self.prefill_router.route(spec, self.prefill)]
            remote.prefill_replica = target
            remote.sent_s = t
            remote.prefill = self._admit(target, spec, None, t, remote_decode=True)
            self._remote_by_prefill[id(remote.prefill)] = remote

    def _finished(self, replica: SimReplica, req: Request, t: float) -> None:
        remote = self._remote_by_prefill.pop(id(req), None)
        if remote is None:
            self._remote_by_decode.pop(id(req), None)
            super()._finished(replica, req, t)
            return
        # The prompt's KV is computed: it crosses the decode replica's link.
        remote.prefill_done_s = t
        nbytes = self.kv_bytes(remote.tokens)
        remote.nbytes = nbytes
        if self.overlap:
            prefill_s = t - (req.first_scheduled_s if req.first_scheduled_s is not None else t)
            nbytes = int(round(bytes_after_prefill(nbytes, self.link.bandwidth, prefill_s, self.num_layers)))
        self._transfers.start(remote.decode_replica.index, id(remote.decode), nbytes, t)

    def _land(self, remote: _Remote, t: float) -> None:
        """The KV is on the decode replica: it may compute the last prompt token; the prefill
        replica lets the blocks go."""
        decode = remote.decode_replica
        self._cut_window(decode, t)
        decode.core.remote_kv_landed(remote.decode)
        self._wake(decode, t)
        prefill = remote.prefill_replica
        assert remote.prefill is not None and prefill is not None
        # Freed blocks may let the prefill replica admit what waited for them.
        self._cut_window(prefill, t)
        prefill.core.release_held(remote.prefill)
        self._wake(prefill, t)
        self._landed[remote.decode.request_id] = t
        stats = self._stats
        stats.prefill_s.append(remote.prefill_done_s - remote.sent_s)
        stats.transfer_s.append(t - remote.prefill_done_s)
        stats.bytes_moved += remote.nbytes

    # ---- results ---------------------------------------------------------------------
    def _result(self, events: int) -> SimResult:
        result = super()._result(events)
        for rep in result.replicas:
            rep["pool"] = "prefill" if rep["index"] < len(self.prefill) else "decode"
        stats = self._stats
        first_steps = [r.first_token_s - self._landed[r.request_id] for r in result.records
                       if r.first_token_s is not None and r.request_id in self._landed]
        result.disaggregation = {
            "remote": len(stats.transfer_s), "local": stats.local,
            "prefill_ms": _stats_ms(stats.prefill_s), "transfer_ms": _stats_ms(stats.transfer_s),
            "first_decode_step_ms": _stats_ms(first_steps), "kv_bytes": stats.bytes_moved,
            "link_busy_s": self._transfers.busy_s(),
        }
        return result


def _stats_ms(values_s: list[float]) -> dict[str, float] | None:
    """Mean and percentiles in ms; None where nothing was measured (no request took that path)."""
    return stats_ms(values_s) if values_s else None
