"""Run folders, atomic result files, run metadata and checkpoints.

Every writer here first writes a temporary file in the destination's folder
and then moves it over the destination with :func:`os.replace`, so a reader
(or a run interrupted half way) sees either the old file or the complete new
one, never a truncated file. If writing fails, the temporary file is removed
and the old file is left as it was.

Arrays are stored as NPZ without pickle: object arrays are refused, and
:class:`Checkpoint` reads them back with ``allow_pickle=False``.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import math
import os
import platform
import re
import shlex
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from importlib import metadata
from pathlib import Path

import numpy as np

from crossbar.validation import fail

logger = logging.getLogger(__name__)

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "RunDirError",
    "blas_libraries",
    "new_run_dir",
    "package_versions",
    "save_figure",
    "write_csv",
    "write_json",
    "write_metadata",
    "write_npz",
    "write_text",
]

# The file whose presence marks a folder as a run folder (see write_metadata).
RUN_MARKER = "run.json"

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


class RunDirError(FileExistsError):
    """A run folder cannot be used without losing earlier results."""


class CheckpointError(RuntimeError):
    """A checkpoint is incomplete or inconsistent and cannot be resumed."""


# ---------------------------------------------------------------------------
# Run folders


def new_run_dir(
    base: Path, name: str, out: Path | None = None, overwrite: bool = False
) -> Path:
    """Create the folder of a new run and return it.

    Parameters
    ----------
    base : Path
        Parent of automatically named run folders (created if missing).
    name : str
        Experiment name; the folder is ``base/<name>-<YYYYmmdd-HHMMSS>``,
        with ``-1``, ``-2``, ... appended if that folder exists already.
    out : Path, optional
        Use this folder instead. It may be missing or empty; a non-empty
        folder is refused unless ``overwrite`` is set.
    overwrite : bool
        Empty a non-empty ``out`` first. Only a folder holding ``run.json``
        (an earlier run) is emptied; anything else is refused.

    Raises
    ------
    RunDirError
        If ``out`` is a file, or is not empty and ``overwrite`` is not set or
        it does not look like a run folder.
    """
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
        fail(
            "name",
            "a folder name of letters, digits, '_', '.' and '-'",
            name,
        )
    if out is not None:
        return _prepare_out(Path(out), overwrite)
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in itertools.count():
        path = base / (f"{name}-{stamp}" + (f"-{n}" if n else ""))
        try:
            # mkdir fails on an existing folder, so two runs started in the
            # same second never share one.
            path.mkdir()
        except FileExistsError:
            continue
        logger.debug("created run folder %s", path)
        return path
    raise AssertionError("unreachable")


def _prepare_out(out: Path, overwrite: bool) -> Path:
    if out.exists() and not out.is_dir():
        raise RunDirError(f"output folder '{out}' exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise RunDirError(
                f"output folder '{out}' is not empty; choose another --out, or "
                "pass --overwrite to replace the run stored there"
            )
        if not (out / RUN_MARKER).is_file():
            raise RunDirError(
                f"refusing to overwrite '{out}': it is not empty and holds no "
                f"{RUN_MARKER}, so it is not a run folder"
            )
        logger.warning("overwriting the earlier run in %s", out)
        for child in out.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


# ---------------------------------------------------------------------------
# Atomic writers


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not possible on every platform.
    with suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextmanager
def _atomic(path: Path, mode: str = "wb", **open_kwargs) -> Iterator:
    """Yield a file object; on success it replaces ``path`` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **open_kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _jsonable(obj, nan_to_none: bool):
    """Plain JSON values from numpy scalars and arrays, paths and tuples."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v, nan_to_none) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v, nan_to_none) for v in obj]
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            fail("obj", "JSON data without object arrays", obj)
        return _jsonable(obj.tolist(), nan_to_none)
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        value = float(obj)
        if nan_to_none and not math.isfinite(value):
            return None
        return value
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, str | int):
        return obj
    raise TypeError(f"cannot write a {type(obj).__name__} to JSON: {obj!r}")


def write_json(path: Path, obj, *, indent: int = 2, strict: bool = True) -> None:
    """Write ``obj`` as JSON, atomically.

    Numpy scalars and arrays become numbers and lists, paths strings. With
    ``strict`` (the default) NaN and infinities become ``null`` so that the
    file is standard JSON; ``strict=False`` keeps them as ``NaN``/``Infinity``
    (Python reads them back exactly).
    """
    data = _jsonable(obj, nan_to_none=strict)
    with _atomic(path, "w", encoding="utf-8", newline="\n") as fh:
        # Streamed, so a failure half way leaves a partial temporary file
        # that _atomic removes; the destination is untouched.
        encoder = json.JSONEncoder(indent=indent, allow_nan=not strict)
        for chunk in encoder.iterencode(data):
            fh.write(chunk)
        fh.write("\n")


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8), atomically."""
    if not isinstance(text, str):
        fail("text", "a string", text)
    with _atomic(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)


def write_csv(
    path: Path, rows: Sequence[Mapping], columns: Sequence[str] | None = None
) -> None:
    """Write a list of dicts as CSV with a header row, atomically.

    Parameters
    ----------
    rows : sequence of mapping
        One dict per row; a key missing from a row leaves its cell empty.
    columns : sequence of str, optional
        Column order; default every key in order of first appearance.
    """
    if not isinstance(rows, Sequence) or not all(isinstance(r, Mapping) for r in rows):
        fail("rows", "a list of dicts", rows)
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    else:
        columns = list(columns)
        extra = sorted({k for row in rows for k in row} - set(columns))
        if extra:
            fail("columns", f"a list including every row key, also {extra}", columns)
    with _atomic(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_cell(v) for k, v in row.items()})


def _csv_cell(value):
    if isinstance(value, np.generic):
        return value.item()
    return value


def _check_arrays(arrays: Mapping) -> dict[str, np.ndarray]:
    checked = {}
    for name, value in arrays.items():
        if name in ("file", "allow_pickle"):
            fail("name", "an array name other than 'file' and 'allow_pickle'", name)
        arr = np.asarray(value)
        if arr.dtype.hasobject:
            fail(
                name,
                "an array of numbers, booleans or strings (object arrays would "
                "need pickle)",
                arr,
                f"dtype {arr.dtype}",
            )
        checked[name] = arr
    return checked


def write_npz(path: Path, **arrays) -> None:
    """Write named arrays to an uncompressed NPZ file, atomically, without pickle.

    Raises
    ------
    ParameterError
        For an object array (it would need pickle to be stored).
    """
    checked = _check_arrays(arrays)
    with _atomic(path, "wb") as fh:
        np.savez(fh, allow_pickle=False, **checked)


def save_figure(fig, path: Path, **savefig_kwargs) -> None:
    """Save a matplotlib figure atomically; the format follows the suffix.

    ``savefig_kwargs`` go to :meth:`matplotlib.figure.Figure.savefig`
    (default ``dpi=150``). The figure is not closed.
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    savefig_kwargs.setdefault("dpi", 150)
    with _atomic(path, "wb") as fh:
        fig.savefig(fh, format=fmt, **savefig_kwargs)


# ---------------------------------------------------------------------------
# Metadata


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def package_versions() -> dict[str, str]:
    """Versions of this package, Python and the numerical libraries."""
    return {
        "lstm-hw": _version("lstm-hw"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": _version("numba"),
        "scipy": _version("scipy"),
        "matplotlib": _version("matplotlib"),
    }


def blas_libraries() -> list[dict[str, str]]:
    """The BLAS libraries loaded, each with the CPU kernel it picked.

    The kernel (``architecture``) fixes the order of the sums in long
    products. Another kernel, on another CPU, changes their last bits, and
    training, noisy in-situ training above all, can turn those into
    different results for the same seed.
    """
    from threadpoolctl import threadpool_info

    libs = [
        {
            "library": Path(lib["filepath"]).name,
            "api": str(lib.get("internal_api")),
            "version": str(lib.get("version")),
            "architecture": str(lib.get("architecture")),
        }
        for lib in threadpool_info()
        if lib.get("user_api") == "blas"
    ]
    # By name, not load order, so the record does not change between runs.
    return sorted(libs, key=lambda lib: lib["library"])


def write_metadata(
    run_dir: Path, cfg, seed: int, argv: Sequence[str] | None = None
) -> dict:
    """Write ``config.toml`` (the resolved config) and ``run.json``.

    ``run.json`` holds the seed, the versions of this package, Python,
    numpy, numba (and scipy, matplotlib), the BLAS libraries and their CPU
    kernels, the platform, the command line and the start time. Returns what
    was written to ``run.json``.
    """
    from lstm_hw.config import dump_toml

    run_dir = Path(run_dir)
    argv = list(sys.argv if argv is None else argv)
    info = {
        "name": cfg.name,
        "seed": int(seed),
        "versions": package_versions(),
        "blas": blas_libraries(),
        "platform": platform.platform(),
        "command": shlex.join(argv),
        "argv": argv,
        "start_time": datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    write_text(run_dir / "config.toml", dump_toml(cfg))
    write_json(run_dir / RUN_MARKER, info)
    return info


# ---------------------------------------------------------------------------
# Checkpoints


class Checkpoint:
    """Named numpy arrays plus a small JSON state, saved for ``--resume``.

    A checkpoint is ``<name>.json`` (the state and the name of its array
    file) and ``<name>-<counter>.npz`` (the arrays). :meth:`save` writes a
    new array file first and then replaces the JSON, so an interruption at
    any point leaves the previous checkpoint complete.

    Parameters
    ----------
    directory : Path
        Folder of the checkpoint (usually the run folder).
    name : str
        Base name of the files, e.g. ``"checkpoint-insitu"`` for one per mode.

    Examples
    --------
    >>> ckpt = Checkpoint(run_dir, "checkpoint-ideal")          # doctest: +SKIP
    >>> ckpt.save({"rnn.weight_ih": w}, {"epoch": 12})          # doctest: +SKIP
    >>> arrays, state = ckpt.load()                             # doctest: +SKIP
    """

    FORMAT = 1

    def __init__(self, directory: Path, name: str = "checkpoint"):
        if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
            fail("name", "a file name of letters, digits, '_', '.' and '-'", name)
        self.directory = Path(directory)
        self.name = name
        self._npz = re.compile(re.escape(name) + r"-(\d{6,})\.npz")

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.directory)!r}, {self.name!r})"

    @property
    def state_path(self) -> Path:
        """The JSON file that commits a checkpoint."""
        return self.directory / f"{self.name}.json"

    def exists(self) -> bool:
        """Whether a checkpoint has been saved."""
        return self.state_path.is_file()

    def _meta(self) -> dict | None:
        if not self.exists():
            return None
        try:
            with open(self.state_path, encoding="utf-8") as fh:
                meta = json.load(fh)
        except (OSError, json.JSONDecodeError) as err:
            raise CheckpointError(f"cannot read {self.state_path}: {err}") from None
        if not isinstance(meta, dict) or meta.get("format") != self.FORMAT:
            raise CheckpointError(
                f"{self.state_path} is not a checkpoint of format {self.FORMAT}"
            )
        return meta

    def save(self, arrays: Mapping[str, np.ndarray], state: Mapping) -> None:
        """Save ``arrays`` (name -> array) and ``state`` (JSON data) atomically.

        ``state`` may hold numpy scalars and NaN; floats come back exactly,
        so a random generator's ``bit_generator.state`` round-trips.
        """
        checked = _check_arrays(arrays)
        meta = self._meta()
        counter = meta["counter"] + 1 if meta else 1
        npz_name = f"{self.name}-{counter:06d}.npz"
        write_npz(self.directory / npz_name, **checked)
        write_json(
            self.state_path,
            {
                "format": self.FORMAT,
                "counter": counter,
                "arrays": npz_name,
                "saved": datetime.now().astimezone().isoformat(timespec="seconds"),
                "state": dict(state),
            },
            strict=False,
        )
        for old in self.directory.iterdir():
            if self._npz.fullmatch(old.name) and old.name != npz_name:
                with suppress(FileNotFoundError):
                    old.unlink()
        logger.debug("saved checkpoint %s (%d arrays)", self.state_path, len(checked))

    def load(self) -> tuple[dict[str, np.ndarray], dict] | None:
        """``(arrays, state)`` of the last save, or None if there is none."""
        meta = self._meta()
        if meta is None:
            return None
        npz = self.directory / str(meta.get("arrays", ""))
        if not self._npz.fullmatch(npz.name) or not npz.is_file():
            raise CheckpointError(
                f"{self.state_path} refers to {npz.name!r}, which is missing"
            )
        try:
            with np.load(npz, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
        except (OSError, ValueError) as err:
            raise CheckpointError(f"cannot read {npz}: {err}") from None
        return arrays, meta["state"]

    def clear(self) -> None:
        """Remove the checkpoint's files."""
        with suppress(FileNotFoundError):
            self.state_path.unlink()
        if self.directory.is_dir():
            for old in self.directory.iterdir():
                if self._npz.fullmatch(old.name):
                    old.unlink()
