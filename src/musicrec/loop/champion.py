"""The champion on new data: the fair comparison the retrain gate makes, for every kind.

New events change the dataset, so the champion's recorded metric (on the old dataset) is not
comparable with a candidate's. Both are scored on the new split's test pairs that neither was
trained on (the champion saw part of the new test set in its own training rows), the champion
the way serving would use it: every user's new training row mapped onto its catalogue by artist
and folded in (``Model.recommend_listener``). Artists it does not know are never recommended.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from musicrec.data.dataset import Dataset
from musicrec.models.artifact import ModelArtifact
from musicrec.pipeline.evaluate import Ranking, evaluate_ranker
from musicrec.tracking.registry import VersionInfo, resolve_model


def unseen_test(dataset: Dataset, artifact: Any) -> sp.csr_matrix:
    """The dataset's test pairs that ``artifact`` (a model) was not trained on.

    A new split is drawn over grown data, so part of its test set sat in the champion's
    training rows; scored on those, the champion would look better than it is.
    """
    trained = artifact.train_matrix.tocoo()
    users = pd.Index(dataset.users["user_id"].astype(str)).get_indexer(
        artifact.users["user_id"].astype(str)
    )
    items = pd.Index(dataset.items["artist_key"]).get_indexer(artifact.items["artist_key"])
    rows, cols = users[trained.row], items[trained.col]
    known = (rows >= 0) & (cols >= 0)
    n_items = len(dataset.items)
    seen = rows[known].astype(np.int64) * n_items + cols[known]
    test = dataset.test.tocoo()
    keep = ~np.isin(test.row.astype(np.int64) * n_items + test.col, seen)
    return sp.csr_matrix(
        (test.data[keep], (test.row[keep], test.col[keep])), shape=test.shape, dtype=np.float32
    )


def champion_ranking(champion: ModelArtifact, dataset: Dataset) -> Ranking:
    """``champion`` ranking the users of ``dataset`` from their rows, as serving would."""
    model = champion.model
    theirs = pd.Index(champion.items["artist_key"]).get_indexer(dataset.items["artist_key"])
    ours = pd.Index(dataset.items["artist_key"]).get_indexer(champion.items["artist_key"])
    unknown_here = np.flatnonzero(ours < 0)  # the champion's artists this dataset lost
    n_theirs = len(champion.items)

    def remap(rows: sp.csr_matrix) -> sp.csr_matrix:
        coo = sp.coo_matrix(rows)
        mapped = theirs[coo.col]
        keep = mapped >= 0
        return sp.csr_matrix(
            (coo.data[keep], (coo.row[keep], mapped[keep])),
            shape=(rows.shape[0], n_theirs),
            dtype=np.float32,
        )

    def rank(users: np.ndarray, k: int, exclude: sp.csr_matrix) -> np.ndarray:
        rows = remap(dataset.train[users])
        lost = sp.csr_matrix(
            (
                np.ones(len(users) * len(unknown_here), dtype=np.float32),
                (
                    np.repeat(np.arange(len(users)), len(unknown_here)),
                    np.tile(unknown_here, len(users)),
                ),
            ),
            shape=rows.shape,
        )
        banned = sp.csr_matrix(((remap(exclude) + lost) > 0).astype(np.float32))
        ids, _ = model.recommend_listener(rows, k, exclude=banned)
        return np.where(ids >= 0, ours[np.maximum(ids, 0)], -1)

    return rank


def compare_on_unseen(
    candidate_dir: str | Path,
    champion_dir: str | Path,
    data_dir: str | Path,
    ks: Sequence[int],
) -> tuple[float, float, int]:
    """NDCG@10 of candidate and (folded-in) champion on test pairs neither was trained on."""
    dataset = Dataset.load(data_dir)
    champion = ModelArtifact.load(champion_dir)
    candidate = ModelArtifact.load(candidate_dir)
    test = unseen_test(dataset, champion)
    if test.nnz == 0:
        return float("nan"), float("nan"), 0
    train = dataset.train
    ours, _ = evaluate_ranker(candidate.model, train, test, ks)
    theirs, _ = evaluate_ranker(champion_ranking(champion, dataset), train, test, ks)
    return ours["ndcg@10"], theirs["ndcg@10"], int(test.nnz)


def rescorer(
    name: str, candidate_dir: Path, data_dir: Path, ks: Sequence[int]
) -> Callable[[VersionInfo, VersionInfo], tuple[VersionInfo, VersionInfo, str]]:
    """The registry gate's re-scoring of a registered champion against the candidate."""

    def rescore(
        candidate: VersionInfo, champion: VersionInfo
    ) -> tuple[VersionInfo, VersionInfo, str]:
        champion_dir = resolve_model(f"models:/{name}/{champion.version}")
        score, theirs, pairs = compare_on_unseen(candidate_dir, champion_dir, data_dir, ks)
        fingerprint = candidate.fingerprint
        if not pairs:
            unscored = VersionInfo(candidate.version, candidate.run_id, None, fingerprint)
            return unscored, champion, " (no held-out pair unseen by the champion)"
        return (
            VersionInfo(candidate.version, candidate.run_id, score, fingerprint),
            VersionInfo(champion.version, champion.run_id, theirs, fingerprint),
            f" (on {pairs:,} held-out pairs neither model trained on)",
        )

    return rescore
