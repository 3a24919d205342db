"""Experiment metrics, the arm-stopped alert (promtool rule unit test) and the Grafana row."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from musicrec.online import metrics

ROOT = Path(__file__).resolve().parents[2]
RESOURCES = ROOT / "src" / "musicrec" / "resources"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "musicrec.json"
ALERT = "MusicrecExperimentArmStopped"


def test_metrics_are_exposed_per_experiment_and_arm() -> None:
    registry = CollectorRegistry()
    found = metrics.ExperimentMetrics(registry)
    found.observe_list("exp", "control", 0.004, shown=10)
    found.observe_list("exp", "control", 0.2, shown=0, error=True)
    found.observe_outcome("exp", "control", "play")
    found.set_stopped("exp", "treatment")
    text = generate_latest(registry).decode()
    assert 'experiment_lists_total{arm="control",experiment="exp",outcome="ok"} 1.0' in text
    assert 'experiment_lists_total{arm="control",experiment="exp",outcome="error"} 1.0' in text
    assert 'experiment_impressions_total{arm="control",experiment="exp"} 10.0' in text
    assert 'experiment_outcomes_total{arm="control",experiment="exp",kind="play"} 1.0' in text
    assert 'experiment_list_seconds_bucket{arm="control",experiment="exp",le="0.005"} 1.0' in text
    assert 'experiment_arm_stopped{arm="treatment",experiment="exp"} 1.0' in text


def test_the_grafana_row_and_the_alert_use_only_defined_metrics() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    (row,) = [p for p in panels if p["type"] == "row" and p["title"] == "Online experiments"]
    below = [p for p in panels if p["gridPos"]["y"] > row["gridPos"]["y"]]
    exprs = [t["expr"] for p in below for t in p["targets"]]
    assert len(below) >= 4
    used = {name for expr in exprs for name in re.findall(r"\bexperiment_[a-z_]+", expr)}
    defined = {
        f"{name}{suffix}" for name in metrics.NAMES for suffix in ("", "_bucket", "_sum", "_count")
    }
    assert used and used <= defined, used - defined
    for name in (metrics.LISTS, metrics.LIST_SECONDS, metrics.OUTCOMES, metrics.ARM_STOPPED):
        assert any(name in expr for expr in exprs), name
    rules = {
        rule["alert"]: rule
        for group in yaml.safe_load((RESOURCES / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    }
    assert metrics.ARM_STOPPED in rules[ALERT]["expr"]


def _series(value: str, arm: str) -> dict[str, str]:
    labels = f'job="musicrec-api", instance="api:8000", experiment="exp", arm="{arm}"'
    return {"series": f"experiment_arm_stopped{{{labels}}}", "values": value}


def test_arm_stopped_alert_fires_for_the_stopped_arm_only(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (make os-deps)")
    shutil.copyfile(RESOURCES / "alerts.yml", tmp_path / "alerts.yml")
    query = f'count by (arm) (ALERTS{{alertname="{ALERT}", alertstate="firing"}})'
    tests = {
        "rule_files": ["alerts.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                # treatment stopped at minute 5; control runs throughout
                "input_series": [_series("0x4 1x10", "treatment"), _series("0x15", "control")],
                "promql_expr_test": [
                    {"expr": query, "eval_time": "4m", "exp_samples": []},
                    {"expr": query, "eval_time": "5m", "exp_samples": []},  # pending (for: 1m)
                    {
                        "expr": query,
                        "eval_time": "8m",
                        "exp_samples": [{"labels": '{arm="treatment"}', "value": 1}],
                    },
                ],
            }
        ],
    }
    (tmp_path / "alerts_test.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
