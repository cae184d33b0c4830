"""Routers by name, so that a scenario file can pick one and set its knobs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kairos.cluster.load_balancing import LeastDemand, LeastKv, LeastOutstanding, PowerOfTwo, RoundRobin
from kairos.cluster.prefix_affinity import PrefixAffinity
from kairos.cluster.router import Router
from kairos.registry import Registry

ROUTERS: Registry[Callable[..., Router]] = Registry("router")
for _router in (RoundRobin, LeastOutstanding, LeastKv, LeastDemand, PowerOfTwo, PrefixAffinity):
    ROUTERS.register(_router.name, _router)


def router_knobs(name: str) -> tuple[str, ...]:
    """The knobs a router accepts (its constructor fields; `seed` is passed separately)."""
    return tuple(knob for knob in ROUTERS.knobs(name) if knob != "seed")


def make_router(name: str, seed: int = 0, **knobs: Any) -> Router:
    """Build router `name` ("prefix-affinity" and "Prefix_Affinity" work too).

    `seed` reaches the policies that draw random numbers; unknown knobs are a
    KairosError that lists the accepted ones.
    """
    cls = ROUTERS.get(name)
    ROUTERS.check_knobs(name, knobs, router_knobs(name))
    if "seed" in ROUTERS.knobs(name):
        knobs["seed"] = seed
    router: Router = cls(**knobs)
    return router
