"""Loaders: each reads one raw format and returns the same normalized :class:`RawInteractions`.

Rows are factorized as early as possible (Arrow dictionary encoding), so a 17.5M-row file
becomes a few integer arrays plus small vocabularies; no Python loop touches rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from musicrec.data.identity import distinct_names, normalize_tags
from musicrec.errors import DataError
from musicrec.text import normalize_name

SOURCES = ("lastfm360k", "lastfm1k", "hetrec2k", "csv")
LASTFM360K_FILE = "usersha1-artmbid-artname-plays.tsv"
LASTFM360K_TAGS = "artist-tags.tsv"
LASTFM1K_FILE = "userid-timestamp-artid-artname-traid-traname.tsv"
READ_BLOCK_BYTES = 1 << 25  # Arrow parses the file in blocks of this size, in parallel


@dataclass
class RawInteractions:
    """One row per (user, artist) listening record, possibly with duplicate pairs.

    ``user_codes``/``item_codes`` index into ``user_ids``/``items``; ``items`` has columns
    ``artist_key`` (normalized name, the identity), ``artist_name`` (display) and ``mbid``.
    """

    user_codes: np.ndarray
    item_codes: np.ndarray
    plays: np.ndarray
    user_ids: np.ndarray
    items: pd.DataFrame
    timestamps: np.ndarray | None = None
    tags: pd.DataFrame | None = None  # artist_key, tag, weight
    rows_read: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    missing_artist: int = 0


def load(source: str, path: str | Path, merge_names: bool = True) -> RawInteractions:
    """Read ``path`` in the format named by ``source`` (one of :data:`SOURCES`).

    ``merge_names=False`` keeps artists the source tells apart by id (``hetrec2k``, ``csv``)
    apart even when their names normalize alike (:func:`musicrec.data.identity.distinct_names`).
    """
    loaders: dict[str, Callable[[Path], RawInteractions]] = {
        "lastfm360k": load_lastfm360k,
        "lastfm1k": load_lastfm1k,
        "hetrec2k": partial(load_hetrec2k, merge_names=merge_names),
        "csv": partial(load_table, merge_names=merge_names),
    }
    if source not in loaders:
        raise DataError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    return loaders[source](path)


# --------------------------------------------------------------------------- helpers


def _resolve_file(path: Path, name: str) -> Path:
    if path.is_dir():
        candidates = sorted(path.rglob(name))
        if not candidates:
            raise DataError(f"{path}: directory has no {name}")
        return candidates[0]
    return path


def _read_tsv(path: Path, n_cols: int, header: bool = False) -> tuple[pa.Table, int, int]:
    """Read a quote-free TSV as binary columns; returns (table, rows_read, malformed_rows)."""
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    malformed = 0

    def on_invalid(_row: object) -> str:
        nonlocal malformed
        malformed += 1
        return "skip"

    names = [f"c{i}" for i in range(n_cols)]
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(
                column_names=names, skip_rows=1 if header else 0, block_size=READ_BLOCK_BYTES
            ),
            parse_options=pacsv.ParseOptions(
                delimiter="\t", quote_char=False, invalid_row_handler=on_invalid
            ),
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.binary())),
        )
    except pa.ArrowInvalid as exc:
        raise DataError(f"{path}: cannot parse as {n_cols}-column TSV ({exc})") from exc
    read = table.num_rows + malformed
    if read == 0:
        raise DataError(f"{path}: file has no data rows")
    if table.num_rows == 0:
        raise DataError(
            f"{path}: every line is malformed (expected {n_cols} tab-separated columns)"
        )
    return table, read, malformed


@dataclass(frozen=True)
class _Encoded:
    """A column as per-row dictionary codes plus its decoded distinct values.

    Validation and normalization run once per distinct value (a few hundred thousand), not
    once per row (tens of millions). ``None`` marks a value that is not valid UTF-8.
    """

    codes: np.ndarray
    values: list[str | None]

    def mask(self, predicate: Callable[[str | None], bool]) -> np.ndarray:
        """Per-row boolean of ``predicate`` evaluated on each distinct value."""
        per_value = np.fromiter((predicate(v) for v in self.values), bool, len(self.values))
        return per_value[self.codes]


def _decode(value: bytes | None) -> str | None:
    if value is None:
        return ""
    try:
        return value.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None


def _encode(column: pa.ChunkedArray) -> _Encoded:
    encoded = pc.dictionary_encode(column).unify_dictionaries()
    if encoded.num_chunks == 0:
        return _Encoded(np.zeros(0, dtype=np.int32), [])
    codes = np.concatenate(
        [chunk.indices.to_numpy(zero_copy_only=False) for chunk in encoded.chunks]
    ).astype(np.int32)
    values = [_decode(v) for v in encoded.chunk(0).dictionary.to_pylist()]
    return _Encoded(codes, values)


def _compact(codes: np.ndarray, n_values: int) -> tuple[np.ndarray, np.ndarray]:
    """Renumber the codes that occur to 0..m-1; returns (new codes, old code of each new one)."""
    used = np.zeros(n_values, dtype=bool)
    used[codes] = True
    remap = np.cumsum(used, dtype=np.int64) - 1
    return remap[codes].astype(np.int32), np.flatnonzero(used)


def _to_number(value: str | None) -> float:
    try:
        return float(value) if value else np.nan
    except ValueError:
        return np.nan


def _items_from_names(
    name_codes: np.ndarray, names: list[str], mbids: list[str | None] | None = None
) -> tuple[np.ndarray, pd.DataFrame]:
    """Map raw artist names to codes over normalized keys; display name = most common spelling.

    ``name_codes`` index ``names`` per row; ``mbids`` (optional) is the MusicBrainz id per row.
    """
    keys = pd.Series([normalize_name(n) for n in names], dtype=object)
    key_codes, key_uniques = pd.factorize(keys)
    item_codes = key_codes[name_codes].astype(np.int32)
    spelling_counts = np.bincount(name_codes, minlength=len(names))
    order = np.lexsort((-spelling_counts, key_codes))
    first = order[np.r_[True, key_codes[order][1:] != key_codes[order][:-1]]]
    display = np.empty(len(key_uniques), dtype=object)
    display[key_codes[first]] = [" ".join(names[i].split()) for i in first]
    items = pd.DataFrame(
        {"artist_key": np.asarray(key_uniques, dtype=object), "artist_name": display}
    )
    items["mbid"] = None if mbids is None else mbids
    return item_codes, items


def _assemble(
    *,
    user: _Encoded,
    name: _Encoded,
    plays: np.ndarray,
    rows_read: int,
    rejected: Counter[str],
    mbid: _Encoded | None = None,
    timestamps: np.ndarray | None = None,
    invalid_plays_reason: str = "invalid_plays",
) -> RawInteractions:
    """Shared tail of the TSV loaders: validate rows, drop bad ones, factorize."""
    valid = np.ones(len(user.codes), dtype=bool)
    for column in (user, name, mbid):
        if column is not None:
            ok = column.mask(lambda v: v is not None)
            rejected["invalid_utf8"] += int((valid & ~ok).sum())
            valid &= ok
    no_user = valid & user.mask(lambda v: not v)
    rejected["missing_user"] += int(no_user.sum())
    valid &= ~no_user
    bad_plays = valid & ~(np.isfinite(plays) & (plays > 0))
    rejected[invalid_plays_reason] += int(bad_plays.sum())
    valid &= ~bad_plays
    no_name = valid & name.mask(lambda v: not v)
    keep = np.flatnonzero(valid & ~no_name)
    if len(keep) == 0:
        raise DataError("no valid rows: every row was rejected (see the counts by reason)")
    user_codes, user_used = _compact(user.codes[keep], len(user.values))
    name_codes, name_used = _compact(name.codes[keep], len(name.values))
    names = [str(name.values[i]) for i in name_used]
    item_codes, items = _items_from_names(name_codes, names)
    if mbid is not None:
        row_mbid = mbid.codes[keep]
        has = np.fromiter((bool(v) for v in mbid.values), bool, len(mbid.values))[row_mbid]
        item_mbid = np.full(len(items), -1, dtype=np.int64)
        item_mbid[item_codes[has]] = row_mbid[has]
        items["mbid"] = [mbid.values[i] if i >= 0 else None for i in item_mbid]
    return RawInteractions(
        user_codes=user_codes,
        item_codes=item_codes,
        plays=plays[keep],
        user_ids=np.asarray([user.values[i] for i in user_used], dtype=object),
        items=items,
        timestamps=None if timestamps is None else timestamps[keep],
        rows_read=rows_read,
        rejected=rejected,
        missing_artist=int(no_name.sum()),
    )


def _numbers(column: pa.ChunkedArray) -> np.ndarray:
    """Parse a numeric text column via its distinct values; unparseable -> NaN."""
    encoded = _encode(column)
    values = np.fromiter((_to_number(v) for v in encoded.values), np.float64, len(encoded.values))
    return values[encoded.codes]


def _timestamps(column: pa.ChunkedArray) -> np.ndarray:
    """ISO-8601 UTC timestamps to epoch seconds; unparseable -> -1."""
    parts = []
    for chunk in column.chunks:
        try:
            text = pc.cast(chunk, pa.string())
        except pa.ArrowInvalid:
            text = pa.array([_decode(v) for v in chunk.to_pylist()], pa.string())
        parsed = pc.strptime(text, format="%Y-%m-%dT%H:%M:%SZ", unit="s", error_is_null=True)
        seconds = pc.cast(parsed, pa.int64())
        parts.append(pc.fill_null(seconds, -1).to_numpy(zero_copy_only=False))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


# --------------------------------------------------------------------------- loaders


def load_lastfm360k(path: Path) -> RawInteractions:
    """Last.fm-360K ``usersha1-artmbid-artname-plays.tsv`` (+ optional ``artist-tags.tsv``)."""
    path = _resolve_file(path, LASTFM360K_FILE)
    table, read, malformed = _read_tsv(path, 4)
    user, mbid, name = _encode(table["c0"]), _encode(table["c1"]), _encode(table["c2"])
    plays = _numbers(table["c3"])
    del table  # the distinct values and codes are all that is needed from here on
    raw = _assemble(
        user=user,
        name=name,
        mbid=mbid,
        plays=plays,
        rows_read=read,
        rejected=Counter(malformed_line=malformed),
    )
    tags_path = path.with_name(LASTFM360K_TAGS)
    if tags_path.exists():
        tags = pd.read_csv(
            tags_path,
            sep="\t",
            header=None,
            names=["artist", "tag", "weight"],
            quoting=3,
            encoding_errors="replace",
            on_bad_lines="skip",
        )
        raw.tags = normalize_tags(tags["artist"], tags["tag"], tags["weight"])
    return raw


def load_lastfm1k(path: Path) -> RawInteractions:
    """Last.fm-1K listening events; plays = events per (user, artist), timestamp = last listen."""
    path = _resolve_file(path, LASTFM1K_FILE)
    table, read, malformed = _read_tsv(path, 6)
    seconds = _timestamps(table["c1"])
    user, mbid, name = _encode(table["c0"]), _encode(table["c2"]), _encode(table["c3"])
    del table
    return _assemble(
        user=user,
        name=name,
        mbid=mbid,
        plays=np.where(seconds < 0, np.nan, 1.0),
        rows_read=read,
        rejected=Counter(malformed_line=malformed),
        timestamps=seconds,
        invalid_plays_reason="invalid_timestamp",
    )


def load_hetrec2k(path: Path, merge_names: bool = True) -> RawInteractions:
    """HetRec 2011 Last.fm-2K directory: user_artists.dat, artists.dat and the tag files."""
    if not path.is_dir():
        raise DataError(f"{path}: expected the hetrec2011-lastfm-2k directory")
    root = _resolve_file(path, "user_artists.dat").parent
    for name in ("user_artists.dat", "artists.dat"):
        if not (root / name).exists():
            raise DataError(f"{root}: missing {name}")
    ua = _read_table(root / "user_artists.dat", ["userID", "artistID", "weight"])
    artists = _read_table(root / "artists.dat", ["id", "name"])
    names = pd.Series(artists["name"].astype(str).values, index=artists["id"].values)
    names = names if merge_names else distinct_names(names, normalize_name)
    plays = pd.to_numeric(ua["weight"], errors="coerce")
    frame = pd.DataFrame(
        {
            "user": ua["userID"].astype(str),
            "artist": ua["artistID"].map(names),
            "plays": plays,
        }
    )
    raw = _from_frame(frame, rows_read=len(ua))
    tagged, tag_names = root / "user_taggedartists.dat", root / "tags.dat"
    if tagged.exists() and tag_names.exists():
        ut = _read_table(tagged, ["artistID", "tagID"])
        tg = _read_table(tag_names, ["tagID", "tagValue"], encoding="latin-1")
        counts = ut.groupby(["artistID", "tagID"]).size().rename("weight").reset_index()
        counts["artist"] = counts["artistID"].map(names)
        counts["tag"] = counts["tagID"].map(pd.Series(tg["tagValue"].values, index=tg["tagID"]))
        counts = counts.dropna(subset=["artist", "tag"])
        raw.tags = normalize_tags(counts["artist"], counts["tag"], counts["weight"])
    return raw


def load_table(path: Path, merge_names: bool = True) -> RawInteractions:
    """Generic CSV or Parquet: ``user_id,artist_id,plays[,artist_name,timestamp]``."""
    if path.is_dir():
        raise DataError(f"{path}: expected a .csv or .parquet file, got a directory")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(
                path,
                dtype={"user_id": str, "artist_id": str},
                encoding_errors="replace",
                on_bad_lines="skip",
            )
    except (ValueError, OSError, pa.ArrowException) as exc:
        raise DataError(f"{path}: cannot read table ({exc})") from exc
    missing = {"user_id", "artist_id", "plays"} - set(frame.columns)
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(sorted(missing))}; "
            "expected a header with user_id,artist_id,plays"
        )
    if frame.empty:
        raise DataError(f"{path}: file has no data rows")
    names = frame["artist_name"] if "artist_name" in frame else frame["artist_id"]
    names = names.where(names.notna(), frame["artist_id"]).astype(str)
    if not merge_names:
        names = distinct_names(names.set_axis(frame["artist_id"].astype(str)), normalize_name)
    out = pd.DataFrame(
        {
            "user": frame["user_id"].astype(str),
            "artist": names.to_numpy(),
            "plays": pd.to_numeric(frame["plays"], errors="coerce"),
        }
    )
    if "timestamp" in frame:
        ts = frame["timestamp"]
        parsed = (
            pd.to_datetime(ts, unit="s", errors="coerce", utc=True)
            if pd.api.types.is_numeric_dtype(ts)
            else pd.to_datetime(ts, errors="coerce", utc=True)
        )
        out["timestamp"] = _epoch_seconds(parsed)
    return _from_frame(out, rows_read=len(frame))


def _epoch_seconds(ts: pd.Series) -> np.ndarray:
    """Seconds since the epoch, whatever the datetime unit; NaT becomes 0 (rows are rejected)."""
    delta = (ts - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return delta.fillna(0).to_numpy(dtype=np.int64)


def _read_table(path: Path, columns: list[str], encoding: str = "utf-8") -> pd.DataFrame:
    try:
        frame = pd.read_csv(
            path,
            sep="\t",
            encoding=encoding,
            encoding_errors="replace",
            quoting=3,
            on_bad_lines="skip",
        )
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    missing = set(columns) - set(frame.columns)
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    return frame


def _from_frame(frame: pd.DataFrame, rows_read: int) -> RawInteractions:
    """Small tables (HetRec, generic CSV) go through pandas; same validation as the TSV path."""
    rejected: Counter[str] = Counter()
    bad_plays = ~(frame["plays"].notna() & (frame["plays"] > 0))
    rejected["invalid_plays"] = int(bad_plays.sum())
    frame = frame[~bad_plays]
    artist = frame["artist"].astype(object)
    has_name = artist.notna() & (artist.astype(str).str.strip().str.len() > 0)
    missing_artist = int((~has_name).sum())
    frame = frame[has_name]
    if frame.empty:
        raise DataError("no valid rows: every row was rejected (see the counts by reason)")
    user_codes, user_ids = pd.factorize(frame["user"])
    name_codes, names = pd.factorize(frame["artist"].astype(str))
    item_codes, items = _items_from_names(name_codes, list(names))
    ts = frame["timestamp"].to_numpy(dtype=np.int64) if "timestamp" in frame else None
    return RawInteractions(
        user_codes=user_codes.astype(np.int32),
        item_codes=item_codes,
        plays=frame["plays"].to_numpy(dtype=np.float64),
        user_ids=np.asarray(user_ids, dtype=object),
        items=items,
        timestamps=ts,
        rows_read=rows_read,
        rejected=rejected,
        missing_artist=missing_artist,
    )
