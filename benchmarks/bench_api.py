"""Serving benchmark: cold start, latency, throughput and ANN recall of the real HTTP server.

Builds a model at Last.fm-360K scale (synthetic data, or random factors of the right shape
with ``--random-factors``) unless ``--model`` is given, starts ``musicrec serve`` on loopback
(once with the HNSW index, once with exact scoring), and prints a Markdown table:

- cold start: process start until ``/ready`` answers 200 (index already persisted)
- server-side latency from the ``Server-Timing`` header, client latency over HTTP (p50/p95/p99)
- sequential and concurrent throughput, per request type (user, similar, mood, listener)
- recall@10 of the HNSW answers against exact scoring on a sample of users and artists

Usage::

    python benchmarks/bench_api.py                       # full scale, trains 128 factors
    python benchmarks/bench_api.py --random-factors      # full scale, no training
    python benchmarks/bench_api.py --users 20000 --artists 10000 --random-factors  # quick
    python benchmarks/bench_api.py --model path/to/model
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np

SCENARIOS = ("user", "similar", "mood", "listener")


def log(message: str) -> None:
    sys.stderr.write(f"[bench] {message}\n")
    sys.stderr.flush()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def build_model(work: Path, users: int, artists: int, factors: int, random_factors: bool) -> Path:
    """Synthesize Last.fm-360K-format data, prepare it, and train (or fake) the factors."""
    from musicrec.config import TrainConfig
    from musicrec.data.dataset import Dataset
    from musicrec.data.prepare import PrepareConfig, prepare
    from musicrec.data.synth import synthesize
    from musicrec.models.artifact import save_artifact
    from musicrec.pipeline.train import train

    raw, data, model = work / "raw", work / "dataset", work / "model"
    if not (raw / "usersha1-artmbid-artname-plays.tsv").exists():
        started = time.perf_counter()
        synthesize(raw, n_users=users, n_artists=artists, seed=0)
        log(
            f"synthesized {users} users x {artists} artists in {time.perf_counter() - started:.0f}s"
        )
    if not (data / "dataset.json").exists():
        started = time.perf_counter()
        prepare("lastfm360k", raw, data, PrepareConfig())
        log(f"prepared in {time.perf_counter() - started:.0f}s")
    if (model / "manifest.json").exists():
        return model
    started = time.perf_counter()
    config = TrainConfig(factors=factors, iterations=15)
    if random_factors:
        dataset = Dataset.load(data)
        n_users, n_items = dataset.shape
        rng = np.random.default_rng(0)
        scale = 1.0 / np.sqrt(factors)
        save_artifact(
            model,
            user_factors=(rng.standard_normal((n_users, factors)) * scale).astype(np.float32),
            item_factors=(rng.standard_normal((n_items, factors)) * scale).astype(np.float32),
            dataset=dataset,
            engine="random",
            params=config.to_dict(),
        )
    else:
        train(data, model, config)
    log(f"model ready in {time.perf_counter() - started:.0f}s")
    return model


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``musicrec serve`` as a subprocess; measures process start -> /ready."""

    def __init__(self, model: Path, index: str, workers: int, log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MUSICREC_")}
        cmd = [sys.executable, "-c", "from musicrec.cli import app; app()", "serve"]
        cmd += ["--model", str(model), "--port", str(self.port), "--index", index]
        cmd += ["--workers", str(workers), "--log-level", "warning"]
        self.log = log_path.open("w")
        self.started = time.perf_counter()
        self.process = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.cold_start = self._wait_ready()

    def _wait_ready(self, timeout: float = 600.0) -> float:
        deadline = self.started + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.process.returncode}; see {self.log.name}"
                )
            try:
                if httpx.get(f"{self.url}/ready", timeout=1.0).status_code == 200:
                    return time.perf_counter() - self.started
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
        raise RuntimeError("server did not become ready")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.log.close()


Request = tuple[str, str, dict[str, Any]]


def request_makers(
    client: httpx.Client, rng: np.random.Generator
) -> dict[str, Callable[[], Request]]:
    users = client.get("/users", params={"limit": 1000}).json()["users"]
    moods = [m["name"] for m in client.get("/moods").json()["moods"] if m["available"]]
    artists = [
        r["artist"] for r in client.get("/charts", params={"k": 100}).json()["recommendations"]
    ]

    def user() -> Request:
        uid = users[rng.integers(len(users))]
        return "GET", f"/users/{quote(uid, safe='')}/recommendations", {"params": {"k": 10}}

    def similar() -> Request:
        name = artists[rng.integers(len(artists))]
        return "GET", f"/artists/{quote(name, safe='')}/similar", {"params": {"k": 10}}

    def mood() -> Request:
        body = {"type": "mood", "mood": moods[rng.integers(len(moods))], "k": 10}
        return "POST", "/recommend", {"json": body}

    def listener() -> Request:
        picks = rng.choice(len(artists), size=5, replace=False)
        body = {"artists": [artists[i] for i in picks], "k": 10}
        return "POST", "/listeners/recommendations", {"json": body}

    return {"user": user, "similar": similar, "mood": mood, "listener": listener}


def measure(url: str, make: Callable[[], Request], n: int, concurrency: int) -> dict[str, float]:
    """Client and server (Server-Timing) latency percentiles in ms, and requests/s."""
    client_ms: list[float] = []
    server_ms: list[float] = []
    errors = 0
    lock = threading.Lock()
    per_thread = max(1, n // concurrency)

    def worker() -> None:
        nonlocal errors
        with httpx.Client(base_url=url, timeout=30) as client:
            for _ in range(per_thread):
                method, path, kwargs = make()
                sent = time.perf_counter()
                response = client.request(method, path, **kwargs)
                took = (time.perf_counter() - sent) * 1000
                timing = response.headers.get("server-timing", "app;dur=nan")
                with lock:
                    client_ms.append(took)
                    server_ms.append(float(timing.split("dur=")[1]))
                    errors += response.status_code >= 400

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    c, s = np.array(client_ms), np.array(server_ms)
    return {
        "server_p50": float(np.percentile(s, 50)),
        "server_p95": float(np.percentile(s, 95)),
        "server_p99": float(np.percentile(s, 99)),
        "client_p50": float(np.percentile(c, 50)),
        "client_p95": float(np.percentile(c, 95)),
        "client_p99": float(np.percentile(c, 99)),
        "rps": len(c) / seconds,
        "errors": float(errors),
    }


def bench_server(
    model: Path, index: str, workers: int, n: int, concurrency: int, work: Path
) -> tuple[float, dict[str, dict[str, float]], dict[str, float]]:
    server = Server(model, index, workers, work / f"serve-{index}.log")
    log(f"{index}: ready in {server.cold_start:.2f}s")
    try:
        rng = np.random.default_rng(0)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            makers = request_makers(client, rng)
        results = {}
        for name in SCENARIOS:
            measure(server.url, makers[name], min(50, n), 1)  # warm-up: page in factors
            results[name] = measure(server.url, makers[name], n, 1)
            log(f"{index}/{name}: server p50 {results[name]['server_p50']:.2f} ms")
        mixed = measure(server.url, makers["user"], n, concurrency)
    finally:
        server.stop()
    return server.cold_start, results, mixed


def ann_recall(model: Path, sample: int) -> dict[str, float]:
    from musicrec.models.ann import open_indexes, recall_at_k
    from musicrec.serving.recommender import Recommender

    rec = Recommender.load(model)
    model = rec.model
    exact = open_indexes(None, model.vectors, "exact")
    rng = np.random.default_rng(1)
    users = rng.choice(rec.n_users, size=min(sample, rec.n_users), replace=False)
    queries = np.asarray(model.user_factors[users])
    excludes = [rec.train[u].indices.astype(np.int64) for u in users]
    items = rng.choice(rec.n_items, size=min(sample, rec.n_items), replace=False)
    return {
        "user": recall_at_k(model.index.inner, exact.inner, queries, 10, excludes),
        "similar": recall_at_k(model.index.cosine, exact.cosine, model.vectors.unit_all[items], 10),
        "ef": float(getattr(model.index.inner, "ef", 0)),
        "ef_cosine": float(getattr(model.index.cosine, "ef", 0)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="Existing artifact (skips data and training).")
    parser.add_argument("--work", type=Path, help="Working directory (default: a temp dir).")
    parser.add_argument("--users", type=int, default=359_000)
    parser.add_argument("--artists", type=int, default=160_000)
    parser.add_argument("--factors", type=int, default=128)
    parser.add_argument("--random-factors", action="store_true", help="Skip ALS training.")
    parser.add_argument("--requests", type=int, default=500, help="Requests per scenario.")
    parser.add_argument("--concurrency", type=int, default=4, help="Clients in the mixed run.")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers.")
    parser.add_argument("--recall-sample", type=int, default=1000)
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="musicrec-bench-api-"))
    work.mkdir(parents=True, exist_ok=True)
    model = args.model or build_model(
        work, args.users, args.artists, args.factors, args.random_factors
    )

    from musicrec.models.artifact import ModelArtifact

    index_seconds = float("nan")
    artifact = ModelArtifact.load(model)
    if not all((model / name).exists() for name in artifact.model.index_files()):
        started = time.perf_counter()
        artifact.model.build_index(model)
        index_seconds = time.perf_counter() - started
        log(f"built both HNSW graphs in {index_seconds:.1f}s")
    n_users, n_items = artifact.user_factors.shape[0], artifact.item_factors.shape[0]
    n_factors = artifact.item_factors.shape[1]
    engine = artifact.manifest.get("engine")
    del artifact

    recall = ann_recall(model, args.recall_sample)
    runs = {}
    for index in ("hnsw", "exact"):
        runs[index] = bench_server(
            model, index, args.workers, args.requests, args.concurrency, work
        )

    print("## musicrec API benchmark\n")
    print(
        f"- model: {model} ({engine}), {n_users:,} users x {n_items:,} artists "
        f"x {n_factors} factors"
    )
    print(f"- machine: {cpu_name()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(
        f"- server: `musicrec serve --workers {args.workers}` on loopback; {args.requests} "
        f"sequential requests per row after a warm-up"
    )
    if not np.isnan(index_seconds):
        print(f"- HNSW build (both graphs, once, persisted): {index_seconds:.1f} s")
    print(
        f"- HNSW recall@10 vs exact, {args.recall_sample} random users / artists: user recs "
        f"{recall['user']:.4f} (ef={int(recall['ef'])}), similar artists {recall['similar']:.4f} "
        f"(ef={int(recall['ef_cosine'])})\n"
    )
    print(
        "| index | request | cold start s | server p50 ms | server p95 | server p99 | "
        "client p50 ms | client p95 | client p99 | req/s (1 client) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for index, (cold, results, _) in runs.items():
        for name, r in results.items():
            print(
                f"| {index} | {name} | {cold:.2f} | {r['server_p50']:.2f} | {r['server_p95']:.2f} "
                f"| {r['server_p99']:.2f} | {r['client_p50']:.2f} | {r['client_p95']:.2f} "
                f"| {r['client_p99']:.2f} | {r['rps']:.0f} |"
            )
    print(f"\nUser recommendations with {args.concurrency} concurrent clients:\n")
    print("| index | req/s | client p50 ms | client p99 ms | errors |")
    print("|---|---:|---:|---:|---:|")
    for index, (_, _, mixed) in runs.items():
        print(
            f"| {index} | {mixed['rps']:.0f} | {mixed['client_p50']:.2f} "
            f"| {mixed['client_p99']:.2f} | {int(mixed['errors'])} |"
        )


if __name__ == "__main__":
    main()
