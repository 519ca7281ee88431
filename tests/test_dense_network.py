"""Dense head and Network: reference results, plumbing and checks."""

from __future__ import annotations

import numpy as np
import pytest
from reference_rnn import dense_reference, lstm_reference

from crossbar.read_kernel import exact_plan
from crossbar.validation import ParameterError
from lstm_hw import GRU, LSTM, Dense, Network
from lstm_hw.network import head_seed


@pytest.mark.kernel
@pytest.mark.parametrize("activation", ["identity", "sigmoid", "softmax"])
def test_dense_matches_reference(activation):
    layer = Dense(4, 3, activation, rng=np.random.default_rng(0))
    rng = np.random.default_rng(1)
    x = 2 * rng.standard_normal((2, 5, 4))
    dy = rng.standard_normal((2, 5, 3))
    y = layer.forward(x)
    dx = layer.backward(dy)
    y_ref, g_ref, dx_ref = dense_reference(
        layer.params, activation, x.reshape(-1, 4), dy.reshape(-1, 3)
    )
    np.testing.assert_allclose(y, y_ref.reshape(2, 5, 3), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(dx, dx_ref.reshape(2, 5, 4), rtol=1e-12, atol=1e-14)
    for name in g_ref:
        np.testing.assert_allclose(
            layer.grads[name], g_ref[name], rtol=1e-12, atol=1e-14
        )
    if activation == "softmax":
        np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-14)


@pytest.mark.kernel
def test_dense_plans_and_combined():
    layer = Dense(3, 2, "sigmoid", rng=np.random.default_rng(0))
    m = layer.combined_matrix()
    assert m.shape == (2, 4)
    x = np.random.default_rng(1).standard_normal((6, 3))
    ref = layer.forward(x)
    np.testing.assert_array_equal(layer.forward(x, plan=exact_plan(m)), ref)
    split = np.concatenate([m[:, :3], m[:, 3:] / 2, m[:, 3:] / 2], axis=1)
    np.testing.assert_allclose(
        layer.forward(x, plan=exact_plan(split)), ref, rtol=1e-14
    )
    layer.set_from_combined(split)
    np.testing.assert_allclose(layer.combined_matrix(), m, rtol=1e-15)
    layer.backward(np.ones_like(ref))
    dm = layer.combined_grad()
    np.testing.assert_array_equal(dm[:, :3], layer.grads["weight"])
    np.testing.assert_array_equal(dm[:, 3], layer.grads["bias"])
    with pytest.raises(ParameterError, match="'activation'.*did you mean"):
        Dense(3, 2, "softmx")
    with pytest.raises(ParameterError, match="'x'"):
        layer.forward(np.zeros((2, 4)))
    with pytest.raises(ParameterError, match="'dy'"):
        layer.backward(np.zeros((6, 3)))


@pytest.mark.kernel
def test_network_last_and_all_match_reference():
    rng = np.random.default_rng(2)
    lstm = LSTM(2, 3, rng=rng)
    head = Dense(3, 2, "identity", rng=rng)
    x = rng.standard_normal((3, 5, 2))
    lengths = np.array([5, 2, 4])
    zeros = np.zeros((3, 3))
    ref = lstm_reference(
        lstm.params,
        "vanilla",
        x,
        zeros,
        zeros,
        lengths,
        np.zeros((3, 5, 3)),
        zeros,
        zeros,
        None,
    )
    w, b = head.params["weight"], head.params["bias"]

    net = Network(lstm, head, output="last")
    y = net.forward(x, lengths=lengths)
    np.testing.assert_allclose(y, ref["h_n"] @ w.T + b, rtol=1e-12)
    # dL/dy on the last step equals a d_out placed at each sequence's end.
    dy = rng.standard_normal(y.shape)
    net.backward(dy)
    d_out = np.zeros((3, 5, 3))
    d_out[np.arange(3), lengths - 1] = dy @ w
    ref2 = lstm_reference(
        lstm.params, "vanilla", x, zeros, zeros, lengths, d_out, zeros, zeros, None
    )
    for name, g in ref2["grads"].items():
        np.testing.assert_allclose(
            net.grads()[f"rnn.{name}"], g, rtol=1e-11, atol=1e-13
        )
    np.testing.assert_allclose(
        net.grads()["head.weight"], dy.T @ ref["h_n"], rtol=1e-12
    )

    net_all = Network(lstm, head, output="all")
    y_all = net_all.forward(x, lengths=lengths)
    assert y_all.shape == (3, 5, 2)
    valid = np.arange(5)[None, :] < lengths[:, None]
    np.testing.assert_allclose(y_all[valid], (ref["out"] @ w.T + b)[valid], rtol=1e-12)
    assert np.all(y_all[~valid] == 0.0)
    # Padded entries of dy are ignored.
    dy_all = rng.standard_normal(y_all.shape)
    net_all.backward(dy_all)
    g1 = {k: v.copy() for k, v in net_all.grads().items()}
    dy_all[~valid] = 1e6
    net_all.backward(dy_all)
    for k in g1:
        np.testing.assert_array_equal(g1[k], net_all.grads()[k])


@pytest.mark.kernel
def test_network_truncate_and_plans():
    rng = np.random.default_rng(3)
    net = Network(GRU(2, 3, rng=rng), Dense(3, 1, "sigmoid", rng=rng), output="all")
    x = rng.standard_normal((1, 6, 2))
    y = net.forward(x)
    plans = {
        "rnn": exact_plan(net.rnn.combined_matrix()),
        "head": exact_plan(net.head.combined_matrix()),
    }
    np.testing.assert_array_equal(net.forward(x, plans=plans), y)
    np.testing.assert_array_equal(net.forward(x, plans={"head": plans["head"]}), y)
    net.backward(np.ones_like(y))
    full = net.grads()["rnn.weight_hh"].copy()
    net.backward(np.ones_like(y), truncate=2)
    assert not np.allclose(full, net.grads()["rnn.weight_hh"])
    with pytest.raises(ParameterError, match="'plans'"):
        net.forward(x, plans={"lstm": plans["rnn"]})


def test_network_params_are_views():
    rng = np.random.default_rng(4)
    net = Network(LSTM(2, 3, "peephole", rng=rng), Dense(3, 4, "softmax", rng=rng))
    params = net.params()
    assert list(params) == [
        "rnn.weight_ih",
        "rnn.weight_hh",
        "rnn.bias_ih",
        "rnn.bias_hh",
        "rnn.weight_ci",
        "rnn.weight_cf",
        "rnn.weight_co",
        "head.weight",
        "head.bias",
    ]
    assert set(net.grads()) == set(params)
    params["rnn.weight_co"] += 1.0
    params["head.bias"][...] = 0.5
    np.testing.assert_array_equal(net.head.params["bias"], 0.5)
    assert net.rnn.params["weight_co"] is params["rnn.weight_co"]
    mats = net.combined_matrices()
    assert mats["rnn"].shape == (12, 2 + 3 + 1) and mats["head"].shape == (4, 4)
    net.set_from_combined({"head": np.zeros((4, 4))})
    assert np.all(net.head.params["weight"] == 0.0)
    grads = net.combined_grads()
    assert grads["rnn"].shape == mats["rnn"].shape


def test_network_checks():
    rng = np.random.default_rng(5)
    lstm = LSTM(2, 3, rng=rng)
    with pytest.raises(ParameterError, match="'head'"):
        Network(lstm, Dense(4, 1, rng=rng))
    with pytest.raises(ParameterError, match="'rnn'"):
        Network(Dense(3, 3, rng=rng), Dense(3, 1, rng=rng))
    with pytest.raises(ParameterError, match="'output'"):
        Network(lstm, Dense(3, 1, rng=rng), output="first")
    net = Network(lstm, Dense(3, 1, rng=rng))
    with pytest.raises(RuntimeError, match="forward"):
        net.backward(np.zeros((1, 1)))
    with pytest.raises(ParameterError, match="'x'"):
        net.forward(np.zeros((1, 4, 3)))
    with pytest.raises(ParameterError, match="'lengths'"):
        net.forward(np.zeros((2, 4, 2)), lengths=[4, 5])
    net.forward(np.zeros((2, 4, 2)))
    with pytest.raises(ParameterError, match="'dy'"):
        net.backward(np.zeros((2, 4, 1)))
    with pytest.raises(ParameterError, match="'seed'"):
        net.forward(np.zeros((2, 4, 2)), seed=2**40)


@pytest.mark.kernel
def test_network_noise_is_reproducible_from_seed():
    rng = np.random.default_rng(6)
    net = Network(LSTM(2, 3, rng=rng), Dense(3, 2, "identity", rng=rng))
    x = rng.standard_normal((2, 4, 2))

    def noisy(m):
        p = exact_plan(m)
        return p._replace(linear=False, noisy=True, q=np.full_like(p.g, 1e-3))

    plans = {k: noisy(m) for k, m in net.combined_matrices().items()}
    a = net.forward(x, plans=plans, seed=5)
    np.testing.assert_array_equal(a, net.forward(x, plans=plans, seed=5))
    assert not np.array_equal(a, net.forward(x, plans=plans, seed=6))
    seeds = [head_seed(s) for s in range(1000)]
    assert len(set(seeds)) == 1000
    assert all(0 <= s < 2**32 for s in seeds)
    assert not set(seeds) & set(range(1000))
