"""The paired promotion gate: its rules on controlled scores, and A/A twins on real data."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from musicrec.config import TrainConfig
from musicrec.errors import ConfigError
from musicrec.pipeline.gate import GateConfig, gate_scores
from musicrec.pipeline.segments import Segments
from musicrec.pipeline.userscores import UserScores

N_USERS, N_ITEMS = 600, 200


def scores(
    ndcg: float, *, listed: int = 100, novelty: float = 5.0, cold_drop: float = 0.0
) -> UserScores:
    """Per-user NDCG around ``ndcg`` (a shared per-user level, a little own noise), lists drawn
    from the first ``listed`` artists, and optionally a drop for the cold listeners."""
    shared = np.random.default_rng(0).normal(0.0, 0.1, N_USERS)
    own = np.random.default_rng(round(ndcg * 1e4) + listed).normal(0.0, 0.004, N_USERS)
    listener = (np.arange(N_USERS) % 3).astype(np.int8)
    values = ndcg + shared + own - cold_drop * (listener == 0)
    top = ((np.arange(N_USERS)[:, None] * 7 + np.arange(10)) % listed).astype(np.int32)
    segments = Segments(listener, np.zeros(N_ITEMS, dtype=np.int8), 10, 5, 1)
    per_user = {"ndcg@10": values, "novelty@10": np.full(N_USERS, novelty)}
    return UserScores(np.arange(N_USERS), per_user, top, segments, (10,), N_ITEMS, "fp")


CHAMPION = scores(0.25)


def test_superiority_needs_the_lower_bound_above_the_margin() -> None:
    gain = gate_scores(CHAMPION, scores(0.26), GateConfig(mode="superiority", margin=0.003))
    assert gain.passed, gain.reason
    small = gate_scores(CHAMPION, scores(0.252), GateConfig(mode="superiority", margin=0.003))
    assert not small.passed and "superiority" in small.reason
    low = small.comparison.metrics["ndcg@10"].low
    assert 0.0 < low < 0.003  # better, surely, but not by the margin


def test_non_inferiority_tolerates_delta() -> None:
    config = GateConfig(mode="non-inferiority", delta=0.01)
    assert gate_scores(CHAMPION, scores(0.245), config).passed
    worse = gate_scores(CHAMPION, scores(0.235), config)
    assert not worse.passed and worse.checks[0].name == "non-inferiority"


def test_guardrails_veto_whatever_the_mode() -> None:
    config = GateConfig(mode="non-inferiority")
    narrow = gate_scores(CHAMPION, scores(0.26, listed=50), config)  # half the catalogue shown
    assert not narrow.passed and [c.name for c in narrow.checks if not c.passed] == ["coverage"]
    popular = gate_scores(CHAMPION, scores(0.26, novelty=4.5), config)
    assert [c.name for c in popular.checks if not c.passed] == ["novelty"]
    cold = gate_scores(CHAMPION, scores(0.26, cold_drop=0.05), config)
    assert [c.name for c in cold.checks if not c.passed] == ["segments"]
    assert "cold" in cold.reason and "Holm" in cold.reason
    tags = cold.tags()
    assert tags["gate.check.segments"] == "fail" and tags["gate.passed"] == "false"
    assert "gate.ndcg_at_10.p_value_randomization" in tags


def test_bad_gate_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="--gate must be one of"):
        GateConfig(mode="best-guess")
    with pytest.raises(ConfigError, match="0 or more"):
        GateConfig(delta=-0.1)


@pytest.mark.slow
def test_twins_pass_non_inferiority_and_a_worse_model_is_blocked(hetrec_dataset: Path) -> None:
    """The calibration benchmark (benchmarks/gate_calibration.py) with two seeds."""
    from musicrec.data.dataset import Dataset
    from musicrec.pipeline.gate import decide, segment_check

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "gate_calibration.py"
    spec = importlib.util.spec_from_file_location("gate_calibration", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    dataset = Dataset.load(hetrec_dataset)
    for i in range(2):
        champion = bench.scored(dataset, TrainConfig(seed=1000 + i), None)
        twin = bench.scored(dataset, TrainConfig(seed=2000 + i), None)
        worse = bench.scored(dataset, TrainConfig(seed=3000 + i, **bench.WORSE), None)
        for candidate, passes_ni in ((twin, True), (worse, False)):
            base = GateConfig()
            found = gate_scores(champion, candidate, GateConfig(mode="non-inferiority"))
            assert found.passed is passes_ni, found.reason
            sup = decide(found.comparison, segment_check(champion, candidate, base), base)
            assert not sup.passed, sup.reason  # neither a twin nor a worse model is superior
