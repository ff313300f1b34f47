"""Studio load test on loopback: a fixed number of POST /api/generate (n posters each) from concurrent
clients, with one more client polling /api/health to show the event loop stays free meanwhile.

    python benchmarks/web_load.py RUN --requests 320 --clients 16 --n 8 --device cpu

RUN is a run folder (or a folder of runs; the first is used). Prints latency p50/p95/max, errors and
throughput; the first request (which loads the model) is timed apart.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import torch

from postergen.web.app import create_app, running


class Client:
    """One keep-alive connection, like one browser tab."""

    def __init__(self, base: str) -> None:
        url = urlsplit(base)
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=300)

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, float]:
        data = None if body is None else json.dumps(body).encode()
        started = time.perf_counter()
        self.conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        response = self.conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def load(base: str, body: dict, requests: int, clients: int) -> tuple[list[float], int, float]:
    """-> (latencies, errors, wall seconds) for `requests` POSTs spread over `clients` connections."""
    per_client = [requests // clients + (i < requests % clients) for i in range(clients)]

    def run(count: int) -> list[tuple[int, float]]:
        client = Client(base)
        return [client.request("POST", "/api/generate", {**body, "seed": i * 1000}) for i in range(count)]

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for batch in pool.map(run, per_client) for r in batch]
    wall = time.perf_counter() - started
    return [t for _, t in results], sum(status != 200 for status, _ in results), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="run folder, or a folder of runs")
    parser.add_argument("--requests", type=int, default=320, help="POST /api/generate requests in all")
    parser.add_argument("--clients", type=int, default=16, help="concurrent connections")
    parser.add_argument("--n", type=int, default=8, help="posters per request")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=2, help="generation requests the server renders at once")
    args = parser.parse_args()

    app = create_app(args.run, device=args.device, workers=args.workers)
    with running(app) as base:
        run_id = next(iter(app.state.studio.runs()))
        body = {"run": run_id, "n": args.n, "genres": []}
        status, cold = Client(base).request("POST", "/api/generate", body)  # loads the model
        health, stop = [], threading.Event()

        def poll() -> None:
            client = Client(base)
            while not stop.is_set():
                health.append(client.request("GET", "/api/health")[1])
                time.sleep(0.05)

        poller = threading.Thread(target=poll)
        poller.start()
        latencies, errors, wall = load(base, body, args.requests, args.clients)
        stop.set()
        poller.join()

    ms = lambda s: f"{1000 * s:.0f} ms"  # noqa: E731
    print(f"studio load, {run_id} on {app.state.studio.device} ({os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
          f"workers {args.workers}): {args.requests} x POST /api/generate n={args.n} from {args.clients} clients")
    print(f"  first request (model load): {ms(cold)} (status {status})")
    print(f"  latency p50 {ms(statistics.median(latencies))}, p95 {ms(percentile(latencies, 0.95))}, "
          f"max {ms(max(latencies))}; errors {errors}")
    print(f"  throughput {args.requests / wall:.1f} requests/s, {args.requests * args.n / wall:.0f} posters/s "
          f"over {wall:.1f} s")
    print(f"  /api/health meanwhile: p50 {ms(statistics.median(health))}, p95 {ms(percentile(health, 0.95))}, "
          f"max {ms(max(health))} ({len(health)} polls)")


if __name__ == "__main__":
    main()
