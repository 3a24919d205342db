"""Factor arrays as fitted by any ALS engine (implicit, Spark), and their training loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

LOSS_EVERY = 0  # sweeps between two training-loss evaluations (0: only after the last)


@dataclass(frozen=True)
class Factors:
    user_factors: np.ndarray
    item_factors: np.ndarray
    loss_history: list[float]


def has_cuda() -> bool:
    import implicit.gpu

    return bool(implicit.gpu.HAS_CUDA)


def loss_sweeps(iterations: int, every: int = LOSS_EVERY) -> list[int]:
    """The sweeps (1-based) after which the training loss is evaluated."""
    return sorted({*range(every, iterations, every), iterations}) if every else [iterations]


def training_loss(model: Any, weighted: sp.csr_matrix, regularization: float) -> float:
    """implicit's own loss function on the model's current factors."""
    if hasattr(model, "to_cpu"):  # GPU models: losses are not worth a device round trip
        return float("nan")
    from implicit.cpu import _als

    return float(
        _als.calculate_loss(
            weighted, model.user_factors, model.item_factors, regularization, num_threads=0
        )
    )
