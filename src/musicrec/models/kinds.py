"""Model kinds by name: the class registered for each in :data:`musicrec.config.KIND_SPECS`.

A kind's class is imported from its registered ``module:Class`` path (like an entry point) the
first time it is needed, so a kind that holds other models (blend) builds them through here
without importing back up, and a plugin kind registers without editing this package.
"""

from __future__ import annotations

import importlib

from musicrec.config import KIND_SPECS, TrainConfig, kind_spec
from musicrec.errors import ConfigError
from musicrec.models.base import Model


def model_class(kind: str) -> type[Model]:
    """The class of model ``kind`` (one-line error for an unknown kind)."""
    module, _, name = kind_spec(kind).target.partition(":")
    found = getattr(importlib.import_module(module), name, None)
    if not (isinstance(found, type) and issubclass(found, Model)) or found.kind != kind:
        raise ConfigError(f"model kind {kind!r} is registered as {module}:{name}, not its model")
    return found


def build(config: TrainConfig) -> Model:
    """An unfitted model of ``config.kind``."""
    return model_class(config.kind)(config)


def config_name(config: TrainConfig) -> str:
    """A short run name: the kind and its leading parameters (``als-f64-i15``, ``ease-l500``)."""
    return model_class(config.kind).run_name(config)


def tunable_kinds() -> tuple[str, ...]:
    """The registered kinds with a search space (what ``musicrec tune`` may search)."""
    return tuple(kind for kind in KIND_SPECS if model_class(kind).searched)
