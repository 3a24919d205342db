"""Fixtures for the web UI tests: an evaluated tiny model served by a real ``musicrec serve``.

Imported by ``test_ui.py`` and ``test_ui_browser.py``; the model comes from the shared
``synth_model`` fixture (copied, so evaluating it never changes what other tests see).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from musicrec.pipeline.evaluate import evaluate_model

SERVER_START_TIMEOUT_S = 90.0
SERVER_STOP_TIMEOUT_S = 15.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def musicrec_executable() -> str:
    """The ``musicrec`` console script of the running interpreter's environment."""
    candidate = Path(sys.executable).parent / "musicrec"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("musicrec")
    if not found:
        pytest.fail("the musicrec console script is not installed (pip install -e .)")
    return found


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without ``MUSICREC_*`` settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSICREC_")}
    env.update(extra)
    return env


def log_tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(encoding="utf-8", errors="replace")[-chars:] if path.exists() else ""


def wait_for_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Poll ``url`` until it answers 200; fail early if the process exits, or at ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}:\n{log_tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        time.sleep(0.2)
    pytest.fail(f"{url} not ready within {timeout:.0f}s:\n{log_tail(log)}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate, then kill if it does not exit in time."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=SERVER_STOP_TIMEOUT_S)


@contextlib.contextmanager
def running(
    command: list[str], ready_url: str, log: Path, env: dict[str, str], timeout: float
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` (output to ``log``) until the block exits; ready once ``ready_url`` is."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            wait_for_http(ready_url, process, log, timeout)
            yield process
        finally:
            stop(process)


@pytest.fixture(scope="session")
def ui_model(
    synth_model: Path, synth_dataset: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The shared tiny synthetic model, copied and evaluated (so the model card has metrics)."""
    out = tmp_path_factory.mktemp("ui-model") / "model"
    shutil.copytree(synth_model, out)
    evaluate_model(synth_dataset, out, ks=(10, 20), baselines=("popularity",))
    return out


@pytest.fixture(scope="session")
def api_url(ui_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a real ``musicrec serve`` on a free loopback port, stopped at teardown."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("ui-api") / "serve.log"
    command = [
        musicrec_executable(),
        "serve",
        "--model",
        str(ui_model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--index",
        "exact",
        "--log-level",
        "warning",
    ]
    with running(command, f"{url}/ready", log, clean_env(), SERVER_START_TIMEOUT_S):
        yield url
