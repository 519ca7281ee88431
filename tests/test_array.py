"""One physical array: reads, converters, read-back, programming hooks."""

import numpy as np
import pytest

from crossbar.array import ArrayParams, CrossbarArray
from crossbar.converters import ADC, DAC
from crossbar.device import DeviceParams
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


def test_dac_and_adc_quantize_and_saturate():
    rng = np.random.default_rng(2)
    dac = DAC(bits=4, v_max=0.2)
    adc = ADC(bits=6, i_full_scale=20e-6)
    arr = _array(rng, dac=dac, adc=adc)
    v = rng.uniform(-0.3, 0.3, size=(20, 12))
    got = arr.read(v)
    # Reference: DAC, ideal product, ADC, done with plain numpy.
    v_q = np.clip(v, -0.2, 0.2)
    v_q = np.rint(v_q / 0.2 * 7) / 7 * 0.2
    i = np.clip(v_q @ arr.g, -20e-6, 20e-6)
    i = np.rint(i / 20e-6 * 31) / 31 * 20e-6
    np.testing.assert_allclose(got, i, rtol=1e-12, atol=1e-18)
    assert np.abs(got).max() <= 20e-6 * (1 + 1e-12)
    assert len(np.unique(np.round(got / (20e-6 / 31)))) <= 63


def test_read_noise_fresh_every_read_and_seeded():
    dev = DeviceParams(g_min=1e-6, g_max=100e-6, read_noise=0.05)
    arr = _array(np.random.default_rng(3), device=dev)
    v = np.full((2000, 12), 0.1)
    a = arr.read(v)
    b = arr.read(v)
    assert not np.array_equal(a, b)
    # Column current std = read_noise * sqrt(sum_i v_i^2 G_ij^2).
    expect = 0.05 * np.sqrt((0.1**2 * arr.g**2).sum(axis=0))
    np.testing.assert_allclose(a.std(axis=0), expect, rtol=0.1)
    np.testing.assert_allclose(a.mean(axis=0), 0.1 * arr.g.sum(axis=0), rtol=0.01)

    arr1 = _array(np.random.default_rng(9), device=dev)
    arr2 = _array(np.random.default_rng(9), device=dev)
    assert np.array_equal(arr1.read(v[:3]), arr2.read(v[:3]))


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
