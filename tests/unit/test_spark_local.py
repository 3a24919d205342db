"""Spark pieces that need no JVM: the cluster CLI's errors, session settings, shard arithmetic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from musicrec.cli import app as cli_app
from musicrec.errors import ConfigError
from musicrec.models import spark_als
from musicrec.models.spark_itemitem import finish_block, shard_gram
from musicrec.ops import spark_cluster


def test_loopback_masters_keep_the_driver_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPARK_LOCAL_IP", raising=False)
    assert spark_als.is_loopback("spark://127.0.0.1:7077")
    assert spark_als.is_loopback("spark://localhost:7077,127.0.0.1:7078")
    assert not spark_als.is_loopback("spark://10.0.0.5:7077")
    assert not spark_als.is_loopback("local[2]")
    conf = spark_als.default_conf("spark://127.0.0.1:7077")
    assert conf["spark.driver.bindAddress"] == "127.0.0.1"
    assert conf["spark.ui.enabled"] == "false"  # Spark's UI would bind every interface
    assert "spark.driver.memory" not in conf  # the cluster keeps its own sizing
    remote = spark_als.default_conf("spark://10.0.0.5:7077")
    assert "spark.driver.bindAddress" not in remote and "spark.ui.enabled" not in remote
    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")
    assert "spark.ui.enabled" not in spark_als.default_conf("spark://127.0.0.1:7077")


def test_checkpoint_dir_is_required_on_a_cluster_master(tmp_path: Path) -> None:
    spark_als.require_checkpoint_dir("local[*]", None)
    spark_als.require_checkpoint_dir("spark://127.0.0.1:7077", "hdfs:///tmp/ckpt")
    with pytest.raises(ConfigError, match="--spark-checkpoint-dir"):
        spark_als.require_checkpoint_dir("spark://127.0.0.1:7077", None)
    assert spark_als.checkpoint_uri("s3a://bucket/ckpt") == "s3a://bucket/ckpt"
    relative = spark_als.checkpoint_uri("ckpt")
    assert Path(relative).is_absolute() and relative.endswith("ckpt")


def test_train_on_a_cluster_without_checkpoint_dir_is_one_line(synth_dataset: Path) -> None:
    result = CliRunner().invoke(
        cli_app,
        [
            "train",
            "--data",
            str(synth_dataset),
            "--out",
            "unused-model-dir",
            "--engine",
            "spark",
            "--spark-master",
            "spark://127.0.0.1:1",
            "--no-track",
        ],
    )
    assert result.exit_code == 1
    assert "--spark-checkpoint-dir" in result.output
    assert "Traceback" not in result.output
    assert not Path("unused-model-dir").exists()


def test_spark_engine_kinds_are_checked() -> None:
    from musicrec.config import TrainConfig

    assert TrainConfig.for_kind("itemknn", engine="spark").to_dict()["engine"] == "spark"
    with pytest.raises(ConfigError, match="engine"):
        TrainConfig.for_kind("ease", engine="spark")
    # A blend fits its parts in this process: a part on Spark is refused, not ignored.
    with pytest.raises(ConfigError, match="blend first: .*engine"):
        TrainConfig.for_kind("blend", first={"kind": "itemknn", "engine": "spark"})
    # The engine is the model's own: same class, labelled spark, not fitted in this process.
    from musicrec.models.itemitem import ItemKNNModel
    from musicrec.models.kinds import build

    model = build(TrainConfig.for_kind("itemknn", engine="spark"))
    assert type(model) is ItemKNNModel
    assert model.engine == "spark" and not model.in_process
    local = build(TrainConfig.for_kind("rp3beta"))
    assert local.engine == "rp3beta" and local.in_process


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "--workers"),
        (["--memory", "lots"], "--memory"),
        (["--port", "70000"], "ports"),
    ],
)
def test_spark_up_rejects_bad_options(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli_app, ["spark", "up", "--dir", str(tmp_path), *args])
    assert result.exit_code == 1
    assert message in result.output
    assert not (tmp_path / "pids").exists()  # nothing was started


def test_spark_down_and_status_without_a_cluster(tmp_path: Path) -> None:
    down = CliRunner().invoke(cli_app, ["spark", "down", "--dir", str(tmp_path)])
    assert down.exit_code == 0 and "no Spark daemon running" in down.output
    status = CliRunner().invoke(cli_app, ["spark", "status", "--dir", str(tmp_path)])
    assert status.exit_code == 1 and "no Spark cluster" in status.output


def test_a_stale_pid_file_never_signals_another_process(tmp_path: Path) -> None:
    import subprocess
    import sys

    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / "pids").mkdir()
        (tmp_path / "pids" / "worker-1.pid").write_text(f"{bystander.pid}\n")
        assert spark_cluster.alive(bystander.pid)
        assert not spark_cluster.is_spark_daemon(bystander.pid)
        spark_cluster.stop_cluster(tmp_path, timeout=1)
        assert bystander.poll() is None  # not a Spark daemon: left alone
        assert not (tmp_path / "pids" / "worker-1.pid").exists()
    finally:
        bystander.kill()
        bystander.wait()
    assert not spark_cluster.alive(bystander.pid)


def test_shard_grams_sum_to_the_whole_product() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items, block_rows = 40, 23, 8
    left = sp.random(n_users, n_items, density=0.2, random_state=1, format="csr")
    right = left.copy()
    right.data = rng.random(right.nnz)
    coo_left, coo_right = left.tocoo(), right.tocsr().tocoo()
    assert np.array_equal(coo_left.row, coo_right.row)
    rows = list(zip(coo_left.row, coo_left.col, coo_left.data, coo_right.data, strict=True))
    shards = [[r for r in rows if r[0] % 3 == s] for s in range(3)]  # every user in one shard
    total = sp.csr_matrix((n_items, n_items))
    blocks: dict[int, sp.csr_matrix] = {}
    for shard in shards:
        for block, part in shard_gram(iter(shard), n_items, block_rows):
            assert part.shape[0] <= block_rows
            blocks[block] = blocks[block] + part if block in blocks else part
    for block, part in blocks.items():
        padded = sp.vstack(
            [
                sp.csr_matrix((block * block_rows, n_items)),
                part,
                sp.csr_matrix((n_items - block * block_rows - part.shape[0], n_items)),
            ]
        )
        total = total + padded
    np.testing.assert_allclose(total.toarray(), (left.T @ right).toarray(), rtol=1e-12)


def test_finish_block_keeps_top_k_lowest_index_among_ties_and_drops_itself() -> None:
    # Row 0 of the block is artist 4 (block 1 of 4 rows): its own cell is the largest.
    gram = sp.csr_matrix(np.array([[0.0, 2.0, 2.0, 1.0, 9.0, 2.0, 0.5, 0.0]]))
    spec = {"kind": "itemknn", "n_items": 8, "k": 4}
    kept = finish_block(1, gram, spec, block_rows=4)
    # Top 4 of (9 itself, 2, 2, 2, 1, 0.5): itself and the three 2s; itself dropped.
    assert sorted(kept.indices) == [1, 2, 5]
    spec = {"kind": "itemknn", "n_items": 8, "k": 3}
    assert sorted(finish_block(1, gram, spec, block_rows=4).indices) == [1, 2]  # tie: lowest
    rp3 = {"kind": "rp3beta", "n_items": 8, "k": 2, "penalty": np.ones(8, dtype=np.float32)}
    assert sorted(finish_block(1, gram, rp3, block_rows=4).indices) == [1, 2]  # never itself
