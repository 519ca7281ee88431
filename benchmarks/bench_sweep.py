"""Sweep throughput on a local Dask cluster: 1 against 2 worker processes.

The sweep is the shipped ``noise_sweep`` config (Japanese Vowels, LSTM(14),
all four training modes) cut to 3 epochs, 2 noise levels and 4 seeds: 8
tasks of several seconds each (training, programming, evaluation and the
run folder's figures), so that the cluster's own overhead is small.

A local cluster of each size is started (timed on its own) and every
worker is warmed up (imports and loading the cached numba kernels, which
each new worker process pays once). Then the serial loop, the 1-worker
and the 2-worker sweep take turns, each into a fresh folder; best of
``REPEATS`` each. The serial loop (in this process, one BLAS thread, no
Dask) shows the overhead of Dask itself. The speed-up is the 1-worker time
over the 2-worker time; the goal is at least 1.7 on a 2-core machine.
Other work on the machine lowers it: the load averages before and after
are recorded, and so are the cores the workers actually got (their CPU
seconds over the wall time) and how many tasks ran at once.

Run ``python benchmarks/bench_sweep.py``; it prints a markdown table and
writes ``benchmarks/results/sweep.json``.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import dask
from _common import write_result
from threadpoolctl import threadpool_limits

from lstm_hw.config import load_config
from lstm_hw.results import package_versions
from lstm_hw.sweep import local_cluster, plan_tasks, run_sweep, run_task, task_config

logger = logging.getLogger(__name__)

REPEATS = 3
OVERRIDES = [
    "training.epochs=3",
    "sweep.repeats=4",
    "sweep.grid.device.prog_noise=[0.0, 8e-6]",
]


def _warm_up() -> float:
    """Import the package and load every kernel once in this process [s]."""
    from lstm_hw.experiment import run_experiment

    start = time.perf_counter()
    cfg = load_config(
        "noise_sweep",
        [
            "training.epochs=1",
            "sweep.grid={}",
            "sweep.repeats=1",
            "network.hidden_size=2",
        ],
    )
    with tempfile.TemporaryDirectory() as folder:
        run_experiment(cfg, folder)
    return time.perf_counter() - start


def _cpu_seconds() -> float:
    """CPU time of this process so far [s] (user + system)."""
    return time.process_time()


class _Cluster:
    """A started and warmed-up local cluster (start and warm-up timed)."""

    def __init__(self, n_workers: int):
        from distributed import Client

        self.n_workers = n_workers
        t0 = time.perf_counter()
        self.cluster = local_cluster(n_workers)
        self.client = Client(self.cluster)
        self.client.wait_for_workers(n_workers, timeout=120)
        self.start_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        self.client.run(_warm_up)
        self.warm_up_seconds = time.perf_counter() - t0
        self.sweep_seconds: list[float] = []
        self.cores: list[float] = []
        self.at_once: list[float] = []

    def sweep(self, cfg, out: Path) -> None:
        """Time one sweep, with the cores the workers got and tasks at once."""
        cpu0 = sum(self.client.run(_cpu_seconds).values())
        t0 = time.perf_counter()
        result = run_sweep(cfg, out, client=self.client, argv=["bench_sweep"])
        wall = time.perf_counter() - t0
        cpu = sum(self.client.run(_cpu_seconds).values()) - cpu0
        if not result.ok:
            raise RuntimeError(f"tasks failed: {result.failed}")
        self.sweep_seconds.append(wall)
        self.cores.append(cpu / wall)
        self.at_once.append(sum(row["wall_seconds"] for row in result.rows) / wall)
        shutil.rmtree(out)

    def record(self) -> dict:
        return {
            "start_seconds": self.start_seconds,
            "warm_up_seconds": self.warm_up_seconds,
            "sweep_seconds": self.sweep_seconds,
            "worker_cpu_per_wall": self.cores,
            "tasks_at_once": self.at_once,
        }

    def close(self) -> None:
        self.client.close()
        self.cluster.close()


def time_serial(cfg, out: Path) -> float:
    """The same tasks one after the other in this process, without Dask."""
    t0 = time.perf_counter()
    with threadpool_limits(1):
        for task in plan_tasks(cfg):
            result = run_task(task, task_config(cfg, task), out / task.folder)
            if result["status"] != "ok":
                raise RuntimeError(result["error"])
    seconds = time.perf_counter() - t0
    shutil.rmtree(out)
    return seconds


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    import distributed  # noqa: F401  (sets its loggers' levels on import)

    logging.getLogger("distributed").setLevel(logging.WARNING)
    cfg = load_config("noise_sweep", OVERRIDES)
    n_tasks = len(plan_tasks(cfg))
    load_before = os.getloadavg()
    with threadpool_limits(1):
        _warm_up()
    # Both clusters stay up (idle workers cost next to nothing) so that the
    # three variants can take turns: a change of the machine's load during
    # the benchmark then affects them alike.
    clusters = [_Cluster(1), _Cluster(2)]
    serial = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(REPEATS):
                serial.append(time_serial(cfg, Path(tmp) / f"serial-{r}"))
                for c in clusters:
                    c.sweep(cfg, Path(tmp) / f"workers{c.n_workers}-{r}")
    finally:
        for c in clusters:
            c.close()
    one, two = (c.record() for c in clusters)
    load_after = os.getloadavg()
    best = {
        "serial": min(serial),
        "1 worker": min(one["sweep_seconds"]),
        "2 workers": min(two["sweep_seconds"]),
    }
    ref = best["1 worker"]
    print(
        f"Sweep of {n_tasks} tasks (noise_sweep, {', '.join(OVERRIDES)}), "
        f"best of {REPEATS}; load average before {load_before[0]:.2f}, "
        f"after {load_after[0]:.2f}\n"
    )
    print("| run | sweep time [s] | s per task | speed-up vs 1 worker |")
    print("|---|---:|---:|---:|")
    for name, seconds in best.items():
        print(
            f"| {name} | {seconds:.1f} | {seconds / n_tasks:.2f} | "
            f"{ref / seconds:.2f}x |"
        )
    print(
        f"\nCluster start: {one['start_seconds']:.1f} s (1 worker), "
        f"{two['start_seconds']:.1f} s (2 workers); worker warm-up "
        f"{one['warm_up_seconds']:.1f} s and {two['warm_up_seconds']:.1f} s."
    )
    end_to_end = (one["start_seconds"] + one["warm_up_seconds"] + ref) / (
        two["start_seconds"] + two["warm_up_seconds"] + best["2 workers"]
    )
    print(f"Speed-up including start and warm-up: {end_to_end:.2f}x")
    for name, run in (("1 worker", one), ("2 workers", two)):
        print(
            f"{name}: tasks running at once "
            + ", ".join(f"{c:.2f}" for c in run["tasks_at_once"])
            + "; cores used by the workers (CPU s / wall s) "
            + ", ".join(f"{c:.2f}" for c in run["worker_cpu_per_wall"])
        )
    record = {
        "benchmark": "sweep",
        "config": "noise_sweep",
        "overrides": OVERRIDES,
        "n_tasks": n_tasks,
        "repeats": REPEATS,
        "serial_seconds": serial,
        "one_worker": one,
        "two_workers": two,
        "best_seconds": best,
        "speedup_2_over_1": ref / best["2 workers"],
        "speedup_1_worker_over_serial": best["serial"] / ref,
        "speedup_2_over_1_end_to_end": end_to_end,
        "goal_speedup": 1.7,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "versions": {**package_versions(), "dask": dask.__version__},
    }
    print(f"\nwrote {write_result('sweep', record)}")


if __name__ == "__main__":
    main()
