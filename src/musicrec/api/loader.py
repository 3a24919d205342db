"""Load the model the API serves (a path or ``models:/name@alias``) into a runtime."""

from __future__ import annotations

import logging
import time

from musicrec.api.settings import Settings
from musicrec.errors import ModelLoadError, MusicrecError
from musicrec.serving.recommender import Recommender
from musicrec.tracking.registry import resolve_model_path

log = logging.getLogger(__name__)

__all__ = ["load_recommender", "resolve_model_path"]


def load_recommender(model: str, settings: Settings) -> Recommender:
    """Resolve, load and fully build a :class:`Recommender` (nothing is swapped here)."""
    started = time.perf_counter()
    path = resolve_model_path(model)
    try:
        recommender = Recommender.load(
            path,
            index=settings.index,
            ef=settings.hnsw_ef,
            ef_cosine=settings.hnsw_ef_similar,
            moods_path=settings.moods_path,
            mood_weight=settings.mood_weight,
            save_index=settings.save_index,
        )
    except (MusicrecError, OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load model {model}: {exc}") from exc
    log.info(
        "loaded model %s from %s in %.2fs (%s index)",
        recommender.version,
        path,
        time.perf_counter() - started,
        settings.index,
    )
    return recommender
