"""The API server's own time per request: what a client's TTFT holds beyond the engine's work.

A served request spends time in the server's front-end before the engine core
queues it (HTTP, request parsing, handing it to the engine core) and after the
engine has made its first token (output processing, streaming the first chunk).
At light load that is a visible part of a measured TTFT. Each entry of
`front_ends.json` is one engine and version, measured by
`benchmarks/front_end_time.py` (the entry's `source` says where and how): client
TTFT of idle single requests minus the engine's own queue and prefill time, which
the server reports in its Prometheus metrics, fitted as a constant plus a cost
per prompt token.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources

from kairos.errors import unknown_name_error


@dataclass(frozen=True, slots=True)
class FrontEnd:
    """Front-end time of one engine version: `request_s` + `per_input_token_s` x prompt tokens."""

    engine: str
    version: str
    request_s: float
    per_input_token_s: float
    source: str

    def latency_s(self, input_tokens: int) -> float:
        return self.request_s + self.per_input_token_s * input_tokens

    @property
    def name(self) -> str:
        return f"{self.engine}=={self.version}"


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else 0 for part in version.split("."))


def measured_front_ends() -> list[FrontEnd]:
    """Every measured engine version, oldest first within an engine."""
    text = resources.files("kairos.perf").joinpath("front_ends.json").read_text()
    entries = [FrontEnd(e["engine"], e["version"], e["request_ms"] / 1e3, e["per_input_token_us"] / 1e6,
                        e["source"]) for e in json.loads(text)["front_ends"]]
    return sorted(entries, key=lambda f: (f.engine, _version_key(f.version)))


def load_front_end(spec: str) -> tuple[FrontEnd, str | None]:
    """The front-end `spec` names, 'ENGINE' (its newest measured version) or
    'ENGINE==VERSION' (that version, else the nearest measured release, or the newest for
    a version that is no release number, with a note)."""
    engine, _, version = spec.partition("==")
    known = measured_front_ends()
    versions = [f for f in known if f.engine == engine.strip()]
    if not versions:
        raise unknown_name_error("front-end engine", engine.strip(), sorted({f.engine for f in known}))
    version = version.strip()
    if not version:
        return versions[-1], None
    if not re.fullmatch(r"\d+(\.\d+)*", version):  # a nightly build, say: no order to place it in
        newest = versions[-1]
        return newest, (f"front-end time of {engine.strip()} {version} not measured and not a release "
                        f"number: using the newest measured, {newest.version}'s ({newest.request_s * 1e3:.2f} ms per request)")
    wanted = _version_key(version)
    nearest = min(versions, key=lambda f: (abs(_distance(_version_key(f.version), wanted)), _version_key(f.version)))
    if nearest.version == version:
        return nearest, None
    return nearest, (f"front-end time of {engine.strip()} {version} not measured: "
                     f"using {nearest.version}'s ({nearest.request_s * 1e3:.2f} ms per request)")


def _distance(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """How far apart two release numbers are, major before minor before patch."""
    width = max(len(a), len(b))
    a, b = a + (0,) * (width - len(a)), b + (0,) * (width - len(b))
    return sum((x - y) * 1000 ** (width - i) for i, (x, y) in enumerate(zip(a, b)))
