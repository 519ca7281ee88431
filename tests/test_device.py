"""Device model: parameters, fabrication, writes, reads and drift."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from crossbar.device import DeviceArray, DeviceParams, reachable_values
from crossbar.validation import ParameterError

SHAPE = (4, 5)


def make(params=None, shape=SHAPE, seed=0, **kwargs) -> DeviceArray:
    params = DeviceParams() if params is None else params
    return DeviceArray(params, shape, np.random.default_rng(seed), **kwargs)


def z_bound(n: int) -> float:
    """Five standard errors of a sample mean of unit-variance draws."""
    return 5.0 / np.sqrt(n)


def assert_on_levels(devices: DeviceArray, g: np.ndarray) -> None:
    n = devices.params.n_levels
    step = (devices.g_hi - devices.g_lo) / (n - 1)
    k = (g - devices.g_lo) / step
    assert np.allclose(k, np.rint(k), atol=1e-6)


# ----------------------------------------------------------------- parameters
@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("g_min", -1e-6, "[0.0, inf]"),
        ("g_max", 1e-6, "greater than g_min"),
        ("g_max", 0.5e-6, "greater than g_min"),
        ("n_levels", 1, "[2, inf]"),
        ("n_levels", 0, "[2, inf]"),
        ("n_levels", 2.5, "an integer"),
        ("prog_noise", -1e-7, "[0.0, inf]"),
        ("prog_noise_mode", "relativ", "did you mean 'relative'"),
        ("read_noise", -0.01, "[0.0, inf]"),
        ("d2d_sigma", -0.1, "[0.0, inf]"),
        ("p_stuck_min", 1.5, "[0.0, 1.0]"),
        ("p_stuck_max", -0.1, "[0.0, 1.0]"),
        ("drift_nu", -0.1, "[0.0, inf]"),
        ("drift_nu_sigma", -0.1, "[0.0, inf]"),
        ("drift_t0", 0.0, "(0.0, inf]"),
        ("g_max", float("nan"), "finite"),
    ],
)
def test_bad_parameter_names_field_range_and_value(field, value, expected):
    with pytest.raises(ParameterError) as info:
        DeviceParams(**{field: value})
    msg = str(info.value)
    assert f"'{field}'" in msg
    assert expected in msg
    assert repr(value) in msg


def test_stuck_probabilities_must_sum_to_at_most_one():
    DeviceParams(p_stuck_min=0.4, p_stuck_max=0.6)
    with pytest.raises(ParameterError, match="p_stuck_max"):
        DeviceParams(p_stuck_min=0.5, p_stuck_max=0.6)


def test_li2019_preset():
    p = DeviceParams.li2019()
    assert (p.g_min, p.g_max, p.prog_noise) == (0.0, 400e-6, 4e-6)
    assert p.prog_noise_mode == "absolute"
    assert DeviceParams.li2019(prog_noise=5.6e-6).prog_noise == 5.6e-6
    assert DeviceParams.li2019(read_noise=0.01).read_noise == 0.01


def test_nominal_levels():
    p = DeviceParams(g_min=1e-6, g_max=5e-6, n_levels=5)
    levels = p.levels()
    assert np.allclose(levels, [1e-6, 2e-6, 3e-6, 4e-6, 5e-6], rtol=1e-14, atol=0)
    # Writing a level leaves it exactly; no device goes elsewhere.
    d = make(p, shape=(1, 5))
    assert np.array_equal(d.legalize(levels[None, :]), levels[None, :])
    written = d.legalize(np.linspace(0, 6e-6, 5)[None, :])
    assert np.all(np.isin(written, levels))
    assert DeviceParams().levels() is None


def test_array_construction_checks():
    with pytest.raises(ParameterError, match="'shape'"):
        make(shape=(0, 3))
    with pytest.raises(ParameterError, match="'rng'"):
        DeviceArray(DeviceParams(), SHAPE, 0)
    with pytest.raises(ParameterError, match="'params'"):
        DeviceArray({}, SHAPE, np.random.default_rng(0))
    with pytest.raises(ParameterError, match="'g_init'"):
        make(g_init=np.zeros((2, 2)))


# ----------------------------------------------------------- legal conductances
def test_legalize_quantizes_clips_and_pins_stuck():
    p = DeviceParams(g_min=1e-6, g_max=5e-6, n_levels=5)
    d = make(p, shape=(1, 6))
    g = np.array([[-1.0, 1.4e-6, 1.6e-6, 3.49e-6, 4.9e-6, 1e300]])
    expected = np.array([[1e-6, 1e-6, 2e-6, 3e-6, 5e-6, 5e-6]])
    assert np.allclose(d.legalize(g), expected, rtol=0, atol=1e-18)
    assert d.legalize(np.inf)[0, 0] == 5e-6
    assert d.legalize(-np.inf)[0, 0] == 1e-6
    with pytest.raises(ParameterError, match="'g'.*NaN"):
        d.legalize(np.full((1, 6), np.nan))


def test_levels_follow_each_devices_own_window():
    p = DeviceParams(g_min=10e-6, g_max=100e-6, n_levels=4, d2d_sigma=0.1)
    d = make(p, shape=(20, 20))
    assert not np.allclose(d.g_lo, 10e-6)
    g = d.legalize(np.linspace(0, 120e-6, 400).reshape(20, 20))
    assert_on_levels(d, g)
    # The ends of the window are levels themselves.
    assert np.array_equal(d.legalize(np.full(d.shape, 1.0)), d.g_hi)
    assert np.array_equal(d.legalize(np.zeros(d.shape)), d.g_lo)


def test_reachable_values_matches_slow_reference():
    rng = np.random.default_rng(3)
    lo = rng.uniform(0, 1e-5, 50)
    hi = lo + rng.uniform(1e-6, 1e-4, 50)
    g = rng.uniform(-1e-5, 2e-4, 50)
    n = 7
    out = reachable_values(g, lo, hi, n)
    for gi, li, hi_i, oi in zip(g, lo, hi, out, strict=True):
        levels = np.linspace(li, hi_i, n)
        best = levels[np.argmin(np.abs(levels - gi))]
        assert oi == pytest.approx(best, rel=1e-12)


# Parameters with every non-ideality that touches the window, levels and stuck.
device_params = st.builds(
    DeviceParams,
    g_min=st.sampled_from([0.0, 1e-6, 20e-6]),
    g_max=st.sampled_from([100e-6, 400e-6]),
    n_levels=st.one_of(st.none(), st.integers(2, 64)),
    prog_noise=st.sampled_from([0.0, 0.05, 1.0]),
    prog_noise_mode=st.sampled_from(["absolute", "relative", "state"]),
    d2d_sigma=st.sampled_from([0.0, 0.2, 3.0]),
    p_stuck_min=st.sampled_from([0.0, 0.2]),
    p_stuck_max=st.sampled_from([0.0, 0.2]),
)
any_floats = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(
    params=device_params,
    seed=st.integers(0, 2**32 - 1),
    targets=st.lists(
        arrays(np.float64, SHAPE, elements=any_floats), min_size=1, max_size=3
    ),
    masks=st.lists(arrays(np.bool_, SHAPE), min_size=3, max_size=3),
)
def test_writes_keep_every_invariant(params, seed, targets, masks):
    d = make(params, seed=seed)
    assert np.all(d.g_lo >= 0) and np.all(d.g_hi > d.g_lo)
    stuck_before = d.g[d.stuck].copy()
    for target, mask in zip(targets, masks, strict=False):
        before = d.g.copy()
        pulses = d.write(target, mask)
        assert pulses == np.count_nonzero(mask & ~d.stuck)
        assert np.array_equal(d.g[~mask], before[~mask])
        g = d.conductance()
        assert np.all(g >= d.g_lo) and np.all(g <= d.g_hi)
        if params.n_levels is not None:
            assert_on_levels(d, g)
        assert np.array_equal(d.g[d.stuck], stuck_before)
        assert np.array_equal(d.g[d.stuck_min], d.g_lo[d.stuck_min])
        assert np.array_equal(d.g[d.stuck_max], d.g_hi[d.stuck_max])


def test_programmed_conductance_is_read_only():
    d = make()
    with pytest.raises(ValueError, match="read-only"):
        d.g[0, 0] = 1.0
    with pytest.raises(AttributeError):
        d.g = np.zeros(SHAPE)


def test_g_init_is_legalized_and_defaults_to_window_bottom():
    p = DeviceParams(n_levels=3)
    assert np.array_equal(make(p).g, np.full(SHAPE, 1e-6))
    assert np.allclose(make(p, g_init=40e-6).g, 50.5e-6)
    assert np.all(make(p, g_init=1.0).g == 100e-6)


def test_write_checks_target_and_mask():
    d = make()
    with pytest.raises(ParameterError, match="'target'.*shape"):
        d.write(np.zeros((5, 4)))
    bad = np.zeros(SHAPE)
    bad[1, 2] = np.nan
    with pytest.raises(ParameterError, match="'target'.*NaN"):
        d.write(bad)
    with pytest.raises(ParameterError, match="'target'.*inf"):
        d.write(np.full(SHAPE, np.inf))
    with pytest.raises(ParameterError, match="'mask'"):
        d.write(0.0, mask=np.ones(SHAPE))
    with pytest.raises(ParameterError, match="'mask'"):
        d.write(0.0, mask=np.ones((2, 2), dtype=bool))


def test_noise_free_write_is_exact_and_resets_clock():
    d = make(DeviceParams(prog_noise=1e-6))
    d.advance_time(5.0)
    target = np.full(SHAPE, 30e-6)
    mask = np.zeros(SHAPE, dtype=bool)
    mask[0] = True
    assert d.set_exact(target, mask) == SHAPE[1]
    assert np.all(d.g[0] == 30e-6) and np.all(d.g[1:] == 1e-6)
    assert np.all(d.t_program[0] == 5.0) and np.all(d.t_program[1:] == 0.0)


# ------------------------------------------------------------ noise statistics
def programming_errors(params, target, n=40_000, seed=1):
    d = make(params, shape=(n // 100, 100), seed=seed)
    d.write(target)
    return d.g - target


@pytest.mark.parametrize(
    ("mode", "noise", "target", "sigma"),
    [
        ("absolute", 2e-6, 50e-6, 2e-6),
        ("relative", 0.02, 50e-6, 0.02 * 99e-6),
        ("state", 0.05, 40e-6, 0.05 * 40e-6),
    ],
)
def test_programming_noise_statistics(mode, noise, target, sigma):
    p = DeviceParams(prog_noise=noise, prog_noise_mode=mode)
    err = programming_errors(p, target)
    n = err.size
    assert abs(err.mean()) < sigma * z_bound(n)
    # The sample std has a standard error of about sigma / sqrt(2 n).
    assert abs(err.std() - sigma) < 5 * sigma / np.sqrt(2 * n)


def test_prog_sigma_per_mode():
    d = make(DeviceParams(prog_noise=0.1, prog_noise_mode="state"), shape=(1, 3))
    assert np.allclose(d.prog_sigma([[50e-6, 500e-6, -1.0]]), [[5e-6, 10e-6, 1e-7]])
    d = make(DeviceParams(prog_noise=0.1, prog_noise_mode="relative"), shape=(1, 3))
    assert np.allclose(d.prog_sigma(50e-6), 0.1 * 99e-6)
    d = make(DeviceParams(prog_noise=3e-6), shape=(1, 3))
    assert np.all(d.prog_sigma(50e-6) == 3e-6)


def test_state_dependent_noise_grows_with_state():
    p = DeviceParams(prog_noise=0.05, prog_noise_mode="state")
    low = programming_errors(p, 10e-6, n=10_000).std()
    high = programming_errors(p, 80e-6, n=10_000).std()
    assert high > 6 * low


def test_read_noise_is_fresh_and_relative():
    p = DeviceParams(read_noise=0.03)
    d = make(p, shape=(200, 200), g_init=60e-6)
    a, b = d.read_back(), d.read_back()
    assert not np.array_equal(a, b)
    rel = a / d.g - 1.0
    n = rel.size
    assert abs(rel.mean()) < 0.03 * z_bound(n)
    assert abs(rel.std() - 0.03) < 5 * 0.03 / np.sqrt(2 * n)
    assert np.array_equal(d.read_back(noisy=False), d.g)
    # Reading does not change the devices.
    assert np.all(d.g == 60e-6)


def test_device_to_device_window_statistics():
    p = DeviceParams(g_min=10e-6, g_max=100e-6, d2d_sigma=0.05)
    d = make(p, shape=(200, 200))
    n = d.size
    for g, nominal in ((d.g_lo, 10e-6), (d.g_hi, 100e-6)):
        rel = g / nominal - 1.0
        assert abs(rel.mean()) < 0.05 * z_bound(n)
        assert abs(rel.std() - 0.05) < 5 * 0.05 / np.sqrt(2 * n)


def test_huge_device_to_device_spread_keeps_windows_valid():
    p = DeviceParams(g_min=10e-6, g_max=100e-6, d2d_sigma=5.0)
    d = make(p, shape=(100, 100))
    assert np.all(d.g_lo >= 0.0)
    assert np.all(d.g_hi - d.g_lo >= 0.01 * 90e-6 * (1 - 1e-12))


def test_stuck_fractions_and_stuck_devices_never_move():
    p = DeviceParams(p_stuck_min=0.1, p_stuck_max=0.05, prog_noise=1e-6)
    d = make(p, shape=(200, 100))
    n = d.size
    for mask, prob in ((d.stuck_min, 0.1), (d.stuck_max, 0.05)):
        frac = mask.mean()
        assert abs(frac - prob) < 5 * np.sqrt(prob * (1 - prob) / n)
    assert not np.any(d.stuck_min & d.stuck_max)
    assert np.array_equal(d.stuck, d.stuck_min | d.stuck_max)
    rng = np.random.default_rng(9)
    for _ in range(3):
        d.write(rng.uniform(-1e-4, 2e-4, d.shape))
        assert np.all(d.g[d.stuck_min] == 1e-6)
        assert np.all(d.g[d.stuck_max] == 100e-6)
    assert d.set_exact(50e-6) == n - np.count_nonzero(d.stuck)
    assert np.all(d.g[d.stuck_max] == 100e-6)


# ------------------------------------------------------------- reproducibility
def full_history(seed: int):
    p = DeviceParams(
        n_levels=32,
        prog_noise=0.02,
        prog_noise_mode="relative",
        read_noise=0.02,
        d2d_sigma=0.1,
        p_stuck_min=0.02,
        p_stuck_max=0.02,
        drift_nu=0.05,
        drift_nu_sigma=0.01,
    )
    d = make(p, shape=(16, 8), seed=seed)
    d.write(np.linspace(0, 1e-4, 128).reshape(16, 8))
    d.advance_time(100.0)
    return [d.g_lo, d.g_hi, d.stuck, d.nu, d.g, d.conductance(), d.read_back()]


def test_same_seed_same_devices_bit_for_bit():
    a, b = full_history(42), full_history(42)
    for x, y in zip(a, b, strict=True):
        assert x.tobytes() == y.tobytes()
    c = full_history(43)
    assert not np.array_equal(a[4], c[4])


# ------------------------------------------------------------------- drift
def test_drift_follows_power_law_exactly():
    p = DeviceParams(drift_nu=0.1, drift_t0=2.0)
    d = make(p, g_init=80e-6)
    g0 = d.g.copy()
    assert np.array_equal(d.conductance(), g0)
    assert np.array_equal(d.conductance(1.5), g0)  # younger than t0
    for t in (2.0, 10.0, 1e4):
        assert np.allclose(d.conductance(t), g0 * (t / 2.0) ** -0.1, rtol=1e-14)
    d.advance_time(1e4)
    assert np.allclose(d.conductance(), g0 * 5e3**-0.1, rtol=1e-14)
    assert np.array_equal(d.g, g0)  # the programmed value is kept


def test_drift_clock_restarts_on_write_and_floors_at_g_lo():
    p = DeviceParams(g_min=20e-6, drift_nu=0.5, drift_t0=1.0)
    d = make(p, shape=(1, 2), g_init=80e-6)
    d.advance_time(100.0)
    mask = np.array([[True, False]])
    d.set_exact(80e-6, mask)
    d.advance_time(4.0)
    g = d.conductance()
    assert g[0, 0] == pytest.approx(80e-6 * 4.0**-0.5, rel=1e-14)
    assert g[0, 1] == 20e-6  # 80 uS * 104**-0.5 is below g_lo


def test_drift_exponent_spread_and_stuck_devices_do_not_drift():
    p = DeviceParams(drift_nu=0.1, drift_nu_sigma=0.02, p_stuck_max=0.1)
    d = make(p, shape=(200, 100), g_init=50e-6)
    work = ~d.stuck
    nu = d.nu[work]
    assert abs(nu.mean() - 0.1) < 0.02 * z_bound(nu.size)
    assert abs(nu.std() - 0.02) < 5 * 0.02 / np.sqrt(2 * nu.size)
    assert np.all(d.nu[d.stuck] == 0.0)
    g = d.conductance(1e3)
    assert np.array_equal(g[d.stuck], d.g[d.stuck])
    assert np.allclose(g[work], 50e-6 * 1e3 ** -d.nu[work], rtol=1e-14)


def test_advance_time_checks_dt():
    d = make()
    with pytest.raises(ParameterError, match="'dt'"):
        d.advance_time(-1.0)
    d.advance_time(2.5)
    assert d.time == 2.5
