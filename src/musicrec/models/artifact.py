"""The model artifact directory: a model's own files, the train matrix, vocabularies, manifest.

The manifest names the model ``kind``; the kind's class (:mod:`musicrec.models.kinds`) saves
and loads its files (factors as .npy, similarity matrices as .npz/.npy) and, for factor kinds,
its item index. Only the stage that writes a directory writes its manifest.

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
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from musicrec import __version__, layout
from musicrec.config import TrainConfig
from musicrec.data.dataset import Dataset
from musicrec.errors import ArtifactError, ConfigError
from musicrec.fsutil import atomic_dir, read_json, write_json_atomic
from musicrec.models.base import Model

REQUIRED = (
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
    dataset: Dataset,
    engine: str,
    params: dict[str, Any],
    model: Model | None = None,
    user_factors: np.ndarray | None = None,
    item_factors: np.ndarray | None = None,
    extra: dict[str, Any] | None = None,
    build_index: bool = False,
) -> Path:
    """Write a complete artifact directory atomically and return its path.

    Give a fitted ``model``, or ALS factors (``user_factors`` and ``item_factors``).
    ``extra`` goes into the manifest; ``build_index`` saves the model's approximate index too.
    """
    n_users, n_items = dataset.shape
    if model is None:
        if user_factors is None or item_factors is None:
            raise ArtifactError("save_artifact needs a model or both factor arrays")
        from musicrec.models.als import ALSModel, Factors

        config = TrainConfig.from_dict({k: v for k, v in params.items() if k in _ALS_KEYS})
        model = ALSModel.from_factors(
            config, Factors(user_factors, item_factors, []), dataset.train
        )
    problem = model.check_shape(n_users, n_items)
    if problem:
        raise ArtifactError(f"the model does not fit the dataset: {problem}")
    manifest: dict[str, Any] = {
        "format_version": layout.ARTIFACT_FORMAT_VERSION,
        "kind": model.kind,
        "engine": engine,
        "params": params,
        "metrics": {},
        "n_users": n_users,
        "n_items": n_items,
        **model.describe(),
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
        model.save(tmp)
        if build_index:
            model.build_index(tmp)
        sp.save_npz(tmp / layout.TRAIN_MATRIX, dataset.train, compressed=False)
        for name in (layout.USERS, layout.ITEMS, layout.TAGS):
            if (dataset.path / name).exists():
                shutil.copyfile(dataset.path / name, tmp / name)
        write_json_atomic(tmp / layout.MANIFEST, manifest)
    return Path(out_dir)


_ALS_KEYS = frozenset(
    ("kind", "factors", "regularization", "iterations", "alpha", "weighting", "bm25_k1")
) | {"bm25_b", "seed", "engine", "use_gpu"}


def manifest_config(manifest: dict[str, Any]) -> TrainConfig:
    """The training config recorded in a manifest (artifacts before kinds are ALS)."""
    params = dict(manifest.get("params", {}))
    kind = str(params.get("kind") or manifest.get("kind") or "als")
    params["kind"] = kind
    try:
        return TrainConfig.from_dict(
            {k: v for k, v in params.items() if k in TrainConfig.__dataclass_fields__}
        )
    except ConfigError as exc:
        raise ArtifactError(f"manifest parameters are not a valid {kind} config: {exc}") from exc


@dataclass
class ModelArtifact:
    """A loaded artifact: its model (files memory-mapped where the kind allows) and vocabularies."""

    path: Path
    manifest: dict[str, Any]
    model: Model
    train_matrix: sp.csr_matrix
    users: pd.DataFrame
    items: pd.DataFrame

    @classmethod
    def load(cls, path: str | Path, mmap: bool = True) -> ModelArtifact:
        """Read and check an artifact directory (files memory-mapped unless ``mmap`` is false)."""
        from musicrec.models.kinds import model_class

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
        config = manifest_config(manifest)
        try:
            kind_class = model_class(config.kind)
        except ConfigError as exc:
            raise ArtifactError(f"{path}: {exc}") from exc
        missing = [name for name in kind_class.files(config) if not (path / name).exists()]
        if missing:
            raise ArtifactError(
                f"{path}: incomplete {config.kind} artifact, missing {', '.join(missing)}"
            )
        train = sp.load_npz(path / layout.TRAIN_MATRIX).tocsr()
        users = pd.read_parquet(path / layout.USERS)
        items = pd.read_parquet(path / layout.ITEMS)
        if train.shape != (len(users), len(items)):
            raise ArtifactError(f"{path}: train matrix shape does not match the vocabularies")
        model = kind_class.load(path, config, train)
        if not mmap:
            model.in_memory()
        if model.check_shape(len(users), len(items)):
            raise ArtifactError(f"{path}: factor shapes do not match the vocabularies")
        return cls(path, manifest, model, train, users, items)

    @property
    def kind(self) -> str:
        return self.model.kind

    @property
    def user_factors(self) -> np.ndarray:
        return self._factors("user_factors")

    @property
    def item_factors(self) -> np.ndarray:
        return self._factors("item_factors")

    def _factors(self, name: str) -> np.ndarray:
        if not self.model.n_factors:
            raise ArtifactError(f"{self.path}: a {self.kind} model has no {name}")
        return getattr(self.model, name)  # type: ignore[no-any-return]

    @property
    def version(self) -> str:
        return str(self.manifest.get("version", "unknown"))

    @cached_property
    def tags(self) -> pd.DataFrame | None:
        tags_path = self.path / layout.TAGS
        return pd.read_parquet(tags_path) if tags_path.exists() else None
