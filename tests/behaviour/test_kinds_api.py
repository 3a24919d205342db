"""Every model kind served the same way: users, moods, similar artists, new listeners, the map."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from musicrec.api.app import create_app
from musicrec.api.settings import Settings
from musicrec.config import TrainConfig
from musicrec.pipeline.train import train

METAL = {"metal", "thrash metal", "heavy metal", "aggressive", "hardcore"}
KINDS = {
    "ease": TrainConfig.for_kind("ease", l2=200.0),
    "itemknn": TrainConfig.for_kind("itemknn", neighbours=50),
    "rp3beta": TrainConfig.for_kind("rp3beta", neighbours=50),
    "blend": TrainConfig.for_kind(
        "blend", first={"kind": "itemknn"}, second={"kind": "als", "factors": 16}
    ),
}


@pytest.fixture(scope="module", params=sorted(KINDS))
def client(
    request: pytest.FixtureRequest, synth_dataset: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    model = tmp_path_factory.mktemp(f"kind-{request.param}") / "model"
    train(synth_dataset, model, KINDS[request.param])
    settings = Settings(model=str(model), admin_api_key="k", save_index=False)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_model_card_names_the_kind(client: TestClient) -> None:
    card = client.get("/model").json()
    assert card["kind"] == card["params"]["kind"]
    assert client.get("/ready").status_code == 200


def test_user_recommendations_are_unplayed_full_and_explained(client: TestClient) -> None:
    recommender = client.app.state.recommender  # type: ignore[attr-defined]
    user_id = recommender.sample_users(5)[2]
    history = {
        str(recommender.catalogue.names[i])
        for i in recommender.train[recommender.user_index(user_id)].indices
    }
    recs = client.get(f"/users/{user_id}/recommendations", params={"k": 12}).json()[
        "recommendations"
    ]
    assert len(recs) == 12
    scores = [r["score"] for r in recs]
    assert scores == sorted(scores, reverse=True)
    assert not {r["artist"] for r in recs} & history
    explained = [r for r in recs if r["because"]]
    assert len(explained) >= 6 and all(set(r["because"]) <= history for r in explained)
    jazz = client.get(f"/users/{user_id}/recommendations", params={"k": 12, "mood": "jazz"})
    assert jazz.status_code == 200
    assert [r["artist"] for r in jazz.json()["recommendations"]] != [r["artist"] for r in recs]


def test_new_metal_listener_gets_metal(client: TestClient) -> None:
    body = {"artists": ["Metallica", "Slayer", "Megadeth"], "plays": [50, 20, 10]}
    data = client.post("/listeners/recommendations", json=body).json()
    recs = data["recommendations"]
    assert len(recs) == 10
    assert not {r["artist"] for r in recs} & {"Metallica", "Slayer", "Megadeth"}
    assert sum(bool(METAL & set(r["tags"])) for r in recs) >= 7


def test_similar_artists_moods_and_map(client: TestClient) -> None:
    similar = client.post("/similar", json={"artist_name": "Metallica", "k": 8}).json()
    names = [r["artist"] for r in similar["recommendations"]]
    assert len(names) == 8 and "Metallica" not in names
    assert sum(bool(METAL & set(r["tags"])) for r in similar["recommendations"]) >= 6
    mood = client.post("/recommend", json={"type": "mood", "mood": "jazz", "k": 10}).json()
    assert len(mood["recommendations"]) == 10
    assert sum("jazz" in r["tags"] for r in mood["recommendations"]) >= 6
    points = client.get("/artists/map", params={"limit": 50}).json()["points"]
    assert len(points) == 50


def test_events_fold_into_item_space_kinds(
    synth_dataset: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Posted plays, bans and brand-new listeners work for a factor-less kind too."""
    model = tmp_path_factory.mktemp("kind-events") / "model"
    train(synth_dataset, model, KINDS["itemknn"])
    store = tmp_path_factory.mktemp("kind-events-store") / "events.db"
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, model=str(model), events_url=f"sqlite:///{store}", watch_interval_s=0
    )
    with TestClient(create_app(settings)) as client:
        rec = client.app.state.recommender  # type: ignore[attr-defined]
        metal = [
            str(rec.catalogue.names[i])
            for i in rec.catalogue.by_popularity
            if METAL & set(rec.catalogue.tags_of(i))
        ][:6]
        events = [{"user_id": "kind-new", "artist": a, "plays": 3} for a in metal]
        assert client.post("/events", json={"events": events}).status_code == 201
        recs = client.get("/users/kind-new/recommendations").json()["recommendations"]
        assert len(recs) == 10 and not {r["artist"] for r in recs} & set(metal)
        assert sum(bool(METAL & set(r["tags"])) for r in recs) >= 7
        user = rec.sample_users(3)[1]
        first = client.get(f"/users/{user}/recommendations", params={"k": 20}).json()
        banned = [r["artist"] for r in first["recommendations"][:3]]
        bans = [{"user_id": user, "artist": a, "kind": "ban"} for a in banned]
        assert client.post("/events", json={"events": bans}).status_code == 201
        again = client.get(f"/users/{user}/recommendations", params={"k": 20}).json()
        names = [r["artist"] for r in again["recommendations"]]
        assert len(names) == 20 and not set(banned) & set(names)
