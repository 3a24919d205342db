"""Where a Spark cluster pays off: ALS at 1x, 2x, 4x the full synthetic scale, implicit vs Spark.

    python benchmarks/bench_spark_cluster.py                        # 1x, 2x, 4x, synthesized
    python benchmarks/bench_spark_cluster.py --data-1x PREPARED_1X  # reuse a prepared 1x
    python benchmarks/bench_spark_cluster.py --scales 4 --results rows.json  # one scale a run
    python benchmarks/bench_spark_cluster.py --summary --results rows.json   # print, no runs

1x is ``musicrec data synth --users 359000 --artists 160000`` then ``musicrec data prepare``;
kx multiplies both counts by k (each synthesized and prepared in a temporary directory under
``--work``, deleted after its row). Bounded runs, then extrapolated, so a shared machine can
afford them:

- implicit (``implicit.cpu.als``, all cores, the same confidence weighting as ``musicrec train``)
  runs ``--implicit-sweeps`` sweeps in a child process; a sweep's time is the median of the
  per-sweep times implicit reports, its CPU time (core-seconds, all threads) the median from
  the second sweep on. Memory: the child's peak resident set (it also holds the dataset, as
  ``musicrec train`` does).
- Spark runs on a standalone cluster started here (``musicrec.ops.spark_cluster``: a master and
  ``--workers`` one-core workers on 127.0.0.1). Each scale gets a fresh application: an
  untimed warm-up fit on small synthetic data (JIT), then one fit per ``--sweeps`` value; a
  sweep's time is the slope of fit time over sweeps, the rest of a fit (reading, weighting,
  blocking, collecting the factors) its setup; the same for CPU time (core-seconds of the
  executor and driver JVMs, from ``/proc``). Memory: each executor's and the driver JVM's peak
  resident set (``VmHWM``).
- CPU time is what the extrapolation uses: on a shared machine other jobs stretch wall time,
  much less the CPU time a job itself needs, and core-seconds divided by a cluster's cores is
  the wall time it would take with perfect scaling.
- A 15-sweep fit (the default) is extrapolated as setup + 15 x sweep for both engines.

The summary fits time and memory per sweep linearly in the number of training rows
(``scipy.stats.linregress``, slope with a 95% interval, t with n - 2 degrees of freedom, so
unbounded with two scales) and extrapolates: the scale at which implicit's peak memory no
longer fits one machine of a given size (95% interval by Fieller's method: the row counts
whose confidence band for the mean holds that memory), and what each Spark worker then needs
(with the executor fit's 95% band there). Prints Markdown; every timing row carries the load
average. ``--summary --results rows.json`` prints the summary of stored rows, measuring nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from musicrec.ops.spark_cluster import Cluster, group_members, start_cluster, stop_cluster

BASE_USERS, BASE_ARTISTS = 359_000, 160_000
FULL_SWEEPS = 15
GIB = 2**30


@dataclass
class Row:
    scale: int
    users: int
    artists: int
    train_rows: int
    implicit_wall: list[float]  # seconds per sweep, as implicit reports them
    implicit_cpu: list[float]  # core-seconds per sweep (process CPU time), from sweep 2 on
    implicit_setup_s: float
    implicit_peak_gib: float
    spark_wall: dict[str, float]  # sweeps -> fit seconds
    spark_cpu: dict[str, float]  # sweeps -> core-seconds of the executors and the driver JVM
    executor_peak_gib: list[float]
    driver_peak_gib: float
    load: str

    def spark_line(self, values: dict[str, float]) -> tuple[float, float]:
        """(setup, per sweep) of fit cost over sweep counts."""
        counts = [int(k) for k in values]
        if len(counts) < 2:
            return 0.0, float(next(iter(values.values())))
        fit = stats.linregress(counts, list(values.values()))
        return float(fit.intercept), float(fit.slope)

    @property
    def implicit_sweep_s(self) -> float:
        return float(np.median(self.implicit_wall))

    @property
    def implicit_sweep_cpu(self) -> float:
        return float(np.median(self.implicit_cpu))

    @property
    def spark_sweep_s(self) -> float:
        return self.spark_line(self.spark_wall)[1]

    @property
    def spark_sweep_cpu(self) -> float:
        return self.spark_line(self.spark_cpu)[1]

    def implicit_full_s(self) -> float:
        return self.implicit_setup_s + FULL_SWEEPS * self.implicit_sweep_s

    def spark_full_s(self) -> float:
        setup, sweep = self.spark_line(self.spark_wall)
        return setup + FULL_SWEEPS * sweep


def load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def musicrec_cli() -> str:
    return str(Path(sys.executable).parent / "musicrec")


def run_measured(cmd: list[str]) -> tuple[float, float, str]:
    """Run ``cmd``; (seconds, peak resident GiB of the child, its stdout)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(cmd, stdout=out)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} ... failed with exit code {process.returncode}")
    return time.perf_counter() - started, usage.ru_maxrss * 1024 / GIB, text


def make_dataset(work: Path, scale: int, base: tuple[int, int]) -> Path:
    raw, out = work / f"raw-{scale}x", work / f"dataset-{scale}x"
    users, artists = base[0] * scale, base[1] * scale
    synth = [musicrec_cli(), "data", "synth", "--out", str(raw)]
    seconds, peak, _ = run_measured([*synth, "--users", str(users), "--artists", str(artists)])
    print(f"  synth {scale}x: {seconds:.0f} s, peak {peak:.1f} GiB", flush=True)
    prepare = [musicrec_cli(), "data", "prepare", "--source", "lastfm360k"]
    seconds, peak, _ = run_measured([*prepare, "--input", str(raw), "--out", str(out)])
    print(f"  prepare {scale}x: {seconds:.0f} s, peak {peak:.1f} GiB", flush=True)
    shutil.rmtree(raw)
    return out


def implicit_child(args: argparse.Namespace) -> None:
    """Child process: implicit's sweeps on a dataset; JSON on stdout."""
    from threadpoolctl import threadpool_limits

    from musicrec.config import TrainConfig
    from musicrec.data.dataset import Dataset
    from musicrec.models.als import build_als
    from musicrec.models.confidence import confidence

    config = TrainConfig(factors=args.factors, iterations=args.sweeps)
    dataset = Dataset.load(args.data)
    train = dataset.train
    started = time.perf_counter()
    weighted = confidence(train, config)
    sweeps: list[float] = []
    cpu_marks: list[float] = []

    def on_sweep(iteration: int, seconds: float, _: object) -> None:
        sweeps.append(seconds)
        cpu_marks.append(time.process_time())  # all of implicit's threads

    with threadpool_limits(limits=1, user_api="blas"):  # as musicrec.models.als.fit_als
        model = build_als(config)
        model.fit(weighted, show_progress=False, callback=on_sweep)
    setup = time.perf_counter() - started - sum(sweeps)  # weighting, transpose, init
    cpu = [float(x) for x in np.diff(cpu_marks)]  # from sweep 2: sweep 1 carries the set-up
    rows = {"train_rows": int(weighted.nnz), "shape": list(dataset.shape)}
    print(json.dumps({"setup_s": setup, "sweeps": sweeps, "cpu": cpu, **rows}))


def run_implicit(data: Path, sweeps: int, factors: int) -> dict[str, object]:
    cmd = [sys.executable, __file__, "_implicit", "--data", str(data)]
    _, peak, text = run_measured([*cmd, "--sweeps", str(sweeps), "--factors", str(factors)])
    result: dict[str, object] = json.loads(text.strip().splitlines()[-1])
    result["peak_gib"] = peak
    return result


def vm_hwm_gib(pid: int) -> float:
    """Peak resident set of ``pid`` (Linux ``VmHWM``), 0 if unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / GIB
    except OSError:
        pass
    return 0.0


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` so far (Linux ``/proc/<pid>/stat``)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def executor_pids(worker_pids: list[int]) -> list[int]:
    """Executor JVMs: processes of each worker's group other than the worker itself."""
    return [pid for worker in worker_pids for pid in group_members(worker)]


def run_spark(
    cluster_url: str,
    daemon_pids: list[int],
    worker_pids: list[int],
    data: Path,
    warmup: Path,
    args: argparse.Namespace,
    checkpoints: Path,
) -> dict[str, object]:
    """One application: warm-up, then a fit per sweep count; times and peak memory."""
    import psutil

    from musicrec.config import TrainConfig
    from musicrec.data.dataset import Dataset
    from musicrec.models.spark_als import fit_spark, spark_session

    conf = {
        "spark.executor.memory": args.worker_memory,
        "spark.driver.memory": args.driver_memory,
    }
    dataset = Dataset.load(data)
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    with spark_session(cluster_url, conf):
        fit_spark(
            Dataset.load(warmup),
            TrainConfig(factors=args.factors, iterations=2),
            checkpoint_dir=str(checkpoints),
        )
        executors = executor_pids(worker_pids)
        # The driver JVM: a child of this process, as are the cluster's daemons (not counted).
        drivers = [
            p.pid
            for p in psutil.Process().children()
            if "java" in p.name() and p.pid not in daemon_pids
        ]
        for sweeps in args.sweeps:
            config = TrainConfig(factors=args.factors, iterations=sweeps)
            started, cpu_before = time.perf_counter(), cpu_seconds(executors + drivers)
            fit_spark(dataset, config, checkpoint_dir=str(checkpoints))
            wall[str(sweeps)] = time.perf_counter() - started
            cpu[str(sweeps)] = cpu_seconds(executors + drivers) - cpu_before
            print(
                f"    Spark {sweeps} sweep(s): {wall[str(sweeps)]:.1f} s, "
                f"{cpu[str(sweeps)]:.1f} core-s (load {load()})",
                flush=True,
            )
        executor_peaks = [vm_hwm_gib(pid) for pid in executor_pids(worker_pids)]
        driver = max((vm_hwm_gib(pid) for pid in drivers), default=0.0)
    return {"wall": wall, "cpu": cpu, "executors": executor_peaks, "driver": driver}


def measure(
    scale: int, data: Path, cluster: Cluster, warmup: Path, args: argparse.Namespace
) -> Row:
    started_load = load()
    implicit = run_implicit(data, args.implicit_sweeps, args.factors)
    walls = [float(x) for x in implicit["sweeps"]]  # type: ignore[attr-defined]
    print(
        f"    implicit sweeps {', '.join(f'{s:.1f}' for s in walls)} s, "
        f"peak {implicit['peak_gib']:.1f} GiB (load {load()})",
        flush=True,
    )
    checkpoints = Path(args.work) / "checkpoints"
    daemons = [d.pid for d in cluster.daemons]
    workers = [w.pid for w in cluster.workers]
    spark = run_spark(cluster.master_url, daemons, workers, data, warmup, args, checkpoints)
    users, artists = implicit["shape"]  # type: ignore[misc]
    return Row(
        scale=scale,
        users=int(users),
        artists=int(artists),
        train_rows=int(implicit["train_rows"]),  # type: ignore[call-overload]
        implicit_wall=walls,
        implicit_cpu=[float(x) for x in implicit["cpu"]],  # type: ignore[attr-defined]
        implicit_setup_s=float(implicit["setup_s"]),  # type: ignore[arg-type]
        implicit_peak_gib=float(implicit["peak_gib"]),  # type: ignore[arg-type]
        spark_wall=dict(spark["wall"]),  # type: ignore[call-overload]
        spark_cpu=dict(spark["cpu"]),  # type: ignore[call-overload]
        executor_peak_gib=list(spark["executors"]),  # type: ignore[call-overload]
        driver_peak_gib=float(spark["driver"]),  # type: ignore[arg-type]
        load=f"{started_load} -> {load()}",
    )


def print_rows(rows: list[Row], args: argparse.Namespace) -> None:
    print(
        f"\n{args.workers} Spark workers x 1 core, executor heap {args.worker_memory}, "
        f"driver {args.driver_memory}; {args.factors} factors; Spark fits of "
        f"{', '.join(map(str, args.sweeps))} sweeps; implicit {args.implicit_sweeps} sweeps\n"
    )
    print(
        "| scale | users | artists | train rows | implicit s/sweep | implicit core-s/sweep | "
        "Spark s/sweep | Spark core-s/sweep | Spark/implicit core-s | implicit 15-sweep fit s | "
        "Spark 15-sweep fit s | implicit peak GiB | Spark executor peak GiB (each) | "
        "Spark driver peak GiB | load |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        executors = ", ".join(f"{g:.1f}" for g in r.executor_peak_gib)
        print(
            f"| {r.scale}x | {r.users:,} | {r.artists:,} | {r.train_rows:,} | "
            f"{r.implicit_sweep_s:.1f} | {r.implicit_sweep_cpu:.1f} | {r.spark_sweep_s:.1f} | "
            f"{r.spark_sweep_cpu:.1f} | {r.spark_sweep_cpu / r.implicit_sweep_cpu:.1f}x | "
            f"{r.implicit_full_s():.0f} | {r.spark_full_s():.0f} | {r.implicit_peak_gib:.1f} | "
            f"{executors} | {r.driver_peak_gib:.1f} | {r.load} |"
        )
    print("\nraw: implicit s per sweep (core-s from sweep 2); Spark fit s (core-s) per sweep count")
    for r in rows:
        spark = ", ".join(
            f"{k} sweeps {v:.1f} s ({r.spark_cpu[k]:.0f} core-s)" for k, v in r.spark_wall.items()
        )
        implicit = ", ".join(f"{s:.1f}" for s in r.implicit_wall)
        cpu = ", ".join(f"{s:.1f}" for s in r.implicit_cpu)
        print(f"- {r.scale}x: implicit [{implicit}] s ([{cpu}] core-s); Spark [{spark}]")


class Line:
    """A least-squares line y = a + b x with 95% intervals (t with n - 2 dof)."""

    def __init__(self, x: list[float], y: list[float]) -> None:
        self.x, self.y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        fit = stats.linregress(self.x, self.y)
        self.a, self.b = float(fit.intercept), float(fit.slope)
        dof = len(self.x) - 2
        residual = self.y - (self.a + self.b * self.x)
        self.t = float(stats.t.ppf(0.975, dof)) if dof > 0 else math.inf
        self.s = math.sqrt(float(residual @ residual) / dof) if dof > 0 else math.inf
        self.sxx = float(((self.x - self.x.mean()) ** 2).sum())
        self.half = self.t * float(fit.stderr) if dof > 0 else math.inf  # the slope's

    def at(self, x: float) -> tuple[float, float]:
        """The line at ``x`` and the half-width of its 95% confidence band there."""
        spread = 1 / len(self.x) + (x - self.x.mean()) ** 2 / self.sxx
        return self.a + self.b * x, self.t * self.s * math.sqrt(spread)

    def solve(self, y0: float) -> tuple[float, float, float]:
        """Where the line reaches ``y0``, with a 95% interval (Fieller: the x whose band holds y0).

        Unbounded (inf) where the slope's own interval reaches zero.
        """
        x0 = (y0 - self.a) / self.b if self.b != 0 else math.inf
        if not self.b**2 > self.half**2:
            return x0, -math.inf, math.inf
        # (b^2 - h^2) u^2 - 2 b d u + d^2 - h^2 Sxx / n <= 0, u = x - mean(x), d = y0 - mean(y)
        n, h2, d = len(self.x), self.half**2, y0 - float(self.y.mean())
        curve = self.b**2 - h2
        root = math.sqrt(h2 * (d**2 + curve * self.sxx / n))
        lo, hi = sorted(((self.b * d - root) / curve, (self.b * d + root) / curve))
        return x0, float(self.x.mean()) + lo, float(self.x.mean()) + hi


def span(lo: float, hi: float, fmt: str = ",.0f") -> str:
    return f"{lo:{fmt}} to {hi:{fmt}}" if math.isfinite(lo) and math.isfinite(hi) else "unbounded"


def print_extrapolation(rows: list[Row], args: argparse.Namespace) -> None:
    if len(rows) < 2:
        print("\n(one scale only: no extrapolation)")
        return
    nnz = [r.train_rows / 1e6 for r in rows]
    base = rows[0].train_rows / rows[0].scale / 1e6  # train rows (millions) at 1x
    print("\nLinear fits in millions of training rows (slope, 95% interval):\n")
    fits = {
        "implicit core-s/sweep": [r.implicit_sweep_cpu for r in rows],
        "Spark core-s/sweep": [r.spark_sweep_cpu for r in rows],
        "Spark/implicit core-s": [r.spark_sweep_cpu / r.implicit_sweep_cpu for r in rows],
        "implicit peak GiB": [r.implicit_peak_gib for r in rows],
        "Spark executor peak GiB": [max(r.executor_peak_gib or [0.0]) for r in rows],
    }
    lines = {}
    for name, values in fits.items():
        line = lines[name] = Line(nnz, values)
        print(
            f"- {name} = {line.a:.2f} + {line.b:.3f} x rows(M)  "
            f"(slope {span(line.b - line.half, line.b + line.half, '.3f')})"
        )
    ratio = ", ".join(f"{r.scale}x {r.spark_sweep_cpu / r.implicit_sweep_cpu:.1f}" for r in rows)
    print(
        f"\nSpark core-seconds per sweep over implicit's: {ratio}. With linear scaling, a "
        "cluster needs that many times the cores of the machine implicit runs on to match "
        "its sweep time."
    )
    implicit, executor = lines["implicit peak GiB"], lines["Spark executor peak GiB"]
    print("\nWhere implicit stops fitting one machine (peak memory of the fit), and what Spark")
    print("then needs per worker (executor peak, extrapolated linearly in rows per worker);")
    print("in brackets 95% intervals: Fieller's for the crossing, the fit's band per worker:\n")
    print("| machine RAM | implicit fits up to | scale | Spark per worker, 8 / 32 / 128 workers |")
    print("|---:|---:|---:|---|")
    for ram in (24, 64, 256, 1024):
        rows_m, lo, hi = implicit.solve(ram) if implicit.b > 0 else (math.inf, 0.0, math.inf)
        per_worker = []
        for workers in (8, 32, 128):
            share = rows_m * args.workers / workers  # executor peak was for rows / args.workers
            gib, band = executor.at(share)
            per_worker.append(f"{gib:.1f} GiB [{span(gib - band, gib + band, '.1f')}]")
        print(
            f"| {ram} GiB | {rows_m:,.0f} M rows [{span(lo, hi)}] | {rows_m / base:,.0f}x "
            f"[{span(lo / base, hi / base)}] | {' / '.join(per_worker)} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    child = sub.add_parser("_implicit")
    child.add_argument("--data", type=Path, required=True)
    child.add_argument("--sweeps", type=int, required=True)
    child.add_argument("--factors", type=int, required=True)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument(
        "--results",
        type=Path,
        help="JSON file of rows: this run's scales replace theirs, the summary covers all "
        "(run one scale at a time and let other jobs in between)",
    )
    parser.add_argument(
        "--summary", action="store_true", help="only print the summary of the rows in --results"
    )
    parser.add_argument("--data-1x", type=Path, help="a prepared 1x dataset to reuse (read only)")
    parser.add_argument("--work", default=tempfile.gettempdir(), help="for 2x/4x data (deleted)")
    parser.add_argument("--sweeps", type=int, nargs="+", default=[1, 3], help="Spark fits")
    parser.add_argument("--implicit-sweeps", type=int, default=5)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-memory", default="5g")
    parser.add_argument("--driver-memory", default="3g")
    parser.add_argument(
        "--base",
        type=int,
        nargs=2,
        default=[BASE_USERS, BASE_ARTISTS],
        help="users and artists at 1x (smaller for a smoke run)",
    )
    args = parser.parse_args()
    if args.command == "_implicit":
        implicit_child(args)
        return
    if args.summary:
        if args.results is None or not args.results.exists():
            raise SystemExit("--summary needs --results FILE with rows from earlier runs")
        rows = [Row(**r) for r in json.loads(args.results.read_text())]
        print_rows(rows, args)
        print_extrapolation(rows, args)
        return
    run(args)


def run(args: argparse.Namespace) -> None:
    import implicit
    import pyspark

    from musicrec.data.prepare import PrepareConfig, prepare
    from musicrec.data.synth import synthesize

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / GIB:.0f} GiB; Python "
        f"{platform.python_version()}, implicit {implicit.__version__}, pyspark "
        f"{pyspark.__version__}; load {load()} (shared machine)",
        flush=True,
    )
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="musicrec-bench-cluster-", dir=args.work) as tmp:
        work = Path(tmp)
        args.work = str(work)
        warmup = work / "warmup"
        synthesize(work / "warmup-raw", n_users=20_000, n_artists=10_000, seed=0)
        prepare("lastfm360k", work / "warmup-raw", warmup, PrepareConfig())
        cluster_dir = work / "cluster"
        memory = args.worker_memory
        cluster = start_cluster(cluster_dir, args.workers, memory=memory, port=0, webui_port=0)
        try:
            print(f"cluster {cluster.master_url}, {args.workers} workers x 1 core", flush=True)
            for scale in args.scales:
                print(f"\n{scale}x:", flush=True)
                reuse = scale == 1 and args.data_1x is not None
                data = args.data_1x if reuse else make_dataset(work, scale, tuple(args.base))
                rows.append(measure(scale, data, cluster, warmup, args))
                if not reuse:
                    shutil.rmtree(data)
        finally:
            stop_cluster(cluster_dir)
    if args.results is not None:
        kept = []
        if args.results.exists():
            kept = [Row(**r) for r in json.loads(args.results.read_text())]
        rows = sorted([r for r in kept if r.scale not in args.scales] + rows, key=lambda r: r.scale)
        partial = args.results.with_name(args.results.name + ".partial")
        partial.write_text(json.dumps([asdict(r) for r in rows], indent=1))
        partial.replace(args.results)  # a whole file or the old one, never half of one
    print_rows(rows, args)
    print_extrapolation(rows, args)


if __name__ == "__main__":
    main()
