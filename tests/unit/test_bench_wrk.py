"""benchmarks/bench_wrk.py: the parts that need no server (Lua generation, result parsing)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_wrk.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_wrk", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_wrk"] = module
    spec.loader.exec_module(module)
    return module


def test_parse_wrk_reads_the_done_line(bench: ModuleType) -> None:
    stdout = (
        "Running 10s test @ http://127.0.0.1:8000\n  1 threads and 8 connections\n"
        f'{bench.RESULT_MARK}{{"requests": 12000, "duration_us": 10000000, "connect": 0, '
        '"read": 1, "write": 0, "status": 2, "timeout": 0, "p50_us": 5200, "p90_us": 8000, '
        '"p99_us": 14100, "max_us": 30000, "mean_us": 6000.5}\n'
    )
    row = bench.parse_wrk(stdout)
    assert row["rps"] == pytest.approx(1200.0)
    assert row["p50_ms"] == pytest.approx(5.2) and row["p99_ms"] == pytest.approx(14.1)
    assert row["errors"] == 3 and row["non_2xx"] == 2
    with pytest.raises(ValueError, match="no result line"):
        bench.parse_wrk("wrk: connection refused\n")


def test_lua_script_escapes_every_byte(bench: ModuleType) -> None:
    assert bench.lua_string('a"b\\c') == '"a\\034b\\092c"'
    assert bench.lua_string("Björk") == '"Bj\\195\\182rk"'
    script = bench.lua_script(
        [("GET", "/users/x/recommendations?k=10", None), ("POST", "/recommend", '{"k": 1}')]
    )
    assert '{"GET", "/users/x/recommendations?k=10", nil},' in script
    assert '{"POST", "/recommend", "{\\034k\\034: 1}"},' in script
    assert bench.RESULT_MARK in script and "%%" not in script


def test_impression_cost_sets_a_stalled_cell_aside_in_the_trimmed_interval(
    bench: ModuleType,
) -> None:
    def cell(setting: str, p99: float) -> dict[str, object]:
        return dict(scenario="user", workers=2, connections=1, impressions=setting,
                    p50_ms=p99 / 2, p99_ms=p99, workers_cpu_ms=p99 / 3)  # fmt: skip

    on = [cell("on", p) for p in (2.0, 2.1, 2.2, 2.0, 2.3, 2.1)]
    off = [cell("off", p) for p in (1.5, 1.6, 110.0, 1.4, 1.5, 1.6)]  # one cell hit a stall
    (found,) = bench.impression_cost(on + off)
    mean, trimmed = found["p99_ms"], found["p99_ms"]["trimmed"]
    assert mean["difference"] < -15 and mean["low"] < 0 < mean["high"]  # the stall decides
    assert 0.4 < trimmed["difference"] < 0.7 < trimmed["high"] < 1.0 and trimmed["low"] > 0.3
