"""The one place where numba options are set for the whole project.

Every jitted kernel in ``crossbar`` and ``lstm_hw`` is compiled through
:func:`njit` so that caching, fast-math and threading are decided here only.

``fastmath`` stays off: kernels are checked against plain numpy references to
tight tolerances, and reassociated sums would break bit-for-bit
reproducibility between runs with the same seed. ``cache`` stores compiled
machine code beside the sources so that a second process starts fast.
Setting the environment variable ``NUMBA_DISABLE_JIT=1`` runs every kernel as
plain Python, which the test suite uses to check the kernels' logic.
"""

from __future__ import annotations

import numba

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
