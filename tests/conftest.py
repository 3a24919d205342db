"""Shared fixtures: real HetRec Last.fm-2K data (read in place) and tiny real models."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from musicrec.config import TrainConfig
from musicrec.data.prepare import PrepareConfig, prepare
from musicrec.data.synth import synthesize
from musicrec.pipeline.train import train

REPO_ROOT = Path(__file__).resolve().parents[1]
LASTFM_2K = Path(os.environ.get("MUSICREC_LASTFM2K", REPO_ROOT.parent / "shared/data/lastfm-2k"))


def require_or_skip(condition: bool, reason: str) -> None:
    """Skip locally when an external resource is missing; under CI a missing resource fails."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session", autouse=True)
def isolated_tracking_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """No test writes to the project's own MLflow store or model cache."""
    store = tmp_path_factory.mktemp("mlflow-store")
    patch = pytest.MonkeyPatch()
    patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    patch.setenv("MUSICREC_MODEL_CACHE", str(store / "model-cache"))
    patch.setenv("MUSICREC_EVENTS_URL", f"sqlite:///{store / 'events.db'}")
    yield store
    patch.undo()


@pytest.fixture(scope="session")
def lastfm2k_dir() -> Path:
    require_or_skip((LASTFM_2K / "user_artists.dat").exists(), f"{LASTFM_2K} not found")
    return LASTFM_2K


@pytest.fixture(scope="session")
def synth_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    synthesize(out, n_users=600, n_artists=700, seed=7)
    return out


@pytest.fixture(scope="session")
def synth_dataset(synth_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth-ds") / "dataset"
    prepare("lastfm360k", synth_raw, out, PrepareConfig())
    return out


@pytest.fixture(scope="session")
def synth_model(synth_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth-model") / "model"
    train(synth_dataset, out, TrainConfig(factors=32, iterations=10))
    return out


@pytest.fixture(scope="session")
def hetrec_dataset(lastfm2k_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hetrec-ds") / "dataset"
    prepare("hetrec2k", lastfm2k_dir, out, PrepareConfig())
    return out


@pytest.fixture(scope="session")
def hetrec_model(hetrec_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default configuration trained on the default split of real data."""
    out = tmp_path_factory.mktemp("hetrec-model") / "model"
    train(hetrec_dataset, out, TrainConfig())
    return out
