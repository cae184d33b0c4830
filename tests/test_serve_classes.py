"""kairos serve: a request's class (priority, user, x-slo-* headers) reaches its RequestSpec; --api-key."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from test_serve_server import serve

from kairos.serve.request_class import HeaderError, ServedClass, served_class
from kairos.workload.spec import SLO, RequestSpec

BODY = {"prompt": "Hello", "max_tokens": 2}
CLASS_HEADERS = {"x-slo-ttft-ms": "250", "x-slo-tpot-ms": "40.5", "x-slo-class": "interactive",
                 "x-deadline-s": "30"}


@pytest.fixture(scope="module")
def tiny():
    from kairos.serve import load_model

    return load_model("tiny")


def test_headers_and_user_make_the_class() -> None:
    assert served_class(None, {}) == ServedClass()
    assert served_class("alice", {**CLASS_HEADERS, "x-slo-e2e-ms": "1e4"}) == ServedClass(
        "alice", SLO(250.0, 40.5, 10_000.0), "interactive", 30.0)
    assert served_class("alice", {"x-tenant": "team-b"}).tenant == "team-b"


@pytest.mark.parametrize(("header", "value"), [
    ("x-slo-ttft-ms", "fast"), ("x-slo-tpot-ms", "0"), ("x-slo-e2e-ms", "inf"), ("x-deadline-s", "-1"),
    ("x-slo-class", " "), ("x-tenant", ""),
])
def test_bad_header_values_are_refused(header: str, value: str) -> None:
    with pytest.raises(HeaderError, match=header) as info:
        served_class(None, {header: value})
    assert info.value.header == header


def test_the_class_reaches_the_engines_request_spec(tiny, monkeypatch) -> None:
    with serve("thread", tiny) as client:
        core = client.app.state.engine.worker.runner.engine
        specs: list[RequestSpec] = []
        add = core.add_request

        def recording(spec: RequestSpec, now: float, **options: bool):  # type: ignore[no-untyped-def]
            specs.append(spec)
            return add(spec, now, **options)

        monkeypatch.setattr(core, "add_request", recording)
        r = client.post("/v1/completions", json={**BODY, "priority": 3, "user": "alice"}, headers=CLASS_HEADERS)
        assert r.status_code == 200
        chat = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "priority": -1, "user": "bob"}
        assert client.post("/v1/chat/completions", json=chat, headers={"x-tenant": "team-b"}).status_code == 200
        assert client.post("/v1/completions", json=BODY).status_code == 200
    first, second, plain = specs
    assert (first.priority, first.tenant, first.slo_class, first.deadline_s) == (3, "alice", "interactive", 30.0)
    assert first.slo == SLO(ttft_ms=250.0, tpot_ms=40.5)
    assert (second.priority, second.tenant, second.slo) == (-1, "team-b", None)
    assert (plain.priority, plain.tenant, plain.slo, plain.slo_class, plain.deadline_s) == (0, None, None, None, None)


def test_bad_header_is_an_openai_400(tiny) -> None:
    with serve("thread", tiny) as client:
        r = client.post("/v1/completions", json=BODY, headers={"x-slo-ttft-ms": "soon"})
        assert r.status_code == 400
        error = r.json()["error"]
        assert error["param"] == "x-slo-ttft-ms" and "must be a number > 0" in error["message"]
        r = client.post("/v1/completions", json={**BODY, "user": 7})
        assert r.status_code == 400 and r.json()["error"]["param"] == "user"


def test_api_key_guards_v1_routes_only(tiny) -> None:
    with serve("thread", tiny, api_key="s3cret") as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            r = client.post("/v1/completions", json=BODY, headers=headers)
            assert r.status_code == 401
            assert r.json()["error"]["code"] == "invalid_api_key"
            assert client.get("/v1/models", headers=headers).status_code == 401
        good = {"Authorization": "Bearer s3cret"}
        assert client.post("/v1/completions", json=BODY, headers=good).status_code == 200
        assert client.get("/v1/models", headers=good).status_code == 200
        for path in ("/health", "/metrics", "/version", "/kairos/engine"):
            assert client.get(path).status_code == 200, path


def test_bench_sends_the_class_kairos_serve_reads() -> None:
    from kairos.bench.client import class_headers, completion_body

    spec = RequestSpec("r", 0.0, 4, 2, tenant="t1", priority=2, slo=SLO(ttft_ms=250.0, e2e_ms=1e4 / 3),
                       slo_class="batch", deadline_s=600.5)
    body = completion_body(spec, "tiny", "Hi", exact_lengths=False)
    assert (body["user"], body["priority"]) == ("t1", 2)
    assert served_class(body["user"], class_headers(spec)) == ServedClass("t1", spec.slo, "batch", 600.5)
    plain = RequestSpec("p", 0.0, 4, 2)
    assert class_headers(plain) == {}
    assert "user" not in completion_body(plain, "tiny", "Hi", False)
    assert "priority" not in completion_body(plain, "tiny", "Hi", False)
