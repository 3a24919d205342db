"""The listener web UI, page by page, with Streamlit's AppTest against a real running API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner
from ui_fixtures import (  # noqa: F401  (session fixtures)
    AB,
    INTERLEAVE,
    OnlineApi,
    api_url,
    online_api,
    ui_model,
)

import musicrec.ui
from musicrec.cli import app as cli_app
from musicrec.cli.ui import streamlit_command
from musicrec.events.store import EventStore
from musicrec.serving.moods import load_mood_specs
from musicrec.stats import proportion_interval
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
from musicrec.ui.readouts import ab_chart, ab_frame, interleave_chart, interleave_frame

APP = Path(musicrec.ui.__file__).resolve().parent / "app.py"
APP_TIMEOUT_S = 30
DEFAULT_K = 12  # the pages' slider default


def page_text(at: AppTest) -> str:
    """Everything a listener can read on the page, as one string."""
    parts: list[str] = []
    for kind in (
        "title",
        "subheader",
        "markdown",
        "caption",
        "info",
        "success",
        "warning",
        "error",
    ):
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


# ----------------------------------------------------------------------------- listener


DAY_S = 86_400


def _as_listener(online: OnlineApi, monkeypatch: pytest.MonkeyPatch, page: str) -> AppTest:
    monkeypatch.setenv("MUSICREC_API_URL", online.url)
    at = AppTest.from_file(str(APP), default_timeout=APP_TIMEOUT_S)
    user = httpx.get(f"{online.url}/users", params={"limit": 3}, timeout=10).json()["users"][2]
    at.session_state["listener"] = user
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def _their_list(online: OnlineApi, user: str, **params: object) -> list[str]:
    answer = httpx.get(
        f"{online.url}/users/{user}/recommendations", params={"k": DEFAULT_K, **params}
    )
    assert answer.status_code == 200, answer.text
    return [r["artist"] for r in answer.json()["recommendations"]]


def test_for_you_hides_an_artist_of_the_listener_for_a_month(
    online_api: OnlineApi,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
):
    ui = _as_listener(online_api, monkeypatch, "views/for_you.py")
    user = ui.session_state["listener"]
    before = card_artists(ui)
    assert before == _their_list(online_api, user) and len(before) == DEFAULT_K
    assert f"Recommended for {user}" in page_text(ui)
    hidden = before[1]
    clicked = time.time()
    ui.button(key="hide_for_you_2").click().run()
    assert not ui.exception, ui.exception
    after = card_artists(ui)
    assert hidden not in after and len(after) == DEFAULT_K
    assert after == _their_list(online_api, user)  # the service leaves it out too
    assert f"{hidden} is hidden for {user} until" in ui.success[0].value
    stored = EventStore(online_api.events_url).user_events(user)
    ban = stored[(stored["kind"] == "ban") & (stored["artist"] == hidden)]
    assert len(ban) == 1
    assert clicked + 30 * DAY_S - 5 <= ban["until"].iloc[0] <= time.time() + 30 * DAY_S + 5


def test_moods_with_a_listener_show_their_list_and_hide(
    online_api: OnlineApi,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
):
    ui = _as_listener(online_api, monkeypatch, "views/moods.py")
    user = ui.session_state["listener"]
    ui.button(key="mood_jazz").click().run()
    before = card_artists(ui)
    assert before == _their_list(online_api, user, mood="jazz")
    assert f"For listener {user}" in page_text(ui)
    ui.button(key="hide_mood_1").click().run()
    assert not ui.exception, ui.exception
    assert before[0] not in card_artists(ui)
    assert card_artists(ui) == _their_list(online_api, user, mood="jazz")


def test_the_address_can_name_the_listener(api_url: str, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    monkeypatch.setenv("MUSICREC_API_URL", api_url)
    user = httpx.get(f"{api_url}/users", params={"limit": 1}, timeout=10).json()["users"][0]
    at = AppTest.from_file(str(APP), default_timeout=APP_TIMEOUT_S)
    at.query_params["listener"] = user
    at.run().switch_page("views/for_you.py").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="listener").value == user
    assert f"Recommended for {user}" in page_text(at) and len(card_artists(at)) == DEFAULT_K


def test_hide_without_an_event_store_says_why(api_url: str, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    monkeypatch.setenv("MUSICREC_API_URL", api_url)
    at = AppTest.from_file(str(APP), default_timeout=APP_TIMEOUT_S)
    user = httpx.get(f"{api_url}/users", params={"limit": 1}, timeout=10).json()["users"][0]
    at.session_state["listener"] = user
    at.run().switch_page("views/for_you.py").run()
    before = card_artists(at)
    at.button(key="hide_for_you_1").click().run()
    assert not at.exception
    assert "Could not hide" in at.warning[0].value and "events are disabled" in at.warning[0].value
    assert card_artists(at) == before


def test_without_a_listener_no_card_offers_to_hide(ui: AppTest):
    ui.button(key="mood_rock").click().run()
    assert card_artists(ui)
    assert not [b for b in ui.button if b.key.startswith("hide_")]


# ----------------------------------------------------------------------------- experiments


def _experiments_page(url: str, monkeypatch: pytest.MonkeyPatch, key: str | None) -> AppTest:
    monkeypatch.setenv("MUSICREC_API_URL", url)
    if key is None:
        monkeypatch.delenv("MUSICREC_UI_ADMIN_KEY", raising=False)
    else:
        monkeypatch.setenv("MUSICREC_UI_ADMIN_KEY", key)
    at = AppTest.from_file(str(APP), default_timeout=APP_TIMEOUT_S).run()
    at.switch_page("views/experiments.py").run()
    assert not at.exception, at.exception
    return at


def test_experiments_page_draws_each_arm_with_its_interval(
    online_api: OnlineApi,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
):
    ui = _experiments_page(online_api.url, monkeypatch, online_api.admin_key)
    headers = {"X-API-Key": online_api.admin_key}
    reports = {
        name: httpx.get(
            f"{online_api.url}/admin/experiments/{name}/report", headers=headers, timeout=60
        ).json()
        for name in (AB, INTERLEAVE)
    }
    text = page_text(ui)
    assert f"🟢 {AB}" in text and f"🟢 {INTERLEAVE}" in text
    assert len(ui.get("vega_lite_chart")) == 2  # one readout chart per experiment
    ab = reports[AB]
    assert ab["winner"] == "control"  # the seeded control arm's listeners play far more
    assert "Winner: **control**" in text
    stopped = ab["arms"]["candidate"]
    assert stopped["stopped_at"] and "guardrail skip_rate" in stopped["stop_reason"]
    assert "Arm **candidate** stopped" in text and stopped["stop_reason"] in text
    table = ui.dataframe[0].value.set_index("metric")
    pair = ab["differences"][0]["listen_through"]
    assert table.loc["listen_through", "difference"] == pytest.approx(pair["difference"]["value"])
    assert table.loc["listen_through", "p_value"] == pytest.approx(pair["p_value"])
    if ab["srm_ok"] is False:  # how many candidate listeners came before the stop varies
        assert "expected once an arm is stopped (candidate)" in text
        assert not [w for w in ui.warning if "Sample-ratio mismatch" in w.value]
    else:
        assert f"Sample-ratio check: χ² p = {ab['srm']['p_value']:.3g}" in text
    interleave = reports[INTERLEAVE]["interleave"]
    wins = ", ".join(f"{name} {n:,}" for name, n in interleave["wins"].items())
    assert f"won {wins}, ties {interleave['ties']:,}" in text


def test_experiments_page_needs_an_admin_key(
    online_api: OnlineApi,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
):
    ui = _experiments_page(online_api.url, monkeypatch, None)
    assert "needs an admin key" in ui.info[0].value and "MUSICREC_UI_ADMIN_KEY" in ui.info[0].value
    assert not ui.get("vega_lite_chart")
    refused = _experiments_page(online_api.url, monkeypatch, "not-the-admin-key")
    assert "refused the UI's API key" in refused.error[0].value
    assert "admin scope" in refused.error[0].value and not refused.get("vega_lite_chart")


def test_ab_readout_frame_and_chart_follow_the_report():
    estimate = {"value": 0.3, "low": 0.25, "high": 0.36}
    arm = {"listeners": 40, "impressions": 400, "stopped_at": None}
    report = {
        "winner": "b",
        "arms": {
            "a": {**arm, "listen_through": estimate, "skip_rate": estimate, "ban_rate": estimate},
            "b": {
                **arm,
                "listen_through": {"value": 0.5, "low": 0.41, "high": 0.58},
                "skip_rate": {"value": None, "low": None, "high": None},
                "ban_rate": estimate,
            },
            "c": {**arm, "stopped_at": 1.0, "stop_reason": "guardrail ban_rate: ..."},
        },
    }
    frame = ab_frame(report).set_index(["arm", "metric"])
    assert frame.loc[("b", "listen_through"), ["value", "low", "high"]].tolist() == [
        0.5,
        0.41,
        0.58,
    ]
    assert np.isnan(frame.loc[("b", "skip_rate"), "value"])
    assert frame.xs("listen_through", level="metric")["status"].to_dict() == {
        "a": "running",
        "b": "winner",
        "c": "stopped",
    }
    spec = ab_chart(ab_frame(report)).to_dict()
    assert spec["facet"] and len(spec["spec"]["layer"]) == 2  # error bar + point per arm


def test_interleave_win_share_has_the_binomial_interval():
    report = {
        "interleave": {"wins": {"a": 30, "b": 10}, "ties": 5, "listeners": 45},
        "arms": {"a": {}, "b": {}},
        "winner": "a",
    }
    frame = interleave_frame(report).set_index("arm")
    assert frame.loc["a", "share"] == pytest.approx(0.75)
    assert frame.loc["b", "share"] == pytest.approx(0.25)
    low, high = proportion_interval(30, 40)
    assert frame.loc["a", ["low", "high"]].tolist() == pytest.approx([low, high])
    assert low < 0.75 < high and low > 0.5  # the share is above a half, as the test says
    assert frame.loc["a", "status"] == "winner" and frame.loc["b", "decided"] == 40
    assert interleave_chart(interleave_frame(report)).to_dict()["layer"]


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


def test_client_posts_a_ban_with_until_and_names_the_key_an_admin_route_needs():
    seen: list[tuple[str, bytes]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, request.content))
        if request.url.path.startswith("/admin"):
            return httpx.Response(403, json={"detail": "API key 'ui' lacks the 'admin' scope"})
        body = {"accepted": 1, "stored": 1, "duplicates": 0, "first_id": 1, "last_id": 1}
        return httpx.Response(201, json={**body, "took_ms": 1.0})

    client = _client(handler)
    client.ban("u1", "Adele", 2_000_000_000, request_id="r-1", position=3)
    assert seen[0] == (
        "/events",
        b'{"events":[{"user_id":"u1","artist":"Adele","kind":"ban","until":2000000000,'
        b'"request_id":"r-1","position":3}]}',
    )
    with pytest.raises(ApiUnavailable, match="admin scope: \\$MUSICREC_UI_ADMIN_KEY"):
        client.experiments()


def test_the_pages_client_sends_the_ui_key_and_the_admin_page_its_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    from musicrec.ui.components import get_admin_client, get_client

    monkeypatch.setenv("MUSICREC_API_URL", "http://api.test")
    monkeypatch.setenv("MUSICREC_API_KEY", "read-key")
    monkeypatch.delenv("MUSICREC_UI_ADMIN_KEY", raising=False)
    monkeypatch.delenv("MUSICREC_UI_ADMIN_KEY_FILE", raising=False)
    assert get_client()._http.headers["X-API-Key"] == "read-key"
    assert get_admin_client() is None
    secret = tmp_path / "admin.key"
    secret.write_text("admin-key\n")
    monkeypatch.setenv("MUSICREC_UI_ADMIN_KEY_FILE", str(secret))
    admin = get_admin_client()
    assert admin is not None and admin._http.headers["X-API-Key"] == "admin-key"
