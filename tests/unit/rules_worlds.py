"""Random catalogues, listeners, dials and an independent oracle for the rule-chain tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from musicrec.rules import Candidates, CoolDown, Dials, Exposure, ItemMeta, ListenerState

NOW = 1_700_000_000.0
DAY = 86_400.0


@dataclass
class World:
    meta: ItemMeta
    popularity: np.ndarray
    candidates: Candidates
    ranking: np.ndarray  # the model's whole ranking (candidates are its prefix)
    listener: ListenerState
    dials: Dials
    k: int

    def deeper(self, n: int) -> Candidates:
        ids = self.ranking[:n]
        return Candidates.of(ids, -np.arange(len(ids), dtype=float))


def subset(draw: st.DrawFn, n: int, max_size: int | None = None) -> list[int]:
    if n == 0:
        return []
    return draw(st.lists(st.integers(0, n - 1), unique=True, max_size=max_size or n))


@st.composite
def catalogues(draw: st.DrawFn, min_items: int = 1, max_items: int = 60) -> ItemMeta:
    n = draw(st.integers(min_items, max_items))
    n_tags = draw(st.integers(0, 6))
    listeners = draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n))
    rows, codes = [], []
    for item in range(n):
        for code in subset(draw, n_tags, 4):
            rows.append(item)
            codes.append(code)
    weights = draw(st.lists(st.floats(0, 100), min_size=len(rows), max_size=len(rows)))
    return ItemMeta.build(
        np.array(listeners),
        np.array(rows, dtype=np.int64),
        np.array(codes, dtype=np.int64),
        np.array(weights),
        [f"tag{i}" for i in range(n_tags)],
    )


@st.composite
def listeners(draw: st.DrawFn, n: int, almost_everything: bool = False) -> ListenerState:
    if almost_everything:
        left = draw(st.integers(0, min(3, n)))
        played = list(np.random.default_rng(draw(st.integers(0, 99))).permutation(n)[left:])
    else:
        played = subset(draw, n)
    weights = [draw(st.floats(0.5, 1000)) for _ in played]
    bans = subset(draw, n, 8)
    until = [draw(st.sampled_from([np.inf, NOW - DAY, NOW + DAY, NOW, NOW + 1])) for _ in bans]
    events = subset(draw, n, 10)
    event_at = [NOW - draw(st.floats(0, 30)) * DAY for _ in events]
    shown = subset(draw, n, 10)
    exposure = Exposure(
        items=np.array(shown, dtype=np.int64),
        shown=np.array([draw(st.integers(0, 6)) for _ in shown], dtype=np.int64),
        last_shown=np.array([NOW - draw(st.floats(0, 14)) * DAY for _ in shown]),
    )
    return ListenerState.of(played, weights, bans, until, events, event_at, exposure)


@st.composite
def dial_settings(draw: st.DrawFn, meta: ItemMeta) -> Dials:
    n_tags = len(meta.tag_names)
    unit = st.one_of(st.just(0.0), st.just(1.0), st.floats(0, 1))
    days = st.floats(0, 10)
    return Dials(
        exclude_artists=tuple(subset(draw, meta.n_items, 5)),
        exclude_tags=tuple(subset(draw, n_tags, 2)),
        include_tags=tuple(subset(draw, n_tags, 3)),
        max_per_tag=draw(st.one_of(st.none(), st.integers(1, 4))),
        diversity=draw(unit),
        discovery=draw(unit),
        familiar_share=draw(unit),
        exclude_recent_days=draw(st.one_of(st.none(), st.floats(0.5, 20))),
        cooldown=draw(st.one_of(st.none(), st.builds(CoolDown, st.integers(1, 4), days))),
    )


@st.composite
def worlds(draw: st.DrawFn, almost_everything: bool = False, neutral: bool = False) -> World:
    meta = draw(catalogues())
    n = meta.n_items
    seed = draw(st.integers(0, 2**31))
    ranking = np.random.default_rng(seed).permutation(n)
    listener = draw(listeners(n, almost_everything))
    if neutral:
        listener = ListenerState.of(listener.played, listener.weights)
        ranking = ranking[~np.isin(ranking, listener.played)]
    cut = draw(st.integers(0, len(ranking)))
    ids = ranking[:cut]
    scores = np.sort(np.random.default_rng(seed + 1).random(cut))[::-1]
    if cut and not neutral and draw(st.booleans()):
        # an index may return an artist twice: repeat some, each after its first place
        again = np.sort(
            np.array(draw(st.lists(st.integers(0, cut - 1), max_size=4)), dtype=np.int64)
        )
        ids = np.insert(ids, again + 1, ids[again])
        scores = np.insert(scores, again + 1, scores[again])
    dials = Dials() if neutral else draw(dial_settings(meta))
    return World(
        meta=meta,
        popularity=np.argsort(-meta.listeners, kind="stable"),
        candidates=Candidates.of(ids, scores),
        ranking=ranking,
        listener=listener,
        dials=dials,
        k=draw(st.integers(0, n + 3)),
    )


def blocked(world: World, item: int, familiar: bool = False) -> str | None:
    """The first rule that keeps ``item`` out (of familiar slots when ``familiar``),
    computed the slow, obvious way."""
    meta, listener, dials = world.meta, world.listener, world.dials
    tags = {int(t) for t in meta.tags[item] if t >= 0}
    bans = {int(b) for b, u in zip(listener.bans, listener.ban_until, strict=True) if u > NOW}
    if item in bans:
        return "banned"
    if item in set(dials.exclude_artists):
        return "excluded_artist"
    if tags & set(dials.exclude_tags):
        return "excluded_tag"
    if dials.include_tags and not tags & set(dials.include_tags):
        return "include_tags"
    if not familiar and item in set(listener.played.tolist()):
        return "played"
    if dials.exclude_recent_days is not None:
        recent = {
            int(i)
            for i, at in zip(listener.last_event, listener.last_event_at, strict=True)
            if at >= NOW - dials.exclude_recent_days * DAY
        }
        if item in recent:
            return "recent"
    if dials.cooldown is not None:
        ex = listener.exposure
        for i, shown, last in zip(ex.items, ex.shown, ex.last_shown, strict=True):
            resting = last + dials.cooldown.days * DAY > NOW
            if int(i) == item and shown >= dials.cooldown.shows and resting:
                return "cooldown"
    return None


def eligible(world: World) -> tuple[set[int], set[int]]:
    """New items and familiar items the rules allow."""
    new = {i for i in range(world.meta.n_items) if blocked(world, i) is None}
    familiar: set[int] = set()
    if world.dials.familiar_share > 0:
        played = set(world.listener.played.tolist())
        familiar = {i for i in played if blocked(world, i, familiar=True) is None}
    return new, familiar


def rank(world: World, items: set[int]) -> int:
    """The most items of ``items`` a list can hold under ``max_per_tag`` (matroid rank)."""
    cap = world.dials.max_per_tag
    if cap is None:
        return len(items)
    top = world.meta.top_tag
    untagged = sum(1 for i in items if top[i] < 0)
    per_tag: dict[int, int] = {}
    for i in items:
        if top[i] >= 0:
            per_tag[int(top[i])] = per_tag.get(int(top[i]), 0) + 1
    return untagged + sum(min(cap, c) for c in per_tag.values())
