"""Synthetic Last.fm-360K data with planted genre structure, for demos and tests.

Writes ``usersha1-artmbid-artname-plays.tsv`` (the exact 360K format) and its tags side-file
``artist-tags.tsv``. Each genre is headed by real, well-known artists and filled with
generated names; users mix one to three genres. Everything is vectorized and seeded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from musicrec.errors import DataError

PLAYS_FILE = "usersha1-artmbid-artname-plays.tsv"
TAGS_FILE = "artist-tags.tsv"


@dataclass(frozen=True)
class Genre:
    """A planted genre: listener share, tags, real head artists and a related genre."""

    name: str
    weight: float
    tags: tuple[str, ...]
    artists: tuple[str, ...]
    neighbour: str


def _g(name: str, weight: float, tags: str, artists: str, neighbour: str) -> Genre:
    return Genre(name, weight, tuple(tags.split("|")), tuple(artists.split("|")), neighbour)


SEED_GENRES: tuple[Genre, ...] = (
    _g("metal", 1.0, "metal|heavy metal|thrash metal|aggressive|hardcore",
       "Metallica|Slayer|Rage Against the Machine|Slipknot|System of a Down|Pantera|Iron Maiden|"
       "Megadeth|Black Sabbath|Judas Priest|Motörhead|Sepultura|Lamb of God|Korn|Tool|Mastodon|"
       "Anthrax|Children of Bodom|In Flames|Opeth", "anthems"),
    _g("classic rock", 1.3, "rock|classic rock|hard rock|70s",
       "Led Zeppelin|The Rolling Stones|AC/DC|Queen|Pink Floyd|The Who|Deep Purple|The Doors|"
       "Jimi Hendrix|Aerosmith|Guns N' Roses|Lynyrd Skynyrd|Eagles|Creedence Clearwater Revival|"
       "Dire Straits|Fleetwood Mac|Van Halen|Cream", "feelgood"),
    _g("alternative", 1.3, "alternative rock|alternative|indie|grunge|rock",
       "Nirvana|Pearl Jam|Red Hot Chili Peppers|Muse|The White Stripes|Arctic Monkeys|The Strokes|"
       "Arcade Fire|Pixies|Soundgarden|The Smashing Pumpkins|Alice in Chains|Franz Ferdinand|"
       "Interpol|Yeah Yeah Yeahs|Modest Mouse|The Shins|Beck", "heartbreak"),
    _g("anthems", 1.0, "energetic|motivation|workout|rock|alternative rock",
       "Imagine Dragons|Survivor|Linkin Park|Foo Fighters|Bon Jovi|Europe|Thirty Seconds to Mars|"
       "The Killers|Kings of Leon|Papa Roach|Three Days Grace|Fall Out Boy|My Chemical Romance|"
       "Paramore|Green Day|Blink-182|The Offspring|Rise Against", "hip-hop"),
    _g("hip-hop", 1.2, "hip-hop|rap|hip hop|energetic|motivation|workout",
       "Eminem|Kanye West|Jay-Z|50 Cent|Dr. Dre|Snoop Dogg|Nas|Kendrick Lamar|Drake|Lil Wayne|"
       "OutKast|Wu-Tang Clan|The Notorious B.I.G.|2Pac|Beastie Boys|Run-DMC|Cypress Hill|"
       "A Tribe Called Quest|Public Enemy|Mos Def", "anthems"),
    _g("electronic", 1.1, "electronic|dance|house|club|party",
       "Daft Punk|David Guetta|Calvin Harris|Avicii|Swedish House Mafia|Deadmau5|Tiësto|"
       "The Chemical Brothers|The Prodigy|Fatboy Slim|Justice|Skrillex|Armin van Buuren|"
       "Basement Jaxx|Disclosure|Underworld|Faithless", "pop"),
    _g("pop", 1.3, "pop|dance|party|club|female vocalists",
       "Lady Gaga|Rihanna|Beyoncé|Britney Spears|Katy Perry|Madonna|Kylie Minogue|"
       "Christina Aguilera|Shakira|Justin Timberlake|Dua Lipa|Taylor Swift|Kesha|P!nk|Sia|"
       "Nelly Furtado", "electronic"),
    _g("feelgood", 1.0, "happy|feel good|fun|upbeat|oldies",
       "Pharrell Williams|The Beatles|ABBA|Jackson 5|Bruno Mars|The Beach Boys|Stevie Wonder|"
       "Earth, Wind & Fire|Bee Gees|Kool & the Gang|Michael Jackson|Wham!|Katrina and the Waves|"
       "Elton John|KC and the Sunshine Band|Mark Ronson|The Monkees", "classic rock"),
    _g("heartbreak", 1.1, "sad|melancholy|melancholic|heartbreak|breakup|singer-songwriter",
       "Adele|Sam Smith|Bon Iver|Radiohead|Coldplay|Damien Rice|The National|Elliott Smith|"
       "Jeff Buckley|Lana Del Rey|Lewis Capaldi|Keane|Snow Patrol|Death Cab for Cutie|Nick Drake|"
       "Sufjan Stevens|Leonard Cohen|José González|Ben Howard|Birdy", "chill"),
    _g("love", 0.9, "love|romantic|love songs|soul|r&b",
       "Norah Jones|John Legend|Ed Sheeran|Michael Bublé|Frank Sinatra|Etta James|Al Green|"
       "Marvin Gaye|Barry White|Alicia Keys|Nat King Cole|Luther Vandross|Whitney Houston|"
       "Otis Redding|Lionel Richie|Sade|Dean Martin|Aretha Franklin|Usher", "chill"),
    _g("chill", 0.8, "chillout|chill|relax|mellow|downtempo",
       "Zero 7|Air|Bonobo|Thievery Corporation|Röyksopp|Nightmares on Wax|Kruder & Dorfmeister|"
       "Groove Armada|Lemon Jelly|St Germain|Emancipator|Tycho|The Cinematic Orchestra|"
       "Boards of Canada|Gotan Project", "latenight"),
    _g("latenight", 0.8, "trip-hop|night|atmospheric|dark|downtempo",
       "The xx|Massive Attack|Portishead|Burial|Moby|Tricky|UNKLE|Morcheeba|Hooverphonic|Lamb|"
       "Archive|Sneaker Pimps|Depeche Mode|James Blake|Mazzy Star|Chromatics", "chill"),
    _g("classical", 0.6, "classical|piano|baroque|orchestral|composer",
       "Ludwig van Beethoven|Wolfgang Amadeus Mozart|Johann Sebastian Bach|Frédéric Chopin|"
       "Antonio Vivaldi|Claude Debussy|Pyotr Ilyich Tchaikovsky|Franz Schubert|Johannes Brahms|"
       "George Frideric Handel|Erik Satie|Sergei Rachmaninoff|Antonín Dvořák|Gustav Mahler|"
       "Franz Liszt|Maurice Ravel|Edvard Grieg|Felix Mendelssohn", "focus"),
    _g("jazz", 0.7, "jazz|bebop|smooth jazz|fusion|swing",
       "Miles Davis|John Coltrane|Bill Evans|Thelonious Monk|Duke Ellington|Herbie Hancock|"
       "Charlie Parker|Dave Brubeck|Chet Baker|Louis Armstrong|Ella Fitzgerald|Billie Holiday|"
       "Charles Mingus|Art Blakey|Sonny Rollins|Stan Getz|Weather Report|Pat Metheny|Kenny G|"
       "Count Basie|Benny Goodman", "love"),
    _g("focus", 0.7, "ambient|instrumental|post-rock|soundtrack|study",
       "Brian Eno|Max Richter|Ólafur Arnalds|Hans Zimmer|Explosions in the Sky|Sigur Rós|"
       "Godspeed You! Black Emperor|Mogwai|This Will Destroy You|Nils Frahm|Jóhann Jóhannsson|"
       "Aphex Twin|Hammock|Stars of the Lid|Ludovico Einaudi|Yann Tiersen|Ennio Morricone|"
       "John Williams|God Is an Astronaut|Russian Circles", "classical"),
)  # fmt: skip


def _words(text: str, sep: str = " ") -> tuple[str, ...]:
    return tuple(text.split(sep))


_ADJ = _words(
    "Velvet Golden Silver Crimson Electric Broken Hollow Midnight Wild Silent Burning Frozen "
    "Neon Paper Iron Glass Lonely Happy Savage Gentle Crystal Black White Scarlet Cosmic Lunar "
    "Solar Rusty Sunken Hidden Endless Restless Faded Lucky Bitter Sweet Atomic Royal Dusty "
    "Northern Southern Western Eastern Secret Sacred Stolen Distant Modern Ancient Young Old "
    "Blue Green Violet Amber Jade Copper Marble Thunder Howling Dancing Sleeping Falling Rising"
)
_NOUN = _words(
    "Fox Owl Raven Tiger Hawk Bear Lion Falcon Serpent Shark Comet Rocket Engine Anchor Arrow "
    "Ghost Angel Saint Pilot Sailor Rider Dancer Prophet Monarch Diamond Crown Mirror Lantern "
    "Canyon River Mountain Ocean Desert Garden Forest Harbor Island Valley Signal Echo Shadow "
    "Spark Flame Storm Cloud Wave Tide Satellite Machine Radio Circuit Parade Circus Mirage "
    "Oracle Pirate Cowboy Wanderer Stranger Drifter"
)
_FIRST = _words(
    "Anna Ben Clara David Emma Felix Grace Henry Iris Jack Kate Leo Maya Nina Oscar Paul Rosa "
    "Sam Tara Victor Alice Bruno Chloe Daniel Elena Frank Hugo Ida Jonas Lena Marco Nora Otto "
    "Pia Ruby Simon Theo Vera Will Zoe"
)
_LAST = _words(
    "Hart Stone Rivers Wood Black Fields Moore Lane Brooks West Hill Marsh Knight Fox Gray Wells "
    "Reed Banks Shaw Cole Price Frost Hale Nash Vance Holt Quinn Rowe Snow Wilde Berg Lund Varga "
    "Costa Moreau Novak Keller Sato Okafor Silva"
)
_SUFFIX = _words(
    "Orchestra|Collective|Trio|Band|Project|Ensemble|Quartet|Experience|Society|Club|Sound System|"
    "Brothers|Sisters|Revival|Parade|Choir|Crew|Union|Syndicate|Foundation|Machine|Assembly",
    "|",
)


def _plural(noun: str) -> str:
    return noun + ("es" if noun.endswith(("x", "s", "sh", "ch")) else "s")


def _generated_names(n: int, taken: set[str], rng: np.random.Generator) -> list[str]:
    """``n`` unique band-like names, none equal (case-insensitively) to a name in ``taken``."""
    pairs = [(a, b) for a in _ADJ for b in _NOUN]
    pool = [f"The {a} {_plural(b)}" for a, b in pairs] + [f"{a} {b}" for a, b in pairs]
    pool += [f"{f} {s}" for f in _FIRST for s in _LAST]
    pool += [f"{a} {b} {s}" for s in _SUFFIX for a, b in pairs]
    pool = [p for p in pool if p.casefold() not in taken]
    order = rng.permutation(len(pool))
    return [pool[order[i % len(pool)]] + (f" {i // len(pool) + 1}" if i >= len(pool) else "")
            for i in range(n)]  # fmt: skip


def _hex(rng: np.random.Generator, n: int, n_bytes: int) -> np.ndarray:
    """``n`` random lowercase hex strings of ``2 * n_bytes`` characters, as an (n, 2k) S1 array."""
    lut = np.array([f"{i:02x}" for i in range(256)], dtype="S2")
    raw = rng.integers(0, 256, size=(n, n_bytes), dtype=np.uint8)
    return lut[raw].view("S1").reshape(n, 2 * n_bytes)


@dataclass(frozen=True)
class SynthResult:
    """Files written by :func:`synthesize` and their sizes."""

    plays_path: Path
    tags_path: Path
    n_rows: int
    n_users: int
    n_artists: int
    n_tag_rows: int


@contextmanager
def _stages(show: bool, total: int) -> Iterator[Callable[[str], None]]:
    if not show:
        yield lambda _msg: None
        return
    from rich.progress import Progress

    with Progress(transient=True) as progress:
        task = progress.add_task("synthesizing", total=total)
        yield lambda msg: progress.update(task, advance=1, description=msg)


def _write_tsv(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    opts = pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
    try:
        pacsv.write_csv(table, tmp, write_options=opts)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def synthesize(
    out_dir: Path,
    n_users: int = 3000,
    n_artists: int = 2500,
    seed: int = 0,
    show_progress: bool = False,
) -> SynthResult:
    """Write a synthetic Last.fm-360K dataset (plays TSV + tags TSV) into ``out_dir``.

    The same ``seed`` and sizes give byte-identical files.
    """
    if n_users < 1 or n_artists < 2 * len(SEED_GENRES):
        raise ValueError(f"need n_users >= 1 and n_artists >= {2 * len(SEED_GENRES)}")
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{out_dir}: cannot create the output directory ({exc.strerror})") from exc
    rng = np.random.default_rng(seed)
    with _stages(show_progress, 4) as stage:
        catalogue = _artists(rng, n_artists)
        stage("users")
        users, taste, want, draws = _users(rng, n_users, n_artists)
        stage("listening")
        uid, aid, plays = _listening(rng, catalogue, draws, want, taste)
        stage("writing")
        plays_path = out_dir / PLAYS_FILE
        # 64-bit offsets: past ~50 M rows a column holds more than 2 GiB of text.
        name_arr = pa.array(catalogue.names, pa.large_string())
        table = pa.table({
            "user": pa.array(users, pa.large_string()).take(pa.array(uid)),
            "mbid": pa.array(catalogue.mbid, pa.large_string()).take(pa.array(aid)),
            "artist": name_arr.take(pa.array(aid)),
            "plays": pa.array(plays),
        })  # fmt: skip
        _write_tsv(table, plays_path)
        del table
        tags_path = out_dir / TAGS_FILE
        n_tags = _write_tags(rng, catalogue, name_arr, tags_path)
        stage("done")
    return SynthResult(plays_path, tags_path, int(uid.size), n_users, n_artists, n_tags)


@dataclass(frozen=True)
class _Catalogue:
    names: list[str]
    is_real: np.ndarray
    sizes: np.ndarray  # artists per genre
    starts: np.ndarray  # first artist of each genre
    genre: np.ndarray  # genre of each artist
    mbid: np.ndarray


def _artists(rng: np.random.Generator, n_artists: int) -> _Catalogue:
    """Per genre, real names first (truncated if the catalogue is tiny), then generated ones."""
    genres = SEED_GENRES
    n_g = len(genres)
    n_real = sum(len(g.artists) for g in genres)
    if n_artists >= n_real:
        extra = np.full(n_g, (n_artists - n_real) // n_g)
        extra[: (n_artists - n_real) % n_g] += 1
        real_counts = np.array([len(g.artists) for g in genres])
    else:
        real_counts = np.full(n_g, n_artists // n_g)
        real_counts[: n_artists % n_g] += 1
        extra = np.zeros(n_g, dtype=np.int64)
    taken = {a.casefold() for g in genres for a in g.artists}
    fill = iter(_generated_names(int(extra.sum()), taken, rng))
    names: list[str] = []
    is_real: list[bool] = []
    for g, k, e in zip(genres, real_counts, extra, strict=True):
        names += list(g.artists[:k]) + [next(fill) for _ in range(e)]
        is_real += [True] * int(k) + [False] * int(e)
    sizes = real_counts + extra
    mbid = _hex(rng, n_artists, 16)
    dash = np.full((n_artists, 1), b"-", dtype="S1")
    cols = [mbid[:, :8], mbid[:, 8:12], mbid[:, 12:16], mbid[:, 16:20], mbid[:, 20:]]
    parts = [cols[0], dash, cols[1], dash, cols[2], dash, cols[3], dash, cols[4]]
    mbid_str = np.ascontiguousarray(np.hstack(parts)).view("S36").ravel().astype(str)
    mbid_str[(rng.random(n_artists) < 0.15) & ~np.array(is_real)] = ""
    return _Catalogue(
        names,
        np.array(is_real),
        sizes,
        np.concatenate([[0], np.cumsum(sizes)]),
        np.repeat(np.arange(n_g), sizes),
        mbid_str,
    )


def _users(
    rng: np.random.Generator, n_users: int, n_artists: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Users whose tastes are a Dirichlet over 1-3 dominant genres plus a little background:
    ids, taste per genre, artists wanted, and draws per genre."""
    genres = SEED_GENRES
    n_g = len(genres)
    users = np.sort(_hex(rng, n_users, 20).view("S40").ravel()).astype(str)
    k = rng.choice([1, 2, 3], size=n_users, p=[0.35, 0.4, 0.25])
    gweight = np.array([g.weight for g in genres])
    keys = np.log(gweight) + rng.gumbel(size=(n_users, n_g))
    rank = np.argsort(np.argsort(-keys, axis=1), axis=1)
    mix = rng.gamma(1.5, size=(n_users, n_g)) * (rank < k[:, None])
    taste = 0.92 * mix / mix.sum(1, keepdims=True) + 0.08 * gweight / gweight.sum()
    want = np.exp(rng.normal(np.log(50.0) - 0.18, 0.6, size=n_users))
    want = np.clip(np.rint(want), 3, max(3, n_artists // 2)).astype(np.int64)
    draws = rng.multinomial(np.ceil(want * 1.6).astype(np.int64), taste)
    return users, taste, want, draws


def _listening(
    rng: np.random.Generator,
    catalogue: _Catalogue,
    draws: np.ndarray,
    want: np.ndarray,
    taste: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user, artist, plays) rows: per genre, Zipf-popular artists; duplicates collapse."""
    n_users, n_g = draws.shape
    n_artists, sizes, starts = len(catalogue.names), catalogue.sizes, catalogue.starts
    row_user = np.repeat(np.arange(n_users), draws.sum(1))
    row_genre = np.repeat(np.tile(np.arange(n_g, dtype=np.int8), n_users), draws.ravel())
    row_artist = np.empty(row_user.size, dtype=np.int64)
    for j in range(n_g):
        sel = row_genre == j
        pop = 1.0 / np.arange(1, sizes[j] + 1) ** 0.95
        cdf = np.cumsum(pop / pop.sum())
        pick = np.minimum(np.searchsorted(cdf, rng.random(int(sel.sum()))), sizes[j] - 1)
        row_artist[sel] = starts[j] + pick
    del row_genre
    # Sort, then drop repeats: what np.unique returns, but numpy 2.4's hash-based unique takes
    # over 100x longer on tens of millions of mostly distinct int64 keys.
    key = np.sort(row_user * n_artists + row_artist)
    key = key[np.concatenate(([True], key[1:] != key[:-1]))]
    del row_user, row_artist
    uid = key // n_artists
    # Keep a random subset of each user's distinct artists, of the planned size.
    order = np.argsort(uid + rng.random(key.size), kind="stable")
    first = np.searchsorted(uid, np.arange(n_users))
    keep = np.empty(key.size, dtype=bool)
    keep[order] = np.arange(key.size) - first[uid[order]] < want[uid[order]]
    key = key[keep]
    uid, aid = key // n_artists, key % n_artists
    activity = np.exp(rng.normal(0.0, 0.5, size=n_users))
    base = np.exp(rng.normal(np.log(45.0), 1.1, size=key.size))
    plays = base * activity[uid] * (0.5 + 3.0 * taste[uid, catalogue.genre[aid]])
    return uid, aid, np.maximum(1, np.rint(plays)).astype(np.int64)


def _write_tags(
    rng: np.random.Generator, catalogue: _Catalogue, name_arr: pa.Array, path: Path
) -> int:
    """Each artist carries most of its genre's tags, sometimes a neighbour's; rows written."""
    genres = SEED_GENRES
    index = {g.name: i for i, g in enumerate(genres)}
    tag_artist: list[np.ndarray] = []
    tag_name: list[np.ndarray] = []
    tag_weight: list[np.ndarray] = []
    real, starts = catalogue.is_real, catalogue.starts
    for j, g in enumerate(genres):
        ids = np.arange(starts[j], starts[j + 1])
        own = (rng.random((ids.size, len(g.tags))) < 0.7) | real[ids, None]
        own[:, 0] = True
        nb = genres[index[g.neighbour]].tags
        near = rng.random(ids.size) < np.where(real[ids], 0.5, 0.15)
        a_own, t_own = np.nonzero(own)
        tag_artist += [ids[a_own], ids[near]]
        tag_name += [
            np.array(g.tags)[t_own],
            np.array(nb)[rng.integers(0, len(nb), near.sum())],
        ]
        tag_weight += [rng.integers(30, 101, a_own.size), rng.integers(5, 41, int(near.sum()))]
    t_art = np.concatenate(tag_artist)
    t_tag = np.concatenate(tag_name)
    order = np.lexsort((t_tag, t_art))
    pairs = np.char.add(t_art.astype(str), np.char.add("\t", t_tag))[order]
    keep = order[np.concatenate([[True], pairs[1:] != pairs[:-1]])]
    tags = pa.table({
        "artist": name_arr.take(pa.array(t_art[keep])),
        "tag": pa.array(t_tag[keep], pa.string()),
        "weight": pa.array(np.concatenate(tag_weight)[keep]),
    })  # fmt: skip
    _write_tsv(tags, path)
    return int(tags.num_rows)
