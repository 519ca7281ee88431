"""The one place where numba options are set for the whole project.

Every jitted kernel in ``crossbar`` and ``lstm_hw`` is compiled through
:func:`njit` so that caching, fast-math and threading are decided here only.

``fastmath`` stays off: kernels are checked against plain numpy references to
tight tolerances, and reassociated sums would break bit-for-bit
reproducibility between runs with the same seed. ``cache`` stores compiled
machine code beside the sources so that a second process starts fast.

numba checks a cached function against its own source file only: when a
jitted function it calls, defined in another file, changes, the cached
machine code keeps the old callee. So the first import of this module
fingerprints the jitted sources of both packages and, when they differ from
the fingerprint the caches were built with, drops the caches of both
packages.
Setting the environment variable ``NUMBA_DISABLE_JIT=1`` runs every kernel as
plain Python, which the test suite uses to check the kernels' logic.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from pathlib import Path

import numba

logger = logging.getLogger(__name__)

#: Packages whose jitted functions call each other.
PACKAGE_DIRS = tuple(
    d
    for d in (Path(__file__).parent, Path(__file__).parent.parent / "lstm_hw")
    if d.is_dir()
)
STAMP_NAME = "numba-sources.sha256"

JIT_OPTIONS: dict[str, bool] = {
    "cache": True,
    "fastmath": False,
    "nogil": True,
    "error_model": "numpy",
}


def njit(*args, **kwargs):
    """``numba.njit`` with the project's options; keyword arguments override."""
    options = {**JIT_OPTIONS, **kwargs}
    if args and callable(args[0]):
        return numba.njit(**options)(args[0])
    return numba.njit(*args, **options)


def source_fingerprint(dirs) -> str:
    """SHA-256 over the names and contents of the ``.py`` files of ``dirs``
    that define jitted functions (so that editing other files costs no
    recompilation)."""
    digest = hashlib.sha256()
    for d in dirs:
        for path in sorted(Path(d).glob("*.py")):
            text = path.read_bytes()
            if b"@njit" in text:
                digest.update(path.name.encode())
                digest.update(text)
    return digest.hexdigest()


def drop_stale_caches(dirs=PACKAGE_DIRS) -> bool:
    """Delete the numba caches of ``dirs`` if their sources changed since the
    caches were built; return whether caches were dropped.

    The fingerprint is kept in each package's ``__pycache__``. A package that
    cannot be written (an installed copy) is left alone: numba then keeps its
    caches elsewhere, and that copy's sources do not change.
    """
    fingerprint = source_fingerprint(dirs)
    dropped = False
    for d in dirs:
        cache = Path(d) / "__pycache__"
        stamp = cache / STAMP_NAME
        try:
            if stamp.read_text() == fingerprint:
                continue
        except OSError:
            pass
        try:
            cache.mkdir(exist_ok=True)
            for path in cache.iterdir():
                if path.suffix in (".nbi", ".nbc"):
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
            tmp = stamp.with_name(f"{STAMP_NAME}.{os.getpid()}.tmp")
            tmp.write_text(fingerprint)
            os.replace(tmp, stamp)
            dropped = True
        except OSError as exc:
            logger.debug("numba caches of %s left alone: %s", d, exc)
    if dropped:
        logger.info("sources changed: numba caches dropped, kernels recompile")
    return dropped


drop_stale_caches()
