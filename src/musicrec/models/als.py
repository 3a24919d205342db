"""implicit ALS: fit on a users x items confidence matrix, return plain factor arrays."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from rich.progress import Progress, TextColumn
from threadpoolctl import threadpool_limits

from musicrec.confidence import confidence
from musicrec.config import TrainConfig

log = logging.getLogger(__name__)

# (iteration, seconds, loss) after each ALS sweep; loss is NaN when not computed.
IterationCallback = Callable[[int, float, float], None]


@dataclass(frozen=True)
class Factors:
    user_factors: np.ndarray
    item_factors: np.ndarray
    loss_history: list[float]


def has_cuda() -> bool:
    import implicit.gpu

    return bool(implicit.gpu.HAS_CUDA)


def build_als(config: TrainConfig, n_threads: int = 0):  # type: ignore[no-untyped-def]
    """The single CPU/GPU switch: implicit's GPU build when asked for and available."""
    from implicit.als import AlternatingLeastSquares

    use_gpu = config.use_gpu and has_cuda()
    if config.use_gpu and not use_gpu:
        log.warning("use_gpu requested but implicit has no CUDA support here; using the CPU")
    return AlternatingLeastSquares(
        factors=config.factors,
        regularization=config.regularization,
        alpha=1.0,  # confidence is already scaled by musicrec.confidence
        iterations=config.iterations,
        calculate_training_loss=True,
        random_state=config.seed,
        use_gpu=use_gpu,
        num_threads=n_threads,
    )


def fit_als(
    train: sp.csr_matrix,
    config: TrainConfig,
    callback: IterationCallback | None = None,
    show_progress: bool = False,
) -> Factors:
    """Fit implicit ALS on raw plays ``train`` (users x items); weighting happens here once."""
    weighted = confidence(train, config)
    losses: list[float] = []

    def on_iteration(iteration: int, elapsed: float, loss: float) -> None:
        losses.append(float(loss))
        if callback is not None:
            callback(iteration, elapsed, float(loss))

    # implicit parallelises itself; a multithreaded BLAS underneath only oversubscribes.
    with (
        threadpool_limits(limits=1, user_api="blas"),
        Progress(
            *Progress.get_default_columns(),
            TextColumn("loss {task.fields[loss]}"),
            disable=not show_progress,
            transient=True,
        ) as progress,
    ):
        task = progress.add_task("ALS sweeps", total=config.iterations, loss="-")

        def on_sweep(iteration: int, elapsed: float, loss: float) -> None:
            progress.update(task, advance=1, loss=f"{loss:.5f}")
            on_iteration(iteration, elapsed, loss)

        model = build_als(config)
        model.fit(weighted, show_progress=False, callback=on_sweep)
    if hasattr(model, "to_cpu"):
        model = model.to_cpu()
    return Factors(
        user_factors=np.ascontiguousarray(model.user_factors, dtype=np.float32),
        item_factors=np.ascontiguousarray(model.item_factors, dtype=np.float32),
        loss_history=losses,
    )
