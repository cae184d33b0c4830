"""A served request's class, from OpenAI's `user` field and Kairos's request headers.

`x-tenant` (else the body's `user`) names the tenant; `x-slo-class` the class;
`x-slo-ttft-ms`, `x-slo-tpot-ms` and `x-slo-e2e-ms` its latency targets and
`x-deadline-s` the seconds after arrival by which it should finish. vLLM's
`priority` stays a body field. Scheduling policies read these from the request's
RequestSpec, as they do in simulation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from kairos.workload.spec import SLO

TENANT_HEADER = "x-tenant"
CLASS_HEADER = "x-slo-class"
DEADLINE_HEADER = "x-deadline-s"
SLO_HEADERS = {"ttft_ms": "x-slo-ttft-ms", "tpot_ms": "x-slo-tpot-ms", "e2e_ms": "x-slo-e2e-ms"}


@dataclass(frozen=True, slots=True)
class ServedClass:
    """Who sent a request and what it asks for: tenant, SLO targets, class name, deadline."""

    tenant: str | None = None
    slo: SLO | None = None
    slo_class: str | None = None
    deadline_s: float | None = None


class HeaderError(ValueError):
    """A request header with a value that cannot be used; `header` names it."""

    def __init__(self, header: str, message: str) -> None:
        super().__init__(message)
        self.header = header


def served_class(user: str | None, headers: Mapping[str, str]) -> ServedClass:
    """The class `headers` (case-insensitive, as Starlette's) and the body's `user` give."""
    tenant = _name(headers, TENANT_HEADER) or user or None
    targets = {field: _seconds_or_ms(headers, header) for field, header in SLO_HEADERS.items()}
    slo = SLO(**targets) if any(v is not None for v in targets.values()) else None
    return ServedClass(tenant, slo, _name(headers, CLASS_HEADER), _seconds_or_ms(headers, DEADLINE_HEADER))


def _name(headers: Mapping[str, str], header: str) -> str | None:
    value = headers.get(header)
    if value is None:
        return None
    if not value.strip():
        raise HeaderError(header, f"header {header} is empty")
    return value.strip()


def _seconds_or_ms(headers: Mapping[str, str], header: str) -> float | None:
    """A positive finite number (the unit is in the header's name)."""
    value = headers.get(header)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (number > 0 and math.isfinite(number)):
        raise HeaderError(header, f"header {header} must be a number > 0, got {value!r}")
    return number
