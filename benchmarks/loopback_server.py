"""``musicrec serve`` on a free loopback port for the online benchmarks; a clean stop flushes.

The server gets its own event store and none of the caller's other ``MUSICREC_`` settings.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def cli() -> list[str]:
    """The command that runs musicrec's CLI with this interpreter."""
    return [sys.executable, "-c", "from musicrec.cli import app; app()"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """Started and ready (``/ready`` answers 200) when constructed; :meth:`stop` ends it."""

    def __init__(
        self, model: Path, events_url: str, log_path: Path, env: dict[str, str] | None = None
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        settings = {k: v for k, v in os.environ.items() if not k.startswith("MUSICREC_")}
        settings |= {"MUSICREC_EVENTS_URL": events_url, **(env or {})}
        cmd = [*cli(), "serve", "--model", str(model), "--port", str(self.port)]
        self.log = log_path.open("w")
        self.process = subprocess.Popen(
            [*cmd, "--log-level", "warning"],
            env=settings,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited; see {log_path}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("server did not become ready")

    def stop(self) -> None:
        self.process.terminate()  # SIGTERM: uvicorn shuts down, the impressions are committed
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.log.close()
