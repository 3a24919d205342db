"""What the diversity and discovery dials cost in accuracy, on HetRec Last.fm-2K.

    python benchmarks/dials_lastfm2k.py [--data PATH_TO_hetrec2011-lastfm-2k] [--plot PNG]
                                        [--overfetch 10] [--mmr-pool N] [--max-per-tag N]

Default split and default ALS (trained here, seed 42). For every test user the model's top
``--overfetch`` x 10 unplayed artists are the candidates; the rule chain makes the top 10 with
``diversity`` in 0, .25, .5, .75, 1 (discovery 0; MMR among the best ``--mmr-pool``, default
the chain's), then ``discovery`` in the same steps (diversity 0); ``--max-per-tag`` caps every
list, the neutral one included. Each setting is scored the way
``musicrec evaluate`` scores a model (``score_users``, the beyond-accuracy ``ItemSpace``): NDCG@10,
``diversity@10`` (intra-list diversity over tag profiles, a measure the chain does not optimise)
and ``novelty@10``, with 95% bootstrap intervals over users and NDCG@10's paired difference to
the neutral list (``musicrec.stats``); beside them the mean pairwise cosine distance of the
listed artists' factors (the similarity the chain does use) and the median listeners of the
listed artists (median over users of each list's median). Prints a Markdown table and writes
the two curves as one PNG.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from musicrec.config import TrainConfig
from musicrec.data.dataset import Dataset
from musicrec.data.prepare import PrepareConfig, prepare
from musicrec.models.artifact import ModelArtifact
from musicrec.pipeline.beyond import ItemSpace
from musicrec.pipeline.train import train
from musicrec.pipeline.userscores import score_users
from musicrec.rules import Dials, ItemMeta, Similarity, cosine, rerank_rows
from musicrec.rules.chain import MMR_POOL_FACTOR
from musicrec.stats import Estimate, bootstrap_mean_ci, paired_bootstrap

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "lastfm-2k"
DEFAULT_PLOT = ROOT / "docs" / "images" / "dials-lastfm2k.png"
STEPS = (0.0, 0.25, 0.5, 0.75, 1.0)
K = 10
RESAMPLES = 2000


@dataclass
class Setup:
    """Everything each setting is measured against."""

    dataset: Dataset
    users: np.ndarray
    items: ItemSpace  # what evaluation's beyond-accuracy metrics read
    meta: ItemMeta
    similarity: Similarity
    popularity: np.ndarray
    ids: np.ndarray  # (users, candidates) from the model
    scores: np.ndarray
    mmr_pool: int | None  # None: the chain's default
    max_per_tag: int | None  # on every list, the neutral one included


@dataclass
class Row:
    dial: str
    value: float
    ndcg: np.ndarray  # per user
    diversity: np.ndarray  # evaluation's diversity@10 (tag profiles)
    novelty: np.ndarray
    ild: np.ndarray  # mean pairwise distance of the factors the chain uses
    median_listeners: np.ndarray
    seconds: float


def item_meta(items: pd.DataFrame, tags: pd.DataFrame | None) -> ItemMeta:
    """Listeners and each artist's heaviest tags, as the rule chain reads them."""
    if tags is None or tags.empty:
        return ItemMeta.build(items["listeners"].to_numpy())
    codes, names = pd.factorize(tags["tag"])
    return ItemMeta.build(
        items["listeners"].to_numpy(),
        tags["item_idx"].to_numpy(),
        codes,
        tags["weight"].to_numpy(),
        list(names),
    )


def intra_list_distance(similarity: Similarity, lists: np.ndarray) -> np.ndarray:
    out = np.zeros(len(lists))
    off_diagonal = ~np.eye(lists.shape[1], dtype=bool)
    for row, ids in enumerate(lists):
        out[row] = float((1.0 - similarity(ids).astype(np.float64))[off_diagonal].mean())
    return out


class DialRanker:
    """The model's candidates through the rule chain, as evaluation's ranking (a callable)."""

    def __init__(self, setup: Setup, dials: Dials):
        self.name = "rules"
        self.setup, self.dials = setup, dials
        self.row_of = {int(u): row for row, u in enumerate(setup.users)}
        self.seconds = 0.0

    def __call__(self, users: np.ndarray, k: int, exclude: sp.csr_matrix) -> np.ndarray:
        rows = np.array([self.row_of[int(u)] for u in users])
        started = time.perf_counter()
        top = rerank_rows(
            self.setup.ids[rows],
            self.setup.scores[rows],
            exclude,
            k,
            meta=self.setup.meta,
            popularity=self.setup.popularity,
            dials=self.dials,
            similarity=self.setup.similarity,
            mmr_pool=self.setup.mmr_pool,
        )
        self.seconds += time.perf_counter() - started
        return top


def measure(setup: Setup, dial: str, value: float) -> Row:
    diversity, discovery = (value, 0.0) if dial == "diversity" else (0.0, value)
    dials = Dials(max_per_tag=setup.max_per_tag, diversity=diversity, discovery=discovery)
    ranker = DialRanker(setup, dials)
    dataset = setup.dataset
    scores = score_users(ranker, dataset.train, dataset.test, [K], items=setup.items)
    assert np.array_equal(scores.users, setup.users)
    top = scores.top[:, :K].astype(np.int64)
    return Row(
        dial=dial,
        value=value,
        ndcg=scores.values[f"ndcg@{K}"],
        diversity=scores.values[f"diversity@{K}"],
        novelty=scores.values[f"novelty@{K}"],
        ild=intra_list_distance(setup.similarity, top),
        median_listeners=np.median(setup.meta.listeners[top], axis=1),
        seconds=ranker.seconds,
    )


def interval(values: np.ndarray) -> Estimate:
    """Mean over users with its 95% percentile-bootstrap interval (seeded)."""
    return bootstrap_mean_ci(values, n_resamples=RESAMPLES, seed=0)[0]


def ci(estimate: Estimate, digits: int = 4, sign: str = "") -> str:
    f = f"{sign}.{digits}f"
    return f"{estimate.value:{f}} [{estimate.low:{f}}, {estimate.high:{f}}]"


def table(rows: list[Row], neutral: Row) -> None:
    print(
        f"| dial | value | NDCG@{K} [95% CI] | ΔNDCG vs neutral [95% CI] | diversity@{K} [95% CI] "
        f"| novelty@{K} | factor distance | median listeners | chain ms/user |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        paired = row is not neutral and row.ndcg is not neutral.ndcg
        delta = ci(paired_bootstrap(neutral.ndcg, row.ndcg, RESAMPLES)[0], sign="+")
        print(
            f"| {row.dial} | {row.value:.2f} | {ci(interval(row.ndcg))} "
            f"| {delta if paired else '—'} | {ci(interval(row.diversity), 3)} "
            f"| {np.nanmean(row.novelty):.2f} | {row.ild.mean():.3f} "
            f"| {np.median(row.median_listeners):.0f} "
            f"| {1000 * row.seconds / len(row.ndcg):.2f} |"
        )


def plot(rows: list[Row], path: Path, caption: str) -> None:
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, dial, x_of, label in (
        (left, "diversity", lambda r: np.nanmean(r.diversity), f"diversity@{K} (tag profiles)"),
        (right, "discovery", lambda r: np.median(r.median_listeners), "median listeners (log)"),
    ):
        chosen = [r for r in rows if r.dial == dial]
        xs = [x_of(r) for r in chosen]
        ys = [r.ndcg.mean() for r in chosen]
        low = [r.ndcg.mean() - interval(r.ndcg).low for r in chosen]
        high = [interval(r.ndcg).high - r.ndcg.mean() for r in chosen]
        axis.errorbar(xs, ys, yerr=[low, high], marker="o", capsize=3)
        for r, x, y in zip(chosen, xs, ys, strict=True):
            axis.annotate(f"{dial}={r.value:g}", (x, y), textcoords="offset points", xytext=(5, 5))
        axis.set_xlabel(label)
        axis.set_ylabel("NDCG@10 (95% CI)")
        axis.grid(alpha=0.3)
    right.set_xscale("log")
    right.invert_xaxis()  # more discovery = fewer listeners, to the right
    left.set_title("diversity: accuracy vs intra-list diversity")
    right.set_title("discovery: accuracy vs popularity")
    figure.suptitle(caption, fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    print(f"\nplot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--plot", type=Path, default=DEFAULT_PLOT)
    parser.add_argument("--overfetch", type=int, default=10, help="candidates = this x 10")
    parser.add_argument(
        "--mmr-pool",
        type=int,
        default=None,
        help="candidates diversity chooses among "
        "(default: the chain's, 4 x 10); --mmr-pool 100 with the default over-fetch uses all",
    )
    parser.add_argument("--max-per-tag", type=int, default=None, help="cap on every list")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ds_dir, model_dir = Path(tmp) / "dataset", Path(tmp) / "model"
        prepare("hetrec2k", args.data, ds_dir, PrepareConfig())
        train(ds_dir, model_dir, TrainConfig())
        dataset = Dataset.load(ds_dir)
        artifact = ModelArtifact.load(model_dir, mmap=False)
        model = artifact.model
        users = np.flatnonzero(np.diff(dataset.test.indptr) > 0)
        with threadpool_limits(1):
            ids, scores = model.recommend(users, dataset.train[users], args.overfetch * K)
            assert model.popularity is not None
            setup = Setup(
                dataset=dataset,
                users=users,
                items=ItemSpace.build(dataset.train, dataset.tags, model.similar_items),
                meta=item_meta(dataset.items, dataset.tags),
                similarity=cosine(np.asarray(artifact.item_factors)),
                popularity=model.popularity,
                ids=ids,
                scores=scores,
                mmr_pool=args.mmr_pool,
                max_per_tag=args.max_per_tag,
            )
            rows = [measure(setup, "diversity", v) for v in STEPS]
            rows += [measure(setup, "discovery", v) for v in STEPS[1:]]
    neutral = rows[0]
    rows.insert(len(STEPS), replace(neutral, dial="discovery"))  # both curves start there
    n_items = dataset.shape[1]
    pool = args.mmr_pool or MMR_POOL_FACTOR * K
    caption = (
        f"HetRec Last.fm-2K, default split and ALS; {len(users):,} test users, {n_items:,} "
        f"artists; top-{K} from the model's top-{args.overfetch * K} candidates "
        f"(diversity among the best {pool})"
        + (f"; max_per_tag={args.max_per_tag}" if args.max_per_tag else "")
    )
    print(caption)
    print()
    table(rows, neutral)
    plot(rows, args.plot, caption)


if __name__ == "__main__":
    main()
