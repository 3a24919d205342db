"""Check ``musicrec data prepare --protocol ratio`` against RecBole's own split arithmetic.

    python benchmarks/check_recbole_split.py [--version 1.2.1] [--max-size 5000]

Downloads the RecBole wheel from PyPI (``pip download --no-deps``: nothing is installed, the
same route as ``movielens100k.py``), reads ``Dataset._calcu_split_ids`` out of
``recbole/data/dataset/dataset.py`` and runs it (only that method, with NumPy) for every user
size up to ``--max-size`` and several ratio sets, next to
:func:`musicrec.data.splitting.ratio_counts`. Prints one line per ratio set and exits 1 on the
first difference. RecBole-GNN's published Last.fm table ran on RecBole 1.1.1; both 1.1.1 and
1.2.1 carry the same method.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from musicrec.data.splitting import ratio_counts

MEMBER = "recbole/data/dataset/dataset.py"
RATIO_SETS = ((0.8, 0.1, 0.1), (0.7, 0.1, 0.2), (0.6, 0.2, 0.2), (8, 1, 1), (0.8, 0.2), (1, 1, 1))


def recbole_split_ids(version: str, cache: Path) -> Callable[..., Any]:
    """RecBole's ``_calcu_split_ids`` as a plain function, compiled from the wheel's source."""
    wheels = list(cache.glob(f"recbole-{version}-*.whl"))
    if not wheels:
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache)]
        subprocess.run([*pip, f"recbole=={version}"], check=True)
        wheels = list(cache.glob(f"recbole-{version}-*.whl"))
    with zipfile.ZipFile(wheels[0]) as wheel:
        source = wheel.read(MEMBER).decode("utf-8")
    method = next(
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef) and node.name == "_calcu_split_ids"
    )
    namespace: dict[str, Any] = {"np": np}
    exec(compile(ast.Module([method], []), MEMBER, "exec"), namespace)
    return namespace["_calcu_split_ids"]  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default="1.2.1")
    parser.add_argument("--max-size", type=int, default=5000)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "recbole")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    split_ids = recbole_split_ids(args.version, args.cache)
    sizes = np.arange(1, args.max_size + 1)
    for ratios in RATIO_SETS:
        total = sum(ratios)
        shares = [r / total for r in ratios]  # RecBole's split_by_ratio normalizes first
        theirs = np.array(
            [
                np.diff([0, *(int(i) for i in split_ids(None, int(n), shares)), int(n)])
                for n in sizes
            ]
        )
        ours = ratio_counts(sizes, ratios)
        differ = np.flatnonzero((theirs != ours).any(axis=1))
        label = ":".join(f"{r:g}" for r in ratios)
        if len(differ):
            first = differ[0]
            print(f"{label}: DIFFERENT at size {sizes[first]}: {theirs[first]} vs {ours[first]}")
            raise SystemExit(1)
        print(f"{label}: identical to RecBole {args.version} for every size 1..{args.max_size}")


if __name__ == "__main__":
    main()
