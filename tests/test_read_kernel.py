"""The numba read kernel against a slow, obvious per-device simulation."""

import numpy as np
import pytest

from crossbar.read_kernel import ReadPlan, exact_plan, matvec
from crossbar.validation import ParameterError


def _slow_read(plan: ReadPlan, u, rng):
    """Loop over every device; read noise drawn per device per read."""
    from crossbar.converters import quantize_array

    batch = u.shape[0]
    out = np.zeros((batch, plan.n_out))
    n_tiles, n_rows, n_ch = plan.g.shape
    for b in range(batch):
        for t in range(n_tiles):
            volts = np.zeros(n_rows)
            for k in range(n_rows):
                if plan.in_idx[t, k] >= 0:
                    volts[k] = u[b, plan.in_idx[t, k]] * plan.in_scale[t, k]
            volts = quantize_array(volts, plan.dac_steps, plan.dac_full_scale)
            for c in range(n_ch):
                if plan.ch_out[t, c] < 0:
                    continue
                current = 0.0
                for k in range(n_rows):
                    sd = np.sqrt(plan.q[t, k, c])
                    current += volts[k] * (plan.g[t, k, c] + sd * rng.standard_normal())
                current = quantize_array(current, plan.adc_steps, plan.adc_full_scale)
                out[b, plan.ch_out[t, c]] += (
                    plan.ch_sign[t, c] * current * plan.out_scale
                )
    return out


def _random_plan(rng, noisy, dac_steps=0.0, adc_steps=0.0):
    n_t, n_k, n_c = 2, 5, 4
    g = rng.uniform(-50e-6, 50e-6, size=(n_t, n_k, n_c))
    q = (
        (0.05 * rng.uniform(1e-6, 100e-6, size=(n_t, n_k, n_c))) ** 2
        if noisy
        else g * 0
    )
    in_idx = np.array([[0, 1, 2, 3, -1], [3, 4, 5, 6, 0]], dtype=np.int64)
    in_scale = np.array([[0.2, 0.2, -0.2, 0.2, 0.0], [0.2, 0.1, 0.2, 0.2, -0.2]])
    ch_out = np.array([[0, 1, 2, -1], [0, 1, 2, 2]], dtype=np.int64)
    ch_sign = np.array([[1.0, 1.0, 1.0, 0.0], [1.0, -1.0, 1.0, -1.0]])
    return ReadPlan(
        g,
        q,
        in_idx,
        in_scale,
        ch_out,
        ch_sign,
        dac_steps,
        0.2,
        adc_steps,
        2e-5,
        1 / (100e-6 * 0.2),
        7,
        3,
        noisy,
        False,
    )


@pytest.mark.kernel
def test_exact_plan_is_matmul():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(6, 9))
    u = rng.normal(size=(4, 9))
    np.testing.assert_allclose(matvec(exact_plan(w), u), u @ w.T, rtol=1e-14)


@pytest.mark.kernel
@pytest.mark.parametrize("dac_steps,adc_steps", [(0.0, 0.0), (7.0, 0.0), (15.0, 31.0)])
def test_noise_free_plan_matches_slow_reference(dac_steps, adc_steps):
    rng = np.random.default_rng(2)
    plan = _random_plan(rng, noisy=False, dac_steps=dac_steps, adc_steps=adc_steps)
    u = rng.uniform(-1.2, 1.2, size=(5, 7))
    fast = matvec(plan, u)
    slow = _slow_read(plan, u, rng)
    np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12)


@pytest.mark.kernel
def test_read_noise_statistics_match_per_device_model():
    # The column-level draw must have the mean and variance of the per-device
    # model: per-device noise sums to a Gaussian with variance sum V^2 q.
    rng = np.random.default_rng(3)
    plan = _random_plan(rng, noisy=True)
    u = np.tile(rng.uniform(-1, 1, size=(1, 7)), (4000, 1))
    fast = matvec(plan, u, seed=11)
    slow = _slow_read(plan, u[:400], rng)
    mean_ref = matvec(plan._replace(noisy=False), u[:1])[0]
    n = fast.shape[0]
    std_f = fast.std(axis=0)
    std_s = slow.std(axis=0)
    assert np.all(np.abs(fast.mean(axis=0) - mean_ref) < 5 * std_f / np.sqrt(n))
    # Sample standard deviations of the two models agree within sampling error.
    np.testing.assert_allclose(std_f, std_s, rtol=0.2)
    assert np.all(std_f > 0)


@pytest.mark.kernel
def test_same_seed_same_noise():
    rng = np.random.default_rng(4)
    plan = _random_plan(rng, noisy=True)
    u = rng.uniform(-1, 1, size=(3, 7))
    a = matvec(plan, u, seed=5)
    b = matvec(plan, u, seed=5)
    c = matvec(plan, u, seed=6)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_matvec_checks_input_shape():
    plan = exact_plan(np.ones((2, 3)))
    with pytest.raises(ParameterError, match="'u'"):
        matvec(plan, np.ones((4, 2)))
    with pytest.raises(ParameterError, match="'u'"):
        matvec(plan, np.full((1, 3), np.nan))


@pytest.mark.kernel
def test_linear_plan_noise_has_its_variance():
    rng = np.random.default_rng(8)
    w = rng.normal(size=(3, 5))
    q = rng.uniform(0.01, 0.04, size=(5, 3))
    plan = exact_plan(w)._replace(q=q[None], noisy=True)
    u = np.tile(rng.uniform(-1, 1, size=(1, 5)), (20000, 1))
    got = matvec(plan, u, seed=3)
    var = (u[0] ** 2) @ q
    n = got.shape[0]
    assert np.all(np.abs(got.mean(axis=0) - u[0] @ w.T) < 5 * np.sqrt(var / n))
    # Sample variance of n Gaussians: relative standard error sqrt(2 / n).
    np.testing.assert_allclose(got.var(axis=0), var, rtol=5 * np.sqrt(2 / n))
