"""Moods as directions in the model's factor space.

A mood (``resources/moods.yaml`` or a user YAML file) lists seed artists and tags. When a model
is loaded each mood becomes one unit vector: the mean of the unit item factors of the seed
artists found in the catalogue, blended with the tag-weighted mean of the artists carrying the
mood's tags (top artists by tag weight x log listeners). Recommending for a mood is then a
single scoring pass, like recommending for a user.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from musicrec.errors import ConfigError
from musicrec.text import fold_accents

MOODS_RESOURCE = "moods.yaml"
TAG_ARTISTS_PER_MOOD = 50


@dataclass(frozen=True)
class MoodSpec:
    """A mood as written in YAML."""

    name: str
    display_name: str
    emoji: str
    description: str
    seed_artists: tuple[str, ...]
    tags: tuple[str, ...]


@dataclass(frozen=True)
class ResolvedMood:
    """A mood resolved on one model; ``vector`` is ``None`` when nothing defines it here."""

    spec: MoodSpec
    vector: np.ndarray | None
    seed_items: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    tag_items: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    @property
    def available(self) -> bool:
        return self.vector is not None

    @property
    def reason(self) -> str | None:
        if self.available:
            return None
        return (
            f"mood {self.spec.name!r} is unavailable on this model: none of its seed artists "
            f"({', '.join(self.spec.seed_artists)}) are in the catalogue and no artist carries "
            f"its tags ({', '.join(self.spec.tags)})"
        )


def _as_list(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a list of strings")
    return tuple(v.strip() for v in value if v.strip())


def parse_moods(data: Any, source: str = "moods") -> list[MoodSpec]:
    """Validate a ``{moods: {name: {...}}}`` mapping into mood specs."""
    if not isinstance(data, dict) or not isinstance(data.get("moods"), dict) or not data["moods"]:
        raise ConfigError(f"{source}: expected a top-level 'moods:' mapping of mood names")
    specs = []
    for name, body in data["moods"].items():
        where = f"{source}: mood {name!r}"
        if not isinstance(body, dict):
            raise ConfigError(f"{where}: expected a mapping")
        spec = MoodSpec(
            name=str(name),
            display_name=str(body.get("display_name", name)),
            emoji=str(body.get("emoji", "")),
            description=str(body.get("description", "")),
            seed_artists=_as_list(body.get("seed_artists"), f"{where} seed_artists"),
            tags=_as_list(body.get("tags"), f"{where} tags"),
        )
        if not spec.seed_artists and not spec.tags:
            raise ConfigError(f"{where}: needs seed_artists or tags")
        specs.append(spec)
    return specs


def load_mood_specs(path: str | Path | None = None) -> list[MoodSpec]:
    """Moods from ``path``, or the packaged ``moods.yaml`` when ``path`` is ``None``."""
    if path is None:
        text = resources.files("musicrec").joinpath("resources", MOODS_RESOURCE).read_text("utf-8")
        source = MOODS_RESOURCE
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read moods file ({exc.strerror})") from exc
        source = str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML ({exc})") from exc
    return parse_moods(data, source)


@dataclass(frozen=True)
class TagTable:
    """``tags.parquet`` as arrays: one row per (artist, tag), tags dictionary-encoded."""

    items: np.ndarray  # int64 item index per row
    codes: np.ndarray  # int64 index into ``names`` per row
    weights: np.ndarray  # float64 per row
    names: list[str]  # distinct tags

    def __len__(self) -> int:
        return len(self.items)


def read_tags(path: str | Path) -> TagTable | None:
    """Read a tags parquet file (``item_idx, tag, weight``), or ``None`` when absent."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        return None
    table = pq.read_table(path, columns=["item_idx", "tag", "weight"], read_dictionary=["tag"])
    tags = table.column("tag").combine_chunks()
    if tags.null_count:
        keep = pc.is_valid(tags)
        table, tags = table.filter(keep), tags.filter(keep)
    return TagTable(
        items=table.column("item_idx").to_numpy().astype(np.int64),
        codes=tags.indices.to_numpy(zero_copy_only=False).astype(np.int64),
        weights=table.column("weight").to_numpy().astype(np.float64),
        names=[str(t) for t in tags.dictionary.to_pylist()],
    )


def _unit(vector: np.ndarray) -> np.ndarray | None:
    norm = float(np.linalg.norm(vector))
    return (vector / norm).astype(np.float32) if norm > 0 else None


def resolve_moods(
    specs: list[MoodSpec],
    unit: Callable[[np.ndarray], np.ndarray],
    name_to_item: Mapping[str, int],
    listeners: np.ndarray,
    tags: TagTable | None = None,
    tag_artists: int = TAG_ARTISTS_PER_MOOD,
) -> dict[str, ResolvedMood]:
    """Resolve each mood into a unit vector in factor space.

    Args:
        specs: Moods to resolve.
        unit: Unit-normalised item factors of the given item indices.
        name_to_item: Accent-folded artist name -> item index.
        listeners: Listeners per item (popularity in the tag ranking).
        tags: The artists' tags, when the dataset has them.
        tag_artists: How many tag-carrying artists define a mood at most.
    """
    folded_names = np.array([fold_accents(t) for t in tags.names] if tags else [], dtype=object)
    popularity = np.log1p(np.asarray(listeners, dtype=np.float64))
    out: dict[str, ResolvedMood] = {}
    for spec in specs:
        seeds = [name_to_item[f] for f in map(fold_accents, spec.seed_artists) if f in name_to_item]
        seed_items = np.unique(np.asarray(seeds, dtype=np.int64))
        parts = []
        if len(seed_items):
            parts.append(_unit(unit(seed_items).mean(axis=0)))
        picked = np.empty(0, dtype=np.int64)
        if tags is not None and len(tags):
            wanted = [fold_accents(t) for t in spec.tags]
            rows = np.isin(tags.codes, np.flatnonzero(np.isin(folded_names, wanted)))
            if rows.any():
                per_item = np.bincount(
                    tags.items[rows], weights=tags.weights[rows], minlength=len(popularity)
                )
                score = per_item * popularity
                candidates = np.flatnonzero(score > 0)
                picked = candidates[np.argsort(-score[candidates], kind="stable")[:tag_artists]]
                if len(picked):
                    weights = score[picked] / score[picked].sum()
                    parts.append(_unit(weights @ unit(picked)))
        found = [p for p in parts if p is not None]
        vector = _unit(np.sum(found, axis=0)) if found else None
        out[spec.name] = ResolvedMood(spec, vector, seed_items, picked)
    return out
