"""A blend of two kinds: ``w * first + (1 - w) * second`` on per-row normalised scores.

Each component's scores are divided by the row's largest absolute score, so both lie in
``[-1, 1]`` whatever their scale (ALS dot products, EASE weights, neighbour sums). The two
components are saved as complete model files in ``first/`` and ``second/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from musicrec.config import TrainConfig
from musicrec.models.base import IterationCallback, Model, build, model_class
from musicrec.models.topk import topk_dense

PARTS = ("first", "second")


def _normalize_rows(scores: np.ndarray) -> np.ndarray:
    top = np.abs(scores).max(axis=1, keepdims=True)
    return np.divide(scores, top, out=np.zeros_like(scores), where=top > 0)


class BlendModel(Model):
    kind = "blend"

    def __init__(self, config: TrainConfig):
        super().__init__(config)

        self.first = build(config.part("first"))
        self.second = build(config.part("second"))

    @property
    def parts(self) -> tuple[Model, Model]:
        return self.first, self.second

    def _fit(
        self, user_items: sp.csr_matrix, callback: IterationCallback | None, show_progress: bool
    ) -> None:
        for part in self.parts:
            part.fit(user_items, callback if part.has_factors else None, show_progress)
        self.loss_history = next((p.loss_history for p in self.parts if p.loss_history), [])

    def scores(self, users: np.ndarray | None, user_items: sp.csr_matrix) -> np.ndarray:
        weight = self.config.blend_weight
        first = _normalize_rows(self.first.scores(users, user_items))
        second = _normalize_rows(self.second.scores(users, user_items))
        return (weight * first + (1.0 - weight) * second).astype(np.float32)

    def similar_items(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Blend of the two kinds' similarity scores over the whole catalogue."""
        items = np.asarray(items, dtype=np.int64)
        n = self.n_items
        weight = self.config.blend_weight
        total = np.zeros((len(items), n), dtype=np.float32)
        for part, share in zip(self.parts, (weight, 1.0 - weight), strict=True):
            ids, scores = part.similar_items(items, n - 1)
            dense = np.zeros((len(items), n), dtype=np.float32)
            rows = np.repeat(np.arange(len(items)), ids.shape[1]).reshape(ids.shape)
            valid = ids >= 0
            dense[rows[valid], ids[valid]] = scores[valid]
            total += share * _normalize_rows(dense)
        own = sp.csr_matrix(
            (np.ones(len(items)), (np.arange(len(items)), items)), shape=(len(items), n)
        )
        return topk_dense(total, k, own)

    def save(self, directory: Path) -> None:
        for name, part in zip(PARTS, self.parts, strict=True):
            (directory / name).mkdir(exist_ok=True)
            part.save(directory / name)

    @classmethod
    def files(cls, config: TrainConfig) -> tuple[str, ...]:

        return tuple(
            f"{name}/{file}"
            for name in PARTS
            for file in model_class(config.part(name).kind).files(config.part(name))
        )

    @classmethod
    def load(cls, directory: Path, config: TrainConfig, user_items: sp.csr_matrix) -> BlendModel:

        model = cls(config)
        model._remember(user_items)
        parts = []
        for name in PARTS:
            part_config = config.part(name)
            parts.append(
                model_class(part_config.kind).load(directory / name, part_config, user_items)
            )
        model.first, model.second = parts
        return model

    def describe(self) -> dict[str, Any]:
        return {name: part.describe() for name, part in zip(PARTS, self.parts, strict=True)}
