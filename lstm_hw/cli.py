"""The ``lstm-hw`` command line.

Subcommands::

    lstm-hw run [CONFIG] [--out DIR] [--seed N] [--set KEY=VALUE ...]
    lstm-hw run --resume DIR
    lstm-hw configs
    lstm-hw show CONFIG [--set KEY=VALUE ...] [--comments]
    lstm-hw check CONFIG [--set KEY=VALUE ...]
    lstm-hw sweep CONFIG [--scheduler ADDRESS] [--workers N] [--out DIR]
                         [--set KEY=VALUE ...]

A bad config, bad parameter or bad data file ends the command with one line
``error: ...`` on stderr and exit code 2 (add ``-v`` for the traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import textwrap
import time
import traceback
from collections.abc import Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from crossbar.validation import ParameterError
from lstm_hw import progress
from lstm_hw.config import (
    Config,
    ConfigError,
    dump_toml,
    list_shipped_configs,
    load_config,
    shipped_config_dir,
)
from lstm_hw.results import (
    RUN_MARKER,
    CheckpointError,
    RunDirError,
    new_run_dir,
    write_json,
    write_metadata,
)

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = "airline"
RUNS_DIR = Path("runs")
SWEEPS_DIR = Path("sweeps")
EXIT_TASKS_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# Log records with this attribute set go to run.log but not to the console.
_FILE_ONLY = "lstm_hw_file_only"

# Metric columns of the summary table, in this order; others follow sorted.
_METRIC_ORDER = (
    "test_rmse",
    "test_accuracy",
    "train_rmse",
    "train_accuracy",
    "train_seconds",
    "programming_pulses",
)

_SET_HELP = (
    "change one config key, e.g. --set device.prog_noise=8e-6 or "
    "--set modes='[\"ideal\"]'; the value is read as a TOML literal "
    "(otherwise as a string); repeat for several keys"
)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the hand-wrapped descriptions and examples as written."""


def _version() -> str:
    try:
        return metadata.version("lstm-hw")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that are the user's to fix: reported in one line."""
    errors: list[type[BaseException]] = [
        ParameterError,
        RunDirError,
        CheckpointError,
        FileNotFoundError,
        PermissionError,
        IsADirectoryError,
        NotADirectoryError,
    ]
    data = sys.modules.get("lstm_hw.data")
    if data is not None and hasattr(data, "DataError"):
        errors.append(data.DataError)
    return tuple(errors)


class _CommandError(Exception):
    """A usage problem found after parsing (exit code 2)."""


# ---------------------------------------------------------------------------
# Parser


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log debug messages and show tracebacks of errors",
    )


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help=_SET_HELP,
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``lstm-hw``."""
    parser = argparse.ArgumentParser(
        prog="lstm-hw",
        formatter_class=_Formatter,
        description=textwrap.dedent(
            """\
            Simulate memristor crossbar arrays running LSTM networks and
            compare ideal, offline, hardware-aware offline and in-situ
            training on the same task, split and seed.

            Start with 'lstm-hw run' (the airline task of Li et al. 2019),
            'lstm-hw configs' for the shipped configs, and
            'lstm-hw show CONFIG --comments' for every key with its meaning."""
        ),
    )
    parser.add_argument("--version", action="version", version=_version())
    _add_common(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    run = sub.add_parser(
        "run",
        help="train and evaluate the modes of a config, writing a run folder",
        formatter_class=_Formatter,
        description=textwrap.dedent(
            f"""\
            Load and check a config, create a run folder, train and evaluate
            every mode of the config and print a summary.

            The run folder (default {RUNS_DIR}/<name>-<YYYYmmdd-HHMMSS>) holds
            the resolved config (config.toml), run.json (seed, versions,
            command), metrics.json, per-epoch history, predictions,
            conductance snapshots, plots and run.log. An existing folder is
            never overwritten unless --overwrite is given.

            An interrupted run continues with 'lstm-hw run --resume DIR', using
            the config saved in DIR, and ends with the same numbers as an
            uninterrupted run."""
        ),
        epilog=textwrap.dedent(
            """\
            examples:
              lstm-hw run
              lstm-hw run japanese_vowels --seed 3
              lstm-hw run my_config.toml --set device.prog_noise=8e-6 --out runs/x
              lstm-hw run --resume runs/airline-20240101-120000"""
        ),
    )
    run.add_argument(
        "config",
        nargs="?",
        metavar="CONFIG",
        help=f"a TOML file or the name of a shipped config (default {DEFAULT_CONFIG})",
    )
    run.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="write the run to DIR (must be missing or empty unless --overwrite)",
    )
    run.add_argument(
        "--seed", type=int, metavar="N", help="seed of the run (overrides 'seed')"
    )
    _add_set(run)
    run.add_argument(
        "--resume",
        type=Path,
        metavar="DIR",
        help="continue the interrupted run in DIR with the config saved there",
    )
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the earlier run stored in --out DIR",
    )
    run.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        default=None,
        help="no progress bars (default: bars when stderr is a terminal)",
    )
    _add_common(run)

    configs = sub.add_parser(
        "configs",
        help="list the shipped configs",
        description="List the configs shipped with the package and what each "
        "one reproduces. Use their names as CONFIG.",
    )
    _add_common(configs)

    for name, text in (
        ("show", "print the resolved config (every key, defaults filled) as TOML"),
        ("check", "check a config without running anything"),
    ):
        p = sub.add_parser(name, help=text, description=text[0].upper() + text[1:])
        p.add_argument(
            "config", metavar="CONFIG", help="a TOML file or a shipped config name"
        )
        _add_set(p)
        if name == "show":
            p.add_argument(
                "--comments",
                action="store_true",
                help="write each key's meaning, unit, allowed values and default",
            )
        _add_common(p)
    _add_sweep_parser(sub)
    return parser


def _add_sweep_parser(sub) -> None:
    sweep = sub.add_parser(
        "sweep",
        help="run a config over its [sweep] grid and seeds on Dask",
        formatter_class=_Formatter,
        description=textwrap.dedent(
            f"""\
            Run every combination of the values in the config's [sweep.grid]
            table, each with the seeds seed, seed+1, ..., seed+repeats-1. Each
            (setting, seed) is one task, the equivalent of 'lstm-hw run',
            writing its own run folder under DIR/runs/.

            Without --scheduler the tasks run on a local Dask cluster of
            single-threaded worker processes (one per core, or --workers N).
            With --scheduler they run on the workers of a running Dask
            scheduler (dask-scheduler and dask-worker, or a SLURM allocation
            made with dask-jobqueue); DIR must then be on a file system that
            every worker shares.

            DIR (default {SWEEPS_DIR}/<name>-<YYYYmmdd-HHMMSS>) receives
            results.csv (one row per task, rewritten as tasks finish),
            summary.csv and summary.png (each metric against the swept value,
            mean and spread over seeds per training mode), sweep.json and
            config.toml. Running the same command again with the same --out
            skips the tasks already done. Exit code 1 if any task failed."""
        ),
        epilog=textwrap.dedent(
            """\
            examples:
              lstm-hw sweep noise_sweep --out sweeps/noise
              lstm-hw sweep noise_sweep --out sweeps/noise --workers 2
              lstm-hw sweep my.toml --scheduler tcp://10.0.0.5:8786 --out /shared/s
              lstm-hw sweep noise_sweep --set sweep.repeats=10 --out sweeps/n10"""
        ),
    )
    sweep.add_argument(
        "config", metavar="CONFIG", help="a TOML file or a shipped config name"
    )
    sweep.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="address of a running Dask scheduler, e.g. tcp://host:8786 "
        "(default: start a local cluster)",
    )
    sweep.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes of the local cluster (default: one per core)",
    )
    sweep.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="the sweep folder: new, empty, or an earlier start of this sweep "
        "to continue",
    )
    _add_set(sweep)
    sweep.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        default=None,
        help="no progress bar (default: a bar when stderr is a terminal)",
    )
    _add_common(sweep)


# ---------------------------------------------------------------------------
# Commands


def _cmd_configs(args) -> int:
    rows = list_shipped_configs()
    width = max((len(n) for n, _ in rows), default=4) + len(" (default)")
    for name, desc in rows:
        label = f"{name} (default)" if name == DEFAULT_CONFIG else name
        print(f"{label:<{width}}  {desc}")
    print(f"\nshipped in {shipped_config_dir()}")
    return 0


def _cmd_show(args) -> int:
    cfg = load_config(args.config, args.overrides)
    sys.stdout.write(dump_toml(cfg, comments=args.comments))
    return 0


def _cmd_check(args) -> int:
    cfg = load_config(args.config, args.overrides)
    print(
        f"ok: config '{cfg.name}' is valid (task {cfg.task.name}, "
        f"modes {', '.join(cfg.modes)})"
    )
    return 0


def _load_for_run(args) -> tuple[Config, Path | None]:
    """The config of the run and, for --resume, its existing folder."""
    if args.resume is None:
        overrides = list(args.overrides)
        if args.seed is not None:
            overrides.append(f"seed={args.seed}")
        return load_config(args.config or DEFAULT_CONFIG, overrides), None
    clash = [
        flag
        for flag, given in (
            ("CONFIG", args.config is not None),
            ("--set", bool(args.overrides)),
            ("--seed", args.seed is not None),
            ("--out", args.out is not None),
            ("--overwrite", args.overwrite),
        )
        if given
    ]
    if clash:
        raise _CommandError(
            f"--resume continues a run with its saved config; drop {', '.join(clash)}"
        )
    run_dir = args.resume
    saved = run_dir / "config.toml"
    if (
        not run_dir.is_dir()
        or not saved.is_file()
        or not (run_dir / RUN_MARKER).is_file()
    ):
        raise _CommandError(
            f"cannot resume '{run_dir}': not a run folder (it needs config.toml "
            f"and {RUN_MARKER})"
        )
    return load_config(saved), run_dir


def _cmd_run(args) -> int:
    cfg, resume_dir = _load_for_run(args)
    show_progress = args.progress
    if show_progress is None:
        show_progress = sys.stderr.isatty()
    # Imported here: it pulls in the numerical kernels, and the other
    # commands do not need them.
    from lstm_hw.experiment import run_experiment

    if resume_dir is None:
        run_dir = new_run_dir(RUNS_DIR, cfg.name, args.out, args.overwrite)
    else:
        run_dir = resume_dir
    with _run_logging(run_dir, args.verbose, show_progress):
        if resume_dir is None:
            write_metadata(run_dir, cfg, cfg.seed)
            logger.info("run folder %s", run_dir)
        else:
            _note_resume(run_dir)
            logger.info("resuming the run in %s", run_dir)
        logger.info(
            "config '%s': task %s, modes %s, seed %d",
            cfg.name,
            cfg.task.name,
            ", ".join(cfg.modes),
            cfg.seed,
        )
        progress.set_enabled(show_progress)
        start = time.perf_counter()
        try:
            metrics = run_experiment(
                cfg, run_dir, resume=resume_dir is not None, progress=show_progress
            )
        except KeyboardInterrupt:
            logger.warning(
                "interrupted; continue with: lstm-hw run --resume %s", run_dir
            )
            return EXIT_INTERRUPTED
        except _user_errors() as err:
            # main() prints the one-line error; this puts it in run.log too.
            logger.error("the run stopped: %s", err, extra={_FILE_ONLY: True})
            raise
        except Exception:
            logger.exception("the run failed")
            raise
        finally:
            progress.set_enabled(False)
        logger.info("finished in %.1f s", time.perf_counter() - start)
    print(format_summary(metrics, cfg.modes))
    print(f"results in {run_dir}")
    return 0


def _note_resume(run_dir: Path) -> None:
    """Record in run.json when and how the run was resumed."""
    path = run_dir / RUN_MARKER
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        logger.warning("cannot read %s; not recording the resume there", path)
        return
    info.setdefault("resumed", []).append(
        {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "argv": list(sys.argv),
        }
    )
    write_json(path, info)


@contextmanager
def _run_logging(run_dir: Path, verbose: bool, bars: bool):
    """Log to the console and to run_dir/run.log for the duration of a run."""
    level = logging.DEBUG if verbose else logging.INFO
    console = (
        progress.TqdmLoggingHandler(sys.stderr)
        if bars
        else logging.StreamHandler(sys.stderr)
    )
    console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    console.setLevel(level)
    console.addFilter(lambda record: not getattr(record, _FILE_ONLY, False))
    logfile = logging.FileHandler(run_dir / "run.log", mode="a", encoding="utf-8")
    logfile.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    logfile.setLevel(logging.DEBUG)
    root = logging.getLogger()
    ours = [logging.getLogger(n) for n in ("lstm_hw", "crossbar")]
    saved = (root.level, [lg.level for lg in ours])
    if root.level > logging.WARNING or root.level == logging.NOTSET:
        root.setLevel(logging.WARNING)
    for lg in ours:
        lg.setLevel(level)
    root.addHandler(console)
    root.addHandler(logfile)
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.removeHandler(console)
        root.removeHandler(logfile)
        logfile.close()
        root.setLevel(saved[0])
        for lg, lvl in zip(ours, saved[1], strict=True):
            lg.setLevel(lvl)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_summary(metrics: dict, modes: Sequence[str] = ()) -> str:
    """A plain-text table of modes (rows) by scalar metrics (columns).

    ``metrics`` is the dict written to ``metrics.json``: ``{"modes": {mode:
    {metric: value}}}`` (a bare ``{mode: {...}}`` is accepted too).
    """
    per_mode = metrics.get("modes", metrics) if isinstance(metrics, dict) else {}
    rows = [m for m in modes if m in per_mode] + [m for m in per_mode if m not in modes]
    keys: list[str] = []
    for mode in rows:
        for key, value in per_mode[mode].items():
            scalar = value is None or isinstance(value, int | float | str)
            if scalar and key not in keys:
                keys.append(key)
    keys.sort(
        key=lambda k: (
            _METRIC_ORDER.index(k) if k in _METRIC_ORDER else len(_METRIC_ORDER),
            k,
        )
    )
    table = [["mode", *keys]]
    for mode in rows:
        table.append([mode, *(_cell(per_mode[mode].get(k)) for k in keys)])
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = []
    for n, row in enumerate(table):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


@contextmanager
def _quiet_dask(args):
    """Keep Dask's cluster start and stop messages off the console unless -v."""
    # Imported first: importing distributed sets its loggers' levels.
    import distributed  # noqa: F401

    dask_log = logging.getLogger("distributed")
    saved = dask_log.level
    if not args.verbose:
        dask_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        dask_log.setLevel(saved)


def _cmd_sweep(args) -> int:
    if args.scheduler is not None and args.workers is not None:
        raise _CommandError(
            "--workers sizes the local cluster; with --scheduler the scheduler's "
            "workers run the tasks, so drop one of them"
        )
    if args.workers is not None and args.workers < 1:
        raise _CommandError(f"--workers must be at least 1; got {args.workers}")
    cfg = load_config(args.config, args.overrides)
    show_progress = args.progress
    if show_progress is None:
        show_progress = sys.stderr.isatty()
    from lstm_hw import sweep

    if args.out is None:
        sweep_dir = new_run_dir(SWEEPS_DIR, cfg.name)
    else:
        sweep_dir = args.out
        # Refused before the log file is opened there.
        sweep.check_sweep_dir(sweep_dir, cfg)
        sweep_dir.mkdir(parents=True, exist_ok=True)
    with _run_logging(sweep_dir, args.verbose, show_progress), _quiet_dask(args):
        logger.info("sweep folder %s", sweep_dir)
        try:
            result = sweep.run_sweep(
                cfg,
                sweep_dir,
                scheduler=args.scheduler,
                n_workers=args.workers,
                progress=show_progress,
            )
        except sweep.SchedulerError as err:
            raise _CommandError(str(err)) from None
        except KeyboardInterrupt:
            logger.warning(
                "interrupted; continue with the same command and --out %s",
                sweep_dir,
            )
            return EXIT_INTERRUPTED
        logger.info("finished in %.1f s", result.seconds)
    print(sweep.format_summary(result))
    print(f"results in {sweep_dir}")
    return 0 if result.ok else EXIT_TASKS_FAILED


_COMMANDS = {
    "run": _cmd_run,
    "configs": _cmd_configs,
    "show": _cmd_show,
    "check": _cmd_check,
    "sweep": _cmd_sweep,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lstm-hw`` with ``argv`` (default ``sys.argv[1:]``); the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.verbose = getattr(args, "verbose", False)
    try:
        return _COMMANDS[args.command](args)
    except (_CommandError, ConfigError, *_user_errors()) as err:
        if args.verbose:
            traceback.print_exc()
        message = str(err) if not isinstance(err, OSError) else _os_message(err)
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE


def _os_message(err: OSError) -> str:
    if err.filename is not None and err.strerror:
        return f"{err.strerror}: '{err.filename}'"
    return str(err)


if __name__ == "__main__":
    sys.exit(main())
