"""Fast, reproducible standard-normal draws for numba kernels.

Read noise needs one Gaussian per column and input vector on every read, so
the normal generator sets a large part of a noisy read's cost. Per draw,
numpy's ``Generator.standard_normal`` costs about 5 times and numba's
``np.random.standard_normal`` more than 10 times as much as a ziggurat on a
small generator inlined into the kernel (about 2 ns). This module provides
that generator for jitted kernels: its whole state is four 64-bit words that
a kernel keeps in local variables, and 97 % of the draws cost one 64-bit
output, one comparison with a table entry and one multiply.

Algorithms
----------
Uniform bits: xoshiro256++ of D. Blackman and S. Vigna, "Scrambled linear
pseudorandom number generators", ACM Transactions on Mathematical Software
47(4), 36 (2021). The state is seeded from one 64-bit integer with splitmix64
(G. L. Steele, D. Lea and C. H. Flood, "Fast splittable pseudorandom number
generators", OOPSLA 2014), as its authors recommend.

Normals: the ziggurat method of G. Marsaglia and W. W. Tsang, "The ziggurat
method for generating random variables", Journal of Statistical Software 5(8)
(2000), with 128 layers of equal area under ``exp(-x**2 / 2)``. The tables are
computed at import from the defining equations (the base-strip edge ``r``
solved so that the layers close exactly at ``x = 0``), the tail beyond ``r``
is drawn with Marsaglia's exact method ("Generating a variable from the tail
of the normal distribution", Technometrics 6(1), 101-102, 1964) and the wedges
are tested against the density itself, so the draws are exactly normal up to
floating-point rounding. Each draw uses the low 7 bits of one output for the
layer, bit 7 for the sign and the top 53 bits for the abscissa.

Every function here is jitted with :func:`crossbar.jit.njit` and also runs as
plain Python (``NUMBA_DISABLE_JIT=1``) with identical results. The generator
uses only shifts, xors and ``np.add``/``np.multiply`` on ``uint64``, which
wrap modulo 2**64 without the overflow warnings that numpy's scalar operators
emit, so the plain-Python path is warning-free.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from crossbar.jit import njit

logger = logging.getLogger(__name__)

N_LAYERS = 128


def _solve_ziggurat(n: int) -> tuple[float, float, np.ndarray]:
    """Base-strip edge ``r``, layer area ``v`` and layer edges ``x[0..n]``.

    Layer 0 is the base strip (the rectangle ``[0, r] x [0, f(r)]`` plus the
    tail), given the width ``v / f(r)``; layer ``i >= 1`` is the rectangle
    ``[0, x[i]] x [f(x[i]), f(x[i+1])]`` with ``x[1] = r`` and ``x[n] = 0``.
    ``r`` is found by bisection so that the top layer closes at ``x = 0``.
    """

    def f(x: float) -> float:
        return math.exp(-0.5 * x * x)

    def area(r: float) -> float:
        return r * f(r) + math.sqrt(math.pi / 2) * math.erfc(r / math.sqrt(2))

    def edges(r: float) -> tuple[float, list[float]]:
        """Closing residual (> 0 when layers are too large) and the edges."""
        v = area(r)
        xs = [v / f(r), r]
        for i in range(1, n - 1):
            a = v / xs[-1] + f(xs[-1])
            if a >= 1.0:
                return float(n - i), xs
            xs.append(math.sqrt(-2.0 * math.log(a)))
        return v / xs[-1] + f(xs[-1]) - 1.0, xs

    lo, hi = 2.0, 5.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if edges(mid)[0] > 0.0:
            lo = mid
        else:
            hi = mid
    residual, xs = edges(hi)
    if abs(residual) > 1e-12:
        raise RuntimeError(f"ziggurat tables did not close: residual {residual}")
    return hi, area(hi), np.array([*xs, 0.0])


ZIG_R, ZIG_V, _ZIG_X = _solve_ziggurat(N_LAYERS)
# Density at each edge; the top layer's upper edge is f(0) = 1 exactly.
_ZIG_F = np.exp(-0.5 * _ZIG_X * _ZIG_X)
_ZIG_F[N_LAYERS] = 1.0
# Abscissa of layer i for a 53-bit integer j: x = j * _ZIG_W[i].
_ZIG_W = _ZIG_X[:N_LAYERS] * 2.0**-53
# Fast path: j < _ZIG_K[i] puts x inside the next layer's edge, under the curve.
_ZIG_K = np.floor(_ZIG_X[1:] / _ZIG_X[:N_LAYERS] * 2.0**53).astype(np.int64)
# The same tables indexed by the low 8 bits of a draw: bit 7 is the sign.
_ZIG_W2 = np.concatenate([_ZIG_W, -_ZIG_W])
_ZIG_K2 = np.concatenate([_ZIG_K, _ZIG_K])

# uint64 constants keep numba's integer arithmetic in uint64 (mixed with int64
# it would go to float64) and numpy's plain-Python scalars alike.
_U1 = np.uint64(1)
_U7 = np.uint64(7)
_U11 = np.uint64(11)
_U17 = np.uint64(17)
_U19 = np.uint64(19)
_U23 = np.uint64(23)
_U27 = np.uint64(27)
_U30 = np.uint64(30)
_U31 = np.uint64(31)
_U41 = np.uint64(41)
_U45 = np.uint64(45)
_U127 = np.uint64(127)
_U255 = np.uint64(255)
_SM_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_SM_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_SM_MUL2 = np.uint64(0x94D049BB133111EB)
_TWO_M53 = 2.0**-53


@njit
def splitmix64(x):
    """One splitmix64 step on ``uint64`` ``x``: ``(output, next x)``."""
    x = np.add(x, _SM_GAMMA)
    z = np.multiply(x ^ (x >> _U30), _SM_MUL1)
    z = np.multiply(z ^ (z >> _U27), _SM_MUL2)
    return z ^ (z >> _U31), x


@njit
def seed_words(seed):
    """The four xoshiro256++ state words for ``seed`` (uint64): a 4-tuple.

    They are consecutive splitmix64 outputs, which are distinct and so never
    all zero (the one state xoshiro cannot leave).
    """
    x = np.uint64(seed)
    s0, x = splitmix64(x)
    s1, x = splitmix64(x)
    s2, x = splitmix64(x)
    s3, x = splitmix64(x)
    return s0, s1, s2, s3


@njit
def seed_state(state, seed) -> None:
    """Fill ``state`` (uint64 array of 4) from an integer ``seed`` in [0, 2**64)."""
    s0, s1, s2, s3 = seed_words(seed)
    state[0] = s0
    state[1] = s1
    state[2] = s2
    state[3] = s3


def new_state(seed: int) -> np.ndarray:
    """A fresh generator state (uint64 array of 4) for integer ``seed``.

    Any Python integer is accepted; it is reduced modulo 2**64.
    """
    state = np.zeros(4, dtype=np.uint64)
    seed_state(state, np.uint64(int(seed) & 0xFFFF_FFFF_FFFF_FFFF))
    return state


def seed_from(rng: np.random.Generator) -> np.uint64:
    """A 64-bit seed taken from ``rng``: one raw draw of its bit generator,
    the cheapest way to take 64 bits from it (two for MT19937, whose raw
    draws have 32 bits). The same ``rng`` state gives the same seed."""
    bits = rng.bit_generator
    seed = int(bits.random_raw())
    if type(bits) is np.random.MT19937:
        seed = (seed << 32) | int(bits.random_raw())
    return np.uint64(seed)


@njit
def xoshiro_next(s0, s1, s2, s3):
    """One xoshiro256++ step: ``(64-bit output, s0, s1, s2, s3)``, all uint64."""
    a = np.add(s0, s3)
    out = np.add((a << _U23) | (a >> _U41), s0)
    t = s1 << _U17
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = (s3 << _U45) | (s3 >> _U19)
    return out, s0, s1, s2, s3


@njit
def _uniform_open(bits) -> float:
    """A uniform in (0, 1] from the top 53 bits of ``bits`` (never 0: log-safe)."""
    return (np.int64(bits >> _U11) + 1) * _TWO_M53


@njit
def _draw_slow(bits, s0, s1, s2, s3):
    """Finish a draw whose candidate ``bits`` missed the fast path.

    Kept out of :func:`draw_normal` so that the fast path stays small enough
    to inline into the callers' loops; it runs for about 3 % of the draws.
    """
    while True:
        i = np.int64(bits & _U127)
        sign = 1.0 - 2.0 * np.int64((bits >> _U7) & _U1)
        j = np.int64(bits >> _U11)
        x = j * _ZIG_W[i]
        if j < _ZIG_K[i]:
            return sign * x, s0, s1, s2, s3
        if i == 0:
            # Tail beyond r: Marsaglia (1964), exact.
            while True:
                b1, s0, s1, s2, s3 = xoshiro_next(s0, s1, s2, s3)
                b2, s0, s1, s2, s3 = xoshiro_next(s0, s1, s2, s3)
                xt = -math.log(_uniform_open(b1)) / ZIG_R
                yt = -math.log(_uniform_open(b2))
                if yt + yt > xt * xt:
                    return sign * (ZIG_R + xt), s0, s1, s2, s3
        # Wedge of layer i: accept if (x, y) lies under the density.
        b1, s0, s1, s2, s3 = xoshiro_next(s0, s1, s2, s3)
        u = np.int64(b1 >> _U11) * _TWO_M53
        y = _ZIG_F[i] + u * (_ZIG_F[i + 1] - _ZIG_F[i])
        if y < math.exp(-0.5 * x * x):
            return sign * x, s0, s1, s2, s3
        # Rejected: a whole new candidate.
        bits, s0, s1, s2, s3 = xoshiro_next(s0, s1, s2, s3)


@njit
def draw_normal(s0, s1, s2, s3):
    """One standard normal from the state words: ``(z, s0, s1, s2, s3)``.

    The building block for kernels that keep the state in local variables
    (registers); :func:`normal` and :func:`fill_normal` wrap it. The fast path
    indexes sign-folded tables with the low 8 bits (layer and sign), so it
    has no branch on the sign.
    """
    bits, s0, s1, s2, s3 = xoshiro_next(s0, s1, s2, s3)
    k = bits & _U255
    j = np.int64(bits >> _U11)
    if j < _ZIG_K2[k]:
        return j * _ZIG_W2[k], s0, s1, s2, s3
    return _draw_slow(bits, s0, s1, s2, s3)


@njit
def normal(state) -> float:
    """One standard normal; advances ``state`` (uint64 array of 4) in place."""
    z, s0, s1, s2, s3 = draw_normal(state[0], state[1], state[2], state[3])
    state[0] = s0
    state[1] = s1
    state[2] = s2
    state[3] = s3
    return z


@njit
def fill_normal(state, out) -> None:
    """Fill the C-contiguous float64 array ``out`` (any shape) with normals.

    Gives the same numbers, in flat order, as ``out.size`` calls of
    :func:`normal`, and leaves ``state`` where they would.
    """
    if not out.flags.c_contiguous:
        raise ValueError("fill_normal needs a C-contiguous array")
    flat = out.reshape(out.size)
    s0 = state[0]
    s1 = state[1]
    s2 = state[2]
    s3 = state[3]
    for n in range(flat.size):
        z, s0, s1, s2, s3 = draw_normal(s0, s1, s2, s3)
        flat[n] = z
    state[0] = s0
    state[1] = s1
    state[2] = s2
    state[3] = s3
