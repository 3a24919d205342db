"""The dials as request fields: one model for GET query parameters and POST bodies."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import FastAPI, Query
from fastapi.testclient import TestClient

from musicrec.api.dials import ListDials, QueryDials, TagVocabulary, split_names
from musicrec.api.errors import install_error_handlers
from musicrec.rules import CoolDown, Dials

TAGS = TagVocabulary(["rock", "Hip-Hop", "jazz", "post-rock", "electronic"])
ARTISTS = {"radiohead": 0, "björk": 1, "crosby, stills & nash": 2}


def artist(name: str) -> int | None:
    return ARTISTS.get(name.casefold())


class Body(ListDials):
    k: int = 10


def make_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/list")
    def get_list(dials: Annotated[QueryDials, Query()], k: int = 10) -> dict:
        return {"k": k, **dials.to_dials(artist, TAGS).__dict__}

    @app.post("/list")
    def post_list(body: Body) -> dict:
        return {"k": body.k, **body.to_dials(artist, TAGS, "body").__dict__}

    return app


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(make_app())


def test_get_lists_are_comma_separated_or_repeated(client: TestClient) -> None:
    answer = client.get(
        "/list",
        params=[
            ("include_tags", "rock, jazz"),
            ("include_tags", "hip hop"),
            ("exclude_artists", "Crosby\\, Stills & Nash,nobody"),
            ("k", "5"),
            ("diversity", "0.5"),
        ],
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["k"] == 5
    assert body["include_tags"] == [0, 1, 2]  # rock, Hip-Hop, jazz: any of them
    assert body["exclude_artists"] == [2]  # unknown names are ignored
    assert body["diversity"] == 0.5


def test_post_takes_lists_as_they_are(client: TestClient) -> None:
    answer = client.post(
        "/list",
        json={"exclude_artists": ["Crosby, Stills & Nash"], "exclude_tags": "rock,jazz", "k": 3},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["exclude_artists"] == [2]
    assert answer.json()["exclude_tags"] == [0, 2]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("diversity", 1.5),
        ("discovery", -0.1),
        ("familiar_share", "nan"),
        ("max_per_tag", 0),
        ("max_per_tag", 101),
        ("exclude_recent_days", 0),
        ("include_tags", ",".join(f"t{i}" for i in range(101))),
        ("exclude_artists", "x" * 201),
    ],
)
def test_out_of_range_is_422_with_the_field(client: TestClient, field: str, value) -> None:
    answer = client.get("/list", params={field: value})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"][:2] == ["query", field]
    posted = client.post("/list", json={field: value})
    assert posted.status_code == 422
    assert posted.json()["detail"][0]["loc"][:2] == ["body", field]


def test_unknown_body_field_is_refused(client: TestClient) -> None:
    answer = client.post("/list", json={"diversty": 0.5})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "diversty"]


def test_an_unknown_tag_is_422_with_close_matches(client: TestClient) -> None:
    answer = client.get("/list", params={"include_tags": "rock,rok"})
    assert answer.status_code == 422
    error = answer.json()["detail"][0]
    assert error["loc"] == ["query", "include_tags"]
    assert error["type"] == "unknown_tag"
    assert "'rok'" in error["msg"] and "close matches: rock" in error["msg"]
    answer = client.post("/list", json={"exclude_tags": ["zzzz"]})
    assert answer.json()["detail"][0]["loc"] == ["body", "exclude_tags"]
    assert "no close match" in answer.json()["detail"][0]["msg"]


def test_close_tags_prefer_prefixes_then_difflib() -> None:
    assert TAGS.close("post") == ["post-rock"]
    assert TAGS.close("electornic") == ["electronic"]
    assert TAGS.code("HIP  hop") == 1


def test_neutral_request_makes_neutral_dials() -> None:
    assert ListDials().neutral
    assert ListDials().to_dials(artist, TAGS) == Dials()
    cooled = ListDials().to_dials(artist, TAGS, cooldown=CoolDown())
    assert cooled.cooldown == CoolDown()


def test_split_names_honours_escaped_commas() -> None:
    assert split_names(" a, b\\, c ,, ") == ["a", "b, c"]


def test_openapi_documents_every_dial_as_a_query_parameter() -> None:
    schema = make_app().openapi()
    names = {p["name"] for p in schema["paths"]["/list"]["get"]["parameters"]}
    assert set(ListDials.model_fields) <= names


def test_close_tags_stay_short_on_a_large_vocabulary() -> None:
    vocabulary = TagVocabulary([f"tag {i}" for i in range(20_000)])
    assert vocabulary.close("tag 1") == ["tag 1", "tag 10", "tag 11", "tag 12", "tag 13"]
    assert len(vocabulary.close("t")) == 5
