"""A bounded loopback soak: mixed reads, events and a model reload; errors and memory growth.

Starts ``musicrec serve`` (``--workers``, default 2) on a free loopback port with an API keys
file and an event store in a temporary directory, then for ``--seconds`` (default 300, at
most 1800) ``--clients`` threads send a fixed mix of valid requests, each with the key:

- 55 % ``GET /users/{id}/recommendations`` over the listeners the API lists
- 10 % ``POST /recommend`` of a mood, 10 % ``GET /artists/{name}/similar``
- 20 % ``POST /events`` (one to five plays of listed artists by listed listeners)
- 5 % ``GET /users/{id}/events``

and at half time one ``POST /admin/reload`` (the same model, loaded again and swapped in).
Every request is valid, so an error is any 5xx, any 4xx, or a request without an answer;
there must be none (exit status 1 otherwise). Memory: the resident set of the server and
its workers, sampled every 5 s; growth is the last sample minus the first one after the
warm-up (``--warmup``, default 30 s), and the slope of a least-squares line through the
samples after the warm-up, with its 95 % interval (scipy.stats.linregress).

Usage::

    python benchmarks/bench_soak.py --model PATH [--seconds 300] [--workers 2] [--clients 4]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from scipy import stats

SAMPLE_S = 5.0
PAGE = os.sysconf("SC_PAGE_SIZE")


def log(message: str) -> None:
    sys.stderr.write(f"[bench_soak] {message}\n")
    sys.stderr.flush()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its children (uvicorn's workers), in MiB."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            rss_pages = int((entry / "statm").read_text().split()[1])
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        if int(entry.name) == pid or parent == pid:
            total += rss_pages * PAGE
    return total / 2**20


class Mix:
    """The request mix over what the server knows."""

    def __init__(self, client: httpx.Client):
        self.users = client.get("/users", params={"limit": 1000}).json()["users"]
        self.moods = [m["name"] for m in client.get("/moods").json()["moods"] if m["available"]]
        points = client.get("/artists/map", params={"limit": 500}).json()["points"]
        self.artists = [p["artist"] for p in points]

    def request(self, rng: random.Random) -> tuple[str, str, str, dict[str, Any]]:
        user = rng.choice(self.users)
        roll = rng.random()
        if roll < 0.55:
            return "user", "GET", f"/users/{quote(user, safe='')}/recommendations", {}
        if roll < 0.65 and self.moods:
            body = {"type": "mood", "mood": rng.choice(self.moods), "k": 10}
            return "mood", "POST", "/recommend", {"json": body}
        if roll < 0.75:
            artist = quote(rng.choice([a for a in self.artists[:50] if "/" not in a]), safe="")
            return "similar", "GET", f"/artists/{artist}/similar", {}
        if roll < 0.95:
            plays = [
                {"user_id": rng.choice(self.users), "artist": rng.choice(self.artists)}
                for _ in range(rng.randint(1, 5))
            ]
            return "events", "POST", "/events", {"json": {"events": plays}}
        return "user_events", "GET", f"/users/{quote(user, safe='')}/events", {}


def soak(
    url: str, key: str, seconds: float, clients: int, pid: int, warmup: float
) -> dict[str, Any]:
    headers = {"X-API-Key": key}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        mix = Mix(client)
    counts: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    examples: list[str] = []
    lock = threading.Lock()
    started = time.monotonic()
    deadline = started + seconds

    def sender(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            while time.monotonic() < deadline:
                label, method, path, kwargs = mix.request(rng)
                try:
                    status = client.request(method, path, **kwargs).status_code
                    failed = status >= 400
                    reason = f"{label} {status}"
                except httpx.HTTPError as exc:
                    failed, reason = True, f"{label} {type(exc).__name__}"
                with lock:
                    counts[label] += 1
                    if failed:
                        errors[reason] += 1
                        if len(examples) < 5:
                            examples.append(f"{method} {path}: {reason}")

    threads = [threading.Thread(target=sender, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    samples: list[tuple[float, float]] = []
    reload: dict[str, Any] = {}
    while time.monotonic() < deadline:
        now = time.monotonic() - started
        samples.append((now, tree_rss_mb(pid)))
        if not reload and now >= seconds / 2:
            with httpx.Client(base_url=url, headers=headers, timeout=300) as client:
                answer = client.post("/admin/reload")
            reload = {**answer.json(), "at_s": round(now, 1), "http_status": answer.status_code}
            log(f"reload at {now:.0f} s: {answer.status_code}")
            if answer.status_code != 200:
                errors[f"reload {answer.status_code}"] += 1
        time.sleep(min(SAMPLE_S, max(0.0, deadline - time.monotonic())))
    for thread in threads:
        thread.join(timeout=60)
    samples.append((time.monotonic() - started, tree_rss_mb(pid)))
    steady = [(t, m) for t, m in samples if t >= warmup] or samples
    fit = stats.linregress([t for t, _ in steady], [m for _, m in steady])
    half = stats.t.ppf(0.975, max(1, len(steady) - 2)) * fit.stderr * 60
    return {
        "seconds": round(time.monotonic() - started, 1),
        "requests": dict(counts),
        "total": sum(counts.values()),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "error_examples": examples,
        "reload": reload,
        "rss_mb_after_warmup": round(steady[0][1], 1),
        "rss_mb_end": round(steady[-1][1], 1),
        "rss_growth_mb": round(steady[-1][1] - steady[0][1], 1),
        "rss_slope_mb_per_min": round(fit.slope * 60, 2),
        "rss_slope_ci95": [round(fit.slope * 60 - half, 2), round(fit.slope * 60 + half, 2)],
        "samples": len(samples),
        "rss_samples": [[round(t, 1), round(m, 1)] for t, m in samples],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="Model artifact directory.")
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--warmup", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args()
    if not 10 <= args.seconds <= 1800 or not 1 <= args.clients <= 32 or args.workers < 1:
        sys.exit("--seconds must be in 10..1800, --clients in 1..32, --workers at least 1")
    from musicrec.access.keys import create_key

    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        work = Path(tmp)
        _, key = create_key(work / "keys.json", "soak", "read,events,admin")
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MUSICREC_")}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env |= {
            "MUSICREC_API_KEYS_FILE": str(work / "keys.json"),
            "MUSICREC_EVENTS_URL": f"sqlite:///{work / 'events.db'}",
        }
        cmd = [sys.executable, "-c", "from musicrec.cli import app; app()", "serve"]
        cmd += ["--model", str(args.model), "--port", str(port), "--workers", str(args.workers)]
        cmd += ["--log-level", "warning"]
        url = f"http://127.0.0.1:{port}"
        with (work / "serve.log").open("w") as out:
            server = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + 600
                while time.monotonic() < deadline:
                    if server.poll() is not None:
                        sys.exit((work / "serve.log").read_text()[-3000:])
                    try:
                        if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.5)
                log(f"serving {args.model} at {url}; soaking for {args.seconds:g} s")
                result = soak(url, key, args.seconds, args.clients, server.pid, args.warmup)
            finally:
                server.terminate()
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait(timeout=10)
    load = os.getloadavg()
    result |= {"model": str(args.model), "workers": args.workers, "clients": args.clients}
    result["load"] = [round(x, 2) for x in load]
    print(f"## Soak: {result['total']} requests in {result['seconds']} s on {args.model}\n")
    print("| what | value |\n|---|---|")
    print(f"| requests by kind | {result['requests']} |")
    print(f"| errors (must be 0) | {result['errors']} {result['error_kinds'] or ''} |")
    reload = result["reload"]
    print(f"| reload | HTTP {reload.get('http_status')} at {reload.get('at_s')} s |")
    start, end = result["rss_mb_after_warmup"], result["rss_mb_end"]
    print(f"| RSS after warm-up / end (MiB) | {start} / {end} |")
    low, high = result["rss_slope_ci95"]
    print(f"| RSS slope (MiB/min, 95 % CI) | {result['rss_slope_mb_per_min']} [{low}, {high}] |")
    loads = " ".join(map(str, result["load"]))
    print(f"\nworkers {args.workers}, clients {args.clients}, load average {loads}")
    for example in result["error_examples"]:
        print(f"error: {example}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if result["errors"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
