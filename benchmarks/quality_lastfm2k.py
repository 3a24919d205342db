"""Quality on real data: every model kind with default parameters on HetRec Last.fm-2K.

    python benchmarks/quality_lastfm2k.py [--data PATH_TO_hetrec2011-lastfm-2k]

Prints a Markdown table of every metric at K=10 and 20 for the default ALS, popularity, random
and the original project's configuration, then one row per model kind (default parameters):
NDCG@10, precision@10, recall@10, coverage@10 and training time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from musicrec.config import KINDS, TrainConfig
from musicrec.data.dataset import Dataset
from musicrec.data.prepare import PrepareConfig, prepare
from musicrec.models.als import ALSModel, Factors
from musicrec.pipeline.evaluate import evaluate, evaluate_model
from musicrec.pipeline.train import train

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "lastfm-2k"


def seed_configuration(dataset: Path) -> dict[str, float]:
    """The original project's setup: confidence 1 + 40*plays, then implicit's alpha=40 on top
    (scaled twice), 150 factors, regularization 0.01, 25 iterations; evaluated correctly."""
    ds = Dataset.load(dataset)
    confidence = ds.train.copy()
    confidence.data = 1.0 + 40.0 * confidence.data
    model = AlternatingLeastSquares(
        factors=150, regularization=0.01, alpha=40.0, iterations=25, random_state=42
    )
    with threadpool_limits(1, "blas"):
        model.fit(confidence, show_progress=False)
    factors = Factors(np.asarray(model.user_factors), np.asarray(model.item_factors), [])
    return evaluate(
        ALSModel.from_factors(TrainConfig(factors=150), factors, ds.train), ds.train, ds.test
    ).model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ds, model = Path(tmp) / "dataset", Path(tmp) / "model"
        summary = prepare("hetrec2k", args.data, ds, PrepareConfig())
        config = TrainConfig()
        started = time.perf_counter()
        train(ds, model, config)
        seconds = time.perf_counter() - started
        report = evaluate_model(ds, model, baselines=["popularity", "random"]).to_dict()
        report["seed"] = seed_configuration(ds)
        kinds = {}
        for kind in KINDS:
            kind_model = Path(tmp) / f"model-{kind}"
            started = time.perf_counter()
            train(ds, kind_model, TrainConfig.for_kind(kind))
            kind_seconds = time.perf_counter() - started
            kinds[kind] = (evaluate_model(ds, kind_model, baselines=[]).model, kind_seconds)
    kept = summary.stats["kept"]
    print(
        f"HetRec 2011 Last.fm-2K, default split (k-core 5/3, random 80/20 per user, seed 42): "
        f"{kept['users']:,} users, {kept['items']:,} artists, {kept['train']:,} train / "
        f"{kept['test']:,} test pairs. Default config {config.to_dict()}; trained in "
        f"{seconds:.1f} s."
    )
    print()
    print("| metric | ALS (default) | popularity | random | original project's config |")
    print("|---|---|---|---|---|")
    for metric in ("precision", "recall", "map", "ndcg", "coverage"):
        for k in (10, 20):
            key = f"{metric}@{k}"
            print(
                f"| {key} | {report[key]:.4f} | {report['popularity'][key]:.4f} "
                f"| {report['random'][key]:.4f} | {report['seed'][key]:.4f} |"
            )
    print()
    print(
        "| kind (default parameters) | NDCG@10 | precision@10 | recall@10 | coverage@10 | train s |"
    )
    print("|---|---|---|---|---|---|")
    for kind, (metrics, kind_seconds) in kinds.items():
        print(
            f"| {kind} | {metrics['ndcg@10']:.4f} | {metrics['precision@10']:.4f} "
            f"| {metrics['recall@10']:.4f} | {metrics['coverage@10']:.4f} | {kind_seconds:.1f} |"
        )
    pop = report["popularity"]
    print(
        f"| popularity | {pop['ndcg@10']:.4f} | {pop['precision@10']:.4f} "
        f"| {pop['recall@10']:.4f} | {pop['coverage@10']:.4f} | - |"
    )


if __name__ == "__main__":
    main()
