"""A real Spark standalone cluster on loopback: ALS and item-item trained on it, a worker lost.

One module-scoped cluster (a master and two one-core workers from the installed pyspark, started
with ``musicrec spark up``) serves every test here; ``musicrec train`` runs as its own process,
the Spark driver, exactly as a user runs it. The fixture stops the cluster at teardown whatever
happened, and fails if any process it started (daemons, executors, their Python workers) is
left. Without pyspark or Java the tests skip locally and fail under CI.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from conftest import require_or_skip
from musicrec.cli import app as cli_app
from musicrec.config import TrainConfig
from musicrec.errors import ConfigError
from musicrec.models.artifact import ModelArtifact
from musicrec.models.spark_als import require_java
from musicrec.ops.spark_cluster import Cluster, alive, read_cluster, stop_cluster
from musicrec.pipeline.evaluate import evaluate_model
from musicrec.pipeline.train import train

pytestmark = pytest.mark.slow

MUSICREC = str(Path(sys.executable).parent / "musicrec")
LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}
FIT_TIMEOUT_S = 540


@dataclass
class RunningCluster:
    cluster: Cluster
    directory: Path
    seen: set[int] = field(default_factory=set)  # every pid of the cluster observed so far

    def observe(self) -> set[int]:
        """Record (and return) the daemons and all their descendants running now."""
        pids = {d.pid for d in self.cluster.daemons}
        for pid in list(pids):
            try:
                pids |= {p.pid for p in psutil.Process(pid).children(recursive=True)}
            except psutil.NoSuchProcess:
                continue
        self.seen |= pids
        return pids


def _has_java() -> bool:
    try:
        require_java()
    except ConfigError:
        return False
    return True


def processes_in(directory: Path) -> list[str]:
    """Live processes whose command line or working directory lies in ``directory``."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd", "status"]):
        info = proc.info
        if info["status"] == psutil.STATUS_ZOMBIE:
            continue
        text = " ".join(info["cmdline"] or []) + " " + str(info["cwd"] or "")
        if str(directory) in text:
            found.append(f"{info['pid']}: {text[:200]}")
    return found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    require_or_skip(importlib.util.find_spec("pyspark") is not None, "pyspark not installed")
    require_or_skip(_has_java(), "no Java runtime for Spark")
    directory = tmp_path_factory.mktemp("spark-cluster")
    args = ["spark", "up", "--workers", "2", "--cores", "1", "--memory", "1g"]
    args += ["--port", "0", "--webui-port", "0", "--dir", str(directory)]
    result = CliRunner().invoke(cli_app, args)
    running: RunningCluster | None = None
    try:
        assert result.exit_code == 0, result.output
        found = read_cluster(directory)
        assert found is not None
        running = RunningCluster(found, directory)
        running.observe()
        yield running
    finally:  # also when a test (or the start itself) failed
        down = CliRunner().invoke(cli_app, ["spark", "down", "--dir", str(directory)])
        leftover = stop_cluster(directory)  # nothing, if `down` did its job
        survivors = sorted(pid for pid in (running.seen if running else ()) if alive(pid))
        assert down.exit_code == 0, down.output
        assert leftover == [], leftover
        assert survivors == [], survivors
        assert processes_in(directory) == []


def run_musicrec(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([MUSICREC, "-v", *args], stdout=out, stderr=subprocess.STDOUT)


def executor_tasks(directory: Path, worker: str) -> int:
    """Tasks the worker's executors have finished so far (from their logs)."""
    return sum(
        path.read_text(errors="replace").count("Finished task")
        for path in (directory / "work" / worker).glob("app-*/*/stderr")
    )


def listening_addresses(pids: set[int]) -> set[str]:
    addresses = set()
    for pid in pids:
        try:
            connections = psutil.Process(pid).net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        addresses |= {c.laddr.ip for c in connections if c.status == psutil.CONN_LISTEN}
    return addresses


# ----------------------------------------------------------------------------- tests


def test_cluster_has_two_workers_on_loopback(cluster: RunningCluster) -> None:
    import urllib.request

    with urllib.request.urlopen(f"{cluster.cluster.webui_url}/json/", timeout=10) as response:
        state = json.load(response)
    assert sum(w["state"] == "ALIVE" for w in state["workers"]) == 2
    assert cluster.cluster.master_url.startswith("spark://127.0.0.1:")
    pids = cluster.observe()
    addresses = listening_addresses(pids)
    assert addresses and addresses <= LOOPBACK, addresses
    for name in ("master", "worker-1", "worker-2"):
        pid = int((cluster.directory / "pids" / f"{name}.pid").read_text())
        assert alive(pid)


@pytest.mark.parametrize("kind", ["itemknn", "rp3beta"])
def test_itemitem_on_the_cluster_equals_this_machine(
    cluster: RunningCluster, hetrec_dataset: Path, tmp_path: Path, kind: str
) -> None:
    out = tmp_path / "spark"
    args = ["train", "--data", str(hetrec_dataset), "--out", str(out), "--kind", kind]
    args += ["--engine", "spark", "--spark-master", cluster.cluster.master_url, "--no-track"]
    process = run_musicrec(args, tmp_path / "train.log")
    assert process.wait(timeout=FIT_TIMEOUT_S) == 0, (tmp_path / "train.log").read_text()[-3000:]
    train(hetrec_dataset, tmp_path / "local", TrainConfig.for_kind(kind))
    spark_model = ModelArtifact.load(out)
    assert spark_model.manifest["engine"] == "spark"
    assert type(spark_model.model) is type(ModelArtifact.load(tmp_path / "local").model)
    got = sp.load_npz(out / "similarity.npz").tocsr()
    ref = sp.load_npz(tmp_path / "local" / "similarity.npz").tocsr()
    assert got.shape == ref.shape and ref.nnz > 100_000
    np.testing.assert_allclose(got.toarray(), ref.toarray(), rtol=1e-5, atol=1e-7)
    for row in range(ref.shape[0]):
        ours, theirs = set(got[row].indices), set(ref[row].indices)
        if ours != theirs:  # only neighbours tied at the cut-off may differ
            cut = ref[row].data.min()
            values = ref[row].toarray().ravel()[list(theirs - ours)]
            assert np.allclose(values, cut, rtol=1e-6), (row, ours ^ theirs)


def test_als_on_the_cluster_survives_a_lost_worker_and_serves(
    cluster: RunningCluster, hetrec_dataset: Path, hetrec_model: Path, tmp_path: Path
) -> None:
    out, checkpoints, log = tmp_path / "model", tmp_path / "checkpoints", tmp_path / "train.log"
    args = ["train", "--data", str(hetrec_dataset), "--out", str(out), "--engine", "spark"]
    args += ["--spark-master", cluster.cluster.master_url]
    args += ["--spark-checkpoint-dir", str(checkpoints), "--no-track"]
    process = run_musicrec(args, log)
    victim = cluster.cluster.workers[1]
    deadline = time.monotonic() + FIT_TIMEOUT_S
    # Wait until ALS itself runs (logged just before the fit) and has done some work.
    while "Spark ALS on" not in log.read_text(errors="replace"):
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.5)
    before = executor_tasks(cluster.directory, victim.name)
    while executor_tasks(cluster.directory, victim.name) < before + 30:
        assert process.poll() is None, "the fit ended before a worker could be lost"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    pids = cluster.observe()
    driver = {process.pid} | {p.pid for p in psutil.Process(process.pid).children(recursive=True)}
    assert listening_addresses(pids | driver) <= LOOPBACK
    doomed = {victim.pid} | {p.pid for p in psutil.Process(victim.pid).children(recursive=True)}
    assert len(doomed) >= 2  # the worker and its executor
    os.killpg(victim.pid, signal.SIGKILL)  # the machine is gone: worker and executor at once
    assert process.poll() is None and not (out / "manifest.json").exists()

    saw_checkpoint = False
    while process.poll() is None:
        assert time.monotonic() < deadline, "fit did not finish after losing a worker"
        saw_checkpoint |= any(checkpoints.rglob("part-*"))
        time.sleep(0.5)
    text = log.read_text(errors="replace")
    assert process.returncode == 0, text[-3000:]
    assert re.search(r"Lost executor \d+", text), text[-3000:]
    assert not any(alive(pid) for pid in doomed)
    assert saw_checkpoint  # ALS checkpointed into the given directory (iteration 10 of 15)
    assert list(checkpoints.iterdir()) == []  # and the run's files were removed after the fit

    spark_ndcg = evaluate_model(hetrec_dataset, out, record=False).model["ndcg@10"]
    implicit_ndcg = evaluate_model(hetrec_dataset, hetrec_model, record=False).model["ndcg@10"]
    print(f"NDCG@10 on HetRec-2K: Spark cluster {spark_ndcg:.4f}, implicit {implicit_ndcg:.4f}")
    assert abs(spark_ndcg - implicit_ndcg) <= 0.01, (spark_ndcg, implicit_ndcg)
    _serves_a_recommendation(out, tmp_path)


def _serves_a_recommendation(model_dir: Path, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from musicrec.api.app import create_app
    from musicrec.api.settings import Settings

    model = tmp_path / "served"
    shutil.copytree(model_dir, model)
    settings = Settings(_env_file=None, model=str(model), index="exact", save_index=False)  # type: ignore[call-arg]
    artifact = ModelArtifact.load(model)
    assert artifact.manifest["engine"] == "spark"
    user_id = str(artifact.users.set_index("user_idx").loc[0, "user_id"])
    with TestClient(create_app(settings)) as client:
        response = client.post("/recommend", json={"type": "user", "user_id": user_id, "k": 5})
    assert response.status_code == 200, response.text
    assert len(response.json()["recommendations"]) == 5
