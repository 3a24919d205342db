"""A second real dataset for the tuner: MovieLens-100K through the generic CSV loader.

    python benchmarks/movielens100k.py [--trials 40] [--kinds als,ease,itemknn,rp3beta]

MovieLens-100K (943 users, 1,682 movies, 100,000 ratings) comes from a package registry: the
RecBole wheel on PyPI ships it (``recbole/dataset_example/ml-100k/ml-100k.inter``), so the script
downloads that wheel with ``pip download --no-deps`` (nothing is installed) and reads the file
out of it. Ratings become play counts (``user_id,artist_id,plays,timestamp``), ``musicrec data
prepare --source csv`` splits them, ``musicrec tune`` searches the kinds on a validation split
of train, and the chosen model's test NDCG@10 is printed next to popularity's.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from musicrec.data.prepare import PrepareConfig, prepare
from musicrec.pipeline.tune import tune

MEMBER = "recbole/dataset_example/ml-100k/ml-100k.inter"


def fetch_ml100k(cache: Path) -> Path:
    """The ML-100K interactions as a CSV in ``cache`` (the wheel is downloaded once)."""
    out = cache / "ml-100k.csv"
    if out.exists():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    wheels = list(cache.glob("recbole-*.whl"))
    if not wheels:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "-q",
                "-d",
                str(cache),
                "recbole==1.2.1",
            ],
            check=True,
        )
        wheels = list(cache.glob("recbole-*.whl"))
    with zipfile.ZipFile(wheels[0]) as wheel:
        text = wheel.read(MEMBER).decode("utf-8")
    rows = csv.reader(io.StringIO(text), delimiter="\t")
    next(rows)  # user_id:token item_id:token rating:float timestamp:float
    tmp = out.with_suffix(".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["user_id", "artist_id", "plays", "timestamp"])
        for user, item, rating, stamp in rows:
            writer.writerow([user, f"movie-{item}", rating, int(float(stamp))])
    tmp.replace(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--kinds", default="als,ease,itemknn,rp3beta")
    parser.add_argument("--cache", type=Path, default=Path("data/raw/ml-100k"))
    args = parser.parse_args()
    source = fetch_ml100k(args.cache)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tmp}/mlflow.db")
        dataset = Path(tmp) / "dataset"
        summary = prepare("csv", source, dataset, PrepareConfig(split="random"))
        result = tune(dataset, Path(tmp) / "tune", args.trials, kinds=args.kinds)
    assert result.test is not None
    kept = summary.stats["kept"]
    model, popular = result.test["ndcg@10"], result.test["popularity"]["ndcg@10"]
    print(
        f"MovieLens-100K via the csv loader: {kept['users']:,} users, {kept['items']:,} items, "
        f"random 80/20 split; `tune --kinds {args.kinds} --trials {args.trials}` chose "
        f"{result.best.kind} ({result.best.to_dict()})"
    )
    print(f"| model | NDCG@10 |\n|---|---|\n| tuned {result.best.kind} | {model:.4f} |")
    print(f"| popularity | {popular:.4f} |\n\nratio {model / popular:.2f}x popularity")


if __name__ == "__main__":
    main()
