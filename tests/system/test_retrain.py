"""Continuous training: events merged into the base data, one idempotent gated cycle."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from musicrec.config import TrainConfig
from musicrec.data.sources import RawInteractions, load
from musicrec.errors import RetrainError
from musicrec.events.schema import validate_batch
from musicrec.events.store import EventStore
from musicrec.loop.retrain import RetrainConfig, exclusive, merge_events, retrain
from musicrec.models.artifact import ModelArtifact
from musicrec.pipeline.gate import GateConfig

# Accepts any candidate: no NDCG bound, no guardrail can trip (coverage and novelty stay >= 0).
LENIENT = GateConfig(
    mode="non-inferiority", delta=1.0, coverage_share=1.0, novelty_share=1.0, alpha=1e-9
)

NOW = 1_700_000_000.0


def tiny_raw() -> RawInteractions:
    return RawInteractions(
        user_codes=np.array([0, 0, 1], dtype=np.int32),
        item_codes=np.array([0, 1, 1], dtype=np.int32),
        plays=np.array([5.0, 3.0, 7.0]),
        user_ids=np.array(["a", "b"], dtype=object),
        items=pd.DataFrame(
            {
                "artist_key": ["metallica", "slayer"],
                "artist_name": ["Metallica", "Slayer"],
                "mbid": [None, None],
            }
        ),
        rows_read=3,
    )


def test_merge_events_adds_users_artists_and_removes_bans() -> None:
    events = pd.DataFrame(
        {
            "user_id": ["a", "c", "c", "b", "a"],
            "artist": ["METALLICA", "Slayer", "New Band", "Slayer", "Slayer"],
            "kind": ["play", "love", "play", "ban", "skip"],
            "plays": [2, 1, 4, 1, 1],
            "timestamp": [1, 2, 3, 4, 5],
        }
    )
    merged = merge_events(tiny_raw(), events)
    users = merged.user_ids[merged.user_codes]
    artists = merged.items["artist_key"].to_numpy()[merged.item_codes]
    rows = sorted(zip(users, artists, merged.plays, strict=True))
    assert rows == [
        ("a", "metallica", 2.0),  # the event row; prepare sums it with the base row
        ("a", "metallica", 5.0),
        ("a", "slayer", 3.0),
        ("c", "new band", 4.0),
        ("c", "slayer", 5.0),  # a love weighs 5 plays
    ]  # b banned slayer: the base row is gone; a's skip adds nothing
    assert merged.items["artist_name"].tolist()[-1] == "New Band"
    assert merged.timestamps is None and merged.rows_read == 8


def test_merge_events_drops_only_the_bans_that_hold_at_training_time() -> None:
    """A ban with ``until`` removes its pair while it holds and nothing after, as in serving."""
    events = pd.DataFrame(
        {
            "user_id": ["a", "b"],
            "artist": ["Metallica", "Slayer"],
            "kind": ["ban", "ban"],
            "plays": [1, 1],
            "timestamp": [1, 2],
            "until": [NOW + 60, None],  # a hides metallica for a minute; b bans slayer for good
        }
    )

    def pairs(now: float) -> list[tuple[str, str]]:
        merged = merge_events(tiny_raw(), events, now=now)
        users = merged.user_ids[merged.user_codes]
        artists = merged.items["artist_key"].to_numpy()[merged.item_codes]
        return sorted(zip(users, artists, strict=True))

    assert pairs(NOW) == [("a", "slayer")]
    assert pairs(NOW + 60) == [("a", "metallica"), ("a", "slayer")]  # lifted; b's ban holds


def test_one_cycle_at_a_time(tmp_path: Path) -> None:
    with (
        exclusive(tmp_path),
        pytest.raises(RetrainError, match="another retrain"),
        exclusive(tmp_path),
    ):
        pass


@pytest.mark.slow
def test_retrain_cycle_folds_events_in_and_gates(synth_raw: Path, tmp_path: Path) -> None:
    from musicrec.tracking import get_client
    from musicrec.tracking.registry import alias_version

    store = EventStore(f"sqlite:///{tmp_path / 'events.db'}")
    base = RetrainConfig(
        source="lastfm360k",
        input=synth_raw,
        workdir=tmp_path / "work",
        events_url=store.url,
        train=TrainConfig(factors=16, iterations=4),
        model_name="retrain-test",
        experiment="retrain-test",
    )
    first = retrain(base)
    assert first.status == "promoted" and first.watermark == 0

    metal = ["Metallica", "Slayer", "Megadeth", "Pantera", "Iron Maiden", "Anthrax"]
    store.append(validate_batch([{"user_id": "newcomer", "artist": a} for a in metal], now=NOW))
    strict_gate = GateConfig(mode="superiority", margin=1.0)  # no candidate gains 1.0 NDCG
    strict = RetrainConfig(**{**base.__dict__, "gate": strict_gate})
    kept = retrain(strict)
    assert kept.status == "kept" and kept.watermark == 6 and kept.events == 6
    assert "superiority gate fails" in kept.reason and "neither model trained on" in kept.reason
    client = get_client()
    tags = client.get_model_version("retrain-test", kept.version).tags
    assert tags["gate.decision"] == "kept" and tags["gate.check.superiority"] == "fail"
    assert kept.candidate_ndcg is not None and kept.champion_ndcg is not None
    champion = alias_version(client, "retrain-test")
    assert champion is not None and str(champion.version) == first.version
    assert kept.model_dir is not None
    artifact = ModelArtifact.load(kept.model_dir)
    assert "newcomer" in set(artifact.users["user_id"])  # the events are in the model
    assert artifact.manifest["events_watermark"] == 6

    again = retrain(strict)
    assert again.status == "up_to_date" and again.version == kept.version

    lenient = RetrainConfig(**{**base.__dict__, "gate": LENIENT})
    current = tmp_path / "models" / "current"
    promoted = retrain(lenient, publish_to=current)
    published = ModelArtifact.load(current)
    assert published.manifest["retrain_key"] == promoted.key
    assert (current / "item_index.hnsw").exists()  # built once by the job, not per worker
    assert promoted.status == "promoted" and promoted.champion_ndcg is not None
    champion = alias_version(client, "retrain-test")
    assert champion is not None and str(champion.version) == promoted.version
    assert champion.tags["events_watermark"] == "6"
    shutil.rmtree(tmp_path / "work" / "runs", ignore_errors=True)


def test_merged_input_prepares_like_the_base(synth_raw: Path) -> None:
    raw = load("lastfm360k", synth_raw)
    same = merge_events(raw, pd.DataFrame(columns=["user_id", "artist", "kind", "plays"]))
    assert same is raw


def test_gate_compares_on_pairs_the_champion_never_trained_on(
    synth_dataset: Path, synth_model: Path
) -> None:
    from types import SimpleNamespace

    from musicrec.data.dataset import Dataset
    from musicrec.loop.champion import gate_on_unseen, unseen_test

    dataset = Dataset.load(synth_dataset)
    champion = ModelArtifact.load(synth_model)
    assert unseen_test(dataset, champion).nnz == dataset.test.nnz  # trained on train only
    peeked = SimpleNamespace(users=champion.users, items=champion.items, train_matrix=dataset.test)
    assert unseen_test(dataset, peeked).nnz == 0  # a model that saw the test set gets no say
    result, pairs = gate_on_unseen(synth_model, synth_model, synth_dataset, LENIENT)
    assert pairs == dataset.test.nnz and result is not None
    ndcg = result.comparison.metrics["ndcg@10"]
    assert 0 < ndcg.a <= 1 and ndcg.difference == 0.0  # the same model on the same pairs


@pytest.mark.slow
@pytest.mark.parametrize(
    "kinds",
    [("ease", "ease"), ("itemknn", "rp3beta"), ("blend", "als"), ("als", "popularity")],
    ids=lambda kinds: "-then-".join(kinds),
)
def test_retrain_gates_every_kind_on_new_data(
    kinds: tuple[str, str], synth_raw: Path, tmp_path: Path
) -> None:
    """A champion of any kind is re-scored on the grown data by fold-in, against any kind."""
    store = EventStore(f"sqlite:///{tmp_path / 'events.db'}")
    small = {"als": {"factors": 16, "iterations": 4}, "blend": {"second": {"kind": "als"}}}
    first_kind, second_kind = kinds
    config = RetrainConfig(
        source="lastfm360k",
        input=synth_raw,
        workdir=tmp_path / "work",
        events_url=store.url,
        train=TrainConfig.for_kind(first_kind, **small.get(first_kind, {})),
        model_name=f"kinds-{first_kind}",
        experiment="retrain-kinds",
    )
    first = retrain(config)
    assert first.status == "promoted"
    assert ModelArtifact.load(first.model_dir).kind == first_kind  # type: ignore[arg-type]
    metal = ["Metallica", "Slayer", "Megadeth", "Pantera", "Iron Maiden", "Anthrax"]
    store.append(validate_batch([{"user_id": "newcomer", "artist": a} for a in metal], now=NOW))
    train = TrainConfig.for_kind(second_kind, **small.get(second_kind, {}))
    second = retrain(RetrainConfig(**{**config.__dict__, "train": train, "gate": LENIENT}))
    assert second.status == "promoted", second.reason
    assert "held-out pairs neither model trained on" in second.reason
    assert second.candidate_ndcg is not None and second.champion_ndcg is not None
    assert 0 < second.champion_ndcg <= 1
