"""Read a prepared dataset directory back as sparse matrices and vocabularies."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from musicrec import layout
from musicrec.errors import ArtifactError
from musicrec.fsutil import read_json


def to_csr(frame: pd.DataFrame, shape: tuple[int, int]) -> sp.csr_matrix:
    """users x items CSR of plays (float32) from a ``user_idx, item_idx, plays`` frame."""
    return sp.csr_matrix(
        (
            frame["plays"].to_numpy(dtype=np.float32),
            (frame["user_idx"].to_numpy(), frame["item_idx"].to_numpy()),
        ),
        shape=shape,
        dtype=np.float32,
    )


@dataclass
class Dataset:
    """A prepared dataset: train/[valid/]test interactions plus vocabularies, read lazily.

    A dataset prepared with a validation part (``valid.parquet``) is tuned on it; its test
    ranking excludes what a user has in train or validation (:attr:`seen`).
    """

    path: Path
    meta: dict[str, Any]
    stats: dict[str, Any]
    users: pd.DataFrame
    items: pd.DataFrame

    @classmethod
    def load(cls, path: str | Path) -> Dataset:
        path = Path(path)
        missing = [
            name
            for name in (layout.TRAIN, layout.TEST, layout.USERS, layout.ITEMS, layout.DATASET_META)
            if not (path / name).exists()
        ]
        if not path.is_dir():
            raise ArtifactError(f"{path}: not a dataset directory (run `musicrec data prepare`)")
        if missing:
            raise ArtifactError(f"{path}: not a prepared dataset, missing {', '.join(missing)}")
        meta = read_json(path / layout.DATASET_META)
        if meta.get("format_version") != layout.DATASET_FORMAT_VERSION:
            raise ArtifactError(f"{path}: unsupported dataset format {meta.get('format_version')}")
        stats = read_json(path / layout.STATS) if (path / layout.STATS).exists() else {}
        return cls(
            path=path,
            meta=meta,
            stats=stats,
            users=pd.read_parquet(path / layout.USERS),
            items=pd.read_parquet(path / layout.ITEMS),
        )

    @property
    def fingerprint(self) -> str:
        return str(self.meta["fingerprint"])

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.users), len(self.items)

    @cached_property
    def train_frame(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / layout.TRAIN)

    @cached_property
    def test_frame(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / layout.TEST)

    @property
    def has_valid(self) -> bool:
        """Whether the dataset was prepared with a validation part."""
        return (self.path / layout.VALID).exists()

    @cached_property
    def valid_frame(self) -> pd.DataFrame:
        """The validation part; an empty frame when the dataset has none."""
        if not self.has_valid:
            return self.train_frame.iloc[:0]
        return pd.read_parquet(self.path / layout.VALID)

    @cached_property
    def train(self) -> sp.csr_matrix:
        return to_csr(self.train_frame, self.shape)

    @cached_property
    def test(self) -> sp.csr_matrix:
        return to_csr(self.test_frame, self.shape)

    @cached_property
    def valid(self) -> sp.csr_matrix:
        """Validation plays (no stored entries when the dataset has no validation part)."""
        return to_csr(self.valid_frame, self.shape)

    def validation_parts(self) -> tuple[sp.csr_matrix, sp.csr_matrix] | None:
        """``(train, valid)`` to tune on when the dataset has a validation part, else ``None``.

        Tuning fits on train and scores on valid; test is not part of the answer.
        """
        return (self.train, self.valid) if self.has_valid else None

    @cached_property
    def seen(self) -> sp.csr_matrix:
        """Train plus validation: what a test ranking must not recommend back."""
        if not self.has_valid:
            return self.train
        return sp.csr_matrix(self.train + self.valid)

    @cached_property
    def tags(self) -> pd.DataFrame | None:
        tags_path = self.path / layout.TAGS
        return pd.read_parquet(tags_path) if tags_path.exists() else None
