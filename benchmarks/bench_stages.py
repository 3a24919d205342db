"""Where a request's time goes, stage by stage, in one process (no HTTP, no load generator).

Loads a model the way the API does and times, over many distinct users / artists / moods:

- ``app: ...``: the whole ASGI application (middleware, routing, validation, handler, metrics,
  serialization) called directly with an HTTP scope, as uvicorn would after parsing a request
- ``user: ...``: the stages of a known listener's recommendations: id lookup, history and its
  confidence weights, the index search with played artists excluded, explanations, building
  the result objects, metrics, and building plus serializing the response body
- ``similar`` and ``mood`` totals inside the recommender

Prints mean and p50/p99 CPU microseconds per stage. The same stages run on any checkout, so the
figures before and after a change are comparable (``PYTHONPATH=old/src python ...``).

Usage::

    python benchmarks/bench_stages.py --model PATH [--n 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import numpy as np


def timed(fn: Callable[[int], Any], n: int, repeat: int = 1) -> np.ndarray:
    """CPU microseconds of ``fn(i)`` for i in 0..n-1 (after ``min(n, 100)`` warm-up calls).

    Process CPU time (all threads: the thread pool of sync endpoints included) rather than
    wall time, so that other work on a shared machine does not count.
    """
    for i in range(min(n, 100)):
        fn(i)
    out = np.empty(n * repeat)
    for r in range(repeat):
        for i in range(n):
            started = time.process_time()
            fn(i)
            out[r * n + i] = (time.process_time() - started) * 1e6
    return out


def asgi_caller(app: Any) -> Callable[[str, str, str, bytes], int]:
    """Call ``app`` for one request in a private event loop; returns the status."""
    loop = asyncio.new_event_loop()

    def call(method: str, path: str, query: str = "", body: bytes = b"") -> int:
        status = 0
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        headers = [(b"host", b"127.0.0.1")]
        if body:
            headers += [(b"content-type", b"application/json")]
            headers += [(b"content-length", str(len(body)).encode())]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": unquote(path),
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": query.encode(),
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        loop.run_until_complete(app(scope, receive, send))
        return status

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--n", type=int, default=2000, help="Distinct users per stage.")
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, "blas")  # as `musicrec serve` does (idle BLAS threads spin on CPU)

    import orjson
    from fastapi.testclient import TestClient

    from musicrec.api.app import create_app
    from musicrec.api.settings import Settings

    app = create_app(Settings(_env_file=None, model=str(args.model)))  # type: ignore[call-arg]
    with TestClient(app):  # runs the lifespan: the model is loaded as in the server
        rec = app.state.recommender
        metrics = app.state.metrics
        rng = np.random.default_rng(0)
        users = [str(rec.user_ids[u]) for u in rng.choice(rec.n_users, args.n, replace=False)]
        positions = [rec.user_index(u) for u in users]
        artists = [str(rec.catalogue.names[i]) for i in rec.catalogue.by_popularity[:2000]]
        moods = [name for name, mood in rec.moods.items() if mood.available]
        call = asgi_caller(app)
        rows: list[tuple[str, np.ndarray]] = []
        n = args.n

        def add(name: str, fn: Callable[[int], Any]) -> None:
            rows.append((name, timed(fn, n)))

        add("app: GET /health", lambda i: call("GET", "/health"))
        add(
            "app: GET /users/{id}/recommendations",
            lambda i: call("GET", f"/users/{quote(users[i], safe='')}/recommendations", "k=10"),
        )
        add(
            "app: GET /artists/{name}/similar",
            lambda i: call("GET", f"/artists/{quote(artists[i % 2000], safe='')}/similar", "k=10"),
        )
        add(
            "app: POST /recommend (mood)",
            lambda i: call(
                "POST",
                "/recommend",
                body=orjson.dumps({"type": "mood", "mood": moods[i % len(moods)], "k": 10}),
            ),
        )
        add("user: recommend_user (all stages)", lambda i: rec.recommend_user(users[i], 10))
        add("user: id lookup", lambda i: rec.user_index(users[i]))
        model = rec.model
        add("user: history + confidence (query)", lambda i: model.user_query(positions[i]))
        queries = [model.user_query(p) for p in positions]
        found = [model.rank(q, 10) for q in queries]
        add("user: index search, played excluded", lambda i: model.rank(queries[i], 10))
        add("user: explanations", lambda i: model.explain(queries[i], found[i][0]))
        names = rec.catalogue.names
        reasons = [
            [tuple(str(names[h]) for h in r) for r in model.explain(q, f[0])]
            for q, f in zip(queries, found, strict=True)
        ]
        add(
            "user: result objects",
            lambda i: [
                rec.catalogue.rec(int(a), float(s), r)
                for a, s, r in zip(found[i][0], found[i][1], reasons[i], strict=True)
            ],
        )
        recs = [rec.recommend_user(u, 10) for u in users]
        add(
            "user: metrics (lookup + served)",
            lambda i: (metrics.lookup("user", known=True), metrics.served("user", recs[i])),
        )
        try:  # the response building of the checkout being measured
            from musicrec.api.convert import recommend_body

            add(
                "user: response body (build + JSON)",
                lambda i: recommend_body("user", recs[i], rec, 0.0, users[i]).body,
            )
        except ImportError:
            from fastapi.responses import JSONResponse

            from musicrec.api.convert import to_schema
            from musicrec.api.schemas import RecommendResponse

            def body_before(i: int) -> bytes:
                response = RecommendResponse(
                    type="user",
                    recommendations=to_schema(recs[i]),
                    user_id=users[i],
                    mood=None,
                    model_version=rec.version,
                    took_ms=0.0,
                )
                # What FastAPI does with a returned model: dump it, validate the dump against
                # response_model, serialize that to JSON-able data, and json.dumps it.
                content = response.model_dump(by_alias=True)
                validated = RecommendResponse.model_validate(content)
                return JSONResponse(validated.model_dump(mode="json")).body

            add("user: response body (build + JSON)", body_before)
        add("similar: recommender.similar", lambda i: rec.similar(artists[i % 2000], 10))
        add("mood: recommend_mood", lambda i: rec.recommend_mood(moods[i % len(moods)], 10))

    print(f"- model: {args.model}: {rec.n_users:,} users x {rec.n_items:,} artists")
    print(f"- {n} distinct users / the 2,000 most listened artists / {len(moods)} moods\n")
    print("| stage | mean CPU µs | p50 | p99 |")
    print("|---|---:|---:|---:|")
    for name, us in rows:
        print(
            f"| {name} | {us.mean():.0f} | {np.percentile(us, 50):.0f} "
            f"| {np.percentile(us, 99):.0f} |"
        )


if __name__ == "__main__":
    main()
