"""Samples every replica's state at fixed virtual-time instants, without disturbing the run."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kairos.metrics.timeseries import TimeSeries
from kairos.sim.replica import SimReplica

# The interval starts here and doubles (every other sample dropped) whenever the samples would
# exceed MAX_SAMPLES: any run gets between MAX_SAMPLES / 2 and MAX_SAMPLES of them, on a grid
# fixed before it starts, without knowing its length.
FIRST_INTERVAL_S = 0.001
MAX_SAMPLES = 1024

# running, waiting, KV blocks in use / blocks, arrivals, completions, output tokens
Reading = tuple[int, int, float, int, int, int]


class TimeSeriesRecorder:
    """Takes the samples due before each event the simulation pops (`sample_until`).

    A sample at `s` sees the state left by the events before `s`. It reads a replica in the
    middle of a fused decode window the way a router does (`SimReplica.sync_kv`), but without
    allocating anything: the KV blocks and tokens of the window's steps begun and ended
    before `s` are counted, not applied, so the run is the same with or without a recorder.
    """

    def __init__(self) -> None:
        self.interval_s = FIRST_INTERVAL_S
        self._next = 0  # index of the next sample on the current grid
        self._rows: list[list[Reading]] = []

    def sample_until(self, t: float, replicas: Sequence[SimReplica]) -> float:
        """Take every sample due at or before `t`; returns when the next one is due."""
        while (s := self._next * self.interval_s) <= t:
            self._rows.append([_reading(replica, s) for replica in replicas])
            self._next += 1
            if len(self._rows) > MAX_SAMPLES:
                del self._rows[1::2]
                self.interval_s *= 2
                self._next = (self._next + 1) // 2
        return self._next * self.interval_s

    def series(self, num_replicas: int) -> TimeSeries:
        """The samples taken, as arrays of (samples, replicas)."""
        rows = np.array(self._rows, dtype=float).reshape(len(self._rows), num_replicas, 6)
        counts = rows.astype(np.int64)
        return TimeSeries(
            interval_s=self.interval_s, t_s=np.arange(len(self._rows)) * self.interval_s,
            running=counts[:, :, 0], waiting=counts[:, :, 1], kv_usage=rows[:, :, 2],
            arrivals=counts[:, :, 3], completions=counts[:, :, 4], output_tokens=counts[:, :, 5])


def _reading(replica: SimReplica, s: float) -> Reading:
    """`replica`'s state at `s`, as stepping one iteration at a time would show it."""
    core = replica.core
    kv = core.kv
    usage = kv.usage()
    tokens = sum(c.stats.output_tokens for c in getattr(core, "cores", (core,)))  # a lockstep replica's ranks
    ends = replica.in_flight_ends
    if replica.in_flight is not None and len(ends) > 1:
        # A fused window: its steps started before `s` have their KV slots (SimReplica.steps_begun
        # at a time no step end shares), and those ended before `s` have sampled their tokens.
        begun = 1 + int(np.searchsorted(ends[:-1], s, side="left"))
        running = core.scheduler.running
        if begun > replica.kv_synced:
            needed = sum(kv.blocks_needed(req, req.num_computed + begun) for req in running)
            usage = (kv.num_used_blocks + needed) / kv.num_blocks  # as KVCacheManager.usage after allocating
        tokens += int(np.searchsorted(ends, s, side="left")) * len(running)
    return (core.num_running, core.num_waiting, usage, replica.num_routed,
            replica.num_finished, tokens)
