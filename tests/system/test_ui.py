"""The listener web UI, page by page, with Streamlit's AppTest against a real running API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner
from ui_fixtures import api_url, ui_model  # noqa: F401  (session fixtures)

import musicrec.ui
from musicrec.cli import app as cli_app
from musicrec.cli.ui import streamlit_command
from musicrec.serving.moods import load_mood_specs
from musicrec.ui.charts import (
    OTHER_ARTISTS,
    map_chart,
    map_frame,
    metrics_chart,
    metrics_frame,
    spread_labels,
)
from musicrec.ui.client import ApiClient, ApiRequestError, ApiUnavailable, ArtistMap, MapPoint
from musicrec.ui.profiles import PROFILES

APP = Path(musicrec.ui.__file__).resolve().parent / "app.py"
APP_TIMEOUT_S = 30
DEFAULT_K = 12  # the pages' slider default


def page_text(at: AppTest) -> str:
    """Everything a listener can read on the page, as one string."""
    parts: list[str] = []
    for kind in ("title", "subheader", "markdown", "caption", "info", "warning", "error"):
        parts += [str(element.value) for element in getattr(at, kind)]
    return "\n".join(parts)


def card_artists(at: AppTest) -> list[str]:
    """Artist names of the recommendation cards (``**rank. name**``), in order."""
    names = []
    for element in at.markdown:
        value = str(element.value)
        if value.startswith("**") and value.endswith("**") and ". " in value:
            names.append(value.strip("*").split(". ", 1)[1])
    return names


@pytest.fixture
def ui(api_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppTest]:  # noqa: F811
    """The app, pointed at the fixture API, after its first run (the Moods page)."""
    monkeypatch.setenv("MUSICREC_API_URL", api_url)
    at = AppTest.from_file(str(APP), default_timeout=APP_TIMEOUT_S).run()
    assert not at.exception, at.exception
    yield at


@pytest.fixture
def api(api_url: str) -> Iterator[httpx.Client]:  # noqa: F811
    with httpx.Client(base_url=api_url, timeout=10) as client:
        yield client


# ----------------------------------------------------------------------------- pages


def test_moods_page_shows_every_mood_and_recommends_for_jazz(ui: AppTest, api: httpx.Client):
    specs = load_mood_specs()
    labels = [button.label for button in ui.button]
    for spec in specs:
        assert f"{spec.emoji} {spec.display_name}" in labels
        assert spec.description in page_text(ui)
    assert len([key for key in (b.key for b in ui.button) if key.startswith("mood_")]) == 12
    assert card_artists(ui) == []

    ui.button(key="mood_jazz").click().run()
    assert not ui.exception
    expected = api.post("/recommend", json={"type": "mood", "mood": "jazz", "k": DEFAULT_K}).json()
    assert card_artists(ui) == [r["artist"] for r in expected["recommendations"]]
    text = page_text(ui)
    assert "seed artists: " in text and "Miles Davis" in text
    assert "tags: jazz, bebop" in text


def test_moods_slider_changes_how_many(ui: AppTest):
    ui.button(key="mood_rock").click().run()
    ui.slider(key="mood_k").set_value(6).run()
    assert not ui.exception
    assert len(card_artists(ui)) == 6


def test_moods_dials_shape_the_list_as_the_api_does(ui: AppTest, api: httpx.Client):
    ui.button(key="mood_rock").click().run()
    plain = card_artists(ui)
    ui.select_slider(key="mood_discovery").set_value(1.0).run()
    assert not ui.exception
    body = {"type": "mood", "mood": "rock", "k": DEFAULT_K, "discovery": 1.0}
    expected = [r["artist"] for r in api.post("/recommend", json=body).json()["recommendations"]]
    assert card_artists(ui) == expected and expected != plain
    ui.text_input(key="mood_tags").input("metall").run()  # an unknown tag: the API's 422
    assert "metal" in page_text(ui) and card_artists(ui) == []


def test_music_twins_recommend_for_a_profile_with_reasons(ui: AppTest, api: httpx.Client):
    ui.switch_page("views/twins.py").run()
    assert not ui.exception
    labels = [button.label for button in ui.button]
    for profile in PROFILES:
        assert f"{profile.emoji} {profile.name}" in labels
    jazz = next(p for p in PROFILES if p.key == "jazz")

    ui.button(key="twin_jazz").click().run()
    assert not ui.exception
    expected = api.post(
        "/listeners/recommendations",
        json={"artists": list(jazz.artists), "plays": list(jazz.plays), "k": DEFAULT_K},
    ).json()
    assert card_artists(ui) == [r["artist"] for r in expected["recommendations"]]
    text = page_text(ui)
    assert "Listens most to Miles Davis, John Coltrane, Bill Evans" in text
    assert "because you like" in text
    assert not set(card_artists(ui)) & set(jazz.artists)  # the profile's own artists are known


def test_every_twin_profile_is_in_the_demo_catalogue(api: httpx.Client):
    for profile in PROFILES:
        answer = api.post(
            "/listeners/recommendations", json={"artists": list(profile.artists), "k": 3}
        ).json()
        assert answer["unknown_artists"] == [], profile.name


def test_for_you_search_add_and_recommend_with_explanations(ui: AppTest, api: httpx.Client):
    ui.switch_page("views/for_you.py").run()
    assert not ui.exception
    assert "Add a few artists" in page_text(ui)

    ui.text_input(key="artist_search").input("radioh").run()
    suggestion = next(b for b in ui.button if b.label == "➕ Radiohead")
    suggestion.click().run()
    assert not ui.exception
    assert ui.multiselect(key="favourites").value == ["Radiohead"]

    ui.multiselect(key="favourites").select("Coldplay").run()
    assert not ui.exception
    expected = api.post(
        "/listeners/recommendations", json={"artists": ["Radiohead", "Coldplay"], "k": DEFAULT_K}
    ).json()
    assert card_artists(ui) == [r["artist"] for r in expected["recommendations"]]
    text = page_text(ui)
    assert "because you like Radiohead" in text or "because you like Coldplay" in text


def test_for_you_reports_unknown_artists(ui: AppTest):
    ui.switch_page("views/for_you.py").run()
    ui.multiselect(key="favourites").set_value(["Adele", "No Such Band Anywhere"]).run()
    assert not ui.exception
    assert "Not in the catalogue, skipped: No Such Band Anywhere" in page_text(ui)
    assert card_artists(ui)


def test_explore_similar_artists_charts_and_discovery(ui: AppTest, api: httpx.Client):
    ui.switch_page("views/explore.py").run()
    assert not ui.exception

    ui.text_input(key="similar_search").input("radiohead").run()
    assert not ui.exception
    expected = api.post("/similar", json={"artist_name": "Radiohead", "k": DEFAULT_K}).json()
    assert "Similar to Radiohead" in page_text(ui)
    assert card_artists(ui)[:DEFAULT_K] == [r["artist"] for r in expected["recommendations"]]

    charts = api.get("/charts", params={"k": 20}).json()["recommendations"]
    assert ui.get("vega_lite_chart"), "the charts tab draws a bar chart"
    table = ui.dataframe[0].value
    assert list(table["artist"]) == [r["artist"] for r in charts]

    before = len(card_artists(ui))
    ui.button(key="discover").click().run()
    assert not ui.exception
    assert len(card_artists(ui)) == before + 9


def test_unknown_artists_only_get_suggestions_not_an_error(ui: AppTest):
    ui.switch_page("views/for_you.py").run()
    ui.multiselect(key="favourites").set_value(["Radioheadd"]).run()
    assert not ui.exception
    assert not ui.error
    assert "none of the 1 artist(s) are in the catalogue" in ui.warning[0].value
    assert "Did you mean: Radiohead" in page_text(ui)
    assert not any(b.label == "Retry" for b in ui.button)
    assert card_artists(ui) == []


def test_about_shows_model_card_metrics_and_map(ui: AppTest, api: httpx.Client):
    card = api.get("/model").json()
    ui.switch_page("views/about.py").run()
    assert not ui.exception
    text = page_text(ui)
    assert card["version"] in text
    metrics = ui.dataframe[0].value
    assert {"precision@10", "ndcg@10", "recall@20"} <= set(metrics["metric"])
    row = metrics.set_index("metric").loc["ndcg@10"]
    assert row["model"] == pytest.approx(card["metrics"]["ndcg@10"])
    assert row["popularity"] == pytest.approx(card["metrics"]["popularity"]["ndcg@10"])
    assert row["model"] > row["popularity"]  # the tiny model beats the baseline
    tables = [t.value for t in ui.table]
    params = next(t for t in tables if "parameter" in t.columns)
    assert "factors" in set(params["parameter"])
    dataset = next(t for t in tables if "statistic" in t.columns)
    assert "fingerprint" in set(dataset["statistic"])
    # metrics bar chart + artist map
    assert len(ui.get("vega_lite_chart")) == 2
    assert "A map of taste" in text


def test_api_down_shows_a_friendly_message_and_retry(monkeypatch: pytest.MonkeyPatch):
    from ui_fixtures import free_port

    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MUSICREC_API_URL", closed)
    at = AppTest.from_file(str(APP), default_timeout=APP_TIMEOUT_S).run()
    for page in (None, "views/for_you.py", "views/explore.py", "views/about.py"):
        if page:
            at.switch_page(page).run()
        assert not at.exception, page
        assert at.error, page
        assert "is not reachable" in at.error[0].value
        assert closed in at.error[0].value
        assert any(b.label == "Retry" for b in at.button)
        assert "Traceback" not in page_text(at)
    at.switch_page("views/twins.py").run()
    at.button(key="twin_rock").click().run()
    assert not at.exception
    assert "is not reachable" in at.error[0].value
    at.button(key="retry_twin").click().run()  # retrying while still down stays friendly
    assert not at.exception and at.error


# ----------------------------------------------------------------------------- client


def _client(handler) -> ApiClient:
    return ApiClient("http://api.test", timeout=1.0, transport=httpx.MockTransport(handler))


def test_client_maps_http_errors_to_friendly_errors():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/similar":
            return httpx.Response(
                404, json={"detail": "no artist 'radiohed'", "suggestions": ["Radiohead"]}
            )
        if request.url.path == "/moods":
            return httpx.Response(503, json={"detail": "no model is loaded"})
        if request.url.path == "/charts":
            return httpx.Response(
                422,
                json={"detail": [{"loc": ["query", "k"], "msg": "too large", "type": "x"}]},
            )
        if request.url.path == "/model":
            return httpx.Response(200, text="<html>not json</html>")
        if request.url.path == "/health":
            return httpx.Response(200, json={"unexpected": True})
        raise httpx.ReadTimeout("slow", request=request)

    client = _client(handler)
    with pytest.raises(ApiRequestError) as missing:
        client.similar("radiohed")
    assert missing.value.status == 404
    assert missing.value.suggestions == ["Radiohead"]
    assert "radiohed" in str(missing.value)
    with pytest.raises(ApiUnavailable, match="no model ready"):
        client.moods()
    with pytest.raises(ApiRequestError, match="k: too large"):
        client.charts(k=1000)
    with pytest.raises(ApiUnavailable, match="other than JSON"):
        client.model_card()
    with pytest.raises(ApiUnavailable, match="unexpected format"):
        client.health()
    with pytest.raises(ApiUnavailable, match="did not answer within 1 s"):
        client.recommend_random()


def test_client_sends_documented_request_bodies():
    seen: list[tuple[str, str, bytes]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, str(request.url), request.content))
        return httpx.Response(
            200,
            json={
                "recommendations": [],
                "used_artists": ["A"],
                "unknown_artists": [],
                "model_version": "v",
                "took_ms": 1.0,
            },
        )

    _client(handler).listener(["A", "B"], plays=[3, 1], k=5)
    method, url, body = seen[0]
    assert (method, url) == ("POST", "http://api.test/listeners/recommendations")
    assert body == b'{"artists":["A","B"],"k":5,"plays":[3.0,1.0]}'


def test_metrics_frame_lines_up_model_and_popularity():
    frame = metrics_frame(
        {
            "ndcg@10": 0.3,
            "precision@10": 0.2,
            "coverage@10": 0.5,
            "users_evaluated": 10,
            "popularity": {"ndcg@10": 0.1, "precision@10": 0.0},
        }
    )
    assert list(frame["metric"]) == ["precision@10", "ndcg@10", "coverage@10"]
    lifted = frame.set_index("metric")
    assert lifted.loc["ndcg@10", "lift"] == pytest.approx(3.0)
    assert np.isnan(lifted.loc["precision@10", "lift"])  # no division by a zero baseline
    assert np.isnan(lifted.loc["coverage@10", "popularity"])
    assert np.isnan(lifted.loc["ndcg@10", "low"])  # no interval recorded
    assert metrics_frame({}).empty
    bounded = metrics_frame({"ndcg@10": 0.3, "intervals": {"ndcg@10": {"low": 0.28, "high": 0.32}}})
    assert bounded.loc[0, ["low", "high"]].tolist() == [0.28, 0.32]
    assert metrics_chart(bounded).to_dict()["layer"]  # bars and error bars


# ----------------------------------------------------------------------------- artist map


def test_map_frame_groups_by_mood_and_labels_do_not_crowd():
    points = [
        MapPoint(artist="A", x=0.0, y=0.0, listeners=100, mood_seed=True, moods=["Jazz", "Love"]),
        MapPoint(artist="B", x=0.01, y=0.0, listeners=90),  # on top of A: no label
        MapPoint(artist="C", x=1.0, y=1.0, listeners=10),
    ]
    frame = map_frame(ArtistMap(points=points))
    assert list(frame["group"]) == ["Jazz", OTHER_ARTISTS, OTHER_ARTISTS]
    assert list(spread_labels(frame, n=5)["artist"]) == ["A", "C"]
    assert list(spread_labels(frame, n=1)["artist"]) == ["A"]
    assert map_chart(frame).to_dict()  # a valid Vega-Lite spec


def test_artist_map_route_projects_popular_artists(ui_model: Path):  # noqa: F811
    from fastapi.testclient import TestClient

    from musicrec.api.app import create_app
    from musicrec.api.routes import embedding
    from musicrec.api.settings import Settings

    app = create_app(Settings(model=str(ui_model), index="exact", save_index=False))
    if not any(getattr(r, "path", "") == "/artists/map" for r in app.routes):
        app.include_router(embedding.router)
    with TestClient(app) as client:
        answer = client.get("/artists/map", params={"limit": 50})
        assert answer.status_code == 200
        body = answer.json()
        charts = client.get("/charts", params={"k": 50}).json()["recommendations"]
        assert client.get("/artists/map", params={"limit": 1}).status_code == 422
    points = body["points"]
    assert [p["artist"] for p in points] == [r["artist"] for r in charts]
    assert any(p["mood_seed"] and p["moods"] for p in points)
    assert 0 < sum(body["explained_variance"]) <= 1
    coords = np.array([[p["x"], p["y"]] for p in points])
    assert np.abs(coords.mean(axis=0)).max() < 1e-3  # centred principal components
    assert coords.std(axis=0).min() > 0


def test_project_2d_recovers_the_dominant_directions():
    from musicrec.api.routes.embedding import project_2d

    rng = np.random.default_rng(0)
    latent = rng.normal(size=(200, 2)) * [5.0, 2.0]
    basis = np.linalg.qr(rng.normal(size=(16, 16)))[0][:2]
    vectors = latent @ basis + rng.normal(scale=0.01, size=(200, 16))
    coords, variance = project_2d(vectors)
    assert variance[0] > variance[1] > 0.1 and variance.sum() > 0.99
    centred = latent - latent.mean(axis=0)
    assert abs(np.corrcoef(coords[:, 0], centred[:, 0])[0, 1]) > 0.99
    again, _ = project_2d(vectors)
    np.testing.assert_array_equal(coords, again)
    assert project_2d(vectors[:1])[0].shape == (1, 2)


# ----------------------------------------------------------------------------- command


def test_ui_command_rejects_a_bad_api_url():
    result = CliRunner().invoke(cli_app, ["ui", "--api-url", "localhost:8000"])
    assert result.exit_code == 1
    assert "must be an http(s) URL" in result.output


def test_streamlit_command_is_headless_without_telemetry():
    command = streamlit_command(APP, "127.0.0.1", 8765)
    joined = " ".join(command)
    assert command[1:4] == ["-m", "streamlit", "run"]
    assert str(APP) in command
    assert "--server.headless true" in joined
    assert "--browser.gatherUsageStats false" in joined
    assert "--server.port 8765" in joined and "--server.address 127.0.0.1" in joined
