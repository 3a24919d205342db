"""Music Twins: ready-made listener profiles, each a handful of favourite artists.

A profile is sent to ``POST /listeners/recommendations`` like any new listener, so picking
one shows what the model recommends to someone with that taste. The artists are well-known
names present in the real Last.fm data and in the synthetic demo data.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    """A listener profile: top artists, most played first, with their relative play counts."""

    key: str
    name: str
    emoji: str
    description: str
    artists: tuple[str, ...]
    plays: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.artists) != len(self.plays):
            raise ValueError(f"profile {self.key}: one play count per artist")


def _profile(key: str, name: str, emoji: str, description: str, *artists: str) -> Profile:
    """Play counts fall off with rank (100, 80, 64, ...), like a real listener's top list."""
    plays = tuple(round(100.0 * 0.8**rank, 1) for rank in range(len(artists)))
    return Profile(key, name, emoji, description, tuple(artists), plays)


PROFILES: tuple[Profile, ...] = (
    _profile("rock", "Rock Enthusiast", "🎸", "Riffs, solos and stadium anthems.",
             "Led Zeppelin", "AC/DC", "Queen", "Nirvana"),
    _profile("indie", "Indie Explorer", "🧭", "Guitars with a bit of heartache.",
             "Radiohead", "Arctic Monkeys", "The Strokes", "The National"),
    _profile("party", "Party Animal", "🎉", "Lives on the dance floor.",
             "Daft Punk", "David Guetta", "Lady Gaga", "Rihanna"),
    _profile("chill", "Chill Vibes", "😌", "Downtempo for slow afternoons.",
             "Bonobo", "Air", "Zero 7", "Massive Attack"),
    _profile("heartbreak", "Heartbreak Hotel", "💔", "Sad songs say so much.",
             "Adele", "Sam Smith", "Damien Rice", "Bon Iver"),
    _profile("motivation", "Motivation Machine", "💪", "One more rep, one more mile.",
             "Eminem", "Linkin Park", "Survivor", "Imagine Dragons"),
    _profile("jazz", "Jazz Connoisseur", "🎷", "Modal, bebop and late-night piano.",
             "Miles Davis", "John Coltrane", "Bill Evans"),
    _profile("classical", "Classical Soul", "🎻", "Sonatas, preludes and fugues.",
             "Ludwig van Beethoven", "Frédéric Chopin", "Johann Sebastian Bach", "Claude Debussy"),
    _profile("latenight", "Late Night Owl", "🌙", "Dark, atmospheric, after midnight.",
             "Portishead", "The xx", "Burial", "Massive Attack"),
    _profile("love", "Love Struck", "❤️", "Romance, soul and slow dances.",
             "Norah Jones", "John Legend", "Al Green", "Etta James"),
)  # fmt: skip


def profile_by_key(key: str) -> Profile:
    """The profile named ``key``; ``KeyError`` lists the valid keys."""
    for profile in PROFILES:
        if profile.key == key:
            return profile
    raise KeyError(f"unknown profile {key!r}; choose from {', '.join(p.key for p in PROFILES)}")
