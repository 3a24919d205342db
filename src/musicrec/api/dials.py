"""The list dials as request fields: the same names as GET query parameters and POST body fields.

A route takes them as ``Annotated[QueryDials, Query()]`` (GET) or by subclassing
:class:`ListDials` in its body model (POST), then turns them into the rule chain's
:class:`~musicrec.rules.Dials` with :meth:`ListDials.to_dials`. Out-of-range values are 422s
naming the field (pydantic); a tag the catalogue does not know is a 422 naming the field and
the closest known tags (:func:`resolve_tags`).

Lists: in a query, every value is split at commas (``include_tags=rock,jazz`` or repeated
``include_tags=rock&include_tags=jazz``); write ``\\,`` for a comma inside a name. In a JSON
body a list is taken as it is, and a single string is split like a query value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Annotated, Any, Literal

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from musicrec.api.limits import K_MAX, NAME_MAX_LENGTH
from musicrec.rules import CoolDown, Dials, TagVocabulary
from musicrec.serving.recommender import Recommender

MAX_NAMES = 100  # per list: more is a client bug, and every name costs a lookup
RECENT_DAYS_MAX = 3650

Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=NAME_MAX_LENGTH)
]
Unit = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
_COMMA = re.compile(r"(?<!\\),")


def split_names(value: str) -> list[str]:
    """``"a, b\\, c"`` -> ``["a", "b, c"]``: comma-separated names, blanks dropped."""
    parts = (part.replace("\\,", ",").strip() for part in _COMMA.split(value))
    return [part for part in parts if part]


def _unique(names: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    kept = []
    for name in names:
        if name.casefold() not in seen:
            seen.add(name.casefold())
            kept.append(name)
    return kept


class ListDials(BaseModel):
    """How a list is shaped; every default is neutral (the model's own list)."""

    model_config = ConfigDict(extra="forbid")

    exclude_artists: list[Name] = Field(
        default_factory=list,
        max_length=MAX_NAMES,
        description="Artists never to list. Names the catalogue does not know are ignored.",
    )
    exclude_tags: list[Name] = Field(
        default_factory=list,
        max_length=MAX_NAMES,
        description="Leave out artists carrying any of these tags (among their top 3).",
    )
    include_tags: list[Name] = Field(
        default_factory=list,
        max_length=MAX_NAMES,
        description="List only artists carrying at least one of these tags (among their top 3).",
    )
    max_per_tag: int | None = Field(
        default=None,
        ge=1,
        le=K_MAX,
        description="At most this many listed artists share a top tag (default: no cap).",
    )
    diversity: Unit = Field(
        default=0.0,
        description="0-1: trade relevance for artists unlike each other (MMR). 0 = as ranked.",
    )
    discovery: Unit = Field(
        default=0.0,
        description="0-1: favour artists with few listeners. 0 = as ranked, 1 = strongly.",
    )
    familiar_share: Unit = Field(
        default=0.0,
        description="0-1: share of the list given to artists the listener already plays.",
    )
    exclude_recent_days: float | None = Field(
        default=None,
        gt=0,
        le=RECENT_DAYS_MAX,
        allow_inf_nan=False,
        description="Leave out every artist with an event (a skip included) in this many days.",
    )

    @field_validator("exclude_artists", "exclude_tags", "include_tags", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        """A body's list is taken as it is; a single string is comma-separated."""
        if isinstance(value, str):
            return _unique(split_names(value))
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return _unique(v.strip() for v in value)
        return value

    @property
    def neutral(self) -> bool:
        return self == ListDials()

    def on(self, recommender: Recommender, location: Literal["query", "body"] = "body") -> Dials:
        """:meth:`to_dials` against the served model's catalogue and tags (once per request)."""
        if self.neutral:
            return Dials()
        rules = recommender.rules
        return self.to_dials(recommender.catalogue.resolve, rules.vocabulary, location)

    def to_dials(
        self,
        resolve_artist: Callable[[str], int | None],
        tags: TagVocabulary,
        location: Literal["query", "body"] = "query",
        cooldown: CoolDown | None = None,
    ) -> Dials:
        """The rule chain's dials: names resolved to item indices and tag codes (a 422 for
        an unknown tag). ``cooldown`` is the server's exposure setting, not a request field."""
        excluded = [resolve_artist(name) for name in self.exclude_artists]
        return Dials(
            exclude_artists=tuple(sorted({i for i in excluded if i is not None})),
            exclude_tags=tuple(resolve_tags(self.exclude_tags, tags, "exclude_tags", location)),
            include_tags=tuple(resolve_tags(self.include_tags, tags, "include_tags", location)),
            max_per_tag=self.max_per_tag,
            diversity=self.diversity,
            discovery=self.discovery,
            familiar_share=self.familiar_share,
            exclude_recent_days=self.exclude_recent_days,
            cooldown=cooldown,
        )


class QueryDials(ListDials):
    """:class:`ListDials` read from a query string, where every list value is comma-separated.

    Other query parameters of the route (``k``, ``mood``) share the query string, so unknown
    names are left to the route rather than refused here.
    """

    model_config = ConfigDict(extra="ignore")

    @field_validator("exclude_artists", "exclude_tags", "include_tags", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return _unique(name for v in value for name in split_names(v))
        return value


def resolve_tags(
    names: Sequence[str], tags: TagVocabulary, field: str, location: str = "query"
) -> list[int]:
    """Tag codes of ``names``, or a 422 (``RequestValidationError``) naming the field and the
    closest known tags of the first name the vocabulary does not hold."""
    codes = []
    for name in names:
        code = tags.code(name)
        if code is None:
            close = tags.close(name)
            hint = f"; close matches: {', '.join(close)}" if close else "; no close match"
            raise RequestValidationError(
                [
                    {
                        "type": "unknown_tag",
                        "loc": (location, field),
                        "msg": f"unknown tag {name!r}{hint}",
                        "input": name,
                        "ctx": {"suggestions": close},
                    }
                ]
            )
        codes.append(code)
    return sorted(set(codes))
