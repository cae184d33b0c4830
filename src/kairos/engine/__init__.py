"""Engine core: request lifecycle, paged KV cache with prefix caching, iteration-level scheduler."""

from kairos.engine.core import EngineCore, EngineStats, Executor, ItlSink, StepResult
from kairos.engine.kv_cache import KVCacheManager, PrefixCacheStats
from kairos.engine.policies import POLICIES, make_waiting_queue
from kairos.engine.request import Request, RequestStatus
from kairos.engine.scheduler import Scheduler, SchedulerConfig, SchedulerOutput

__all__ = [
    "EngineCore", "EngineStats", "Executor", "ItlSink", "StepResult", "KVCacheManager",
    "PrefixCacheStats", "POLICIES", "make_waiting_queue", "Request", "RequestStatus",
    "Scheduler", "SchedulerConfig", "SchedulerOutput",
]
