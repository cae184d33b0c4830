"""`kairos serve`: the OpenAI-compatible HTTP server (FastAPI + uvicorn) around one real engine.

Endpoints: POST /v1/completions, POST /v1/chat/completions, GET /v1/models,
GET /health, GET /metrics (Prometheus, vLLM names), GET /kairos/steps (the step
log, for `kairos calibrate --url`), GET /kairos/engine (engine
facts for benchmarks and twin validation), GET /version. With an API key, the
/v1 routes need it as a bearer token (kairos.serve.auth).
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

import kairos
from kairos.errors import KairosError
from kairos.serve.attention import min_split_slots
from kairos.serve.auth import BearerAuth
from kairos.serve.engine_loop import EngineLoop, ThreadedEngine
from kairos.serve.engine_process import EngineSpec, ProcessEngine
from kairos.serve.loader import PRESETS, LoadedModel, ModelInfo, describe_model, load_model
from kairos.serve.openai_chat import load_chat_template
from kairos.serve.openai_errors import install_error_handlers
from kairos.serve.openai_protocol import ChatCompletionRequest, CompletionRequest
from kairos.serve.openai_serving import OpenAIServing, ServedModel
from kairos.serve.prom_metrics import PrometheusMetrics
from kairos.serve.runner import EngineRunner, RunnerConfig

# Seconds uvicorn waits for open streams on shutdown before closing them.
GRACEFUL_SHUTDOWN_S = 5


@dataclass(frozen=True)
class ServeConfig:
    """Everything `kairos serve` takes: the model, the engine's limits and the HTTP side.

    `runner.ignore_eos` is ignored: EOS is honoured per request (ignore_eos, min_tokens).
    With `engine_process` the engine runs in a process of its own (vLLM V1's
    layout), else on a thread of the server process.
    """

    model: str = "tiny"
    served_model_name: str | None = None
    device: str = "cpu"
    dtype: str = "auto"  # auto (float32 on CPU, the checkpoint's half type on GPU), float32, bfloat16
    seed: int = 0
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    engine_process: bool = True
    threads: int | None = None  # torch intra-op threads of the engine (None: torch's default)
    busy_poll_s: float = 0.0  # how long an idle engine polls for work before it sleeps
    reference_every_s: float = 0.0  # how often an idle engine times the reference step, a busy one 3x less (0: never)
    engine_cpus: tuple[int, ...] | None = None  # CPUs the engine process is pinned to (None: any)
    # Waiting requests beyond this are refused with 429.
    max_waiting: int = 1024
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = field(default=None, repr=False)  # a bearer token /v1 routes require (None: open)

    @property
    def model_name(self) -> str:
        return self.served_model_name or self.model


def build_app(config: ServeConfig, loaded: LoadedModel | None = None) -> FastAPI:
    """Start the engine and return the app that serves it.

    The engine runs in its own process when `config.engine_process` is set and
    no model is given; on a thread, with `loaded` (or the model loaded here), otherwise.
    """
    engine, info, facts = start_engine(config, loaded)
    name = config.model_name
    max_model_len = facts["max_model_len"]
    engine.observer = metrics = PrometheusMetrics(name, {key: facts[key] for key in (
        "block_size", "num_gpu_blocks", "enable_prefix_caching")})
    model_dir = None if config.model in PRESETS else Path(config.model)
    serving = OpenAIServing(engine, ServedModel(name, info.tokenizer, info.config.vocab_size, max_model_len,
                                                load_chat_template(model_dir)))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        engine.start()
        try:
            yield
        finally:
            engine.stop()

    app = FastAPI(title="Kairos", version=kairos.__version__, lifespan=lifespan)
    app.state.engine = engine
    install_error_handlers(app)
    if config.api_key:
        app.add_middleware(BearerAuth, api_key=config.api_key)
    created = int(time.time())

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Response:
        return await serving.completion(body, request)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        return await serving.chat(body, request)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": created, "owned_by": "kairos",
                                            "root": config.model, "max_model_len": max_model_len}]}

    @app.get("/health")
    async def health() -> Response:
        return Response(status_code=200 if engine.alive else 503)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/kairos/engine")
    async def engine_info() -> JSONResponse:
        return JSONResponse({**facts, "stats": dataclasses.asdict(engine.snapshot)})

    @app.get("/kairos/steps")
    async def step_log(since: int = 0) -> JSONResponse:
        # Every step's shape and engine-loop time, for `kairos calibrate --url`.
        next_index, steps = engine.steps.since(max(0, since))
        return JSONResponse({"next": next_index, "steps": steps})

    @app.get("/version")
    async def version() -> dict[str, str]:
        return {"version": kairos.__version__}

    return app


def start_engine(config: ServeConfig, loaded: LoadedModel | None) -> tuple[EngineLoop, ModelInfo, dict[str, Any]]:
    """The engine (its process started, or its runner built), the model it serves and its facts."""
    # The engine never stops on EOS by itself: the worker decides per request.
    runner_config = dataclasses.replace(config.runner, ignore_eos=True, seed=config.seed)
    if config.engine_process and loaded is None:
        device = check_device(config.device)
        dtype = check_dtype(config.dtype, device)
        info: ModelInfo = describe_model(config.model, device, dtype)
        engine = ProcessEngine(EngineSpec(config.model, config.device, config.seed, runner_config,
                                          config.max_waiting, config.threads, config.busy_poll_s,
                                          config.reference_every_s, config.engine_cpus, dtype))
        return engine, info, engine_facts(config, info, "process", engine.ready.num_blocks,
                                          engine.ready.torch_threads, engine.ready.attention)
    if config.engine_cpus is not None:
        raise KairosError("--engine-cpus pins the engine process: it needs --engine-process")
    if loaded is None:
        device = check_device(config.device)
        loaded = load_model(config.model, device, dtype=check_dtype(config.dtype, device), seed=config.seed)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    runner = EngineRunner(loaded, runner_config)
    return (ThreadedEngine(runner, config.max_waiting, busy_poll_s=config.busy_poll_s,
                           reference_every_s=config.reference_every_s), loaded,
            engine_facts(config, loaded, "thread", runner.kv.num_blocks, torch.get_num_threads(),
                         runner.attention_layout))


def engine_facts(config: ServeConfig, info: ModelInfo, engine: str, num_blocks: int,
                 torch_threads: int, attention: str) -> dict[str, Any]:
    """What a benchmark or the digital twin needs to rebuild this engine (GET /kairos/engine)."""
    rc = config.runner
    # A request may hold the whole KV pool, and no more than the model's context.
    max_model_len = min(info.config.max_position_embeddings, num_blocks * rc.block_size)
    return {
        "model": config.model_name,
        "model_config": info.config.to_hf(),
        "device": device_name(info.device),
        "dtype": str(info.dtype).removeprefix("torch."),
        "block_size": rc.block_size,
        "num_gpu_blocks": num_blocks,
        "max_num_seqs": rc.max_num_seqs,
        "max_num_batched_tokens": rc.max_num_batched_tokens,
        "enable_prefix_caching": rc.enable_prefix_caching,
        "enable_chunked_prefill": rc.enable_chunked_prefill,
        "policy": rc.policy,
        "policy_options": dict(rc.policy_options),
        "predictor": rc.predictor,  # null: the policy's default (histogram for those that need one)
        "predictor_options": dict(rc.predictor_options),
        "max_model_len": max_model_len,
        "max_waiting": config.max_waiting,
        "engine": engine,  # where the engine runs: "process" or "thread"
        "torch_threads": torch_threads,
        "engine_cpus": None if config.engine_cpus is None else list(config.engine_cpus),
        # How attention's cost grows: "varlen" (native kernels: each request's exact context) or
        # "padded" (SDPA over padded groups, which split only when that saves this many context slots).
        "attention": attention,
        "attention_min_split_slots": min_split_slots(info.device, info.config.num_kv_heads, info.config.head_dim,
                                                     info.dtype),
    }


def check_device(name: str) -> torch.device:
    """`name` as a torch device, or a KairosError saying why it cannot be used."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise KairosError(f"unknown device '{name}': use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise KairosError(f"--device {name}: torch sees no CUDA GPU here")
    return device


DTYPES = ("auto", "float32", "bfloat16")


def check_dtype(name: str, device: torch.device) -> str | None:
    """`--dtype` for the loader (None: its default for the device), or a KairosError naming the problem."""
    if name not in DTYPES:
        raise KairosError(f"unknown --dtype '{name}': use {', '.join(DTYPES)}")
    if name == "auto":
        return None
    if name == "bfloat16" and device.type == "cpu" and not cpu_supports_bfloat16():
        raise KairosError("--dtype bfloat16: this CPU has no native bfloat16 (AVX512-BF16 or AMX); use float32")
    return name


def cpu_supports_bfloat16() -> bool:
    """Whether the CPU computes bfloat16 natively (oneDNN's AVX512-BF16 or AMX kernels)."""
    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool((check is not None and check()) or (amx is not None and amx()))


def device_name(device: torch.device) -> str:
    """The GPU's name as CUDA reports it (what `kairos bench --gpu` and the catalog match), else "cpu"."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


def log_config() -> dict[str, Any]:
    """uvicorn's logging setup plus the `kairos` logger (one line per request), in the same format."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["loggers"]["kairos"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def run_server(config: ServeConfig) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM end it gracefully)."""
    app = build_app(config)
    # Everything loaded so far (model, tokenizer, libraries) lives for the whole process:
    # moving it out of the collector's view keeps full collections, which pause the
    # engine thread mid-step, short (vLLM freezes its startup objects the same way).
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host=config.host, port=config.port, log_config=log_config(), access_log=False,
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
