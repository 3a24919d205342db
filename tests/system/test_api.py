"""The HTTP API in process (endpoints, errors, metrics, admin reload) and a multi-worker server."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from musicrec.api.app import create_app
from musicrec.api.settings import Settings
from musicrec.config import TrainConfig
from musicrec.pipeline.train import train

ADMIN_KEY = "test-admin-key"
UI_ORIGIN = "http://ui.example"


@pytest.fixture(scope="module")
def model_dir(synth_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the shared model, so saved indexes stay out of other tests' way."""
    out = tmp_path_factory.mktemp("api-model") / "model"
    shutil.copytree(synth_model, out)
    return out


@pytest.fixture(scope="module")
def other_model(synth_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("api-model-2") / "model"
    train(synth_dataset, out, TrainConfig(factors=12, iterations=3, seed=3))
    return out


def make_settings(model: Path | None, **changes: object) -> Settings:
    values: dict[str, object] = {
        "model": str(model) if model else None,
        "admin_api_key": ADMIN_KEY,
        "cors_origins": [UI_ORIGIN],
    }
    values.update(changes)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type,call-arg]


@pytest.fixture(scope="module")
def client(model_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(model_dir))) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def user_id(client: TestClient) -> str:
    return str(client.get("/users", params={"limit": 5}).json()["users"][0])


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", line)
        if not match:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(1) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


# ----------------------------------------------------------------------------- endpoints


def test_health_and_ready(client: TestClient) -> None:
    health = client.get("/health").json()
    assert health["status"] == "healthy"
    assert health["model_loaded"] is True
    assert health["n_users"] > 0 and health["n_artists"] > 0 and health["n_factors"] == 32
    assert client.get("/ready").status_code == 200


def test_user_recommendations_are_unplayed_ranked_and_explained(
    client: TestClient, user_id: str
) -> None:
    app_state = client.app.state  # type: ignore[attr-defined]
    recommender = app_state.recommender
    history = {
        str(recommender.catalogue.names[i])
        for i in recommender.train[recommender.user_index(user_id)].indices
    }
    body = client.get(f"/users/{user_id}/recommendations", params={"k": 7}).json()
    recs = body["recommendations"]
    assert body["type"] == "user" and body["user_id"] == user_id
    assert len(recs) == 7
    assert [r["rank"] for r in recs] == list(range(1, 8))
    scores = [r["score"] for r in recs]
    assert scores == sorted(scores, reverse=True)
    assert not {r["artist"] for r in recs} & history
    assert all(r["because"] and set(r["because"]) <= history for r in recs)


def test_mood_blend_moves_user_recommendations(client: TestClient, user_id: str) -> None:
    plain = client.get(f"/users/{user_id}/recommendations", params={"k": 10}).json()
    jazz = client.get(f"/users/{user_id}/recommendations", params={"k": 10, "mood": "jazz"})
    assert jazz.status_code == 200
    jazz_recs = jazz.json()["recommendations"]
    assert jazz.json()["mood"] == "jazz"
    assert [r["artist"] for r in jazz_recs] != [r["artist"] for r in plain["recommendations"]]
    jazz_tags = {"jazz", "bebop", "smooth jazz", "fusion", "swing"}
    assert sum(bool(jazz_tags & set(r["tags"])) for r in jazz_recs) >= 5


def test_seed_compatible_recommend(client: TestClient, user_id: str) -> None:
    user = client.post("/recommend", json={"type": "user", "user_id": user_id, "k": 5})
    assert user.status_code == 200 and len(user.json()["recommendations"]) == 5
    for rec in user.json()["recommendations"]:
        assert {"artist", "score", "listeners"} <= rec.keys()
    mood = client.post("/recommend", json={"type": "mood", "mood": "rage", "k": 10}).json()
    metal = {"metal", "thrash metal", "heavy metal", "aggressive", "hardcore"}
    assert sum(bool(metal & set(r["tags"])) for r in mood["recommendations"]) >= 8
    rand = client.post("/recommend", json={"type": "random", "k": 8}).json()
    assert len({r["artist"] for r in rand["recommendations"]}) == 8


def test_similar_charts_and_moods(client: TestClient) -> None:
    similar = client.post("/similar", json={"artist_name": "  METALLICA ", "k": 5}).json()
    assert similar["artist"] == "Metallica"
    names = [r["artist"] for r in similar["recommendations"]]
    assert len(names) == 5 and "Metallica" not in names
    assert all(-1.0001 <= r["score"] <= 1.0001 for r in similar["recommendations"])
    same = client.get("/artists/metallica/similar", params={"k": 5}).json()
    assert [r["artist"] for r in same["recommendations"]] == names

    charts = client.get("/charts", params={"k": 20}).json()["recommendations"]
    listeners = [r["listeners"] for r in charts]
    assert len(charts) == 20 and listeners == sorted(listeners, reverse=True)

    moods = client.get("/moods").json()["moods"]
    assert len(moods) == 12
    rage = next(m for m in moods if m["name"] == "rage")
    assert rage["emoji"] and rage["display_name"] == "Rage" and "metal" in rage["tags"]
    assert "Metallica" in rage["seed_artists"] and rage["available"]


def test_new_listener_is_folded_in(client: TestClient) -> None:
    body = {
        "artists": ["Metallica", "slayer", "Megadeth", "Not A Band 123"],
        "plays": [50, 20, 10, 5],
    }
    response = client.post("/listeners/recommendations", json=body)
    assert response.status_code == 200
    data = response.json()
    assert data["used_artists"] == ["Metallica", "Slayer", "Megadeth"]
    assert data["unknown_artists"] == ["Not A Band 123"]
    names = {r["artist"] for r in data["recommendations"]}
    assert not names & {"Metallica", "Slayer", "Megadeth"}
    metal = {"metal", "thrash metal", "heavy metal", "aggressive", "hardcore"}
    assert sum(bool(metal & set(r["tags"])) for r in data["recommendations"]) >= 7


def test_artist_search_is_accent_and_case_insensitive(client: TestClient) -> None:
    hits = client.get("/artists", params={"q": "MOTORH"}).json()["results"]
    assert hits[0]["artist"] == "Motörhead"
    the = client.get("/artists", params={"q": "the", "limit": 30}).json()["results"]
    prefixed = [h["artist"].lower().startswith("the") for h in the]
    # Prefix matches come first, then substring matches.
    assert prefixed == sorted(prefixed, reverse=True) and any(prefixed)
    first_block = [h["listeners"] for h, p in zip(the, prefixed, strict=True) if p]
    assert first_block == sorted(first_block, reverse=True)


def test_model_card(client: TestClient) -> None:
    card = client.get("/model").json()
    assert card["engine"] == "implicit"
    assert card["params"]["factors"] == 32
    assert card["n_factors"] == 32 and card["index"] == "hnsw"
    assert card["dataset"]["fingerprint"]
    assert card["created_at"]


def test_sample_users(client: TestClient) -> None:
    body = client.get("/users", params={"limit": 3}).json()
    assert len(body["users"]) == 3 and body["total"] >= 3


# ----------------------------------------------------------------------------- bad input


def test_unknown_names_answer_404_with_suggestions(client: TestClient, user_id: str) -> None:
    unknown_user = client.get(f"/users/{user_id[:-3]}zzz/recommendations")
    assert unknown_user.status_code == 404
    assert "not known" in unknown_user.json()["detail"]
    assert user_id in unknown_user.json()["suggestions"]

    unknown_artist = client.get("/artists/Metalica/similar")
    assert unknown_artist.status_code == 404
    assert "Metallica" in unknown_artist.json()["suggestions"]

    unknown_mood = client.post("/recommend", json={"type": "mood", "mood": "jaz"})
    assert unknown_mood.status_code == 404
    assert "jazz" in unknown_mood.json()["detail"] and "jazz" in unknown_mood.json()["suggestions"]

    nobody = client.post("/listeners/recommendations", json={"artists": ["Metalica", "Qqqq Zzzz"]})
    assert nobody.status_code == 404 and "Metallica" in nobody.json()["suggestions"]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/charts", {"params": {"k": 0}}, 422),
        ("GET", "/charts", {"params": {"k": 101}}, 422),
        ("GET", "/charts", {"params": {"k": "ten"}}, 422),
        ("POST", "/recommend", {"json": {"type": "user", "k": 10}}, 422),
        ("POST", "/recommend", {"json": {"type": "mood", "mood": "rage", "k": 1000}}, 422),
        ("POST", "/recommend", {"json": {"type": "vibes"}}, 422),
        ("POST", "/recommend", {"json": {"type": "random", "extra": 1}}, 422),
        ("POST", "/recommend", {"json": ["type", "random"]}, 422),
        ("POST", "/similar", {"json": {"artist_name": 42}}, 422),
        ("POST", "/similar", {"json": {"artist_name": "   "}}, 422),
        ("POST", "/similar", {"json": {"artist_name": "a\x00b"}}, 422),
        ("POST", "/listeners/recommendations", {"json": {"artists": []}}, 422),
        (
            "POST",
            "/listeners/recommendations",
            {"json": {"artists": ["Metallica"], "plays": [1, 2]}},
            422,
        ),
        (
            "POST",
            "/listeners/recommendations",
            {"json": {"artists": ["Metallica"], "plays": [-1]}},
            422,
        ),
        ("GET", "/artists", {"params": {"q": ""}}, 422),
        ("GET", "/artists", {"params": {"q": "x" * 500}}, 422),
        ("GET", "/users", {"params": {"limit": 0}}, 422),
        ("GET", "/no/such/route", {}, 404),
        ("DELETE", "/charts", {}, 405),
    ],
)
def test_bad_requests_are_4xx(
    client: TestClient, method: str, path: str, kwargs: dict[str, object], status: int
) -> None:
    response = client.request(method, path, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == status
    assert "detail" in response.json()


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b'{"type": "user", "user_id": "\\ud800"}',
        b'{"artists": ["\\udfff\\ud800"], "plays": [NaN]}',
        b'{"artist_name": "\xff\xfe"}',
        b'{"type": "random", "k": 1e400}',
        b"\x00\x01\x02",
    ],
)
def test_malformed_bodies_are_4xx(client: TestClient, raw: bytes) -> None:
    for path in ("/recommend", "/similar", "/listeners/recommendations"):
        response = client.post(path, content=raw, headers={"content-type": "application/json"})
        assert 400 <= response.status_code < 500, (path, response.text)


def test_odd_unicode_names_never_fail(client: TestClient) -> None:
    for name in ("ﬁ", "Ω≈ç√", "🎸🤘", "ǅ", "\u202e", "a" + "\u0301" * 50):
        assert client.get(f"/artists/{name}/similar").status_code == 404
        assert client.get("/artists", params={"q": name}).status_code == 200
        body = {"artists": [name]}
        assert client.post("/listeners/recommendations", json=body).status_code == 404


def test_huge_bodies_are_refused(client: TestClient) -> None:
    big = {"artists": ["x" * 100] * 1000}
    assert client.post("/listeners/recommendations", json=big).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        yield b'{"artists": ["'
        for _ in range(100):
            yield b"y" * 1024
        yield b'"]}'

    streamed = client.post(
        "/listeners/recommendations", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413


# ----------------------------------------------------------------------------- metrics


def test_metrics_use_route_templates(model_dir: Path) -> None:
    with TestClient(create_app(make_settings(model_dir))) as fresh:
        users = fresh.get("/users", params={"limit": 2}).json()["users"]
        for uid in users:
            fresh.get(f"/users/{uid}/recommendations")
        fresh.get("/users/nobody-at-all/recommendations")
        fresh.get("/artists/Metallica/similar")
        fresh.post("/recommend", json={"type": "mood", "mood": "chill", "k": 4})
        fresh.get("/charts", params={"k": 0})
        fresh.get("/definitely/not/here")
        text = fresh.get("/metrics").text

    template = "/users/{user_id}/recommendations"
    assert metric_value(text, "http_requests_total", endpoint=template, status="200") == 2
    assert metric_value(text, "http_requests_total", endpoint=template, status="404") == 1
    assert metric_value(text, "http_requests_total", endpoint="unmatched", status="404") == 1
    assert all(uid not in text for uid in users)  # never the raw path
    assert "/definitely/not/here" not in text
    assert metric_value(text, "http_request_duration_seconds_count", endpoint=template) == 3
    assert 'le="0.001"' in text and 'le="2.5"' in text
    assert metric_value(text, "api_errors_total", endpoint="/charts", kind="validation") == 1
    assert metric_value(text, "recommendations_total", type="user") == 2
    assert metric_value(text, "recommendations_total", type="similar") == 1
    assert metric_value(text, "recommendations_total", type="mood") == 1
    assert metric_value(text, "mood_requests_total", mood="chill") == 1
    assert metric_value(text, "lookups_total", kind="user", result="known") == 2
    assert metric_value(text, "lookups_total", kind="user", result="unknown") == 1
    assert metric_value(text, "lookups_total", kind="artist", result="known") == 1
    assert metric_value(text, "recommended_artist_log_popularity_count") == 2 * 10 + 10 + 4
    assert metric_value(text, "model_loaded") == 1
    assert metric_value(text, "model_factors") == 32
    assert metric_value(text, "model_users") > 0 and metric_value(text, "model_artists") > 0
    assert re.search(r'^model_info\{version="[^"]+"\} 1\.0$', text, re.M)


def test_server_timing_header(client: TestClient) -> None:
    header = client.get("/charts").headers["server-timing"]
    assert re.fullmatch(r"app;dur=\d+\.\d+", header)


def test_cors_allows_only_configured_origins(client: TestClient) -> None:
    preflight = {"Access-Control-Request-Method": "POST"}
    allowed = client.options("/recommend", headers={"Origin": UI_ORIGIN, **preflight})
    assert allowed.headers.get("access-control-allow-origin") == UI_ORIGIN
    denied = client.options("/recommend", headers={"Origin": "http://evil.example", **preflight})
    assert "access-control-allow-origin" not in denied.headers


# ----------------------------------------------------------------------------- lifecycle


def test_without_model_the_api_is_degraded_not_ready() -> None:
    with TestClient(create_app(make_settings(None))) as empty:
        assert empty.get("/ready").status_code == 503
        health = empty.get("/health").json()
        assert health["status"] == "degraded" and health["model_loaded"] is False
        assert empty.get("/charts").status_code == 503
        assert metric_value(empty.get("/metrics").text, "model_loaded") == 0


def test_broken_model_path_starts_degraded(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path / "missing"))) as broken:
        assert broken.get("/ready").status_code == 503


def test_admin_routes_need_the_key(model_dir: Path) -> None:
    with TestClient(create_app(make_settings(model_dir, admin_api_key=None))) as no_admin:
        assert no_admin.post("/admin/reload", headers={"X-API-Key": "anything"}).status_code == 404
    with TestClient(create_app(make_settings(model_dir))) as admin:
        assert admin.post("/admin/reload").status_code == 401
        assert admin.post("/admin/reload", headers={"X-API-Key": "wrong"}).status_code == 403
        bad_path = {"model": str(model_dir / "nope")}
        missing = admin.post("/admin/reload", json=bad_path, headers={"X-API-Key": ADMIN_KEY})
        assert missing.status_code == 400 and "nope" in missing.json()["detail"]
        assert admin.get("/ready").status_code == 200  # a failed reload keeps the old model


def test_reload_swaps_the_model_atomically(model_dir: Path, other_model: Path) -> None:
    headers = {"X-API-Key": ADMIN_KEY}
    with TestClient(create_app(make_settings(model_dir))) as admin:
        old = admin.app.state.recommender  # type: ignore[attr-defined]
        assert admin.get("/health").json()["n_factors"] == 32
        swapped = admin.post("/admin/reload", json={"model": str(other_model)}, headers=headers)
        assert swapped.status_code == 200, swapped.text
        assert swapped.json()["previous_version"] == old.version
        assert admin.get("/health").json()["n_factors"] == 12
        assert admin.get("/model").json()["path"] == str(other_model)
        # A request that already holds the old runtime finishes on it.
        assert len(old.charts(3)) == 3 and old.n_factors == 32
        text = admin.get("/metrics").text
        assert metric_value(text, "model_factors") == 12
        # Without a body the configured model is loaded again.
        back = admin.post("/admin/reload", headers=headers)
        assert back.status_code == 200
        assert admin.get("/health").json()["n_factors"] == 32


def test_exact_index_setting(model_dir: Path, user_id: str) -> None:
    with TestClient(create_app(make_settings(model_dir, index="exact"))) as exact:
        assert exact.get("/health").json()["index"] == "exact"
        body = exact.get(f"/users/{user_id}/recommendations", params={"k": 5})
        assert body.status_code == 200 and len(body.json()["recommendations"]) == 5


# ----------------------------------------------------------------------------- real server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_metrics_add_up_across_workers(model_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSICREC_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = (tmp_path / "serve.log").open("w")
    cmd = [sys.executable, "-c", "from musicrec.cli import app; app()", "serve"]
    cmd += ["--model", str(model_dir)]
    cmd += ["--port", str(port), "--workers", "2", "--log-level", "warning"]
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        ready = 0
        while ready < 4:  # several answers, so both workers are most likely up
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "server did not become ready"
            try:
                ready += httpx.get(f"{base}/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                time.sleep(0.2)
        n = 40
        for _ in range(n):  # a new connection each time: spread over the workers
            assert httpx.get(f"{base}/charts", params={"k": 3}, timeout=5).status_code == 200
        text = httpx.get(f"{base}/metrics", timeout=5).text
        assert metric_value(text, "http_requests_total", endpoint="/charts") == n
        assert metric_value(text, "recommendations_total", type="charts") == n
        assert metric_value(text, "model_loaded") == 1
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        log.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", ".", "--index", "annoy"], "--index must be one of"),
        (["--model", ".", "--workers", "0"], "--workers must be at least 1"),
    ],
)
def test_serve_rejects_bad_options(args: list[str], message: str) -> None:
    from typer.testing import CliRunner

    from musicrec.cli import app as cli_app

    env = {"MUSICREC_MODEL": ""}
    result = CliRunner().invoke(cli_app, ["serve", *args], env=env)
    assert result.exit_code == 1
    assert message in result.output


def test_serve_starts_degraded_when_the_model_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A replica whose model is not there yet runs (and reports it) rather than crash-looping."""
    import uvicorn
    from typer.testing import CliRunner

    from musicrec.cli import app as cli_app

    for name in ("MUSICREC_MODEL", "MUSICREC_INDEX"):
        monkeypatch.setenv(name, "")  # serve exports both for its workers; restored afterwards
    started: list[dict[str, object]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: started.append(kwargs))
    result = CliRunner().invoke(cli_app, ["serve", "--model", "/definitely/missing/model"])
    assert result.exit_code == 0, result.output
    assert "starting without a model" in result.output
    assert len(started) == 1 and started[0]["port"] == 8000


def test_multiprocess_dir_is_created_and_cleaned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from musicrec.cli.serve import multiprocess_metrics_dir

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with multiprocess_metrics_dir(1) as none:
        assert none is None
    with multiprocess_metrics_dir(2) as created:
        assert created is not None and created.is_dir()
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(created)
    assert not created.exists() and "PROMETHEUS_MULTIPROC_DIR" not in os.environ

    configured = tmp_path / "prom"
    configured.mkdir()
    (configured / "counter_123.db").write_bytes(b"stale")
    (configured / "keep.txt").write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(configured))
    with multiprocess_metrics_dir(4) as used:
        assert used == configured
        assert not (configured / "counter_123.db").exists()
    assert (configured / "keep.txt").exists()


def test_model_card_shows_metrics_and_baseline(model_dir: Path, tmp_path: Path) -> None:
    from musicrec.fsutil import read_json, write_json_atomic

    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    metrics = {"ndcg@10": 0.21, "popularity": {"ndcg@10": 0.07}, "users_evaluated": 500}
    write_json_atomic(
        copy / "manifest.json", read_json(copy / "manifest.json") | {"metrics": metrics}
    )
    with TestClient(create_app(make_settings(copy))) as fresh:
        card = fresh.get("/model").json()
    assert card["metrics"]["ndcg@10"] == 0.21
    assert card["baseline"] == {"ndcg@10": 0.07}


# ----------------------------------------------------------------------------- fast bodies


def test_fast_bodies_match_their_response_models(client: TestClient, user_id: str) -> None:
    """Hot routes write JSON without FastAPI's response-model pass: the bodies must be exactly
    what the documented models would produce (same fields, order, types and values)."""
    from musicrec.api import schemas

    calls = [
        (schemas.HealthResponse, client.get("/health")),
        (schemas.ReadyResponse, client.get("/ready")),
        (schemas.RecommendResponse, client.get(f"/users/{user_id}/recommendations")),
        (
            schemas.RecommendResponse,
            client.get(f"/users/{user_id}/recommendations", params={"k": 3, "mood": "Chill"}),
        ),
        (
            schemas.RecommendResponse,
            client.post("/recommend", json={"type": "user", "user_id": user_id, "k": 4}),
        ),
        (
            schemas.RecommendResponse,
            client.post("/recommend", json={"type": "mood", "mood": "rage"}),
        ),
        (schemas.RecommendResponse, client.post("/recommend", json={"type": "random", "k": 2})),
        (schemas.SimilarResponse, client.get("/artists/Metallica/similar", params={"k": 5})),
        (schemas.SimilarResponse, client.post("/similar", json={"artist_name": "slayer"})),
        (
            schemas.ListenerResponse,
            client.post("/listeners/recommendations", json={"artists": ["Metallica", "Nope"]}),
        ),
    ]
    for model, response in calls:
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        expected = model.model_validate(body).model_dump(mode="json")
        assert list(body) == list(expected), model.__name__
        assert body == expected, model.__name__
        assert response.content == json_like_starlette(expected), model.__name__


def json_like_starlette(content: object) -> bytes:
    """What FastAPI's JSONResponse would have written for the same content."""
    import json

    return json.dumps(
        content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode()


def test_degraded_health_body_matches_its_model() -> None:
    from musicrec.api.schemas import HealthResponse

    with TestClient(create_app(make_settings(None))) as degraded:
        body = degraded.get("/health").json()
        hot = [
            degraded.get("/users/someone/recommendations"),
            degraded.get("/artists/Metallica/similar"),
            degraded.post("/recommend", json={"type": "mood", "mood": "chill"}),
            degraded.post("/similar", json={"artist_name": "Metallica"}),
            degraded.post("/listeners/recommendations", json={"artists": ["Metallica"]}),
        ]
    assert body == HealthResponse(status="degraded", model_loaded=False).model_dump(mode="json")
    assert [r.status_code for r in hot] == [503] * len(hot)
    assert all(r.json()["detail"] == "no model is loaded" for r in hot)
