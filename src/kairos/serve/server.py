"""`kairos serve`: the OpenAI-compatible HTTP server (FastAPI + uvicorn) around one real engine.

Endpoints: POST /v1/completions, POST /v1/chat/completions, GET /v1/models,
GET /health, GET /metrics (Prometheus, vLLM names), GET /kairos/steps (the step
log, for `kairos calibrate --url`), GET /kairos/engine (engine
facts for benchmarks and twin validation), GET /version.
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
from kairos.serve.engine_loop import EngineLoop
from kairos.serve.loader import PRESETS, LoadedModel, load_model
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
    """

    model: str = "tiny"
    served_model_name: str | None = None
    device: str = "cpu"
    seed: int = 0
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    # Waiting requests beyond this are refused with 429.
    max_waiting: int = 1024
    host: str = "127.0.0.1"
    port: int = 8000

    @property
    def model_name(self) -> str:
        return self.served_model_name or self.model


def build_app(config: ServeConfig, loaded: LoadedModel | None = None) -> FastAPI:
    """Load the model (unless given), build the engine and return the app; the engine thread runs with the app."""
    if loaded is None:
        loaded = load_model(config.model, check_device(config.device), seed=config.seed)
    # The engine never stops on EOS by itself: the engine loop decides per request.
    runner = EngineRunner(loaded, dataclasses.replace(config.runner, ignore_eos=True, seed=config.seed))
    name = config.model_name
    max_model_len = min(loaded.config.max_position_embeddings, runner.max_tokens_per_request)
    facts = engine_facts(config, loaded, runner, max_model_len)
    metrics = PrometheusMetrics(name, {"block_size": facts["block_size"], "num_gpu_blocks": facts["num_gpu_blocks"],
                                       "enable_prefix_caching": facts["enable_prefix_caching"]})
    engine = EngineLoop(runner, config.max_waiting, metrics)
    model_dir = None if config.model in PRESETS else Path(config.model)
    serving = OpenAIServing(engine, ServedModel(name, loaded.tokenizer, loaded.config.vocab_size, max_model_len,
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
        # torch's thread count is process-wide and may change after startup (tests pin it).
        body = {**facts, "torch_threads": torch.get_num_threads(),
                "stats": dataclasses.asdict(engine.snapshot)}
        return JSONResponse(body)

    @app.get("/kairos/steps")
    async def step_log(since: int = 0) -> JSONResponse:
        # Every step's shape and engine-loop time, for `kairos calibrate --url`.
        next_index, steps = engine.steps.since(max(0, since))
        return JSONResponse({"next": next_index, "steps": steps})

    @app.get("/version")
    async def version() -> dict[str, str]:
        return {"version": kairos.__version__}

    return app


def engine_facts(config: ServeConfig, loaded: LoadedModel, runner: EngineRunner, max_model_len: int) -> dict[str, Any]:
    """What a benchmark or the digital twin needs to rebuild this engine (GET /kairos/engine)."""
    rc = runner.config
    return {
        "model": config.model_name,
        "model_config": loaded.config.to_hf(),
        "device": device_name(loaded.device),
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "block_size": rc.block_size,
        "num_gpu_blocks": runner.kv.num_blocks,
        "max_num_seqs": rc.max_num_seqs,
        "max_num_batched_tokens": rc.max_num_batched_tokens,
        "enable_prefix_caching": rc.enable_prefix_caching,
        "enable_chunked_prefill": rc.enable_chunked_prefill,
        "policy": rc.policy,
        "max_model_len": max_model_len,
        "max_waiting": config.max_waiting,
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
