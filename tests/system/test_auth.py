"""Scoped API keys and quotas in the app (in process), and ``musicrec serve``'s safe default."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from access_helpers import metric_value
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from musicrec.access.keys import create_key, revoke_key
from musicrec.api.app import create_app
from musicrec.api.auth import PUBLIC_PATHS, ROUTE_SCOPES
from musicrec.api.settings import Settings
from musicrec.cli import app as cli_app


@pytest.fixture(scope="module")
def model_dir(synth_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("auth-model") / "model"
    shutil.copytree(synth_model, out)
    return out


class Keys:
    """A keys file with one key per scope set of interest."""

    def __init__(self, path: Path):
        self.path = path
        _, self.read = create_key(path, "reader", "read")
        _, self.events = create_key(path, "logger", "events")
        _, self.admin = create_key(path, "ops", "admin")
        _, self.limited = create_key(path, "limited", "read", rate=0.001, burst=2)


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(tmp_path / "keys.json")


@pytest.fixture
def client(model_dir: Path, keys: Keys, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        model=str(model_dir),
        api_keys_file=keys.path,
        events_url=f"sqlite:///{tmp_path / 'events.db'}",
        watch_interval_s=0,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_every_route_has_a_scope(client: TestClient) -> None:
    """A new route must be placed in ROUTE_SCOPES (unlisted ones need admin, the safe side)."""
    operations = {
        (method.upper(), path)
        for path, ops in client.app.openapi()["paths"].items()  # type: ignore[attr-defined]
        for method in ops
    }
    unlisted = {op for op in operations if op not in ROUTE_SCOPES and op[1] not in PUBLIC_PATHS}
    assert unlisted == set()


def test_no_key_unknown_key_and_missing_scope_say_why(client: TestClient, keys: Keys) -> None:
    missing = client.get("/charts")
    assert missing.status_code == 401 and "X-API-Key" in missing.json()["detail"]
    assert missing.headers["www-authenticate"].startswith("ApiKey")
    unknown = client.get("/charts", headers={"X-API-Key": keys.read + "x"})
    assert unknown.status_code == 401 and unknown.json()["detail"] == "unknown API key"
    wrong = client.post(
        "/events",
        json={"events": [{"user_id": "u", "artist": "Metallica"}]},
        headers={"X-API-Key": keys.read},
    )
    assert wrong.status_code == 403
    assert "'reader' lacks the 'events' scope needed for POST /events" in wrong.json()["detail"]
    bearer = client.get("/charts", headers={"Authorization": f"Bearer {keys.read}"})
    assert bearer.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/charts", "read"),
        ("GET", "/users", "read"),
        ("GET", "/model", "read"),
        ("POST", "/events", "events"),
        ("GET", "/users/u1/events", "events"),
        ("GET", "/events/stats", "admin"),
        ("GET", "/model/workers", "admin"),
        ("DELETE", "/users/u1", "admin"),
    ],
)
def test_each_scope_opens_its_routes_only(
    client: TestClient, keys: Keys, method: str, path: str, allowed: str
) -> None:
    body = {"events": [{"user_id": "u1", "artist": "Metallica"}]} if method == "POST" else None
    for scope, key in (("read", keys.read), ("events", keys.events), ("admin", keys.admin)):
        answer = client.request(method, path, json=body, headers={"X-API-Key": key})
        assert (answer.status_code < 400) == (scope == allowed), (scope, answer.text)
        if scope != allowed:
            assert answer.status_code == 403


def test_health_ready_and_documents_stay_open(client: TestClient) -> None:
    for path in ("/health", "/ready", "/openapi.json", "/docs"):
        assert client.get(path).status_code == 200, path


def test_metrics_are_open_until_a_metrics_key_exists(client: TestClient, keys: Keys) -> None:
    assert client.get("/metrics").status_code == 200
    _, scraper = create_key(keys.path, "prometheus", "metrics")
    assert client.app.state.keyring.refresh()  # type: ignore[attr-defined]
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"X-API-Key": keys.read}).status_code == 403
    assert client.get("/metrics", headers={"X-API-Key": scraper}).status_code == 200


def test_over_quota_is_429_with_retry_after_and_counted_by_name(
    client: TestClient, keys: Keys
) -> None:
    headers = {"X-API-Key": keys.limited}
    codes = [client.get("/charts", headers=headers).status_code for _ in range(4)]
    assert codes == [200, 200, 429, 429]  # burst 2, then 0.001/s
    over = client.get("/charts", headers=headers)
    assert int(over.headers["retry-after"]) >= 1
    assert "'limited' is over its quota" in over.json()["detail"]
    assert client.get("/charts", headers={"X-API-Key": keys.read}).status_code == 200
    text = client.get("/metrics").text
    assert metric_value(text, "api_key_requests_total", key="limited", outcome="allowed") == 2
    assert metric_value(text, "api_key_requests_total", key="limited", outcome="over_quota") == 3
    assert keys.limited not in text and keys.limited.split("_")[1] not in text
    refusals = metric_value(text, "http_requests_total", endpoint="/charts", status="429")
    assert refusals == 3  # refusals carry their route, not "unmatched"


def test_a_revoked_key_stops_at_the_next_refresh(client: TestClient, keys: Keys) -> None:
    headers = {"X-API-Key": keys.read}
    assert client.get("/charts", headers=headers).status_code == 200
    revoke_key(keys.path, "reader")
    assert client.app.state.keyring.refresh()  # type: ignore[attr-defined]
    revoked = client.get("/charts", headers=headers)
    assert revoked.status_code == 401 and "revoked" in revoked.json()["detail"]


def test_a_broken_keys_file_keeps_the_loaded_keys(client: TestClient, keys: Keys) -> None:
    keys.path.write_text("{ half a file")
    assert not client.app.state.keyring.refresh()  # type: ignore[attr-defined]
    assert client.get("/charts", headers={"X-API-Key": keys.read}).status_code == 200


def test_the_env_admin_key_still_works_with_a_keys_file(
    model_dir: Path, keys: Keys, tmp_path: Path
) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, model=str(model_dir), api_keys_file=keys.path, admin_api_key="legacy"
    )
    with TestClient(create_app(settings)) as client:
        workers = client.get("/model/workers", headers={"X-API-Key": "legacy"})
        assert workers.status_code == 200
        assert client.get("/charts", headers={"X-API-Key": "legacy"}).status_code == 403


def test_openapi_documents_the_keys(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["ApiKey"]["name"] == "X-API-Key"
    recs = schema["paths"]["/users/{user_id}/recommendations"]["get"]
    assert {"401", "403", "429"} <= set(recs["responses"]) and recs["security"]
    assert "Retry-After" in recs["responses"]["429"]["headers"]
    assert "security" not in schema["paths"]["/health"]["get"]
    assert "security" not in schema["paths"]["/metrics"]["get"]  # no metrics key yet


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("10.1.2.3", False),
    ],
)
def test_serve_refuses_a_reachable_address_without_keys(host: str, allowed: bool) -> None:
    from musicrec.cli.serve import check_access, is_loopback

    assert is_loopback(host) == allowed
    if allowed:
        check_access(host, None, allow_anonymous=False)  # the demo stays open
        return
    result = CliRunner().invoke(
        cli_app,
        ["serve", "--model", "/nowhere", "--host", host],
        env={"MUSICREC_API_KEYS_FILE": ""},
    )
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "musicrec keys create" in lines[0]
    assert "--allow-anonymous" in lines[0]
    check_access(host, None, allow_anonymous=True)  # the explicit way out


def test_serve_checks_the_keys_file_before_starting(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli_app,
        ["serve", "--model", "/nowhere", "--host", "0.0.0.0", "--keys-file", str(tmp_path / "k")],
    )
    assert result.exit_code == 1 and "not found" in result.output
