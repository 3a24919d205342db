"""Loaders: every valid line kept, every invalid one rejected and counted, never a crash."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from musicrec.data.sources import RawInteractions, load
from musicrec.errors import DataError
from musicrec.text import fold_accents, normalize_name

SHA_A = "a" * 40
SHA_B = "b" * 40


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_normalize_name_collapses_case_and_whitespace() -> None:
    assert normalize_name("  Radiohead ") == normalize_name("radiohead")
    assert normalize_name("The   Beatles") == "the beatles"
    assert fold_accents("Björk") == fold_accents("bjork") == "bjork"


def test_360k_keeps_valid_lines_and_counts_rejects(tmp_path: Path) -> None:
    lines = [
        f"{SHA_A}\tmbid-1\tRadiohead\t120".encode(),
        f"{SHA_A}\t\tradiohead \t30".encode(),  # same artist after normalization, no mbid
        f'{SHA_A}\t\tThe "Band"\t5'.encode(),  # quotes are literal in this format
        SHA_B.encode() + b"\tmbid-2\tBj\xc3\xb6rk\t7",
        f"{SHA_B}\t\t\t9".encode(),  # missing artist name
        SHA_B.encode() + b"\t\tbad bytes \xff\xfe\t3",  # invalid UTF-8
        f"{SHA_B}\t\ttoo\tmany\tcolumns".encode(),  # malformed
        f"{SHA_B}\t\tNaN plays\tlots".encode(),  # unparseable plays
        f"{SHA_B}\t\tZero\t0".encode(),  # non-positive plays
    ]
    path = write_bytes(tmp_path / "usersha1-artmbid-artname-plays.tsv", b"\n".join(lines) + b"\n")
    raw = load("lastfm360k", path)
    assert raw.rows_read == len(lines)
    assert raw.rejected["malformed_line"] == 1
    assert raw.rejected["invalid_utf8"] == 1
    assert raw.rejected["invalid_plays"] == 2
    assert raw.missing_artist == 1
    keys = list(raw.items["artist_key"])
    assert sorted(keys) == ["björk", "radiohead", 'the "band"']
    assert len(raw.plays) == 4
    radiohead = keys.index("radiohead")
    assert raw.items.loc[radiohead, "mbid"] == "mbid-1"
    assert raw.items.loc[radiohead, "artist_name"] == "Radiohead"
    assert np.isclose(raw.plays[raw.item_codes == radiohead].sum(), 150)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"only one column\nanother\n", "malformed"),
        (b"a\tb\n", "malformed"),
    ],
)
def test_360k_unusable_files_raise_one_line_errors(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = write_bytes(tmp_path / "plays.tsv", content)
    with pytest.raises(DataError, match=message) as info:
        load("lastfm360k", path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_source_and_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown source"):
        load("spotify", tmp_path)
    with pytest.raises(DataError, match="no such file"):
        load("lastfm360k", tmp_path / "nope.tsv")
    with pytest.raises(DataError, match="no usersha1"):
        load("lastfm360k", tmp_path)


def test_1k_counts_events_and_keeps_last_listen(tmp_path: Path) -> None:
    rows = [
        "user_000001\t2009-05-04T23:08:57Z\tm1\tDeep Dish\tt1\tFuck Me Im Famous",
        "user_000001\t2009-05-05T23:08:57Z\tm1\tDeep Dish\tt2\tOther",
        "user_000001\tnot-a-time\tm1\tDeep Dish\tt2\tOther",
        "user_000002\t2009-05-04T13:54:10Z\t\tUnderworld\t\tBoy, Boy, Boy",
    ]
    path = tmp_path / "userid-timestamp-artid-artname-traid-traname.tsv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    raw = load("lastfm1k", path)
    assert raw.rejected["invalid_timestamp"] == 1
    assert raw.timestamps is not None
    deep = list(raw.items["artist_key"]).index("deep dish")
    mask = raw.item_codes == deep
    assert raw.plays[mask].sum() == 2
    assert raw.timestamps[mask].max() == pd.Timestamp("2009-05-05T23:08:57Z").timestamp()


def test_csv_and_parquet_tables(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2"],
            "artist_id": ["a1", "a2", "a1"],
            "plays": [3, 4, 5],
            "artist_name": ["Air", "Moby", "Air"],
        }
    )
    frame.to_csv(tmp_path / "plays.csv", index=False)
    frame.to_parquet(tmp_path / "plays.parquet")
    for name in ("plays.csv", "plays.parquet"):
        raw = load("csv", tmp_path / name)
        assert sorted(raw.items["artist_name"]) == ["Air", "Moby"]
        assert raw.plays.sum() == 12
    frame.drop(columns="plays").to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match="missing column"):
        load("csv", tmp_path / "bad.csv")


def test_hetrec_real_data_with_tags(lastfm2k_dir: Path) -> None:
    raw = load("hetrec2k", lastfm2k_dir)
    assert raw.rows_read == 92834
    assert len(raw.user_ids) == 1892
    assert raw.tags is not None
    metallica = raw.tags[raw.tags["artist_key"] == "metallica"]
    assert "metal" in set(metallica.nlargest(5, "weight")["tag"]) or "thrash metal" in set(
        metallica.nlargest(5, "weight")["tag"]
    )


def test_hetrec_wrong_layout(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="user_artists.dat"):
        load("hetrec2k", tmp_path)


def test_many_read_blocks_give_the_same_result(
    synth_raw: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dictionaries are unified across Arrow's parse blocks."""
    whole = load("lastfm360k", synth_raw)
    monkeypatch.setattr("musicrec.data.sources.READ_BLOCK_BYTES", 1 << 14)
    blocks = load("lastfm360k", synth_raw)
    assert blocks.rows_read == whole.rows_read

    def pairs(raw: RawInteractions) -> set[tuple[str, str]]:
        users = raw.user_ids[raw.user_codes]
        artists = raw.items.artist_key.to_numpy()[raw.item_codes]
        return set(zip(users, artists, strict=True))

    assert pairs(whole) == pairs(blocks)
