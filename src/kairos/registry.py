"""Pluggable parts by name (routers, queue policies, step-time models), so that a scenario
file can pick one and the CLI help lists them."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar, overload

from kairos.errors import KairosError, unknown_name_error

T = TypeVar("T")
V = TypeVar("V")


def normalise(name: str) -> str:
    """The key a name is looked up by: case, surrounding space and '-' or '_' do not matter."""
    return name.strip().lower().replace("-", "_")


class Registry(Generic[T]):
    """Named plug-ins of one kind, each with a one-line summary, looked up by normalised name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind  # what errors call an entry: "unknown router 'x'"
        self._entries: dict[str, T] = {}
        self._summaries: dict[str, str] = {}  # names and listed-only forms, in help order

    @overload
    def register(self, name: str, value: T, *, summary: str | None = None) -> T: ...
    @overload
    def register(self, name: str, *, summary: str | None = None) -> Callable[[V], V]: ...

    def register(self, name: str, value: Any = None, *, summary: str | None = None) -> Any:
        """Register `value` as `name`, or without `value` return a decorator that does.

        The summary defaults to the first line of the value's docstring. A taken name is
        refused: a second plug-in must not silently replace the first.
        """
        def add(value: Any) -> Any:
            key = normalise(name)
            if key in self._summaries:
                raise ValueError(f"{self.kind} '{key}' is registered already")
            self._entries[key] = value
            self._summaries[key] = summary if summary is not None else _first_line(value)
            return value

        return add if value is None else add(value)

    def describe_form(self, form: str, summary: str) -> None:
        """List a name form its owner parses itself (e.g. `calibrated:PROFILE`) in help and hints."""
        self._summaries[form] = summary

    def canonical(self, name: str) -> str:
        """The registered name `name` stands for; an unknown one is a KairosError with close matches."""
        key = normalise(name)
        if key not in self._entries:
            raise unknown_name_error(self.kind, name, self._summaries)
        return key

    def get(self, name: str) -> T:
        """The value registered as `name` ("Prefix-Affinity" finds prefix_affinity)."""
        return self._entries[self.canonical(name)]

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._entries)

    def summaries(self) -> dict[str, str]:
        """Each registered name and listed form with its one-line summary, in help order."""
        return dict(self._summaries)

    def choices(self) -> str:
        """The names and forms as help text: "a, b or c"."""
        names = list(self._summaries)
        return f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else "".join(names)

    def knobs(self, name: str) -> tuple[str, ...]:
        """The settings `name` accepts: its constructor fields if it is a dataclass, else none."""
        value = self.get(name)
        if not (isinstance(value, type) and dataclasses.is_dataclass(value)):
            return ()
        return tuple(f.name for f in dataclasses.fields(value) if f.init)

    def check_knobs(self, name: str, given: Iterable[str], accepted: Sequence[str] | None = None) -> None:
        """A one-line KairosError naming the knobs of `given` that `name` does not take (`accepted`:
        those it takes, by default its `knobs`)."""
        accepted = self.knobs(name) if accepted is None else accepted
        unknown = sorted(set(given) - set(accepted))
        if unknown:
            raise KairosError(f"{self.kind} '{name}' has no knob {', '.join(unknown)}"
                              f" (knobs: {', '.join(accepted) if accepted else 'none'})")


def _first_line(value: object) -> str:
    doc = inspect.getdoc(value)
    return doc.splitlines()[0] if doc else ""
