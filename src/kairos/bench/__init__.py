"""Load generator for OpenAI-compatible servers, and the measured-run files it writes."""

from kairos.bench.prompts import PROMPT_FORMATS, PromptBuilder, PromptFormat
from kairos.bench.results import EngineFacts
from kairos.bench.run_format import (
    MeasuredRequest,
    MeasuredRun,
    RequestLine,
    load_measured_run,
    measure,
    write_measured_run,
)
from kairos.bench.runner import BenchOptions, BenchRun, run_bench

__all__ = [
    "PROMPT_FORMATS",
    "BenchOptions",
    "BenchRun",
    "EngineFacts",
    "MeasuredRequest",
    "MeasuredRun",
    "PromptBuilder",
    "PromptFormat",
    "RequestLine",
    "load_measured_run",
    "measure",
    "run_bench",
    "write_measured_run",
]
