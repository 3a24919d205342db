"""Rankings for users: the contract, model and baseline rankers, and the HNSW item index.

The top-k primitives and the exact factor ranker live with the models that use them
(:mod:`musicrec.models.topk`, :mod:`musicrec.models.exact`) and are re-exported here.
"""

from musicrec.models.exact import FactorRanker
from musicrec.models.topk import PAD, check_ranking, topk_dense, topk_sparse
from musicrec.ranking.base import ModelRanker, Ranker
from musicrec.ranking.baselines import RandomRanker, StaticRanker

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
