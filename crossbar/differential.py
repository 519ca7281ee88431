"""Signed weights on differential pairs of devices.

A signed matrix ``W`` (out x in) is stored as ``W = (G+ - G-) / g_unit``.
Two layouts are supported:

``"row_pairs"``
    Input ``u_i`` drives one row with ``+v`` and a second row with ``-v``; the
    two devices share a column, so the currents subtract on the wire and one
    column is sensed per output. This is the layout of Li et al., Nature
    Machine Intelligence 1, 49-57 (2019): the positive rows form one block
    and the negative rows the block below it.
``"column_pairs"``
    Input ``u_i`` drives one row; each output has a positive and a negative
    column, sensed separately and subtracted digitally. Positive columns form
    one block, negative columns the block to its right.

Conductances are placed either from the low end of the window
(``reference="low"``: the device of the unused sign sits at the window's low
end, the other carries ``|W| g_unit``) or around the window's centre
(``reference="center"``: ``G+- = g_mid +- W g_unit / 2``, as after the
symmetric initialisation of the paper above).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np

from crossbar.validation import check_array, check_choice, check_number

logger = logging.getLogger(__name__)

LAYOUTS = ("row_pairs", "column_pairs")
REFERENCES = ("low", "center")


class WeightClippingWarning(UserWarning):
    """Weights did not fit in the conductance window and were clipped."""


@dataclass(frozen=True)
class DifferentialMapping:
    """How a signed weight matrix becomes pairs of conductances.

    Attributes
    ----------
    layout : str
        ``"row_pairs"`` or ``"column_pairs"`` (see the module docstring).
    g_unit : float or None
        Conductance difference per unit weight [S]. Li et al. (2019) use
        100 uS. ``None`` chooses it so that the largest ``|W|`` of the first
        programmed matrix fills the window.
    reference : str
        ``"low"`` or ``"center"``: where the pair sits in the window.
    """

    layout: str = "row_pairs"
    g_unit: float | None = 100e-6
    reference: str = "low"

    def __post_init__(self):
        check_choice("layout", self.layout, LAYOUTS)
        check_choice("reference", self.reference, REFERENCES)
        if self.g_unit is not None:
            check_number("g_unit", self.g_unit, low=0.0, low_open=True)

    def physical_shape(self, n_out: int, n_in: int) -> tuple[int, int]:
        """(rows, cols) of devices a (n_out x n_in) matrix occupies."""
        if self.layout == "row_pairs":
            return (2 * n_in, n_out)
        return (n_in, 2 * n_out)

    def resolve_g_unit(self, w: np.ndarray, window: tuple[float, float]) -> float:
        """The conductance per unit weight to use for ``w`` in ``window``."""
        if self.g_unit is not None:
            return float(self.g_unit)
        span = window[1] - window[0]
        w_max = float(np.max(np.abs(w))) if w.size else 0.0
        return span / w_max if w_max > 0 else span

    def targets(
        self, w, window: tuple[float, float], g_unit: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Target conductances ``(G+, G-)`` [S], each of W's shape (out, in).

        Weights beyond the window are clipped with a
        :class:`WeightClippingWarning` that says how many and by how much.
        """
        w = check_array("w", w, ndim=2)
        lo, hi = float(window[0]), float(window[1])
        unit = self.resolve_g_unit(w, (lo, hi)) if g_unit is None else g_unit
        w_limit = (hi - lo) / unit
        over = np.abs(w) > w_limit * (1 + 1e-12)
        if np.any(over):
            excess = float(np.max(np.abs(w[over]) - w_limit))
            warnings.warn(
                f"{int(over.sum())} of {w.size} weights exceed the conductance "
                f"window (|W| <= {w_limit:.4g} at g_unit={unit:.4g} S) and were "
                f"clipped; the largest excess is {excess:.4g}",
                WeightClippingWarning,
                stacklevel=2,
            )
        wc = np.clip(w, -w_limit, w_limit)
        if self.reference == "low":
            g_pos = lo + np.maximum(wc, 0.0) * unit
            g_neg = lo + np.maximum(-wc, 0.0) * unit
        else:
            mid = 0.5 * (lo + hi)
            g_pos = mid + 0.5 * wc * unit
            g_neg = mid - 0.5 * wc * unit
        return g_pos, g_neg

    def assemble(self, g_pos: np.ndarray, g_neg: np.ndarray) -> np.ndarray:
        """Lay the pair matrices (out, in) out as the physical block (rows, cols)."""
        if self.layout == "row_pairs":
            return np.vstack([g_pos.T, g_neg.T])
        return np.hstack([g_pos.T, g_neg.T])

    def split(self, block: np.ndarray, n_out: int, n_in: int):
        """Inverse of :meth:`assemble`: ``(G+, G-)`` each (out, in)."""
        if self.layout == "row_pairs":
            return block[:n_in, :].T, block[n_in:, :].T
        return block[:, :n_out].T, block[:, n_out:].T

    def weights(self, block: np.ndarray, n_out: int, n_in: int, g_unit: float):
        """Weights ``(G+ - G-) / g_unit`` from a physical block of conductances."""
        g_pos, g_neg = self.split(block, n_out, n_in)
        return (g_pos - g_neg) / g_unit
