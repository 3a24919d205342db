"""Stages over in-memory objects, observed (never wrapped) by tracking."""

from musicrec.pipeline.observer import NullObserver, StageObserver, observing

__all__ = ["NullObserver", "StageObserver", "observing"]
