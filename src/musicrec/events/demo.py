"""The live loop in one screen: a listener's recommendations before and after a few events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

DEMO_ARTISTS = ("Metallica", "Slayer", "Iron Maiden", "Megadeth", "Pantera")
DEMO_PLAYS = 5


@dataclass(frozen=True)
class DemoResult:
    user_id: str
    posted: list[dict[str, Any]]
    before: list[dict[str, Any]]
    after: list[dict[str, Any]]


def run_demo(
    url: str, user_id: str | None = None, k: int = 10, client: httpx.Client | None = None
) -> DemoResult:
    """Post plays of :data:`DEMO_ARTISTS` and a ban of the listener's top artist; fetch both lists.

    ``user_id`` defaults to the first listener the model knows.
    """
    with client or httpx.Client(base_url=url, timeout=30.0) as client:
        if user_id is None:
            user_id = str(client.get("/users", params={"limit": 1}).json()["users"][0])
        path = f"/users/{user_id}/recommendations"
        answer = client.get(path, params={"k": k})
        before = answer.json()["recommendations"] if answer.status_code == 200 else []
        events: list[dict[str, Any]] = [
            {"user_id": user_id, "artist": name, "plays": DEMO_PLAYS} for name in DEMO_ARTISTS
        ]
        if before:
            events.append({"user_id": user_id, "artist": before[0]["artist"], "kind": "ban"})
        posted = client.post("/events", json={"events": events})
        posted.raise_for_status()
        after = client.get(path, params={"k": k})
        after.raise_for_status()
    return DemoResult(user_id, events, before, after.json()["recommendations"])
