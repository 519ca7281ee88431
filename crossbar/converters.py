"""Digital-to-analog and analog-to-digital converters at the array's edges.

Both quantize signed values symmetrically: with ``b`` bits there are
``n = 2 ** (b - 1) - 1`` steps on each side of zero, so a value becomes
``rint(x / full_scale * n) / n * full_scale`` after being clipped to
``[-full_scale, full_scale]``. Rounding is half to even (``numpy.rint``)
in the numpy path and in the numba kernel alike, and both perform the same
floating-point operations in the same order, so they agree bit for bit.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from crossbar.jit import njit
from crossbar.validation import check_array, check_number, fail

logger = logging.getLogger(__name__)


@njit
def quantize_symmetric(x: float, n_steps: float, full_scale: float) -> float:
    """Clip ``x`` to ``+-full_scale``, then quantize to ``n_steps`` per side.

    ``n_steps == 0`` means no quantization. ``full_scale <= 0`` or infinite
    means no clipping; a negative ``full_scale`` still quantizes, with the
    step of ``|full_scale|`` (a converter that does not saturate). A zero or
    infinite full scale leaves ``x`` unquantized.
    """
    fs = abs(full_scale)
    if full_scale > 0.0 and full_scale < np.inf:
        if x > fs:
            x = fs
        elif x < -fs:
            x = -fs
    if n_steps > 0.0 and fs > 0.0 and fs < np.inf:
        x = np.rint(x / fs * n_steps) / n_steps * fs
    return x


@njit
def quantize_inplace(x, n_steps: float, full_scale: float) -> None:
    """:func:`quantize_symmetric` applied in place to every entry of 2-D ``x``."""
    if n_steps == 0.0 and not (0.0 < full_scale < np.inf):
        return
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            x[i, j] = quantize_symmetric(x[i, j], n_steps, full_scale)


def quantize_array(x, n_steps: float, full_scale: float) -> np.ndarray:
    """Numpy version of :func:`quantize_symmetric`, elementwise on an array."""
    x = np.array(x, dtype=np.float64)
    fs = abs(full_scale)
    if 0.0 < full_scale < math.inf:
        x = np.clip(x, -fs, fs)
    if n_steps > 0.0 and 0.0 < fs < math.inf:
        x = np.rint(x / fs * n_steps) / n_steps * fs
    return x


def _steps(bits: int | None) -> float:
    return 0.0 if bits is None else float(2 ** (bits - 1) - 1)


def _check_bits(bits) -> None:
    if bits is not None:
        check_number("bits", bits, low=2, high=64, integer=True)


@dataclass(frozen=True)
class DAC:
    """Input converter: digital values to row voltages.

    The output never exceeds ``v_max`` in magnitude (it saturates there).

    Attributes
    ----------
    bits : int or None
        Resolution including the sign bit, ``2..64``; ``None`` for an ideal
        (unquantized) converter.
    v_max : float
        Largest output voltage [V], ``> 0``.
    """

    bits: int | None = None
    v_max: float = 0.2

    def __post_init__(self) -> None:
        _check_bits(self.bits)
        check_number("v_max", self.v_max, low=0.0, low_open=True)

    @property
    def n_steps(self) -> float:
        """Quantization steps per side (0.0 when ideal)."""
        return _steps(self.bits)

    @property
    def full_scale(self) -> float:
        """Full-scale voltage [V]."""
        return float(self.v_max)

    @property
    def lsb(self) -> float:
        """Voltage of one step [V] (0.0 when ideal)."""
        return self.v_max / self.n_steps if self.bits is not None else 0.0

    def kernel_args(self) -> tuple[float, float]:
        """``(n_steps, full_scale)`` for :func:`quantize_symmetric`."""
        return self.n_steps, self.full_scale

    def convert(self, v) -> np.ndarray:
        """Voltages [V] actually applied for requested voltages ``v`` [V]."""
        v = check_array("v", v)
        return quantize_array(v, *self.kernel_args())


@dataclass(frozen=True)
class ADC:
    """Output converter: column currents to digital values.

    Attributes
    ----------
    bits : int or None
        Resolution including the sign bit, ``2..64``; ``None`` for no
        quantization. Quantization needs ``i_full_scale``.
    i_full_scale : float or None
        Full-scale current [A], ``> 0``; ``None`` for an unbounded converter.
    saturate : bool
        Clip currents beyond ``+-i_full_scale``. Without saturation a
        quantizing converter keeps the same step beyond full scale.
    """

    bits: int | None = None
    i_full_scale: float | None = None
    saturate: bool = True

    def __post_init__(self) -> None:
        _check_bits(self.bits)
        if self.i_full_scale is not None:
            check_number("i_full_scale", self.i_full_scale, low=0.0, low_open=True)
        elif self.bits is not None:
            fail(
                "i_full_scale",
                "a positive current when bits is set",
                self.i_full_scale,
                "a quantizing ADC needs a full scale",
            )
        if not isinstance(self.saturate, bool | np.bool_):
            fail("saturate", "True or False", self.saturate)

    @property
    def n_steps(self) -> float:
        """Quantization steps per side (0.0 when ideal)."""
        return _steps(self.bits)

    @property
    def full_scale(self) -> float:
        """Full-scale current [A] (``inf`` when unbounded)."""
        return math.inf if self.i_full_scale is None else float(self.i_full_scale)

    @property
    def lsb(self) -> float:
        """Current of one step [A] (0.0 when ideal)."""
        return self.full_scale / self.n_steps if self.bits is not None else 0.0

    def kernel_args(self) -> tuple[float, float]:
        """``(n_steps, full_scale)`` for :func:`quantize_symmetric`.

        The full scale is negative for a converter that quantizes but does not
        saturate, and 0.0 for an unbounded one.
        """
        if self.i_full_scale is None:
            return self.n_steps, 0.0
        fs = float(self.i_full_scale)
        return self.n_steps, fs if self.saturate else -fs

    def convert(self, i) -> np.ndarray:
        """Digitized currents [A] for column currents ``i`` [A]."""
        i = check_array("i", i)
        return quantize_array(i, *self.kernel_args())
