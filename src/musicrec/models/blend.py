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
from musicrec.models.base import IterationCallback, Model
from musicrec.models.kinds import build, model_class
from musicrec.models.query import Query, unit_max
from musicrec.models.topk import own_rows, topk_dense

PARTS = ("first", "second")


class BlendModel(Model):
    kind = "blend"

    def __init__(self, config: TrainConfig):
        super().__init__(config)
        self.first = build(config.part("first"))
        self.second = build(config.part("second"))

    @property
    def parts(self) -> tuple[Model, Model]:
        return self.first, self.second

    @property
    def shares(self) -> tuple[float, float]:
        return self.config.blend_weight, 1.0 - self.config.blend_weight

    @property
    def exact_explanations(self) -> bool:  # type: ignore[override]
        return all(part.exact_explanations for part in self.parts)

    @property
    def iterative(self) -> bool:
        return any(part.iterative for part in self.parts)

    @property
    def sweeps(self) -> int:
        return max(part.sweeps for part in self.parts)

    def _fit(
        self, user_items: sp.csr_matrix, callback: IterationCallback | None, show_progress: bool
    ) -> None:
        for part in self.parts:
            part.fit(user_items, callback if part.iterative else None, show_progress)
        self.loss_history = next((p.loss_history for p in self.parts if p.loss_history), [])

    def fit_partial(
        self,
        user_items: sp.csr_matrix,
        sweeps: int,
        callback: IterationCallback | None = None,
        show_progress: bool = False,
    ) -> BlendModel:
        """Each part ``fit_partial``; a part fitted in closed form is fitted once."""
        user_items = sp.csr_matrix(user_items, dtype=np.float32)
        if self.user_items is None:
            self._remember(user_items)
        for part in self.parts:
            part.fit_partial(
                user_items, sweeps, callback if part.iterative else None, show_progress
            )
        self.loss_history = next((p.loss_history for p in self.parts if p.loss_history), [])
        return self

    def scores(self, users: np.ndarray | None, user_items: sp.csr_matrix) -> np.ndarray:
        first, second = (unit_max(part.scores(users, user_items)) for part in self.parts)
        weight = self.config.blend_weight
        return (weight * first + (1.0 - weight) * second).astype(np.float32)

    def contributions(self, query: Query, items: np.ndarray, exact: bool = False) -> np.ndarray:
        """Each part's terms, scaled as its scores are in the blend (exact if both parts are)."""
        total = np.zeros((len(query.items), len(items)), dtype=np.float32)
        row = sp.csr_matrix(
            (query.plays, query.items, [0, len(query.items)]), shape=(1, self.n_items)
        )
        users = None if query.user is None else np.array([query.user])
        for part, share in zip(self.parts, self.shares, strict=True):
            part_query = part._query(query.items, query.plays, query.user)
            top = float(np.abs(part.scores(users, row)).max(initial=0.0))
            if top > 0:
                total += share / top * part.contributions(part_query, items, exact)
        return total

    def similar_items(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Blend of the two kinds' similarity scores over the whole catalogue."""
        items = np.asarray(items, dtype=np.int64)
        n = self.n_items
        total = np.zeros((len(items), n), dtype=np.float32)
        for part, share in zip(self.parts, self.shares, strict=True):
            ids, scores = part.similar_items(items, n - 1)
            dense = np.zeros((len(items), n), dtype=np.float32)
            rows = np.repeat(np.arange(len(items)), ids.shape[1]).reshape(ids.shape)
            valid = ids >= 0
            dense[rows[valid], ids[valid]] = scores[valid]
            total += share * unit_max(dense)
        own = own_rows(items, n)
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
        parts = []
        for name in PARTS:
            part_config = config.part(name)
            parts.append(
                model_class(part_config.kind).load(directory / name, part_config, user_items)
            )
        return blend_of(config, parts[0], parts[1])

    def check_shape(self, n_users: int, n_items: int) -> str | None:
        return next(
            (problem for part in self.parts if (problem := part.check_shape(n_users, n_items))),
            None,
        )

    def in_memory(self) -> None:
        for part in self.parts:
            part.in_memory()

    def describe(self) -> dict[str, Any]:
        return {name: part.describe() for name, part in zip(PARTS, self.parts, strict=True)}

    @classmethod
    def run_name(cls, config: TrainConfig) -> str:
        first, second = config.part("first"), config.part("second")
        return f"blend-{first.kind}-{second.kind}-w{config.blend_weight:.2g}"


def blend_of(config: TrainConfig, first: Model, second: Model) -> BlendModel:
    """A blend of two models already fitted on the same plays (no refitting)."""
    model = BlendModel(config)
    model.first, model.second = first, second
    assert first.user_items is not None, "the parts must be fitted"
    model._remember(first.user_items)
    return model
