"""Slow, obvious numpy references for the recurrent and dense layers.

Everything here works one sequence and one time step at a time on the
PyTorch-layout weights (no combined matrix, no padding: a sequence of length
``L`` is simply cut to its first ``L`` steps). Truncated BPTT follows its
definition literally: each chunk of ``k`` steps is run forward from the state
the previous chunk left, and backpropagated on its own; the gradient that would
reach the chunk's initial state is dropped, except for the first chunk, whose
initial state is ``h0`` (and ``c0``).
"""

from __future__ import annotations

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# --------------------------------------------------------------------- LSTM


def _lstm_gate_weights(p, h):
    """Per-gate (W_ih, W_hh, b) for gates i, f, g, o."""
    out = {}
    for k, name in enumerate("ifgo"):
        rows = slice(k * h, (k + 1) * h)
        out[name] = (
            p["weight_ih"][rows],
            p["weight_hh"][rows],
            p["bias_ih"][rows] + p["bias_hh"][rows],
        )
    return out


def lstm_seq_forward(p, variant, x, h0, c0):
    """One sequence ``x`` (T, I); returns hidden states (T, H) and a trace."""
    h_size = h0.shape[0]
    w = _lstm_gate_weights(p, h_size)
    h, c = h0.copy(), c0.copy()
    trace = []
    hs = []
    for x_t in x:

        def pre(name, x_t=x_t, h=h):
            wi, wh, b = w[name]
            return wi @ x_t + wh @ h + b

        zi, zf, zg, zo = pre("i"), pre("f"), pre("g"), pre("o")
        if variant == "peephole":
            zi = zi + p["weight_ci"] * c
            zf = zf + p["weight_cf"] * c
        i = sigmoid(zi)
        f = 1.0 - i if variant == "cifg" else sigmoid(zf)
        g = np.tanh(zg)
        c_new = f * c + i * g
        if variant == "peephole":
            zo = zo + p["weight_co"] * c_new
        o = sigmoid(zo)
        h_new = o * np.tanh(c_new)
        trace.append(
            {
                "x": x_t,
                "h_prev": h,
                "c_prev": c,
                "i": i,
                "f": f,
                "g": g,
                "o": o,
                "c": c_new,
            }
        )
        h, c = h_new, c_new
        hs.append(h)
    return np.array(hs), h, c, trace


def lstm_seq_backward(p, variant, trace, d_hs, d_hT, d_cT):
    """Full BPTT over one traced sequence; returns grads, dx, dh0, dc0."""
    h_size = d_hT.shape[0]
    w = _lstm_gate_weights(p, h_size)
    grads = {k: np.zeros_like(v) for k, v in p.items()}
    dx = np.zeros((len(trace), trace[0]["x"].shape[0]))
    dh, dc = d_hT.copy(), d_cT.copy()
    for t in range(len(trace) - 1, -1, -1):
        s = trace[t]
        dh = dh + d_hs[t]
        tc = np.tanh(s["c"])
        d_o = dh * tc
        dzo = d_o * s["o"] * (1 - s["o"])
        dc = dc + dh * s["o"] * (1 - tc**2)
        if variant == "peephole":
            dc = dc + dzo * p["weight_co"]
            grads["weight_co"] += dzo * s["c"]
        d_i = dc * s["g"]
        d_g = dc * s["i"]
        d_f = dc * s["c_prev"]
        dc_prev = dc * s["f"]
        if variant == "cifg":
            d_i = d_i - d_f  # f = 1 - i
            d_f = np.zeros_like(d_f)
        dzi = d_i * s["i"] * (1 - s["i"])
        dzf = d_f * s["f"] * (1 - s["f"]) if variant != "cifg" else d_f
        dzg = d_g * (1 - s["g"] ** 2)
        if variant == "peephole":
            dc_prev = dc_prev + dzi * p["weight_ci"] + dzf * p["weight_cf"]
            grads["weight_ci"] += dzi * s["c_prev"]
            grads["weight_cf"] += dzf * s["c_prev"]
        dh_prev = np.zeros(h_size)
        for k, (name, dz) in enumerate(zip("ifgo", (dzi, dzf, dzg, dzo), strict=True)):
            rows = slice(k * h_size, (k + 1) * h_size)
            wi, wh, _ = w[name]
            grads["weight_ih"][rows] += np.outer(dz, s["x"])
            grads["weight_hh"][rows] += np.outer(dz, s["h_prev"])
            grads["bias_ih"][rows] += dz
            grads["bias_hh"][rows] += dz
            dx[t] += wi.T @ dz
            dh_prev += wh.T @ dz
        dh, dc = dh_prev, dc_prev
    return grads, dx, dh, dc


def lstm_reference(p, variant, x, h0, c0, lengths, d_out, d_hn, d_cn, truncate):
    """Batch results by looping over sequences and (for truncation) chunks."""
    batch, steps, n_x = x.shape
    h_size = h0.shape[1]
    out = np.zeros((batch, steps, h_size))
    h_n = np.zeros((batch, h_size))
    c_n = np.zeros((batch, h_size))
    grads = {k: np.zeros_like(v) for k, v in p.items()}
    dx = np.zeros_like(x)
    dh0 = np.zeros_like(h0)
    dc0 = np.zeros_like(c0)
    for b in range(batch):
        length = int(lengths[b])
        k = truncate or length
        h, c = h0[b], c0[b]
        for start in range(0, length, k):
            stop = min(start + k, length)
            hs, h_end, c_end, trace = lstm_seq_forward(
                p, variant, x[b, start:stop], h, c
            )
            out[b, start:stop] = hs
            last = stop == length
            d_h = d_hn[b] if last else np.zeros(h_size)
            d_c = d_cn[b] if last else np.zeros(h_size)
            g, dxc, dh_in, dc_in = lstm_seq_backward(
                p, variant, trace, d_out[b, start:stop], d_h, d_c
            )
            for name in grads:
                grads[name] += g[name]
            dx[b, start:stop] = dxc
            if start == 0:
                dh0[b], dc0[b] = dh_in, dc_in
            h, c = h_end, c_end
        h_n[b], c_n[b] = h, c
    return {
        "out": out,
        "h_n": h_n,
        "c_n": c_n,
        "grads": grads,
        "dx": dx,
        "dh0": dh0,
        "dc0": dc0,
    }


# ---------------------------------------------------------------------- GRU


def gru_seq_forward(p, x, h0):
    """One sequence ``x`` (T, I) through a PyTorch-style GRU."""
    h_size = h0.shape[0]
    w_ih, w_hh = p["weight_ih"], p["weight_hh"]
    b_ih, b_hh = p["bias_ih"], p["bias_hh"]
    r_, z_, n_ = (slice(k * h_size, (k + 1) * h_size) for k in range(3))
    h = h0.copy()
    hs, trace = [], []
    for x_t in x:
        r = sigmoid(w_ih[r_] @ x_t + b_ih[r_] + w_hh[r_] @ h + b_hh[r_])
        z = sigmoid(w_ih[z_] @ x_t + b_ih[z_] + w_hh[z_] @ h + b_hh[z_])
        nh = w_hh[n_] @ h + b_hh[n_]
        n = np.tanh(w_ih[n_] @ x_t + b_ih[n_] + r * nh)
        h_new = (1 - z) * n + z * h
        trace.append({"x": x_t, "h_prev": h, "r": r, "z": z, "n": n, "nh": nh})
        h = h_new
        hs.append(h)
    return np.array(hs), h, trace


def gru_seq_backward(p, trace, d_hs, d_hT):
    """Full BPTT over one traced GRU sequence; returns grads, dx, dh0."""
    h_size = d_hT.shape[0]
    w_ih, w_hh = p["weight_ih"], p["weight_hh"]
    r_, z_, n_ = (slice(k * h_size, (k + 1) * h_size) for k in range(3))
    grads = {k: np.zeros_like(v) for k, v in p.items()}
    dx = np.zeros((len(trace), trace[0]["x"].shape[0]))
    dh = d_hT.copy()
    for t in range(len(trace) - 1, -1, -1):
        s = trace[t]
        dh = dh + d_hs[t]
        dn = dh * (1 - s["z"])
        dz = dh * (s["h_prev"] - s["n"])
        dh_prev = dh * s["z"]
        dn_pre = dn * (1 - s["n"] ** 2)
        dr = dn_pre * s["nh"]
        dnh = dn_pre * s["r"]
        dr_pre = dr * s["r"] * (1 - s["r"])
        dz_pre = dz * s["z"] * (1 - s["z"])
        for rows, d_in, d_rec in (
            (r_, dr_pre, dr_pre),
            (z_, dz_pre, dz_pre),
            (n_, dn_pre, dnh),
        ):
            grads["weight_ih"][rows] += np.outer(d_in, s["x"])
            grads["bias_ih"][rows] += d_in
            grads["weight_hh"][rows] += np.outer(d_rec, s["h_prev"])
            grads["bias_hh"][rows] += d_rec
            dx[t] += w_ih[rows].T @ d_in
            dh_prev = dh_prev + w_hh[rows].T @ d_rec
        dh = dh_prev
    return grads, dx, dh


def gru_reference(p, x, h0, lengths, d_out, d_hn, truncate):
    """Batch GRU results by looping over sequences and chunks."""
    batch, steps, _ = x.shape
    h_size = h0.shape[1]
    out = np.zeros((batch, steps, h_size))
    h_n = np.zeros((batch, h_size))
    grads = {k: np.zeros_like(v) for k, v in p.items()}
    dx = np.zeros_like(x)
    dh0 = np.zeros_like(h0)
    for b in range(batch):
        length = int(lengths[b])
        k = truncate or length
        h = h0[b]
        for start in range(0, length, k):
            stop = min(start + k, length)
            hs, h_end, trace = gru_seq_forward(p, x[b, start:stop], h)
            out[b, start:stop] = hs
            d_h = d_hn[b] if stop == length else np.zeros(h_size)
            g, dxc, dh_in = gru_seq_backward(p, trace, d_out[b, start:stop], d_h)
            for name in grads:
                grads[name] += g[name]
            dx[b, start:stop] = dxc
            if start == 0:
                dh0[b] = dh_in
            h = h_end
        h_n[b] = h
    return {"out": out, "h_n": h_n, "grads": grads, "dx": dx, "dh0": dh0}


# -------------------------------------------------------------------- Dense


def dense_reference(p, activation, x2, dy2):
    """Row-by-row dense layer with the activation Jacobian written out."""
    w, bias = p["weight"], p["bias"]
    y = np.zeros((x2.shape[0], w.shape[0]))
    grads = {"weight": np.zeros_like(w), "bias": np.zeros_like(bias)}
    dx = np.zeros_like(x2)
    for n, x_row in enumerate(x2):
        z = w @ x_row + bias
        if activation == "identity":
            y_row = z
            jac = np.eye(len(z))
        elif activation == "sigmoid":
            y_row = sigmoid(z)
            jac = np.diag(y_row * (1 - y_row))
        else:
            e = np.exp(z - z.max())
            y_row = e / e.sum()
            jac = np.diag(y_row) - np.outer(y_row, y_row)
        y[n] = y_row
        dz = jac.T @ dy2[n]
        grads["weight"] += np.outer(dz, x_row)
        grads["bias"] += dz
        dx[n] = w.T @ dz
    return y, grads, dx
