"""Losses: values against explicit sums, gradients against finite differences."""

import numpy as np
import pytest

from crossbar.validation import ParameterError
from lstm_hw.losses import CrossEntropyLoss, MSELoss, sequence_mask


def central_difference(fun, y, h=1e-6):
    """Numerical gradient of the scalar ``fun`` at ``y``."""
    grad = np.zeros_like(y)
    for idx in np.ndindex(y.shape):
        up, down = y.copy(), y.copy()
        up[idx] += h
        down[idx] -= h
        grad[idx] = (fun(up) - fun(down)) / (2 * h)
    return grad


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# ------------------------------------------------------------------ MSE


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("shape", [(4, 3), (3, 5, 2)])
def test_mse_value_and_gradient(rng, reduction, shape):
    y = rng.normal(size=shape)
    t = rng.normal(size=shape)
    loss = MSELoss(reduction)
    value, grad = loss(y, t)
    total = sum((a - b) ** 2 for a, b in zip(y.ravel(), t.ravel(), strict=True))
    expected = total if reduction == "sum" else total / y.size
    assert value == pytest.approx(expected, rel=1e-13)
    numeric = central_difference(lambda v: loss(v, t)[0], y)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_mse_mask_ignores_padding(rng, reduction):
    y = rng.normal(size=(3, 6, 2))
    t = rng.normal(size=(3, 6, 2))
    lengths = np.array([6, 2, 4])
    mask = sequence_mask(lengths, 6)
    loss = MSELoss(reduction)
    value, grad = loss(y, t, mask)
    total = sum(
        np.sum((y[b, : lengths[b]] - t[b, : lengths[b]]) ** 2) for b in range(3)
    )
    count = lengths.sum() * 2
    assert value == pytest.approx(total if reduction == "sum" else total / count)
    assert np.all(grad[~mask] == 0.0)
    # padded outputs do not change the value
    y2 = y.copy()
    y2[~mask] += 100.0
    assert loss(y2, t, mask)[0] == value
    numeric = central_difference(lambda v: loss(v, t, mask)[0], y)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-7)


def test_mse_accepts_integer_mask(rng):
    y = rng.normal(size=(2, 3, 1))
    t = np.zeros_like(y)
    m = np.array([[1, 1, 0], [1, 0, 0]])
    assert MSELoss("sum")(y, t, m)[0] == MSELoss("sum")(y, t, m.astype(bool))[0]


@pytest.mark.torch
def test_mse_matches_torch(rng):
    torch = pytest.importorskip("torch")
    y = rng.normal(size=(3, 4, 2))
    t = rng.normal(size=(3, 4, 2))
    for reduction in ("sum", "mean"):
        yt = torch.tensor(y, requires_grad=True)
        ref = torch.nn.MSELoss(reduction=reduction)(yt, torch.tensor(t))
        ref.backward()
        value, grad = MSELoss(reduction)(y, t)
        assert value == pytest.approx(ref.item(), rel=1e-14)
        np.testing.assert_allclose(grad, yt.grad.numpy(), rtol=1e-14)


def test_mse_errors(rng):
    y = rng.normal(size=(2, 3, 1))
    with pytest.raises(ParameterError, match="parameter 'reduction'.*did you mean"):
        MSELoss("summ")
    with pytest.raises(ParameterError, match="parameter 'target' must be an array"):
        MSELoss()(y, np.zeros((2, 3)))
    with pytest.raises(ParameterError, match="parameter 'mask' must be None"):
        MSELoss()(y[:, 0], y[:, 0], np.ones((2, 3), bool))
    with pytest.raises(ParameterError, match="parameter 'mask' must be an array"):
        MSELoss()(y, y, np.ones((3, 2), bool))
    with pytest.raises(ParameterError, match="parameter 'mask' must be a boolean"):
        MSELoss()(y, y, np.full((2, 3), 0.5))
    with pytest.raises(ParameterError, match="parameter 'mask' must be True"):
        MSELoss("mean")(y, y, np.zeros((2, 3), bool))
    with pytest.raises(ParameterError, match="parameter 'y' must be finite"):
        MSELoss()(np.full((2, 1), np.nan), np.zeros((2, 1)))


# -------------------------------------------------------- cross-entropy


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_last_step(rng, reduction):
    p = softmax(rng.normal(size=(5, 4)))
    target = np.array([0, 3, 1, 1, 2])
    loss = CrossEntropyLoss(reduction)
    value, grad = loss(p, target)
    total = -sum(np.log(p[b, target[b]]) for b in range(5))
    assert value == pytest.approx(total if reduction == "sum" else total / 5)
    numeric = central_difference(lambda v: loss(v, target)[0], p)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def test_cross_entropy_every_step_with_mask(rng):
    p = softmax(rng.normal(size=(3, 5, 4)))
    target = rng.integers(0, 4, size=(3, 5))
    mask = sequence_mask(np.array([5, 1, 3]), 5)
    loss = CrossEntropyLoss()
    value, grad = loss(p, target, mask)
    terms = [-np.log(p[b, t, target[b, t]]) for b, t in np.argwhere(mask)]
    assert value == pytest.approx(np.mean(terms), rel=1e-13)
    assert np.all(grad[~mask] == 0.0)
    numeric = central_difference(lambda v: loss(v, target, mask)[0], p)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def test_cross_entropy_through_softmax_is_p_minus_onehot(rng):
    z = rng.normal(size=(4, 3))
    p = softmax(z)
    target = np.array([2, 0, 1, 2])
    _, dp = CrossEntropyLoss()(p, target)
    # backward of the softmax: dz = p * (dp - sum(dp * p))
    dz = p * (dp - np.sum(dp * p, axis=-1, keepdims=True))
    onehot = np.eye(3)[target]
    np.testing.assert_allclose(dz, (p - onehot) / 4, rtol=1e-12, atol=1e-15)


def test_cross_entropy_guards_log_of_zero():
    p = np.array([[0.0, 1.0], [0.5, 0.5]])
    value, grad = CrossEntropyLoss("sum")(p, np.array([0, 1]))
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    assert value == pytest.approx(-np.log(np.finfo(float).tiny) - np.log(0.5))
    value, _ = CrossEntropyLoss("sum", eps=1e-12)(p, np.array([0, 1]))
    assert value == pytest.approx(-np.log(1e-12) - np.log(0.5))


@pytest.mark.torch
def test_cross_entropy_matches_torch(rng):
    torch = pytest.importorskip("torch")
    z = rng.normal(size=(6, 5))
    target = rng.integers(0, 5, size=6)
    zt = torch.tensor(z, requires_grad=True)
    ref = torch.nn.CrossEntropyLoss()(zt, torch.tensor(target))
    ref.backward()
    p = softmax(z)
    value, dp = CrossEntropyLoss()(p, target)
    dz = p * (dp - np.sum(dp * p, axis=-1, keepdims=True))
    assert value == pytest.approx(ref.item(), rel=1e-13)
    np.testing.assert_allclose(dz, zt.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_cross_entropy_errors():
    p = np.full((2, 3), 1 / 3)
    loss = CrossEntropyLoss()
    with pytest.raises(ParameterError, match="parameter 'target' must be an array of"):
        loss(p, np.array([0.0, 1.0]))
    with pytest.raises(ParameterError, match=r"class indices in \[0, 2\]"):
        loss(p, np.array([0, 3]))
    with pytest.raises(ParameterError, match="class indices of shape"):
        loss(p, np.array([[0, 1]]))
    with pytest.raises(ParameterError, match="probabilities in"):
        loss(p * 4, np.array([0, 1]))
    with pytest.raises(ParameterError, match="parameter 'eps'"):
        CrossEntropyLoss(eps=0.0)


def test_sequence_mask():
    np.testing.assert_array_equal(
        sequence_mask(np.array([1, 3]), 3), [[True, False, False], [True, True, True]]
    )
    with pytest.raises(ParameterError, match="parameter 'lengths'"):
        sequence_mask(np.array([0, 3]), 3)
    with pytest.raises(ParameterError, match="parameter 'lengths'"):
        sequence_mask(np.array([1.0]), 3)
