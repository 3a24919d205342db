"""Validation of the deployment and monitoring configuration.

Covers the packaged and compose Prometheus configs and alert rules (promtool: syntax and rule
unit tests), every Grafana dashboard query (against a real Prometheus), docker-compose.yml
(Compose Specification JSON schema), the Dockerfile, the Kubernetes manifests, the CI workflow
and the OS-dependency installer.

tests/data/compose-spec.json is a verbatim copy of ``schema/compose-spec.json`` from the
compose-spec/compose-spec repository (commit 00655e2222608fa6eaecdf12ac5195889ca2244a), vendored
because tests run offline.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from musicrec.ops import monitoring

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parents[1] / "data"
RESOURCES = ROOT / "src" / "musicrec" / "resources"
PROM_DIR = ROOT / "deploy" / "prometheus"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
K8S_DIR = ROOT / "deploy" / "k8s"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
INSTALL_SCRIPT = ROOT / "scripts" / "install-os-deps.sh"
BUILD_SCRIPT = ROOT / "scripts" / "build-images.sh"
MONITORING_DOCKERFILE = ROOT / "deploy" / "monitoring.Dockerfile"
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
PODMAN_CONF = ROOT / "deploy" / "podman" / "containers.conf"
LOCK = ROOT / "requirements.lock"
RUNTIME_LOCK = ROOT / "requirements-runtime.lock"
MAKEFILE = ROOT / "Makefile"

DATASOURCE_UID = "musicrec-prometheus"


def require_tool(name: str) -> str:
    """Path of an OS tool; skip without it locally, fail without it in CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found; run scripts/install-os-deps.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def run_tool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(arg) for arg in args], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"{args[0]} failed:\n{result.stdout}\n{result.stderr}"
    return result


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_yaml_docs(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# ---------------------------------------------------------------------------------------------
# Prometheus configuration and alert rules
# ---------------------------------------------------------------------------------------------


def api_job(config: dict[str, Any]) -> dict[str, Any]:
    jobs = [job for job in config["scrape_configs"] if job["job_name"] == monitoring.API_JOB]
    assert len(jobs) == 1
    job: dict[str, Any] = jobs[0]
    return job


@pytest.mark.parametrize(
    ("target", "scheme", "address", "path"),
    [
        ("127.0.0.1:8000", "http", "127.0.0.1:8000", "/metrics"),
        ("http://localhost:8000", "http", "localhost:8000", "/metrics"),
        ("http://localhost:8000/", "http", "localhost:8000", "/metrics"),
        ("https://api.example.org:8443/metrics", "https", "api.example.org:8443", "/metrics"),
        ("http://gateway:80/musicrec", "http", "gateway:80", "/musicrec/metrics"),
    ],
)
def test_render_prometheus_config_fills_in_target(
    target: str, scheme: str, address: str, path: str, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yml"
    config = yaml.safe_load(
        monitoring.render_prometheus_config(
            target, scrape_interval="2s", rules_path=rules, evaluation_interval="3s"
        )
    )
    assert config["global"]["scrape_interval"] == "2s"
    assert config["global"]["evaluation_interval"] == "3s"
    assert config["rule_files"] == [str(rules)]
    job = api_job(config)
    assert job["scheme"] == scheme
    assert job["metrics_path"] == path
    assert job["scrape_interval"] == "2s"
    assert job["static_configs"] == [{"targets": [address]}]


def test_render_prometheus_config_defaults_to_relative_rules() -> None:
    config = yaml.safe_load(monitoring.render_prometheus_config("localhost:8000"))
    assert config["rule_files"] == ["alerts.yml"]
    assert config["global"]["scrape_interval"] == "5s"


@pytest.mark.parametrize("target", ["", "   ", "ftp://host:21", "http://"])
def test_render_prometheus_config_rejects_bad_targets(target: str) -> None:
    with pytest.raises(monitoring.MonitoringError):
        monitoring.render_prometheus_config(target)


@pytest.mark.parametrize(
    ("target", "interval"),
    [("127.0.0.1:8000", "5s"), ("http://localhost:8000", "1s"), ("https://api:443", "10s")],
)
def test_rendered_config_passes_promtool(target: str, interval: str, tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    config = monitoring.write_prometheus_files(target, tmp_path, scrape_interval=interval)
    assert (tmp_path / "alerts.yml").read_text() == (RESOURCES / "alerts.yml").read_text()
    output = run_tool(promtool, "check", "config", config).stdout
    assert "1 rule files found" in output


@pytest.mark.parametrize("name", ["prometheus.yml", "prometheus-compose.yml"])
def test_deploy_prometheus_configs_pass_promtool(name: str) -> None:
    promtool = require_tool("promtool")
    output = run_tool(promtool, "check", "config", name, cwd=PROM_DIR).stdout
    assert "1 rule files found" in output


@pytest.mark.parametrize("path", [RESOURCES / "alerts.yml", PROM_DIR / "alerts.yml"])
def test_alert_rules_pass_promtool(path: Path) -> None:
    promtool = require_tool("promtool")
    run_tool(promtool, "check", "rules", path)


def test_deploy_alerts_equal_packaged_alerts() -> None:
    assert (PROM_DIR / "alerts.yml").read_bytes() == (RESOURCES / "alerts.yml").read_bytes()
    assert monitoring.alert_rules_text() == (RESOURCES / "alerts.yml").read_text()


@pytest.mark.parametrize("name", ["prometheus.yml", "prometheus-compose.yml"])
def test_deploy_prometheus_configs_match_packaged_template(name: str) -> None:
    template = load_yaml(RESOURCES / "prometheus.yml")
    deployed = load_yaml(PROM_DIR / name)
    assert deployed["global"] == template["global"]
    assert deployed["rule_files"] == template["rule_files"] == ["alerts.yml"]
    ignore = {"static_configs", "dns_sd_configs"}
    template_job = {k: v for k, v in api_job(template).items() if k not in ignore}
    deployed_job = {k: v for k, v in api_job(deployed).items() if k not in ignore}
    assert deployed_job == template_job
    assert 5 <= int(template_job["scrape_interval"].rstrip("s")) <= 10


def test_compose_prometheus_discovers_every_api_replica() -> None:
    job = api_job(load_yaml(PROM_DIR / "prometheus-compose.yml"))
    assert "static_configs" not in job
    assert job["dns_sd_configs"] == [
        {"names": ["api"], "type": "A", "port": 8000, "refresh_interval": "15s"}
    ]


@pytest.mark.parametrize("name", ["prometheus.yml", "prometheus-compose.yml"])
def test_deploy_prometheus_configs_send_alerts_to_alertmanager(name: str) -> None:
    (manager,) = load_yaml(PROM_DIR / name)["alerting"]["alertmanagers"]
    assert manager["static_configs"] == [{"targets": ["alertmanager:9093"]}]


def test_alertmanager_config_passes_amtool() -> None:
    amtool = require_tool("amtool")
    output = run_tool(amtool, "check-config", ALERTMANAGER_CONFIG).stdout
    assert "SUCCESS" in output
    config = load_yaml(ALERTMANAGER_CONFIG)
    receivers = {receiver["name"] for receiver in config["receivers"]}
    assert config["route"]["receiver"] in receivers


def alert_rules() -> dict[str, dict[str, Any]]:
    groups = load_yaml(RESOURCES / "alerts.yml")["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def test_alert_rules_cover_required_conditions() -> None:
    rules = alert_rules()
    expected = {
        "MusicrecApiDown": ('up{job="musicrec-api"} == 0', "critical"),
        "MusicrecModelNotLoaded": ("model_loaded", "critical"),
        "MusicrecHighErrorRate": ("> 0.01", "warning"),
        "MusicrecCriticalErrorRate": ("> 0.05", "critical"),
        "MusicrecHighLatencyP95": ("histogram_quantile", "warning"),
    }
    for name, (fragment, severity) in expected.items():
        assert fragment in rules[name]["expr"], name
        assert rules[name]["labels"]["severity"] == severity
    for name in ("MusicrecHighErrorRate", "MusicrecCriticalErrorRate"):
        assert 'status=~"5.."' in rules[name]["expr"]
        assert "[5m]" in rules[name]["expr"]
    assert "http_request_duration_seconds_bucket" in rules["MusicrecHighLatencyP95"]["expr"]
    assert "0.95" in rules["MusicrecHighLatencyP95"]["expr"]
    for name, rule in rules.items():
        assert re.fullmatch(r"\d+[smh]", rule["for"]), name
        assert rule["annotations"]["summary"].strip(), name
        assert rule["annotations"]["description"].strip(), name


def _series(name: str, values: str, **labels: str) -> dict[str, str]:
    all_labels = {"job": "musicrec-api", "instance": "api:8000", **labels}
    rendered = ", ".join(f'{key}="{value}"' for key, value in all_labels.items())
    return {"series": f"{name}{{{rendered}}}", "values": values}


def _requests(ok_per_min: int, errors_per_min: int) -> list[dict[str, str]]:
    labels = {"method": "POST", "endpoint": "/recommend"}
    return [
        _series("http_requests_total", f"0+{ok_per_min}x90", status="200", **labels),
        _series("http_requests_total", f"0+{errors_per_min}x90", status="500", **labels),
    ]


def _latency(fast_per_min: int, slow_per_min: int) -> list[dict[str, str]]:
    labels = {"method": "POST", "endpoint": "/recommend"}
    total = fast_per_min + slow_per_min
    return [
        _series("http_request_duration_seconds_bucket", f"0+{fast_per_min}x90", le="0.1", **labels),
        _series("http_request_duration_seconds_bucket", f"0+{total}x90", le="1", **labels),
        _series("http_request_duration_seconds_bucket", f"0+{total}x90", le="+Inf", **labels),
    ]


def _healthy_base() -> list[dict[str, str]]:
    return [_series("up", "1x90"), _series("model_loaded", "1x90")]


def _firing_case(
    input_series: list[dict[str, str]], eval_time: str, firing: list[str]
) -> dict[str, Any]:
    return {
        "interval": "1m",
        "input_series": input_series,
        "promql_expr_test": [
            {
                "expr": 'count by (alertname) (ALERTS{alertstate="firing"})',
                "eval_time": eval_time,
                "exp_samples": [
                    {"labels": f'{{alertname="{name}"}}', "value": 1} for name in sorted(firing)
                ],
            }
        ],
    }


def test_alert_rules_fire_on_synthetic_series(tmp_path: Path) -> None:
    """promtool rule unit tests: each alert fires on the symptom it describes, and only then."""
    promtool = require_tool("promtool")
    lookups = [
        _series("lookups_total", "0+6x90", kind="user", result="unknown"),
        _series("lookups_total", "0+4x90", kind="user", result="known"),
    ]
    cases = [
        # Everything healthy: no alert at all.
        _firing_case(_healthy_base() + _requests(100, 0) + _latency(100, 0), "20m", []),
        # 3% errors: warning only.
        _firing_case(
            _healthy_base() + _requests(97, 3) + _latency(100, 0),
            "20m",
            ["MusicrecHighErrorRate"],
        ),
        # 10% errors: warning and critical.
        _firing_case(
            _healthy_base() + _requests(90, 10) + _latency(100, 0),
            "20m",
            ["MusicrecHighErrorRate", "MusicrecCriticalErrorRate"],
        ),
        # Half the requests take between 0.1 s and 1 s: p95 well above 250 ms.
        _firing_case(
            _healthy_base() + _requests(100, 0) + _latency(50, 50),
            "20m",
            ["MusicrecHighLatencyP95"],
        ),
        # Scrapes fail from minute 2 on; the model was never loaded.
        _firing_case(
            [_series("up", "1 1 0 0 0 0 0 0"), _series("model_loaded", "0x8")],
            "6m",
            ["MusicrecApiDown", "MusicrecModelNotLoaded"],
        ),
        # 60% of lookups miss the model's vocabulary for an hour.
        _firing_case(
            _healthy_base() + _requests(100, 0) + _latency(100, 0) + lookups,
            "80m",
            ["MusicrecUnknownLookupShareHigh"],
        ),
    ]
    shutil.copyfile(RESOURCES / "alerts.yml", tmp_path / "alerts.yml")
    test_file = tmp_path / "alerts_test.yml"
    test_file.write_text(
        yaml.safe_dump(
            {"rule_files": ["alerts.yml"], "evaluation_interval": "1m", "tests": cases},
            sort_keys=False,
        )
    )
    run_tool(promtool, "test", "rules", test_file.name, cwd=tmp_path)


# ---------------------------------------------------------------------------------------------
# Local Prometheus server helper and Grafana dashboard queries
# ---------------------------------------------------------------------------------------------


def test_start_prometheus_without_binary_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(monitoring.MonitoringError, match=re.escape(monitoring.INSTALL_HINT)):
        monitoring.start_prometheus(
            "127.0.0.1:8000", tmp_path, binary="prometheus-binary-that-does-not-exist"
        )


def test_wait_ready_times_out_on_closed_port() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(monitoring.MonitoringError, match="not ready"):
        monitoring.wait_ready(url, timeout=0.5, interval=0.1)


@pytest.fixture(scope="module")
def prometheus_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus loaded with the packaged config and rules (the API target is absent)."""
    require_tool("prometheus")
    workdir = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    process = monitoring.start_prometheus(f"127.0.0.1:{free_port()}", workdir, port=port)
    try:
        url = monitoring.prometheus_url(port)
        monitoring.wait_ready(url, timeout=60, process=process)
        yield url
    finally:
        monitoring.stop_prometheus(process)


def prometheus_get(base_url: str, path: str, **params: str) -> dict[str, Any]:
    query = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{base_url}{path}?{query}", timeout=10) as response:
        body: dict[str, Any] = json.load(response)
    return body


def test_started_prometheus_loads_packaged_rules(prometheus_url: str) -> None:
    body = prometheus_get(prometheus_url, "/api/v1/rules")
    assert body["status"] == "success"
    loaded = {rule["name"] for group in body["data"]["groups"] for rule in group["rules"]}
    assert loaded == set(alert_rules())
    jobs: set[str] = set()
    deadline = time.monotonic() + 15
    while not jobs and time.monotonic() < deadline:  # targets appear shortly after /-/ready
        targets = prometheus_get(prometheus_url, "/api/v1/targets")["data"]["activeTargets"]
        jobs = {target["labels"]["job"] for target in targets}
        time.sleep(0.2)
    assert jobs == {monitoring.API_JOB}


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(
        (GRAFANA_DIR / "dashboards" / "musicrec.json").read_text(encoding="utf-8")
    )
    return dashboard


def dashboard_exprs() -> list[str]:
    panels = load_dashboard()["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}


def test_every_dashboard_query_is_valid_promql(prometheus_url: str) -> None:
    for expr in dashboard_exprs():
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        body = prometheus_get(prometheus_url, "/api/v1/query", query=expr)
        assert body["status"] == "success", (expr, body)


def test_dashboard_has_required_panels() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] and dashboard["title"]
    assert 36 <= dashboard["schemaVersion"] <= 41
    panels = {panel["title"]: panel for panel in dashboard["panels"]}
    required = {
        "Requests per minute": "http_requests_total",
        "Latency p50 / p95 / p99": "http_request_duration_seconds_bucket",
        "Error rate": 'status=~"5.."',
        "Recommendations by type": "recommendations_total",
        "Top moods": "topk(",
        "Model status": "model_loaded",
        "Model version": "model_info",
        "Model size": "model_factors",
        "Unknown lookup share": 'lookups_total{result="unknown"}',
        "Mean recommended popularity": "recommended_artist_log_popularity_count",
    }
    for title, fragment in required.items():
        assert title in panels, f"missing panel {title!r}"
        exprs = " ".join(target["expr"] for target in panels[title]["targets"])
        assert fragment in exprs, title
    latency = " ".join(t["expr"] for t in panels["Latency p50 / p95 / p99"]["targets"])
    for quantile in ("0.50", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}," in latency
    size = " ".join(t["expr"] for t in panels["Model size"]["targets"])
    for metric in ("model_users", "model_artists", "model_factors"):
        assert metric in size
    assert {panel["type"] for panel in dashboard["panels"]} >= {"timeseries", "stat", "bargauge"}


def test_dashboard_panels_are_well_formed() -> None:
    dashboard = load_dashboard()
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    datasources = load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")
    uids = {source["uid"] for source in datasources["datasources"]}
    assert uids == {DATASOURCE_UID}
    for panel in dashboard["panels"]:
        if panel["type"] == "row":  # a row groups the panels below it; it queries nothing
            assert panel["gridPos"]["w"] == 24 and not panel.get("targets"), panel["title"]
            continue
        assert panel["datasource"]["uid"] in uids, panel["title"]
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"]["uid"] in uids, panel["title"]


def test_grafana_provisioning_points_at_mounted_dashboards() -> None:
    datasources = load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")
    assert datasources["datasources"][0]["url"] == "http://prometheus:9090"
    providers = load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "dashboards.yml")
    path = providers["providers"][0]["options"]["path"]
    grafana = load_yaml(COMPOSE_FILE)["services"]["grafana"]
    assert f"./deploy/grafana/dashboards:{path}:ro" in grafana["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]


# ---------------------------------------------------------------------------------------------
# docker-compose.yml and Dockerfile
# ---------------------------------------------------------------------------------------------


def load_compose() -> dict[str, Any]:
    compose: dict[str, Any] = load_yaml(COMPOSE_FILE)
    return compose


def test_compose_file_matches_compose_spec_schema() -> None:
    schema = json.loads((DATA / "compose-spec.json").read_text(encoding="utf-8"))
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    errors = sorted(
        validator_cls(schema).iter_errors(load_compose()), key=lambda e: list(e.absolute_path)
    )
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_compose_schema_rejects_invalid_files() -> None:
    """Guard against a vendored schema that accepts anything."""
    schema = json.loads((DATA / "compose-spec.json").read_text(encoding="utf-8"))
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert not validator.is_valid({"services": {"api": {"restart_policy": "always"}}})
    assert not validator.is_valid(
        {"services": {"api": {"depends_on": {"db": {"condition": "when_ready"}}}}}
    )


def test_compose_services_are_production_ready() -> None:
    compose = load_compose()
    services = compose["services"]
    assert {"api", "ui", "mlflow", "prometheus", "alertmanager", "grafana"} <= set(services)
    named_volumes = set(compose["volumes"])
    assert {
        "models",
        "mlflow-db",
        "mlflow-artifacts",
        "prometheus-data",
        "alertmanager-data",
        "grafana-data",
    } <= named_volumes
    for name in ("api", "ui", "mlflow", "prometheus", "alertmanager", "grafana"):
        service = services[name]
        assert service["restart"] == "unless-stopped", name
        assert service["healthcheck"]["test"], name
        for dependency, spec in service.get("depends_on", {}).items():
            assert dependency in services, name
            expected = "service_completed_successfully" if dependency == "api-keys" else None
            assert spec["condition"] == (expected or "service_healthy"), name
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/", "$")):
                if source.startswith("./deploy/"):
                    assert (ROOT / source).exists(), f"{name}: {source} missing"
            else:
                assert source in named_volumes, f"{name}: volume {source} not declared"

    api = services["api"]
    health = " ".join(api["healthcheck"]["test"])
    assert "/health" in health
    assert api["environment"]["PROMETHEUS_MULTIPROC_DIR"] == "/tmp/prometheus-multiproc"
    assert any(mount.startswith("/tmp/prometheus-multiproc") for mount in api["tmpfs"])
    assert "models:/models:ro" in api["volumes"]
    assert api["depends_on"]["mlflow"]["condition"] == "service_healthy"
    assert services["ui"]["depends_on"]["api"]["condition"] == "service_healthy"
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    assert services["prometheus"]["depends_on"]["alertmanager"]["condition"] == "service_healthy"
    command = " ".join(services["mlflow"]["command"])
    assert "sqlite:////mlflow/db/mlflow.db" in command
    assert "--artifacts-destination /mlflow/artifacts" in command


def test_compose_configuration_comes_from_environment() -> None:
    compose = load_compose()
    api_env = compose["services"]["api"]["environment"]
    for key in ("MUSICREC_MODEL", "MUSICREC_ADMIN_API_KEY", "MUSICREC_CORS_ORIGINS"):
        assert re.fullmatch(rf"\$\{{{key}:-[^}}]*\}}", api_env[key]), key
    assert api_env["MLFLOW_TRACKING_URI"] == "${MLFLOW_TRACKING_URI:-http://mlflow:5000}"
    assert compose["services"]["ui"]["environment"]["MUSICREC_API_URL"].startswith(
        "${MUSICREC_API_URL:-"
    )
    for name in ("api", "ui"):
        assert compose["services"][name]["env_file"] == [{"path": ".env", "required": False}]
    # The admin key has no committed value anywhere.
    assert api_env["MUSICREC_ADMIN_API_KEY"] == "${MUSICREC_ADMIN_API_KEY:-}"


def test_compose_creates_api_keys_and_the_api_and_ui_use_them() -> None:
    services = load_compose()["services"]
    keys = services["api-keys"]
    script = " ".join(keys["command"])
    assert "test -s /keys/api-keys.json ||" in script  # made once, kept afterwards
    assert "--name ui --scope read,events " in script and "> /ui-key/ui.key" in script
    assert "chown -R 10001:10001 /keys /ui-key" in script
    api, ui = services["api"], services["ui"]
    assert api["environment"]["MUSICREC_API_KEYS_FILE"] == "/keys/api-keys.json"
    assert "api-keys:/keys:ro" in api["volumes"]
    assert api["depends_on"]["api-keys"]["condition"] == "service_completed_successfully"
    assert ui["environment"]["MUSICREC_API_KEY_FILE"] == "/ui-key/ui.key"
    assert ui["volumes"] == ["ui-key:/ui-key:ro"]  # the UI never sees the other keys


def test_compose_postgres_is_a_shared_event_store_the_api_can_use() -> None:
    compose = load_compose()
    postgres = compose["services"]["postgres"]
    assert postgres["profiles"] == ["postgres"]  # opt-in: the default stack stays as it is
    assert (
        postgres["restart"] == "unless-stopped" and "pg_isready" in postgres["healthcheck"]["test"]
    )
    assert "postgres-data:/var/lib/postgresql/data" in postgres["volumes"]
    assert "ports" not in postgres  # reachable on the compose network only
    assert postgres["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:-")
    environment = postgres["environment"]
    api_url = compose["services"]["api"]["environment"]["MUSICREC_EVENTS_URL"]
    assert api_url == "${MUSICREC_EVENTS_URL:-sqlite:///events.db}"
    documented = re.search(
        r"MUSICREC_EVENTS_URL=(postgresql\+psycopg://\S+)", COMPOSE_FILE.read_text()
    )
    assert documented is not None
    target = urllib.parse.urlsplit(documented.group(1).replace("$POSTGRES_PASSWORD", "pw"))
    assert (target.hostname, target.port, target.path) == ("postgres", 5432, "/musicrec")
    assert target.username == environment["POSTGRES_USER"] == "musicrec"
    assert "psycopg" in lock_pins(RUNTIME_LOCK)  # the API image has the driver


def test_compose_prometheus_uses_compose_config_and_shared_rules() -> None:
    services = load_compose()["services"]
    volumes = services["prometheus"]["volumes"]
    assert "./deploy/prometheus/prometheus-compose.yml:/etc/prometheus/prometheus.yml:ro" in volumes
    assert "./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in volumes
    manager = services["alertmanager"]
    assert (
        "./deploy/alertmanager/alertmanager.yml:/etc/alertmanager/alertmanager.yml:ro"
        in manager["volumes"]
    )
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in manager["command"]


def test_compose_monitoring_images_can_be_replaced_by_local_builds() -> None:
    """Registry-less hosts run the Debian-package images of deploy/monitoring.Dockerfile."""
    services = load_compose()["services"]
    assert services["prometheus"]["image"] == (
        "${PROMETHEUS_IMAGE:-prom/prometheus}:${PROMETHEUS_VERSION:-v2.53.0}"
    )
    assert services["alertmanager"]["image"] == (
        "${ALERTMANAGER_IMAGE:-prom/alertmanager}:${ALERTMANAGER_VERSION:-v0.27.0}"
    )
    stages = dockerfile_stages(MONITORING_DOCKERFILE)
    assert {"prometheus", "alertmanager"} <= set(stages)
    assert " ".join(stages["prometheus"]).count('ENTRYPOINT ["/usr/bin/prometheus"]') == 1
    assert 'ENTRYPOINT ["/usr/bin/prometheus-alertmanager"]' in stages["alertmanager"]
    for stage in ("prometheus", "alertmanager"):
        assert "USER nobody" in stages[stage]


def dockerfile_stages(path: Path = DOCKERFILE) -> dict[str, list[str]]:
    """Instructions per build stage (continuation lines joined, comments dropped)."""
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", text)
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, flags=re.IGNORECASE)
        if match:
            current = stages.setdefault(match.group(1), [])
        current.append(line)
    return stages


def test_dockerfile_builds_api_and_ui_targets_referenced_by_compose() -> None:
    stages = dockerfile_stages()
    assert {"builder", "runtime", "api", "ui"} <= set(stages)
    assert list(stages)[-1] == "api", "api should be the default (last) target"
    for service in load_compose()["services"].values():
        build = service.get("build")
        if build:
            assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
            assert build["target"] in stages


def test_dockerfile_runtime_is_slim_non_root_and_healthchecked() -> None:
    stages = dockerfile_stages()
    lines = DOCKERFILE.read_text().splitlines()
    # The base is a parameter (make images passes a locally made Debian base); the default
    # stays the public slim Python image.
    assert "ARG PYTHON_VERSION=3.11" in lines
    assert "ARG BASE_IMAGE=python:${PYTHON_VERSION}-slim" in lines
    assert stages["builder"][0] == "FROM ${BASE_IMAGE} AS builder"
    assert stages["runtime"][0] == "FROM ${BASE_IMAGE} AS runtime"
    assert any(re.fullmatch(r"USER 10001(:10001)?", line) for line in stages["runtime"])
    assert "COPY --from=builder /opt/venv /opt/venv" in stages["runtime"]
    api = " ".join(stages["api"])
    assert "EXPOSE 8000" in api
    assert "HEALTHCHECK" in api and "/health" in api
    assert "musicrec serve" in api
    ui = " ".join(stages["ui"])
    assert "EXPOSE 8501" in ui and "HEALTHCHECK" in ui and "musicrec ui" in ui
    for stage in ("api", "ui"):
        assert not any(line.startswith("USER root") for line in stages[stage])


def test_dockerfile_installs_the_hashed_runtime_lock() -> None:
    builder = " ".join(dockerfile_stages()["builder"])
    assert "COPY requirements-runtime.lock" in builder
    assert "pip install --require-hashes -r requirements-runtime.lock" in builder
    assert "pip install --no-deps ." in builder


def lock_pins(path: Path) -> dict[str, set[str]]:
    """Package -> pinned versions (a universal lock may pin one per Python version)."""
    pins: dict[str, set[str]] = {}
    for match in re.finditer(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", path.read_text(), re.M):
        pins.setdefault(match.group(1).lower(), set()).add(match.group(2))
    return pins


def test_locks_pin_every_dependency_with_hashes() -> None:
    for path in (LOCK, RUNTIME_LOCK):
        text = path.read_text()
        assert "make lock" in text.splitlines()[1], path  # how to regenerate it
        requirements = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2].strip())
        for requirement in requirements:
            if requirement.startswith("#"):
                continue
            assert "==" in requirement and "--hash=sha256:" in requirement, requirement[:80]
    full, runtime = lock_pins(LOCK), lock_pins(RUNTIME_LOCK)
    assert {"mlflow", "implicit", "fastapi", "streamlit"} <= runtime.keys()
    assert {"pytest", "pyspark", "podman-compose", "uv"} <= full.keys()
    assert not {"pytest", "pyspark"} & runtime.keys()
    for name, versions in runtime.items():
        assert versions <= full.get(name, set()), f"{name}: image and dev locks differ"


def test_make_install_and_lock_use_the_lock_files() -> None:
    text = MAKEFILE.read_text()
    assert "scripts/install-python-deps.sh $(VENV) requirements.lock" in text
    installer = (ROOT / "scripts" / "install-python-deps.sh").read_text()
    # uv and the pip fallback install the same hashed lock, then musicrec without dependencies.
    assert installer.count('--require-hashes -r "$lock"') == 2
    assert installer.count("--no-deps -e .") == 2
    assert "-o requirements.lock" in text and "-o requirements-runtime.lock" in text
    assert re.search(r"^images: .*\n\t.*scripts/build-images.sh", text, re.M)


def test_dockerfile_and_context_carry_no_secrets() -> None:
    for line in DOCKERFILE.read_text().splitlines():
        if re.match(r"\s*(ARG|ENV)\b", line):
            assert not re.search(r"(SECRET|PASSWORD|TOKEN|API_KEY)", line, re.IGNORECASE), line
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".env", "data", "models", "mlruns"} <= ignored


# ---------------------------------------------------------------------------------------------
# Kubernetes manifests
# ---------------------------------------------------------------------------------------------

K8S_KINDS = {
    "namespace.yaml": ("v1", "Namespace"),
    "configmap.yaml": ("v1", "ConfigMap"),
    "pvc.yaml": ("v1", "PersistentVolumeClaim"),
    "api-deployment.yaml": ("apps/v1", "Deployment"),
    "api-service.yaml": ("v1", "Service"),
    "api-hpa.yaml": ("autoscaling/v2", "HorizontalPodAutoscaler"),
    "ui-deployment.yaml": ("apps/v1", "Deployment"),
    "ui-service.yaml": ("v1", "Service"),
    "retrain-cronjob.yaml": ("batch/v1", "CronJob"),
}


def k8s_objects() -> dict[str, dict[str, Any]]:
    objects: dict[str, dict[str, Any]] = {}
    for name in K8S_KINDS:
        docs = load_yaml_docs(K8S_DIR / name)
        assert len(docs) == 1, name
        objects[name] = docs[0]
    return objects


def test_k8s_manifests_have_expected_kinds_and_api_versions() -> None:
    for name, obj in k8s_objects().items():
        assert (obj["apiVersion"], obj["kind"]) == K8S_KINDS[name], name
        assert obj["metadata"]["name"], name
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "musicrec", name


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load_yaml(K8S_DIR / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    manifests = {p.name for p in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(manifests) == sorted(K8S_KINDS)


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    return found


@pytest.mark.parametrize("name", ["api-deployment.yaml", "ui-deployment.yaml"])
def test_k8s_deployments_are_hardened_and_resource_bounded(name: str) -> None:
    deployment = k8s_objects()[name]
    spec = deployment["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= pod_labels.items()
    assert spec["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    for container in containers(deployment):
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind]), (name, kind)
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["readinessProbe"]["httpGet"]["path"]
        assert container["livenessProbe"]["httpGet"]["path"]


def test_k8s_api_deployment_probes_config_and_secret() -> None:
    objects = k8s_objects()
    deployment = objects["api-deployment.yaml"]
    (container,) = containers(deployment)
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    port_names = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert port_names == {"http": 8000}
    config_name = objects["configmap.yaml"]["metadata"]["name"]
    assert {"configMapRef": {"name": config_name}} in container["envFrom"]
    env = {env["name"]: env for env in container["env"]}
    admin = env["MUSICREC_ADMIN_API_KEY"]
    assert "value" not in admin
    assert admin["valueFrom"]["secretKeyRef"]["name"]
    assert env["MUSICREC_API_KEYS_FILE"]["value"] == "/keys/api-keys.json"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    claim = objects["pvc.yaml"]["metadata"]["name"]
    models = [v for v in volumes.values() if "persistentVolumeClaim" in v]
    assert [v["persistentVolumeClaim"]["claimName"] for v in models] == [claim]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/models"]["name"] == models[0]["name"]
    assert mounts["/models"]["readOnly"] is True
    config = objects["configmap.yaml"]["data"]
    assert config["MUSICREC_MODEL"].startswith("/models/")
    assert config["PROMETHEUS_MULTIPROC_DIR"] in mounts
    assert not any(kind == "Secret" for _, kind in K8S_KINDS.values())
    keys = volumes[mounts["/keys"]["name"]]["secret"]
    assert keys["secretName"] == "musicrec-api-keys" and not keys.get("optional")
    assert mounts["/keys"]["readOnly"] is True


def test_k8s_ui_uses_its_key_from_the_secret_the_script_makes() -> None:
    (container,) = containers(k8s_objects()["ui-deployment.yaml"])
    key = {env["name"]: env for env in container["env"]}["MUSICREC_API_KEY"]
    assert key["valueFrom"]["secretKeyRef"] == {"name": "musicrec-ui-key", "key": "api-key"}
    script = (ROOT / "scripts" / "k8s-api-keys.sh").read_text()
    for secret in ("musicrec-api-keys", "musicrec-ui-key"):
        assert f"create secret generic {secret}" in script


@pytest.mark.parametrize(
    ("service", "deployment"),
    [("api-service.yaml", "api-deployment.yaml"), ("ui-service.yaml", "ui-deployment.yaml")],
)
def test_k8s_service_selects_deployment_pods(service: str, deployment: str) -> None:
    objects = k8s_objects()
    svc = objects[service]
    pod_template = objects[deployment]["spec"]["template"]
    assert svc["spec"]["selector"].items() <= pod_template["metadata"]["labels"].items()
    container_ports = {
        port["name"]
        for container in pod_template["spec"]["containers"]
        for port in container["ports"]
    }
    for port in svc["spec"]["ports"]:
        assert port["targetPort"] in container_ports


def test_k8s_hpa_targets_api_deployment_on_cpu() -> None:
    objects = k8s_objects()
    hpa = objects["api-hpa.yaml"]["spec"]
    deployment = objects["api-deployment.yaml"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": deployment["apiVersion"],
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]
    (metric,) = hpa["metrics"]
    assert metric["type"] == "Resource"
    assert metric["resource"]["name"] == "cpu"
    assert 0 < metric["resource"]["target"]["averageUtilization"] <= 100


# ---------------------------------------------------------------------------------------------
# CI workflow and OS-dependency installer
# ---------------------------------------------------------------------------------------------


def test_ci_workflow_mirrors_local_ci() -> None:
    workflow = load_yaml(WORKFLOW)
    triggers = workflow.get("on", workflow.get(True))  # PyYAML reads the key `on` as True
    assert "push" in triggers and "pull_request" in triggers
    jobs = workflow["jobs"]
    assert {"lint", "test", "docker"} <= set(jobs)

    def commands(job: str) -> str:
        return "\n".join(step.get("run", "") for step in jobs[job]["steps"])

    assert "make lint" in commands("lint")
    test_commands = commands("test")
    assert "scripts/install-os-deps.sh" in test_commands
    assert "pip install --require-hashes -r requirements.lock" in test_commands
    assert "make test" in test_commands
    assert jobs["test"]["env"]["CI"] == "true"
    docker_steps = jobs["docker"]["steps"]
    builds = [s for s in docker_steps if s.get("uses", "").startswith("docker/build-push-action")]
    assert builds and all(s["with"]["push"] is False for s in builds)
    assert set(jobs["docker"]["strategy"]["matrix"]["target"]) == {"api", "ui"}


def test_install_script_is_valid_noninteractive_and_idempotent() -> None:
    bash = require_tool("bash")
    run_tool(bash, "-n", INSTALL_SCRIPT)
    text = INSTALL_SCRIPT.read_text()
    assert text.startswith("#!/usr/bin/env bash")
    assert "set -euo pipefail" in text
    assert "DEBIAN_FRONTEND=noninteractive" in text
    assert "--no-install-recommends" in text
    assert "policy-rc.d" in text and "exit 101" in text
    packages = ["prometheus", "chromium", "chromium-driver"]
    packages += ["prometheus-alertmanager", "postgresql"]
    for package in packages:
        assert re.search(rf"missing\+=\({re.escape(package)}\)", text), package
    helpers = ["podman", "runc", "conmon", "netavark", "aardvark-dns", "iptables"]
    for helper in [*helpers, "default-jre-headless", "libopenblas0"]:
        assert re.search(rf'"{re.escape(helper)}:(cmd|file|lib) ', text), helper
    assert text.index("apt-get update") < text.index("apt-get install -y")
    assert os.access(INSTALL_SCRIPT, os.X_OK)


def test_install_script_check_names_each_missing_container_helper(tmp_path: Path) -> None:
    # With nothing on PATH, the helpers found by command are missing whatever the machine has.
    bash = require_tool("bash")
    result = subprocess.run(
        [bash, str(INSTALL_SCRIPT), "--check"],
        env={"PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    for helper in ("podman", "runc", "mmdebstrap"):
        assert f"install-os-deps: {helper} is missing (apt-get install {helper})" in lines
    assert result.stdout == ""


def test_install_script_check_names_missing_spark_helpers(tmp_path: Path) -> None:
    # No java on PATH, and an ldconfig whose cache lists no BLAS: both Spark helpers are named.
    bash = require_tool("bash")
    ldconfig = tmp_path / "ldconfig"
    ldconfig.write_text("#!/bin/sh\nprintf '\\tlibz.so.1 (libc6) => /x\\n'\n")
    ldconfig.chmod(0o755)
    result = subprocess.run(
        [bash, str(INSTALL_SCRIPT), "--check"],
        env={"PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    for package in ("default-jre-headless", "libopenblas0"):
        assert f"install-os-deps: {package} is missing (apt-get install {package})" in lines
    # The same ldconfig listing both libraries (tab-indented, as ldconfig prints): BLAS is found.
    ldconfig.write_text(
        "#!/bin/sh\nprintf '\\tlibblas.so.3 (libc6) => /x\\n\\tliblapack.so.3 (libc6) => /y\\n'\n"
    )
    result = subprocess.run(
        [bash, str(INSTALL_SCRIPT), "--check"],
        env={"PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert "install-os-deps: libopenblas0 is missing (apt-get install libopenblas0)" not in (
        result.stderr.splitlines()
    )
    assert "install-os-deps: default-jre-headless is missing" in result.stderr


@pytest.mark.parametrize(
    "script", [INSTALL_SCRIPT, BUILD_SCRIPT, ROOT / "scripts" / "k8s-api-keys.sh"]
)
def test_install_script_passes_shellcheck(script: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (optional linter)")
    run_tool(shellcheck, script)


def test_build_script_prefers_podman_and_reads_the_host_pip_config() -> None:
    bash = require_tool("bash")
    run_tool(bash, "-n", BUILD_SCRIPT)
    text = BUILD_SCRIPT.read_text()
    assert text.index("command -v podman") < text.index("command -v docker")
    assert "pip config list" in text
    for arg in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_CERT"):
        assert f"ARG {arg}" in DOCKERFILE.read_text(), arg
    assert "mmdebstrap" in text and "import" in text
    conf = PODMAN_CONF.read_text()
    assert 'runtime = "runc"' in conf and 'network_backend = "netavark"' in conf


def test_deploy_files_have_no_machine_specific_paths() -> None:
    files = [
        COMPOSE_FILE,
        DOCKERFILE,
        WORKFLOW,
        INSTALL_SCRIPT,
        BUILD_SCRIPT,
        MONITORING_DOCKERFILE,
        ALERTMANAGER_CONFIG,
        PODMAN_CONF,
        *PROM_DIR.glob("*.yml"),
        *K8S_DIR.glob("*.yaml"),
        *GRAFANA_DIR.rglob("*.yml"),
        *GRAFANA_DIR.rglob("*.json"),
    ]
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"/(home|Users|root)/[A-Za-z]", text.replace("/home/musicrec", "")), (
            path
        )


def test_k8s_retrain_cronjob_never_overlaps_and_publishes_what_the_api_watches() -> None:
    objects = k8s_objects()
    cron = objects["retrain-cronjob.yaml"]["spec"]
    assert cron["concurrencyPolicy"] == "Forbid"
    pod = cron["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = " ".join(container["args"])
    assert "musicrec retrain" in command
    config = objects["configmap.yaml"]["data"]
    assert f"--publish {config['MUSICREC_MODEL']}" in command
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert claims == [objects["pvc.yaml"]["metadata"]["name"]]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])


def test_live_loop_alerts_fire_on_synthetic_series(tmp_path: Path) -> None:
    """A model older than a week, or events the store refuses, page someone; a fresh one not."""
    promtool = require_tool("promtool")
    healthy = _healthy_base() + _requests(100, 0) + _latency(100, 0)
    day = 86400
    refused = _series(
        "events_rejected_total", "0+5x90", reason="store_unavailable", endpoint="/events"
    )
    cases = [
        _firing_case([*healthy, _series("model_age_seconds", f"{day}+60x90")], "60m", []),
        _firing_case(
            [*healthy, _series("model_age_seconds", f"{8 * day}+60x90")],
            "60m",
            ["MusicrecModelStale"],
        ),
        _firing_case([*healthy, refused], "20m", ["MusicrecEventsRejected"]),
    ]
    shutil.copyfile(RESOURCES / "alerts.yml", tmp_path / "alerts.yml")
    (tmp_path / "alerts_test.yml").write_text(
        yaml.safe_dump(
            {"rule_files": ["alerts.yml"], "evaluation_interval": "1m", "tests": cases},
            sort_keys=False,
        )
    )
    run_tool(promtool, "test", "rules", "alerts_test.yml", cwd=tmp_path)
