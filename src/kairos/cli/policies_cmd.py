"""`kairos policies [NAME]`: the scheduling policies and output-length predictors, with their knobs."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from kairos.cli.consoles import out
from kairos.engine.policies import DEFAULT_PREDICTOR, POLICIES, needs_predictor
from kairos.integrations.vllm_queue import unsupported_reason
from kairos.predict import PREDICTORS
from kairos.registry import Registry, normalise

# Set by make_waiting_queue from --predictor, never by the user.
_NOT_KNOBS = frozenset({"predictor"})


def register(app: typer.Typer) -> None:
    """Add the `policies` command to the kairos app."""
    app.command()(policies)


def policies(
    name: Annotated[str | None, typer.Argument(help="A policy (or predictor) to describe in full.")] = None,
) -> None:
    """List the scheduling policies and output-length predictors, or describe one (docs/POLICIES.md)."""
    if name is None:
        out.print(policies_table())
        out.print(predictors_table())
    elif normalise(name) in PREDICTORS.names() and normalise(name) not in POLICIES.names():
        out.print(describe(PREDICTORS, normalise(name)), markup=False)
    else:
        out.print(describe(POLICIES, POLICIES.canonical(name)), markup=False)


def knob_defaults(registry: Registry[Any], name: str) -> dict[str, str]:
    """Each user knob of `name` with its default as text ("required" where it has none)."""
    value = registry.get(name)
    fields = {f.name: f for f in dataclasses.fields(value)} if dataclasses.is_dataclass(value) else {}
    defaults = {}
    for knob in registry.knobs(name):
        if knob in _NOT_KNOBS:
            continue
        f = fields[knob]
        if f.default is not dataclasses.MISSING:
            defaults[knob] = str(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            defaults[knob] = str(f.default_factory())
        else:
            defaults[knob] = "required"
    return defaults


def _knobs_text(registry: Registry[Any], name: str) -> str:
    return ", ".join(f"{k}={v}" for k, v in knob_defaults(registry, name).items()) or "-"


def vllm_support(policy: str) -> str:
    """'yes', or 'no: why' where the vLLM plug-in refuses the policy."""
    why = unsupported_reason(policy)
    return "yes" if why is None else f"no: {why}"


def policies_table() -> Table:
    table = Table(title="Scheduling policies (--policy, engine.policy; knobs: --policy-option, "
                        "engine.policy_options)")
    for col in ("name", "what it does", "knobs (defaults)", "predictor", "vLLM plug-in"):
        table.add_column(col)
    for name in POLICIES.names():
        predictor = f"yes (default {DEFAULT_PREDICTOR})" if needs_predictor(name) else "no"
        table.add_row(name, escape(POLICIES.summaries()[name]), escape(_knobs_text(POLICIES, name)), predictor,
                      vllm_support(name))
    table.caption = ("Every policy runs in kairos simulate and kairos serve, where a policy that needs a predictor "
                     f"gets {DEFAULT_PREDICTOR} unless --predictor names one, as in the vLLM plug-in. "
                     "Details: kairos policies NAME.")
    return table


def predictors_table() -> Table:
    table = Table(title="Output-length predictors (--predictor, engine.predictor; knobs: --predictor-option, "
                        "engine.predictor_options)")
    for col in ("name", "what it predicts", "knobs (defaults)"):
        table.add_column(col)
    for name in PREDICTORS.names():
        table.add_row(name, escape(PREDICTORS.summaries()[name]), escape(_knobs_text(PREDICTORS, name)))
    return table


def describe(registry: Registry[Any], name: str) -> str:
    """`name`'s full docstring, then its knobs with their defaults (and, for a policy, what it needs)."""
    lines = [f"{name} ({registry.kind})", "", inspect.getdoc(registry.get(name)) or "", ""]
    knobs = knob_defaults(registry, name)
    lines.append("knobs: " + (", ".join(f"{k} (default {v})" for k, v in knobs.items()) if knobs else "none"))
    if registry is POLICIES:
        lines.append(f"predictor: {'yes, default ' + DEFAULT_PREDICTOR if needs_predictor(name) else 'none'}")
        lines.append("kairos simulate, kairos serve: yes")
        lines.append(f"vLLM plug-in: {vllm_support(name)}")
    return "\n".join(lines)
