"""Routers by name, so that a scenario file can pick one and set its knobs."""

from __future__ import annotations

import dataclasses
from typing import Any

from kairos.cluster.load_balancing import LeastKv, LeastOutstanding, PowerOfTwo, RoundRobin
from kairos.cluster.prefix_affinity import PrefixAffinity
from kairos.cluster.router import Router
from kairos.errors import KairosError, unknown_name_error

_ROUTERS: dict[str, type] = {
    "round_robin": RoundRobin,
    "least_outstanding": LeastOutstanding,
    "least_kv": LeastKv,
    "power_of_two": PowerOfTwo,
    "prefix_affinity": PrefixAffinity,
}
ROUTER_NAMES: tuple[str, ...] = tuple(_ROUTERS)


def router_knobs(name: str) -> tuple[str, ...]:
    """The knobs a router accepts (its constructor fields; `seed` is passed separately)."""
    return tuple(
        f.name for f in dataclasses.fields(_router_class(name)) if f.init and f.name != "seed"
    )


def make_router(name: str, seed: int = 0, **knobs: Any) -> Router:
    """Build router `name` ("prefix-affinity" and "Prefix_Affinity" work too).

    `seed` reaches the policies that draw random numbers; unknown knobs are a
    KairosError that lists the accepted ones.
    """
    cls = _router_class(name)
    accepted = router_knobs(name)
    unknown = sorted(set(knobs) - set(accepted))
    if unknown:
        hint = ", ".join(accepted) if accepted else "none"
        raise KairosError(
            f"router '{name}' has no knob {', '.join(unknown)} (knobs: {hint})"
        )
    if any(f.name == "seed" for f in dataclasses.fields(cls)):
        knobs["seed"] = seed
    router: Router = cls(**knobs)
    return router


def _router_class(name: str) -> type:
    key = name.strip().lower().replace("-", "_")
    if key not in _ROUTERS:
        raise unknown_name_error("router", name, ROUTER_NAMES)
    return _ROUTERS[key]
