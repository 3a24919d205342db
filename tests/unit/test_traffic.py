"""The traffic generator against a real (in-thread) uvicorn server on loopback."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

from musicrec.api.app import create_app
from musicrec.api.settings import Settings
from musicrec.cli import app as cli_app
from musicrec.errors import TrafficError
from musicrec.ops.traffic import check_target, run_traffic


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server_url(synth_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    model = tmp_path_factory.mktemp("traffic-model") / "model"
    shutil.copytree(synth_model, model)
    settings = Settings(_env_file=None, model=str(model))  # type: ignore[call-arg]
    port = _free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            server.should_exit = True
            pytest.fail("test server did not start")
        time.sleep(0.1)
    yield url
    server.should_exit = True
    thread.join(timeout=10)


def test_traffic_mix_is_bounded_and_clean(server_url: str) -> None:
    summary = run_traffic(server_url, rate=200, duration=20, max_requests=120, seed=1)
    assert summary.total == 120
    assert summary.server_errors == 0
    assert summary.client_errors > 0  # the deliberately bad share
    assert {"user", "similar", "listener", "search"} <= set(summary.endpoints)
    assert summary.endpoints["bad"].ok == 0
    for name, stats in summary.endpoints.items():
        if name != "bad":
            assert stats.ok == stats.count, name
    report = summary.to_dict()
    assert report["total"] == 120
    assert report["endpoints"]["user"]["p50_ms"] <= report["endpoints"]["user"]["p99_ms"]


def test_traffic_stops_at_duration(server_url: str) -> None:
    summary = run_traffic(server_url, rate=5, duration=1.0, seed=2)
    assert 1 <= summary.total <= 10
    assert summary.seconds < 5


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000", "http://localhost:1/", "http://[::1]:8000"]
)
def test_loopback_targets_are_allowed(url: str) -> None:
    assert check_target(url).startswith("http://")


@pytest.mark.parametrize("url", ["http://example.com", "http://10.0.0.5:8000", "http://0.0.0.0:80"])
def test_remote_targets_need_opt_in(url: str) -> None:
    with pytest.raises(TrafficError, match="allow-remote"):
        check_target(url)
    assert check_target(url, allow_remote=True)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1", "127.0.0.1:8000", "http://"])
def test_malformed_targets(url: str) -> None:
    with pytest.raises(TrafficError):
        check_target(url)


def test_cli_refuses_remote_host() -> None:
    result = CliRunner().invoke(
        cli_app, ["traffic", "--url", "http://example.com", "--duration", "1"]
    )
    assert result.exit_code == 1
    assert "allow-remote" in result.output


def test_cli_reports_unreachable_api() -> None:
    port = _free_port()
    result = CliRunner().invoke(cli_app, ["traffic", "--url", f"http://127.0.0.1:{port}"])
    assert result.exit_code == 1
    assert "cannot reach" in result.output
