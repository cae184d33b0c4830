"""Headless Chromium for the HTML report tests: render a page, screenshot it, and check it drew."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest


@dataclass
class Rendered:
    dom: str  # the page after its scripts ran
    pixels: np.ndarray  # the screenshot (height, width, channels)
    errors: list[str]  # console lines of scripts that threw


def render(page: Path, tmp_path: Path) -> Rendered:
    """Open `page` in headless Chromium (Debian's `chromium`); skips the test where it is not installed."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    shot = tmp_path / "shot.png"
    browser = subprocess.run(
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
         "--enable-logging=stderr", "--v=0", "--window-size=1400,2000", "--virtual-time-budget=10000",
         f"--screenshot={shot}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    # Console messages come on stderr: a script that threw logs "Uncaught ...".
    errors = [line for line in browser.stderr.splitlines() if ":CONSOLE" in line and "Uncaught" in line]
    return Rendered(browser.stdout, decode_png(shot.read_bytes()), errors)


def assert_renders(rendered: Rendered, figures: int) -> None:
    """No script error, every plotly figure drawn, and a screenshot that is not blank."""
    assert not rendered.errors, rendered.errors
    # plotly drew every figure: each div holds a plot container with its SVG layers.
    assert rendered.dom.count('class="plot-container plotly"') == figures
    assert rendered.dom.count('class="main-svg"') >= 2 * figures
    pixels = rendered.pixels
    assert pixels.shape[:2] == (2000, 1400)
    colours = np.unique(pixels.reshape(-1, pixels.shape[2]), axis=0)
    assert len(colours) > 100, f"a blank page: {len(colours)} colours"
    assert (pixels.min(axis=2) < 200).mean() > 0.01  # text and lines, not one background


def decode_png(data: bytes) -> np.ndarray:
    """An 8-bit RGB(A), non-interlaced PNG's pixels (height, width, channels).

    Each filtered byte depends on its left, upper and upper-left neighbours, so pixels are
    unfiltered one anti-diagonal at a time, each diagonal in one numpy pass."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, []
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    assert depth == 8 and color in (2, 6) and not interlace, "not an 8-bit RGB(A) PNG"
    channels = 3 if color == 2 else 4
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(height, 1 + width * channels)
    filters = raw[:, 0].astype(np.int32)
    filtered = raw[:, 1:].reshape(height, width, channels).astype(np.int32)
    x = np.zeros((height + 1, width + 1, channels), np.int32)  # a zero row above and column to the left
    for k in range(height + width - 1):
        r = np.arange(max(0, k - width + 1), min(height - 1, k) + 1)
        c = k - r
        left, up, corner = x[r + 1, c], x[r, c + 1], x[r, c]
        p = left + up - corner
        dl, du, dc = np.abs(p - left), np.abs(p - up), np.abs(p - corner)
        paeth = np.where((dl <= du) & (dl <= dc), left, np.where(du <= dc, up, corner))
        kind = filters[r][:, None]
        predicted = np.select([kind == 1, kind == 2, kind == 3, kind == 4], [left, up, (left + up) // 2, paeth], 0)
        x[r + 1, c + 1] = (filtered[r, c] + predicted) % 256
    return x[1:, 1:].astype(np.uint8)
