"""Validation: replay a measured serving run in simulation and compare the latencies."""

from kairos.validate.compare import VALIDATION_SCHEMA, compare_runs
from kairos.validate.replay import replay_scenario, replay_specs, validate_run

__all__ = ["VALIDATION_SCHEMA", "compare_runs", "replay_scenario", "replay_specs", "validate_run"]
