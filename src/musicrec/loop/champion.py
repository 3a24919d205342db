"""The champion on new data: the fair comparison the retrain gate makes, for every kind.

New events change the dataset, so the champion's recorded metric (on the old dataset) is not
comparable with a candidate's. Both are scored on the new split's test pairs that neither was
trained on (the champion saw part of the new test set in its own training rows), the champion
the way serving would use it: every user's new training row mapped onto its catalogue by artist
and folded in (``Model.recommend_listener``). Artists it does not know are never recommended.
The paired gate (:mod:`musicrec.pipeline.gate`, non-inferiority by default) decides on those
per-user values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from musicrec.data.dataset import Dataset
from musicrec.models.artifact import ModelArtifact
from musicrec.pipeline.gate import GateConfig, GateResult, gate_rankers
from musicrec.pipeline.userscores import Ranking
from musicrec.tracking.registry import Judge, Judgement, VersionInfo, resolve_model


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


def gate_on_unseen(
    candidate_dir: str | Path, champion_dir: str | Path, data_dir: str | Path, config: GateConfig
) -> tuple[GateResult | None, int]:
    """The paired gate on test pairs neither model trained on (``None`` when there are none).

    A champion trained on the same dataset ranks its own users; one trained on another
    dataset is scored on the pairs it never saw, folded in as serving would use it.
    """
    dataset = Dataset.load(data_dir)
    champion = ModelArtifact.load(champion_dir)
    candidate = ModelArtifact.load(candidate_dir)
    same_data = champion.manifest.get("dataset", {}).get("fingerprint") == dataset.fingerprint
    test = dataset.test if same_data else unseen_test(dataset, champion)
    if test.nnz == 0:
        return None, 0
    theirs = champion.model if same_data else champion_ranking(champion, dataset)
    similar = candidate.model.similar_items
    result = gate_rankers(theirs, candidate.model, dataset, test, config, similar)
    return result, int(test.nnz)


def unseen_judge(name: str, candidate_dir: Path, data_dir: Path, config: GateConfig) -> Judge:
    """The retrain loop's gate for the registry: the champion against the candidate on the new
    data's test pairs neither trained on (every kind alike)."""

    def judge(candidate: VersionInfo, champion: VersionInfo) -> Judgement:
        champion_dir = resolve_model(f"models:/{name}/{champion.version}")
        evidence, pairs = gate_on_unseen(candidate_dir, champion_dir, data_dir, config)
        if evidence is None:
            return False, "no held-out pair unseen by the champion", None
        note = f" (on {pairs:,} held-out pairs neither model trained on)"
        return evidence.passed, evidence.reason + note, evidence

    return judge
