"""Calibrating a server without a step log (vLLM) from outside: against a fake vLLM whose steps take
known times, the fitted profile must predict them."""

from __future__ import annotations

import asyncio
import json
import math
import multiprocessing
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Self

import pytest

from cli_helpers import kairos, one_line_error
from kairos.calibration.model import CalibratedModel
from kairos.calibration.profile import load_profile
from kairos.cli.errors import run_app
from kairos.cli.main import app
from kairos.engine.batch_shape import BatchShape
from kairos.probes.blackbox import (ServerFacts, SteadyDecode, cache_config, calibration_grid, chunk_shapes,
                                    metric_totals)
from test_bench_fake_server import _send_event, _send_json, _send_text, read_request, serve_connection

MODEL = "fake-vllm"
MAX_MODEL_LEN = 2048
MODEL_CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 2048,
                "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 2, "max_position_embeddings": MAX_MODEL_LEN, "torch_dtype": "float32"}
# The fake engine's step: 4 ms + 0.25 ms per decode + 0.02 ms per prefill token; the first step after
# the engine sat idle g seconds takes WAKE_S x (1 - exp(-g / WAKE_TAU_S)) more.
STEP_S, PER_DECODE_S, PER_PREFILL_TOKEN_S = 4e-3, 0.25e-3, 0.02e-3
WAKE_S, WAKE_TAU_S = 6e-3, 0.5
SEQS, BUDGET, BLOCK = 8, 256, 16
LOAD_REQUESTS = 16  # the load phase's (a few seconds against the fake)


def known_step_s(shape: BatchShape) -> float:
    return STEP_S + PER_DECODE_S * shape.num_decodes + PER_PREFILL_TOKEN_S * sum(shape.prefill_new)


def known_wake_s(idle_s: float) -> float:
    return WAKE_S * -math.expm1(-idle_s / WAKE_TAU_S)


async def _sleep_until(deadline: float) -> None:
    """asyncio.sleep wakes up to a millisecond late (epoll's timeout is in whole milliseconds);
    time.sleep in a helper thread does not, and wakes the loop at once."""
    left = deadline - time.monotonic()
    if left > 0:
        await asyncio.get_running_loop().run_in_executor(None, time.sleep, left)


@dataclass(eq=False)
class _Request:
    prompt: list[int]
    max_tokens: int
    arrival: float
    streamed: bool = True
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    scheduled: float = 0.0
    first_token: float = 0.0
    computed: int = 0  # prompt tokens in the KV cache
    generated: int = 0
    last_token: float = 0.0


class FakeVLLM:
    """An OpenAI completions server on an engine loop that batches like vLLM's scheduler: every step
    decodes the running requests and fills the rest of its token budget with prefill chunks
    (at most `max_num_seqs` running), takes `known_step_s` of its shape, and streams one token per
    request it sampled (the first step after an idle spell takes `known_wake_s` more; every step
    takes `load_slowdown` times as long while more than one streamed request runs, a slowdown
    of served traffic that the probes never meet). /metrics reports vLLM's per-request queue and
    prefill times (observed when a request ends), prefix-cache hits and cache_config_info;
    /kairos/engine is not there."""

    def __init__(self, *, metrics: bool = True, front_end_s: float = 0.002, process: bool = False,
                 load_slowdown: float = 1.0) -> None:
        # In a process of its own, the fake's steps do not wait for the client's thread to let go of the GIL.
        self.metrics, self.front_end_s, self.process = metrics, front_end_s, process
        self.load_slowdown = load_slowdown
        self.prefill_sum = self.queue_sum = 0.0
        self.finished = self.hits = self.generated = 0
        self.itl_sum, self.itl_count, self.first_tokens, self.iterations = 0.0, 0, 0, 0
        self.cache: set[tuple[int, ...]] = set()
        self.late_s, self.steps = 0.0, 0  # how much later than known_step_s the steps ended, in all
        self.waiting: list[_Request] = []
        self.running: list[_Request] = []
        self._started = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        if self.process:
            context = multiprocessing.get_context("spawn")
            ports = context.Queue()
            self._child = context.Process(target=_serve_fake, daemon=True,
                                          args=(self.metrics, self.front_end_s, self.load_slowdown, ports))
            self._child.start()
            self.port = ports.get(timeout=60)
            return self
        self._thread.start()
        assert self._started.wait(5), "fake server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process:
            self._child.terminate()
            self._child.join(5)
            return
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop, self._work = asyncio.Event(), asyncio.Event()
        server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        engine = asyncio.create_task(self._engine())
        self._started.set()
        async with server:
            await self._stop.wait()
        engine.cancel()

    # ---- the engine ----

    async def _engine(self) -> None:
        while True:
            wake = 0.0
            if not self.waiting and not self.running:
                self._work.clear()
                idle_since = time.monotonic()
                await self._work.wait()
                wake = known_wake_s(time.monotonic() - idle_since)
            start = time.monotonic()
            budget = BUDGET
            decodes = [r for r in self.running if r.computed == len(r.prompt)]
            budget -= len(decodes)
            chunks: list[tuple[_Request, int]] = []
            for r in self.running:
                if r.computed < len(r.prompt) and budget > 0:
                    chunks.append((r, min(budget, len(r.prompt) - r.computed)))
                    budget -= chunks[-1][1]
            while self.waiting and len(self.running) < SEQS and budget > 0:
                r = self.waiting.pop(0)
                r.scheduled = start
                r.computed = self._cached(r.prompt)
                self.hits += r.computed
                self.running.append(r)
                chunks.append((r, min(budget, len(r.prompt) - r.computed)))
                budget -= chunks[-1][1]
            shape = BatchShape(tuple(n for _, n in chunks), (), len(decodes))
            loaded = sum(r.streamed for r in self.running) > 1
            step_s = known_step_s(shape) * (self.load_slowdown if loaded else 1.0) + wake
            await _sleep_until(start + step_s)
            end = time.monotonic()
            self.late_s += end - start - step_s
            self.steps += 1
            sampled = list(decodes)
            self.iterations += bool(decodes) or any(r.computed + n == len(r.prompt) for r, n in chunks)
            for r, n in chunks:
                r.computed += n
                if r.computed == len(r.prompt):
                    r.first_token = end
                    self.first_tokens += 1
                    sampled.append(r)
                    for k in range(BLOCK, len(r.prompt) + 1, BLOCK):
                        self.cache.add(tuple(r.prompt[:k]))
            for r in sampled:
                if r.generated:
                    self.itl_sum += end - r.last_token
                    self.itl_count += 1
                r.last_token = end
                self.generated += 1
                r.generated += 1
                done = r.generated == r.max_tokens
                r.events.put_nowait((r.generated, done))
                if done:
                    self.running.remove(r)
                    self.finished += 1
                    self.prefill_sum += r.first_token - r.scheduled
                    self.queue_sum += r.scheduled - r.arrival
            await asyncio.sleep(0)  # let the handlers stream, as vLLM's output thread does

    def _abort(self, request: _Request) -> None:
        for queue in (self.waiting, self.running):
            if request in queue:
                queue.remove(request)
                self.finished += 1
                self.prefill_sum += max(0.0, request.first_token - request.scheduled)

    def _cached(self, prompt: list[int]) -> int:
        cached = 0
        for k in range(BLOCK, len(prompt), BLOCK):  # the last token is always computed
            if tuple(prompt[:k]) not in self.cache:
                break
            cached = k
        return cached

    # ---- HTTP ----

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_connection(self._one_request, reader, writer)

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        request = await read_request(reader)
        if request is None:
            return False
        method, path, body = request
        if method == "GET" and path == "/v1/models":
            await _send_json(writer, 200, {"object": "list", "data": [
                {"id": MODEL, "object": "model", "max_model_len": MAX_MODEL_LEN}]})
        elif method == "GET" and path == "/fake/late":
            await _send_json(writer, 200, {"late_s": self.late_s / max(1, self.steps)})
        elif method == "GET" and path == "/version":
            await _send_json(writer, 200, {"version": "0.0.fake"})
        elif method == "GET" and path.partition("?")[0] in ("/metrics", "/metrics/") and self.metrics:
            series = {"prefix_cache_hits_total": self.hits, "request_prefill_time_seconds_sum": self.prefill_sum,
                      "request_prefill_time_seconds_count": self.finished,
                      "request_queue_time_seconds_sum": self.queue_sum,
                      "request_queue_time_seconds_count": self.finished,
                      "inter_token_latency_seconds_sum": self.itl_sum,
                      "inter_token_latency_seconds_count": self.itl_count,
                      "generation_tokens_total": self.generated,
                      "time_to_first_token_seconds_count": self.first_tokens,
                      "iteration_tokens_total_count": self.iterations,
                      "num_requests_running": len(self.running), "num_requests_waiting": len(self.waiting)}
            labels = f'block_size="{BLOCK}",enable_prefix_caching="True",engine="0",num_gpu_blocks="4096"'
            await _send_text(writer, f"vllm:cache_config_info{{{labels}}} 1.0\n" + "".join(
                f'vllm:{name}{{engine="0"}} {float(value)}\n' for name, value in series.items()))
        elif method == "POST" and path == "/v1/completions":
            return await self._complete(reader, writer, json.loads(body))
        else:
            await _send_json(writer, 404, {"error": {"message": f"no route {path}"}})
        return True

    async def _complete(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: dict) -> bool:
        await asyncio.sleep(self.front_end_s)
        request = _Request(list(body["prompt"]), body["max_tokens"], time.monotonic(), bool(body.get("stream")))
        self.waiting.append(request)
        self._work.set()
        if not body.get("stream"):
            closed = asyncio.ensure_future(reader.read(1))  # b"" once the client hangs up
            done = False
            while not done:
                event = asyncio.ensure_future(request.events.get())
                await asyncio.wait({event, closed}, return_when=asyncio.FIRST_COMPLETED)
                if not event.done():  # the client hung up: abort, as vLLM does
                    event.cancel()
                    self._abort(request)
                    return False
                done = event.result()[1]
            closed.cancel()
            await asyncio.gather(closed, return_exceptions=True)  # the reader is free for the next request
            await _send_json(writer, 200, {"object": "text_completion", "model": MODEL, "choices": [
                {"index": 0, "text": " tok" * request.max_tokens, "finish_reason": "length"}],
                "usage": {"prompt_tokens": len(request.prompt), "completion_tokens": request.max_tokens}})
            return True
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        done = False
        while not done:
            generated, done = await request.events.get()
            await _send_event(writer, json.dumps({"object": "text_completion", "model": MODEL, "choices": [
                {"index": 0, "text": " tok", "finish_reason": "length" if done else None}],
                "usage": {"prompt_tokens": len(request.prompt), "completion_tokens": generated}}))
        await _send_event(writer, "[DONE]")
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True


def _serve_fake(metrics: bool, front_end_s: float, load_slowdown: float, ports) -> None:
    server = FakeVLLM(metrics=metrics, front_end_s=front_end_s, load_slowdown=load_slowdown)
    with server:
        ports.put(server.port)
        server._thread.join()


# ---- pieces -------------------------------------------------------------------------


def test_metric_totals_read_what_the_probes_need():
    text = ('vllm:request_prefill_time_seconds_sum{engine="0"} 1.5\n'
            'vllm:request_prefill_time_seconds_count{engine="0"} 3\n'
            'vllm:inter_token_latency_seconds_sum{engine="0",model_name="m"} 0.25\n'
            'vllm:inter_token_latency_seconds_count{engine="0",model_name="m"} 10\n'
            'vllm:inter_token_latency_seconds_bucket{engine="0",le="0.01"} 4\n'
            'vllm:prefix_cache_hits_total{engine="0"} 64\n'
            'vllm:generation_tokens_total{engine="0"} 13\n'
            'vllm:time_to_first_token_seconds_count{engine="0"} 4\n')
    totals = metric_totals(text)
    assert (totals["prefill_sum"], totals["prefill_count"], totals["itl_sum"], totals["itl_count"],
            totals["hits"], totals["gen"], totals["ttft_count"]) == (1.5, 3, 0.25, 10, 64, 13, 4)


def test_chunks_of_a_long_prompt():
    assert chunk_shapes(600, 256) == [BatchShape((256,), (0,), 0, 0, 0), BatchShape((256,), (256,), 0, 0, 0),
                                      BatchShape((88,), (512,), 0, 0, 1)]


def test_cache_config_labels():
    text = 'x 1\nvllm:cache_config_info{block_size="32",engine="0",num_gpu_blocks="4096"} 1.0\n'
    assert cache_config(text) == {"block_size": "32", "engine": "0", "num_gpu_blocks": "4096"}
    assert cache_config("nothing") == {}


# ---- end to end against the fake ----------------------------------------------------


@pytest.fixture(scope="module")
def model_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "config.json"
    path.write_text(json.dumps(MODEL_CONFIG))
    return path


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, model_config):
    path = tmp_path_factory.mktemp("blackbox") / "profile.json"
    with FakeVLLM(process=True) as server:
        code = run_app(app, ["calibrate", "--url", f"{server.url}/v1", "--model-config", str(model_config),
                             "--max-num-seqs", str(SEQS), "--max-num-batched-tokens", str(BUDGET),
                             "--repeats", "1", "--load-requests", str(LOAD_REQUESTS), "-q", "-o", str(path)])
        with urllib.request.urlopen(f"{server.url}/fake/late") as response:
            late_s = json.loads(response.read())["late_s"]
    assert code == 0
    return path, late_s


def test_the_profile_records_varlen_attention_and_the_model_runs_on_it(calibrated):
    path, _ = calibrated
    assert json.loads(path.read_text())["engine"]["attention"] == "varlen"
    assert CalibratedModel(path).layout.kind == "varlen"


def test_the_fit_predicts_the_fake_engines_known_step_times(calibrated):
    path, late_s = calibrated
    # The fake's steps end a little late (waking its thread; more on a loaded machine).
    assert 0 <= late_s < 3e-3
    profile = load_profile(path)
    assert profile["measurement"]["method"] == "black-box" and profile["model"] == MODEL
    assert profile["engine"]["block_size"] == BLOCK and profile["engine"]["max_num_seqs"] == SEQS
    kinds = {p["kind"] for p in profile["points"]}
    assert kinds == {"prefill", "prefill_chunk", "decode", "mixed"}
    # Prefills on cached context were measured with the cache hits the server reported.
    assert any(p["kind"] == "prefill" and p["prefill_ctx"][0] > 0 for p in profile["points"])
    model = CalibratedModel(profile)
    shapes = [BatchShape((n,), (0,), 0, 0, 1) for n in (16, 100, 256)]
    shapes += [BatchShape((200,), (256,), 0, 0, 1)]
    shapes += [BatchShape((), (), b, b * (ctx + 40), b, ctx + 40) for b in (1, 3, 8) for ctx in (32, 256, 900)]
    shapes += [BatchShape((n,), (0,), b, b * 300, b + 1, 300) for b, n in ((1, 200), (4, 64), (6, 250))]
    for shape in shapes:
        predicted, known = model.step_time(shape), known_step_s(shape) + late_s
        assert predicted == pytest.approx(known, rel=0.15), (shape, predicted, known)
    # The wake probes and the idle prefills' gaps give the fake's first step after an idle spell.
    assert profile["idle_time_constant_s"] > 0
    for idle_s in (0.2, 1.0, 4.0):
        assert model.idle_penalty(idle_s) == pytest.approx(known_wake_s(idle_s), abs=3e-3), idle_s
    # The fake's front-end: 2 ms asleep plus loopback HTTP and parsing.
    assert 0.002 <= profile["request_latency_s"] < 0.02


def test_the_load_phase_finds_the_fake_as_fast_under_load_as_probed(calibrated):
    path, _ = calibrated
    load = load_profile(path)["measurement"]["load_phase"]
    assert load["requests"] == LOAD_REQUESTS and load["rate_per_s"] > 0
    # The fake's steps take their known times whatever else runs.
    assert load["factor"] == pytest.approx(1.0, abs=0.12)
    assert load["fitted"]["tpot_s"] == pytest.approx(load["measured"]["tpot_s"], rel=0.01)
    assert load["fitted"]["ttft_s"] == pytest.approx(load["measured"]["ttft_s"], rel=0.01)


def test_the_load_phase_scales_the_fit_to_an_engine_slower_under_traffic(model_config, tmp_path):
    path = tmp_path / "profile.json"
    with FakeVLLM(process=True, load_slowdown=1.5) as server:
        code = run_app(app, ["calibrate", "--url", server.url, "--model-config", str(model_config),
                             "--max-num-seqs", str(SEQS), "--max-num-batched-tokens", str(BUDGET), "--quick",
                             "--load-requests", str(3 * LOAD_REQUESTS), "-q", "-o", str(path)])
    assert code == 0
    load = load_profile(path)["measurement"]["load_phase"]
    # The probes never run two streamed requests at once: their fit is the fake's unloaded speed.
    assert load["probes_fit"]["tpot_s"] < 0.9 * load["measured"]["tpot_s"]
    assert load["factor"] > 1.1
    assert load["fitted"]["tpot_s"] == pytest.approx(load["measured"]["tpot_s"], rel=0.01)


def test_the_profile_simulates(capsys, calibrated, tmp_path):
    calibrated = calibrated[0]
    config = tmp_path / "model.json"
    config.write_text(json.dumps(MODEL_CONFIG))
    code, out, err = kairos(capsys, "simulate", "--model", str(config), "--perf", f"calibrated:{calibrated}",
                            "--num-requests", "30", "-o", str(tmp_path))
    assert code == 0, err
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["summary"]["completed"] > 20


def test_the_grid_leaves_room_for_the_decode_window_and_the_mixed_prompt():
    facts = ServerFacts(MODEL, 4096, MODEL_CONFIG, 2048, 64, 512, 32, 4096, True, "vLLM test")
    probes = calibration_grid(facts)
    decodes = [p for p in probes if isinstance(p, SteadyDecode)]
    assert {p.batch for p in decodes} == {1, 2, 4, 8, 16, 32, 64}
    for p in decodes:
        assert p.prompt + p.output <= 4096
        # The B requests' own suffixes are prefilled in one step together, on a prefix of whole blocks.
        assert p.batch * p.suffix <= 512 and p.prefix % 32 == 0
        assert p.extras == 0 or (p.batch < 64 and 16 <= p.extra <= 512 - p.batch)
    assert {(p.prefix, p.suffix) for p in decodes if p.batch == 64} == {(32, 8), (256, 8), (1024, 8)}


# ---- refusals -----------------------------------------------------------------------


def test_a_server_without_metrics_is_refused_in_one_line(capsys, model_config, tmp_path):
    with FakeVLLM(metrics=False) as server:
        line = one_line_error(capsys, "calibrate", "--url", server.url, "--model-config", str(model_config),
                              "--max-num-seqs", "8", "--max-num-batched-tokens", "256", "-o",
                              str(tmp_path / "p.json"))
    assert "/metrics did not answer" in line


def test_missing_model_config_and_limits_are_refused_in_one_line(capsys, model_config, tmp_path):
    with FakeVLLM() as server:
        line = one_line_error(capsys, "calibrate", "--url", server.url, "--max-num-seqs", "8",
                              "--max-num-batched-tokens", "256", "-o", str(tmp_path / "p.json"))
        assert "--model-config" in line
        line = one_line_error(capsys, "calibrate", "--url", server.url, "--model-config", str(model_config),
                              "--max-num-batched-tokens", "256", "-o", str(tmp_path / "p.json"))
        assert "--max-num-seqs" in line
        line = one_line_error(capsys, "calibrate", "--url", server.url,
                              "--model-config", str(tmp_path / "missing.json"), "-o", str(tmp_path / "p.json"))
        assert "no such file" in line
