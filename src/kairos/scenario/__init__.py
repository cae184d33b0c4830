"""Scenario files: the schema, loading with overrides, and turning a scenario into a run."""
