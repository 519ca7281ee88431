"""Monte-Carlo sweeps: one config run over a grid of settings and many seeds.

A config's ``[sweep]`` table names config keys with lists of values (the
grid) and a number of repeats. Every combination of values (a grid point)
is run with the seeds ``seed, seed + 1, ..., seed + repeats - 1``; each
(point, seed) pair is one *task*, the equivalent of one ``lstm-hw run``.

Tasks run on Dask (``dask.distributed``): a local cluster of worker
processes by default, or any running scheduler given by its address (a
``dask-scheduler`` with ``dask-worker`` processes, a SLURM allocation made
with dask-jobqueue, ...). The same code runs on one laptop and on a cluster.

A sweep folder holds::

    sweep.json      grid, repeats, resolved config, versions, command lines
    config.toml     the resolved config of the sweep
    results.csv     one row per finished task, rewritten as tasks finish
    summary.csv     per grid point, mode and metric: n, mean, std, median,
                    min, max over the seeds that succeeded
    summary.png     every metric against the swept value, mean and standard
                    deviation over seeds, one line per training mode
    runs/<index>-<setting>-seed<k>/
                    the full run folder of each task (as ``lstm-hw run``
                    writes it) plus ``task.json`` (wall time, worker,
                    status) and, after a failure, ``error.txt``

Running the same sweep again into the same folder skips every task whose
run folder holds ``metrics.json`` and continues the others (a task that
stopped half way keeps the modes it finished). A task that raises is
recorded with its error; the others go on.

Workers must import the same version of this package, and with a remote
scheduler the sweep folder must be on a file system that every worker
shares (each worker writes its task's run folder itself).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import re
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from crossbar.validation import check_number, fail
from lstm_hw.config import (
    Config,
    ConfigError,
    config_to_dict,
    dump_toml,
    schema_keys,
    with_overrides,
)
from lstm_hw.results import (
    RUN_MARKER,
    RunDirError,
    blas_libraries,
    package_versions,
    save_figure,
    write_csv,
    write_json,
    write_metadata,
    write_text,
)

logger = logging.getLogger(__name__)

__all__ = [
    "RESULTS_CSV",
    "SUMMARY_CSV",
    "SUMMARY_PNG",
    "SWEEP_MARKER",
    "TASK_INFO",
    "WORKER_ENV",
    "SchedulerError",
    "SweepDirError",
    "SweepResult",
    "SweepTask",
    "check_sweep_dir",
    "format_summary",
    "local_cluster",
    "plan_tasks",
    "result_row",
    "run_sweep",
    "run_task",
    "summarize",
    "summary_figure",
    "task_config",
]

SWEEP_MARKER = "sweep.json"
RESULTS_CSV = "results.csv"
SUMMARY_CSV = "summary.csv"
SUMMARY_PNG = "summary.png"
TASK_INFO = "task.json"
ERROR_FILE = "error.txt"
RUNS_SUBDIR = "runs"
_FORMAT = 1

# Environment of local worker processes: one task per process, each on one
# thread, so that n workers use n cores and numba or BLAS thread pools do
# not compete with the other workers.
WORKER_ENV = {
    "NUMBA_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}

# results.csv is rewritten at most this often while tasks finish [s] (and
# always at the end), so that large sweeps do not spend their time on it.
_CSV_INTERVAL = 1.0

# Metrics first in the tables, in this order; others follow by name.
_METRIC_ORDER = ("test_accuracy", "test_rmse", "programming_pulses", "train_seconds")

# Above this many panels per metric the summary figure is not drawn.
_MAX_PANELS = 16

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


class SweepDirError(RunDirError):
    """A sweep folder cannot be used without mixing or losing results."""


class SchedulerError(ConnectionError):
    """The Dask scheduler cannot be reached."""


# ---------------------------------------------------------------------------
# Tasks


@dataclass(frozen=True)
class SweepTask:
    """One run of a sweep: a grid point and a seed.

    Attributes
    ----------
    index : int
        Position in the sweep (grid points in order, seeds fastest).
    point : dict
        Swept config key -> value of this task (empty without a grid).
    seed : int
        Seed of the run.
    folder : str
        Run folder relative to the sweep folder, ``runs/<index>-<setting>-seed<k>``.
    """

    index: int
    point: dict = field(hash=False)
    seed: int
    folder: str

    def label(self) -> str:
        """``"device.prog_noise=2e-06 seed 1"``, for messages."""
        parts = [f"{k}={_short(v)}" for k, v in self.point.items()]
        return " ".join([*parts, f"seed {self.seed}"])


def _short(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _folder_name(index: int, width: int, point: Mapping, seed: int) -> str:
    setting = "-".join(
        f"{key.rpartition('.')[2]}_{_short(value)}" for key, value in point.items()
    )
    setting = _UNSAFE.sub("_", setting)[:80].strip("_-.")
    parts = [f"{index:0{width}d}", *([setting] if setting else []), f"seed{seed}"]
    return "-".join(parts)


def plan_tasks(cfg: Config) -> list[SweepTask]:
    """Every task of the sweep of ``cfg``, in order.

    The grid points are the cartesian product of ``cfg.sweep.grid`` (the
    last key varying fastest); each point runs ``cfg.sweep.repeats`` times
    with seeds ``cfg.seed + r``. The index (zero-padded to at least three
    digits) keeps folder names unique even where two values print alike.

    Raises
    ------
    ConfigError
        If the grid varies ``seed`` (the repeats set the seeds).
    """
    if "seed" in cfg.sweep.grid:
        raise ConfigError(
            "sweep.grid cannot vary 'seed': each grid point runs with the seeds "
            "seed, seed+1, ..., seed+repeats-1; set sweep.repeats instead"
        )
    points = cfg.sweep.points() if cfg.sweep.grid else [{}]
    repeats = cfg.sweep.repeats
    width = max(3, len(str(len(points) * repeats - 1)))
    tasks = []
    for p, point in enumerate(points):
        for r in range(repeats):
            index = p * repeats + r
            seed = cfg.seed + r
            name = _folder_name(index, width, point, seed)
            tasks.append(SweepTask(index, dict(point), seed, f"{RUNS_SUBDIR}/{name}"))
    return tasks


def task_config(cfg: Config, task: SweepTask) -> Config:
    """The config of one task: the sweep's config at the task's point and seed.

    The result has no sweep grid, so its ``config.toml`` is a plain run
    config that ``lstm-hw run`` reproduces on its own.
    """
    changes = {"sweep.grid": {}, "sweep.repeats": 1, **task.point, "seed": task.seed}
    return with_overrides(cfg, changes)


# ---------------------------------------------------------------------------
# The work of one task (runs in a worker)


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return "local"


class _ThreadFilter(logging.Filter):
    """Passes the records of one thread (workers may run several tasks)."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread == self.thread


@contextmanager
def _task_log(run_dir: Path, in_worker: bool):
    """Send this thread's ``lstm_hw`` and ``crossbar`` logs to run.log.

    In a Dask worker the levels are lowered to INFO so that run.log is as
    complete as that of ``lstm-hw run``; elsewhere the caller's logging
    setup decides what is recorded.
    """
    handler = logging.FileHandler(run_dir / "run.log", mode="a", encoding="utf-8")
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    handler.addFilter(_ThreadFilter())
    counter = _WarningCounter()
    names = ["lstm_hw", "crossbar"]
    if in_worker:
        # Warnings go to run.log and are counted, instead of to the
        # worker's stderr where they would lose the task they belong to.
        logging.captureWarnings(True)
        names.append("py.warnings")
    ours = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in ours]
    for lg in ours:
        if in_worker and (lg.level == logging.NOTSET or lg.level > logging.INFO):
            lg.setLevel(logging.INFO)
        lg.addHandler(handler)
    ours[-1].addHandler(counter)
    try:
        yield counter
    finally:
        ours[-1].removeHandler(counter)
        for lg, level in zip(ours, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
        handler.close()


class _WarningCounter(logging.Handler):
    """Counts the warnings of this thread captured through logging."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.addFilter(_ThreadFilter())
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def run_task(task: SweepTask, cfg: Config, run_dir, argv: Sequence[str] = ()) -> dict:
    """Run one task into ``run_dir``; never raises for a failing run.

    Writes the run's metadata (``config.toml``, ``run.json``) unless the
    folder holds an earlier attempt, whose finished modes are then kept,
    runs :func:`lstm_hw.experiment.run_experiment`, and writes
    ``task.json`` (and ``error.txt`` with the traceback after a failure).

    Parameters
    ----------
    task : SweepTask
        The task (its point and seed are recorded in ``task.json``).
    cfg : Config
        The task's config (:func:`task_config`).
    run_dir : str or Path
        The task's run folder (created if missing).
    argv : sequence of str
        Command line of the sweep, recorded in ``run.json``.

    Returns
    -------
    dict
        ``metrics`` (the content of ``metrics.json``, or None after a
        failure), ``status`` (``"ok"`` or ``"failed"``), ``error``,
        ``warnings`` (how many were recorded in run.log; in a Dask worker
        every Python warning is), ``wall_seconds``, ``worker``, ``host``,
        ``pid`` and ``finished``.
    """
    from lstm_hw.experiment import run_experiment

    start = time.perf_counter()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics, status, error = None, "ok", ""
    worker = _worker_address()
    with _task_log(run_dir, in_worker=worker != "local") as warned:
        try:
            resume = (run_dir / RUN_MARKER).is_file()
            if resume:
                logger.info("continuing the earlier attempt in %s", run_dir)
            else:
                write_metadata(run_dir, cfg, cfg.seed, list(argv))
            metrics = run_experiment(cfg, run_dir, resume=resume)
        except Exception as err:
            status, error = "failed", f"{type(err).__name__}: {err}"
            logger.exception("task %d (%s) failed", task.index, task.label())
            write_text(run_dir / ERROR_FILE, traceback.format_exc())
        else:
            with suppress(FileNotFoundError):
                (run_dir / ERROR_FILE).unlink()
    info = {
        "index": task.index,
        "point": task.point,
        "seed": task.seed,
        "status": status,
        "error": error,
        "warnings": warned.count,
        "wall_seconds": time.perf_counter() - start,
        "worker": worker,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "finished": datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    write_json(run_dir / TASK_INFO, info)
    return {"metrics": metrics, **info}


# ---------------------------------------------------------------------------
# Rows of results.csv


def _metric_rank(name: str) -> tuple:
    return (_METRIC_ORDER.index(name) if name in _METRIC_ORDER else 99, name)


def flatten_metrics(metrics: Mapping) -> dict[str, object]:
    """``metrics.json`` as flat columns: ``"<mode>.<metric>"`` and run-level keys.

    Run-level scalars (such as ``persistence_rmse``) keep their name; the
    task name and seed are left out (the row has them already).
    """
    out: dict[str, object] = {}
    for mode, values in metrics.get("modes", {}).items():
        for name in sorted(values, key=_metric_rank):
            out[f"{mode}.{name}"] = values[name]
    for name, value in metrics.items():
        if name in ("modes", "task", "seed"):
            continue
        if value is None or isinstance(value, int | float | str):
            out[name] = value
    return out


def result_row(
    task: SweepTask,
    metrics: Mapping | None,
    status: str = "ok",
    error: str = "",
    wall_seconds: float | None = None,
    worker: str = "",
    warnings: int | None = None,
) -> dict[str, object]:
    """One row of ``results.csv``."""
    row: dict[str, object] = {"index": task.index, **task.point, "seed": task.seed}
    if metrics is not None:
        row.update(flatten_metrics(metrics))
    row.update(
        {
            "wall_seconds": wall_seconds,
            "worker": worker,
            "warnings": warnings,
            "status": status,
            "error": error,
            "run": task.folder,
        }
    )
    return row


def _done_row(task: SweepTask, run_dir: Path) -> dict | None:
    """The row of a task finished earlier, from its run folder, or None."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        logger.warning("cannot read %s (%s); running the task again", path, err)
        return None
    info: dict = {}
    with suppress(OSError, ValueError):
        info = json.loads((run_dir / TASK_INFO).read_text(encoding="utf-8"))
    return result_row(
        task,
        metrics,
        wall_seconds=info.get("wall_seconds"),
        worker=str(info.get("worker", "")),
        warnings=info.get("warnings"),
    )


def _columns(rows: Iterable[Mapping], grid_keys: Sequence[str], modes) -> list[str]:
    """Column order: index, swept keys, seed, metrics by mode, then the rest."""
    head = ["index", *grid_keys, "seed"]
    tail = ["wall_seconds", "worker", "warnings", "status", "error", "run"]
    seen = list(dict.fromkeys(k for row in rows for k in row))
    metrics = [k for k in seen if k not in head and k not in tail]

    def rank(name: str) -> tuple:
        mode, _, metric = name.partition(".")
        if metric and mode in modes:
            return (0, modes.index(mode), _metric_rank(metric))
        return (1, 0, _metric_rank(name))

    return head + sorted(metrics, key=rank) + tail


# ---------------------------------------------------------------------------
# Summary statistics, table and figure


def _is_number(value) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(
        value, bool | np.bool_
    )


_NOT_METRICS = (
    "index",
    "seed",
    "wall_seconds",
    "worker",
    "warnings",
    "status",
    "error",
    "run",
)


def summarize(rows: Iterable[Mapping], cfg: Config) -> list[dict[str, object]]:
    """Statistics over seeds per grid point, mode and metric.

    Only tasks with status ``"ok"`` count. Returns one dict per (point,
    mode, metric) with the swept keys, ``mode`` (``"run"`` for run-level
    metrics), ``metric``, ``n``, ``mean``, ``std`` (sample standard
    deviation, 0 for one seed), ``median``, ``min`` and ``max``; points
    without a successful task have ``n = 0`` and empty statistics.
    """
    rows = [r for r in rows if r.get("status") == "ok"]
    keys = list(cfg.sweep.grid)
    points = cfg.sweep.points() if keys else [{}]
    metric_cols = [
        c for c in _columns(rows, keys, list(cfg.modes)) if c not in _NOT_METRICS
    ]
    metric_cols = [c for c in metric_cols if c not in keys]
    out = []
    for point in points:
        mine = [r for r in rows if all(r.get(k) == v for k, v in point.items())]
        for col in metric_cols:
            mode, _, metric = col.partition(".")
            if not metric or mode not in cfg.modes:
                mode, metric = "run", col
            values = np.array(
                [float(r[col]) for r in mine if _is_number(r.get(col))], dtype=float
            )
            stats: dict[str, object] = {"n": int(values.size)}
            if values.size:
                stats.update(
                    mean=float(values.mean()),
                    std=float(values.std(ddof=1)) if values.size > 1 else 0.0,
                    median=float(np.median(values)),
                    min=float(values.min()),
                    max=float(values.max()),
                )
            else:
                stats.update(mean=None, std=None, median=None, min=None, max=None)
            out.append({**point, "mode": mode, "metric": metric, **stats})
    return out


def _primary_metric(summary: Sequence[Mapping]) -> str | None:
    names = {s["metric"] for s in summary if s["mode"] != "run"}
    for name in ("test_accuracy", "test_rmse"):
        if name in names:
            return name
    return min(names, key=_metric_rank) if names else None


def format_summary(result: SweepResult) -> str:
    """Plain-text report: the main metric per grid point and mode, failures."""
    lines = []
    summary = result.summary
    metric = _primary_metric(summary)
    keys = list(result.grid)
    if metric is not None:
        modes = list(dict.fromkeys(s["mode"] for s in summary if s["mode"] != "run"))
        table = [[*(keys or ["setting"]), *modes]]
        points = [dict(p) for p in _points(result.grid)]
        for point in points:
            cells = []
            for mode in modes:
                match = [
                    s
                    for s in summary
                    if s["mode"] == mode
                    and s["metric"] == metric
                    and all(s.get(k) == v for k, v in point.items())
                ]
                s = match[0] if match else {"n": 0}
                if s["n"]:
                    cells.append(f"{s['mean']:.4g} +/- {s['std']:.2g} (n={s['n']})")
                else:
                    cells.append("-")
            label = [_short(point[k]) for k in keys] or ["base config"]
            table.append([*label, *cells])
        widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
        lines.append(f"{metric}: mean +/- standard deviation over seeds")
        for n, row in enumerate(table):
            lines.append(
                "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True))
            )
            if n == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.append("")
    n_tasks = len(result.rows)
    lines.append(
        f"{n_tasks - len(result.failed)} of {n_tasks} tasks ok "
        f"({result.ran} run now, {result.skipped} done before)"
    )
    if result.failed:
        lines.append(f"{len(result.failed)} failed:")
        for row in result.failed:
            lines.append(f"  {row['run']}: {row['error']}")
    return "\n".join(lines)


def _points(grid: Mapping[str, Sequence]) -> list[dict]:
    keys = list(grid)
    return [
        dict(zip(keys, combo, strict=True))
        for combo in itertools.product(*(grid[k] for k in keys))
    ]


def _axis_label(key: str) -> str:
    entry = schema_keys().get(key)
    unit = entry[1].unit if entry else ""
    return f"{key} [{unit}]" if unit else key


def summary_figure(
    summary: Sequence[Mapping], grid: Mapping[str, Sequence], modes: Sequence[str]
):
    """Each metric against the first swept key, mean and std over seeds.

    One row of panels per metric, one column per combination of the other
    swept keys' values (one per value of the second key for a 2-D grid),
    one line per training mode with a band of one standard deviation.
    Non-numeric swept values are placed at equal spacing. Returns a
    matplotlib figure, or None if there is nothing to draw or the grid
    needs more than 16 panels per metric.
    """
    from matplotlib.figure import Figure

    from lstm_hw.plots import COLORS

    keys = list(grid)
    metrics = sorted(
        {s["metric"] for s in summary if s["mode"] != "run"}, key=_metric_rank
    )
    if not metrics:
        return None
    x_key = keys[0] if keys else None
    x_values = list(grid[x_key]) if x_key else [None]
    other = {k: grid[k] for k in keys[1:]}
    panels = _points(other)
    if len(panels) > _MAX_PANELS:
        logger.warning(
            "the sweep grid needs %d panels per metric; not drawing %s (the "
            "numbers are in %s)",
            len(panels),
            SUMMARY_PNG,
            SUMMARY_CSV,
        )
        return None
    numeric = x_key is not None and all(_is_number(v) for v in x_values)
    xs = sorted(x_values) if numeric else x_values
    pos = np.array(xs, dtype=float) if numeric else np.arange(len(xs), dtype=float)
    # A plain Figure (no pyplot): no global state, safe in any thread.
    fig = Figure(figsize=(4.2 * len(panels) + 0.8, 3.0 * len(metrics) + 0.6))
    axes = fig.subplots(len(metrics), len(panels), squeeze=False, sharex=True)
    index = {}
    for s in summary:
        point = tuple(s.get(k) for k in keys)
        index[(point, s["mode"], s["metric"])] = s
    for i, metric in enumerate(metrics):
        for j, panel in enumerate(panels):
            ax = axes[i, j]
            for mode in modes:
                mean = np.full(len(xs), np.nan)
                std = np.full(len(xs), np.nan)
                for n, x in enumerate(xs):
                    point = {**({x_key: x} if x_key else {}), **panel}
                    s = index.get((tuple(point[k] for k in keys), mode, metric))
                    if s is not None and s["n"]:
                        mean[n], std[n] = s["mean"], s["std"]
                if np.all(np.isnan(mean)):
                    continue
                color = COLORS.get(mode)
                ax.plot(pos, mean, marker="o", ms=3.5, label=mode, color=color)
                ax.fill_between(pos, mean - std, mean + std, color=color, alpha=0.2)
            if i == 0 and panel:
                ax.set_title(", ".join(f"{k}={_short(v)}" for k, v in panel.items()))
            if metric == "programming_pulses" and ax.lines:
                # Pulse counts of offline and in-situ modes differ by decades.
                ax.set_yscale("log")
            if j == 0:
                ax.set_ylabel(metric.replace("_", " "))
            if i == len(metrics) - 1:
                ax.set_xlabel(_axis_label(x_key) if x_key else "")
            if not numeric:
                ax.set_xticks(pos, [_short(x) if x_key else "base config" for x in xs])
            ax.grid(alpha=0.3)
    legend = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    if legend:
        fig.legend(
            list(legend.values()),
            list(legend),
            loc="upper center",
            ncol=len(legend),
            frameon=False,
        )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))
    return fig


# ---------------------------------------------------------------------------
# The sweep folder


def _plain(obj):
    return json.loads(json.dumps(obj))


def _flat(data: Mapping, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def check_sweep_dir(sweep_dir, cfg: Config) -> dict | None:
    """Check, without writing, that ``sweep_dir`` can take the sweep of ``cfg``.

    Returns the content of its ``sweep.json`` when it holds an earlier start
    of the same sweep, None when it is missing or empty (a ``run.log``
    aside, the command line's log of this start).

    Raises
    ------
    SweepDirError
        If it is a file, holds other things, or a sweep of another config
        (the message names the keys that differ).
    """
    sweep_dir = Path(sweep_dir)
    marker = sweep_dir / SWEEP_MARKER
    if sweep_dir.exists() and not sweep_dir.is_dir():
        raise SweepDirError(f"sweep folder '{sweep_dir}' exists and is not a folder")
    if marker.is_file():
        try:
            info = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise SweepDirError(f"cannot read {marker}: {err}") from None
        config = _plain(config_to_dict(cfg))
        if not isinstance(info, dict) or info.get("config") != config:
            saved = info.get("config") if isinstance(info, dict) else None
            old, new = _flat(saved or {}), _flat(config)
            changed = sorted(
                k for k in old.keys() | new.keys() if old.get(k) != new.get(k)
            )
            raise SweepDirError(
                f"'{sweep_dir}' holds a sweep of another config (it differs in "
                f"{', '.join(changed[:6])}{', ...' if len(changed) > 6 else ''}); "
                "continue it with the same config and --set values, or choose "
                "another --out"
            )
        return info
    if sweep_dir.is_dir() and any(p.name != "run.log" for p in sweep_dir.iterdir()):
        raise SweepDirError(
            f"sweep folder '{sweep_dir}' is not empty and holds no {SWEEP_MARKER}; "
            "choose another --out"
        )
    return None


def _prepare_sweep_dir(sweep_dir: Path, cfg: Config, argv: Sequence[str]) -> bool:
    """Create or check the sweep folder; True if it holds an earlier start."""
    info = check_sweep_dir(sweep_dir, cfg)
    now = datetime.now().astimezone().isoformat(timespec="seconds")
    start = {"time": now, "command": list(argv)}
    if info is not None:
        info.setdefault("starts", []).append(start)
        write_json(sweep_dir / SWEEP_MARKER, info)
        return True
    sweep_dir.mkdir(parents=True, exist_ok=True)
    tasks = plan_tasks(cfg)
    info = {
        "format": _FORMAT,
        "name": cfg.name,
        "grid": {k: list(v) for k, v in cfg.sweep.grid.items()},
        "repeats": cfg.sweep.repeats,
        "seeds": [cfg.seed + r for r in range(cfg.sweep.repeats)],
        "n_points": len(tasks) // cfg.sweep.repeats,
        "n_tasks": len(tasks),
        "config": _plain(config_to_dict(cfg)),
        "versions": package_versions(),
        "blas": blas_libraries(),
        "starts": [start],
    }
    write_text(sweep_dir / "config.toml", dump_toml(cfg))
    write_json(sweep_dir / SWEEP_MARKER, info)
    return False


# ---------------------------------------------------------------------------
# Dask


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def local_cluster(n_workers: int | None = None, **kwargs):
    """A :class:`distributed.LocalCluster` of single-threaded worker processes.

    Parameters
    ----------
    n_workers : int, optional
        Worker processes; default one per core this process may use.
    **kwargs
        Passed on to ``LocalCluster`` (they override the defaults: one
        thread per worker, processes, the scheduler's web server on a free
        port, worker environment :data:`WORKER_ENV`).
    """
    import dask
    from distributed import LocalCluster

    if n_workers is None:
        n_workers = _default_workers()
    check_number("n_workers", n_workers, low=1, integer=True)
    options = {
        "n_workers": n_workers,
        "threads_per_worker": 1,
        "processes": True,
        # Any free port: a fixed one clashes with other clusters on the host.
        "dashboard_address": ":0",
        "env": dict(WORKER_ENV),
    }
    options.update(kwargs)
    # Set before each worker process starts, so that numba and the BLAS
    # libraries read them when they are first imported there.
    spawn_env = {**dask.config.get("distributed.nanny.pre-spawn-environ", {})}
    spawn_env.update(WORKER_ENV)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": spawn_env}):
        return LocalCluster(**options)


@contextmanager
def _client(client, scheduler: str | None, n_workers: int | None):
    """The client to use: the given one, one for ``scheduler``, or a local one."""
    if client is not None:
        yield client
        return
    from distributed import Client

    if scheduler is not None:
        try:
            remote = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as err:
            raise SchedulerError(
                f"cannot connect to the Dask scheduler at '{scheduler}': {err}"
            ) from None
        with remote:
            yield remote
        return
    with local_cluster(n_workers) as cluster, Client(cluster) as local:
        yield local


def _n_workers(client) -> int:
    try:
        return len(client.scheduler_info()["workers"])
    except Exception:  # only used for messages
        return 0


# ---------------------------------------------------------------------------
# Running a sweep


@dataclass
class SweepResult:
    """What a sweep produced.

    Attributes
    ----------
    sweep_dir : Path
        The sweep folder.
    grid : dict
        Swept key -> values.
    rows : list of dict
        One row of ``results.csv`` per task, by index.
    summary : list of dict
        The rows of ``summary.csv`` (see :func:`summarize`).
    ran, skipped : int
        Tasks run now; tasks found done in the folder and not run again.
    seconds : float
        Wall time of this call [s].
    """

    sweep_dir: Path
    grid: dict
    rows: list[dict]
    summary: list[dict]
    ran: int
    skipped: int
    seconds: float

    @property
    def failed(self) -> list[dict]:
        """The rows of the tasks that failed."""
        return [r for r in self.rows if r.get("status") != "ok"]

    @property
    def ok(self) -> bool:
        """Whether every task succeeded."""
        return not self.failed


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{int(minutes)} min {int(seconds % 60)} s"
    return f"{int(minutes // 60)} h {int(minutes % 60)} min"


class _Tracker:
    """Tasks done / total with the time left: a tqdm bar or log lines."""

    def __init__(self, total: int, done: int, to_run: int, bar: bool):
        self.total, self.done, self.to_run = total, done, to_run
        self.ran = self.failed = 0
        self.start = time.perf_counter()
        self.bar = None
        if bar and to_run:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, initial=done, desc="sweep", unit="task", file=sys.stderr
            )

    def finished(self, task: SweepTask, row: Mapping) -> None:
        self.done += 1
        self.ran += 1
        left = self.to_run - self.ran
        rate = (time.perf_counter() - self.start) / self.ran
        eta = f", about {_duration(rate * left)} left" if left else ""
        where = f" on {row['worker']}" if row.get("worker") else ""
        wall = row.get("wall_seconds")
        took = f" in {wall:.1f} s" if isinstance(wall, float) else ""
        n = row.get("warnings")
        warned = f" ({n} warning{'s' * (n > 1)} in its run.log)" if n else ""
        if row["status"] == "ok":
            logger.info(
                "task %d/%d done: %s%s%s%s%s",
                self.done,
                self.total,
                task.label(),
                took,
                where,
                warned,
                eta,
            )
        else:
            self.failed += 1
            logger.warning(
                "task %d/%d FAILED: %s%s: %s%s",
                self.done,
                self.total,
                task.label(),
                where,
                row["error"],
                eta,
            )
        if self.bar is not None:
            if self.failed:
                self.bar.set_postfix(failed=self.failed, refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_sweep(
    cfg: Config,
    sweep_dir,
    *,
    client=None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    progress: bool = False,
    argv: Sequence[str] | None = None,
) -> SweepResult:
    """Run every task of the sweep of ``cfg`` on Dask, writing ``sweep_dir``.

    Parameters
    ----------
    cfg : Config
        The config with its ``[sweep]`` table (grid and repeats).
    sweep_dir : str or Path
        The sweep folder: missing or empty for a new sweep, or the folder of
        an earlier start of the same sweep (same resolved config), whose
        finished tasks are kept and not run again.
    client : distributed.Client, optional
        Run on this client (left open). Otherwise ``scheduler`` or a local
        cluster is used and closed at the end.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``).
    n_workers : int, optional
        Worker processes of the local cluster; default one per core.
    progress : bool
        Draw a tqdm bar of the tasks (log lines are written either way).
    argv : sequence of str, optional
        Command line recorded in ``sweep.json`` and each ``run.json``;
        default ``sys.argv``.

    Returns
    -------
    SweepResult
        Rows of every task; failed tasks have status ``"failed"`` and their
        error, and do not stop the others.

    Raises
    ------
    SweepDirError
        If ``sweep_dir`` holds something other than this sweep.
    SchedulerError
        If ``scheduler`` cannot be reached.
    """
    if not isinstance(cfg, Config):
        fail("cfg", "a lstm_hw.config.Config", cfg)
    if client is not None and scheduler is not None:
        fail("scheduler", "None when a client is given", scheduler)
    if n_workers is not None:
        if client is not None or scheduler is not None:
            fail(
                "n_workers",
                "None when a client or scheduler is given (it sizes a local cluster)",
                n_workers,
            )
        check_number("n_workers", n_workers, low=1, integer=True)
    argv = list(sys.argv if argv is None else argv)
    start = time.perf_counter()
    sweep_dir = Path(sweep_dir).resolve()
    resumed = _prepare_sweep_dir(sweep_dir, cfg, argv)
    tasks = plan_tasks(cfg)
    grid_keys = list(cfg.sweep.grid)
    rows: dict[int, dict] = {}
    pending: list[tuple[SweepTask, Config]] = []
    for task in tasks:
        done = _done_row(task, sweep_dir / task.folder)
        if done is not None:
            rows[task.index] = done
            continue
        try:
            pending.append((task, task_config(cfg, task)))
        except ConfigError as err:
            rows[task.index] = result_row(
                task, None, status="failed", error=f"ConfigError: {err}"
            )
    skipped = len(rows) - sum(r["status"] != "ok" for r in rows.values())
    logger.info(
        "sweep '%s': %d grid points x %d seeds = %d tasks%s",
        cfg.name,
        len(tasks) // cfg.sweep.repeats,
        cfg.sweep.repeats,
        len(tasks),
        f", {skipped} done before" if resumed else "",
    )

    writer = _CsvWriter(sweep_dir / RESULTS_CSV, rows, grid_keys, list(cfg.modes))
    writer.write()
    ran = 0
    try:
        if pending:
            if client is None and scheduler is None:
                # No more worker processes than tasks: each costs a start-up.
                n_workers = min(n_workers or _default_workers(), len(pending))
            with _client(client, scheduler, n_workers) as dask_client:
                ran = _run_pending(
                    dask_client,
                    cfg,
                    sweep_dir,
                    pending,
                    rows,
                    writer,
                    argv,
                    progress,
                    len(tasks),
                )
    finally:
        # Also after an interruption: every finished task is in the table.
        writer.write()
    ordered = [rows[t.index] for t in tasks]
    summary = summarize(ordered, cfg)
    if summary:
        write_csv(sweep_dir / SUMMARY_CSV, summary)
    grid = {k: list(v) for k, v in cfg.sweep.grid.items()}
    fig = summary_figure(summary, grid, list(cfg.modes))
    if fig is not None:
        save_figure(fig, sweep_dir / SUMMARY_PNG)
    result = SweepResult(
        sweep_dir=sweep_dir,
        grid=grid,
        rows=ordered,
        summary=summary,
        ran=ran,
        skipped=skipped,
        seconds=time.perf_counter() - start,
    )
    if result.failed:
        logger.warning(
            "%d of %d tasks failed: %s",
            len(result.failed),
            len(tasks),
            ", ".join(r["run"] for r in result.failed),
        )
    return result


class _CsvWriter:
    """Rewrites results.csv from the rows so far, at most once a second."""

    def __init__(self, path: Path, rows: dict, grid_keys, modes):
        self.path, self.rows = path, rows
        self.grid_keys, self.modes = list(grid_keys), list(modes)
        self.last = -math.inf

    def write(self, throttle: bool = False) -> None:
        now = time.perf_counter()
        if throttle and now - self.last < _CSV_INTERVAL:
            return
        ordered = [self.rows[i] for i in sorted(self.rows)]
        write_csv(self.path, ordered, _columns(ordered, self.grid_keys, self.modes))
        self.last = now


def _run_pending(client, cfg, sweep_dir, pending, rows, writer, argv, bar, total):
    from distributed import as_completed

    n = _n_workers(client)
    logger.info(
        "running %d task%s on %s (%s)",
        len(pending),
        "" if len(pending) == 1 else "s",
        client.scheduler.address if client.scheduler else "the scheduler",
        f"{n} workers" if n else "no workers yet: waiting for them to connect",
    )
    futures = {}
    for task, task_cfg in pending:
        future = client.submit(
            run_task,
            task,
            task_cfg,
            str(sweep_dir / task.folder),
            argv,
            pure=False,
            key=f"lstm-hw-{cfg.name}-{task.index}-{time.time_ns():x}",
        )
        futures[future] = task
    tracker = _Tracker(total, total - len(pending), len(pending), bar)
    try:
        for future in as_completed(list(futures)):
            task = futures.pop(future)
            try:
                out = future.result()
                row = result_row(
                    task,
                    out["metrics"],
                    status=out["status"],
                    error=out["error"],
                    wall_seconds=out["wall_seconds"],
                    worker=out["worker"],
                    warnings=out["warnings"],
                )
            except Exception as err:  # the worker died or the task was lost
                row = result_row(
                    task, None, status="failed", error=f"{type(err).__name__}: {err}"
                )
            future.release()
            rows[task.index] = row
            tracker.finished(task, row)
            writer.write(throttle=True)
    except BaseException:
        if futures:
            client.cancel(list(futures))
        raise
    finally:
        tracker.close()
    return tracker.ran
