"""Exact IR drop of a resistive crossbar array.

The circuit (drawn in ``docs/ir_drop.md``): ``rows x cols`` devices; row ``i``
is driven by an ideal source ``v[i]`` at its column-0 end through one row
segment ``r_row`` (plus ``r_driver``), neighbouring row nodes are joined by
``r_row`` and the far end is open; column ``j`` is held at 0 V (a virtual
ground) after row ``rows - 1`` through one segment ``r_col`` (plus
``r_sense``), neighbouring column nodes are joined by ``r_col`` and the row-0
end is open. Device ``(i, j)`` is the conductance ``g[i, j]`` between row node
``(i, j)`` and column node ``(i, j)``; output ``j`` is the current into column
``j``'s virtual ground.

The circuit is linear, so the outputs are ``I = v @ G_eff`` for one matrix
``G_eff``. It is found by a direct solve, with no iteration and no
convergence tolerance:

* The nodes of each line of one family (the "within" lines) are eliminated
  analytically: a line is a tridiagonal chain whose Schur complement onto the
  device ends is a dense symmetric matrix ``P`` computed in ``O(n^2)`` with
  pivots written as series combinations of conductances (no subtraction).
* The lines of the other family form a block-tridiagonal system with dense
  ``n x n`` blocks, ``n = min(rows, cols)``. A block Cholesky sweep runs from
  the open ends towards the terminals. Its recursion is kept in the form
  ``E_p = P_p + series(E_{p-1}, 1 / r)``, where ``series(E, b) = E - E (b I +
  E)^-1 E`` is the matrix series combination of ``E`` and one wire segment:
  no difference of nearly equal numbers appears when the wire conductance is
  much larger than the devices' (0.1 ohm against 1 uS).
* Every source enters the sweep in its own block, so ``G_eff`` is carried
  along the sweep as an ``n x k`` matrix for the ``k`` sources seen so far;
  no back substitution is needed.

The cost is ``~2.3 m n^3 + (m n)^2`` flops with ``m = max(rows, cols)``,
done with BLAS-3 calls (Cholesky, triangular solves, rank-k updates).

:class:`IRDropSolver` keeps the factorization of the last direct solve. When
only a few devices changed since then, the new ``G_eff`` is the old one plus
an exact low-rank (Woodbury) correction, which costs ``~4 m n^2 k`` flops for
``k`` changed devices instead of a new factorization.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy.linalg import blas, lapack

from crossbar.jit import njit
from crossbar.validation import check_array, check_number, fail

logger = logging.getLogger(__name__)

__all__ = [
    "IRDropSolver",
    "WireResistance",
    "effective_conductance",
    "node_voltages",
    "output_currents",
]

_potrf = lapack.dpotrf
_trsm = blas.dtrsm
_syrk = blas.dsyrk

#: Default memory allowed for stored block factors [bytes].
DEFAULT_FACTOR_BYTES = 256 * 2**20

# Above this condition number of the Woodbury capacitance matrix the low-rank
# path is not trusted to 1e-9 and the solver refactorizes instead.
_MAX_CAPACITANCE_COND = 1e6


@dataclass(frozen=True)
class WireResistance:
    """Wire and terminal resistances of a crossbar circuit.

    Attributes
    ----------
    r_row : float
        Resistance of one row-line segment [ohm], > 0. Row ``i`` has one
        segment between its source and node ``(i, 0)`` and one between each
        pair of neighbouring nodes.
    r_col : float
        Resistance of one column-line segment [ohm], > 0. Column ``j`` has one
        segment between node ``(rows - 1, j)`` and its virtual ground and one
        between each pair of neighbouring nodes.
    r_driver : float
        Extra series resistance of each row driver [ohm], >= 0.
    r_sense : float
        Extra series resistance of each sense-amplifier input [ohm], >= 0.
    """

    r_row: float
    r_col: float
    r_driver: float = 0.0
    r_sense: float = 0.0

    def __post_init__(self):
        check_number("r_row", self.r_row, low=0.0, low_open=True)
        check_number("r_col", self.r_col, low=0.0, low_open=True)
        check_number("r_driver", self.r_driver, low=0.0)
        check_number("r_sense", self.r_sense, low=0.0)


class _Chains(NamedTuple):
    """The circuit in solver coordinates (see :func:`_orient`).

    ``m`` blocks of ``n`` devices. Each block holds one "within" line (a chain
    of ``n`` nodes, segment conductance ``a``, terminal conductance ``a0`` at
    position 0). The ``n`` "across" lines run through all blocks (segment
    conductance ``b``, terminal conductance ``b0`` after block ``m - 1``,
    open before block 0). All conductances in siemens.
    """

    m: int
    n: int
    a: float
    a0: float
    b: float
    b0: float
    transposed: bool


def _orient(rows: int, cols: int, w: WireResistance) -> _Chains:
    """Pick the orientation with the smaller dense blocks.

    Not transposed: blocks are rows, within lines are row lines (sources at
    position 0), across lines are column lines (virtual grounds after the last
    block). Transposed: blocks are columns in reverse order, within lines are
    column lines in reverse order (virtual grounds at position 0), across
    lines are row lines (sources after the last block). Either way the within
    terminals sit at position 0 and the across terminals after the last block.
    """
    a_row = 1.0 / w.r_row
    a_row0 = 1.0 / (w.r_row + w.r_driver)
    a_col = 1.0 / w.r_col
    a_col0 = 1.0 / (w.r_col + w.r_sense)
    if cols <= rows:
        return _Chains(rows, cols, a_row, a_row0, a_col, a_col0, False)
    return _Chains(cols, rows, a_col, a_col0, a_row, a_row0, True)


def _to_core(g: np.ndarray, ch: _Chains) -> np.ndarray:
    if ch.transposed:
        return np.ascontiguousarray(g.T[::-1, ::-1])
    return np.ascontiguousarray(g)


def _from_core(z: np.ndarray, ch: _Chains) -> np.ndarray:
    """Map a (m, n) result back to (rows, cols) (reciprocity when transposed).

    A core result holds, at ``[p, q]``, the current out of across terminal
    ``q`` for a unit voltage on within terminal ``p``. When transposed these
    are a row source and a column ground, and by reciprocity of the resistive
    network that is ``G_eff`` of the device at the crossing of both lines.
    """
    if ch.transposed:
        return np.ascontiguousarray(z.T[::-1, ::-1])
    return np.ascontiguousarray(z)


# -- kernels ------------------------------------------------------------------


@njit
def _chain_pivots(g, a, a0):
    """Conductances seen from each node of a within line, to the left and right.

    ``lam[i]``: towards the terminal, through node ``i - 1`` (``a0`` at node
    0); ``rho[i]``: towards the open end. Each is a series combination of
    positive conductances, so no digit is lost to cancellation.
    """
    n = g.shape[0]
    lam = np.empty(n)
    rho = np.empty(n)
    lam[0] = a0
    for i in range(1, n):
        s = lam[i - 1] + g[i - 1]
        lam[i] = s * a / (s + a)
    rho[n - 1] = 0.0
    for i in range(n - 2, -1, -1):
        s = rho[i + 1] + g[i + 1]
        rho[i] = s * a / (s + a)
    return lam, rho


@njit
def _row_schur(g, a, a0, p_out, f_out):
    """Schur complement of one within line onto its device ends.

    With ``H = T + diag(g)`` the line's nodal matrix (``T`` the wires, with
    ``a0`` to the grounded terminal) this fills ``p_out = D - D H^-1 D``
    (``D = diag(g)``), exactly symmetric, and ``f_out = a0 D H^-1 e_0``, the
    current pushed into the device ends by a unit terminal voltage.
    ``H^-1`` is built column by column from ratios in (0, 1], so it neither
    overflows nor cancels; the diagonal of ``P`` is the series combination
    of each device with the rest of the line.
    """
    n = g.shape[0]
    lam, rho = _chain_pivots(g, a, a0)
    beta = np.empty(n)
    beta[0] = 0.0
    for i in range(1, n):
        beta[i] = a / (rho[i] + g[i] + a)
    for j in range(n):
        gj = g[j]
        sig = lam[j] + gj + rho[j]
        p_out[j, j] = gj * (lam[j] + rho[j]) / sig
        val = 1.0 / sig
        for i in range(j + 1, n):
            val *= beta[i]
            x = -g[i] * gj * val
            p_out[i, j] = x
            p_out[j, i] = x
    val = 1.0 / (lam[0] + g[0] + rho[0])
    f_out[0] = a0 * g[0] * val
    for i in range(1, n):
        val *= beta[i]
        f_out[i] = a0 * g[i] * val


@njit
def _assemble_block(g, a, a0, carry, tau, e_out, m_out, f_out):
    """``e_out = P + carry`` and ``m_out = e_out + tau I`` (see `_row_schur`).

    ``carry`` of shape (0, 0) stands for none (the first block of a sweep).
    """
    _row_schur(g, a, a0, e_out, f_out)
    n = g.shape[0]
    if carry.shape[0] == n:
        for i in range(n):
            for j in range(n):
                e_out[i, j] += carry[i, j]
    for i in range(n):
        for j in range(n):
            m_out[i, j] = e_out[i, j]
        m_out[i, i] += tau


@njit
def _chain_solve(g, a, a0, rhs):
    """Solve ``H x = rhs`` for one within line, ``rhs`` of shape (n, k)."""
    n, k = rhs.shape
    lam, _ = _chain_pivots(g, a, a0)
    d = np.empty(n)
    for i in range(n):
        d[i] = lam[i] + g[i]
        if i < n - 1:
            d[i] += a
    x = rhs.copy()
    for i in range(1, n):
        c = a / d[i - 1]
        for col in range(k):
            x[i, col] += c * x[i - 1, col]
    for col in range(k):
        x[n - 1, col] /= d[n - 1]
    for i in range(n - 2, -1, -1):
        for col in range(k):
            x[i, col] = (x[i, col] + a * x[i + 1, col]) / d[i]
    return x


@njit
def _subtract_lower(e, s, out):
    """``out = e - S`` with ``S`` symmetric, given by its lower triangle in ``s``."""
    n = e.shape[0]
    for i in range(n):
        for j in range(i + 1):
            out[i, j] = e[i, j] - s[i, j]
        for j in range(i + 1, n):
            out[i, j] = e[i, j] - s[j, i]


# -- block sweep --------------------------------------------------------------


_NO_CARRY = np.empty((0, 0))


def _next_block(gp, ch: _Chains, carry, last: bool, f_out, out=None):
    """One step of the block Cholesky sweep; fills ``f_out`` (see `_row_schur`).

    ``E = P + carry`` is what the block sees through its devices and from the
    blocks before it. Returns the lower Cholesky factor ``L`` of ``tau I + E``
    (``tau`` the conductance of the next across segment, or of the across
    terminals for the last block) and, unless ``last``, the carry into the
    next block, ``series(E, tau) = E - X^T X`` with ``X = L^-1 E``. ``out``, a
    C-ordered (n, n) array, receives ``L^T`` so that ``L`` is its
    Fortran-ordered transpose (no new memory).
    """
    n = gp.shape[0]
    tau = ch.b0 if last else ch.b
    e_mat = np.empty((n, n))
    m_mat = np.empty((n, n)) if out is None else out
    _assemble_block(
        gp, ch.a, ch.a0, _NO_CARRY if carry is None else carry, tau, e_mat, m_mat, f_out
    )
    # Both are exactly symmetric: the transposed views are the same matrices
    # in the Fortran order LAPACK wants.
    low, info = _potrf(m_mat.T, lower=1, clean=1, overwrite_a=1)
    if info != 0:
        raise FloatingPointError(
            f"block Cholesky factorization failed (LAPACK info {info}); the "
            "conductances or wire resistances are outside the representable range"
        )
    if out is not None and not np.shares_memory(low, out):
        out[...] = low.T
    if last:
        return low, None
    x = _trsm(1.0, low, e_mat.T, lower=1)
    s = _syrk(1.0, x, trans=1, lower=1)
    _subtract_lower(e_mat, s, e_mat)
    return low, e_mat


def _apply_inverse(low, alpha: float, w):
    """``alpha (L L^T)^-1 w`` for an F-ordered ``w`` (overwritten when possible)."""
    t = _trsm(1.0, low, w, lower=1, overwrite_b=1)
    return _trsm(alpha, low, t, lower=1, trans_a=1, overwrite_b=1)


def _sweep(gc: np.ndarray, ch: _Chains, vin: np.ndarray | None = None, store=None):
    """Forward block sweep.

    With ``vin`` None returns the (m, n) core ``G_eff``; with ``vin`` (B, m)
    (voltages on the within terminals, across terminals grounded) returns the
    (B, n) across-terminal currents. ``store``, an (m, n, n) array, receives
    the block factors (``store[p].T`` is ``L_p``); the ``f`` vectors are then
    returned as well.
    """
    m, n = gc.shape
    cols = m if vin is None else vin.shape[0]
    w = np.zeros((n, cols), order="F")
    f_all = np.empty((m, n))
    carry = None
    for p in range(m):
        last = p == m - 1
        slot = None if store is None else store[p]
        low, carry = _next_block(gc[p], ch, carry, last, f_all[p], slot)
        alpha = ch.b0 if last else ch.b
        if vin is None:
            w[:, p] = f_all[p]
            sub = w[:, : p + 1]
            res = _apply_inverse(low, alpha, sub)
            if not np.shares_memory(res, w):
                sub[...] = res
        else:
            w += np.outer(f_all[p], vin[:, p])
            w = _apply_inverse(low, alpha, w)
    result = np.ascontiguousarray(w.T)
    if store is not None:
        return result, f_all
    return result


def _segments(m: int, n: int, max_bytes: int) -> list[tuple[int, int]]:
    """Block ranges whose factors are kept in memory at one time."""
    per_block = 8 * n * n
    if m * per_block <= max_bytes:
        length = m
    else:
        length = max(math.isqrt(m), max_bytes // per_block, 1)
    return [(s, min(s + length, m)) for s in range(0, m, length)]


def _node_solve(gc, ch, vin, vacr, max_bytes: int):
    """All node voltages for within-terminal voltages ``vin`` (B, m) and
    across-terminal voltages ``vacr`` (B, n); either may be None (grounded).

    Returns ``(x, y)``, each (B, m, n): within-line and across-line nodes. Block
    factors are kept for at most ``max_bytes``; beyond that the sweep stores
    checkpoints and refactors one segment at a time on the way back.
    """
    m, n = gc.shape
    batch = (vin if vin is not None else vacr).shape[0]
    segs = _segments(m, n, max_bytes)
    # Forward: reduced right-hand sides w_p, stored as (m, B, n).
    wst = np.zeros((m, batch, n))
    f_all = np.empty((m, n))
    checkpoints = []
    kept: list = []
    carry = None
    w = np.zeros((n, batch), order="F")
    for start, stop in segs:
        checkpoints.append(carry)
        kept = []
        for p in range(start, stop):
            last = p == m - 1
            low, carry = _next_block(gc[p], ch, carry, last, f_all[p])
            kept.append(low)
            if vin is not None:
                w += np.outer(f_all[p], vin[:, p])
            if last and vacr is not None:
                w += ch.b0 * vacr.T
            wst[p] = w.T
            if not last:
                w = _apply_inverse(low, ch.b, w)
    # Backward: y_p = (tau I + E_p)^-1 (w_p + b y_{p+1}).
    y = np.empty((m, batch, n))
    x = np.empty((m, batch, n))
    y_next = None
    for k in range(len(segs) - 1, -1, -1):
        start, stop = segs[k]
        if k != len(segs) - 1:
            carry = checkpoints[k]
            kept = []
            for p in range(start, stop):
                low, carry = _next_block(gc[p], ch, carry, False, f_all[p])
                kept.append(low)
        for p in range(stop - 1, start - 1, -1):
            rhs = np.array(wst[p].T, order="F")
            if y_next is not None:
                rhs += ch.b * y_next
            y_p = _apply_inverse(kept[p - start], 1.0, rhs)
            y[p] = y_p.T
            y_next = y_p
            src = gc[p][:, None] * y_p
            if vin is not None:
                src[0] += ch.a0 * vin[:, p]
            x[p] = _chain_solve(gc[p], ch.a, ch.a0, np.ascontiguousarray(src)).T
        kept = []
    return x.transpose(1, 0, 2), y.transpose(1, 0, 2)


# -- input checks -------------------------------------------------------------


def _check_g(g, shape: tuple[int, int] | None = None) -> np.ndarray:
    g = check_array("g", g, ndim=2, shape=shape)
    if g.shape[0] < 1 or g.shape[1] < 1:
        fail("g", "a (rows, cols) array with rows, cols >= 1", g)
    if np.any(g < 0.0):
        fail("g", "non-negative conductances [S]", g, f"min is {float(g.min())!r}")
    return g


def _check_v(v, rows: int) -> np.ndarray:
    v = check_array("v", v)
    if v.ndim not in (1, 2) or v.shape[-1] != rows:
        fail("v", f"an array of shape ({rows},) or (batch, {rows}) [V]", v)
    return v


# -- public functions ---------------------------------------------------------


def effective_conductance(
    g, r_row: float, r_col: float, *, r_driver: float = 0.0, r_sense: float = 0.0
) -> np.ndarray:
    """The matrix ``G_eff`` with ``output_currents(g, v, ...) == v @ G_eff``.

    Parameters
    ----------
    g : array_like, shape (rows, cols)
        Device conductances [S], >= 0.
    r_row, r_col : float
        Resistance of one row and one column wire segment [ohm], > 0.
    r_driver, r_sense : float, optional
        Extra series resistance of each row driver and each sense-amplifier
        input [ohm], >= 0.

    Returns
    -------
    ndarray, shape (rows, cols)
        ``G_eff[i, j]`` [S] is the current into column ``j``'s virtual ground
        per volt on row ``i`` with every other row at 0 V.
    """
    wires = WireResistance(r_row, r_col, r_driver, r_sense)
    g = _check_g(g)
    ch = _orient(g.shape[0], g.shape[1], wires)
    return _from_core(_sweep(_to_core(g, ch), ch), ch)


def output_currents(
    g,
    v,
    r_row: float,
    r_col: float,
    *,
    r_driver: float = 0.0,
    r_sense: float = 0.0,
) -> np.ndarray:
    """Currents into the columns' virtual grounds [A] for row voltages ``v``.

    Parameters
    ----------
    g : array_like, shape (rows, cols)
        Device conductances [S], >= 0.
    v : array_like, shape (rows,) or (batch, rows)
        Source voltages of the rows [V].
    r_row, r_col, r_driver, r_sense : float
        As in :func:`effective_conductance` [ohm].

    Returns
    -------
    ndarray, shape (cols,) or (batch, cols)
        Output currents [A]. For a small batch the circuit is solved for ``v``
        directly; otherwise through ``G_eff``. Both are exact.
    """
    wires = WireResistance(r_row, r_col, r_driver, r_sense)
    g = _check_g(g)
    v = _check_v(v, g.shape[0])
    v2 = np.atleast_2d(v)
    ch = _orient(g.shape[0], g.shape[1], wires)
    if not ch.transposed and 2 * v2.shape[0] < ch.m:
        out = _sweep(_to_core(g, ch), ch, vin=np.ascontiguousarray(v2))
    else:
        out = v2 @ _from_core(_sweep(_to_core(g, ch), ch), ch)
    return out[0] if v.ndim == 1 else out


def node_voltages(
    g,
    v,
    r_row: float,
    r_col: float,
    *,
    r_driver: float = 0.0,
    r_sense: float = 0.0,
    max_factor_bytes: int = DEFAULT_FACTOR_BYTES,
) -> tuple[np.ndarray, np.ndarray]:
    """Voltages of every row node and column node [V], for voltage maps.

    Parameters
    ----------
    g, v, r_row, r_col, r_driver, r_sense
        As in :func:`output_currents`.
    max_factor_bytes : int, optional
        Memory allowed for stored block factors [bytes]. Larger problems keep
        checkpoints only and refactor on the way back (about twice the work).

    Returns
    -------
    v_row_nodes, v_col_nodes : ndarray
        Shape (batch, rows, cols), or (rows, cols) for a 1-D ``v``.
        ``v_row_nodes[..., i, j]`` is the row-line end of device ``(i, j)``,
        ``v_col_nodes[..., i, j]`` its column-line end. The output current of
        column ``j`` is ``v_col_nodes[..., rows - 1, j] / (r_col + r_sense)``.
    """
    wires = WireResistance(r_row, r_col, r_driver, r_sense)
    check_number("max_factor_bytes", max_factor_bytes, low=1, integer=True)
    g = _check_g(g)
    v = _check_v(v, g.shape[0])
    v2 = np.atleast_2d(v)
    ch = _orient(g.shape[0], g.shape[1], wires)
    gc = _to_core(g, ch)
    if ch.transposed:
        vacr = np.ascontiguousarray(v2[:, ::-1])
        x, y = _node_solve(gc, ch, None, vacr, max_factor_bytes)
        v_row = y.transpose(0, 2, 1)[:, ::-1, ::-1]
        v_col = x.transpose(0, 2, 1)[:, ::-1, ::-1]
    else:
        vin = np.ascontiguousarray(v2)
        v_row, v_col = _node_solve(gc, ch, vin, None, max_factor_bytes)
    v_row = np.ascontiguousarray(v_row)
    v_col = np.ascontiguousarray(v_col)
    if v.ndim == 1:
        return v_row[0], v_col[0]
    return v_row, v_col


# -- reusable solver ----------------------------------------------------------


class IRDropSolver:
    """Exact ``G_eff`` of one array geometry, reusing work between calls.

    Parameters
    ----------
    rows, cols : int
        Array size.
    r_row, r_col, r_driver, r_sense : float
        Wire and terminal resistances [ohm], see :class:`WireResistance`.
    max_low_rank : int, optional
        Most changed devices for which a low-rank update is tried instead of
        a new factorization; default from the operation counts of both paths.
        0 disables the low-rank path.
    max_factor_bytes : int, optional
        Memory allowed for the stored block factors [bytes]; when they do not
        fit, every change is solved directly.

    Notes
    -----
    Each call of :meth:`effective_conductance` takes one of three paths,
    recorded in :attr:`last_path` and counted in :attr:`counts`:

    ``"cached"``
        ``g`` equals the previous call's: the previous result is returned.
    ``"low_rank"``
        At most ``max_low_rank`` devices differ from the last directly solved
        state: its stored factorization gives the exact Woodbury correction.
        The correction is checked (condition number of the small capacitance
        matrix) and the solver refactorizes when that check fails.
    ``"direct"``
        A new factorization, which becomes the reference for later updates.

    Every path is exact to rounding; none iterates.
    """

    def __init__(
        self,
        rows: int,
        cols: int,
        r_row: float,
        r_col: float,
        r_driver: float = 0.0,
        r_sense: float = 0.0,
        *,
        max_low_rank: int | None = None,
        max_factor_bytes: int = DEFAULT_FACTOR_BYTES,
    ):
        check_number("rows", rows, low=1, integer=True)
        check_number("cols", cols, low=1, integer=True)
        check_number("max_factor_bytes", max_factor_bytes, low=0, integer=True)
        self.wires = WireResistance(r_row, r_col, r_driver, r_sense)
        self.rows = int(rows)
        self.cols = int(cols)
        self._ch = _orient(self.rows, self.cols, self.wires)
        m, n = self._ch.m, self._ch.n
        self.stores_factors = 8 * m * n * n <= max_factor_bytes
        if max_low_rank is None:
            # Direct ~ 2.3 m n^3 + m^2 n^2 flops at BLAS-3 speed; low rank
            # ~ 4 m n^2 k at the lower speed of thin triangular solves.
            max_low_rank = int((2.3 * n + m) / 8)
        check_number("max_low_rank", max_low_rank, low=0, integer=True)
        self.max_low_rank = int(max_low_rank) if self.stores_factors else 0
        self.last_path: str | None = None
        self.counts = {"cached": 0, "low_rank": 0, "direct": 0}
        self._base_gc: np.ndarray | None = None
        self._base_z: np.ndarray | None = None
        self._factors: np.ndarray | None = None
        self._f: np.ndarray | None = None
        self._last_g: np.ndarray | None = None
        self._last_geff: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, self.cols)

    def effective_conductance(self, g) -> np.ndarray:
        """``G_eff`` (rows, cols) [S] of conductances ``g`` (rows, cols) [S]."""
        g = _check_g(g, shape=self.shape)
        if self._last_g is not None and np.array_equal(g, self._last_g):
            self._record("cached")
            return self._last_geff.copy()
        ch = self._ch
        gc = _to_core(g, ch)
        z = None
        if self._base_gc is not None and self.max_low_rank > 0:
            changed = np.flatnonzero(gc != self._base_gc)
            if changed.size == 0:
                z = self._base_z
                self._record("cached")
            elif changed.size <= self.max_low_rank:
                z = self._low_rank(gc, changed)
                if z is not None:
                    self._record("low_rank")
        if z is None:
            z = self._direct(gc)
            self._record("direct")
        geff = _from_core(z, ch)
        self._last_g = g.copy()
        self._last_geff = geff
        return geff.copy()

    def output_currents(self, g, v) -> np.ndarray:
        """Output currents [A], shape (cols,) or (batch, cols), for ``v`` [V]."""
        v = _check_v(v, self.rows)
        return v @ self.effective_conductance(g)

    def _record(self, path: str) -> None:
        self.last_path = path
        self.counts[path] += 1
        logger.debug("IR-drop solve of %dx%d: %s", self.rows, self.cols, path)

    def _direct(self, gc: np.ndarray) -> np.ndarray:
        if not self.stores_factors:
            return _sweep(gc, self._ch)
        if self._factors is None:
            ch = self._ch
            self._factors = np.empty((ch.m, ch.n, ch.n))
        self._base_gc = None  # the buffer is overwritten below
        z, f_all = _sweep(gc, self._ch, store=self._factors)
        # A copy: gc may be the caller's array, which may change in place.
        self._base_gc = gc.copy()
        self._base_z = z
        self._f = f_all
        return z

    def _low_rank(self, gc: np.ndarray, changed: np.ndarray) -> np.ndarray | None:
        """Woodbury update of the stored solution for a few changed devices.

        Devices ``u_k = e_x - e_y`` (row end minus column end) change by
        ``dg_k``; ``A' = A + U diag(dg) U^T``. With ``Y = A^-1 U`` from the
        stored factors, ``A'^-1 = A^-1 - Y (I + diag(dg) U^T Y)^-1 diag(dg)
        Y^T``, and ``G_eff`` needs ``Y`` only at the terminals.
        """
        ch = self._ch
        m, n = ch.m, ch.n
        base = self._base_gc
        pk, qk = np.divmod(changed, n)
        dg = gc.ravel()[changed] - base.ravel()[changed]
        k = changed.size
        # H_p^-1 e_q for each changed device, from its block's within line.
        hq = np.empty((k, n))
        by_block: dict[int, np.ndarray] = {}
        for p in np.unique(pk):
            idx = np.flatnonzero(pk == p)
            by_block[int(p)] = idx
            rhs = np.zeros((n, idx.size))
            rhs[qk[idx], np.arange(idx.size)] = 1.0
            hq[idx] = _chain_solve(base[p], ch.a, ch.a0, rhs).T
        p_min = int(pk.min())
        # Forward elimination of the reduced right-hand sides.
        wst = np.zeros((m, k, n))
        w = np.zeros((n, k), order="F")
        for p in range(p_min, m):
            idx = by_block.get(p)
            if idx is not None:
                # Current +1 into the row end and -1 out of the column end,
                # seen at the column ends: -e_q + D H^-1 e_q.
                w[:, idx] += base[p][:, None] * hq[idx].T
                w[qk[idx], idx] -= 1.0
            wst[p] = w.T
            if p < m - 1:
                w = _apply_inverse(self._factors[p].T, ch.b, w)
        # Back substitution, collecting Y at the terminals and the devices.
        y_in = np.empty((m, k))
        uty = np.empty((k, k))
        y_next = None
        y_out = None
        for p in range(m - 1, -1, -1):
            rhs = np.array(wst[p].T, order="F")
            if y_next is not None:
                rhs += ch.b * y_next
            y_p = _apply_inverse(self._factors[p].T, 1.0, rhs)
            if y_out is None:
                y_out = np.array(y_p)
            y_in[p] = self._f[p] @ y_p / ch.a0
            idx = by_block.get(p)
            if idx is not None:
                own = pk == p
                y_in[p, own] += hq[own, 0]
                x_dev = hq[idx] @ (base[p][:, None] * y_p)
                x_dev[:, own] += hq[idx][:, qk[own]]
                uty[idx] = x_dev - y_p[qk[idx]]
            y_next = y_p
        cap = np.eye(k) + dg[:, None] * uty
        cond = np.linalg.cond(cap)
        if not np.isfinite(cond) or cond > _MAX_CAPACITANCE_COND:
            logger.debug("low-rank update rejected: capacitance cond %.3g", cond)
            return None
        corr = y_out @ np.linalg.solve(cap, dg[:, None] * y_in.T)
        return self._base_z - (ch.a0 * ch.b0) * corr.T
