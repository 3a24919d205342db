"""A grid of train configs: each trained and evaluated once, as a child of one ``grid`` stage.

The grid loads the dataset once and runs the one train -> evaluate sequence
(:func:`musicrec.pipeline.sequence.train_and_evaluate`) per config; the observer sees the grid
and, through ``child``, each config (MLflow: nested runs, compared by ``musicrec experiments
report``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from musicrec.config import TrainConfig, read_yaml
from musicrec.data.dataset import Dataset
from musicrec.errors import ConfigError
from musicrec.models.kinds import config_name
from musicrec.pipeline.observer import NullObserver, StageObserver, dataset_tags, observing
from musicrec.pipeline.sequence import train_and_evaluate

GRID_EXPERIMENT = "musicrec-grid"


def load_grid(path: str | Path) -> list[TrainConfig]:
    """Read ``base:`` (overrides of the defaults) and ``grid:`` (one mapping per config)."""
    data = read_yaml(path, "grid")
    grid = data.get("grid") if isinstance(data, dict) else None
    if not isinstance(grid, list) or not grid or not all(isinstance(g, dict) for g in grid):
        raise ConfigError(f"{path}: expected a non-empty `grid:` list of parameter mappings")
    base = TrainConfig.from_dict(dict(data.get("base") or {}))
    return [TrainConfig.from_dict(base.to_dict() | point) for point in grid]


@dataclass(frozen=True)
class GridRun:
    config: TrainConfig
    run_id: str | None
    model_dir: Path
    train_seconds: float
    metrics: dict[str, Any]


def run_grid(
    data_dir: str | Path,
    configs: list[TrainConfig],
    out_dir: str | Path,
    *,
    observer: StageObserver | None = None,
) -> list[GridRun]:
    """Train and evaluate every config (``out_dir/<run name>``), each a child of the grid."""
    if not configs:
        raise ConfigError("the grid has no configs")
    dataset = Dataset.load(data_dir)
    observer = observer or NullObserver()
    tags = {"stage": "grid", "kind": configs[0].kind} | dataset_tags(dataset)
    params = {"configs": len(configs), "dataset.fingerprint": dataset.fingerprint}
    results: list[GridRun] = []
    with observing(observer, "grid", params, tags):
        for config in configs:
            name = config_name(config)
            child = observer.child(name)
            result, report = train_and_evaluate(dataset, Path(out_dir) / name, config, child)
            results.append(
                GridRun(config, child.run_id, result.model_dir, result.seconds, report.to_dict())
            )
        best = max(results, key=lambda r: r.metrics["ndcg@10"])
        observer.on_metrics({"best_ndcg_at_10": best.metrics["ndcg@10"]})
        if best.run_id:
            observer.on_tags({"best_run_id": best.run_id})
    return results
