"""Names as identities and search keys: one normalisation for data, events and serving."""

from __future__ import annotations

import unicodedata


def normalize_name(name: str) -> str:
    """Artist identity: NFC, casefolded, trimmed, inner whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFC", name).casefold().split())


def fold_accents(text: str) -> str:
    """Lower-case ASCII-ish search key: "Björk" and "bjork" match."""
    decomposed = unicodedata.normalize("NFKD", normalize_name(text))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))
