"""Workloads: the RequestSpec contract, trace loaders and synthetic generators."""

from kairos.workload.arrivals import ARRIVAL_PROCESSES, ArrivalProcess, arrival_times
from kairos.workload.azure import load_azure_csv
from kairos.workload.burstgpt import load_burstgpt_csv
from kairos.workload.classes import RequestClass, TenantConfig, assign_classes
from kairos.workload.config import (
    PrefixConfig,
    SessionConfig,
    WorkloadConfig,
    build_workload,
)
from kairos.workload.kairos_jsonl import load_kairos_jsonl, save_kairos_jsonl
from kairos.workload.lengths import (
    CountDist,
    EmpiricalLength,
    FixedLength,
    LengthDist,
    LognormalLength,
    UniformLength,
    sample_lengths,
)
from kairos.workload.mooncake import load_mooncake_jsonl
from kairos.workload.spec import SLO, RequestSpec, Span, content_key, content_keys
from kairos.workload.synthetic import SYNTHETIC_DEFAULT_REQUESTS, generate_synthetic
from kairos.workload.tracefile import TraceLoad
from kairos.workload.traces import TRACE_FORMATS, TraceFormat, detect_format, load_trace

__all__ = [
    "ARRIVAL_PROCESSES",
    "SLO",
    "SYNTHETIC_DEFAULT_REQUESTS",
    "TRACE_FORMATS",
    "ArrivalProcess",
    "CountDist",
    "EmpiricalLength",
    "FixedLength",
    "LengthDist",
    "LognormalLength",
    "PrefixConfig",
    "RequestClass",
    "RequestSpec",
    "SessionConfig",
    "Span",
    "TenantConfig",
    "TraceFormat",
    "TraceLoad",
    "UniformLength",
    "WorkloadConfig",
    "arrival_times",
    "assign_classes",
    "build_workload",
    "content_key",
    "content_keys",
    "detect_format",
    "generate_synthetic",
    "load_azure_csv",
    "load_burstgpt_csv",
    "load_kairos_jsonl",
    "load_mooncake_jsonl",
    "load_trace",
    "sample_lengths",
    "save_kairos_jsonl",
]
