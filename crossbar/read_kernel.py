"""The numba-callable form of a matrix-vector product on crossbars.

A :class:`ReadPlan` describes how an input vector ``u`` (in arbitrary units) is
turned into an output vector ``y`` that approximates ``W @ u``. Every recurrent
kernel of the project calls :func:`plan_matvec` once per time step, so the same
kernel runs on exact weights (a plan from :func:`exact_plan`) and on simulated
crossbars (a plan built by :mod:`crossbar.tiling` from programmed arrays).

What a hardware plan computes, tile by tile (one tile = the part of a weight
matrix that lives on one physical array):

1. DAC: each physical input row ``k`` gets the voltage
   ``V_k = Q_dac(u[in_idx[k]] * in_scale[k])``; a negated row of a row pair has a
   negative ``in_scale``.
2. The analog product on sensed channels (columns): ``I_c = sum_k V_k g[k, c]``
   where ``g`` is the effective conductance of the programmed array (IR drop
   included when wire resistance is set), with the two rows of a row pair
   folded into one signed entry, since they share the column.
3. Read noise: each device's conductance fluctuates by a fresh Gaussian of
   relative standard deviation ``sigma_r`` on every read. The column current is
   then Gaussian with variance ``sum_k V_k**2 q[k, c]``, ``q = sigma_r**2 G**2``
   summed over the devices folded into the entry, and the columns are
   independent; drawing that directly is exact in distribution and avoids one
   random number per device.
4. ADC on each sensed channel, then ``y[ch_out[c]] += ch_sign[c] * I_c *
   out_scale`` (column pairs are subtracted after sensing; tiles add digitally).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from crossbar.converters import quantize_symmetric
from crossbar.jit import njit
from crossbar.validation import check_array


class ReadPlan(NamedTuple):
    """Arrays and scalars that fully describe a (possibly analog) product.

    Shapes use ``T`` tiles, ``K`` the largest number of physical input rows of a
    tile and ``C`` the largest number of sensed channels of a tile; unused
    entries are zero (``g``, ``q``, ``in_scale``) or -1 (indices).
    """

    g: np.ndarray  # (T, K, C) folded effective conductance [S] (exact: weights)
    q: np.ndarray  # (T, K, C) read-noise variance coefficient [S^2]
    in_idx: np.ndarray  # (T, K) int64 index into u of each physical input row
    in_scale: np.ndarray  # (T, K) volts per unit of u, sign of the row included
    ch_out: np.ndarray  # (T, C) int64 output index of each sensed channel
    ch_sign: np.ndarray  # (T, C) +1 or -1 (column pairs subtract)
    dac_steps: float  # quantization steps per sign, 0 = ideal DAC
    dac_full_scale: float  # [V] DAC clipping voltage, inf = none
    adc_steps: float  # quantization steps per sign, 0 = ideal ADC
    adc_full_scale: float  # [A] ADC saturation current, inf = none
    out_scale: float  # output units per ampere, 1 / (g_unit * v_ref)
    n_in: int  # length of u
    n_out: int  # length of y
    noisy: bool  # read noise present
    exact: bool  # plain matmul: g[0] holds W.T, everything else unused


def exact_plan(w: np.ndarray) -> ReadPlan:
    """A plan for the exact product ``u @ w.T`` with ``w`` of shape (out, in)."""
    w = check_array("w", w, ndim=2)
    n_out, n_in = w.shape
    g = np.ascontiguousarray(w.T)[None, :, :]  # (1, in, out)
    return ReadPlan(
        g=g,
        q=np.zeros((1, 1, 1)),
        in_idx=np.arange(n_in, dtype=np.int64)[None, :],
        in_scale=np.ones((1, n_in)),
        ch_out=np.arange(n_out, dtype=np.int64)[None, :],
        ch_sign=np.ones((1, n_out)),
        dac_steps=0.0,
        dac_full_scale=np.inf,
        adc_steps=0.0,
        adc_full_scale=np.inf,
        out_scale=1.0,
        n_in=n_in,
        n_out=n_out,
        noisy=False,
        exact=True,
    )


@njit
def plan_matvec(plan, u, out):
    """Overwrite ``out`` (B, n_out) with the product of ``u`` (B, n_in).

    Read noise, when the plan has any, comes from numba's generator, which the
    calling kernel seeds once with ``np.random.seed``.
    """
    if plan.exact:
        out[:, :] = np.dot(u, plan.g[0])
        return
    batch = u.shape[0]
    n_tiles, n_rows, n_ch = plan.g.shape
    out[:, :] = 0.0
    for t in range(n_tiles):
        # Rows past a tile's last input are padding: leave them out of the
        # products (a small last tile would otherwise cost a full one).
        used = 0
        for k in range(n_rows):
            if plan.in_idx[t, k] >= 0:
                used = k + 1
        volts = np.zeros((batch, used))

        # DAC: unit inputs to quantized row voltages.
        for b in range(batch):
            for k in range(used):
                idx = plan.in_idx[t, k]
                if idx >= 0:
                    volts[b, k] = quantize_symmetric(
                        u[b, idx] * plan.in_scale[t, k],
                        plan.dac_steps,
                        plan.dac_full_scale,
                    )
        current = np.dot(volts, plan.g[t, :used])  # (B, C) amperes

        if plan.noisy:
            # numba has no Generator support here; its own stream is seeded by
            # the caller from the run's Generator, so runs stay reproducible.
            var = np.dot(volts * volts, plan.q[t, :used])
            for b in range(batch):
                for c in range(n_ch):
                    z = np.random.standard_normal()  # noqa: NPY002
                    current[b, c] += np.sqrt(var[b, c]) * z

        # ADC on each sensed channel, then the digital sum of tiles and pairs.
        for c in range(n_ch):
            o = plan.ch_out[t, c]
            if o < 0:
                continue
            scale = plan.ch_sign[t, c] * plan.out_scale
            for b in range(batch):
                sensed = quantize_symmetric(
                    current[b, c], plan.adc_steps, plan.adc_full_scale
                )
                out[b, o] += scale * sensed


@njit
def seed_kernel_rng(seed):
    """Seed numba's generator (used by noisy plans) inside jitted code."""
    np.random.seed(seed)  # noqa: NPY002


def matvec(plan: ReadPlan, u: np.ndarray, seed: int | None = None) -> np.ndarray:
    """Python entry point: the product of a batch ``u`` (B, n_in) through ``plan``.

    ``seed`` seeds the read noise; without it the noise continues numba's
    current stream.
    """
    u = check_array("u", u, ndim=2)
    if u.shape[1] != plan.n_in:
        check_array("u", u, shape=(None, plan.n_in))
    if seed is not None:
        seed_kernel_rng(int(seed))
    out = np.empty((u.shape[0], plan.n_out))
    plan_matvec(plan, np.ascontiguousarray(u), out)
    return out
