"""A real Prometheus scrapes real API processes while real traffic runs.

Checks that every Grafana panel's PromQL parses and returns data, and that the alert rules
fire when an API instance answers with errors (one instance runs without a model).
"""

from __future__ import annotations

import json
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
import yaml

from conftest import REPO_ROOT, require_or_skip
from musicrec.ops.monitoring import (
    alert_rules_text,
    render_prometheus_config,
    stop_prometheus,
    wait_ready,
)

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
DASHBOARD = REPO_ROOT / "deploy/grafana/dashboards/musicrec.json"
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_api(model: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """``musicrec serve`` on loopback; returns once /health answers (any model state).

    A ``model`` path that does not exist (yet) gives a degraded replica: it runs, reports
    ``model_loaded 0`` and answers recommendation requests with 503.
    """
    env = {k: v for k, v in os.environ.items() if k != "MUSICREC_MODEL"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(BIN / "musicrec"), "serve", "--model", str(model), "--port", str(port),
             "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"API exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
            return process
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    raise TimeoutError(f"API on port {port} did not start: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def stack(synth_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Healthy API, an API without a model, and Prometheus scraping both every second."""
    prometheus = shutil.which("prometheus")
    require_or_skip(prometheus is not None, "prometheus not installed (scripts/install-os-deps.sh)")
    assert prometheus is not None
    work = tmp_path_factory.mktemp("monitoring")
    healthy_port, broken_port, prom_port = free_port(), free_port(), free_port()
    processes = [
        start_api(synth_model, healthy_port, work / "api-healthy.log"),
        start_api(work / "model-not-there-yet", broken_port, work / "api-broken.log"),
    ]
    # The shipped rules, with `for:` shortened so the test does not wait minutes.
    rules = yaml.safe_load(alert_rules_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["for"] = "0s"
    (work / "alerts.yml").write_text(yaml.safe_dump(rules))
    config = yaml.safe_load(
        render_prometheus_config(
            f"127.0.0.1:{healthy_port}", scrape_interval="1s", evaluation_interval="1s",
            rules_path=work / "alerts.yml",
        )
    )  # fmt: skip
    config["scrape_configs"][0]["static_configs"][0]["targets"].append(f"127.0.0.1:{broken_port}")
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    with (work / "prometheus.log").open("wb") as log:
        prom = subprocess.Popen(
            [prometheus, f"--config.file={work / 'prometheus.yml'}",
             f"--storage.tsdb.path={work / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    prom_url = f"http://127.0.0.1:{prom_port}"
    try:
        wait_ready(prom_url, process=prom)
        yield {
            "healthy": f"http://127.0.0.1:{healthy_port}",
            "broken": f"http://127.0.0.1:{broken_port}",
            "prometheus": prom_url,
        }
    finally:
        stop_prometheus(prom)
        for process in processes:
            process.terminate()
            process.wait(timeout=20)


def query(prom: str, expr: str) -> list[dict]:
    response = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (expr, body)
    return body["data"]["result"]


def panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            out.append((panel["title"], expr))
    return out


def test_traffic_dashboards_and_alerts(stack: dict[str, str]) -> None:
    # Real traffic against the healthy instance (bounded in time and count, loopback only).
    result = subprocess.run(
        [str(BIN / "musicrec"), "traffic", "--url", stack["healthy"], "--rate", "40",
         "--duration", "12", "--max-requests", "400", "--json"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    summary = json.loads(result.stdout)
    assert summary["total"] > 50
    # The instance without a model answers recommendation requests with 503.
    for _ in range(60):
        response = httpx.post(f"{stack['broken']}/recommend", json={"type": "random", "k": 5})
        assert response.status_code == 503
    time.sleep(4)  # a few scrapes and rule evaluations

    missing = []
    for title, expr in panel_queries():
        rows = query(stack["prometheus"], expr)  # a valid query, or the assertion says why
        # The online-experiments row has data only while an experiment runs (none here; its
        # metrics and alert are checked in tests/system/test_api_online.py and promtool tests).
        if not rows and "experiment_" not in expr:
            missing.append(f"{title}: {expr}")
    assert not missing, "panels without data:\n" + "\n".join(missing)

    deadline = time.monotonic() + 60
    wanted = {"MusicrecHighErrorRate", "MusicrecCriticalErrorRate", "MusicrecModelNotLoaded"}
    firing: set[str] = set()
    while time.monotonic() < deadline and not wanted <= firing:
        alerts = httpx.get(f"{stack['prometheus']}/api/v1/alerts", timeout=10).json()
        firing = {
            a["labels"]["alertname"] for a in alerts["data"]["alerts"] if a["state"] == "firing"
        }
        time.sleep(1)
    assert wanted <= firing, f"firing: {sorted(firing)}"
    assert "MusicrecApiDown" not in firing


def test_prometheus_starts_from_a_relative_workdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`musicrec monitor`'s default workdir is relative to where it runs."""
    from musicrec.ops.monitoring import prometheus_url, start_prometheus

    require_or_skip(shutil.which("prometheus") is not None, "prometheus not installed")
    monkeypatch.chdir(tmp_path)
    port = free_port()
    process = start_prometheus("http://127.0.0.1:9", Path("artifacts/prometheus"), port)
    try:
        wait_ready(prometheus_url(port), process=process)
    finally:
        stop_prometheus(process)
    assert (tmp_path / "artifacts/prometheus/prometheus.yml").exists()
