"""Helpers of the access tests: metric samples and API servers started for real."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", line)
        if not match:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(1) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def served(
    model: Path, log: Path, *args: str, env: dict[str, str] | None = None, workers: int = 1
) -> Iterator[str]:
    """``musicrec serve`` on a free loopback port until the block ends; yields its URL.

    Waits until ``workers`` different worker processes have answered ``/model``.
    """
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MUSICREC_")}
    environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    environ.update(env or {})
    cmd = [sys.executable, "-c", "from musicrec.cli import app; app()", "serve"]
    cmd += ["--model", str(model), "--port", str(port), "--workers", str(workers)]
    cmd += ["--log-level", "warning", *args]
    with log.open("w") as out:
        server = subprocess.Popen(cmd, env=environ, stdout=out, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for_workers(server, base, log, workers, environ.get("TEST_API_KEY"))
            yield base
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)


def wait_for_workers(
    server: subprocess.Popen[bytes], base: str, log: Path, workers: int, key: str | None
) -> None:
    headers = {"X-API-Key": key} if key else {}
    deadline = time.monotonic() + 120
    seen: set[str] = set()
    while len(seen) < workers:
        assert server.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"workers seen: {seen}\n{log.read_text()}"
        try:
            answer = httpx.get(f"{base}/model", headers=headers, timeout=5)  # a new connection
        except httpx.HTTPError:
            time.sleep(0.2)
            continue
        if answer.status_code == 200:
            seen.add(answer.json()["worker"])
        else:
            time.sleep(0.2)
