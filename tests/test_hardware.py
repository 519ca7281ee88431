"""Networks mapped onto crossbars."""

import numpy as np
import pytest

from crossbar.array import ArrayParams
from crossbar.device import DeviceParams
from crossbar.differential import DifferentialMapping
from crossbar.programming import GateVoltageScheme
from crossbar.tiling import Chip
from crossbar.validation import ParameterError
from lstm_hw import GRU, LSTM, Dense
from lstm_hw.hardware import HardwareNetwork
from lstm_hw.network import Network

IDEAL = DeviceParams(g_min=0.0, g_max=400e-6)


def _net(cell="lstm", variant="vanilla", n_x=3, hidden=5, out=2, seed=0):
    rng = np.random.default_rng(seed)
    rnn = (
        LSTM(n_x, hidden, variant=variant, rng=rng)
        if cell == "lstm"
        else GRU(n_x, hidden, rng=rng)
    )
    return Network(rnn, Dense(hidden, out, activation="sigmoid", rng=rng), "all")


def _hw(net, device=IDEAL, rows=128, cols=64, placement="paper", **kw):
    chip = Chip(ArrayParams(rows=rows, cols=cols), device, np.random.default_rng(1))
    mapping = DifferentialMapping(g_unit=100e-6, reference="center")
    return HardwareNetwork(net, chip, mapping, placement=placement, **kw)


@pytest.mark.parametrize(
    "cell,variant",
    [("lstm", "vanilla"), ("lstm", "peephole"), ("lstm", "cifg"), ("gru", "vanilla")],
)
@pytest.mark.parametrize("bias_rows", [1, 3])
def test_noise_free_hardware_forward_equals_software(cell, variant, bias_rows):
    net = _net(cell, variant)
    x = np.random.default_rng(2).uniform(-2, 2, size=(4, 6, 3))
    y_soft = net.forward(x)
    hw = _hw(net, bias_rows=bias_rows, bias_voltage=0.1, x_scale=2.0)
    hw.program()
    y_hw = net.forward(x, plans=hw.plans())
    np.testing.assert_allclose(y_hw, y_soft, atol=1e-10)
    # Reading the weights back gives the software weights again.
    before = net.combined_matrices()
    hw.load_into_network(noisy=False)
    for k, m in net.combined_matrices().items():
        np.testing.assert_allclose(m, before[k], atol=1e-12)


def test_paper_placement_side_by_side_then_stacked_then_error():
    hw = _hw(_net(n_x=1, hidden=15, out=1))
    assert hw.matrices["head"].tiles[0].col == 60
    assert hw.matrices["head"].tiles[0].row == 0
    hw = _hw(_net(n_x=12, hidden=14, out=9))
    assert hw.matrices["head"].tiles[0].row == 54
    assert hw.matrices["head"].tiles[0].col == 0
    with pytest.raises(ParameterError, match="placement 'paper'"):
        _hw(_net(n_x=50, hidden=14, out=9))
    hw = _hw(_net(n_x=50, hidden=14, out=9), placement="tiled")
    assert len(hw.matrices["rnn"].tiles) == 2


def test_insitu_update_reaches_the_read_back_weights():
    net = _net()
    dev = DeviceParams.li2019(prog_noise=0.0)
    hw = _hw(net, device=dev)
    scheme = GateVoltageScheme()
    hw.program(scheme)
    hw.load_into_network(noisy=False)
    start = net.combined_matrices()
    delta = {k: np.full_like(m, 0.01) for k, m in start.items()}
    pulses = hw.apply_update(delta, scheme)
    assert pulses > 0 and hw.pulses >= pulses
    hw.load_into_network(noisy=False)
    for k, m in net.combined_matrices().items():
        np.testing.assert_allclose(m - start[k], 0.01, atol=1e-9)


def test_programming_noise_changes_outputs_reproducibly():
    dev = DeviceParams.li2019(prog_noise=4e-6)
    x = np.random.default_rng(3).uniform(0, 1, size=(2, 5, 3))

    def once():
        net = _net()
        hw = _hw(net, device=dev)
        hw.program()
        return net.forward(x, plans=hw.plans(), seed=7), net.forward(x)

    a, soft = once()
    b, _ = once()
    assert np.array_equal(a, b)
    assert 1e-4 < np.abs(a - soft).max() < 0.5


@pytest.mark.parametrize("placement,bias_rows", [("paper", 1), ("tiled", 3)])
def test_update_reaches_each_device_as_the_pair_rule_says(placement, bias_rows):
    # Slow reference: share the bias change among the bias rows, then give
    # each pair +-dw g_unit / 2 in the conductance units of its input row.
    n_x = 40 if placement == "tiled" else 20
    net = _net(n_x=n_x, hidden=6, out=3)
    hw = _hw(net, rows=64, cols=32, placement=placement, bias_rows=bias_rows)
    assert len(hw.chip.arrays) == (1 if placement == "paper" else 3)
    hw.program()
    rng = np.random.default_rng(5)
    combined = net.combined_matrices()
    delta = {k: rng.normal(0, 0.05, m.shape) for k, m in combined.items()}
    expected = [np.zeros(a.shape) for a in hw.chip.arrays]
    for k in ("rnn", "head"):
        m, d = hw.matrices[k], delta[k]
        shared = np.repeat(d[:, -1:] / bias_rows, bias_rows, axis=1)
        d = np.concatenate([d[:, :-1], shared], axis=1)
        half = 0.5 * d * (m.v_read / m.in_scale)[None, :] * m.g_unit
        for t in m.tiles:
            sub = (slice(t.out_start, t.out_stop), slice(t.in_start, t.in_stop))
            block = m.mapping.assemble(half[sub], -half[sub])
            rows, cols = block.shape
            expected[t.array][t.row : t.row + rows, t.col : t.col + cols] += block
    flat = np.concatenate([delta[k].ravel() for k in ("rnn", "head")])
    seen = set()
    for k, idx, src, coef in hw._update_plan():
        assert np.all(np.diff(idx) > 0)  # ascending: the order of a masked write
        change = np.zeros(hw.chip.arrays[k].shape)
        change.ravel()[idx] = coef * flat[src]
        np.testing.assert_allclose(change, expected[k], rtol=1e-12, atol=1e-24)
        seen.add(k)
    assert seen == {k for k, e in enumerate(expected) if np.any(e != 0)}


@pytest.mark.parametrize("placement", ["paper", "tiled"])
def test_initialize_starts_every_weight_at_zero(placement):
    # The paper's start of in-situ training: each device of a matrix RESET and
    # SET at the initial gate voltage; devices outside the matrices untouched.
    net = _net()
    hw = _hw(net, DeviceParams.li2019(prog_noise=0.0), placement=placement)
    scheme = GateVoltageScheme()
    before = hw.chip.read_back(noisy=False)
    pulses = hw.initialize(scheme)
    used = hw.device_masks()
    assert pulses == 2 * sum(u.sum() for u in used) == hw.pulses
    for k, a in enumerate(hw.chip.arrays):
        g = a.devices.conductance()
        assert np.all(g[used[k]] == scheme.g_set(scheme.v_gate_initial))
        assert np.array_equal(g[~used[k]], before[k][~used[k]])
        assert np.all(hw.chip.gate_states[k].v_gate == scheme.v_gate_initial)
    assert all(np.all(w == 0.0) for w in hw.read_weights(noisy=False).values())


def test_initialize_spreads_weights_by_the_programming_noise():
    # Two devices of 4 uS noise per pair: sqrt(2) * 4 uS / g_unit per weight.
    net = _net(n_x=1, hidden=15, out=1)
    hw = _hw(net, DeviceParams.li2019(prog_noise=4e-6))
    hw.initialize(GateVoltageScheme())
    w = hw.read_weights(noisy=False)["rnn"]
    expected = np.sqrt(2) * 4e-6 / 100e-6
    assert abs(w.mean()) < 4 * expected / np.sqrt(w.size)
    assert w.std() == pytest.approx(expected, rel=0.1)


def test_initialize_with_one_shot_writes_and_open_scale():
    # Schemes without a gate state start from zero weights written once; a
    # mapping without g_unit takes its scale from the network's weights.
    net = _net()
    chip = Chip(ArrayParams(), IDEAL, np.random.default_rng(1))
    m = chip.map_matrix((4, 6), DifferentialMapping(g_unit=None), name="m")
    with pytest.raises(ParameterError, match="'w'"):
        m.initialize()
    w = np.random.default_rng(0).uniform(-2, 2, size=(4, 6))
    assert m.initialize(w=w) == 2 * 4 * 6
    assert np.all(m.weights(readback=chip.read_back(noisy=False)) == 0.0)
    other = Chip(ArrayParams(), IDEAL, np.random.default_rng(1))
    ref = other.map_matrix((4, 6), DifferentialMapping(g_unit=None), name="m")
    ref.program(w)
    assert m.g_unit == ref.g_unit
    hw = _hw(net, IDEAL)
    hw.initialize()
    assert all(np.all(w == 0.0) for w in hw.read_weights(noisy=False).values())
