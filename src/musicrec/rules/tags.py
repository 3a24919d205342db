"""Tag names to the codes the rule chain uses, with close matches for names it does not know.

Matching ignores case, runs of spaces, ``-`` and ``_`` (``Hip-Hop`` = ``hip hop``).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

SUGGESTIONS = 5


class TagVocabulary:
    """Known tags: case- and space-insensitive lookup of a tag's code, and close matches."""

    def __init__(self, names: Sequence[str]):
        self.names = list(names)
        self._codes: dict[str, int] = {}
        for code, name in enumerate(self.names):
            self._codes.setdefault(_fold(name), code)
        self._folded = list(self._codes)

    def code(self, name: str) -> int | None:
        return self._codes.get(_fold(name))

    def close(self, name: str, n: int = SUGGESTIONS) -> list[str]:
        """Known tags that start with or contain ``name``, then difflib's closest."""
        folded = _fold(name)
        hits: dict[str, None] = {}  # ordered, each once
        if folded:
            for wanted in (lambda t: t.startswith(folded), lambda t: folded in t):
                for tag in self._folded:
                    if len(hits) >= n:
                        break
                    if wanted(tag):
                        hits.setdefault(tag)
        for match in difflib.get_close_matches(folded, self._folded, n=n, cutoff=0.6):
            hits.setdefault(match)
        return [self.names[self._codes[t]] for t in list(hits)[:n]]


def _fold(name: str) -> str:
    return " ".join(name.casefold().replace("-", " ").replace("_", " ").split())
