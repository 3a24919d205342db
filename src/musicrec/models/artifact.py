"""The model artifact directory: factors as .npy, matrices as .npz, vocabularies as parquet.

Nothing here unpickles: ``np.load(..., allow_pickle=False)`` and parquet only, so loading an
artifact from an untrusted registry cannot execute code.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from musicrec import __version__, layout
from musicrec.data.dataset import Dataset
from musicrec.errors import ArtifactError
from musicrec.fsutil import atomic_dir, read_json, write_json_atomic

REQUIRED = (
    layout.USER_FACTORS,
    layout.ITEM_FACTORS,
    layout.TRAIN_MATRIX,
    layout.USERS,
    layout.ITEMS,
    layout.MANIFEST,
)


def code_version() -> str:
    """Package version plus the git commit when running from a checkout."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{__version__}+{commit}" if commit else __version__


def save_artifact(
    out_dir: str | Path,
    *,
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    dataset: Dataset,
    engine: str,
    params: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a complete artifact directory atomically and return its path."""
    n_users, n_items = dataset.shape
    if user_factors.shape[0] != n_users or item_factors.shape[0] != n_items:
        raise ArtifactError(
            f"factor shapes {user_factors.shape}/{item_factors.shape} do not match the "
            f"dataset's {n_users} users x {n_items} items"
        )
    manifest: dict[str, Any] = {
        "format_version": layout.ARTIFACT_FORMAT_VERSION,
        "engine": engine,
        "params": params,
        "metrics": {},
        "n_users": n_users,
        "n_items": n_items,
        "factors": int(item_factors.shape[1]),
        "dataset": {
            "fingerprint": dataset.fingerprint,
            "source": dataset.meta.get("source"),
            "path": str(dataset.path),
            "kept": dataset.stats.get("kept", {}),
        },
        "code_version": code_version(),
        "python": platform.python_version(),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(extra or {}),
    }
    manifest["version"] = f"{manifest['created_at'][:10]}-{dataset.fingerprint[:8]}"
    with atomic_dir(out_dir, marker=layout.MANIFEST) as tmp:
        np.save(tmp / layout.USER_FACTORS, np.ascontiguousarray(user_factors, dtype=np.float32))
        np.save(tmp / layout.ITEM_FACTORS, np.ascontiguousarray(item_factors, dtype=np.float32))
        sp.save_npz(tmp / layout.TRAIN_MATRIX, dataset.train, compressed=False)
        for name in (layout.USERS, layout.ITEMS, layout.TAGS):
            if (dataset.path / name).exists():
                shutil.copyfile(dataset.path / name, tmp / name)
        write_json_atomic(tmp / layout.MANIFEST, manifest)
    return Path(out_dir)


@dataclass
class ModelArtifact:
    """A loaded artifact. Factors are memory-mapped read-only unless ``mmap=False``."""

    path: Path
    manifest: dict[str, Any]
    user_factors: np.ndarray
    item_factors: np.ndarray
    train_matrix: sp.csr_matrix
    users: pd.DataFrame
    items: pd.DataFrame

    @classmethod
    def load(cls, path: str | Path, mmap: bool = True) -> ModelArtifact:
        path = Path(path)
        if not path.is_dir():
            raise ArtifactError(f"{path}: no model artifact directory here (run `musicrec train`)")
        missing = [name for name in REQUIRED if not (path / name).exists()]
        if missing:
            raise ArtifactError(f"{path}: incomplete model artifact, missing {', '.join(missing)}")
        manifest = read_json(path / layout.MANIFEST)
        if manifest.get("format_version") != layout.ARTIFACT_FORMAT_VERSION:
            raise ArtifactError(
                f"{path}: unsupported artifact format {manifest.get('format_version')}"
            )
        mode: Literal["r"] | None = "r" if mmap else None
        user_factors = np.load(path / layout.USER_FACTORS, mmap_mode=mode, allow_pickle=False)
        item_factors = np.load(path / layout.ITEM_FACTORS, mmap_mode=mode, allow_pickle=False)
        train = sp.load_npz(path / layout.TRAIN_MATRIX).tocsr()
        users = pd.read_parquet(path / layout.USERS)
        items = pd.read_parquet(path / layout.ITEMS)
        if user_factors.shape[0] != len(users) or item_factors.shape[0] != len(items):
            raise ArtifactError(f"{path}: factor shapes do not match the vocabularies")
        return cls(path, manifest, user_factors, item_factors, train, users, items)

    @property
    def version(self) -> str:
        return str(self.manifest.get("version", "unknown"))

    @cached_property
    def tags(self) -> pd.DataFrame | None:
        tags_path = self.path / layout.TAGS
        return pd.read_parquet(tags_path) if tags_path.exists() else None

    def update_manifest(self, **changes: Any) -> None:
        """Merge ``changes`` into manifest.json (atomic rewrite), e.g. evaluation metrics."""
        self.manifest.update(changes)
        write_json_atomic(self.path / layout.MANIFEST, self.manifest)
