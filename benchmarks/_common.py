"""Timing and result files shared by the benchmark scripts."""

from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np

from lstm_hw.results import blas_libraries, package_versions, write_json

RESULTS = Path(__file__).parent / "results"


def best_time(fn, repeats: int) -> float:
    """Best wall time of ``fn()`` over ``repeats`` calls [s], after one warm-up."""
    fn()
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def interleaved_best_times(cases: dict, repeats: dict, rounds: int) -> dict:
    """Best time of every case [s], measured in ``rounds`` rounds that
    alternate between the cases (``repeats[name]`` calls each), so that a
    slow spell of a shared machine does not fall on one case only."""
    best = dict.fromkeys(cases, np.inf)
    for _ in range(rounds):
        for name, fn in cases.items():
            best[name] = min(best[name], best_time(fn, repeats[name]))
    return best


def write_result(name: str, data: dict, out: Path | None = None) -> Path:
    """Write ``data`` atomically to ``benchmarks/results/<name>.json`` (or
    ``out``), with the package versions, BLAS kernels and platform that
    produced it."""
    out = Path(out) if out is not None else RESULTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    environment = {
        "versions": package_versions(),
        "blas": blas_libraries(),
        "platform": platform.platform(),
    }
    write_json(out, {**data, "environment": environment})
    return out
