"""The model card of the served model."""

from __future__ import annotations

from fastapi import APIRouter

from musicrec.api.deps import RecommenderDep
from musicrec.api.schemas import ModelCard
from musicrec.events.schema import WATERMARK_KEY
from musicrec.events.store import worker_id

router = APIRouter(prefix="/model", tags=["model"])
BASELINE = "popularity"


@router.get("", response_model=ModelCard)
def model_card(recommender: RecommenderDep) -> ModelCard:
    """Version, engine, parameters, metrics (popularity baseline included) and dataset."""
    manifest = recommender.manifest
    metrics = dict(manifest.get("metrics") or {})
    baseline = metrics.get(BASELINE)
    return ModelCard(
        version=recommender.version,
        kind=recommender.kind,
        engine=str(manifest.get("engine", "unknown")),
        created_at=manifest.get("created_at"),
        code_version=manifest.get("code_version"),
        params=dict(manifest.get("params") or {}),
        metrics=metrics,
        baseline=baseline if isinstance(baseline, dict) else {},
        dataset=dict(manifest.get("dataset") or {}),
        n_users=recommender.n_users,
        n_artists=recommender.n_items,
        n_factors=recommender.n_factors,
        index=recommender.index_kind,
        path=str(recommender.artifact.path),
        worker=worker_id(),
        events_watermark=int(manifest.get(WATERMARK_KEY) or 0),
    )
