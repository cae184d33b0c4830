"""What the load generator's HTTP client adds to the TTFT it measures.

Sends the same sequential streaming completions (48-token prompts, 8 output
tokens, 30 ms apart) to a running server through httpx, through aiohttp (what
`kairos bench` uses) and through a bare asyncio socket speaking HTTP/1.1, and
prints each one's median and 10th-percentile time from sending to the first
data chunk. The socket is the floor: what the others add is client time.

Usage: kairos serve --model tiny --port 8791 &
       python benchmarks/client_overhead.py http://127.0.0.1:8791 [--requests 60] [--model tiny]
(httpx comes with the test extra.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from urllib.parse import urlsplit

import aiohttp
import httpx
import numpy as np

GAP_S = 0.03


def bodies(model: str, count: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [json.dumps({"model": model, "prompt": rng.integers(16, 500, 48).tolist(), "max_tokens": 8,
                        "temperature": 0.0, "stream": True, "ignore_eos": True, "min_tokens": 8,
                        "stream_options": {"include_usage": True, "continuous_usage_stats": True}}).encode()
            for _ in range(count)]


async def via_httpx(url: str, payloads: list[bytes]) -> list[float]:
    ttfts = []
    async with httpx.AsyncClient(timeout=30.0) as client:
        for payload in payloads:
            start, first = time.perf_counter(), None
            async with client.stream("POST", f"{url}/v1/completions", content=payload,
                                     headers={"Content-Type": "application/json"}) as response:
                async for chunk in response.aiter_bytes():
                    if first is None and b"data:" in chunk:
                        first = time.perf_counter()
            ttfts.append(first - start)
            await asyncio.sleep(GAP_S)
    return ttfts


async def via_aiohttp(url: str, payloads: list[bytes]) -> list[float]:
    ttfts = []
    async with aiohttp.ClientSession() as session:
        for payload in payloads:
            start, first = time.perf_counter(), None
            async with session.post(f"{url}/v1/completions", data=payload,
                                    headers={"Content-Type": "application/json"}) as response:
                async for chunk in response.content.iter_any():
                    if first is None and b"data:" in chunk:
                        first = time.perf_counter()
            ttfts.append(first - start)
            await asyncio.sleep(GAP_S)
    return ttfts


async def via_socket(url: str, payloads: list[bytes]) -> list[float]:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
    ttfts = []
    for payload in payloads:
        head = (f"POST /v1/completions HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n\r\n").encode()
        start, first, received = time.perf_counter(), None, b""
        writer.write(head + payload)
        while not received.endswith(b"0\r\n\r\n"):  # the last chunk of a chunked response
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            if first is None and b"data:" in data:
                first = time.perf_counter()
            received += data
        ttfts.append(first - start)
        await asyncio.sleep(GAP_S)
    writer.close()
    return ttfts


async def run(url: str, model: str, requests: int) -> None:
    print("| client | median TTFT | 10th percentile |")
    print("|---|---:|---:|")
    for round_ in range(2):  # twice, interleaved: the machine's speed drifts
        for name, client in (("httpx", via_httpx), ("aiohttp", via_aiohttp), ("socket", via_socket)):
            ttfts = await client(url, bodies(model, requests, seed=round_))
            print(f"| {name} | {statistics.median(ttfts) * 1e3:.2f} ms | {np.percentile(ttfts, 10) * 1e3:.2f} ms |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the server's base URL, e.g. http://127.0.0.1:8791")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--requests", type=int, default=60, help="requests per client and round")
    args = parser.parse_args()
    asyncio.run(run(args.url.rstrip("/"), args.model, args.requests))


if __name__ == "__main__":
    main()
