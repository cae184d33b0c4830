"""The front-end probe: a served engine's own time per request, split off the client's TTFT."""

from __future__ import annotations

import asyncio

import pytest

from kairos.errors import KairosError
from kairos.probes.front_end import FrontEndSample, fit_front_end, probe_front_end
from test_bench_fake_server import MODEL, FakeServer


def test_fit_is_a_line_through_the_medians():
    samples = [FrontEndSample(n, 0.004 + 2e-6 * n + extra + 0.001 * n / 100, 0.001 * n / 100)
               for n in (100, 1000) for extra in (0.0, 0.0, 0.05)]  # one outlier per length
    request_s, per_token_s = fit_front_end(samples)
    assert request_s == pytest.approx(0.004) and per_token_s == pytest.approx(2e-6)
    flat = [FrontEndSample(n, 0.005 - 1e-7 * n, 0.0) for n in (10, 1000)]
    assert fit_front_end(flat)[1] == 0.0


def test_the_probe_recovers_a_fake_servers_front_end():
    with FakeServer(ttft_s=0.02, itl_s=0.0, prefill_s_per_token=10e-6, front_end_s_per_token=20e-6) as server:
        samples = asyncio.run(probe_front_end(server.url, MODEL, 2048, 4096, prompt_lens=(16, 2048), repeats=3))
    assert len(samples) == 6 and all(s.engine_s == pytest.approx(10e-6 * s.prompt_len) for s in samples)
    request_s, per_token_s = fit_front_end(samples)
    # Loopback HTTP adds a little to the fake's own 20 ms.
    assert 0.02 <= request_s < 0.035
    assert per_token_s == pytest.approx(20e-6, rel=0.25)


def test_a_server_without_engine_timings_is_refused():
    with FakeServer() as server:
        server_url = server.url
        with pytest.raises(KairosError, match="request_prefill_time_seconds"):
            asyncio.run(probe_front_end(server_url + "/nothing-here", MODEL, 2048, 4096, repeats=1))
