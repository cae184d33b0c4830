"""Links that carry KV cache between GPUs, and the bundled catalog (`links.json`, one source per entry)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from kairos.errors import KairosError, unknown_name_error

CUSTOM_LINK_KEYS = ("bandwidth_gbps", "latency_us", "name")


@dataclass(frozen=True, slots=True)
class Link:
    """One GPU's link of a kind, in SI units: one direction's bandwidth (bytes/s) and a one-way latency (s)."""

    name: str
    bandwidth: float
    latency_s: float
    description: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.bandwidth) and self.bandwidth > 0):
            raise KairosError(f"link '{self.name}': bandwidth must be positive bytes/s, got {self.bandwidth}")
        if not (math.isfinite(self.latency_s) and self.latency_s >= 0):
            raise KairosError(f"link '{self.name}': latency must be zero or more seconds, got {self.latency_s}")

    def transfer_time(self, nbytes: float) -> float:
        """Seconds to move `nbytes` over this link alone: latency + bytes / bandwidth."""
        return self.latency_s + nbytes / self.bandwidth


def _key(name: str) -> str:
    # "NVLink 4", "nvlink_4" and "nvlink-4" name the same link.
    return re.sub(r"[\s_\-]", "", name.lower())


@cache
def _catalog() -> tuple[dict[str, Link], dict[str, str]]:
    """(name -> Link, every accepted spelling's key -> name) from the bundled JSON."""
    raw = json.loads((resources.files("kairos.hardware") / "links.json").read_text())
    links: dict[str, Link] = {}
    names: dict[str, str] = {}
    for entry in raw["links"]:
        link = Link(
            name=entry["name"],
            bandwidth=entry["bandwidth_gbps"] * 1e9,
            latency_s=entry["latency_us"] * 1e-6,
            description=entry["description"],
            source=entry["source"],
        )
        links[link.name] = link
        for spelling in [link.name, *entry["aliases"]]:
            names[_key(spelling)] = link.name
    return links, names


def list_links() -> list[str]:
    """Catalog names, sorted."""
    return sorted(_catalog()[0])


def load_link(name: str) -> Link:
    """Look up a link by catalog name or alias (case, spaces, '-' and '_' ignored)."""
    links, names = _catalog()
    key = names.get(_key(name))
    if key is None:
        raise unknown_name_error("link", name, list_links())
    return links[key]


def resolve_link(spec: str | Mapping[str, Any]) -> Link:
    """A catalog link by name, or a custom one from `{bandwidth_gbps, latency_us, name}` as a scenario gives it.

    `bandwidth_gbps` is GB/s (1e9 bytes/s) in one direction, as in the catalogs;
    `latency_us` defaults to 0 and `name` to 'custom'.
    """
    if isinstance(spec, str):
        return load_link(spec)
    unknown = sorted(set(spec) - set(CUSTOM_LINK_KEYS))
    if unknown:
        raise KairosError(
            f"custom link: unknown key {', '.join(unknown)} (accepted: {', '.join(CUSTOM_LINK_KEYS)})"
        )
    if "bandwidth_gbps" not in spec:
        raise KairosError(
            "custom link needs bandwidth_gbps (GB/s in one direction), e.g. {bandwidth_gbps: 50, latency_us: 2}"
        )
    name = str(spec.get("name", "custom"))
    try:
        bandwidth = float(spec["bandwidth_gbps"]) * 1e9
        latency = float(spec.get("latency_us", 0.0)) * 1e-6
    except (TypeError, ValueError):
        raise KairosError(
            f"custom link '{name}': bandwidth_gbps and latency_us must be numbers, got {dict(spec)}"
        ) from None
    return Link(name=name, bandwidth=bandwidth, latency_s=latency, description="custom link")
