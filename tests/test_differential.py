"""Signed weights on differential pairs."""

import numpy as np
import pytest

from crossbar.differential import DifferentialMapping, WeightClippingWarning
from crossbar.validation import ParameterError

WINDOW = (1e-6, 101e-6)


@pytest.mark.parametrize("layout", ["row_pairs", "column_pairs"])
@pytest.mark.parametrize("reference", ["low", "center"])
def test_noise_free_mapping_reproduces_w(layout, reference):
    rng = np.random.default_rng(0)
    w = rng.uniform(-0.9, 0.9, size=(5, 3))
    m = DifferentialMapping(layout=layout, g_unit=100e-6, reference=reference)
    g_pos, g_neg = m.targets(w, WINDOW)
    assert g_pos.min() >= WINDOW[0] - 1e-18 and g_pos.max() <= WINDOW[1] + 1e-18
    assert g_neg.min() >= WINDOW[0] - 1e-18 and g_neg.max() <= WINDOW[1] + 1e-18
    block = m.assemble(g_pos, g_neg)
    assert block.shape == m.physical_shape(5, 3)
    np.testing.assert_allclose(m.weights(block, 5, 3, 100e-6), w, atol=1e-12)


def test_row_pairs_put_negative_rows_below():
    m = DifferentialMapping(layout="row_pairs", g_unit=1e-6)
    w = np.array([[2.0, -3.0]])  # (out=1, in=2)
    g_pos, g_neg = m.targets(w, (0.0, 10e-6))
    block = m.assemble(g_pos, g_neg)
    np.testing.assert_allclose(block[:, 0], [2e-6, 0.0, 0.0, 3e-6])


def test_fill_window_g_unit():
    m = DifferentialMapping(g_unit=None)
    w = np.array([[0.5, -2.0]])
    assert m.resolve_g_unit(w, WINDOW) == pytest.approx(100e-6 / 2.0)


def test_clipping_warns_with_count_and_excess():
    m = DifferentialMapping(g_unit=100e-6)
    w = np.array([[0.5, 1.5, -3.0]])
    with pytest.warns(WeightClippingWarning, match=r"2 of 3 weights.*excess is 2"):
        g_pos, g_neg = m.targets(w, WINDOW)
    np.testing.assert_allclose((g_pos - g_neg) / 100e-6, [[0.5, 1.0, -1.0]])


def test_bad_parameters_are_named():
    with pytest.raises(ParameterError, match="'layout'.*row_pairs"):
        DifferentialMapping(layout="row_pair")
    with pytest.raises(ParameterError, match="'g_unit'"):
        DifferentialMapping(g_unit=-1.0)
