"""Model kinds by name: the one place that maps ``kind`` to its class."""

from __future__ import annotations

from musicrec.config import KINDS, TrainConfig
from musicrec.errors import ConfigError
from musicrec.models.base import Model


def model_class(kind: str) -> type[Model]:
    from musicrec.models.als import ALSModel
    from musicrec.models.blend import BlendModel
    from musicrec.models.itemitem import EASEModel, ItemKNNModel, RP3BetaModel

    classes: dict[str, type[Model]] = {
        "als": ALSModel,
        "ease": EASEModel,
        "itemknn": ItemKNNModel,
        "rp3beta": RP3BetaModel,
        "blend": BlendModel,
    }
    if kind not in classes:
        raise ConfigError(f"unknown model kind {kind!r}; choose one of {', '.join(KINDS)}")
    return classes[kind]


def build(config: TrainConfig) -> Model:
    """An unfitted model of ``config.kind``."""
    return model_class(config.kind)(config)
