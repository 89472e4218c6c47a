"""Load on `mqspn serve`: N concurrent loopback clients for a fixed time, with and without batching.

    .venv/bin/python bench/serve_load.py [--model DIR] [--seconds 10] [--clients 1 8 32]

For each setting (batching off: --max-batch 1; on: --max-batch 32 --max-wait-ms 5) it starts the server
in its own process on a free 127.0.0.1 port, lets every client post the synthetic example posts (text,
picture, detector boxes; multipart) back to back for `--seconds`, and prints a Markdown table of
requests/s, p50/p95/p99 latency, errors and the mean model batch size. Without --model it serves an
untrained model of the demo architecture (the shipped demo recipe: MiniLM text encoder, crop CNN), saved to
a temp folder: the same compute per request as the trained demo model. Everything stops by itself.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from mqspn.serve.examples import example_posts

SETTINGS = {"off": ["--max-batch", "1"], "on": ["--max-batch", "32", "--max-wait-ms", "5"]}
START_TIMEOUT_S = 120


def demo_architecture_model(folder: Path) -> Path:
    from mqspn.checkpoint import save_pretrained
    from mqspn.config import load_config
    from mqspn.build import build_model

    config = load_config("demo")
    return save_pretrained(build_model(config.model).eval(), folder / "demo-architecture-untrained", config)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model: Path, port: int, options: list[str]) -> subprocess.Popen:
    server = subprocess.Popen([sys.executable, "-m", "mqspn", "serve", "--model", str(model), "--host", "127.0.0.1",
                               "--port", str(port), *options], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError(f"the server did not answer within {START_TIMEOUT_S} s (exit code {server.poll()})")


async def load(url: str, clients: int, seconds: float) -> dict:
    """Every client posts the examples in turn until `seconds` have passed; -> the measurements."""
    posts = [({"text": e.text}, {"image": (f"{e.id}.jpg", e.jpeg, "image/jpeg"),
                                  "boxes": ("boxes.json", json.dumps(e.boxes).encode(), "application/json")})
             for e in example_posts().values()]
    latencies: list[float] = []
    batch_sizes: list[int] = []
    errors = 0
    deadline = time.monotonic() + seconds

    async def client(index: int, http: httpx.AsyncClient) -> None:
        nonlocal errors
        sent = index
        while time.monotonic() < deadline:
            data, files = posts[sent % len(posts)]
            sent += 1
            start = time.perf_counter()
            try:
                response = await http.post(f"{url}/v1/predict", data=data, files=files)
            except httpx.HTTPError:
                errors += 1
                continue
            latencies.append(time.perf_counter() - start)
            if response.status_code == 200:
                batch_sizes.append(response.json()["timing"]["batch_size"])
            else:
                errors += 1

    started = time.perf_counter()
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        await asyncio.gather(*(client(i, http) for i in range(clients)))
    elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {"requests/s": len(batch_sizes) / elapsed, "p50": np.percentile(ms, 50), "p95": np.percentile(ms, 95),
            "p99": np.percentile(ms, 99), "errors": errors, "batch": float(np.mean(batch_sizes or [0]))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model directory (default: the untrained demo architecture)")
    parser.add_argument("--seconds", type=float, default=10.0, help="load time per setting and client count")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        model = args.model or demo_architecture_model(Path(folder))
        print(f"model: {model}\n")
        print("| batching | clients | requests/s | p50 ms | p95 ms | p99 ms | errors | mean batch |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, options in SETTINGS.items():
            port = free_port()
            server = start_server(model, port, options)
            try:
                for clients in args.clients:
                    r = asyncio.run(load(f"http://127.0.0.1:{port}", clients, args.seconds))
                    print(f"| {name} {' '.join(options)} | {clients} | {r['requests/s']:.1f} | {r['p50']:.0f} | "
                          f"{r['p95']:.0f} | {r['p99']:.0f} | {r['errors']} | {r['batch']:.1f} |", flush=True)
            finally:
                server.terminate()
                server.wait(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
