"""Download, verify and unpack the public Last.fm datasets into a local cache."""

from __future__ import annotations

import hashlib
import os
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from musicrec.errors import DataError
from musicrec.fsutil import atomic_dir


@dataclass(frozen=True)
class Archive:
    """A published dataset archive: its URL, a file that marks the data folder, its md5."""

    url: str
    marker: str
    md5: str | None = None


DATASETS: dict[str, Archive] = {
    "lastfm-360k": Archive(
        "http://mtg.upf.edu/static/datasets/last.fm/lastfm-dataset-360K.tar.gz",
        "usersha1-artmbid-artname-plays.tsv",
    ),
    "lastfm-1k": Archive(
        "http://mtg.upf.edu/static/datasets/last.fm/lastfm-dataset-1K.tar.gz",
        "userid-timestamp-artid-artname-traid-traname.tsv",
    ),
    "hetrec-2k": Archive(
        "https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip",
        "user_artists.dat",
        md5="296d61afe4e8632b173fc2dd3be20ce2",
    ),
}
_CHUNK = 1 << 20


def _digests(path: Path) -> tuple[str, str]:
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            sha.update(block)
            md5.update(block)
    return sha.hexdigest(), md5.hexdigest()


def _download(url: str, part: Path, show_progress: bool) -> None:
    """Stream ``url`` into ``part``, resuming from its current size when the server allows."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with httpx.stream("GET", url, headers=headers, follow_redirects=True, timeout=60) as resp:
        if resp.status_code == 416 and have:  # already complete
            return
        if resp.status_code >= 400:
            raise DataError(f"{url}: HTTP {resp.status_code} {resp.reason_phrase}")
        resumed = resp.status_code == 206
        if not resumed:
            have = 0
        size = resp.headers.get("Content-Length")
        total = int(size) + have if size is not None else None
        with open(part, "ab" if resumed else "wb") as fh:
            if not show_progress:
                for chunk in resp.iter_bytes(_CHUNK):
                    fh.write(chunk)
                return
            from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

            columns = (*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn())
            with Progress(*columns) as progress:
                task = progress.add_task(Path(url).name, total=total, completed=have)
                for chunk in resp.iter_bytes(_CHUNK):
                    fh.write(chunk)
                    progress.update(task, advance=len(chunk))


def _extract(archive: Path, dest: Path) -> None:
    """Unpack a tar.gz (safe ``data`` filter) or a zip (members checked to stay in ``dest``)."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if archive.name.endswith(".zip"):
            root = dest.resolve()
            with zipfile.ZipFile(archive) as zf:
                for member in zf.namelist():
                    target = (root / member).resolve()
                    if not target.is_relative_to(root):
                        raise DataError(f"{archive}: member {member!r} escapes the target folder")
                zf.extractall(root)
        else:
            with tarfile.open(archive) as tf:
                tf.extractall(dest, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{archive}: cannot extract ({exc})") from exc


def fetch(
    name: str,
    cache_dir: Path,
    *,
    base_url: str | None = None,
    show_progress: bool = True,
    expected_sha256: str | None = None,
) -> Path:
    """Download (resumably), verify and extract dataset ``name``; return its data folder.

    ``base_url`` replaces the host and path of the official address, keeping the file name.
    The archive's sha256 is always written beside it as ``<archive>.sha256``.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    spec = DATASETS[name]
    filename = spec.url.rsplit("/", 1)[1]
    url = f"{base_url.rstrip('/')}/{filename}" if base_url else spec.url
    cache_dir = Path(cache_dir)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{cache_dir}: cannot create the cache directory ({exc.strerror})") from exc
    archive, part = cache_dir / filename, cache_dir / f"{filename}.part"
    if not archive.exists():
        try:
            _download(url, part, show_progress)
        except httpx.HTTPError as exc:
            raise DataError(f"{url}: download failed ({exc})") from exc
        sha256, md5 = _digests(part)
        wanted = [(expected_sha256, sha256, "sha256"), (spec.md5, md5, "md5")]
        for expected, actual, kind in wanted:
            if expected is not None and expected.lower() != actual:
                part.unlink(missing_ok=True)
                raise DataError(
                    f"{url}: {kind} mismatch (expected {expected}, got {actual}); "
                    "the partial download was removed, run again"
                )
        os.replace(part, archive)
        Path(f"{archive}.sha256").write_text(f"{sha256}  {filename}\n", encoding="utf-8")
    root = cache_dir / name
    if not root.is_dir():
        with atomic_dir(root) as tmp:
            _extract(archive, tmp)
    found = sorted(root.rglob(spec.marker))
    if not found:
        raise DataError(f"{archive}: no {spec.marker} inside; delete {root} and the archive")
    return found[0].parent
