"""The rule chain: listener control over every list, applied after the model's ranking.

Pure functions over item indices and arrays (numpy only), so serving and evaluation apply the
same dials the same way: :func:`apply_rules` for one list, :func:`rerank_rows` for a batch of
model rankings.
"""

from musicrec.rules.batch import rerank_rows
from musicrec.rules.chain import apply_rules
from musicrec.rules.cooldown import exposure_from_log, held_back
from musicrec.rules.filters import RULES
from musicrec.rules.inputs import (
    NEUTRAL,
    ORIGINS,
    Candidates,
    CoolDown,
    Deeper,
    Dials,
    Exposure,
    ItemMeta,
    ListenerState,
    RuleResult,
    Similarity,
)
from musicrec.rules.similarity import cosine
from musicrec.rules.tags import TagVocabulary

__all__ = [
    "NEUTRAL",
    "ORIGINS",
    "RULES",
    "Candidates",
    "CoolDown",
    "Deeper",
    "Dials",
    "Exposure",
    "ItemMeta",
    "ListenerState",
    "RuleResult",
    "Similarity",
    "TagVocabulary",
    "apply_rules",
    "cosine",
    "exposure_from_log",
    "held_back",
    "rerank_rows",
]
