"""Same weights, same results as torch.nn.LSTM / GRU / Linear in float64."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_hw import GRU, LSTM, Dense, Network

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

TOL = {"rtol": 1e-9, "atol": 1e-12}


def _tensor(a, grad=True):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=grad)


def _load(module, params):
    with torch.no_grad():
        for name, value in params.items():
            getattr(module, f"{name}_l0").copy_(torch.from_numpy(value))


def _grads_close(module, layer):
    for name in layer.params:
        torch_grad = getattr(module, f"{name}_l0").grad.numpy()
        np.testing.assert_allclose(layer.grads[name], torch_grad, err_msg=name, **TOL)


@pytest.mark.parametrize("lengths", [None, [6, 3, 1, 5]])
def test_lstm_equals_torch(lengths):
    n_in, hidden, batch, steps = 3, 5, 4, 6
    layer = LSTM(n_in, hidden, rng=np.random.default_rng(0))
    module = torch.nn.LSTM(n_in, hidden, batch_first=True).double()
    _load(module, layer.params)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, steps, n_in))
    h0 = rng.standard_normal((batch, hidden))
    c0 = rng.standard_normal((batch, hidden))
    d_out = rng.standard_normal((batch, steps, hidden))
    d_h = rng.standard_normal((batch, hidden))
    d_c = rng.standard_normal((batch, hidden))

    out, (h_n, c_n) = layer.forward(x, h0=h0, c0=c0, lengths=lengths)
    dx = layer.backward(d_out, d_state=(d_h, d_c))

    xt, h0t, c0t = _tensor(x), _tensor(h0[None]), _tensor(c0[None])
    if lengths is None:
        out_t, (hn_t, cn_t) = module(xt, (h0t, c0t))
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            xt, torch.tensor(lengths), batch_first=True, enforce_sorted=False
        )
        out_p, (hn_t, cn_t) = module(packed, (h0t, c0t))
        out_t, _ = torch.nn.utils.rnn.pad_packed_sequence(
            out_p, batch_first=True, total_length=steps
        )
    loss = (
        (out_t * _tensor(d_out, False)).sum()
        + (hn_t[0] * _tensor(d_h, False)).sum()
        + (cn_t[0] * _tensor(d_c, False)).sum()
    )
    loss.backward()

    np.testing.assert_allclose(out, out_t.detach().numpy(), **TOL)
    np.testing.assert_allclose(h_n, hn_t[0].detach().numpy(), **TOL)
    np.testing.assert_allclose(c_n, cn_t[0].detach().numpy(), **TOL)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL)
    np.testing.assert_allclose(layer.grad_h0, h0t.grad[0].numpy(), **TOL)
    np.testing.assert_allclose(layer.grad_c0, c0t.grad[0].numpy(), **TOL)
    _grads_close(module, layer)


@pytest.mark.parametrize("lengths", [None, [2, 6, 4]])
def test_gru_equals_torch(lengths):
    n_in, hidden, batch, steps = 4, 3, 3, 6
    layer = GRU(n_in, hidden, rng=np.random.default_rng(2))
    module = torch.nn.GRU(n_in, hidden, batch_first=True).double()
    _load(module, layer.params)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((batch, steps, n_in))
    h0 = rng.standard_normal((batch, hidden))
    d_out = rng.standard_normal((batch, steps, hidden))
    d_h = rng.standard_normal((batch, hidden))

    out, h_n = layer.forward(x, h0=h0, lengths=lengths)
    dx = layer.backward(d_out, d_state=d_h)

    xt, h0t = _tensor(x), _tensor(h0[None])
    if lengths is None:
        out_t, hn_t = module(xt, h0t)
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            xt, torch.tensor(lengths), batch_first=True, enforce_sorted=False
        )
        out_p, hn_t = module(packed, h0t)
        out_t, _ = torch.nn.utils.rnn.pad_packed_sequence(
            out_p, batch_first=True, total_length=steps
        )
    loss = (out_t * _tensor(d_out, False)).sum() + (hn_t[0] * _tensor(d_h, False)).sum()
    loss.backward()

    np.testing.assert_allclose(out, out_t.detach().numpy(), **TOL)
    np.testing.assert_allclose(h_n, hn_t[0].detach().numpy(), **TOL)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL)
    np.testing.assert_allclose(layer.grad_h0, h0t.grad[0].numpy(), **TOL)
    _grads_close(module, layer)


@pytest.mark.parametrize("activation", ["identity", "sigmoid", "softmax"])
def test_dense_equals_linear(activation):
    layer = Dense(5, 3, activation, rng=np.random.default_rng(4))
    linear = torch.nn.Linear(5, 3).double()
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(layer.params["weight"]))
        linear.bias.copy_(torch.from_numpy(layer.params["bias"]))
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 5))
    dy = rng.standard_normal((2, 4, 3))
    y = layer.forward(x)
    dx = layer.backward(dy)
    xt = _tensor(x)
    z = linear(xt)
    y_t = {
        "identity": z,
        "sigmoid": torch.sigmoid(z),
        "softmax": torch.softmax(z, dim=-1),
    }[activation]
    (y_t * _tensor(dy, False)).sum().backward()
    np.testing.assert_allclose(y, y_t.detach().numpy(), **TOL)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL)
    np.testing.assert_allclose(layer.grads["weight"], linear.weight.grad.numpy(), **TOL)
    np.testing.assert_allclose(layer.grads["bias"], linear.bias.grad.numpy(), **TOL)


def test_network_equals_torch():
    """LSTM(14) + softmax head on the last valid step, cross-entropy loss."""
    rng = np.random.default_rng(6)
    net = Network(LSTM(4, 14, rng=rng), Dense(14, 9, "softmax", rng=rng))
    module = torch.nn.LSTM(4, 14, batch_first=True).double()
    linear = torch.nn.Linear(14, 9).double()
    _load(module, net.rnn.params)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(net.head.params["weight"]))
        linear.bias.copy_(torch.from_numpy(net.head.params["bias"]))
    x = rng.standard_normal((5, 7, 4))
    lengths = [7, 2, 5, 7, 3]
    labels = np.array([0, 8, 3, 3, 1])
    y = net.forward(x, lengths=lengths)
    dy = np.zeros_like(y)
    dy[np.arange(5), labels] = -1.0 / y[np.arange(5), labels]
    net.backward(dy)

    packed = torch.nn.utils.rnn.pack_padded_sequence(
        _tensor(x, False), torch.tensor(lengths), batch_first=True, enforce_sorted=False
    )
    _, (h_n, _) = module(packed)
    logits = linear(h_n[0])
    torch.nn.functional.cross_entropy(
        logits, torch.from_numpy(labels), reduction="sum"
    ).backward()
    np.testing.assert_allclose(y, torch.softmax(logits, -1).detach().numpy(), **TOL)
    _grads_close(module, net.rnn)
    np.testing.assert_allclose(
        net.grads()["head.weight"], linear.weight.grad.numpy(), **TOL
    )
    np.testing.assert_allclose(
        net.grads()["head.bias"], linear.bias.grad.numpy(), **TOL
    )
