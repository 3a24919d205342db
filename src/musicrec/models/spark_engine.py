"""The Spark engine: the kinds it fits on a cluster (or ``local[*]``), as ordinary models."""

from __future__ import annotations

from musicrec.config import TrainConfig
from musicrec.data.dataset import Dataset
from musicrec.models.base import IterationCallback, Model

SPARK_KINDS = ("als", "itemknn", "rp3beta")


def fit_on_spark(
    dataset: Dataset,
    config: TrainConfig,
    master: str | None = None,
    callback: IterationCallback | None = None,
    *,
    checkpoint_dir: str | None = None,
) -> Model:
    """Fit ``config.kind`` with Spark: ALS with MLlib, item-item with a sharded Gram product.

    ``checkpoint_dir`` is ALS's (required on a cluster master); item-item needs none.
    """
    if config.kind == "als":
        from musicrec.models.als import ALSModel
        from musicrec.models.spark_als import fit_spark

        factors = fit_spark(
            dataset, config, master=master, callback=callback, checkpoint_dir=checkpoint_dir
        )
        return ALSModel.from_factors(config, factors, dataset.train)
    from musicrec.models.spark_itemitem import fit_itemitem_spark

    return fit_itemitem_spark(dataset, config, master)
