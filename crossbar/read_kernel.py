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

With an ideal ADC every step after the DAC is linear, and the DAC acts on each
input alone (every row of an input is driven at the same voltage per unit, up
to the sign of a row pair). The tiles, pairs and scales then fold into one
matrix: ``y = v @ g[0]`` with the converted inputs ``v_i = Q_dac(u_i s_i) /
s_i``, plus, with read noise, a Gaussian of variance ``(v * v) @ q[0]`` per
output (the sum of the independent channel noises that land on it). Such a
*linear* plan computes the same distribution as the
tile-by-tile one for the cost of a plain product; exact weights are the
linear plan with an ideal DAC and no noise.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from crossbar.converters import quantize_symmetric
from crossbar.gaussian import fill_normal, seed_state
from crossbar.jit import njit
from crossbar.validation import check_array


class ReadPlan(NamedTuple):
    """Arrays and scalars that fully describe a (possibly analog) product.

    Shapes use ``T`` tiles, ``K`` the largest number of physical input rows of a
    tile and ``C`` the largest number of sensed channels of a tile; unused
    entries are zero (``g``, ``q``, ``in_scale``) or -1 (indices).
    """

    g: np.ndarray  # (T, K, C) folded effective conductance [S]
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
    linear: bool  # one product: y = u @ g[0] (+ noise of variance (u * u) @ q[0])


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
        linear=True,
    )


@njit
def _dac_inputs(plan, u):
    """Inputs after the DAC, in input units: ``Q(u * s) / s`` per input."""
    v = np.empty(u.shape)
    for b in range(u.shape[0]):
        for i in range(u.shape[1]):
            s = plan.in_scale[0, i]
            v[b, i] = quantize_symmetric(
                u[b, i] * s, plan.dac_steps, plan.dac_full_scale
            )
            v[b, i] /= s
    return v


@njit
def _linear_matvec(plan, u, out, state):
    """``out = u @ g[0]`` plus read noise of variance ``(u * u) @ q[0]``."""
    np.dot(u, plan.g[0], out)
    if plan.noisy:
        std = np.sqrt(np.dot(u * u, plan.q[0]))
        z = np.empty(out.shape)
        fill_normal(state, z)
        for b in range(out.shape[0]):
            for o in range(out.shape[1]):
                out[b, o] += std[b, o] * z[b, o]


@njit
def plan_matvec(plan, u, out, state):
    """Overwrite ``out`` (B, n_out) with the product of ``u`` (B, n_in).

    Read noise, when the plan has any, is drawn from ``state`` (see
    :func:`noise_state`), which the calling kernel seeds once per call.
    """
    if plan.linear:
        if plan.dac_steps > 0.0 or 0.0 < plan.dac_full_scale < np.inf:
            _linear_matvec(plan, _dac_inputs(plan, u), out, state)
        else:
            _linear_matvec(plan, u, out, state)
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
            var = np.dot(volts * volts, plan.q[t, :used])
            z = np.empty(var.shape)
            fill_normal(state, z)
            for b in range(batch):
                for c in range(n_ch):
                    current[b, c] += np.sqrt(var[b, c]) * z[b, c]

        # ADC on each sensed channel, then the digital sum of tiles and pairs.
        for b in range(batch):
            for c in range(n_ch):
                o = plan.ch_out[t, c]
                if o >= 0:
                    sensed = quantize_symmetric(
                        current[b, c], plan.adc_steps, plan.adc_full_scale
                    )
                    out[b, o] += plan.ch_sign[t, c] * plan.out_scale * sensed


@njit
def noise_state(seed):
    """The read-noise generator of one kernel call, seeded with ``seed``
    (an integer in ``[0, 2**63)``); see :mod:`crossbar.gaussian`."""
    state = np.empty(4, dtype=np.uint64)
    seed_state(state, seed)
    return state


def matvec(plan: ReadPlan, u: np.ndarray, seed: int | None = None) -> np.ndarray:
    """Python entry point: the product of a batch ``u`` (B, n_in) through ``plan``.

    ``seed`` seeds the read noise; without it the noise is seeded from fresh
    operating-system entropy (not reproducible).
    """
    u = check_array("u", u, ndim=2)
    if u.shape[1] != plan.n_in:
        check_array("u", u, shape=(None, plan.n_in))
    if seed is None:
        seed = int(np.random.default_rng().integers(2**63))
    out = np.empty((u.shape[0], plan.n_out))
    plan_matvec(plan, np.ascontiguousarray(u), out, noise_state(int(seed)))
    return out
