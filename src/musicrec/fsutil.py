"""Atomic writes: build into a temporary sibling, then rename over the target."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from musicrec.errors import ArtifactError


def check_replaceable(target: str | Path, marker: str | None = None) -> None:
    """Raise :class:`ArtifactError` unless ``target`` is absent or a directory we may replace.

    An existing ``target`` must be a directory; with ``marker`` it must also be empty or hold
    that file (an earlier output of the same kind), so an unrelated directory is never replaced.
    """
    target = Path(target)
    if not target.exists():
        return
    if not target.is_dir():
        raise ArtifactError(f"{target}: exists and is not a directory")
    if marker is not None and not (target / marker).exists() and any(target.iterdir()):
        raise ArtifactError(
            f"{target}: directory is not empty and has no {marker}; "
            "refusing to replace it, choose another output path"
        )


@contextmanager
def atomic_dir(target: str | Path, marker: str | None = None) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``target`` only if the block succeeds.

    On error the temporary directory is removed and an existing ``target`` is untouched.
    ``target`` is first checked with :func:`check_replaceable` (``marker`` passed through).
    """
    target = Path(target)
    check_replaceable(target, marker)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as exc:
        raise ArtifactError(f"{target}: cannot write into {target.parent} ({exc})") from exc
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary sibling and a rename (mode 0644)."""
    path = Path(path)
    if path.is_dir():
        raise ArtifactError(f"{path}: is a directory, expected a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; these files are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, payload: Any) -> None:
    """Write JSON to ``path`` via a temporary file and rename."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
