"""Matrices placed on and tiled over physical arrays."""

import numpy as np
import pytest

from crossbar.array import ArrayParams
from crossbar.converters import ADC, DAC, quantize_array
from crossbar.device import DeviceParams
from crossbar.differential import DifferentialMapping
from crossbar.programming import GateVoltageScheme, IncrementalPulses
from crossbar.read_kernel import matvec
from crossbar.tiling import Chip
from crossbar.validation import ParameterError

DEV = DeviceParams(g_min=1e-6, g_max=101e-6)


def _chip(rows=8, cols=6, device=DEV, seed=0, **kw):
    return Chip(
        ArrayParams(rows=rows, cols=cols, **kw), device, np.random.default_rng(seed)
    )


@pytest.mark.parametrize("layout", ["row_pairs", "column_pairs"])
def test_tiled_and_untiled_products_agree(layout):
    rng = np.random.default_rng(1)
    w = rng.uniform(-0.9, 0.9, size=(11, 13))
    u = rng.uniform(-1, 1, size=(4, 13))
    mapping = DifferentialMapping(layout=layout, g_unit=100e-6)
    small = _chip(rows=8, cols=6)
    big = _chip(rows=64, cols=64)
    m_small = small.map_matrix(w.shape, mapping)
    m_big = big.map_matrix(w.shape, mapping)
    assert len(m_small.tiles) > 1 and len(m_big.tiles) == 1
    m_small.program(w)
    m_big.program(w)
    np.testing.assert_allclose(m_small.matvec(u), u @ w.T, atol=1e-12)
    np.testing.assert_allclose(m_big.matvec(u), m_small.matvec(u), atol=1e-12)
    np.testing.assert_allclose(m_small.weights(noisy=False), w, atol=1e-12)


def test_tiles_cover_the_matrix_once():
    chip = _chip(rows=8, cols=6)
    m = chip.map_matrix((11, 13), DifferentialMapping(layout="row_pairs"))
    seen = np.zeros((11, 13), dtype=int)
    for t in m.tiles:
        seen[t.out_start : t.out_stop, t.in_start : t.in_stop] += 1
        assert t.n_in <= 4 and t.n_out <= 6
    assert np.all(seen == 1)
    assert len(chip.arrays) == len(m.tiles)


def test_placement_at_corners_and_overlap_errors():
    chip = _chip(rows=128, cols=64)
    lstm = chip.map_matrix((60, 17), corner=(0, 0), array=0, name="lstm")
    head = chip.map_matrix((1, 16), corner=(0, 60), array=0, name="head")
    assert len(chip.arrays) == 1
    with pytest.raises(ParameterError, match="overlaps matrix 'lstm'"):
        chip.map_matrix((4, 4), corner=(30, 50), array=0, name="x")
    with pytest.raises(ParameterError, match="does not fit"):
        chip.map_matrix((10, 4), corner=(0, 60), array=0, name="y")
    rng = np.random.default_rng(2)
    w1 = rng.uniform(-0.5, 0.5, size=(60, 17))
    w2 = rng.uniform(-0.5, 0.5, size=(1, 16))
    lstm.program(w1)
    head.program(w2)
    u1 = rng.uniform(-1, 1, size=(3, 17))
    u2 = rng.uniform(-1, 1, size=(3, 16))
    np.testing.assert_allclose(lstm.matvec(u1), u1 @ w1.T, atol=1e-12)
    np.testing.assert_allclose(head.matvec(u2), u2 @ w2.T, atol=1e-12)


def test_bias_rows_at_their_own_voltage():
    chip = _chip(rows=16, cols=8)
    rng = np.random.default_rng(3)
    w = rng.uniform(-0.4, 0.4, size=(3, 5))
    scale = np.array([0.2, 0.2, 0.2, 0.1, 0.1])
    m = chip.map_matrix(w.shape, in_scale=scale)
    m.program(w)
    u = rng.uniform(-1, 1, size=(2, 5))
    np.testing.assert_allclose(m.matvec(u), u @ w.T, atol=1e-12)
    np.testing.assert_allclose(m.weights(noisy=False), w, atol=1e-12)


def test_adc_acts_per_tile_before_the_digital_sum():
    fs = 30e-6
    chip = _chip(rows=4, cols=4, adc=ADC(bits=4, i_full_scale=fs))
    w = np.full((1, 4), 0.9)
    m = chip.map_matrix(w.shape)
    m.program(w)
    u = np.ones((1, 4))
    # Each tile holds two inputs: 2 * 0.2 V * 90 uS = 36 uS saturates at 30 uS.
    got = m.matvec(u, noisy=False)
    assert got[0, 0] == pytest.approx(2 * fs / (100e-6 * 0.2))


def test_programming_noise_reaches_the_product():
    dev = DeviceParams(g_min=1e-6, g_max=101e-6, prog_noise=2e-6)
    chip = _chip(rows=64, cols=64, device=dev)
    w = np.zeros((20, 30))
    m = chip.map_matrix(w.shape)
    m.program(w)
    err = m.weights(noisy=False) - w
    # Weight noise of a pair: sqrt(2) * sigma / g_unit (clipped at the window
    # floor for the negative half, so only check the order of magnitude).
    assert 0.005 < err.std() < 0.03


def test_gate_scheme_in_situ_update_moves_weights():
    dev = DeviceParams.li2019(prog_noise=0.0)
    chip = _chip(rows=16, cols=8, device=dev)
    scheme = GateVoltageScheme()
    m = chip.map_matrix((3, 4), DifferentialMapping(reference="center"))
    m.program(np.zeros((3, 4)), scheme)
    np.testing.assert_allclose(m.weights(noisy=False), 0.0, atol=1e-12)
    dw = np.array([[0.1, -0.2, 0.0, 0.3]] * 3)
    pulses = m.apply_update(dw, scheme)
    assert pulses > 0
    np.testing.assert_allclose(m.weights(noisy=False), dw, atol=1e-9)


def test_incremental_update_moves_weights_by_steps():
    chip = _chip(rows=16, cols=8)
    scheme = IncrementalPulses(dg_up=1e-6, dg_down=1e-6, soft_bounds=False)
    m = chip.map_matrix((2, 3), DifferentialMapping(reference="center"))
    m.program(np.zeros((2, 3)))
    dw = np.array([[0.1, -0.04, 0.0], [0.02, 0.0, -0.1]])
    m.apply_update(dw, scheme)
    # Each device moves by round(dw * g_unit / 2 / 1 uS) steps of 1 uS.
    steps = np.rint(dw * 100e-6 / 2 / 1e-6)
    np.testing.assert_allclose(m.weights(noisy=False), 2 * steps * 1e-6 / 100e-6)


def test_same_seed_same_conductances():
    def build(seed):
        dev = DeviceParams(g_min=1e-6, g_max=101e-6, prog_noise=1e-6, read_noise=0.01)
        chip = _chip(rows=8, cols=6, device=dev, seed=seed)
        m = chip.map_matrix((7, 9))
        m.program(np.linspace(-0.5, 0.5, 63).reshape(7, 9))
        return m.conductance_blocks(), m.matvec(np.ones((2, 9)))

    a, ya = build(5)
    b, yb = build(5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert np.array_equal(ya, yb)


def _tile_variance(plan, u):
    """Per-output read-noise variance of a tile-by-tile plan, from its arrays."""
    var = np.zeros((u.shape[0], plan.n_out))
    n_t, n_k, n_c = plan.g.shape
    for t in range(n_t):
        volts = np.zeros((u.shape[0], n_k))
        for k in range(n_k):
            if plan.in_idx[t, k] >= 0:
                volts[:, k] = u[:, plan.in_idx[t, k]] * plan.in_scale[t, k]
        volts = quantize_array(volts, plan.dac_steps, plan.dac_full_scale)
        ch_var = (volts**2) @ plan.q[t]
        for c in range(n_c):
            if plan.ch_out[t, c] >= 0:
                var[:, plan.ch_out[t, c]] += plan.out_scale**2 * ch_var[:, c]
    return var


@pytest.mark.parametrize("layout", ["row_pairs", "column_pairs"])
@pytest.mark.parametrize("r_wire,dac_bits", [(0.0, None), (2.0, None), (0.0, 5)])
def test_linear_plan_folds_tiles_exactly(layout, r_wire, dac_bits):
    # With an ideal ADC the plan is one matrix; it must give the product and
    # the noise variance of the tile-by-tile plan of the same devices, DAC
    # quantization and clipping included.
    dev = DeviceParams(g_min=1e-6, g_max=101e-6, prog_noise=1e-6, read_noise=0.03)
    dac = DAC(bits=dac_bits, v_max=0.2)
    chip = _chip(rows=8, cols=6, device=dev, r_row=r_wire, r_col=r_wire, dac=dac)
    rng = np.random.default_rng(7)
    mapping = DifferentialMapping(layout=layout, g_unit=100e-6)
    scale = rng.uniform(0.1, 0.3, size=13)
    m = chip.map_matrix((11, 13), mapping, in_scale=scale)
    m.program(rng.uniform(-0.3, 0.3, size=(11, 13)))
    assert len(m.tiles) > 1
    u = rng.uniform(-1.5, 1.5, size=(5, 13))  # some rows beyond the DAC range
    for noisy in (False, True):
        linear, tiled = m.plan(noisy=noisy), m._tile_plan(noisy=noisy)
        assert linear.linear and not tiled.linear
        assert linear.noisy == tiled.noisy == noisy
        np.testing.assert_allclose(
            matvec(linear._replace(noisy=False), u),
            matvec(tiled._replace(noisy=False), u),
            rtol=1e-12,
            atol=1e-12,
        )
    v = np.clip(u * scale, -0.2, 0.2)
    if dac_bits:
        v = np.rint(v / 0.2 * 15) / 15 * 0.2
    var = (v / scale) ** 2 @ m.plan(noisy=True).q[0]
    np.testing.assert_allclose(var, _tile_variance(tiled, u), rtol=1e-12)


def test_plans_are_kept_until_a_device_changes():
    chip = _chip(rows=16, cols=8)
    m = chip.map_matrix((3, 4))
    m.program(np.zeros((3, 4)))
    first = m.plan()
    assert m.plan() is first
    m.program(np.full((3, 4), 0.5))
    second = m.plan()
    assert second is not first
    np.testing.assert_allclose(matvec(second, np.ones((1, 4))), 2.0, atol=1e-12)
