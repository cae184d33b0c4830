"""Prometheus metrics of a served engine, under vLLM's names, types and buckets.

Dashboards and autoscalers written for vLLM read these unchanged. Counters
follow vLLM's exposition: `vllm:num_preemptions` is a counter, so the text format
shows `vllm:num_preemptions_total`. Every series carries `model_name` (and
`engine`, always "0" here, as vLLM v1 adds it).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

from kairos.serve.engine_worker import EngineSnapshot, IterationStats

# Bucket bounds copied from vLLM v1 (vllm/v1/metrics/loggers.py).
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
               40.0, 80.0)
REQUEST_LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
                           120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
FINISH_REASONS = ("stop", "length", "abort")


class PrometheusMetrics:
    """The /metrics registry of one server; `record` is the engine loop's observer (runs off the event loop).

    A registry of its own (not prometheus_client's global one) lets several
    servers live in one process, as tests start them.
    """

    def __init__(self, model_name: str, cache_config: dict[str, Any]) -> None:
        # No `_created` series, as in vLLM's exposition (a process-wide switch; vLLM flips it too).
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("model_name", "engine")
        values = (model_name, "0")

        def gauge(name: str, doc: str) -> Any:
            return Gauge(name, doc, labels, registry=self.registry).labels(*values)

        def counter(name: str, doc: str) -> Any:
            return Counter(name, doc, labels, registry=self.registry).labels(*values)

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Any:
            return Histogram(name, doc, labels, buckets=buckets, registry=self.registry).labels(*values)

        self.running = gauge("vllm:num_requests_running", "Number of requests in model execution batches.")
        self.waiting = gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.")
        self.kv_usage = gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.")
        self.prefix_queries = counter("vllm:prefix_cache_queries",
                                      "Prefix cache queries, in terms of number of queried tokens.")
        self.prefix_hits = counter("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.")
        self.preemptions = counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.")
        self.prompt_tokens = counter("vllm:prompt_tokens", "Number of prefill tokens processed.")
        self.generation_tokens = counter("vllm:generation_tokens", "Number of generation tokens processed.")
        success = Counter("vllm:request_success", "Count of successfully processed requests.",
                          (*labels, "finished_reason"), registry=self.registry)
        self.success = {reason: success.labels(*values, reason) for reason in FINISH_REASONS}
        self.ttft = histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                              TTFT_BUCKETS)
        self.itl = histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
                             ITL_BUCKETS)
        self.e2e = histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
                             REQUEST_LATENCY_BUCKETS)
        self.queue_time = histogram("vllm:request_queue_time_seconds",
                                    "Histogram of time spent in WAITING phase for request.",
                                    REQUEST_LATENCY_BUCKETS)
        # vLLM publishes its cache config as an always-1 gauge whose labels carry the values.
        info = Gauge("vllm:cache_config_info", "Information of the LLMEngine CacheConfig",
                     tuple(cache_config), registry=self.registry)
        info.labels(*(str(v) for v in cache_config.values())).set(1)
        self._last = EngineSnapshot()

    def record(self, snapshot: EngineSnapshot, stats: IterationStats) -> None:
        """Set the gauges, advance the counters by what changed, observe the iteration's latencies."""
        last, self._last = self._last, snapshot
        self.running.set(snapshot.num_running)
        self.waiting.set(snapshot.num_waiting)
        self.kv_usage.set(snapshot.kv_cache_usage)
        # The engine keeps running totals; Prometheus counters want increments.
        _inc(self.prefix_queries, snapshot.prefix_cache_queries - last.prefix_cache_queries)
        _inc(self.prefix_hits, snapshot.prefix_cache_hits - last.prefix_cache_hits)
        _inc(self.preemptions, snapshot.num_preemptions - last.num_preemptions)
        _inc(self.prompt_tokens, stats.prompt_tokens)
        _inc(self.generation_tokens, stats.generation_tokens)
        for value in stats.ttfts:
            self.ttft.observe(value)
        for value in stats.itls:
            self.itl.observe(value)
        for value in stats.queue_times:
            self.queue_time.observe(value)
        for done in stats.finished:
            self.success[done.reason].inc()
            self.e2e.observe(done.e2e_s)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)


def _inc(counter: Any, amount: int) -> None:
    if amount > 0:
        counter.inc(amount)
