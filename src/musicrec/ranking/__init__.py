"""One ranking contract: best first, never an excluded item, ``-1`` padding."""

from musicrec.ranking.base import ModelRanker, Ranker
from musicrec.ranking.baselines import RandomRanker, StaticRanker
from musicrec.ranking.exact import FactorRanker
from musicrec.ranking.topk import PAD, check_ranking, topk_dense, topk_sparse

__all__ = [
    "PAD",
    "FactorRanker",
    "ModelRanker",
    "RandomRanker",
    "Ranker",
    "StaticRanker",
    "check_ranking",
    "topk_dense",
    "topk_sparse",
]
