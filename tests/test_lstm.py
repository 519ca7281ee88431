"""The LSTM layer against the slow numpy reference, plus its API contract."""

from __future__ import annotations

import numpy as np
import pytest
from reference_rnn import lstm_reference

from crossbar.read_kernel import exact_plan
from crossbar.validation import ParameterError
from lstm_hw import LSTM, kernels
from lstm_hw.lstm import lengths_from_mask

VARIANTS = ["vanilla", "peephole", "cifg"]
N_IN, H, B, T = 3, 4, 3, 7

CASES = {
    "full": {"lengths": None, "states": False, "truncate": None},
    "lengths": {"lengths": [7, 4, 1], "states": False, "truncate": None},
    "states": {"lengths": None, "states": True, "truncate": None},
    "truncate": {"lengths": None, "states": True, "truncate": 3},
    "all": {"lengths": [5, 7, 2], "states": True, "truncate": 2},
}


def _layer(variant, seed=0, scale=1.0):
    layer = LSTM(N_IN, H, variant, rng=np.random.default_rng(seed))
    for v in layer.params.values():
        v *= scale
    return layer


def _run(layer, case, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, T, N_IN))
    h0 = rng.standard_normal((B, H)) if case["states"] else np.zeros((B, H))
    c0 = rng.standard_normal((B, H)) if case["states"] else np.zeros((B, H))
    d_out = rng.standard_normal((B, T, H))
    d_hn = rng.standard_normal((B, H))
    d_cn = rng.standard_normal((B, H))
    lengths = case["lengths"]
    lens = np.full(B, T) if lengths is None else np.array(lengths)
    out, (h_n, c_n) = layer.forward(x, h0=h0, c0=c0, lengths=lengths)
    dx = layer.backward(d_out, d_state=(d_hn, d_cn), truncate=case["truncate"])
    ref = lstm_reference(
        layer.params,
        layer.variant,
        x,
        h0,
        c0,
        lens,
        d_out,
        d_hn,
        d_cn,
        case["truncate"],
    )
    return (out, h_n, c_n, dx), ref


@pytest.mark.kernel
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("variant", VARIANTS)
def test_matches_reference(variant, case):
    layer = _layer(variant, scale=1.5)
    (out, h_n, c_n, dx), ref = _run(layer, CASES[case])
    tol = {"rtol": 1e-10, "atol": 1e-12}
    np.testing.assert_allclose(out, ref["out"], **tol)
    np.testing.assert_allclose(h_n, ref["h_n"], **tol)
    np.testing.assert_allclose(c_n, ref["c_n"], **tol)
    np.testing.assert_allclose(dx, ref["dx"], **tol)
    np.testing.assert_allclose(layer.grad_h0, ref["dh0"], **tol)
    np.testing.assert_allclose(layer.grad_c0, ref["dc0"], **tol)
    assert set(layer.grads) == set(ref["grads"])
    for name, g in layer.grads.items():
        np.testing.assert_allclose(g, ref["grads"][name], err_msg=name, **tol)


@pytest.mark.kernel
@pytest.mark.parametrize("variant", VARIANTS)
def test_padding_is_inert(variant):
    """A padded sequence gives the same results as that sequence alone."""
    layer = _layer(variant)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, T, N_IN))
    d_out = rng.standard_normal((2, T, H))
    lengths = np.array([T, 4])
    out, (h_n, c_n) = layer.forward(x, lengths=lengths)
    layer.backward(d_out)
    assert np.all(out[1, 4:] == 0.0)
    np.testing.assert_array_equal(h_n[1], out[1, 3])
    grads_pad = {k: v.copy() for k, v in layer.grads.items()}

    x_other = x.copy()
    x_other[1, 4:] = 1e3  # garbage in the padding changes nothing
    out2, _ = layer.forward(x_other, lengths=lengths)
    layer.backward(d_out)
    np.testing.assert_array_equal(out, out2)
    for k in grads_pad:
        np.testing.assert_array_equal(grads_pad[k], layer.grads[k])

    total = {k: np.zeros_like(v) for k, v in grads_pad.items()}
    for b, n in enumerate(lengths):
        o, (h1, _) = layer.forward(x[b : b + 1, :n])
        layer.backward(d_out[b : b + 1, :n])
        np.testing.assert_allclose(o[0], out[b, :n], rtol=1e-13, atol=1e-15)
        for k in total:
            total[k] += layer.grads[k]
    for k in total:
        np.testing.assert_allclose(grads_pad[k], total[k], rtol=1e-12, atol=1e-14)


@pytest.mark.kernel
def test_mask_equals_lengths():
    layer = _layer("vanilla")
    x = np.random.default_rng(0).standard_normal((3, 5, N_IN))
    lengths = np.array([5, 2, 3])
    mask = np.arange(5)[None, :] < lengths[:, None]
    np.testing.assert_array_equal(lengths_from_mask(mask), lengths)
    a, _ = layer.forward(x, lengths=lengths)
    b, _ = layer.forward(x, mask=mask)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ParameterError, match="'mask'"):
        layer.forward(x, mask=~mask)
    with pytest.raises(ParameterError, match="'mask'"):
        layer.forward(x, lengths=lengths, mask=mask)


@pytest.mark.kernel
@pytest.mark.parametrize("variant", VARIANTS)
def test_truncation_at_or_beyond_length_is_full_bptt(variant):
    layer = _layer(variant)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, T, N_IN))
    d_out = rng.standard_normal((2, T, H))
    layer.forward(x)
    full = layer.backward(d_out)
    g_full = {k: v.copy() for k, v in layer.grads.items()}
    cut = layer.backward(d_out, truncate=T)
    np.testing.assert_array_equal(full, cut)
    for k in g_full:
        np.testing.assert_array_equal(g_full[k], layer.grads[k])
    layer.backward(d_out, truncate=1)
    # With chunks of one step, h0 only sees the first step's error.
    only_first = np.zeros_like(d_out)
    only_first[:, 0] = d_out[:, 0]
    grad_h0_trunc = layer.grad_h0.copy()
    layer.backward(only_first)
    np.testing.assert_allclose(grad_h0_trunc, layer.grad_h0, rtol=1e-13)


@pytest.mark.kernel
@pytest.mark.parametrize("variant", VARIANTS)
def test_combined_matrix_and_plans(variant):
    layer = _layer(variant)
    rows = 3 * H if variant == "cifg" else 4 * H
    m = layer.combined_matrix()
    assert m.shape == (rows, N_IN + H + 1)
    x = np.random.default_rng(2).standard_normal((2, 4, N_IN))
    ref, _ = layer.forward(x)
    out, _ = layer.forward(x, plan=exact_plan(m))
    np.testing.assert_array_equal(out, ref)
    # Bias spread over two input columns of the plan (both driven with 1).
    split = np.concatenate([m[:, :-1], 0.25 * m[:, -1:], 0.75 * m[:, -1:]], axis=1)
    out2, _ = layer.forward(x, plan=exact_plan(split))
    np.testing.assert_allclose(out2, ref, rtol=1e-13, atol=1e-15)

    before = {k: v.copy() for k, v in layer.params.items()}
    layer.set_from_combined(m)
    for k in before:
        np.testing.assert_allclose(layer.params[k], before[k], rtol=0, atol=1e-15)
    out3, _ = layer.forward(x)
    np.testing.assert_allclose(out3, ref, rtol=1e-14, atol=1e-15)

    layer.backward(np.ones_like(out3))
    dm = layer.combined_grad()
    assert dm.shape == m.shape
    np.testing.assert_array_equal(
        dm[:, -1],
        layer.grads["bias_hh"][
            np.r_[0:H, 2 * H : 4 * H] if variant == "cifg" else slice(None)
        ],
    )
    with pytest.raises(ParameterError, match="'plan'"):
        layer.forward(x, plan=exact_plan(m[:, :-1]))


@pytest.mark.kernel
def test_cifg_forget_rows_unused():
    layer = _layer("cifg")
    x = np.random.default_rng(4).standard_normal((2, 5, N_IN))
    ref, _ = layer.forward(x)
    layer.backward(np.ones_like(ref))
    f = slice(H, 2 * H)
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        assert np.all(layer.grads[name][f] == 0.0)
        layer.params[name][f] = 7.0
    out, _ = layer.forward(x)
    np.testing.assert_array_equal(out, ref)


@pytest.mark.kernel
def test_noisy_plan_is_seeded():
    """A plan drawing read noise in numba is reproducible from the seed."""
    layer = _layer("peephole")
    x = np.random.default_rng(0).standard_normal((2, 5, N_IN))
    exact = exact_plan(layer.combined_matrix())
    # The general (non-exact) path of the same plan without noise is exact.
    general = exact._replace(linear=False)
    ref, _ = layer.forward(x, plan=exact)
    out, _ = layer.forward(x, plan=general)
    np.testing.assert_allclose(out, ref, rtol=1e-13, atol=1e-15)
    noisy = general._replace(noisy=True, q=np.full_like(exact.g, 1e-3))
    a, _ = layer.forward(x, plan=noisy, seed=11)
    b, _ = layer.forward(x, plan=noisy, seed=11)
    c, _ = layer.forward(x, plan=noisy, seed=12)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert 0 < np.max(np.abs(a - ref)) < 0.5


def test_init_like_pytorch():
    a = LSTM(5, 16, rng=np.random.default_rng(7))
    b = LSTM(5, 16, rng=np.random.default_rng(7))
    for k, v in a.params.items():
        assert np.all(np.abs(v) <= 0.25)
        np.testing.assert_array_equal(v, b.params[k])
    assert a.params["weight_ih"].shape == (64, 5)
    assert a.params["weight_hh"].shape == (64, 16)
    assert a.params["bias_ih"].shape == (64,)
    p = LSTM(5, 16, "peephole", rng=np.random.default_rng(7)).params
    assert p["weight_co"].shape == (16,)
    assert set(p) == set(a.params) | {"weight_ci", "weight_cf", "weight_co"}


def test_input_checks():
    layer = _layer("vanilla")
    x = np.zeros((2, 3, N_IN))
    with pytest.raises(ParameterError, match="'variant'.*did you mean 'cifg'"):
        LSTM(N_IN, H, "cifgg")
    with pytest.raises(ParameterError, match="'hidden_size'"):
        LSTM(N_IN, 0)
    with pytest.raises(ParameterError, match="'rng'"):
        LSTM(N_IN, H, rng=3)
    with pytest.raises(ParameterError, match="'x'"):
        layer.forward(np.zeros((2, 3, N_IN + 1)))
    bad = x.copy()
    bad[0, 1, 2] = np.nan
    with pytest.raises(ParameterError, match="'x'.*finite"):
        layer.forward(bad)
    with pytest.raises(ParameterError, match="'lengths'"):
        layer.forward(x, lengths=[3, 4])
    with pytest.raises(ParameterError, match="'lengths'"):
        layer.forward(x, lengths=[0, 2])
    with pytest.raises(ParameterError, match="'h0'"):
        layer.forward(x, h0=np.zeros((2, H + 1)))
    with pytest.raises(ParameterError, match="'c0'"):
        layer.forward(x, c0=np.full((2, H), np.inf))
    with pytest.raises(ParameterError, match="'seed'"):
        layer.forward(x, seed=-1)
    with pytest.raises(ParameterError, match="'plan'"):
        layer.forward(x, plan="exact")
    with pytest.raises(RuntimeError, match="forward"):
        _layer("cifg").backward(np.zeros((2, 3, H)))
    layer.forward(x)
    with pytest.raises(ParameterError, match="'d_out'"):
        layer.backward(np.zeros((2, 4, H)))
    with pytest.raises(ParameterError, match="'truncate'"):
        layer.backward(np.zeros((2, 3, H)), truncate=0)
    with pytest.raises(ParameterError, match="'d_state'"):
        layer.backward(np.zeros((2, 3, H)), d_state=np.zeros((2, H)))
    with pytest.raises(ParameterError, match="'matrix'"):
        layer.set_from_combined(np.zeros((4 * H, N_IN + H)))
    assert layer.backward(np.zeros((2, 3, H)), input_grad=False) is None
    layer.params["weight_hh"][0, 0] = np.nan
    with pytest.raises(ParameterError, match="'params'.*finite"):
        layer.forward(x)


@pytest.mark.kernel
def test_expm1_and_activations_match_numpy():
    x = np.concatenate(
        [
            np.linspace(-30.0, 30.0, 601),
            [0.0, -0.0, 1e-300, -1e-12, 5e-9],
            [-708.0, 709.0, -1e4, 1e4],
            np.random.default_rng(0).normal(0, 3, 200),
        ]
    )
    out = np.empty_like(x)
    kernels.expm1_into(x, out, np.empty_like(x))
    clipped = np.clip(x, -708.0, 709.0)
    np.testing.assert_allclose(out, np.expm1(clipped), rtol=4e-16, atol=0)
    np.testing.assert_allclose(
        kernels.sigmoid(x), 1 / (1 + np.exp(-clipped)), rtol=1e-15, atol=1e-300
    )
    np.testing.assert_allclose(kernels.tanh(x), np.tanh(x), rtol=1e-15, atol=0)
    assert np.all(np.isfinite(kernels.sigmoid(x)))


@pytest.mark.kernel
def test_backward_without_output_gradient():
    """d_out=None means zeros: the loss sits on the final state only."""
    layer = _layer("peephole")
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 5, N_IN))
    d_h = rng.standard_normal((2, H))
    layer.forward(x, lengths=[5, 3])
    a = layer.backward(None, d_state=(d_h, None), truncate=2)
    g = {k: v.copy() for k, v in layer.grads.items()}
    b = layer.backward(np.zeros((2, 5, H)), d_state=(d_h, np.zeros((2, H))), truncate=2)
    np.testing.assert_array_equal(a, b)
    for k in g:
        np.testing.assert_array_equal(g[k], layer.grads[k])


def test_read_only_inputs():
    layer = _layer("vanilla")
    x = np.random.default_rng(0).standard_normal((2, 3, N_IN))
    x.flags.writeable = False
    lengths = np.array([3, 2])
    lengths.flags.writeable = False
    out, _ = layer.forward(x, lengths=lengths)
    x2 = x.copy()
    np.testing.assert_array_equal(layer.forward(x2, lengths=[3, 2])[0], out)
