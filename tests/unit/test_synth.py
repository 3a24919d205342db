"""Synthetic Last.fm-360K generator: format, determinism and planted structure."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from musicrec.data.synth import PLAYS_FILE, SEED_GENRES, TAGS_FILE, synthesize

MOOD_ARTISTS = str.split(
    "adele|sam smith|bon iver|radiohead|coldplay|damien rice|the national|norah jones|"
    "john legend|ed sheeran|michael bublé|frank sinatra|etta james|al green|pharrell williams|"
    "the beatles|queen|bruno mars|abba|jackson 5|metallica|slayer|rage against the machine|"
    "slipknot|system of a down|pantera|eminem|kanye west|imagine dragons|survivor|linkin park|"
    "foo fighters|daft punk|david guetta|calvin harris|lady gaga|rihanna|beyoncé|massive attack|"
    "zero 7|air|bonobo|the xx|portishead|burial|moby|led zeppelin|the rolling stones|ac/dc|"
    "nirvana|pink floyd|ludwig van beethoven|wolfgang amadeus mozart|johann sebastian bach|"
    "frédéric chopin|antonio vivaldi|claude debussy|miles davis|john coltrane|bill evans|"
    "thelonious monk|duke ellington|herbie hancock|brian eno|max richter|ólafur arnalds|"
    "hans zimmer|explosions in the sky|sigur rós",
    "|",
)
MOOD_TAGS: dict[tuple[str, ...], set[str]] = {
    ("sad", "melancholy", "melancholic", "heartbreak", "breakup"): {"heartbreak"},
    ("love", "romantic", "love songs"): {"love"},
    ("happy", "feel good", "fun", "upbeat"): {"feelgood"},
    ("metal", "thrash metal", "heavy metal", "aggressive", "hardcore"): {"metal"},
    ("motivation", "workout", "energetic", "hip-hop", "rap"): {"hip-hop", "anthems"},
    ("dance", "party", "electronic", "house", "club"): {"electronic", "pop"},
    ("chillout", "chill", "relax", "mellow", "downtempo"): {"chill", "latenight"},
    ("night", "trip-hop", "atmospheric", "dark"): {"latenight"},
    ("rock", "classic rock", "hard rock", "alternative rock"): {
        "classic rock",
        "alternative",
        "anthems",
    },
    ("classical", "piano", "baroque", "orchestral", "composer"): {"classical"},
    ("jazz", "bebop", "smooth jazz", "fusion", "swing"): {"jazz"},
    ("ambient", "instrumental", "post-rock", "soundtrack", "study"): {"focus"},
}
GENRE_OF = {a.casefold(): g.name for g in SEED_GENRES for a in g.artists}


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", header=None, quoting=3, keep_default_na=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, pd.DataFrame]:
    out = tmp_path_factory.mktemp("synth")
    res = synthesize(out, n_users=1500, n_artists=1200, seed=3)
    lines = res.plays_path.read_text(encoding="utf-8").splitlines()
    assert all(line.count("\t") == 3 for line in lines)
    assert not lines[0].startswith(("user", "#"))
    assert res.plays_path == out / PLAYS_FILE and res.tags_path == out / TAGS_FILE
    plays, tags = _read(res.plays_path), _read(res.tags_path)
    assert len(plays) == res.n_rows and len(tags) == res.n_tag_rows
    return plays, tags


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = synthesize(tmp_path / "a", n_users=300, n_artists=400, seed=7)
    b = synthesize(tmp_path / "b", n_users=300, n_artists=400, seed=7)
    c = synthesize(tmp_path / "c", n_users=300, n_artists=400, seed=8)
    assert a.plays_path.read_bytes() == b.plays_path.read_bytes()
    assert a.tags_path.read_bytes() == b.tags_path.read_bytes()
    assert a.plays_path.read_bytes() != c.plays_path.read_bytes()
    assert not list(tmp_path.glob("*/.*"))  # no temporary files left behind


def test_plays_file_has_the_360k_format(data: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    plays, _ = data
    assert plays.shape[1] == 4
    assert plays[0].str.fullmatch(r"[0-9a-f]{40}").all()
    assert plays[0].nunique() == 1500
    mbid = plays[1][plays[1] != ""]
    uuid = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    assert mbid.str.fullmatch(uuid).all()
    assert 0.02 < (plays[1] == "").mean() < 0.3
    assert plays[3].dtype.kind == "i" and (plays[3] > 0).all()
    assert not plays.duplicated([0, 2]).any()
    per_user = plays.groupby(0).size()
    assert 30 < per_user.mean() < 65 and per_user.max() <= 600


def test_every_seed_artist_and_mood_tag_is_present(data: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    plays, tags = data
    names = set(plays[2].str.casefold())
    assert set(MOOD_ARTISTS) <= names
    tags = tags.assign(artist=tags[0].str.casefold())
    for group, genres in MOOD_TAGS.items():
        for tag in group:
            carriers = tags.loc[tags[1] == tag, "artist"].map(GENRE_OF).dropna()
            assert len(carriers) > 0, tag
            assert carriers.isin(genres).mean() >= 0.6, tag
    # Seed artists carry the tags of their own genre.
    metallica = set(tags.loc[tags["artist"] == "metallica", 1])
    assert {"metal", "thrash metal", "heavy metal"} <= metallica
    assert "jazz" in set(tags.loc[tags["artist"] == "miles davis", 1])


def test_planted_genre_structure(data: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    plays, _ = data
    genre = plays[2].str.casefold().map(GENRE_OF)
    metal_names = {a.casefold() for a in SEED_GENRES[0].artists} - {"metallica"}
    is_metal = plays[2].str.casefold().isin(metal_names)
    share = is_metal.groupby(plays[0]).mean()
    fans = plays.loc[plays[2] == "Metallica"].sort_values(3).tail(30)[0]
    assert share[fans].mean() > 3 * share.mean()
    jazz_fans = plays.loc[plays[2] == "Miles Davis"][0]
    classic = genre.eq("classical").groupby(plays[0]).mean()
    assert classic[jazz_fans].mean() < share[fans].mean()
    top = plays.groupby(2)[0].size().sort_values(ascending=False).head(40).index
    assert sum(t.casefold() in GENRE_OF for t in top) >= 30  # real names head the popularity


@pytest.mark.parametrize(("users", "artists"), [(1, 30), (20, 100), (500, 500)])
def test_small_sizes(tmp_path: Path, users: int, artists: int) -> None:
    res = synthesize(tmp_path, n_users=users, n_artists=artists, seed=1)
    plays = _read(res.plays_path)
    assert plays[0].nunique() == users
    assert plays[2].nunique() <= artists
    assert plays.groupby(0).size().max() <= max(3, artists // 2)
    if artists >= 500 and users >= 500:
        assert set(MOOD_ARTISTS) <= set(plays[2].str.casefold())


def test_rejects_impossible_sizes(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        synthesize(tmp_path, n_users=0)
