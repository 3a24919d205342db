"""Dataset downloads against a local HTTP server with Range support."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from musicrec.data import fetch as fetch_mod
from musicrec.data.fetch import fetch
from musicrec.errors import DataError


@dataclass
class Served:
    """Files the server hands out and the Range headers it saw."""

    root: Path
    url: str
    ranges: list[str | None] = field(default_factory=list)
    honour_range: bool = True


def _handler(served: Served) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = served.root / self.path.lstrip("/")
            rng = self.headers.get("Range")
            served.ranges.append(rng)
            if not path.is_file():
                self.send_error(404)
                return
            data = path.read_bytes()
            start = 0
            if rng and served.honour_range:
                start = int(rng.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self.send_error(416)
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            self.wfile.write(data[start:])

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def _tar(path: Path, folder: str, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tf:
        for name, payload in files.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Served]:
    root = tmp_path / "www"
    root.mkdir()
    rows = "".join(f"{i:040x}\t\tartist {i % 7}\t{i + 1}\n" for i in range(2000)).encode()
    _tar(root / "lastfm-dataset-360K.tar.gz", "lastfm-dataset-360K",
         {"usersha1-artmbid-artname-plays.tsv": rows, "README.txt": b"readme\n"})  # fmt: skip
    with zipfile.ZipFile(root / "hetrec2011-lastfm-2k.zip", "w") as zf:
        zf.writestr("user_artists.dat", "userID\tartistID\tweight\n2\t51\t13883\n")
        zf.writestr("artists.dat", "id\tname\turl\tpictureURL\n51\tDuran Duran\t\t\n")
    served = Served(root, "")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(served))
    served.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_download_and_extract_tar(server: Served, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    out = fetch("lastfm-360k", cache, base_url=server.url, show_progress=False)
    assert out == cache / "lastfm-360k" / "lastfm-dataset-360K"
    archive = server.root / "lastfm-dataset-360K.tar.gz"
    assert (cache / archive.name).read_bytes() == archive.read_bytes()
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert (cache / f"{archive.name}.sha256").read_text().split()[0] == digest
    assert (out / "usersha1-artmbid-artname-plays.tsv").stat().st_size > 0
    # A second call reuses the cache without touching the network.
    server.ranges.clear()
    assert fetch("lastfm-360k", cache, base_url=server.url, show_progress=True) == out
    assert server.ranges == []


def test_zip_with_progress_and_known_checksum(
    server: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = server.root / "hetrec2011-lastfm-2k.zip"
    spec = fetch_mod.DATASETS["hetrec-2k"]
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(
        fetch_mod.DATASETS, "hetrec-2k", fetch_mod.Archive(spec.url, spec.marker, md5)
    )
    out = fetch("hetrec-2k", tmp_path, base_url=server.url, show_progress=True)
    assert (out / "user_artists.dat").read_text().startswith("userID")


@pytest.mark.parametrize("honour_range", [True, False])
def test_resume_from_partial_file(server: Served, tmp_path: Path, honour_range: bool) -> None:
    server.honour_range = honour_range
    archive = server.root / "lastfm-dataset-360K.tar.gz"
    data = archive.read_bytes()
    (tmp_path / f"{archive.name}.part").write_bytes(data[:1000])
    sha = hashlib.sha256(data).hexdigest()
    fetch("lastfm-360k", tmp_path, base_url=server.url, show_progress=False, expected_sha256=sha)
    assert server.ranges == ["bytes=1000-"]
    assert (tmp_path / archive.name).read_bytes() == data
    assert not (tmp_path / f"{archive.name}.part").exists()


def test_checksum_mismatch_leaves_no_archive(server: Served, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="sha256 mismatch"):
        fetch("lastfm-360k", tmp_path, base_url=server.url, show_progress=False,
              expected_sha256="0" * 64)  # fmt: skip
    assert not (tmp_path / "lastfm-dataset-360K.tar.gz").exists()
    assert not (tmp_path / "lastfm-360k").exists()


def test_http_error_and_unknown_name(server: Served, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="HTTP 404"):
        fetch("lastfm-1k", tmp_path, base_url=server.url, show_progress=False)
    assert not (tmp_path / "lastfm-dataset-1K.tar.gz").exists()
    with pytest.raises(DataError, match="unknown dataset"):
        fetch("movielens", tmp_path, show_progress=False)


def test_zip_path_traversal_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../evil.txt", "x")
    with pytest.raises(DataError, match="escapes"):
        fetch_mod._extract(bad, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()
