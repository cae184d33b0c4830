"""kairos serve over real HTTP: OpenAI shapes, streaming, metrics, engine facts, errors and disconnects.

Every test that takes `client` (or `mode`) runs twice: with the engine on a thread
of the server process, and in an engine process of its own (the default of `kairos serve`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from fastapi import FastAPI  # noqa: E402

from kairos.errors import KairosError  # noqa: E402
from kairos.serve import EngineRunner, RunnerConfig, load_model  # noqa: E402
from kairos.serve.server import ServeConfig, build_app  # noqa: E402

PROMPT = "The quick brown fox"
NUM_BLOCKS = 64  # 1024 tokens: also the context (max_model_len) of these servers


class ServerClient(httpx.Client):
    """A client of one test server, holding its app (and so its engine loop)."""

    app: FastAPI
    mode: str


@contextmanager
def serve(mode: str, loaded, **overrides) -> Iterator[ServerClient]:
    """A real uvicorn server on a free port, in a background thread; yields a client for it.

    mode "thread" runs the engine on a thread with the `loaded` model; "process"
    spawns an engine process, which builds the same seeded model itself.
    """
    runner = RunnerConfig(num_blocks=NUM_BLOCKS, max_num_seqs=overrides.pop("max_num_seqs", 256))
    config = ServeConfig(model="tiny", runner=runner, engine_process=mode == "process", **overrides)
    app = build_app(config, loaded if mode == "thread" else None)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.01)
    try:
        with ServerClient(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=30) as client:
            client.app, client.mode = app, mode
            yield client
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny")


@pytest.fixture(scope="module", params=["thread", "process"])
def mode(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def client(mode, tiny):
    with serve(mode, tiny) as c:
        yield c


def events(response: httpx.Response) -> list[dict | str]:
    """The `data:` payloads of an SSE response, parsed ("[DONE]" kept as text)."""
    out: list[dict | str] = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            data = line[len("data: "):]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def stream(client: httpx.Client, path: str, body: dict) -> list[dict | str]:
    with client.stream("POST", path, json={**body, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return events(response)


def engine_idle(client: httpx.Client, timeout_s: float = 10) -> dict:
    """Wait until the engine holds no request; return its stats."""
    deadline = time.monotonic() + timeout_s
    while True:
        stats = client.get("/kairos/engine").json()["stats"]
        if stats["num_running"] == stats["num_waiting"] == 0 and stats["kv_cache_usage"] == 0:
            return stats
        assert time.monotonic() < deadline, f"engine still busy: {stats}"
        time.sleep(0.02)


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    """One sample of /metrics (the sum over series matching `labels`)."""
    total, found = 0.0, False
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    assert found, f"{name} not in /metrics"
    return total


# ---- completions ---------------------------------------------------------------------------
def test_completion_matches_engine_runner_greedy(client, tiny):
    prompt_ids = tiny.tokenizer.encode(PROMPT)
    expected = EngineRunner(tiny, RunnerConfig(num_blocks=NUM_BLOCKS, ignore_eos=True)).generate(
        [prompt_ids], max_tokens=16)[0]
    r = client.post("/v1/completions", json={"model": "tiny", "prompt": PROMPT, "max_tokens": 16, "temperature": 0,
                                             "ignore_eos": True, "return_token_ids": True})
    assert r.status_code == 200
    body = r.json()
    choice = body["choices"][0]
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-") and body["model"] == "tiny"
    assert choice["token_ids"] == expected and choice["prompt_token_ids"] == prompt_ids
    assert choice["text"] == tiny.tokenizer.decode(expected)
    assert choice["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": len(prompt_ids), "completion_tokens": 16,
                             "total_tokens": len(prompt_ids) + 16}
    # Token ids as the prompt give the same answer.
    by_ids = client.post("/v1/completions", json={"prompt": prompt_ids, "max_tokens": 16, "temperature": 0,
                                                  "ignore_eos": True}).json()
    assert by_ids["choices"][0]["text"] == choice["text"]
    # Without ignore_eos the server stops where an EOS-stopping runner does.
    stops_at_eos = EngineRunner(tiny, RunnerConfig(num_blocks=NUM_BLOCKS)).generate([prompt_ids], max_tokens=64)[0]
    r = client.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 64, "temperature": 0,
                                             "return_token_ids": True})
    assert r.json()["choices"][0]["token_ids"] == stops_at_eos


def test_completion_stream_one_event_per_token(client):
    body = {"prompt": PROMPT, "max_tokens": 20, "temperature": 0, "ignore_eos": True}
    full = client.post("/v1/completions", json=body).json()["choices"][0]["text"]
    chunks = stream(client, "/v1/completions", {**body, "stream_options": {"include_usage": True}})
    assert chunks[-1] == "[DONE]"
    token_chunks = [c for c in chunks[:-1] if c["choices"]]
    assert len(token_chunks) == 20
    assert [c["choices"][0]["finish_reason"] for c in token_chunks] == [None] * 19 + ["length"]
    assert "".join(c["choices"][0]["text"] for c in token_chunks) == full
    assert chunks[-2]["choices"] == [] and chunks[-2]["usage"]["completion_tokens"] == 20


def test_stream_continuous_usage_counts_tokens(client):
    chunks = stream(client, "/v1/completions", {"prompt": [5, 6, 7], "max_tokens": 6, "ignore_eos": True,
                                                "stream_options": {"include_usage": True,
                                                                   "continuous_usage_stats": True}})
    counts = [c["usage"]["completion_tokens"] for c in chunks[:-1] if isinstance(c, dict) and c["choices"]]
    assert counts == [1, 2, 3, 4, 5, 6]


def test_sampling_with_seed_is_reproducible(client):
    body = {"prompt": PROMPT, "max_tokens": 12, "temperature": 1.0, "top_p": 0.9, "top_k": 50, "seed": 7,
            "ignore_eos": True, "return_token_ids": True}
    first, second = (client.post("/v1/completions", json=body).json()["choices"][0]["token_ids"] for _ in range(2))
    assert first == second and len(first) == 12


def test_stop_token_ids_and_min_tokens(client):
    base = {"prompt": PROMPT, "max_tokens": 16, "temperature": 0, "ignore_eos": True, "return_token_ids": True}
    free = client.post("/v1/completions", json=base).json()["choices"][0]["token_ids"]
    stop = free[4]
    cut = free.index(stop) + 1
    stopped = client.post("/v1/completions", json={**base, "stop_token_ids": [stop]}).json()["choices"][0]
    assert stopped["token_ids"] == free[:cut] and stopped["finish_reason"] == "stop"
    # min_tokens past the stop token's position: the stop token is ignored until then.
    later = [i + 1 for i, t in enumerate(free) if t == stop and i + 1 > cut]
    held = client.post("/v1/completions", json={**base, "stop_token_ids": [stop], "min_tokens": cut + 1}).json()
    expected = free[:later[0]] if later else free
    assert held["choices"][0]["token_ids"] == expected
    assert engine_idle(client)["num_running"] == 0


def test_stop_string_cuts_text(client):
    base = {"prompt": PROMPT, "max_tokens": 48, "temperature": 0, "ignore_eos": True}
    text = client.post("/v1/completions", json=base).json()["choices"][0]["text"]
    stop = next(text[i:i + 2] for i in range(2, len(text) - 1) if "\ufffd" not in text[i:i + 2])
    expected = text[:text.index(stop)]
    r = client.post("/v1/completions", json={**base, "stop": [stop]}).json()["choices"][0]
    assert r["text"] == expected and r["finish_reason"] == "stop"
    chunks = stream(client, "/v1/completions", {**base, "stop": stop})
    assert "".join(c["choices"][0]["text"] for c in chunks[:-1]) == expected
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    engine_idle(client)


# ---- chat ------------------------------------------------------------------------------------
def test_chat_completion(client, tiny):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    r = client.post("/v1/chat/completions", json={"model": "tiny", "messages": messages, "max_tokens": 8,
                                                  "temperature": 0, "ignore_eos": True})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["choices"][0]["message"]["role"] == "assistant"
    prompt = "<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\n"
    assert body["usage"]["prompt_tokens"] == len(tiny.tokenizer.encode(prompt))
    assert body["usage"]["completion_tokens"] == 8

    chunks = stream(client, "/v1/chat/completions", {"messages": messages, "max_completion_tokens": 8,
                                                     "temperature": 0, "ignore_eos": True})
    assert chunks[0]["object"] == "chat.completion.chunk"
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = [c["choices"][0] for c in chunks[1:-1]]
    assert len(deltas) == 8 and deltas[-1]["finish_reason"] == "length"
    assert "".join(d["delta"]["content"] for d in deltas) == body["choices"][0]["message"]["content"]


def test_openai_client_streams_a_completion(client):
    openai = pytest.importorskip("openai")
    api = openai.OpenAI(base_url=f"{str(client.base_url).rstrip('/')}/v1", api_key="unused", max_retries=0)
    chunks = list(api.completions.create(model="tiny", prompt=PROMPT, max_tokens=8, temperature=0, stream=True,
                                         stream_options={"include_usage": True}, extra_body={"ignore_eos": True}))
    assert len([c for c in chunks if c.choices]) == 8
    assert chunks[-1].usage.completion_tokens == 8
    chat = api.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hello"}], max_tokens=4,
                                       extra_body={"ignore_eos": True})
    assert chat.choices[0].finish_reason == "length" and chat.usage.completion_tokens == 4
    assert [m.id for m in api.models.list()] == ["tiny"]


# ---- info endpoints --------------------------------------------------------------------------
def test_models_health_version(client):
    models = client.get("/v1/models").json()
    assert models["object"] == "list"
    assert models["data"][0]["id"] == "tiny" and models["data"][0]["max_model_len"] == NUM_BLOCKS * 16
    assert client.get("/health").status_code == 200
    assert "version" in client.get("/version").json()


def test_engine_facts(client, tiny):
    facts = client.get("/kairos/engine").json()
    assert facts["model"] == "tiny" and facts["device"] == "cpu"
    assert facts["model_config"] == tiny.config.to_hf()
    assert facts["block_size"] == 16 and facts["num_gpu_blocks"] == NUM_BLOCKS
    assert facts["max_num_seqs"] == 256 and facts["max_num_batched_tokens"] == 2048
    assert facts["enable_prefix_caching"] is True and facts["enable_chunked_prefill"] is True
    assert facts["policy"] == "fcfs" and facts["max_model_len"] == NUM_BLOCKS * 16
    assert facts["engine"] == client.mode and facts["torch_threads"] >= 1
    from kairos.serve.native.build import NativeUnavailable, load_kernels

    assert facts["attention"] == ("padded" if isinstance(load_kernels(), NativeUnavailable) else "varlen")


@pytest.mark.parametrize(("attention", "layout"), [("sdpa", "padded"), ("native", "varlen")])
def test_engine_facts_name_the_attention_kernels(tiny, attention, layout):
    from kairos.serve.native.build import NativeUnavailable, load_kernels
    from kairos.serve.server import start_engine

    if attention == "native" and isinstance(load_kernels(), NativeUnavailable):
        pytest.skip("no native kernels here")
    config = ServeConfig(model="tiny", engine_process=False, runner=RunnerConfig(num_blocks=64, attention=attention))
    _, _, facts = start_engine(config, tiny)
    assert facts["attention"] == layout


def test_dtype_is_checked_against_the_cpu(monkeypatch):
    import torch

    from kairos.serve import server

    assert server.check_dtype("auto", torch.device("cpu")) is None
    assert server.check_dtype("float32", torch.device("cpu")) == "float32"
    with pytest.raises(KairosError, match="unknown --dtype 'half'"):
        server.check_dtype("half", torch.device("cpu"))
    monkeypatch.setattr(server, "cpu_supports_bfloat16", lambda: False)
    with pytest.raises(KairosError, match="no native bfloat16"):
        server.check_dtype("bfloat16", torch.device("cpu"))


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity on this OS")
def test_engine_process_runs_on_the_cpus_it_was_given(tiny):
    cpu = min(os.sched_getaffinity(0))
    with serve("process", tiny, engine_cpus=(cpu,)) as c:
        assert c.get("/kairos/engine").json()["engine_cpus"] == [cpu]
        assert os.sched_getaffinity(c.app.state.engine.pid) == {cpu}
        assert c.post("/v1/completions", json={"model": "tiny", "prompt": "hi", "max_tokens": 3}).status_code == 200
    with pytest.raises(KairosError, match="needs --engine-process"):
        build_app(ServeConfig(model="tiny", engine_process=False, engine_cpus=(cpu,)), tiny)


def test_metrics_use_vllm_names_and_move(client):
    text = client.get("/metrics").text
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                 "vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total", "vllm:num_preemptions_total",
                 "vllm:time_to_first_token_seconds_bucket", "vllm:inter_token_latency_seconds_bucket",
                 "vllm:e2e_request_latency_seconds_bucket"):
        assert f'{name}{{' in text and 'model_name="tiny"' in text, name
    before = {name: metric(client, name) for name in (
        "vllm:e2e_request_latency_seconds_count", "vllm:time_to_first_token_seconds_count",
        "vllm:inter_token_latency_seconds_count", "vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total",
        "vllm:generation_tokens_total")}
    success = metric(client, "vllm:request_success_total", finished_reason="length")
    shared = "a shared prefix long enough to fill two KV blocks of sixteen tokens"
    for _ in range(2):
        client.post("/v1/completions", json={"prompt": shared, "max_tokens": 5, "ignore_eos": True})
    after = {name: metric(client, name) for name in before}
    assert after["vllm:e2e_request_latency_seconds_count"] == before["vllm:e2e_request_latency_seconds_count"] + 2
    assert after["vllm:time_to_first_token_seconds_count"] == before["vllm:time_to_first_token_seconds_count"] + 2
    assert after["vllm:inter_token_latency_seconds_count"] == before["vllm:inter_token_latency_seconds_count"] + 8
    assert after["vllm:generation_tokens_total"] == before["vllm:generation_tokens_total"] + 10
    assert after["vllm:prefix_cache_queries_total"] > before["vllm:prefix_cache_queries_total"]
    assert after["vllm:prefix_cache_hits_total"] >= before["vllm:prefix_cache_hits_total"] + 32
    assert metric(client, "vllm:request_success_total", finished_reason="length") == success + 2
    assert metric(client, "vllm:num_requests_running") == 0
    # What `kairos calibrate --url` reads to tell the server's TTFT from the client's.
    from kairos.probes.served import ttft_totals

    total, count = ttft_totals(client.get("/metrics").text)
    assert count == after["vllm:time_to_first_token_seconds_count"] and total > 0
    assert metric(client, "vllm:kv_cache_usage_perc") == 0


# ---- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("path, body, status, param", [
    ("/v1/completions", b'{"prompt": "x", ', 400, None),
    ("/v1/completions", b'["not", "an", "object"]', 400, None),
    ("/v1/completions", {"prompt": "x", "model": "gpt-4"}, 404, "model"),
    ("/v1/completions", {"prompt": "x", "max_tokens": -3}, 400, "max_tokens"),
    ("/v1/completions", {"prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
    ("/v1/completions", {"prompt": "x", "max_tokens": "5"}, 400, "max_tokens"),
    ("/v1/completions", {"prompt": "x", "temperature": -1}, 400, "temperature"),
    ("/v1/completions", {"prompt": "x", "n": 2}, 400, "n"),
    ("/v1/completions", {"prompt": ["a", "b"]}, 400, "prompt"),
    ("/v1/completions", {"prompt": [1, 99999]}, 400, "prompt"),
    ("/v1/completions", {"prompt": []}, 400, "prompt"),
    ("/v1/completions", {"prompt": [True]}, 400, "prompt"),
    ("/v1/completions", {"max_tokens": 3}, 400, "prompt"),
    ("/v1/completions", {"prompt": "x", "min_tokens": 20, "max_tokens": 4}, 400, "min_tokens"),
    ("/v1/completions", {"prompt": "x" * 2000, "max_tokens": 4}, 413, "max_tokens"),
    ("/v1/completions", {"prompt": "x" * 1000, "max_tokens": 100}, 413, "max_tokens"),
    ("/v1/chat/completions", {"messages": []}, 400, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": 3}]}, 400, "messages.0.content"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x" * 1100}]}, 413, "messages"),
])
def test_bad_requests_get_openai_errors(client, path, body, status, param):
    if isinstance(body, bytes):
        r = client.post(path, content=body, headers={"content-type": "application/json"})
    else:
        r = client.post(path, json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["param"] == param


def test_unknown_route_is_an_openai_404(client):
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and "error" in r.json()


def test_full_waiting_queue_is_refused_with_429(mode, tiny):
    long = {"prompt": PROMPT, "max_tokens": 1000, "ignore_eos": True, "stream": True}
    with serve(mode, tiny, max_num_seqs=1, max_waiting=1) as c:
        with c.stream("POST", "/v1/completions", json=long) as running:
            lines = running.iter_lines()  # kept: dropping the iterator closes the connection
            next(lines)  # it has a token: it runs, and holds the only slot
            with c.stream("POST", "/v1/completions", json=long) as waiting:
                assert waiting.status_code == 200
                r = c.post("/v1/completions", json={"prompt": "x", "max_tokens": 2})
                assert r.status_code == 429 and r.json()["error"]["code"] == "queue_full"
        engine_idle(c)
        assert c.post("/v1/completions", json={"prompt": "x", "max_tokens": 2}).status_code == 200


# ---- disconnects -------------------------------------------------------------------------------
def test_mid_stream_disconnect_aborts_and_frees_kv(client):
    aborted = metric(client, "vllm:request_success_total", finished_reason="abort")
    body = {"prompt": PROMPT, "max_tokens": 1000, "ignore_eos": True, "stream": True}
    for _ in range(3):
        with client.stream("POST", "/v1/completions", json=body) as response:
            lines = response.iter_lines()
            got = [line for line in (next(lines) for _ in range(4)) if line.startswith("data:")]
            assert len(got) == 2
        # Leaving the block closes the connection after two chunks of a 1000-token answer.
    stats = engine_idle(client)
    assert stats["num_free_blocks"] == NUM_BLOCKS
    assert metric(client, "vllm:request_success_total", finished_reason="abort") == aborted + 3
    assert metric(client, "vllm:num_requests_running") == 0 and metric(client, "vllm:kv_cache_usage_perc") == 0
    r = client.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 4, "ignore_eos": True})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 4


def test_non_streaming_client_that_gives_up_aborts(client):
    with pytest.raises(httpx.ReadTimeout):
        client.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 1000, "ignore_eos": True},
                    timeout=0.3)
    engine_idle(client)



def test_engine_failure_fails_requests_and_health(mode, tiny):
    with serve(mode, tiny) as c:
        engine = c.app.state.engine
        if mode == "thread":
            def broken_step():
                raise RuntimeError("simulated engine bug")

            engine.worker.runner.step = broken_step
            expected = "simulated engine bug"
        else:
            os.kill(engine.pid, signal.SIGKILL)
            expected = "engine process exited unexpectedly"
        r = c.post("/v1/completions", json={"prompt": "x", "max_tokens": 2})
        assert r.status_code == 500 and expected in r.json()["error"]["message"]
        assert c.get("/health").status_code == 503
        assert c.post("/v1/completions", json={"prompt": "x", "max_tokens": 2}).status_code == 500


# ---- calibration through the API -----------------------------------------------------------
def test_calibrate_through_the_server(client, tiny, capsys, tmp_path):
    from cli_helpers import kairos

    from kairos.calibration.model import CalibratedModel
    from kairos.calibration.terms import TERMS
    from kairos.engine.batch_shape import BatchShape

    code, out, err = kairos(capsys, "calibrate", "--url", str(client.base_url), "--quick",
                            "-o", str(tmp_path / "profile.json"))
    assert code == 0, err
    profile = json.loads((tmp_path / "profile.json").read_text())
    engine_idle(client)
    assert profile["model"] == "tiny" and profile["model_config"] == tiny.config.to_hf()
    assert profile["engine"]["num_gpu_blocks"] == NUM_BLOCKS
    assert len(profile["points"]) > len(TERMS) and all(p["time_s"] > 0 for p in profile["points"])
    assert 0 <= profile["request_latency_s"] < 1.0 and 0 <= profile["measurement"]["http_latency_s"] < 1.0
    assert f"front-end latency {profile['request_latency_s'] * 1e3:.2f} ms" in out
    assert profile["measurement"]["passes"] == 1 and profile["measurement"]["warmup_phases"] == 0
    model = CalibratedModel(profile)
    assert model.request_latency_s == profile["request_latency_s"]
    one, many = model.step_time(BatchShape((), (), 1, 100, 1)), model.step_time(BatchShape((), (), 64, 6400, 64))
    assert 0 < one <= many


# ---- benchmarking a Kairos server ----------------------------------------------------------
def test_bench_records_every_engine_step_of_the_run(client, capsys, tmp_path):
    from cli_helpers import kairos

    from kairos.bench import load_measured_run

    before = engine_idle(client)["steps"]
    code, _, err = kairos(capsys, "bench", "--url", str(client.base_url), "--num-requests", "5", "--rate", "50",
                          "--vocab-size", "512", "-q", "-o", str(tmp_path / "run"))
    assert code == 0, err
    run = load_measured_run(tmp_path / "run")
    assert len(run.steps) == engine_idle(client)["steps"] - before
    # Every output token was sampled in one of the logged steps, and every prompt token prefilled in one.
    assert sum(step.shape.num_sampled for step in run.steps) == sum(r.output_tokens for r in run.completed)
    assert sum(sum(step.shape.prefill_new) for step in run.steps) <= sum(r.input_tokens for r in run.completed)
    assert run.steps[0].idle_s > 0 and all(step.time_s > 0 for step in run.steps)


def test_calibration_and_bench_carry_the_machine_speed(tiny, capsys, tmp_path):
    from cli_helpers import kairos

    from kairos.bench import load_measured_run

    with serve("thread", tiny, busy_poll_s=0.05, reference_every_s=0.005) as c:
        code, _, err = kairos(capsys, "calibrate", "--url", str(c.base_url), "--quick",
                              "-o", str(tmp_path / "profile.json"))
        assert code == 0, err
        code, _, err = kairos(capsys, "bench", "--url", str(c.base_url), "--num-requests", "5", "--rate", "50",
                              "--vocab-size", "512", "-q", "-o", str(tmp_path / "run"))
        assert code == 0, err
    speed = json.loads((tmp_path / "profile.json").read_text())["machine_speed"]
    assert speed["reference_step_s"] > 0 and speed["latency_phase_factor"] > 0
    assert 0 < speed["steps_with_reading"] <= 1
    run = load_measured_run(tmp_path / "run")
    steps = run.steps
    assert steps and all(step.reference_s > 0 for step in steps)  # the engine idled before the run
    # Step starts on the requests' clock: none before the first request was sent, all within the run.
    last_token = max(r.arrival_s + r.e2e_s for r in run.completed)
    assert all(0 <= step.start_s - run.zero_s <= last_token for step in steps)
    code, out, err = kairos(capsys, "validate", "--against", str(tmp_path / "run"), "--perf",
                            f"calibrated:{tmp_path / 'profile.json'}")
    assert code == 0, err
    assert "machine speed: reference step" in out and "host work scaled by the speed at each step's start" in out
