"""Model kinds by name (see :data:`musicrec.models.base.KIND_CLASSES`)."""

from musicrec.models.base import KIND_CLASSES, build, model_class

__all__ = ["KIND_CLASSES", "build", "model_class"]
