"""The router contract: pick the replica that serves a request."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from kairos.cluster.replica import ReplicaView
from kairos.workload.spec import RequestSpec


class Router(Protocol):
    """A routing policy; `route` returns the `index` of one of the given replicas.

    Routers may keep state (a cursor, a random generator, a record of what went
    where), so one router instance serves one cluster for one run.
    """

    name: str

    def route(self, spec: RequestSpec, replicas: Sequence[ReplicaView]) -> int: ...
