"""Full-scale pipeline benchmark: synth -> prepare -> train -> evaluate, timed and measured.

Each stage runs as its own process (the real CLI) so peak RSS is the stage's own. Training
is compared with calling implicit's ``fit`` directly on the same confidence matrix.

    python benchmarks/bench_pipeline.py                  # Last.fm-360K scale (359K users)
    python benchmarks/bench_pipeline.py --users 20000    # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent


def run_stage(name: str, args: list[str]) -> tuple[float, float]:
    """Run ``musicrec <args>`` in a fresh wrapper; return (seconds, peak RSS GiB) of that stage."""
    wrapper = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\n"
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", wrapper, str(BIN / "musicrec"), *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    seconds, rss_gib = float(out[-2]), int(out[-1]) / 2**20
    print(f"  {name:<10} {seconds:8.1f} s   peak RSS {rss_gib:.2f} GiB", flush=True)
    return seconds, rss_gib


def implicit_direct(dataset: Path, factors: int, iterations: int, training_loss: bool) -> float:
    """Seconds for implicit's own ``fit`` on the same confidence matrix, BLAS pinned to 1.

    ``training_loss`` asks implicit to compute the loss after every sweep, as musicrec's train
    stage does for the per-iteration loss curve it logs.
    """
    code = f"""
import time
from threadpoolctl import threadpool_limits
from implicit.als import AlternatingLeastSquares
from musicrec.config import TrainConfig
from musicrec.models.confidence import confidence
from musicrec.data.dataset import Dataset
cfg = TrainConfig(factors={factors}, iterations={iterations})
weighted = confidence(Dataset.load({str(dataset)!r}).train, cfg)
model = AlternatingLeastSquares(factors={factors}, iterations={iterations},
    regularization=cfg.regularization, alpha=1.0, random_state=cfg.seed,
    calculate_training_loss={training_loss})
with threadpool_limits(1, "blas"):
    t = time.perf_counter(); model.fit(weighted, show_progress=False)
print(time.perf_counter() - t)
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def compare_train(dataset: Path, factors: int, iterations: int, workdir: Path | None) -> None:
    """`musicrec train` (whole process, and its fit) against implicit's bare fit, same run."""
    work = workdir or Path(tempfile.mkdtemp(prefix="musicrec-bench-"))
    model = work / "model-train-only"
    command = ["train", "--data", str(dataset), "--out", str(model), "--no-track"]
    train_s, _ = run_stage(
        "train", [*command, "--factors", str(factors), "--iterations", str(iterations)]
    )
    direct_s = implicit_direct(dataset, factors, iterations, training_loss=False)
    direct_loss_s = implicit_direct(dataset, factors, iterations, training_loss=True)
    fit_s = float(json.loads((model / "manifest.json").read_text())["train_seconds"])
    print(
        f"musicrec train {train_s:.1f} s whole process ({train_s / direct_s:.2f}x), fit "
        f"{fit_s:.1f} s ({fit_s / direct_s:.2f}x); implicit bare fit {direct_s:.1f} s; implicit "
        f"with its per-sweep loss {direct_loss_s:.1f} s ({direct_loss_s / direct_s:.2f}x); "
        f"{factors} factors, {iterations} iterations, load average {os.getloadavg()[0]:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=359_000)
    parser.add_argument("--artists", type=int, default=160_000)
    parser.add_argument("--factors", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--reuse-raw", action="store_true", help="keep WORKDIR/raw from an earlier run (no synth)"
    )
    parser.add_argument(
        "--train-only",
        type=Path,
        default=None,
        metavar="DATASET",
        help="only compare `musicrec train` with implicit's bare fit on this prepared dataset",
    )
    args = parser.parse_args()
    if args.train_only is not None:
        compare_train(args.train_only, args.factors, args.iterations, args.workdir)
        return

    work = args.workdir or Path(tempfile.mkdtemp(prefix="musicrec-bench-"))
    raw, ds, model = work / "raw", work / "dataset", work / "model"
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; workdir {work}"
    )
    synth_args = ["data", "synth", "--out", str(raw), "--users", str(args.users)]
    synth_args += ["--artists", str(args.artists)]
    if args.reuse_raw and raw.exists():
        synth_s = synth_rss = float("nan")
        print("  synth      reusing", raw)
    else:
        synth_s, synth_rss = run_stage("synth", synth_args)
    with open(raw / "usersha1-artmbid-artname-plays.tsv", "rb") as fh:
        n_rows = sum(1 for _ in fh)
    prep_s, prep_rss = run_stage(
        "prepare",
        ["data", "prepare", "--source", "lastfm360k", "--input", str(raw), "--out", str(ds)],
    )
    train_s, train_rss = run_stage(
        "train",
        [
            "train",
            "--data",
            str(ds),
            "--out",
            str(model),
            "--factors",
            str(args.factors),
            "--iterations",
            str(args.iterations),
            "--no-track",
        ],
    )
    direct_s = implicit_direct(ds, args.factors, args.iterations, training_loss=False)
    direct_loss_s = implicit_direct(ds, args.factors, args.iterations, training_loss=True)
    manifest = json.loads((model / "manifest.json").read_text())
    stage_fit_s = float(manifest["train_seconds"])  # confidence weighting + implicit fit
    eval_s, eval_rss = run_stage(
        "evaluate", ["evaluate", "--data", str(ds), "--model", str(model), "--json", "--no-track"]
    )

    print()
    print(
        f"Synthetic Last.fm-360K-format data: {args.users:,} users, {args.artists:,} artists, "
        f"{n_rows:,} rows; {args.factors} factors, {args.iterations} iterations."
    )
    print()
    print("| stage | wall time | peak RSS | note |")
    print("|---|---|---|---|")
    print(f"| synth | {synth_s:.1f} s | {synth_rss:.2f} GiB | writes the TSV |")
    print(f"| prepare | {prep_s:.1f} s | {prep_rss:.2f} GiB | parse, dedupe, k-core, split |")
    print(
        f"| train | {train_s:.1f} s | {train_rss:.2f} GiB | whole CLI process (load, weight, "
        f"fit with the loss after the last sweep, save): {train_s / direct_s:.2f}x implicit's bare "
        f"`fit` ({direct_s:.1f} s, no loss, same matrix, same run); fit stage "
        f"{stage_fit_s:.1f} s ({stage_fit_s / direct_s:.2f}x). implicit with its per-sweep loss: "
        f"{direct_loss_s:.1f} s ({direct_loss_s / direct_s:.2f}x) |"
    )
    print(
        f"| evaluate | {eval_s:.1f} s | {eval_rss:.2f} GiB | every test user, K=10,20, "
        "with popularity baseline |"
    )


if __name__ == "__main__":
    main()
