"""Shared pytest configuration."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(request):
    """Tests of our torch engine pin it to one thread: small ops on a busy 2-core box run slower with two."""
    if not request.module.__name__.split(".")[-1].startswith(("test_serve", "test_calibration_engine")):
        yield
        return
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
