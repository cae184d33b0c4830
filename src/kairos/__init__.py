"""Kairos: plan, simulate and run LLM inference serving."""

__version__ = "0.1.0"
