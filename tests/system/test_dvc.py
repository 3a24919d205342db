"""The DVC pipeline (dvc.yaml + params.yaml) run for real in a scratch git repository.

The repository's pipeline files and the source files its stages depend on are copied into a
temporary git repo with small synthetic sizes and tracking off; every stage runs the installed
``musicrec`` command. Remotes: a local directory and an S3 API served by moto on loopback.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from musicrec.data.validate import validate_dataset_dir

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
STAGES = ("data", "prepare", "train", "evaluate")
OUTS = ("data/raw", "data/dataset", "artifacts/model", "metrics.json")
SMALL_PARAMS = {
    ("data", "synth", "users"): 300,
    ("data", "synth", "artists"): 300,
    ("train", "factors"): 8,
    ("train", "iterations"): 3,
    ("mlflow", "track"): False,
}
TIMEOUT_S = 300


@dataclass(frozen=True)
class Pipeline:
    repo: Path
    env: dict[str, str]
    first_run: str


def run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run a command, fail the test with its output if it fails; return stdout + stderr."""
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(args)} failed ({done.returncode}):\n{output}"
    return output


def dvc(repo: Path, env: dict[str, str], *args: str) -> str:
    return run([str(Path(sys.executable).parent / "dvc"), *args], repo, env)


def dvc_json(repo: Path, env: dict[str, str], *args: str) -> Any:
    output = dvc(repo, env, *args, "--json")
    start = min(i for i in (output.find("{"), output.find("[")) if i >= 0)
    return json.JSONDecoder().raw_decode(output[start:])[0]


def ran_stages(output: str) -> list[str]:
    return [stage for stage in STAGES if f"Running stage '{stage}'" in output]


def digests(repo: Path) -> dict[str, str]:
    """sha256 of every file under the pipeline's outputs, keyed by relative path."""
    found: dict[str, str] = {}
    for out in OUTS:
        root = repo / out
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            found[path.relative_to(repo).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def set_params(path: Path, changes: dict[tuple[str, ...], Any]) -> None:
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    for keys, value in changes.items():
        section = params
        for key in keys[:-1]:
            section = section[key]
        assert keys[-1] in section, f"params.yaml has no {'.'.join(keys)}"
        section[keys[-1]] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def restore_head(pipeline: Pipeline) -> None:
    """Back to the committed pipeline state: files from git, outputs from the DVC cache."""
    run(["git", "checkout", "--", "."], pipeline.repo, pipeline.env)
    dvc(pipeline.repo, pipeline.env, "checkout", "--force")
    assert dvc_json(pipeline.repo, pipeline.env, "status") == {}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    base = tmp_path_factory.mktemp("dvc")
    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DVC_", "GIT_"))}
    for name in ("DVC_GLOBAL_CONFIG_DIR", "DVC_SYSTEM_CONFIG_DIR", "DVC_SITE_CACHE_DIR"):
        (base / name).mkdir()
        env[name] = str(base / name)
    env |= {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "musicrec tests",
        "GIT_AUTHOR_EMAIL": "tests@example.invalid",
        "GIT_COMMITTER_NAME": "musicrec tests",
        "GIT_COMMITTER_EMAIL": "tests@example.invalid",
        "MLFLOW_TRACKING_URI": f"sqlite:///{base / 'mlflow.db'}",
        "OPENBLAS_NUM_THREADS": "1",
    }
    repo = base / "repo"
    repo.mkdir()
    run(["git", "init", "-q"], repo, env)
    dvc(repo, env, "init", "-q")
    for name in ("dvc.yaml", "params.yaml", ".dvcignore", ".gitignore", ".dvc/config"):
        shutil.copy2(REPO_ROOT / name, repo / name)
    shutil.copytree(
        REPO_ROOT / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    set_params(repo / "params.yaml", SMALL_PARAMS)
    first_run = dvc(repo, env, "repro")
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-q", "-m", "pipeline"], repo, env)
    return Pipeline(repo, env, first_run)


def clone_and_pull(
    pipeline: Pipeline, dest: Path, remote_args: list[str], env: dict[str, str]
) -> Path:
    """Fresh git clone of the pipeline repo, remote set by scripts/dvc-remote.sh, then pull."""
    run(["git", "clone", "-q", str(pipeline.repo), str(dest)], dest.parent, env)
    configure_remote(dest, remote_args, env)
    assert not (dest / "data").exists()
    dvc(dest, env, "pull")
    return dest


def configure_remote(repo: Path, remote_args: list[str], env: dict[str, str]) -> None:
    script_env = env | {"DVC": str(Path(sys.executable).parent / "dvc")}
    run(["bash", str(REPO_ROOT / "scripts" / "dvc-remote.sh"), *remote_args], repo, script_env)


# --------------------------------------------------------------------------- tests


def test_repro_runs_every_stage_on_synthetic_data(pipeline: Pipeline) -> None:
    assert ran_stages(pipeline.first_run) == list(STAGES)
    repo = pipeline.repo
    validate_dataset_dir(repo / "data" / "dataset")
    metrics = json.loads((repo / "metrics.json").read_text())
    stats = json.loads((repo / "data/dataset/stats.json").read_text())
    assert 0 < stats["kept"]["users"] <= 300
    assert metrics["users_evaluated"] == stats["kept"]["users"]
    for key in ("precision@10", "recall@20", "ndcg@10", "map@20"):
        assert 0.0 <= metrics[key] <= 1.0
    manifest = json.loads((repo / "artifacts/model/manifest.json").read_text())
    dataset_meta = json.loads((repo / "data/dataset/dataset.json").read_text())
    assert manifest["params"]["factors"] == 8
    assert manifest["dataset"]["fingerprint"] == dataset_meta["fingerprint"]
    assert not manifest["metrics"], "evaluate must leave the train stage's output as is"
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(STAGES)
    assert lock["stages"]["train"]["params"]["params.yaml"]["train"]["factors"] == 8


def test_second_repro_does_nothing(pipeline: Pipeline) -> None:
    before = digests(pipeline.repo)
    output = dvc(pipeline.repo, pipeline.env, "repro")
    assert ran_stages(output) == []
    assert "is cached" not in output
    assert dvc_json(pipeline.repo, pipeline.env, "status") == {}
    assert digests(pipeline.repo) == before


def test_push_then_pull_into_a_fresh_clone_via_local_remote(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    remote = tmp_path / "remote"
    configure_remote(pipeline.repo, ["local", str(remote)], pipeline.env)
    dvc(pipeline.repo, pipeline.env, "push")
    assert any(p.is_file() for p in remote.rglob("*"))
    assert str(remote) not in (pipeline.repo / ".dvc" / "config").read_text()

    clone = clone_and_pull(pipeline, tmp_path / "clone", ["local", str(remote)], pipeline.env)
    assert digests(clone) == digests(pipeline.repo)
    assert dvc_json(clone, pipeline.env, "status") == {}


@pytest.fixture
def s3_server() -> Iterator[str]:
    """A moto S3 server on a free loopback port with one empty bucket."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing-secret",
        ).create_bucket(Bucket="musicrec-dvc")
        yield endpoint
    finally:
        server.stop()


def test_push_then_pull_into_a_fresh_clone_via_s3(
    pipeline: Pipeline, s3_server: str, tmp_path: Path
) -> None:
    import boto3

    env = pipeline.env | {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_server,
    }
    url = "s3://musicrec-dvc/store"
    configure_remote(pipeline.repo, ["s3", url], env)
    config_local = (pipeline.repo / ".dvc" / "config.local").read_text()
    assert f"endpointurl = {s3_server}" in config_local
    dvc(pipeline.repo, env, "push")
    for config in (".dvc/config", ".dvc/config.local"):
        assert "testing-secret" not in (pipeline.repo / config).read_text()
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing-secret",
    )
    listed = s3.list_objects_v2(Bucket="musicrec-dvc", Prefix="store/")
    assert listed.get("KeyCount", 0) > 0

    clone = clone_and_pull(pipeline, tmp_path / "clone", ["s3", url], env)
    assert digests(clone) == digests(pipeline.repo)
    assert dvc_json(clone, env, "status") == {}


def test_changing_one_parameter_reruns_only_what_depends_on_it(pipeline: Pipeline) -> None:
    repo, env = pipeline.repo, pipeline.env
    try:
        set_params(repo / "params.yaml", {("evaluate", "k"): [5, 10]})
        assert set(dvc_json(repo, env, "status")) == {"evaluate"}
        run(["git", "checkout", "--", "params.yaml"], repo, env)

        set_params(repo / "params.yaml", {("train", "regularization"): 0.5})
        assert set(dvc_json(repo, env, "status")) == {"train"}
        output = dvc(repo, env, "repro")
        assert ran_stages(output) == ["train", "evaluate"]
        lock = yaml.safe_load((repo / "dvc.lock").read_text())
        assert lock["stages"]["train"]["params"]["params.yaml"]["train"]["regularization"] == 0.5
        assert dvc_json(repo, env, "status") == {}
    finally:
        restore_head(pipeline)


def test_exp_run_with_a_set_parameter_and_metrics_diff(pipeline: Pipeline) -> None:
    repo, env = pipeline.repo, pipeline.env
    try:
        output = dvc(repo, env, "exp", "run", "-S", "train.factors=16")
        assert ran_stages(output) == ["train", "evaluate"]
        params = dvc_json(repo, env, "params", "diff")
        factors = params["params.yaml"]["train.factors"]
        assert (factors["old"], factors["new"]) == (8, 16)
        diff = dvc_json(repo, env, "metrics", "diff")["metrics.json"]
        assert "ndcg@10" in diff
        assert diff["ndcg@10"]["old"] != diff["ndcg@10"]["new"]
        manifest = json.loads((repo / "artifacts/model/manifest.json").read_text())
        assert manifest["params"]["factors"] == 16
    finally:
        restore_head(pipeline)
