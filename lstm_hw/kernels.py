"""Jitted time loops of the recurrent layers (forward pass and BPTT).

Every kernel here works on batch-first inputs ``x`` (B, T, I) and keeps the
matrices of a layer in the *combined* layout ``M = [W_ih | W_hh | b]`` of shape
(rows, n_in) with ``n_in = I + H + n_bias``: the vector ``u_t = [x_t, h_{t-1},
1, ..., 1]`` times ``M.T`` gives every pre-activation a step needs.

Forward kernels send that product through :func:`crossbar.read_kernel.plan_matvec`
once per time step on the full ``u_t``, so that an analog read sums the input,
recurrent and bias parts on the same column, exactly as a crossbar does. The
read-noise generator is seeded once at the start from the ``seed`` argument,
which makes hardware plans with read noise reproducible.

Backward kernels always run in software on the layer's own matrix. The loop
over time computes only what the recurrence needs (the gate gradients of step
``t`` and the carried state gradients); the weight gradient is one matrix
product ``dZ.T @ U`` over all steps after the loop (one BLAS call), and the
input gradient ``dZ @ W_ih``, when wanted, follows the loop as well. The
arrays that carry values from forward to backward (``u_t`` of every step,
gate activations, cell states) are work arrays owned by the layer and reused
between calls.

Sigmoid and tanh are built on :func:`expm1_into`, a branch-free exponential
that LLVM vectorises; libm's scalar calls would dominate the forward pass.

Variable lengths: sequence ``b`` is valid for ``t < lengths[b]``. At later
steps its state is frozen (copied) and its output is zero; those steps get no
gradient, and the gradient of the final state enters at step
``lengths[b] - 1``.

Truncated BPTT over ``k`` steps (``truncate = k > 0``): time is cut into chunks
``[0, k), [k, 2k), ...`` on the common time axis of the batch. Gradients flow
through the recurrence only inside a chunk; the state that enters a chunk from
the previous one is treated as a constant. Equivalently, the carried state
gradients are set to zero when the backward loop crosses from step ``m k`` to
step ``m k - 1``. The first chunk starts from the initial state, so the
gradient of ``h0`` (and ``c0``) only collects the first chunk's errors.
``truncate = 0`` means full BPTT.

LSTM variants (``variant``): 0 vanilla, 1 peephole, 2 cifg. The gate rows of
the combined matrix are ``i, f, g, o`` (4H rows) for vanilla and peephole and
``i, g, o`` (3H rows) for cifg, where ``f = 1 - i``. Peephole weights ``peep``
(3, H) hold ``w_ci, w_cf, w_co``: ``i`` and ``f`` see ``c_{t-1}``, ``o`` sees
``c_t``, elementwise and digitally.

GRU rows are ``r, z, n_x, n_h`` (4H): ``n_x`` holds ``[W_in | 0 | b_in]`` and
``n_h`` holds ``[0 | W_hn | b_hn]`` so that the reset gate multiplies only the
recurrent part, ``n = tanh(n_x + r * n_h)``.
"""

from __future__ import annotations

import logging

import numpy as np

from crossbar.jit import njit
from crossbar.read_kernel import noise_state, plan_matvec

logger = logging.getLogger(__name__)

VANILLA = 0
PEEPHOLE = 1
CIFG = 2


# Constants of the vectorisable expm1 below: log2(e), ln(2) split so that
# k * LN2_HI is exact for |k| < 2**11, and 1.5 * 2**52, whose addition rounds a
# double to an integer that can then be read from the low mantissa bits.
LOG2E = 1.4426950408889634
LN2_HI = 6.93147180369123816490e-01
LN2_LO = 1.90821492927058770002e-10
ROUNDER = 6755399441055744.0
ROUNDER_BITS = 0x4338000000000000
# Taylor coefficients 1/n! of exp for n = 2..13 (|r| <= ln(2)/2 after
# reduction, so the first omitted term is below 1e-17 of the result).
E2, E3, E4, E5 = 1 / 2, 1 / 6, 1 / 24, 1 / 120
E6, E7, E8, E9 = 1 / 720, 1 / 5040, 1 / 40320, 1 / 362880
E10, E11, E12, E13 = 1 / 3628800, 1 / 39916800, 1 / 479001600, 1 / 6227020800


@njit
def expm1_into(x, out, scratch):
    """``out = expm1(x)`` elementwise on 1-D arrays, in loops LLVM vectorises.

    The gates of a step need thousands of exponentials; libm's scalar calls
    cost several times more than this branch-free form, which writes
    ``x = k ln2 + r`` and ``expm1(x) = 2**k expm1(r) + (2**k - 1)`` with
    ``2**k`` assembled from its exponent bits in ``scratch``. Arguments are
    clamped to [-708, 709], so the result is always finite; the relative error
    is about one unit in the last place. ``x`` and ``out`` may be the same
    array; ``scratch`` must be distinct from both.
    """
    n = x.shape[0]
    for k in range(n):
        xk = min(max(x[k], -708.0), 709.0)
        shifted = xk * LOG2E + ROUNDER
        kf = shifted - ROUNDER
        r = (xk - kf * LN2_HI) - kf * LN2_LO
        p = E13
        p = p * r + E12
        p = p * r + E11
        p = p * r + E10
        p = p * r + E9
        p = p * r + E8
        p = p * r + E7
        p = p * r + E6
        p = p * r + E5
        p = p * r + E4
        p = p * r + E3
        p = p * r + E2
        out[k] = r + r * r * p
        scratch[k] = shifted
    bits = scratch.view(np.int64)
    for k in range(n):
        bits[k] = (bits[k] - ROUNDER_BITS + 1023) << 52
    for k in range(n):
        s = scratch[k]
        out[k] = s * out[k] + (s - 1.0)


@njit
def sigmoid_from_expm1(m):
    """``sigmoid(z)`` given ``m = expm1(-z)``: ``1 / (1 + exp(-z))``."""
    return 1.0 / (2.0 + m)


@njit
def tanh_from_expm1(m):
    """``tanh(z)`` given ``m = expm1(-2 z)``; exact sign and no overflow."""
    return -m / (2.0 + m)


@njit
def sigmoid(x):
    """Logistic function of a 1-D array (a fresh array)."""
    m = -x
    expm1_into(m, m, np.empty_like(m))
    out = np.empty_like(m)
    for k in range(m.shape[0]):
        out[k] = sigmoid_from_expm1(m[k])
    return out


@njit
def tanh(x):
    """Hyperbolic tangent of a 1-D array (a fresh array)."""
    m = -2.0 * x
    expm1_into(m, m, np.empty_like(m))
    out = np.empty_like(m)
    for k in range(m.shape[0]):
        out[k] = tanh_from_expm1(m[k])
    return out


@njit
def _fill_inputs(u, x, t, h, n_x, n_h):
    """Write ``[x[:, t], h, 1...1]`` into ``u`` (B, n_in)."""
    batch, n_in = u.shape
    for b in range(batch):
        for k in range(n_x):
            u[b, k] = x[b, t, k]
        for k in range(n_h):
            u[b, n_x + k] = h[b, k]
        for k in range(n_x + n_h, n_in):
            u[b, k] = 1.0


@njit
def _weight_and_input_grads(dz, u_all, w_ih, n_steps, need_dx):
    """``dZ.T @ U`` over all valid steps and, if wanted, ``dZ @ W_ih``.

    ``dz`` (T, B, G) and ``u_all`` (T, B, n_in) are time-major. Returns the
    combined-matrix gradient (G, n_in) and the input gradient (B, T, I),
    zero beyond ``n_steps`` (an empty array when ``need_dx`` is False).
    """
    steps, batch, rows = dz.shape
    n_in = u_all.shape[2]
    n_x = w_ih.shape[1]
    dz2 = dz[:n_steps].reshape((n_steps * batch, rows))
    u2 = u_all[:n_steps].reshape((n_steps * batch, n_in))
    d_comb = np.dot(dz2.T, u2)
    if not need_dx:
        return d_comb, np.zeros((0, 0, 0))
    d_x = np.zeros((batch, steps, n_x))
    # Step by step into a small buffer: no large time-major temporary.
    buf = np.empty((batch, n_x))
    for t in range(n_steps):
        np.dot(dz[t], w_ih, buf)
        for b in range(batch):
            for k in range(n_x):
                d_x[b, t, k] = buf[b, k]
    return d_comb, d_x


# --------------------------------------------------------------------- LSTM


@njit
def lstm_forward(
    plan, x, lengths, h0, c0, peep, variant, seed, u_all, gates, cells, tanh_c
):
    """Run an LSTM layer over ``x`` (B, T, I) through ``plan``.

    The caller owns the work arrays, which keep what the backward pass needs
    and are overwritten here (reusing them spares the page faults of fresh
    large allocations on every call): ``u_all`` (T, B, n_in) the inputs
    ``u_t``; ``gates`` (T, B, G) the gate activations in the row order of the
    plan; ``cells`` (T + 1, B, H) the cell states with ``cells[0] = c0``;
    ``tanh_c`` (T, B, H) ``tanh(c_t)``. Entries of padded steps are not
    meaningful.

    Returns
    -------
    out : (B, T, H) hidden states, zero at padded steps.
    h_n, c_n : (B, H) states at each sequence's last valid step.
    """
    state = noise_state(seed)
    batch, steps, n_x = x.shape
    hidden = h0.shape[1]
    rows = plan.n_out
    cifg = variant == CIFG
    peephole = variant == PEEPHOLE
    # Row offsets of the gates in the combined layout.
    if cifg:
        oi, of, og, oo = 0, 0, hidden, 2 * hidden
    else:
        oi, of, og, oo = 0, hidden, 2 * hidden, 3 * hidden
    n_steps = 0
    for b in range(batch):
        n_steps = max(n_steps, lengths[b])

    out = np.zeros((batch, steps, hidden))
    h = h0.copy()
    c = c0.copy()
    cells[0] = c0
    z = np.empty((batch, rows))
    # Arguments of expm1: -z for sigmoid gates, -2 z for the tanh gate g.
    scale = np.full(rows, -1.0)
    scale[og : og + hidden] = -2.0
    arg = np.empty(batch * rows)
    m = np.empty(batch * rows)
    scratch = np.empty(batch * rows)
    arg2d = arg.reshape((batch, rows))
    m2d = m.reshape((batch, rows))
    # Second round: tanh(c_t) and, for peepholes, the output gate on c_t.
    n2 = (2 if peephole else 1) * batch * hidden
    arg_c = np.empty(2 * batch * hidden)
    m_c = np.empty(2 * batch * hidden)
    scratch_c = np.empty(2 * batch * hidden)
    arg_c3 = arg_c.reshape((2, batch, hidden))
    m_c3 = m_c.reshape((2, batch, hidden))
    c_new = np.empty((batch, hidden))
    for t in range(n_steps):
        u = u_all[t]
        _fill_inputs(u, x, t, h, n_x, hidden)
        plan_matvec(plan, u, z, state)
        if peephole:
            for b in range(batch):
                for j in range(hidden):
                    z[b, oi + j] += peep[0, j] * c[b, j]
                    z[b, of + j] += peep[1, j] * c[b, j]
        for b in range(batch):
            for j in range(rows):
                arg2d[b, j] = scale[j] * z[b, j]
        expm1_into(arg, m, scratch)
        a = gates[t]
        for b in range(batch):
            for j in range(hidden):
                ig = sigmoid_from_expm1(m2d[b, oi + j])
                if cifg:
                    fg = 1.0 - ig
                else:
                    fg = sigmoid_from_expm1(m2d[b, of + j])
                    a[b, of + j] = fg
                gg = tanh_from_expm1(m2d[b, og + j])
                a[b, oi + j] = ig
                a[b, og + j] = gg
                cc = fg * c[b, j] + ig * gg
                c_new[b, j] = cc
                arg_c3[0, b, j] = -2.0 * cc
            if peephole:
                for j in range(hidden):
                    arg_c3[1, b, j] = -(z[b, oo + j] + peep[2, j] * c_new[b, j])
            else:
                for j in range(hidden):
                    a[b, oo + j] = sigmoid_from_expm1(m2d[b, oo + j])
        expm1_into(arg_c[:n2], m_c[:n2], scratch_c[:n2])
        for b in range(batch):
            if peephole:
                for j in range(hidden):
                    a[b, oo + j] = sigmoid_from_expm1(m_c3[1, b, j])
            if t >= lengths[b]:
                # Padding: the state stays frozen, the output stays zero.
                for j in range(hidden):
                    cells[t + 1, b, j] = c[b, j]
                continue
            for j in range(hidden):
                tc = tanh_from_expm1(m_c3[0, b, j])
                hh = a[b, oo + j] * tc
                c[b, j] = c_new[b, j]
                h[b, j] = hh
                cells[t + 1, b, j] = c_new[b, j]
                tanh_c[t, b, j] = tc
                out[b, t, j] = hh
    for t in range(n_steps, steps):
        cells[t + 1] = c
    return out, h, c


@njit
def lstm_backward(
    w_ih,
    w_hh,
    peep,
    variant,
    lengths,
    u_all,
    gates,
    cells,
    tanh_c,
    d_out,
    use_d_out,
    d_hn,
    d_cn,
    truncate,
    need_dx,
    dz,
):
    """BPTT of :func:`lstm_forward` on the software weights.

    ``w_ih`` (G, I) and ``w_hh`` (G, H) are the input and recurrent columns of
    the combined matrix (contiguous copies). ``d_out`` (B, T, H) is the
    gradient of the output sequence (ignored unless ``use_d_out``), ``d_hn``
    and ``d_cn`` (B, H) those of the final state. ``dz`` (T, B, G) is a work
    array for the gate pre-activation gradients, overwritten.

    Returns
    -------
    d_comb : (G, n_in) gradient of the combined matrix.
    d_peep : (3, H) gradient of the peephole weights (zero unless peephole).
    d_x : (B, T, I) input gradient (empty when ``need_dx`` is False).
    d_h0, d_c0 : (B, H) gradients of the initial state.
    """
    steps, batch, rows = gates.shape
    hidden = w_hh.shape[1]
    cifg = variant == CIFG
    peephole = variant == PEEPHOLE
    if cifg:
        oi, of, og, oo = 0, 0, hidden, 2 * hidden
    else:
        oi, of, og, oo = 0, hidden, 2 * hidden, 3 * hidden
    n_steps = 0
    for b in range(batch):
        n_steps = max(n_steps, lengths[b])

    d_peep = np.zeros((3, hidden))
    dh = np.zeros((batch, hidden))
    dc = np.zeros((batch, hidden))
    for t in range(n_steps - 1, -1, -1):
        a = gates[t]
        g_t = dz[t]
        for b in range(batch):
            last = lengths[b] - 1
            if t > last:
                for k in range(rows):
                    g_t[b, k] = 0.0
                continue
            if t == last:
                for j in range(hidden):
                    dh[b, j] += d_hn[b, j]
                    dc[b, j] += d_cn[b, j]
            if use_d_out:
                for j in range(hidden):
                    dh[b, j] += d_out[b, t, j]
            for j in range(hidden):
                dhj = dh[b, j]
                ig = a[b, oi + j]
                gg = a[b, og + j]
                og_ = a[b, oo + j]
                tc = tanh_c[t, b, j]
                c_prev = cells[t, b, j]
                dzo = dhj * tc * og_ * (1.0 - og_)
                dcj = dc[b, j] + dhj * og_ * (1.0 - tc * tc)
                if peephole:
                    dcj += dzo * peep[2, j]
                    d_peep[2, j] += dzo * cells[t + 1, b, j]
                dzg = dcj * ig * (1.0 - gg * gg)
                if cifg:
                    # c = (1 - i) c_prev + i g
                    dzi = dcj * (gg - c_prev) * ig * (1.0 - ig)
                    dc[b, j] = dcj * (1.0 - ig)
                else:
                    fg = a[b, of + j]
                    dzi = dcj * gg * ig * (1.0 - ig)
                    dzf = dcj * c_prev * fg * (1.0 - fg)
                    g_t[b, of + j] = dzf
                    dcp = dcj * fg
                    if peephole:
                        dcp += dzi * peep[0, j] + dzf * peep[1, j]
                        d_peep[0, j] += dzi * c_prev
                        d_peep[1, j] += dzf * c_prev
                    dc[b, j] = dcp
                g_t[b, oi + j] = dzi
                g_t[b, og + j] = dzg
                g_t[b, oo + j] = dzo
        # Recurrent gradient; rows past their length have zero gate gradients,
        # so their carried dh becomes zero, as it must.
        np.dot(g_t, w_hh, dh)
        if truncate > 0 and t > 0 and t % truncate == 0:
            dh[:, :] = 0.0
            dc[:, :] = 0.0
    d_comb, d_x = _weight_and_input_grads(dz, u_all, w_ih, n_steps, need_dx)
    return d_comb, d_peep, d_x, dh, dc


# ---------------------------------------------------------------------- GRU


@njit
def gru_forward(plan, x, lengths, h0, seed, u_all, gates):
    """Run a GRU layer over ``x`` (B, T, I) through ``plan`` (4H rows).

    Work arrays owned by the caller and overwritten: ``u_all`` (T, B, n_in)
    the inputs ``u_t``; ``gates`` (T, B, 4H) ``r, z, n`` and the recurrent
    part ``n_h`` of the new gate.

    Returns
    -------
    out : (B, T, H) hidden states, zero at padded steps.
    h_n : (B, H) state at each sequence's last valid step.
    """
    state = noise_state(seed)
    batch, steps, n_x = x.shape
    hidden = h0.shape[1]
    rows = plan.n_out
    n_steps = 0
    for b in range(batch):
        n_steps = max(n_steps, lengths[b])

    out = np.zeros((batch, steps, hidden))
    h = h0.copy()
    z = np.empty((batch, rows))
    h2, h3 = 2 * hidden, 3 * hidden
    # expm1 arguments: -z for the r and z gates, then -2 (n_x + r n_h).
    arg = np.empty(batch * h2)
    m = np.empty(batch * h2)
    scratch = np.empty(batch * h2)
    arg2d = arg.reshape((batch, h2))
    m2d = m.reshape((batch, h2))
    arg_n = np.empty(batch * hidden)
    m_n = np.empty(batch * hidden)
    arg_n2d = arg_n.reshape((batch, hidden))
    m_n2d = m_n.reshape((batch, hidden))
    for t in range(n_steps):
        u = u_all[t]
        _fill_inputs(u, x, t, h, n_x, hidden)
        plan_matvec(plan, u, z, state)
        for b in range(batch):
            for j in range(h2):
                arg2d[b, j] = -z[b, j]
        expm1_into(arg, m, scratch)
        a = gates[t]
        for b in range(batch):
            for j in range(h2):
                a[b, j] = sigmoid_from_expm1(m2d[b, j])
            for j in range(hidden):
                nh = z[b, h3 + j]
                a[b, h3 + j] = nh
                arg_n2d[b, j] = -2.0 * (z[b, h2 + j] + a[b, j] * nh)
        expm1_into(arg_n, m_n, scratch[: batch * hidden])
        for b in range(batch):
            if t >= lengths[b]:
                continue
            for j in range(hidden):
                n = tanh_from_expm1(m_n2d[b, j])
                zz = a[b, hidden + j]
                hh = (1.0 - zz) * n + zz * h[b, j]
                a[b, h2 + j] = n
                h[b, j] = hh
                out[b, t, j] = hh
    return out, h


@njit
def gru_backward(
    w_ih, w_hh, lengths, u_all, gates, d_out, use_d_out, d_hn, truncate, need_dx, dz
):
    """BPTT of :func:`gru_forward` on the software weights.

    ``w_ih`` (4H, I) and ``w_hh`` (4H, H) are column blocks of the combined
    matrix (the ``n_x`` rows of ``w_hh`` and the ``n_h`` rows of ``w_ih`` are
    zero there). ``d_out`` is ignored unless ``use_d_out``; ``dz`` (T, B, 4H)
    is a work array, overwritten.

    Returns
    -------
    d_comb : (4H, n_in) gradient of the combined matrix (dense: the caller
        keeps only the blocks that exist).
    d_x : (B, T, I) input gradient (empty when ``need_dx`` is False).
    d_h0 : (B, H) gradient of the initial state.
    """
    steps, batch, rows = gates.shape
    hidden = w_hh.shape[1]
    n_x = w_ih.shape[1]
    h2, h3 = 2 * hidden, 3 * hidden
    n_steps = 0
    for b in range(batch):
        n_steps = max(n_steps, lengths[b])

    dh = np.zeros((batch, hidden))
    dh_rec = np.zeros((batch, hidden))
    for t in range(n_steps - 1, -1, -1):
        a = gates[t]
        g_t = dz[t]
        u = u_all[t]
        for b in range(batch):
            last = lengths[b] - 1
            if t > last:
                for k in range(rows):
                    g_t[b, k] = 0.0
                continue
            if t == last:
                for j in range(hidden):
                    dh[b, j] += d_hn[b, j]
            if use_d_out:
                for j in range(hidden):
                    dh[b, j] += d_out[b, t, j]
            for j in range(hidden):
                dhj = dh[b, j]
                r = a[b, j]
                zz = a[b, hidden + j]
                n = a[b, h2 + j]
                nh = a[b, h3 + j]
                h_prev = u[b, n_x + j]
                dzz = dhj * (h_prev - n) * zz * (1.0 - zz)
                dnx = dhj * (1.0 - zz) * (1.0 - n * n)
                g_t[b, j] = dnx * nh * r * (1.0 - r)
                g_t[b, hidden + j] = dzz
                g_t[b, h2 + j] = dnx
                g_t[b, h3 + j] = dnx * r
                dh[b, j] = dhj * zz
        np.dot(g_t, w_hh, dh_rec)
        dh += dh_rec
        if truncate > 0 and t > 0 and t % truncate == 0:
            dh[:, :] = 0.0
    d_comb, d_x = _weight_and_input_grads(dz, u_all, w_ih, n_steps, need_dx)
    return d_comb, d_x, dh


# -------------------------------------------------------------------- Dense


@njit
def dense_forward(plan, x2, seed):
    """Pre-activations of a dense layer: one plan read over all rows of ``x2``.

    ``x2`` is (N, I); the plan sees ``u = [x, 1...1]`` of width ``plan.n_in``.
    """
    state = noise_state(seed)
    n, n_x = x2.shape
    u = np.ones((n, plan.n_in))
    u[:, :n_x] = x2
    z = np.empty((n, plan.n_out))
    plan_matvec(plan, u, z, state)
    return z
