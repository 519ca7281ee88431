"""The one place where numba options are set for the whole project.

Every jitted kernel in ``crossbar`` and ``lstm_hw`` is compiled through
:func:`njit` so that caching, fast-math and threading are decided here only.

``fastmath`` stays off: kernels are checked against plain numpy references to
tight tolerances, and reassociated sums would break bit-for-bit
reproducibility between runs with the same seed. ``cache`` stores compiled
machine code beside the sources so that a second process starts fast.

numba checks a cached function against its own source file only: when a
jitted function it calls, defined in another file, changes, the cached
machine code keeps the old callee. So each package, when first imported,
fingerprints its jitted sources and those of the packages it calls into and,
when they differ from the fingerprint its caches were built with, drops its
caches (:func:`drop_stale_caches`).
Setting the environment variable ``NUMBA_DISABLE_JIT=1`` runs every kernel as
plain Python, which the test suite uses to check the kernels' logic.

A kernel's ``np.dot`` runs on scipy's BLAS, which OpenBLAS sums differently
with different thread counts. This module loads that library with the first
kernel, so that a thread limit (``threadpoolctl``) set before the first
product reaches it; a library loaded inside a limit would escape it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from pathlib import Path

import numba
import scipy.linalg.cython_blas  # noqa: F401  (see the module docstring)

logger = logging.getLogger(__name__)

#: This package's folder (other packages list it among their dependencies).
PACKAGE_DIR = Path(__file__).parent
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


def drop_stale_caches(package_dir, depends_on=()) -> bool:
    """Delete the numba caches of ``package_dir`` if the jitted sources of it
    or of the packages it calls into (``depends_on``) changed since the
    caches were built; return whether caches were dropped.

    The fingerprint is kept in the package's ``__pycache__``. A package that
    cannot be written (an installed copy) is left alone: numba then keeps its
    caches elsewhere, and that copy's sources do not change.
    """
    fingerprint = source_fingerprint([package_dir, *depends_on])
    cache = Path(package_dir) / "__pycache__"
    stamp = cache / STAMP_NAME
    try:
        if stamp.read_text() == fingerprint:
            return False
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
    except OSError as exc:
        logger.debug("numba caches of %s left alone: %s", package_dir, exc)
        return False
    logger.info("jitted sources changed: caches of %s dropped", package_dir)
    return True


drop_stale_caches(PACKAGE_DIR)
