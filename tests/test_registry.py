"""The plug-in registry: registration, lenient lookup, one-line errors, listing for help."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from kairos.cluster import ROUTERS
from kairos.engine import POLICIES
from kairos.errors import KairosError
from kairos.scenario.step_models import STEP_TIME_MODELS
from kairos.registry import Registry


def make_registry() -> Registry[type]:
    registry: Registry[type] = Registry("widget")

    @registry.register("prefix_affinity")
    @dataclass
    class Sticky:
        """Stay where the prefix is.

        More detail that help leaves out.
        """

        threshold: float = 0.5
        seed: int = 0
        name: str = field(default="prefix_affinity", init=False)

    class Plain:
        """Not a dataclass."""

    registry.register("round-robin", Plain, summary="Cycle in order.")
    return registry


def test_registration_by_decorator_and_call_keeps_order_and_values():
    registry = make_registry()
    assert registry.names() == ("prefix_affinity", "round_robin")
    assert registry.get("round_robin").__name__ == "Plain"
    # The decorator hands back what it registered, so the class stays usable by its own name.
    assert registry.get("prefix_affinity")().threshold == 0.5


@pytest.mark.parametrize("name", ["prefix_affinity", "prefix-affinity", "Prefix_Affinity", " PREFIX-AFFINITY "])
def test_lookup_ignores_case_dashes_and_spaces(name):
    registry = make_registry()
    assert registry.canonical(name) == "prefix_affinity"
    assert registry.get(name) is registry.get("prefix_affinity")


def test_unknown_name_is_a_one_line_error_with_a_hint():
    registry = make_registry()
    with pytest.raises(KairosError, match=r"^unknown widget 'prefix_afinity': did you mean prefix_affinity\?$"):
        registry.get("prefix_afinity")
    with pytest.raises(KairosError, match=r"^unknown widget 'zzz': known: prefix_affinity, round_robin$"):
        registry.get("zzz")


def test_duplicate_registration_is_refused_even_when_spelled_differently():
    registry = make_registry()
    with pytest.raises(ValueError, match="widget 'round_robin' is registered already"):
        registry.register("Round_Robin", object)
    assert registry.get("round_robin").__name__ == "Plain"


def test_listing_summaries_choices_and_forms():
    registry = make_registry()
    assert registry.summaries() == {"prefix_affinity": "Stay where the prefix is.", "round_robin": "Cycle in order."}
    registry.describe_form("file:PATH", "Read it from a file.")
    assert registry.choices() == "prefix_affinity, round_robin or file:PATH"
    assert registry.summaries()["file:PATH"] == "Read it from a file."
    # A listed form is shown and hinted, but its owner parses it: the registry does not build it.
    with pytest.raises(KairosError, match="did you mean file:PATH"):
        registry.get("file:PATH")
    assert Registry("empty").choices() == ""


def test_knobs_are_a_dataclass_constructor_fields():
    registry = make_registry()
    assert registry.knobs("prefix-affinity") == ("threshold", "seed")
    assert registry.knobs("round_robin") == ()


def test_unknown_knobs_are_a_one_line_error_listing_the_accepted_ones():
    registry = make_registry()
    registry.check_knobs("prefix_affinity", ["threshold"])
    with pytest.raises(KairosError, match=r"^widget 'prefix_affinity' has no knob gap \(knobs: threshold, seed\)$"):
        registry.check_knobs("prefix_affinity", ["gap", "threshold"])
    with pytest.raises(KairosError, match=r"\(knobs: none\)$"):
        registry.check_knobs("round_robin", ["x"])


def test_the_project_registries_list_every_plug_in_with_a_summary():
    assert ROUTERS.names() == ("round_robin", "least_outstanding", "least_kv", "least_demand", "power_of_two",
                               "prefix_affinity")
    assert POLICIES.names() == ("fcfs", "priority", "sjf", "srpt", "laps", "edf", "slack", "vtc", "past_future",
                                "filler")
    assert STEP_TIME_MODELS.names() == ("roofline", "kernels", "aiconfigurator")
    assert STEP_TIME_MODELS.choices() == "roofline, kernels, aiconfigurator, auto or calibrated:PROFILE"
    for registry in (ROUTERS, POLICIES, STEP_TIME_MODELS):
        assert all(registry.summaries().values())
