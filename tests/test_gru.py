"""The GRU layer against the slow numpy reference, plus its API contract."""

from __future__ import annotations

import numpy as np
import pytest
from reference_rnn import gru_reference

from crossbar.read_kernel import exact_plan
from crossbar.validation import ParameterError
from lstm_hw import GRU

N_IN, H, B, T = 3, 4, 3, 7

CASES = {
    "full": {"lengths": None, "states": False, "truncate": None},
    "lengths": {"lengths": [7, 4, 1], "states": False, "truncate": None},
    "states": {"lengths": None, "states": True, "truncate": None},
    "truncate": {"lengths": None, "states": True, "truncate": 3},
    "all": {"lengths": [5, 7, 2], "states": True, "truncate": 2},
}


def _layer(seed=0, scale=1.5):
    layer = GRU(N_IN, H, rng=np.random.default_rng(seed))
    for v in layer.params.values():
        v *= scale
    return layer


@pytest.mark.kernel
@pytest.mark.parametrize("case", list(CASES))
def test_matches_reference(case):
    spec = CASES[case]
    layer = _layer()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((B, T, N_IN))
    h0 = rng.standard_normal((B, H)) if spec["states"] else np.zeros((B, H))
    d_out = rng.standard_normal((B, T, H))
    d_hn = rng.standard_normal((B, H))
    lens = np.full(B, T) if spec["lengths"] is None else np.array(spec["lengths"])
    out, h_n = layer.forward(x, h0=h0, lengths=spec["lengths"])
    dx = layer.backward(d_out, d_state=d_hn, truncate=spec["truncate"])
    ref = gru_reference(layer.params, x, h0, lens, d_out, d_hn, spec["truncate"])
    tol = {"rtol": 1e-10, "atol": 1e-12}
    np.testing.assert_allclose(out, ref["out"], **tol)
    np.testing.assert_allclose(h_n, ref["h_n"], **tol)
    np.testing.assert_allclose(dx, ref["dx"], **tol)
    np.testing.assert_allclose(layer.grad_h0, ref["dh0"], **tol)
    for name, g in layer.grads.items():
        np.testing.assert_allclose(g, ref["grads"][name], err_msg=name, **tol)


@pytest.mark.kernel
def test_padding_is_inert():
    layer = _layer()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, T, N_IN))
    lengths = np.array([3, T])
    out, h_n = layer.forward(x, lengths=lengths)
    assert np.all(out[0, 3:] == 0.0)
    np.testing.assert_array_equal(h_n[0], out[0, 2])
    alone, h_alone = layer.forward(x[:1, :3])
    np.testing.assert_allclose(alone[0], out[0, :3], rtol=1e-13, atol=1e-15)


@pytest.mark.kernel
def test_combined_matrix_and_plans():
    layer = _layer()
    m = layer.combined_matrix()
    assert m.shape == (4 * H, N_IN + H + 1)
    # Structural zeros: n_x has no recurrent part, n_h no input part.
    assert np.all(m[2 * H : 3 * H, N_IN : N_IN + H] == 0.0)
    assert np.all(m[3 * H :, :N_IN] == 0.0)
    x = np.random.default_rng(2).standard_normal((2, 4, N_IN))
    ref, _ = layer.forward(x)
    out, _ = layer.forward(x, plan=exact_plan(m))
    np.testing.assert_array_equal(out, ref)
    before = {k: v.copy() for k, v in layer.params.items()}
    layer.set_from_combined(m)
    for k in before:
        np.testing.assert_allclose(layer.params[k], before[k], rtol=0, atol=1e-15)
    layer.backward(np.ones_like(ref))
    dm = layer.combined_grad()
    g = layer.grads
    np.testing.assert_array_equal(dm[3 * H :, N_IN : N_IN + H], g["weight_hh"][2 * H :])
    np.testing.assert_array_equal(dm[2 * H : 3 * H, -1], g["bias_ih"][2 * H :])
    np.testing.assert_array_equal(dm[3 * H :, -1], g["bias_hh"][2 * H :])
    assert np.all(dm[2 * H : 3 * H, N_IN : N_IN + H] == 0.0)
    assert np.all(dm[3 * H :, :N_IN] == 0.0)


@pytest.mark.kernel
def test_noisy_plan_is_seeded():
    layer = _layer()
    x = np.random.default_rng(0).standard_normal((2, 5, N_IN))
    plan = exact_plan(layer.combined_matrix())
    noisy = plan._replace(linear=False, noisy=True, q=np.full_like(plan.g, 1e-3))
    a, _ = layer.forward(x, plan=noisy, seed=3)
    b, _ = layer.forward(x, plan=noisy, seed=3)
    c, _ = layer.forward(x, plan=noisy, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_init_and_checks():
    a = GRU(2, 9, rng=np.random.default_rng(1))
    assert a.params["weight_ih"].shape == (27, 2)
    assert a.params["weight_hh"].shape == (27, 9)
    for v in a.params.values():
        assert np.all(np.abs(v) <= 1 / 3)
    with pytest.raises(ParameterError, match="'input_size'"):
        GRU(1.5, 3)
    with pytest.raises(ParameterError, match="'x'"):
        a.forward(np.zeros((1, 2, 3)))
    with pytest.raises(ParameterError, match="'h0'"):
        a.forward(np.zeros((1, 2, 2)), h0=np.zeros((2, 9)))
    a.forward(np.zeros((1, 2, 2)))
    with pytest.raises(ParameterError, match="'d_state'"):
        a.backward(np.zeros((1, 2, 9)), d_state=np.zeros((1, 8)))
    with pytest.raises(ParameterError, match="'matrix'"):
        a.set_from_combined(np.zeros((27, 12)))
