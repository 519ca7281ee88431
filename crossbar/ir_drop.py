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
  ``n x n`` blocks, ``n = min(rows, cols)``. One sweep runs from the open
  ends towards the terminals, keeping ``E_p = P_p + series(E_{p-1}, b)``
  with ``series(E, b) = E - E (b I + E)^-1 E`` the matrix series combination
  of ``E`` and one wire segment. It is computed by moving the block's nodes
  across the segment a few at a time (:func:`_series`): the wire conductance
  enters only small pivot blocks, so no difference of nearly equal numbers
  appears when it is much larger than the devices' (0.1 ohm against 1 uS),
  and the cost is about ``n^3`` flops per block.
* Each block also yields its symmetric transfer matrix ``M_p = b (b I +
  E_p)^-1 = I - series(E_p, b) / b``. Row ``p`` of ``G_eff`` is ``f_p^T M_p
  M_{p+1} ... M_{m-1}`` (``f_p`` the current a unit source pushes into block
  ``p``): the first ``q = min(m, n)`` rows are carried forward together,
  the others read off backward products ``M_p ... M_{m-1}``, all as matrix
  products.

The cost is ``m n^3 + n^2 q^2 + 2 n^3 (m - q)`` flops with ``m = max(rows,
cols)``, all of it in one numba kernel (the matrix products through BLAS).

:class:`IRDropSolver` keeps the transfer matrices of the last direct solve.
When only a few devices changed since then, the new ``G_eff`` is the old one
plus an exact low-rank (Woodbury) correction, which costs ``~4 m n^2 k`` flops
for ``k`` changed devices instead of a new sweep.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

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

#: Default memory allowed for stored transfer matrices [bytes].
DEFAULT_FACTOR_BYTES = 256 * 2**20

# Above this condition number of the Woodbury capacitance matrix the low-rank
# path is not trusted to 1e-9 and the solver solves directly instead.
_MAX_CAPACITANCE_COND = 1e6

# Nodes moved across a wire segment at a time in `_series`. Small pivot
# blocks keep its triangular solves cheap (k n^2 next to n^3 flops); from
# about 384 nodes the matrix leaves the cache and fewer, larger steps pay.
_PANEL_SMALL = 4
_PANEL_LARGE = 32
_PANEL_LARGE_FROM = 384
# Rows of the matrix updated together by `_rank_update` (cache blocking).
_TILE_ROWS = 32


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
def _add_row_schur(g, a, a0, e_low, f_out, h, beta):
    """Add the Schur complement of one within line to ``e_low``; set ``f_out``.

    With ``H = T + diag(g)`` the line's nodal matrix (``T`` the wires, with
    ``a0`` to the grounded terminal) this adds ``P = D - D H^-1 D``
    (``D = diag(g)``) to the lower triangle of ``e_low`` and writes
    ``f_out = a0 D H^-1 e_0 = P 1``, the current pushed into the device ends
    by a unit terminal voltage. Row ``i`` of ``H^-1`` is built from row
    ``i - 1`` times a ratio in (0, 1], so it neither overflows nor cancels;
    the diagonal of ``P`` is the series combination of each device with the
    rest of the line. ``h`` and ``beta`` are work arrays of length ``n``.
    """
    n = g.shape[0]
    lam, rho = _chain_pivots(g, a, a0)
    for i in range(1, n):
        beta[i] = a / (rho[i] + g[i] + a)
    for i in range(n):
        bi = beta[i]
        for j in range(i):
            h[j] *= bi
        sig = lam[i] + g[i] + rho[i]
        h[i] = 1.0 / sig
        gi = g[i]
        row = e_low[i]
        for j in range(i):
            row[j] -= gi * g[j] * h[j]
        row[i] += gi * (lam[i] + rho[i]) / sig
        f_out[i] = a0 * gi * h[0]


@njit
def _panel(n):
    """Pivot block size of `_series` for ``n`` nodes."""
    return _PANEL_LARGE if n >= _PANEL_LARGE_FROM else _PANEL_SMALL


@njit
def _rank_update(e_low, y, k):
    """``e_low -= y[:k]^T y[:k]`` on the lower triangle, four rows of ``y`` at a
    time (one pass over the matrix per four), tiles of rows kept in cache.

    Rows run on to a multiple of 8 entries where ``e_low`` has the room
    (``e_low.shape[1]``, with ``y`` as wide and finite there): the vector
    loops then need no scalar tail, and the extra entries lie in the upper
    triangle, which is scratch.
    """
    n = e_low.shape[0]
    width = e_low.shape[1]
    k4 = k - k % 4
    for i0 in range(0, n, _TILE_ROWS):
        i1 = min(i0 + _TILE_ROWS, n)
        for t in range(0, k4, 4):
            y0 = y[t]
            y1 = y[t + 1]
            y2 = y[t + 2]
            y3 = y[t + 3]
            for i in range(i0, i1):
                c0 = y0[i]
                c1 = y1[i]
                c2 = y2[i]
                c3 = y3[i]
                row = e_low[i]
                for j in range(min(width, (i + 8) // 8 * 8)):
                    row[j] -= c0 * y0[j] + c1 * y1[j] + c2 * y2[j] + c3 * y3[j]
        for t in range(k4, k):
            yt = y[t]
            for i in range(i0, i1):
                c = yt[i]
                row = e_low[i]
                for j in range(min(width, (i + 8) // 8 * 8)):
                    row[j] -= c * yt[j]


@njit
def _padded(n):
    """Row length of the work matrices of `_series`: ``n`` up to a multiple
    of 8."""
    return (n + 7) // 8 * 8


@njit
def _series(e_low, tau, r, lk, rd):
    """``e_low := series(e_low, tau) = E - E (tau I + E)^-1 E`` (lower triangle).

    The conductance matrix ``E`` of ``n`` nodes is joined to ``n`` new nodes
    by one wire segment ``tau`` per node; the old nodes are eliminated,
    ``k = r.shape[0]`` at a time. With ``J`` the next ``k`` old nodes,
    ``L L^T = E_JJ + tau I`` and ``Y = L^-1 E_J`` (``E_J`` the rows ``J``),
    the symmetric update ``E -= Y^T Y`` gives at once the Schur complement
    of the other nodes, the new nodes' block ``E_JJ - X^T X`` (``X`` the
    columns ``J`` of ``Y``) and their couplings ``tau E_oJ (E_JJ + tau I)^-1``
    to the other nodes; the slots of ``J`` then hold the new nodes. Only the
    ``k x k`` pivot blocks see ``tau``: when the wire conductance is much
    larger than the devices' (0.1 ohm against 1 uS) every other entry is a
    conductance-sized number minus a smaller correction. About ``n^3`` flops.

    ``e_low`` is (n, w) with ``w >= n``; its upper triangle and columns from
    ``n`` on are scratch. ``r`` (k, w), finite beyond column ``n``, ``lk``
    (k, k) and ``rd`` (k,) are work arrays.
    """
    n = e_low.shape[0]
    k_max = r.shape[0]
    for j0 in range(0, n, k_max):
        k = min(k_max, n - j0)
        for t in range(k):
            i = j0 + t
            rt = r[t]
            row = e_low[i]
            for c in range(i + 1):
                rt[c] = row[c]
            for c in range(i + 1, n):
                rt[c] = e_low[c, i]
        for t in range(k):
            for u in range(t + 1):
                v = r[t, j0 + u]
                for w in range(u):
                    v -= lk[t, w] * lk[u, w]
                if u == t:
                    lk[t, t] = np.sqrt(v + tau)
                    rd[t] = 1.0 / lk[t, t]
                else:
                    lk[t, u] = v * rd[u]
        for t in range(k):
            rt = r[t]
            for u in range(t):
                c = lk[t, u]
                ru = r[u]
                for col in range(n):
                    rt[col] -= c * ru[col]
            d = rd[t]
            for col in range(n):
                rt[col] *= d
        _rank_update(e_low, r, k)


@njit
def _transfer(e_low, tau, m_out):
    """``m_out = tau (tau I + E)^-1 = I - series(E, tau) / tau``, full, from the
    lower triangle of ``series(E, tau)`` in ``e_low``.

    ``m_out`` maps the currents pushed into a block's across nodes to the
    currents passed on through its segments (eigenvalues in (0, 1]).
    """
    n = e_low.shape[0]
    s = -1.0 / tau
    for i in range(n):
        row = e_low[i]
        out = m_out[i]
        for j in range(i):
            v = s * row[j]
            out[j] = v
            m_out[j, i] = v
        out[i] = 1.0 + s * row[i]


@njit
def _factor_row(g, a, a0, tau, e_low, f_out, m_out, r, lk, rd, h, beta):
    """One block of the sweep: ``E_p = P_p + carry`` in ``e_low``, then
    ``e_low := series(E_p, tau)`` (the next block's carry), ``m_out`` the
    block's transfer matrix and ``f_out`` its source vector."""
    _add_row_schur(g, a, a0, e_low, f_out, h, beta)
    _series(e_low, tau, r, lk, rd)
    _transfer(e_low, tau, m_out)


@njit
def _factor_rows(gc, a, a0, b, b0, start, e_low, m_out, f_out):
    """Blocks ``start .. start + len(m_out) - 1`` of the sweep from the carry
    ``e_low`` (updated in place); ``m_out[i]`` and ``f_out[i]`` receive the
    transfer matrix and source vector of block ``start + i``."""
    m, n = gc.shape
    k = _panel(n)
    r = np.zeros((k, _padded(n)))
    lk = np.zeros((k, k))
    rd = np.empty(k)
    h = np.empty(n)
    beta = np.empty(n)
    for i in range(m_out.shape[0]):
        p = start + i
        tau = b if p < m - 1 else b0
        _factor_row(gc[p], a, a0, tau, e_low, f_out[i], m_out[i], r, lk, rd, h, beta)


@njit
def _geff_kernel(gc, a, a0, b, b0, q, out, m_store, f_store):
    """Core ``G_eff`` (m, n) into ``out``.

    Row ``p`` of ``out`` is ``f_p^T M_p M_{p+1} ... M_{m-1}`` (``M`` the
    symmetric transfer matrices, the last one towards the terminals). Rows
    ``p < q`` are carried forward, all together, one product per block;
    the rest come from the backward products ``V_p = M_p V_{p+1}``, which
    finish the carried rows with one more product. ``m_store`` holds
    ``M_p`` for the last ``len(m_store) >= m - q`` blocks and ``f_store``
    (m, n) every ``f_p`` on return.
    """
    m, n = gc.shape
    e_low = np.zeros((n, _padded(n)))
    k = _panel(n)
    r = np.zeros((k, _padded(n)))
    lk = np.zeros((k, k))
    rd = np.empty(k)
    h = np.empty(n)
    beta = np.empty(n)
    wa = np.zeros((q, n))
    wb = np.zeros((q, n))
    m_tmp = np.empty((n, n))
    first = m - m_store.shape[0]
    for p in range(m):
        tau = b if p < m - 1 else b0
        mp = m_store[p - first] if p >= first else m_tmp
        f = f_store[p]
        _factor_row(gc[p], a, a0, tau, e_low, f, mp, r, lk, rd, h, beta)
        if p < q:
            for j in range(n):
                wa[p, j] = f[j]
            np.dot(wa[: p + 1], mp, wb[: p + 1])
            wa, wb = wb, wa
    if q == m:
        for i in range(m):
            for j in range(n):
                out[i, j] = wa[i, j]
        return
    va = m_store[m - 1 - first].copy()
    vb = np.empty((n, n))
    out[m - 1] = np.dot(f_store[m - 1], va)
    for p in range(m - 2, q - 1, -1):
        np.dot(m_store[p - first], va, vb)
        va, vb = vb, va
        out[p] = np.dot(f_store[p], va)
    np.dot(wa, va, out[:q])


@njit
def _currents_kernel(gc, a, a0, b, b0, vin, out):
    """Across-terminal currents ``out`` (B, n) for within-terminal voltages
    ``vin`` (B, m), the sources carried forward as one batch."""
    m, n = gc.shape
    batch = vin.shape[0]
    e_low = np.zeros((n, _padded(n)))
    k = _panel(n)
    r = np.zeros((k, _padded(n)))
    lk = np.zeros((k, k))
    rd = np.empty(k)
    h = np.empty(n)
    beta = np.empty(n)
    f = np.empty(n)
    mp = np.empty((n, n))
    wa = np.zeros((batch, n))
    wb = np.zeros((batch, n))
    for p in range(m):
        tau = b if p < m - 1 else b0
        _factor_row(gc[p], a, a0, tau, e_low, f, mp, r, lk, rd, h, beta)
        for i in range(batch):
            vp = vin[i, p]
            for j in range(n):
                wa[i, j] += vp * f[j]
        np.dot(wa, mp, wb)
        wa, wb = wb, wa
    for i in range(batch):
        for j in range(n):
            out[i, j] = wa[i, j]


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
def _low_rank_kernel(mats, f_all, b, b0, a0, pk, u, slot, y_dev):
    """Forward and backward sweeps of the Woodbury update with stored transfer
    matrices ``mats`` (m, n, n): ``u[d]`` enters at block ``pk[d]``.

    Returns ``y_in`` (m, k), the solution at the within terminals over
    ``a0``, and ``y_out`` (n, k), at the across nodes of the last block;
    ``y_dev[slot[p]]`` receives the across-node solution of block ``p`` when
    ``slot[p] >= 0``.
    """
    m, n, _ = mats.shape
    k = u.shape[0]
    p_min = m
    for d in range(k):
        p_min = min(p_min, pk[d])
    wst = np.zeros((m, n, k))
    w = np.zeros((n, k))
    w2 = np.empty((n, k))
    for p in range(p_min, m):
        for d in range(k):
            if pk[d] == p:
                for i in range(n):
                    w[i, d] += u[d, i]
        wst[p] = w
        if p < m - 1:
            np.dot(mats[p], w, w2)
            w, w2 = w2, w
    y_in = np.empty((m, k))
    y_out = np.empty((n, k))
    y = np.zeros((n, k))
    rhs = np.empty((n, k))
    for p in range(m - 1, -1, -1):
        tau = b if p < m - 1 else b0
        for i in range(n):
            for d in range(k):
                rhs[i, d] = wst[p, i, d] + b * y[i, d]
        np.dot(mats[p], rhs, y)
        for i in range(n):
            for d in range(k):
                y[i, d] /= tau
        if p == m - 1:
            y_out[:, :] = y
        y_in[p] = np.dot(f_all[p], y) / a0
        if slot[p] >= 0:
            y_dev[slot[p]] = y
    return y_in, y_out


# -- block sweep --------------------------------------------------------------


def _check_finite(z: np.ndarray) -> np.ndarray:
    if not np.isfinite(z).all():
        raise FloatingPointError(
            "the IR-drop solve produced non-finite values; the conductances or "
            "wire resistances are outside the representable range"
        )
    return z


def _forward_rows(m: int, n: int, max_bytes: int) -> int:
    """Sources carried forward by :func:`_geff_kernel` (the ``q`` there).

    ``min(m, n)`` balances ``n^2 q^2`` flops for the forward rows against
    ``2 n^3 (m - q)`` for the backward products; these need ``m - q`` stored
    transfer matrices, and when those do not fit in ``max_bytes`` every row
    is carried forward instead (``n^2 m^2`` flops, no storage).
    """
    q = min(m, n)
    if 8 * (m - q) * n * n > max_bytes:
        q = m
    return q


def _sweep(gc: np.ndarray, ch: _Chains, max_bytes: int = DEFAULT_FACTOR_BYTES):
    """The (m, n) core ``G_eff``: row ``p`` holds the currents out of the
    across terminals for a unit voltage on within terminal ``p``."""
    m, n = gc.shape
    q = _forward_rows(m, n, max_bytes)
    out = np.empty((m, n))
    _geff_kernel(
        gc, ch.a, ch.a0, ch.b, ch.b0, q, out, np.empty((m - q, n, n)), np.empty((m, n))
    )
    return _check_finite(out)


def _segments(m: int, n: int, max_bytes: int) -> list[tuple[int, int]]:
    """Block ranges whose transfer matrices are kept in memory at one time."""
    per_block = 8 * n * n
    if m * per_block <= max_bytes:
        length = m
    else:
        length = max(math.isqrt(m), max_bytes // per_block, 1)
    return [(s, min(s + length, m)) for s in range(0, m, length)]


def _node_solve(gc, ch, vin, vacr, max_bytes: int):
    """All node voltages for within-terminal voltages ``vin`` (B, m) and
    across-terminal voltages ``vacr`` (B, n); either may be None (grounded).

    Returns ``(x, y)``, each (B, m, n): within-line and across-line nodes.
    Transfer matrices are kept for at most ``max_bytes``; beyond that the
    sweep stores checkpoints of the carry and redoes one segment at a time on
    the way back.
    """
    m, n = gc.shape
    batch = (vin if vin is not None else vacr).shape[0]
    segs = _segments(m, n, max_bytes)
    # Forward: reduced right-hand sides w_p (row form), stored as (m, B, n).
    wst = np.zeros((m, batch, n))
    f_all = np.empty((m, n))
    checkpoints = []
    mats = np.empty((0, n, n))
    e_low = np.zeros((n, _padded(n)))
    w = np.zeros((batch, n))
    for start, stop in segs:
        checkpoints.append(e_low.copy())
        mats = np.empty((stop - start, n, n))
        _factor_rows(
            gc, ch.a, ch.a0, ch.b, ch.b0, start, e_low, mats, f_all[start:stop]
        )
        for p in range(start, stop):
            if vin is not None:
                w += np.outer(vin[:, p], f_all[p])
            if p == m - 1 and vacr is not None:
                w += ch.b0 * vacr
            wst[p] = w
            if p < m - 1:
                w = w @ mats[p - start]
    # Backward: y_p = (tau I + E_p)^-1 (w_p + b y_{p+1}) = M_p (...) / tau.
    y = np.empty((m, batch, n))
    x = np.empty((m, batch, n))
    y_next = None
    for k in range(len(segs) - 1, -1, -1):
        start, stop = segs[k]
        if k != len(segs) - 1:
            e_low = checkpoints[k].copy()
            mats = np.empty((stop - start, n, n))
            _factor_rows(
                gc, ch.a, ch.a0, ch.b, ch.b0, start, e_low, mats, f_all[start:stop]
            )
        for p in range(stop - 1, start - 1, -1):
            tau = ch.b if p < m - 1 else ch.b0
            rhs = wst[p]
            if y_next is not None:
                rhs = rhs + ch.b * y_next
            y_p = (rhs @ mats[p - start]) / tau
            y[p] = y_p
            y_next = y_p
            src = gc[p][:, None] * y_p.T
            if vin is not None:
                src[0] += ch.a0 * vin[:, p]
            x[p] = _chain_solve(gc[p], ch.a, ch.a0, np.ascontiguousarray(src)).T
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
    if not ch.transposed and _batch_is_small(v2.shape[0], ch.m, ch.n):
        out = np.empty((v2.shape[0], ch.n))
        vin = np.ascontiguousarray(v2)
        _currents_kernel(_to_core(g, ch), ch.a, ch.a0, ch.b, ch.b0, vin, out)
        _check_finite(out)
    else:
        out = v2 @ _from_core(_sweep(_to_core(g, ch), ch), ch)
    return out[0] if v.ndim == 1 else out


def _batch_is_small(batch: int, m: int, n: int) -> bool:
    """Whether carrying a batch of inputs (``2 n^2 m B`` flops) beats forming
    ``G_eff`` (``n^2 q^2 + 2 n^3 (m - q)`` flops beyond the common sweep)."""
    q = min(m, n)
    return 2 * batch * m < q * q + 2 * n * (m - q)


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
        Memory allowed for stored transfer matrices [bytes]. Larger problems
        keep checkpoints only and redo the sweep on the way back (about twice the
        work).

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
    v_row = _check_finite(np.ascontiguousarray(v_row))
    v_col = _check_finite(np.ascontiguousarray(v_col))
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
        Memory allowed for the stored transfer matrices [bytes]; when they do
        not fit, every change is solved directly.

    Notes
    -----
    Each call of :meth:`effective_conductance` takes one of three paths,
    recorded in :attr:`last_path` and counted in :attr:`counts`:

    ``"cached"``
        ``g`` equals the previous call's: the previous result is returned.
    ``"low_rank"``
        At most ``max_low_rank`` devices differ from the last directly solved
        state: its stored transfer matrices give the exact Woodbury
        correction. The correction is checked (condition number of the small
        capacitance matrix) and the solver solves directly when that check
        fails.
    ``"direct"``
        A new sweep, which becomes the reference for later updates.

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
            # Direct ~ 3 m n^3 flops, low rank ~ 4 m n^2 k in thinner matrix
            # products; they cost the same at about 0.4 n changed devices.
            max_low_rank = max(1, (2 * n) // 5)
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
        ch = self._ch
        if not self.stores_factors:
            return _sweep(gc, ch)
        if self._factors is None:
            self._factors = np.empty((ch.m, ch.n, ch.n))
            self._f = np.empty((ch.m, ch.n))
        self._base_gc = None  # the buffers are overwritten below
        z = np.empty((ch.m, ch.n))
        q = min(ch.m, ch.n)
        _geff_kernel(gc, ch.a, ch.a0, ch.b, ch.b0, q, z, self._factors, self._f)
        _check_finite(z)
        # A copy: gc may be the caller's array, which may change in place.
        self._base_gc = gc.copy()
        self._base_z = z
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
        # Current +1 into the row end and -1 out of the column end of each
        # changed device, seen at the column ends: D H^-1 e_q - e_q.
        u = base[pk] * hq
        u[np.arange(k), qk] -= 1.0
        slot = np.full(m, -1, dtype=np.int64)
        blocks = np.array(sorted(by_block), dtype=np.int64)
        slot[blocks] = np.arange(blocks.size)
        y_dev = np.empty((blocks.size, n, k))
        y_in, y_out = _low_rank_kernel(
            self._factors, self._f, ch.b, ch.b0, ch.a0, pk, u, slot, y_dev
        )
        # U^T Y: row end minus column end of each changed device.
        uty = np.empty((k, k))
        for p, idx in by_block.items():
            y_p = y_dev[slot[p]]
            own = pk == p
            y_in[p, own] += hq[own, 0]
            x_dev = hq[idx] @ (base[p][:, None] * y_p)
            x_dev[:, own] += hq[idx][:, qk[own]]
            uty[idx] = x_dev - y_p[qk[idx]]
        cap = np.eye(k) + dg[:, None] * uty
        cond = np.linalg.cond(cap)
        if not np.isfinite(cond) or cond > _MAX_CAPACITANCE_COND:
            logger.debug("low-rank update rejected: capacitance cond %.3g", cond)
            return None
        corr = y_out @ np.linalg.solve(cap, dg[:, None] * y_in.T)
        return self._base_z - (ch.a0 * ch.b0) * corr.T
