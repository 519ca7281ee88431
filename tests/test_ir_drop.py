"""Exact IR drop against an independent dense circuit solve and physical laws."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossbar import ir_drop
from crossbar.ir_drop import (
    IRDropSolver,
    WireResistance,
    effective_conductance,
    node_voltages,
    output_currents,
)
from crossbar.validation import ParameterError

G_LOW, G_HIGH = 1e-6, 300e-6  # siemens

# -- reference: modified nodal analysis, node by node -------------------------


class _Circuit:
    """Resistors and voltage sources stamped one element at a time."""

    def __init__(self):
        self.nodes: dict[str, int] = {}
        self.conductances: list[tuple[str, str, float]] = []
        self.sources: list[tuple[str, object]] = []

    def node(self, name: str) -> int:
        return self.nodes.setdefault(name, len(self.nodes))

    def resistor(self, n1: str, n2: str, ohms: float) -> None:
        self.conductance(n1, n2, 1.0 / ohms)

    def conductance(self, n1: str, n2: str, siemens: float) -> None:
        self.node(n1)
        self.node(n2)
        self.conductances.append((n1, n2, siemens))

    def source(self, plus: str, volts) -> int:
        """Voltage source from ``plus`` to ground; returns its branch index."""
        self.node(plus)
        self.sources.append((plus, volts))
        return len(self.sources) - 1

    def matrix(self) -> np.ndarray:
        n, k = len(self.nodes), len(self.sources)
        a = np.zeros((n + k, n + k))
        for n1, n2, c in self.conductances:
            i, j = self.nodes[n1], self.nodes[n2]
            a[i, i] += c
            a[j, j] += c
            a[i, j] -= c
            a[j, i] -= c
        for b, (plus, _) in enumerate(self.sources):
            i = self.nodes[plus]
            a[i, n + b] = 1.0
            a[n + b, i] = 1.0
        return a

    def rhs(self, batch: int) -> np.ndarray:
        n = len(self.nodes)
        r = np.zeros((n + len(self.sources), batch))
        for b, (_, volts) in enumerate(self.sources):
            r[n + b] = volts
        return r


def crossbar_circuit(g, v, r_row, r_col, r_driver=0.0, r_sense=0.0):
    """The crossbar as a netlist; ``v`` has shape (batch, rows)."""
    rows, cols = g.shape
    c = _Circuit()
    inputs, outputs = [], []
    for i in range(rows):
        inputs.append(c.source(f"src{i}", v[:, i]))
        first = f"src{i}"
        if r_driver > 0:
            c.resistor(first, f"drv{i}", r_driver)
            first = f"drv{i}"
        c.resistor(first, f"r{i},0", r_row)
        for j in range(1, cols):
            c.resistor(f"r{i},{j - 1}", f"r{i},{j}", r_row)
        for j in range(cols):
            c.conductance(f"r{i},{j}", f"c{i},{j}", g[i, j])
    for j in range(cols):
        for i in range(1, rows):
            c.resistor(f"c{i - 1},{j}", f"c{i},{j}", r_col)
        c.resistor(f"c{rows - 1},{j}", f"end{j}", r_col)
        sense = f"end{j}"
        if r_sense > 0:
            c.resistor(sense, f"sa{j}", r_sense)
            sense = f"sa{j}"
        outputs.append(c.source(sense, np.zeros(v.shape[0])))
    return c, inputs, outputs


def _unpack(c, x, inputs, outputs, rows, cols):
    n = len(c.nodes)
    # A branch current flows from the source's + node through the source.
    out = x[n + np.array(outputs)].T
    src = -x[n + np.array(inputs)].T
    vr = np.stack([x[c.nodes[f"r{i},{j}"]] for i in range(rows) for j in range(cols)])
    vc = np.stack([x[c.nodes[f"c{i},{j}"]] for i in range(rows) for j in range(cols)])
    vr = vr.T.reshape(-1, rows, cols)
    vc = vc.T.reshape(-1, rows, cols)
    return out, src, vr, vc


def mna(g, v, r_row, r_col, r_driver=0.0, r_sense=0.0):
    """Output currents, source currents, row and column node voltages."""
    g = np.asarray(g, float)
    v = np.atleast_2d(np.asarray(v, float))
    c, inputs, outputs = crossbar_circuit(g, v, r_row, r_col, r_driver, r_sense)
    x = np.linalg.solve(c.matrix(), c.rhs(v.shape[0]))
    return _unpack(c, x, inputs, outputs, *g.shape)


def mna_refined(g, v, r_row, r_col, steps=3):
    """As :func:`mna`, with iterative refinement in extended precision."""
    g = np.asarray(g, float)
    v = np.atleast_2d(np.asarray(v, float))
    c, inputs, outputs = crossbar_circuit(g, v, r_row, r_col)
    a = c.matrix()
    b = c.rhs(v.shape[0])
    x = np.linalg.solve(a, b).astype(np.longdouble)
    a_l, b_l = a.astype(np.longdouble), b.astype(np.longdouble)
    for _ in range(steps):
        resid = (b_l - a_l @ x).astype(np.float64)
        x = x + np.linalg.solve(a, resid).astype(np.longdouble)
    return _unpack(c, x.astype(np.float64), inputs, outputs, *g.shape)


def rel(a, b) -> float:
    return float(np.abs(np.asarray(a) - b).max() / np.abs(b).max())


def _case(rows, cols, seed, batch=3):
    rng = np.random.default_rng(seed)
    g = rng.uniform(G_LOW, G_HIGH, (rows, cols))
    v = rng.uniform(-0.3, 0.3, (batch, rows))
    return g, v


CASES = [
    # rows, cols, r_row, r_col, r_driver, r_sense
    (2, 3, 0.5, 10.0, 0.0, 0.0),
    (8, 8, 2.5, 1.0, 20.0, 5.0),
    (5, 12, 1.0, 7.0, 3.0, 0.0),
    (16, 9, 10.0, 0.5, 0.0, 12.0),
    (9, 16, 0.5, 3.0, 1.0, 1.0),
    (1, 6, 2.0, 4.0, 1.0, 2.0),
    (6, 1, 2.0, 4.0, 1.0, 2.0),
    (1, 1, 2.0, 4.0, 1.0, 2.0),
]


# -- exactness against the reference ------------------------------------------


@pytest.mark.parametrize("rows,cols,r_row,r_col,r_driver,r_sense", CASES)
def test_matches_modified_nodal_analysis(rows, cols, r_row, r_col, r_driver, r_sense):
    g, v = _case(rows, cols, seed=rows * 100 + cols)
    kw = {"r_driver": r_driver, "r_sense": r_sense}
    i_ref, _, vr_ref, vc_ref = mna(g, v, r_row, r_col, r_driver, r_sense)
    g_eff = effective_conductance(g, r_row, r_col, **kw)
    assert rel(v @ g_eff, i_ref) < 1e-9
    # Small batches take the direct path when rows >= cols, large ones G_eff.
    assert rel(output_currents(g, v, r_row, r_col, **kw), i_ref) < 1e-9
    v_big = np.concatenate([v] * max(1, rows))
    i_big = np.concatenate([i_ref] * max(1, rows))
    assert rel(output_currents(g, v_big, r_row, r_col, **kw), i_big) < 1e-9
    vr, vc = node_voltages(g, v, r_row, r_col, **kw)
    scale = np.abs(v).max()
    assert np.abs(vr - vr_ref).max() < 1e-9 * scale
    assert np.abs(vc - vc_ref).max() < 1e-9 * scale


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 6),
    cols=st.integers(1, 6),
    r_row=st.floats(0.5, 10.0),
    r_col=st.floats(0.5, 10.0),
    seed=st.integers(0, 2**31),
    zeros=st.booleans(),
)
def test_random_small_circuits(rows, cols, r_row, r_col, seed, zeros):
    rng = np.random.default_rng(seed)
    g = rng.uniform(G_LOW, G_HIGH, (rows, cols))
    if zeros:
        g[rng.random((rows, cols)) < 0.3] = 0.0
    v = rng.uniform(-1.0, 1.0, (2, rows))
    i_ref = mna(g, v, r_row, r_col)[0]
    got = output_currents(g, v, r_row, r_col)
    assert np.abs(got - i_ref).max() <= 1e-9 * max(np.abs(i_ref).max(), 1e-30)


@pytest.mark.parametrize("r", [0.1, 1000.0])
@pytest.mark.parametrize("g_level", [1e-6, 300e-6])
@pytest.mark.parametrize("shape", [(12, 10), (10, 12)])
def test_ill_conditioned_regimes(r, g_level, shape):
    """0.1 ohm against 1 uS devices and 1000 ohm against 300 uS."""
    rng = np.random.default_rng(7)
    g = g_level * rng.uniform(0.5, 1.0, shape)
    v = rng.uniform(-0.2, 0.2, (2, shape[0]))
    i_ref = mna_refined(g, v, r, 1.5 * r)[0]
    assert rel(output_currents(g, v, r, 1.5 * r), i_ref) < 1e-9
    assert rel(v @ effective_conductance(g, r, 1.5 * r), i_ref) < 1e-9


def test_differential_pairs():
    """Rows 2k and 2k+1 carry +u_k and -u_k (one signed weight per row pair)."""
    rng = np.random.default_rng(3)
    g_pos = rng.uniform(G_LOW, G_HIGH, (8, 6))
    g_neg = rng.uniform(G_LOW, G_HIGH, (8, 6))
    g = np.empty((16, 6))
    g[0::2], g[1::2] = g_pos, g_neg
    u = rng.uniform(-0.2, 0.2, (4, 8))
    v = np.empty((4, 16))
    v[:, 0::2], v[:, 1::2] = u, -u
    i_ref = mna(g, v, 2.0, 3.0, 1.0, 1.0)[0]
    got = output_currents(g, v, 2.0, 3.0, r_driver=1.0, r_sense=1.0)
    assert rel(got, i_ref) < 1e-9
    # Without wires the pair computes u @ (G+ - G-).
    ideal = output_currents(g, v, 1e-9, 1e-9)
    assert rel(ideal, u @ (g_pos - g_neg)) < 1e-6


# -- consistency and physics --------------------------------------------------


def test_geff_is_the_linear_map():
    g, v = _case(11, 7, seed=5, batch=6)
    kw = {"r_driver": 2.0, "r_sense": 1.0}
    g_eff = effective_conductance(g, 3.0, 2.0, **kw)
    assert rel(output_currents(g, v, 3.0, 2.0, **kw), v @ g_eff) < 1e-12
    # Unit inputs pick out the rows of G_eff.
    assert rel(output_currents(g, np.eye(11), 3.0, 2.0, **kw), g_eff) < 1e-12


def test_linearity():
    g, v = _case(9, 13, seed=6, batch=2)
    i0 = output_currents(g, v[0], 1.0, 2.0)
    i1 = output_currents(g, v[1], 1.0, 2.0)
    i_mix = output_currents(g, 0.7 * v[0] - 2.5 * v[1], 1.0, 2.0)
    assert rel(i_mix, 0.7 * i0 - 2.5 * i1) < 1e-12
    assert i0.shape == (13,)


def test_tends_to_ideal_product_as_wires_vanish():
    g, _ = _case(20, 14, seed=8)
    devs = []
    for r in (1e-2, 1e-3, 1e-4):
        devs.append(rel(effective_conductance(g, r, r), g))
    # The deviation is first order in r.
    assert devs[0] / devs[1] == pytest.approx(10.0, rel=0.05)
    assert devs[1] / devs[2] == pytest.approx(10.0, rel=0.05)
    assert rel(effective_conductance(g, 1e-9, 1e-9), g) < 1e-8


def test_deviation_grows_with_wire_resistance_and_size():
    g = np.full((32, 16), 100e-6)
    devs = [rel(effective_conductance(g, r, r), g) for r in (0.1, 1.0, 10.0)]
    assert devs[0] < devs[1] < devs[2] < 1.0
    small = rel(effective_conductance(g[:8, :4], 1.0, 1.0), g[:8, :4])
    assert small < devs[1]


def test_bounds_from_the_maximum_principle():
    """0 <= G_eff, and a row delivers no more than its devices could."""
    g, _ = _case(10, 15, seed=9)
    g_eff = effective_conductance(g, 5.0, 5.0, r_driver=10.0)
    assert np.all(g_eff >= 0.0)
    assert np.all(g_eff.sum(axis=1) <= g.sum(axis=1))


def test_single_device_is_a_series_circuit():
    g = np.array([[200e-6]])
    expected = 1.0 / (2.0 + 3.0 + 1.0 / 200e-6 + 4.0 + 5.0)
    got = effective_conductance(g, 2.0, 4.0, r_driver=3.0, r_sense=5.0)
    assert got[0, 0] == pytest.approx(expected, rel=1e-14)


def test_zero_conductances_give_zero_output():
    g = np.zeros((5, 7))
    assert np.all(effective_conductance(g, 1.0, 1.0) == 0.0)
    g[2, 3] = 1e-4
    g_eff = effective_conductance(g, 1.0, 1.0)
    assert np.count_nonzero(g_eff) == 1
    assert g_eff[2, 3] == pytest.approx(1.0 / (4.0 + 1e4 + 3.0), rel=1e-13)


@pytest.mark.parametrize("shape", [(12, 7), (7, 12)])
def test_mirrored_circuit_by_reciprocity(shape):
    """Driving the columns from their sense end reads G_eff mirrored."""
    g, _ = _case(*shape, seed=10)
    g_eff = effective_conductance(g, 1.5, 4.0, r_driver=2.0, r_sense=3.0)
    mirrored = effective_conductance(
        g.T[::-1, ::-1], 4.0, 1.5, r_driver=3.0, r_sense=2.0
    )
    assert rel(mirrored[::-1, ::-1].T, g_eff) < 1e-12


@pytest.mark.parametrize("shape", [(9, 6), (6, 9)])
def test_kirchhoff_current_law(shape):
    g, v = _case(*shape, seed=11, batch=2)
    rr, rc, rd, rs = 2.0, 3.0, 4.0, 5.0
    vr, vc = node_voltages(g, v, rr, rc, r_driver=rd, r_sense=rs)
    out = output_currents(g, v, rr, rc, r_driver=rd, r_sense=rs)
    device = g * (vr - vc)
    source = (v - vr[:, :, 0]) / (rr + rd)
    scale = np.abs(out).max()
    # Each row's source feeds exactly its devices, each column's devices
    # feed exactly its output, so the totals agree.
    assert np.abs(source - device.sum(axis=2)).max() < 1e-10 * scale
    assert np.abs(out - device.sum(axis=1)).max() < 1e-10 * scale
    assert np.abs(source.sum(axis=1) - out.sum(axis=1)).max() < 1e-10 * scale
    assert np.abs(out - vc[:, -1, :] / (rc + rs)).max() < 1e-10 * scale


def test_sources_carried_forward_when_storage_is_short():
    """Without room for the transfer matrices every source is carried
    forward; the result is the same."""
    g, _ = _case(20, 6, seed=21)
    ch = ir_drop._orient(20, 6, WireResistance(1.0, 2.0))
    assert ir_drop._forward_rows(20, 6, 0) == 20
    assert ir_drop._forward_rows(20, 6, 10**9) == 6
    hybrid = ir_drop._sweep(g, ch)
    forward = ir_drop._sweep(g, ch, max_bytes=0)
    assert rel(forward, hybrid) < 1e-13
    assert rel(hybrid, mna(g, np.eye(20), 1.0, 2.0)[0]) < 1e-12


@pytest.mark.parametrize("shape", [(10, 6), (6, 10)])
def test_node_voltages_with_checkpointed_factors(shape):
    g, v = _case(*shape, seed=12)
    full = node_voltages(g, v, 1.0, 2.0)
    low_memory = node_voltages(g, v, 1.0, 2.0, max_factor_bytes=1)
    for a, b in zip(full, low_memory, strict=True):
        assert np.abs(a - b).max() < 1e-13
    vr, vc = node_voltages(g, v[0], 1.0, 2.0)
    assert vr.shape == vc.shape == shape
    assert np.abs(vr - full[0][0]).max() < 1e-13


# -- reusable solver ----------------------------------------------------------


@pytest.mark.parametrize("shape", [(14, 9), (9, 14)])
def test_solver_paths_stay_exact(shape):
    rng = np.random.default_rng(13)
    rows, cols = shape
    g = rng.uniform(G_LOW, G_HIGH, shape)
    kw = {"r_driver": 1.0, "r_sense": 2.0}
    solver = IRDropSolver(rows, cols, 1.5, 2.5, max_low_rank=6, **kw)
    assert solver.stores_factors

    def check(state):
        got = solver.effective_conductance(state)
        assert rel(got, effective_conductance(state, 1.5, 2.5, **kw)) < 1e-9
        return solver.last_path

    assert check(g) == "direct"
    assert check(g) == "cached"
    g1 = g.copy()
    g1[3, 4] *= 1.05
    g1[0, 0] = 0.0  # a device switched off
    g1[rows - 1, cols - 1] *= 0.3
    assert check(g1) == "low_rank"
    g2 = g1.copy()
    g2[0, 0] = G_HIGH  # switched on again, from zero
    g2[5, 2] *= 1.2
    assert check(g2) == "low_rank"
    assert check(g) == "cached"  # back to the factorized state
    g3 = g.copy()
    g3.flat[rng.choice(g.size, 7, replace=False)] *= 1.1
    assert check(g3) == "direct"  # more than max_low_rank changes
    g4 = g3.copy()
    g4[1, 1] *= 0.5
    assert check(g4) == "low_rank"  # relative to the new factorization
    assert solver.counts == {"cached": 2, "low_rank": 3, "direct": 2}
    v = rng.uniform(-0.2, 0.2, (3, rows))
    expected = output_currents(g4, v, 1.5, 2.5, **kw)
    assert rel(solver.output_currents(g4, v), expected) < 1e-9


def test_solver_in_ill_conditioned_regimes():
    rng = np.random.default_rng(14)
    for r, level in ((0.1, 1e-6), (0.1, 300e-6), (1000.0, 1e-6), (1000.0, 300e-6)):
        g = level * rng.uniform(0.5, 1.0, (10, 8))
        solver = IRDropSolver(10, 8, r, r)
        solver.effective_conductance(g)
        g2 = g.copy()
        g2[4, 4] *= 2.0
        g2[9, 0] *= 0.5
        got = solver.effective_conductance(g2)
        assert solver.last_path == "low_rank"
        assert rel(got, effective_conductance(g2, r, r)) < 1e-9


def test_solver_falls_back_when_low_rank_is_off_or_untrusted(monkeypatch):
    rng = np.random.default_rng(15)
    g = rng.uniform(G_LOW, G_HIGH, (8, 8))
    g2 = g.copy()
    g2[2, 2] *= 1.5
    for solver in (
        IRDropSolver(8, 8, 1.0, 1.0, max_low_rank=0),
        IRDropSolver(8, 8, 1.0, 1.0, max_factor_bytes=0),
    ):
        solver.effective_conductance(g)
        solver.effective_conductance(g2)
        assert solver.counts["direct"] == 2
    assert not IRDropSolver(8, 8, 1.0, 1.0, max_factor_bytes=0).stores_factors
    monkeypatch.setattr(ir_drop, "_MAX_CAPACITANCE_COND", 0.0)
    solver = IRDropSolver(8, 8, 1.0, 1.0)
    solver.effective_conductance(g)
    got = solver.effective_conductance(g2)
    assert solver.last_path == "direct"
    assert rel(got, effective_conductance(g2, 1.0, 1.0)) < 1e-12


def test_solver_is_not_fooled_by_in_place_changes():
    g, _ = _case(7, 5, seed=17)
    solver = IRDropSolver(7, 5, 1.0, 1.0)
    solver.effective_conductance(g)
    g[2, 3] *= 1.5  # the caller's array changes in place
    got = solver.effective_conductance(g)
    assert solver.last_path == "low_rank"
    assert rel(got, effective_conductance(g, 1.0, 1.0)) < 1e-12


def test_solver_returns_copies():
    g, _ = _case(6, 5, seed=16)
    solver = IRDropSolver(6, 5, 1.0, 1.0)
    first = solver.effective_conductance(g)
    first[:] = 0.0
    assert np.all(solver.effective_conductance(g) > 0.0)


# -- input checks -------------------------------------------------------------

GOOD_G = np.full((3, 4), 1e-4)
GOOD_V = np.full((2, 3), 0.1)


def _calls(g=GOOD_G, v=GOOD_V, r_row=1.0, r_col=1.0, r_driver=0.0, r_sense=0.0):
    kw = {"r_driver": r_driver, "r_sense": r_sense}
    return {
        "output_currents": lambda: output_currents(g, v, r_row, r_col, **kw),
        "effective_conductance": lambda: effective_conductance(g, r_row, r_col, **kw),
        "node_voltages": lambda: node_voltages(g, v, r_row, r_col, **kw),
        "solver": lambda: IRDropSolver(3, 4, r_row, r_col, **kw).output_currents(g, v),
    }


BAD = [
    ("r_row", {"r_row": 0.0}),
    ("r_row", {"r_row": -1.0}),
    ("r_row", {"r_row": float("nan")}),
    ("r_row", {"r_row": float("inf")}),
    ("r_col", {"r_col": 0.0}),
    ("r_col", {"r_col": float("nan")}),
    ("r_driver", {"r_driver": -1.0}),
    ("r_sense", {"r_sense": float("inf")}),
    ("g", {"g": -GOOD_G}),
    ("g", {"g": np.where(GOOD_G > 0, np.nan, 0.0)}),
    ("g", {"g": np.full(4, 1e-4)}),
    ("g", {"g": np.zeros((0, 4))}),
    ("v", {"v": np.full((2, 4), 0.1)}),  # length does not match the rows
    ("v", {"v": np.full((2, 2, 3), 0.1)}),
    ("v", {"v": np.array([[0.1, np.inf, 0.0]])}),
]


@pytest.mark.parametrize("name,bad", BAD)
def test_bad_inputs_name_the_argument(name, bad):
    for function, call in _calls(**bad).items():
        if name == "v" and function == "effective_conductance":
            continue  # takes no v
        with pytest.raises(ParameterError, match=f"parameter '{name}'"):
            call()


def test_bad_solver_arguments():
    with pytest.raises(ParameterError, match="'rows'"):
        IRDropSolver(0, 4, 1.0, 1.0)
    with pytest.raises(ParameterError, match="'max_low_rank'"):
        IRDropSolver(3, 4, 1.0, 1.0, max_low_rank=-1)
    with pytest.raises(ParameterError, match="'g'"):
        IRDropSolver(3, 4, 1.0, 1.0).effective_conductance(np.ones((4, 3)))
    with pytest.raises(ParameterError, match="'r_col'"):
        WireResistance(1.0, -2.0)


# -- kernels ------------------------------------------------------------------


def _line_matrix(g, a, a0):
    n = g.size
    h = np.diag(g + 2 * a)
    h[0, 0] += a0 - a
    h[-1, -1] -= a
    if n == 1:
        h[0, 0] = g[0] + a0
    for i in range(n - 1):
        h[i, i + 1] = h[i + 1, i] = -a
    return h


@pytest.mark.kernel
@pytest.mark.parametrize("n", [1, 2, 7])
def test_line_kernels_against_dense_algebra(n):
    rng = np.random.default_rng(n)
    g = rng.uniform(0.0, 3e-4, n)
    a, a0 = 2.0, 0.5
    h = _line_matrix(g, a, a0)
    h_inv = np.linalg.inv(h)
    d = np.diag(g)
    p_ref = d - d @ h_inv @ d
    carry = np.tril(rng.uniform(-1e-4, 1e-4, (n, n)))
    e = carry.copy()
    f = np.empty(n)
    ir_drop._add_row_schur(g, a, a0, e, f, np.empty(n), np.empty(n))
    assert np.abs(e - carry - np.tril(p_ref)).max() < 1e-12 * g.max()
    assert np.abs(f - a0 * d @ h_inv[:, 0]).max() < 1e-12 * g.max()
    # A line with its terminal at 1 V and its device ends at 1 V carries no
    # current: f = P 1.
    assert np.abs(f - p_ref.sum(axis=1)).max() < 1e-12 * g.max()
    rhs = rng.standard_normal((n, 3))
    x = ir_drop._chain_solve(g, a, a0, rhs)
    assert np.abs(x - h_inv @ rhs).max() < 1e-12 * np.abs(h_inv @ rhs).max()


def _spd(rng, n, scale):
    a = rng.uniform(0.0, scale, (n, n))
    return a @ a.T / n + np.diag(rng.uniform(0.1 * scale, scale, n))


@pytest.mark.kernel
@pytest.mark.parametrize("n,k", [(1, 4), (5, 1), (9, 4), (10, 6), (40, 32)])
@pytest.mark.parametrize("tau", [1e-5, 1.0, 1e7])
def test_series_kernel_against_dense_algebra(n, k, tau):
    """``series(E, tau) = E - E (tau I + E)^-1 E`` and the transfer matrix
    ``tau (tau I + E)^-1``, for wires far weaker and far stronger than E."""
    rng = np.random.default_rng(n + k)
    e = _spd(rng, n, 1e-4)
    s_inv_e = np.linalg.solve(e + tau * np.eye(n), e)
    ref = e - e @ s_inv_e
    # Written as tau (tau I + E)^-1 E it needs no cancellation: the reference
    # for tiny entries when tau is large.
    ref_tau = tau * s_inv_e
    lower = np.tril_indices(n)
    scale = np.abs(ref).max()
    # Rows of the work arrays as long as the matrix, and padded (the upper
    # triangle and the padding are scratch).
    for width in (n, ir_drop._padded(n) + 8):
        got = rng.standard_normal((n, width))
        got[lower] = e[lower]
        r = np.zeros((k, width))
        ir_drop._series(got, tau, r, np.empty((k, k)), np.empty(k))
        assert np.abs(got[lower] - ref[lower]).max() < 1e-12 * scale
        assert np.abs(got[lower] - ref_tau[lower]).max() < 1e-12 * scale
    m = np.empty((n, n))
    ir_drop._transfer(got, tau, m)
    assert np.array_equal(m, m.T)
    assert np.abs(m - tau * np.linalg.inv(e + tau * np.eye(n))).max() < 1e-12


@pytest.mark.kernel
@pytest.mark.parametrize("shape", [(7, 3), (3, 3), (4, 1)])
def test_sweep_kernels_against_dense_solve(shape):
    """Both ways of collecting the sources, and the batch path, against the
    nodal system solved densely."""
    g, v = _case(*shape, seed=20, batch=2)
    r_row, r_col, r_driver, r_sense = 1.5, 2.5, 1.0, 2.0
    ch = ir_drop._orient(*shape, WireResistance(r_row, r_col, r_driver, r_sense))
    assert not ch.transposed
    gc = np.ascontiguousarray(g)
    m, n = shape
    ref = mna(g, np.eye(m), r_row, r_col, r_driver, r_sense)[0]
    for q in sorted({min(m, n), m}):
        out = np.empty((m, n))
        store = np.empty((m - q, n, n))
        f_all = np.empty((m, n))
        ir_drop._geff_kernel(gc, ch.a, ch.a0, ch.b, ch.b0, q, out, store, f_all)
        assert rel(out, ref) < 1e-12
    cur = np.empty((2, n))
    ir_drop._currents_kernel(gc, ch.a, ch.a0, ch.b, ch.b0, v, cur)
    assert rel(cur, v @ ref) < 1e-12
