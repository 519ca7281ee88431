"""Analytic gradients of every layer against central finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_hw import GRU, LSTM, Dense, Network

EPS = 1e-6
REL_TOL = 1e-6


def _fd(loss, arr):
    """Central-difference gradient of ``loss()`` with respect to ``arr``."""
    grad = np.zeros_like(arr)
    flat = arr.reshape(-1)
    gflat = grad.reshape(-1)
    for k in range(flat.size):
        keep = flat[k]
        flat[k] = keep + EPS
        up = loss()
        flat[k] = keep - EPS
        down = loss()
        flat[k] = keep
        gflat[k] = (up - down) / (2 * EPS)
    return grad


def _assert_close(analytic, numeric, name):
    err = np.linalg.norm(analytic - numeric) / max(np.linalg.norm(numeric), 1e-12)
    assert err < REL_TOL, f"{name}: relative error {err:.2e}"


def _recurrent_case(layer, lstm, lengths):
    """Check d/d(params, x, h0[, c0]) of a random linear functional."""
    rng = np.random.default_rng(11)
    batch, steps, n_in, hidden = 2, 4, layer.input_size, layer.hidden_size
    x = rng.standard_normal((batch, steps, n_in))
    h0 = 0.5 * rng.standard_normal((batch, hidden))
    c0 = 0.5 * rng.standard_normal((batch, hidden))
    w_out = rng.standard_normal((batch, steps, hidden))
    w_h = rng.standard_normal((batch, hidden))
    w_c = rng.standard_normal((batch, hidden))

    def loss():
        if lstm:
            out, (h, c) = layer.forward(x, h0=h0, c0=c0, lengths=lengths)
            return np.sum(out * w_out) + np.sum(h * w_h) + np.sum(c * w_c)
        out, h = layer.forward(x, h0=h0, lengths=lengths)
        return np.sum(out * w_out) + np.sum(h * w_h)

    loss()
    if lstm:
        dx = layer.backward(w_out, d_state=(w_h, w_c))
        checks = {"x": (dx, x), "h0": (layer.grad_h0, h0), "c0": (layer.grad_c0, c0)}
    else:
        dx = layer.backward(w_out, d_state=w_h)
        checks = {"x": (dx, x), "h0": (layer.grad_h0, h0)}
    for name, arr in layer.params.items():
        checks[name] = (layer.grads[name].copy(), arr)
    for name, (analytic, arr) in checks.items():
        _assert_close(np.array(analytic), _fd(loss, arr), name)


@pytest.mark.kernel
@pytest.mark.parametrize("lengths", [None, [4, 2]])
@pytest.mark.parametrize("variant", ["vanilla", "peephole", "cifg"])
def test_lstm_gradients(variant, lengths):
    layer = LSTM(3, 3, variant, rng=np.random.default_rng(1))
    _recurrent_case(layer, True, lengths)


@pytest.mark.kernel
@pytest.mark.parametrize("lengths", [None, [1, 4]])
def test_gru_gradients(lengths):
    layer = GRU(3, 3, rng=np.random.default_rng(2))
    _recurrent_case(layer, False, lengths)


@pytest.mark.kernel
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 3)])
@pytest.mark.parametrize("activation", ["identity", "sigmoid", "softmax"])
def test_dense_gradients(activation, shape):
    layer = Dense(3, 4, activation, rng=np.random.default_rng(3))
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((*shape[:-1], 4))

    def loss():
        return np.sum(layer.forward(x) * w)

    loss()
    dx = layer.backward(w)
    _assert_close(dx, _fd(loss, x), "x")
    for name, arr in layer.params.items():
        _assert_close(layer.grads[name].copy(), _fd(loss, arr), name)


@pytest.mark.kernel
@pytest.mark.parametrize(
    ("rnn", "output", "activation"),
    [
        ("lstm", "last", "softmax"),
        ("lstm", "all", "sigmoid"),
        ("gru", "last", "identity"),
        ("gru", "all", "softmax"),
    ],
)
def test_network_gradients(rnn, output, activation):
    rng = np.random.default_rng(5)
    cell = LSTM(2, 3, "peephole", rng=rng) if rnn == "lstm" else GRU(2, 3, rng=rng)
    net = Network(cell, Dense(3, 2, activation, rng=rng), output=output)
    x = rng.standard_normal((3, 4, 2))
    lengths = [4, 1, 3]
    y0 = net.forward(x, lengths=lengths)
    w = rng.standard_normal(y0.shape)

    def loss():
        return np.sum(net.forward(x, lengths=lengths) * w)

    loss()
    net.backward(w)
    grads = {k: v.copy() for k, v in net.grads().items()}
    for name, arr in net.params().items():
        _assert_close(grads[name], _fd(loss, arr), name)
