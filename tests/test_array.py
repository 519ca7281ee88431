"""One physical array: reads, converters, read-back, programming hooks."""

import copy

import numpy as np
import pytest

from crossbar.array import ArrayParams, CrossbarArray
from crossbar.converters import ADC, DAC
from crossbar.device import DeviceParams
from crossbar.gaussian import fill_normal, new_state
from crossbar.validation import ParameterError


def _array(rng, **kw):
    dev = kw.pop("device", DeviceParams(g_min=1e-6, g_max=100e-6))
    arr = CrossbarArray(ArrayParams(rows=12, cols=7, **kw), dev, rng)
    arr.devices.set_exact(rng.uniform(1e-6, 100e-6, size=(12, 7)))
    return arr


def test_ideal_read_is_vg():
    rng = np.random.default_rng(0)
    arr = _array(rng)
    v = rng.uniform(-0.2, 0.2, size=(5, 12))
    np.testing.assert_allclose(arr.read(v), v @ arr.g, rtol=1e-13)
    np.testing.assert_allclose(arr.read(v[0]), v[0] @ arr.g, rtol=1e-13)


def test_transposed_read_is_vgt():
    rng = np.random.default_rng(1)
    arr = _array(rng)
    v = rng.uniform(-0.2, 0.2, size=(3, 7))
    np.testing.assert_allclose(arr.read_transposed(v), v @ arr.g.T, rtol=1e-13)


def _dac(v, bits, v_max):
    """The DAC written out: clip, then round to 2**(bits-1) - 1 steps a side."""
    n = 2 ** (bits - 1) - 1
    v = np.clip(v, -v_max, v_max)
    return np.rint(v / v_max * n) / n * v_max


def _adc(i, bits, i_fs):
    n = 2 ** (bits - 1) - 1
    i = np.clip(i, -i_fs, i_fs)
    return np.rint(i / i_fs * n) / n * i_fs


def test_dac_and_adc_quantize_and_saturate():
    rng = np.random.default_rng(2)
    dac = DAC(bits=4, v_max=0.2)
    adc = ADC(bits=6, i_full_scale=20e-6)
    arr = _array(rng, dac=dac, adc=adc)
    v = rng.uniform(-0.3, 0.3, size=(20, 12))
    v[0, :4] = [0.2 / 14, 3 * 0.2 / 14, -0.2, 0.0]  # exact rounding ties, edges
    got = arr.read(v, noisy=False)
    # Reference: DAC, float64 product, ADC, done with plain numpy.
    expect = _adc(_dac(v, 4, 0.2) @ arr.g, 6, 20e-6)
    np.testing.assert_array_equal(got, expect)
    assert np.abs(got).max() <= 20e-6 * (1 + 1e-12)
    assert len(np.unique(np.round(got / (20e-6 / 31)))) <= 63
    # Without ADC the product itself is bit for bit numpy's.
    plain = _array(np.random.default_rng(2), dac=DAC(bits=8, v_max=0.2))
    np.testing.assert_array_equal(plain.read(v, noisy=False), _dac(v, 8, 0.2) @ plain.g)
    # The transposed read goes through the same converters.
    vt = rng.uniform(-0.3, 0.3, size=(9, 7))
    expect_t = _adc(_dac(vt, 4, 0.2) @ np.ascontiguousarray(arr.g.T), 6, 20e-6)
    np.testing.assert_array_equal(arr.read_transposed(vt, noisy=False), expect_t)


def test_read_accepts_any_layout_and_batch():
    rng = np.random.default_rng(12)
    arr = _array(rng, dac=DAC(bits=8, v_max=0.2), adc=ADC(bits=8, i_full_scale=1e-4))
    v = rng.uniform(-0.2, 0.2, size=(5, 12))
    expect = arr.read(v, noisy=False)
    np.testing.assert_array_equal(arr.read(np.asfortranarray(v), noisy=False), expect)
    wide = np.zeros((5, 24))
    wide[:, ::2] = v
    np.testing.assert_array_equal(arr.read(wide[:, ::2], noisy=False), expect)
    np.testing.assert_array_equal(arr.read(v[2].tolist(), noisy=False), expect[2])
    assert arr.read(np.zeros((0, 12))).shape == (0, 7)
    assert arr.read(v[0]).shape == (7,)


def _noise_reference(arr, v, read):
    """``read()``, and the same read rebuilt from the array's generator.

    The array takes one raw 64-bit draw per noisy read from its generator and
    seeds :mod:`crossbar.gaussian` with it; the normals fill (batch, cols) in
    row-major order and scale with sigma * sqrt(sum_k V_k**2 G_k**2).
    """
    bits = copy.deepcopy(arr.rng.bit_generator)
    got = read()
    z = np.empty_like(got)
    fill_normal(new_state(bits.random_raw()), z)
    return got, z


def test_noisy_read_is_the_clean_read_plus_seeded_column_noise():
    sigma = 0.05
    dev = DeviceParams(g_min=1e-6, g_max=100e-6, read_noise=sigma)
    arr = _array(np.random.default_rng(3), device=dev, dac=DAC(bits=8, v_max=0.2))
    v = np.random.default_rng(4).uniform(-0.2, 0.2, size=(6, 12))
    clean = arr.read(v, noisy=False)
    got, z = _noise_reference(arr, v, lambda: arr.read(v))
    vq = _dac(v, 8, 0.2)
    std = sigma * np.sqrt((vq**2) @ arr.g**2)
    # The variance is summed in float32: 1e-7 relative on the noise.
    np.testing.assert_allclose(got - clean, std * z, rtol=1e-6, atol=0)
    # Transposed: the variance runs over the columns of G.
    vt = np.random.default_rng(5).uniform(-0.2, 0.2, size=(4, 7))
    clean_t = arr.read_transposed(vt, noisy=False)
    got_t, z_t = _noise_reference(arr, vt, lambda: arr.read_transposed(vt))
    std_t = sigma * np.sqrt((_dac(vt, 8, 0.2) ** 2) @ (arr.g.T) ** 2)
    np.testing.assert_allclose(got_t - clean_t, std_t * z_t, rtol=1e-6, atol=0)


def test_read_noise_statistics_match_the_device_law():
    sigma = 0.05
    dev = DeviceParams(g_min=1e-6, g_max=100e-6, read_noise=sigma)
    arr = _array(np.random.default_rng(3), device=dev)
    v = np.random.default_rng(6).uniform(-0.2, 0.2, size=12)
    n = 20_000
    reads = np.concatenate([arr.read(np.tile(v, (n // 4, 1))) for _ in range(4)])
    # Column current: mean V @ G, variance sum_k V_k^2 (sigma G_k)^2.
    mean = v @ arr.g
    var = (v**2) @ (sigma * arr.g) ** 2
    se_mean = np.sqrt(var / n)
    assert np.all(np.abs(reads.mean(axis=0) - mean) < 5 * se_mean)
    rel_var = reads.var(axis=0, ddof=1) / var - 1
    assert np.all(np.abs(rel_var) < 5 * np.sqrt(2 / (n - 1)))
    # Columns are independent.
    corr = np.corrcoef(reads.T)[np.triu_indices(7, 1)]
    assert np.all(np.abs(corr) < 5 / np.sqrt(n))


def test_read_noise_fresh_every_read_and_seeded():
    dev = DeviceParams(g_min=1e-6, g_max=100e-6, read_noise=0.05)
    arr = _array(np.random.default_rng(3), device=dev)
    v = np.full((3, 12), 0.1)
    a = arr.read(v)
    b = arr.read(v)
    assert not np.array_equal(a, b)
    assert not np.array_equal(a[0], a[1])  # fresh noise for every input vector

    arr1 = _array(np.random.default_rng(9), device=dev)
    arr2 = _array(np.random.default_rng(9), device=dev)
    np.random.seed(1)  # noqa: NPY002 - global generators play no part
    first = [arr1.read(v), arr1.read_transposed(v[:, :7])]
    np.random.seed(2)  # noqa: NPY002
    second = [arr2.read(v), arr2.read_transposed(v[:, :7])]
    for x, y in zip(first, second, strict=True):
        np.testing.assert_array_equal(x, y)
    # Any bit generator works, also one with 32-bit raw draws.
    mt = [
        _array(np.random.Generator(np.random.MT19937(4)), device=dev).read(v)
        for _ in range(2)
    ]
    np.testing.assert_array_equal(mt[0], mt[1])


def test_ir_drop_read_noise_uses_the_device_conductances():
    sigma = 0.05
    dev = DeviceParams(g_min=1e-6, g_max=100e-6, read_noise=sigma)
    arr = _array(np.random.default_rng(10), device=dev, r_row=2.0, r_col=1.5)
    v = np.random.default_rng(11).uniform(-0.2, 0.2, size=(5, 12))
    clean = arr.read(v, noisy=False)
    np.testing.assert_allclose(clean, v @ arr.effective_conductance(), rtol=1e-13)
    got, z = _noise_reference(arr, v, lambda: arr.read(v))
    std = sigma * np.sqrt((v**2) @ arr.g**2)
    np.testing.assert_allclose(got - clean, std * z, rtol=1e-6, atol=0)


@pytest.mark.kernel
@pytest.mark.parametrize(
    "n_steps, full_scale",
    [
        (7.0, 0.2),  # the fast path
        (127.0, -0.2),  # quantizing, not saturating
        (float(2**63 - 1), 0.2),  # too many steps for the fast path
        (0.0, 0.2),  # clipping only
        (0.0, 0.0),  # ideal
    ],
)
@pytest.mark.parametrize("special", [False, True])
def test_converter_stages_match_quantize_symmetric_bit_for_bit(
    n_steps, full_scale, special
):
    from crossbar.array import _adc_stage, _dac_stage, _noisy_adc_stage
    from crossbar.converters import quantize_array

    rng = np.random.default_rng(13)
    x = rng.uniform(-0.3, 0.3, size=(4, 9))
    x[1, :2] = [0.0, -0.0]
    if special:
        # Exact rounding ties and a huge operand: these take the exact path.
        x[0, :3] = [0.5 * 0.2 / 7, -2.5 * 0.2 / 7, 1e30]
    x = x[:, ::-1]  # not contiguous

    def same(a, b):
        bits = f"i{b.itemsize}"
        np.testing.assert_array_equal(np.asarray(a).view(bits), b.view(bits))

    expect = quantize_array(x, n_steps, full_scale)
    if full_scale > 0.0:  # a DAC always saturates
        volts, u_sq, finite = _dac_stage(x, n_steps, full_scale, True)
        same(volts, expect)
        assert finite
        u = expect / full_scale
        same(u_sq, (u * u).astype(np.float32))
        # Any NaN or inf is reported (plain Python warns about the NaN made).
        for bad in (np.nan, np.inf, -np.inf):
            y = x.copy()
            y[2, 3] = bad
            with np.errstate(invalid="ignore"):
                assert not _dac_stage(y, n_steps, full_scale, False)[2]
    same(_adc_stage(np.ascontiguousarray(x), n_steps, full_scale), expect)
    # The noisy stage quantizes current + sqrt(var) * scale * z.
    var = rng.uniform(0.0, 1e-3, size=x.shape).astype(np.float32)
    z = np.empty(x.shape)
    fill_normal(new_state(21), z)
    noisy = np.ascontiguousarray(x) + np.sqrt(var).astype(np.float64) * 0.5 * z
    got = _noisy_adc_stage(
        np.ascontiguousarray(x), var, 0.5, np.uint64(21), n_steps, full_scale
    )
    same(got, quantize_array(noisy, n_steps, full_scale))


@pytest.mark.kernel
def test_level_index_near_rounding_ties():
    from crossbar.array import _TIE_TOL, _adc_stage, _fast_level, _fast_setup
    from crossbar.converters import quantize_array

    n_steps, fs = 127.0, 2.56e-3
    _, c, lo, hi, t_max = _fast_setup(n_steps, fs)
    assert _fast_level(0.5 * fs / n_steps, c, lo, hi, t_max)[1]  # a tie
    assert _fast_level(0.3 * fs / n_steps, c, lo, hi, t_max) == (0.0, False)
    assert _fast_level(2 * fs, c, lo, hi, t_max) == (n_steps, False)
    with np.errstate(invalid="ignore"):
        assert _fast_level(np.nan, c, lo, hi, t_max)[1]
        assert _fast_level(np.inf, c, lo, hi, t_max)[1]
    rng = np.random.default_rng(14)
    k = rng.integers(-130, 130, size=(6, 10)) + 0.5
    sign = rng.choice([-1.0, 1.0], size=k.shape)
    # Just outside the tolerance every index is decided by the multiply; just
    # inside, the whole batch is redone exactly. Both must be the reference.
    for offset in (1.01 * _TIE_TOL, 1e-5, 1e-3, 0.99 * _TIE_TOL, 1e-12, 0.0):
        x = (k + sign * offset) * (fs / n_steps)
        expect = quantize_array(x, n_steps, fs)
        np.testing.assert_array_equal(_adc_stage(x, n_steps, fs), expect)


def test_read_back_noise():
    dev = DeviceParams(g_min=1e-6, g_max=100e-6, read_noise=0.02)
    arr = _array(np.random.default_rng(4), device=dev)
    exact = arr.read_conductances(noisy=False)
    np.testing.assert_array_equal(exact, arr.g)
    noisy = np.stack([arr.read_conductances() for _ in range(400)])
    rel = noisy / exact - 1
    assert abs(rel.std() - 0.02) < 0.02 * 0.05


def test_program_writes_through_device_model():
    rng = np.random.default_rng(5)
    dev = DeviceParams(g_min=1e-6, g_max=100e-6, n_levels=5)
    arr = CrossbarArray(ArrayParams(rows=4, cols=3), dev, rng)
    target = rng.uniform(-50e-6, 200e-6, size=(4, 3))
    pulses = arr.program(target)
    assert pulses == 12
    levels = np.linspace(1e-6, 100e-6, 5)
    assert np.all(np.min(np.abs(arr.g[..., None] - levels), axis=-1) < 1e-15)


def test_wrong_shapes_and_values_are_named():
    arr = _array(np.random.default_rng(6))
    with pytest.raises(ParameterError, match="'v'"):
        arr.read(np.ones((2, 11)))
    with pytest.raises(ParameterError, match="'v'"):
        arr.read(np.full(12, np.nan))
    with pytest.raises(ParameterError, match="'target'"):
        arr.program(np.ones((3, 3)))
    with pytest.raises(ParameterError, match="'r_row'"):
        ArrayParams(r_row=-1.0, r_col=1.0)
    with pytest.raises(ParameterError, match="'rows'"):
        ArrayParams(rows=0)


def test_ir_drop_read_solves_the_circuit():
    from crossbar.ir_drop import output_currents

    rng = np.random.default_rng(7)
    arr = _array(rng, r_row=2.0, r_col=1.5)
    v = rng.uniform(-0.2, 0.2, size=(4, 12))
    np.testing.assert_allclose(
        arr.read(v), output_currents(arr.g, v, 2.0, 1.5), rtol=1e-12
    )
    # The solution is kept until the conductances change.
    first = arr.effective_conductance()
    assert arr.effective_conductance() is first
    arr.program(arr.g * 0.9)
    assert not np.array_equal(arr.effective_conductance(), first)


def test_unused_edges_are_folded_exactly():
    from crossbar.ir_drop import effective_conductance

    rng = np.random.default_rng(8)
    dev = DeviceParams(g_min=0.0, g_max=300e-6)
    arr = CrossbarArray(ArrayParams(rows=20, cols=15, r_row=3.0, r_col=2.0), dev, rng)
    g = np.zeros((20, 15))
    g[3:11, 2:9] = rng.uniform(1e-6, 300e-6, size=(8, 7))
    g[5, 4] = 0.0  # a zero inside the used block stays in the circuit
    arr.devices.set_exact(g)
    full = effective_conductance(g, 3.0, 2.0)
    np.testing.assert_allclose(arr.effective_conductance(), full, rtol=1e-11, atol=0)


def test_transposed_read_with_wires_matches_the_mirrored_circuit():
    from crossbar.ir_drop import output_currents

    rng = np.random.default_rng(9)
    arr = _array(rng, r_row=1.0, r_col=4.0)
    v = rng.uniform(-0.2, 0.2, size=(3, 7))
    mirrored = arr.g.T[::-1, ::-1]
    expect = output_currents(mirrored, v[:, ::-1], 4.0, 1.0)[:, ::-1]
    np.testing.assert_allclose(arr.read_transposed(v), expect, rtol=1e-12)
    # Tends to V G.T with vanishing wires.
    thin = _array(np.random.default_rng(9), r_row=1e-9, r_col=1e-9)
    np.testing.assert_allclose(thin.read_transposed(v), v @ thin.g.T, rtol=1e-6)
