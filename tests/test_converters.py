"""DAC and ADC: symmetric quantization, saturation, and the numba kernel."""

from __future__ import annotations

import math

import numpy as np
import pytest

from crossbar.converters import ADC, DAC, quantize_array, quantize_symmetric
from crossbar.validation import ParameterError


def kernel_apply(x: np.ndarray, n_steps: float, full_scale: float) -> np.ndarray:
    return np.array([quantize_symmetric(float(v), n_steps, full_scale) for v in x])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"bits": 1}, "bits"),
        ({"bits": 0}, "bits"),
        ({"bits": 4.0}, "bits"),
        ({"v_max": 0.0}, "v_max"),
        ({"v_max": -0.2}, "v_max"),
    ],
)
def test_dac_bad_parameters(kwargs, field):
    with pytest.raises(ParameterError, match=f"'{field}'"):
        DAC(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"bits": 8}, "i_full_scale"),
        ({"bits": 8, "i_full_scale": 0.0}, "i_full_scale"),
        ({"i_full_scale": -1e-3}, "i_full_scale"),
        ({"bits": 1, "i_full_scale": 1e-3}, "bits"),
        ({"saturate": "no"}, "saturate"),
    ],
)
def test_adc_bad_parameters(kwargs, field):
    with pytest.raises(ParameterError, match=f"'{field}'"):
        ADC(**kwargs)


def test_step_counts():
    assert DAC().n_steps == 0.0 and ADC().n_steps == 0.0
    assert DAC(bits=2).n_steps == 1.0
    assert DAC(bits=8).n_steps == 127.0
    assert ADC(bits=6, i_full_scale=1e-4).n_steps == 31.0
    assert DAC(bits=8, v_max=0.3).full_scale == 0.3
    assert ADC().full_scale == math.inf
    assert ADC(i_full_scale=2e-4).full_scale == 2e-4
    assert DAC(bits=3, v_max=0.3).lsb == pytest.approx(0.1)


def test_quantization_levels_are_symmetric_and_uniform():
    dac = DAC(bits=3, v_max=0.3)  # 3 steps a side: 7 levels
    v = np.linspace(-0.5, 0.5, 2001)
    out = dac.convert(v)
    levels = np.unique(out)
    assert levels == pytest.approx(np.arange(-3, 4) * 0.1, abs=1e-15)
    # Each input goes to its nearest level (ties aside).
    nearest = np.clip(np.round(v / 0.1), -3, 3) * 0.1
    assert out == pytest.approx(nearest, abs=1e-15)
    assert np.array_equal(dac.convert(-v), -out)


def test_rounding_is_half_to_even():
    q = DAC(bits=2, v_max=1.0)  # levels -1, 0, 1
    assert q.convert([0.5, -0.5, 0.50001]).tolist() == [0.0, 0.0, 1.0]
    q = DAC(bits=3, v_max=1.0)  # 0.5 * 3 = 1.5 exactly: rounds to 2
    assert q.convert([0.5])[0] == pytest.approx(2 / 3)


def test_saturation():
    adc = ADC(bits=8, i_full_scale=1e-4)
    out = adc.convert([2e-4, -5.0, 1e-4, 0.99e-4])
    assert out[:3].tolist() == [1e-4, -1e-4, 1e-4]
    assert abs(out[3] - 0.99e-4) <= 1e-4 / 127 / 2
    # The DAC never drives more than its maximum voltage, even when ideal.
    assert DAC(v_max=0.2).convert([0.5, -0.3, 0.1]).tolist() == [0.2, -0.2, 0.1]
    # Clipping without quantization.
    assert ADC(i_full_scale=1e-4).convert([3e-4, 0.3e-4]).tolist() == [1e-4, 0.3e-4]


def test_non_saturating_adc_keeps_the_step():
    adc = ADC(bits=3, i_full_scale=3.0, saturate=False)  # step 1
    assert adc.convert([7.2, -4.6, 0.4]).tolist() == [7.0, -5.0, 0.0]


def test_ideal_converters_pass_through():
    x = np.random.default_rng(0).normal(0, 1e3, 100)
    assert np.array_equal(ADC().convert(x), x)
    v = np.random.default_rng(1).uniform(-0.2, 0.2, 100)
    assert np.array_equal(DAC().convert(v), v)
    assert np.array_equal(
        ADC(bits=None, i_full_scale=1.0, saturate=False).convert(x), x
    )


def test_convert_checks_input():
    with pytest.raises(ParameterError, match="'i'"):
        ADC().convert([1.0, np.nan])
    with pytest.raises(ParameterError, match="'v'"):
        DAC().convert(["a"])


def test_convert_keeps_shape():
    x = np.zeros((3, 4))
    assert ADC(bits=4, i_full_scale=1.0).convert(x).shape == (3, 4)
    assert DAC(bits=4).convert(0.1).shape == ()


@pytest.mark.kernel
@pytest.mark.parametrize(
    "converter",
    [
        DAC(bits=4, v_max=0.2),
        DAC(v_max=0.2),
        DAC(bits=12, v_max=0.25),
        ADC(),
        ADC(bits=6, i_full_scale=1e-4),
        ADC(i_full_scale=1e-4),
        ADC(bits=5, i_full_scale=1e-4, saturate=False),
    ],
)
def test_kernel_matches_python_path_bit_for_bit(converter):
    rng = np.random.default_rng(2)
    x = rng.normal(0, converter.full_scale if converter.full_scale < 1 else 1e-4, 300)
    # Exact ties and the edges.
    fs = converter.full_scale if math.isfinite(converter.full_scale) else 1e-4
    n = max(converter.n_steps, 1.0)
    x = np.concatenate([x, np.arange(-2 * n, 2 * n + 1) * 0.5 * fs / n, [0.0, -0.0]])
    args = converter.kernel_args()
    expected = converter.convert(x)
    got = kernel_apply(x, *args)
    assert got.tobytes() == expected.tobytes()


@pytest.mark.kernel
@pytest.mark.parametrize(
    ("n_steps", "full_scale"),
    [(0.0, 0.0), (0.0, 1.0), (3.0, 0.0), (3.0, math.inf), (3.0, -1.0), (7.0, 1.0)],
)
def test_kernel_sentinels(n_steps, full_scale):
    x = np.array([-2.7, -1.0, -0.5, -0.1, 0.0, 0.16, 0.5, 0.999, 1.0, 4.2])
    got = kernel_apply(x, n_steps, full_scale)
    assert got.tobytes() == quantize_array(x, n_steps, full_scale).tobytes()
    if n_steps == 0.0 or full_scale in (0.0, math.inf):
        clip = 0.0 < full_scale < math.inf
        assert np.array_equal(got, np.clip(x, -1, 1) if clip else x)
    elif full_scale < 0:
        assert np.array_equal(got, np.round(x * 3) / 3)  # quantized, not clipped
    else:
        assert np.array_equal(got, np.round(np.clip(x, -1, 1) * 7) / 7)
