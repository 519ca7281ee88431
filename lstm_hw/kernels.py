"""Jitted time loops of the recurrent layers (forward pass and BPTT).

Every kernel here works on batch-first inputs ``x`` (B, T, I) and keeps the
matrices of a layer in the *combined* layout ``M = [W_ih | W_hh | b]`` of shape
(rows, n_in) with ``n_in = I + H + n_bias``: the vector ``u_t = [x_t, h_{t-1},
1, ..., 1]`` times ``M.T`` gives every pre-activation a step needs.

Forward kernels send that product through :func:`crossbar.read_kernel.plan_matvec`
once per time step on the full ``u_t``, so that an analog read sums the input,
recurrent and bias parts on the same column, exactly as a crossbar does. The
numba generator is seeded once at the start, which makes hardware plans with
read noise reproducible.

Backward kernels always run in software on the layer's own matrix. The loop
over time computes only what the recurrence needs (the gate gradients of step
``t`` and the carried state gradients); the weight gradient is one matrix
product ``dZ.T @ U`` over all steps after the loop, and the input gradient
``dZ @ W_ih`` likewise.

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
import math

import numpy as np

from crossbar.jit import njit
from crossbar.read_kernel import plan_matvec

logger = logging.getLogger(__name__)

VANILLA = 0
PEEPHOLE = 1
CIFG = 2


@njit
def sigmoid(x):
    """Logistic function of a scalar (no overflow for large ``|x|``)."""
    return 1.0 / (1.0 + math.exp(-x))


@njit
def tanh(x):
    """Hyperbolic tangent of a scalar via ``expm1`` (faster than libm tanh).

    Relative error stays at the level of a few units in the last place,
    including near zero, because ``expm1`` avoids the cancellation of
    ``1 - exp(-2|x|)``.
    """
    e = math.expm1(-2.0 * abs(x))
    t = -e / (2.0 + e)
    if x < 0.0:
        return -t
    return t


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
def _weight_and_input_grads(dz, u_all, w_ih, n_steps, need_dx, d_x):
    """``dZ.T @ U`` over all valid steps, and ``dZ @ W_ih`` into ``d_x``.

    ``dz`` (T, B, G) and ``u_all`` (T, B, n_in) are time-major; ``d_x`` is
    (B, T, I) batch-first and left at zero beyond ``n_steps``.
    """
    steps, batch, rows = dz.shape
    n_in = u_all.shape[2]
    if n_steps == 0:
        return np.zeros((rows, n_in))
    dz2 = dz[:n_steps].reshape((n_steps * batch, rows))
    u2 = u_all[:n_steps].reshape((n_steps * batch, n_in))
    d_comb = np.dot(dz2.T, u2)
    if need_dx:
        n_x = w_ih.shape[1]
        dx2 = np.dot(dz2, w_ih)
        for t in range(n_steps):
            for b in range(batch):
                r = t * batch + b
                for k in range(n_x):
                    d_x[b, t, k] = dx2[r, k]
    return d_comb


# --------------------------------------------------------------------- LSTM


@njit
def lstm_forward(plan, x, lengths, h0, c0, peep, variant, seed):
    """Run an LSTM layer over ``x`` (B, T, I) through ``plan``.

    Returns
    -------
    out : (B, T, H) hidden states, zero at padded steps.
    h_n, c_n : (B, H) states at each sequence's last valid step.
    u_all : (T, B, n_in) the inputs ``u_t`` of every step.
    gates : (T, B, G) gate activations in the row order of the plan.
    cells : (T + 1, B, H) cell states, ``cells[0] = c0``.
    tanh_c : (T, B, H) ``tanh(c_t)``.
    """
    np.random.seed(seed)
    batch, steps, n_x = x.shape
    hidden = h0.shape[1]
    n_in = plan.n_in
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
    u_all = np.zeros((steps, batch, n_in))
    gates = np.zeros((steps, batch, rows))
    cells = np.zeros((steps + 1, batch, hidden))
    tanh_c = np.zeros((steps, batch, hidden))
    h = h0.copy()
    c = c0.copy()
    cells[0] = c0
    z = np.empty((batch, rows))
    for t in range(n_steps):
        u = u_all[t]
        _fill_inputs(u, x, t, h, n_x, hidden)
        plan_matvec(plan, u, z)
        a = gates[t]
        for b in range(batch):
            if t >= lengths[b]:
                for j in range(hidden):
                    cells[t + 1, b, j] = c[b, j]
                continue
            for j in range(hidden):
                c_prev = c[b, j]
                zi = z[b, oi + j]
                zo = z[b, oo + j]
                if peephole:
                    zi += peep[0, j] * c_prev
                    zf = z[b, of + j] + peep[1, j] * c_prev
                    ig = sigmoid(zi)
                    fg = sigmoid(zf)
                elif cifg:
                    ig = sigmoid(zi)
                    fg = 1.0 - ig
                else:
                    ig = sigmoid(zi)
                    fg = sigmoid(z[b, of + j])
                gg = tanh(z[b, og + j])
                cc = fg * c_prev + ig * gg
                if peephole:
                    zo += peep[2, j] * cc
                og_ = sigmoid(zo)
                tc = tanh(cc)
                hh = og_ * tc
                a[b, oi + j] = ig
                if not cifg:
                    a[b, of + j] = fg
                a[b, og + j] = gg
                a[b, oo + j] = og_
                c[b, j] = cc
                h[b, j] = hh
                cells[t + 1, b, j] = cc
                tanh_c[t, b, j] = tc
                out[b, t, j] = hh
    for t in range(n_steps, steps):
        cells[t + 1] = c
    return out, h, c, u_all, gates, cells, tanh_c


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
    d_hn,
    d_cn,
    truncate,
    need_dx,
):
    """BPTT of :func:`lstm_forward` on the software weights.

    ``w_ih`` (G, I) and ``w_hh`` (G, H) are the input and recurrent columns of
    the combined matrix (contiguous copies). ``d_out`` (B, T, H) is the
    gradient of the output sequence, ``d_hn`` and ``d_cn`` (B, H) those of the
    final state.

    Returns
    -------
    d_comb : (G, n_in) gradient of the combined matrix.
    d_peep : (3, H) gradient of the peephole weights (zero unless peephole).
    d_x : (B, T, I) input gradient (zeros when ``need_dx`` is False).
    d_h0, d_c0 : (B, H) gradients of the initial state.
    """
    steps, batch, rows = gates.shape
    hidden = w_hh.shape[1]
    n_x = w_ih.shape[1]
    cifg = variant == CIFG
    peephole = variant == PEEPHOLE
    if cifg:
        oi, of, og, oo = 0, 0, hidden, 2 * hidden
    else:
        oi, of, og, oo = 0, hidden, 2 * hidden, 3 * hidden
    n_steps = 0
    for b in range(batch):
        n_steps = max(n_steps, lengths[b])

    dz = np.zeros((steps, batch, rows))
    d_peep = np.zeros((3, hidden))
    dh = np.zeros((batch, hidden))
    dc = np.zeros((batch, hidden))
    for t in range(n_steps - 1, -1, -1):
        a = gates[t]
        g_t = dz[t]
        for b in range(batch):
            last = lengths[b] - 1
            if t > last:
                continue
            if t == last:
                for j in range(hidden):
                    dh[b, j] += d_hn[b, j]
                    dc[b, j] += d_cn[b, j]
            for j in range(hidden):
                dhj = dh[b, j] + d_out[b, t, j]
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
    d_x = np.zeros((batch, steps, n_x))
    d_comb = _weight_and_input_grads(dz, u_all, w_ih, n_steps, need_dx, d_x)
    return d_comb, d_peep, d_x, dh, dc


# ---------------------------------------------------------------------- GRU


@njit
def gru_forward(plan, x, lengths, h0, seed):
    """Run a GRU layer over ``x`` (B, T, I) through ``plan`` (4H rows).

    Returns
    -------
    out : (B, T, H) hidden states, zero at padded steps.
    h_n : (B, H) state at each sequence's last valid step.
    u_all : (T, B, n_in) the inputs ``u_t`` of every step.
    gates : (T, B, 4H) ``r, z, n`` and the recurrent part ``n_h``.
    """
    np.random.seed(seed)
    batch, steps, n_x = x.shape
    hidden = h0.shape[1]
    n_in = plan.n_in
    rows = plan.n_out
    n_steps = 0
    for b in range(batch):
        n_steps = max(n_steps, lengths[b])

    out = np.zeros((batch, steps, hidden))
    u_all = np.zeros((steps, batch, n_in))
    gates = np.zeros((steps, batch, rows))
    h = h0.copy()
    z = np.empty((batch, rows))
    h2, h3 = 2 * hidden, 3 * hidden
    for t in range(n_steps):
        u = u_all[t]
        _fill_inputs(u, x, t, h, n_x, hidden)
        plan_matvec(plan, u, z)
        a = gates[t]
        for b in range(batch):
            if t >= lengths[b]:
                continue
            for j in range(hidden):
                r = sigmoid(z[b, j])
                zz = sigmoid(z[b, hidden + j])
                nh = z[b, h3 + j]
                n = tanh(z[b, h2 + j] + r * nh)
                hh = (1.0 - zz) * n + zz * h[b, j]
                a[b, j] = r
                a[b, hidden + j] = zz
                a[b, h2 + j] = n
                a[b, h3 + j] = nh
                h[b, j] = hh
                out[b, t, j] = hh
    return out, h, u_all, gates


@njit
def gru_backward(w_ih, w_hh, lengths, u_all, gates, d_out, d_hn, truncate, need_dx):
    """BPTT of :func:`gru_forward` on the software weights.

    ``w_ih`` (4H, I) and ``w_hh`` (4H, H) are column blocks of the combined
    matrix (the ``n_x`` rows of ``w_hh`` and the ``n_h`` rows of ``w_ih`` are
    zero there).

    Returns
    -------
    d_comb : (4H, n_in) gradient of the combined matrix (dense: the caller
        keeps only the blocks that exist).
    d_x : (B, T, I) input gradient (zeros when ``need_dx`` is False).
    d_h0 : (B, H) gradient of the initial state.
    """
    steps, batch, rows = gates.shape
    hidden = w_hh.shape[1]
    n_x = w_ih.shape[1]
    h2, h3 = 2 * hidden, 3 * hidden
    n_steps = 0
    for b in range(batch):
        n_steps = max(n_steps, lengths[b])

    dz = np.zeros((steps, batch, rows))
    dh = np.zeros((batch, hidden))
    dh_rec = np.zeros((batch, hidden))
    for t in range(n_steps - 1, -1, -1):
        a = gates[t]
        g_t = dz[t]
        u = u_all[t]
        for b in range(batch):
            last = lengths[b] - 1
            if t > last:
                dh[b, :] = 0.0
                continue
            if t == last:
                for j in range(hidden):
                    dh[b, j] += d_hn[b, j]
            for j in range(hidden):
                dhj = dh[b, j] + d_out[b, t, j]
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
    d_x = np.zeros((batch, steps, n_x))
    d_comb = _weight_and_input_grads(dz, u_all, w_ih, n_steps, need_dx, d_x)
    return d_comb, d_x, dh


# -------------------------------------------------------------------- Dense


@njit
def dense_forward(plan, x2, seed):
    """Pre-activations of a dense layer: one plan read over all rows of ``x2``.

    ``x2`` is (N, I); the plan sees ``u = [x, 1...1]`` of width ``plan.n_in``.
    """
    np.random.seed(seed)
    n, n_x = x2.shape
    u = np.ones((n, plan.n_in))
    u[:, :n_x] = x2
    z = np.empty((n, plan.n_out))
    plan_matvec(plan, u, z)
    return z
