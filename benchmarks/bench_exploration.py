"""Exploration benchmark: the position marginals, exact and Monte-Carlo, their error and cost.

For ``--lists`` lists sampled Plackett-Luce from ``--candidates`` scores (standard normal, as
standardised model scores are) at ``--temperature``, it estimates each shown artist's marginal
probability of its position with ``n`` prefixes (``position_marginals``), for several ``n``,
and compares it with the exact marginals (``exact_marginals``). Prints a Markdown table:
relative error (median, 95th percentile and largest over lists and positions), and the time
of one ``sample_list`` call (the list, its step propensities and its marginals), median over
the lists; the last row is ``sample_list`` with the exact marginals, its default.

An inverse propensity weight is 1/marginal, so a 5 % error in the marginal is a 5 % error in
that impression's weight, and a rare 90 % one multiplies it by ten.

Usage::

    python benchmarks/bench_exploration.py
    python benchmarks/bench_exploration.py --candidates 100 --k 20 --temperature 0.5
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from musicrec.online.explore import exact_marginals, log_weights, position_marginals, sample_list

SIZES = (16, 32, 64, 128, 256, 512, 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=50)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--lists", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    load_before = os.getloadavg()
    errors: dict[int, list[float]] = {n: [] for n in SIZES}
    times: dict[int | None, list[float]] = {n: [] for n in (*SIZES, None)}
    for _ in range(args.lists):
        scores = rng.normal(size=args.candidates)
        log_w = log_weights(scores, args.temperature)
        order = sample_list(scores, args.k, args.temperature, rng, 1).order
        truth = exact_marginals(log_w, order)
        for n in SIZES:
            estimate = position_marginals(log_w, order, rng, n)
            errors[n] += list(np.abs(estimate[1:] / truth[1:] - 1))  # position 0 is exact
            started = time.perf_counter()
            sample_list(scores, args.k, args.temperature, rng, n)
            times[n].append(time.perf_counter() - started)
        started = time.perf_counter()
        sample_list(scores, args.k, args.temperature, rng)
        times[None].append(time.perf_counter() - started)
    print(f"load average (1/5/15 min) before: {load_before}, after: {os.getloadavg()}")
    print(
        f"{args.lists} lists of k={args.k} from {args.candidates} candidates, "
        f"temperature {args.temperature:g}; reference: the exact marginals\n"
    )
    print("| marginals | rel. error p50 | rel. error p95 | largest | sample_list, median |")
    print("|---|---:|---:|---:|---:|")
    for n in SIZES:
        p50, p95 = np.percentile(errors[n], [50, 95])
        cost = np.median(times[n]) * 1e3
        print(f"| {n} prefixes | {p50:.1%} | {p95:.1%} | {max(errors[n]):.1%} | {cost:.2f} ms |")
    print(f"| exact (default) | - | - | - | {np.median(times[None]) * 1e3:.2f} ms |")


if __name__ == "__main__":
    main()
