"""The stages tell an observer what happens, in order; trials nest as children; nothing else."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from musicrec.config import TrainConfig
from musicrec.data.dataset import Dataset
from musicrec.errors import ArtifactError, ConfigError
from musicrec.fsutil import read_json
from musicrec.pipeline.observer import NullObserver, StageObserver
from musicrec.pipeline.sequence import train_and_evaluate


class Recording:
    """A :class:`StageObserver` that writes down every call (and its children's, by name)."""

    def __init__(self, name: str = "root", log: list[tuple[str, ...]] | None = None):
        self.name = name
        self.log: list[tuple[str, ...]] = [] if log is None else log

    @property
    def run_id(self) -> str | None:
        return f"run-{self.name}"

    def labels(self) -> Mapping[str, Any]:
        return {"observed_as": self.name}

    def child(self, name: str) -> Recording:
        self.log.append((self.name, "child", name))
        return Recording(name, self.log)

    def on_start(self, stage: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        self.log.append((self.name, "start", stage))

    def on_iteration(self, step: int, seconds: float, loss: float) -> None:
        self.log.append((self.name, "sweep", str(step)))

    def on_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        self.log.append((self.name, "metrics", ",".join(sorted(metrics))))

    def on_tags(self, tags: Mapping[str, str]) -> None:
        self.log.append((self.name, "tags", ",".join(sorted(tags))))

    def on_artifact(self, path: Path) -> None:
        self.log.append((self.name, "artifact", Path(path).name))

    def on_model(self, model_dir: Path, fingerprint: str, losses: list[float]) -> None:
        self.log.append((self.name, "model", Path(model_dir).name))

    def on_evaluation(self, model_dir: Path, report: Mapping[str, Any]) -> None:
        self.log.append((self.name, "evaluation", Path(model_dir).name))

    def on_end(self, failed: bool) -> None:
        self.log.append((self.name, "end", "failed" if failed else "ok"))


def test_recording_and_null_observers_keep_the_protocol() -> None:
    observers: list[StageObserver] = [Recording(), NullObserver()]
    assert all(callable(o.child) for o in observers)


def test_train_then_evaluate_is_observed_in_order_and_written_once(
    synth_dataset: Path, tmp_path: Path
) -> None:
    observer = Recording()
    config = TrainConfig(factors=8, iterations=3)
    _, report = train_and_evaluate(Dataset.load(synth_dataset), tmp_path / "m", config, observer)
    events = [what for _, what, _ in observer.log]
    assert events == [
        "start",
        "sweep",
        "sweep",
        "sweep",
        "metrics",
        "model",
        "evaluation",
        "end",
    ]  # the evaluation is observed before the stage ends
    manifest = read_json(tmp_path / "m" / "manifest.json")
    assert manifest["observed_as"] == "root"  # the stage wrote the observer's labels itself
    assert manifest["metrics"]["ndcg@10"] == pytest.approx(report.model["ndcg@10"])


def test_a_refused_or_failed_stage_is_observed_as_such(
    synth_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from musicrec.models.itemitem import EASEModel

    observer = Recording()
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "stray").write_text("not a model")
    with pytest.raises(ArtifactError, match="refusing to replace it"):
        train_and_evaluate(Dataset.load(synth_dataset), tmp_path / "m", TrainConfig(), observer)
    assert observer.log == []  # refused before the stage starts: nothing to observe

    def fail(*_: object) -> None:
        raise ConfigError("EASE: the regularized Gram matrix is not positive definite")

    monkeypatch.setattr(EASEModel, "_learn", fail)
    ease = TrainConfig.for_kind("ease")
    with pytest.raises(ConfigError, match="positive definite"):
        train_and_evaluate(Dataset.load(synth_dataset), tmp_path / "n", ease, observer)
    assert observer.log[0] == ("root", "start", "train")
    assert observer.log[-1] == ("root", "end", "failed")


def test_tune_nests_every_trial_under_the_search(synth_dataset: Path, tmp_path: Path) -> None:
    from musicrec.pipeline.tune import tune

    observer = Recording("tune")
    result = tune(
        synth_dataset, tmp_path / "t", n_trials=2, kinds="ease", final=True, observer=observer
    )
    starts = [(who, stage) for who, what, stage in observer.log if what == "start"]
    assert starts[0] == ("tune", "tune")
    assert ("trial-0", "trial") in starts and ("trial-1", "trial") in starts
    assert ("best", "train") in starts  # the final model, a child too
    ends = [who for who, what, _ in observer.log if what == "end"]
    assert ends[-1] == "tune"  # the search ends last
    artifacts = {name for who, what, name in observer.log if what == "artifact"}
    assert artifacts == {"best.yaml", "trials.csv"}
    assert "observed_as tune" in result.best_config_path.read_text()  # where it is recorded
