"""Run Prometheus against the musicrec API.

The canonical scrape configuration and alerting rules ship inside the package
(``musicrec/resources/prometheus.yml`` and ``alerts.yml``); ``deploy/prometheus/`` holds the
copies used by docker-compose. :func:`render_prometheus_config` fills in the API address,
:func:`start_prometheus` writes config + rules into a working directory and starts a local
``prometheus`` binary, and :func:`wait_ready` blocks until it answers ``/-/ready``.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from musicrec.errors import MonitoringError

API_JOB = "musicrec-api"
PROMETHEUS_CONFIG_RESOURCE = "prometheus.yml"
ALERTS_RESOURCE = "alerts.yml"
INSTALL_HINT = "prometheus not found; run scripts/install-os-deps.sh"


def resource_text(name: str) -> str:
    """Text of a file packaged under ``musicrec/resources``."""
    return resources.files("musicrec").joinpath("resources", name).read_text(encoding="utf-8")


def alert_rules_text() -> str:
    """The packaged alerting rules (``alerts.yml``), verbatim."""
    return resource_text(ALERTS_RESOURCE)


def _split_target(target: str) -> tuple[str, str, str]:
    """``"host:port"`` or ``"http://host:port/path"`` -> (scheme, host:port, metrics path)."""
    text = target.strip()
    if not text:
        raise MonitoringError("Prometheus target is empty; pass host:port or an http(s) URL")
    if "://" not in text:
        text = f"http://{text}"
    parts = urlsplit(text)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise MonitoringError(
            f"invalid Prometheus target {target!r}; pass host:port or an http(s) URL"
        )
    path = parts.path.rstrip("/")
    metrics_path = path if path.endswith("/metrics") else f"{path}/metrics"
    return parts.scheme, parts.netloc, metrics_path


def render_prometheus_config(
    target: str,
    scrape_interval: str = "5s",
    rules_path: Path | None = None,
    evaluation_interval: str = "5s",
) -> str:
    """Packaged Prometheus config scraping the API at ``target``, as YAML text.

    ``target`` is ``host:port`` or the API base URL (``http://127.0.0.1:8000``; a trailing
    ``/metrics`` is accepted). ``rules_path`` is written into ``rule_files``; without it the
    config refers to ``alerts.yml`` next to the config file.
    """
    scheme, address, metrics_path = _split_target(target)
    config: dict[str, Any] = yaml.safe_load(resource_text(PROMETHEUS_CONFIG_RESOURCE))
    global_section: dict[str, Any] = config.setdefault("global", {})
    global_section["scrape_interval"] = scrape_interval
    global_section["evaluation_interval"] = evaluation_interval
    config["rule_files"] = [str(rules_path) if rules_path is not None else ALERTS_RESOURCE]
    jobs = [job for job in config.get("scrape_configs", []) if job.get("job_name") == API_JOB]
    if not jobs:
        raise MonitoringError(f"packaged Prometheus config has no {API_JOB!r} scrape job")
    for job in jobs:
        job["scrape_interval"] = scrape_interval
        job.pop("scrape_timeout", None)  # defaults to min(global timeout, scrape_interval)
        job["scheme"] = scheme
        job["metrics_path"] = metrics_path
        job["static_configs"] = [{"targets": [address]}]
    rendered: str = yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
    return rendered


def find_prometheus(binary: str | None = None) -> str:
    """Path of the ``prometheus`` executable, or :class:`MonitoringError` saying how to get it."""
    name = binary or "prometheus"
    found = shutil.which(name)
    if found is None:
        raise MonitoringError(INSTALL_HINT)
    return found


def write_prometheus_files(
    target: str,
    workdir: Path,
    scrape_interval: str = "5s",
    evaluation_interval: str = "5s",
) -> Path:
    """Write ``prometheus.yml`` and ``alerts.yml`` into ``workdir``; return the config path."""
    workdir.mkdir(parents=True, exist_ok=True)
    rules_path = workdir / ALERTS_RESOURCE
    rules_path.write_text(alert_rules_text(), encoding="utf-8")
    config_path = workdir / PROMETHEUS_CONFIG_RESOURCE
    config_path.write_text(
        render_prometheus_config(
            target,
            scrape_interval=scrape_interval,
            rules_path=rules_path.resolve(),
            evaluation_interval=evaluation_interval,
        ),
        encoding="utf-8",
    )
    return config_path


def start_prometheus(
    target: str,
    workdir: Path,
    port: int = 9090,
    *,
    host: str = "127.0.0.1",
    scrape_interval: str = "5s",
    evaluation_interval: str = "5s",
    binary: str | None = None,
    retention: str = "1d",
) -> subprocess.Popen[bytes]:
    """Start a local Prometheus scraping the API at ``target``.

    Config, rules, TSDB data (``data/``) and the server log (``prometheus.log``) all live in
    ``workdir``. The caller owns the returned process: stop it with :func:`stop_prometheus`.
    Use :func:`wait_ready` with :func:`prometheus_url` to wait until it serves queries.
    """
    executable = find_prometheus(binary)
    workdir = Path(workdir).resolve()  # Prometheus runs with cwd=workdir: paths must be absolute
    config_path = write_prometheus_files(
        target, workdir, scrape_interval=scrape_interval, evaluation_interval=evaluation_interval
    )
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [
        executable,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={data_dir}",
        f"--storage.tsdb.retention.time={retention}",
        f"--web.listen-address={host}:{port}",
        "--web.enable-lifecycle",
    ]
    with (workdir / "prometheus.log").open("wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)


def prometheus_url(port: int = 9090, host: str = "127.0.0.1") -> str:
    """Base URL of a Prometheus started with :func:`start_prometheus`."""
    return f"http://{host}:{port}"


def wait_ready(
    url: str,
    timeout: float = 30.0,
    process: subprocess.Popen[bytes] | None = None,
    interval: float = 0.2,
) -> None:
    """Poll ``{url}/-/ready`` until it answers 200.

    Raises :class:`MonitoringError` if ``process`` exits first or ``timeout`` seconds pass.
    """
    ready_url = f"{url.rstrip('/')}/-/ready"
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    while True:
        if process is not None and process.poll() is not None:
            raise MonitoringError(
                f"prometheus exited with code {process.returncode} before becoming ready; "
                "see prometheus.log in its working directory"
            )
        try:
            with urllib.request.urlopen(ready_url, timeout=2.0) as response:
                if response.status == 200:
                    return
                last_error = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last_error = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last_error = str(exc)
        if time.monotonic() >= deadline:
            raise MonitoringError(
                f"prometheus at {url} not ready after {timeout:.0f}s ({last_error})"
            )
        time.sleep(interval)


def stop_prometheus(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Terminate a Prometheus started by :func:`start_prometheus`; kill it if it hangs."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)
