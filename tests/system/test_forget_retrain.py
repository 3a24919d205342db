"""Forgetting a listener reaches every later retraining (serving: test_access_servers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from musicrec.config import TrainConfig
from musicrec.events.forget import forget_listener
from musicrec.events.schema import validate_batch
from musicrec.events.store import EventStore
from musicrec.loop.retrain import RetrainConfig, retrain
from musicrec.models.artifact import ModelArtifact
from musicrec.pipeline.gate import GateConfig


@pytest.mark.slow
def test_retraining_leaves_out_a_forgotten_listener_of_the_base_data(
    synth_raw: Path, synth_model: Path, tmp_path: Path
) -> None:
    store = EventStore(f"sqlite:///{tmp_path / 'events.db'}")
    config = RetrainConfig(
        source="lastfm360k",
        input=synth_raw,
        workdir=tmp_path / "work",
        events_url=store.url,
        train=TrainConfig(factors=16, iterations=4),
        model_name="forget-test",
        experiment="forget-test",
        gate=GateConfig(  # any candidate passes: this test is about what it was trained on
            mode="non-inferiority", delta=1.0, coverage_share=1.0, novelty_share=1.0, alpha=1e-9
        ),
    )
    user = str(ModelArtifact.load(synth_model).users["user_id"].iloc[3])  # in the base file
    store.append(validate_batch([{"user_id": user, "artist": "Metallica"}]))
    before = retrain(config)
    assert before.model_dir is not None
    assert user in set(ModelArtifact.load(before.model_dir).users["user_id"])

    forget_listener(store, user, actor="cli")
    after = retrain(config)  # same base file, same watermark: the tombstone makes a new cycle
    assert after.status != "up_to_date" and after.key != before.key
    assert after.model_dir is not None
    trained = ModelArtifact.load(after.model_dir)
    assert user not in set(trained.users["user_id"])
    assert trained.manifest["events_included"] == 0  # her event is gone from the store
