"""Where a search's trials run: in this process, a local process pool, or Ray tasks on a cluster."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Protocol

from kairos.errors import KairosError


class TrialExecutor(Protocol):
    """Runs a batch of independent jobs; `width` is how many run at once (the batch size to ask for)."""

    width: int

    def map(self, fn: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterator[Any]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """A pool of `workers` processes (one: in this process, no pool)."""

    def __init__(self, workers: int | None = None) -> None:
        self.width = workers or os.cpu_count() or 1
        self._pool = ProcessPoolExecutor(max_workers=self.width) if self.width > 1 else None

    def map(self, fn: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterator[Any]:
        return self._pool.map(fn, jobs) if self._pool is not None else map(fn, jobs)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()


class RayExecutor:
    """Ray tasks on the cluster at `address` ("auto": the one this machine belongs to; "local": start one)."""

    def __init__(self, address: str) -> None:
        try:
            import ray
        except ImportError:
            raise KairosError("--ray-address needs Ray: pip install 'kairos[ray]'") from None
        self._ray = ray
        try:
            ray.init(address=None if address == "local" else address, ignore_reinit_error=True,
                     log_to_driver=False, include_dashboard=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise KairosError(f"cannot reach the Ray cluster at {address}: {e}") from None
        self.width = max(1, int(ray.cluster_resources().get("CPU", 1)))

    def map(self, fn: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterator[Any]:
        task = self._ray.remote(fn)
        return iter(self._ray.get([task.remote(job) for job in jobs]))

    def close(self) -> None:
        pass  # the cluster is not ours to stop (a local one ends with this process)


def make_executor(workers: int | None, ray_address: str | None) -> TrialExecutor:
    return RayExecutor(ray_address) if ray_address else LocalExecutor(workers)
