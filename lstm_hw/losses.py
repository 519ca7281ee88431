"""Loss functions on post-activation network outputs.

A loss is called as ``loss(y, target, mask=None)`` and returns the pair
``(value, dL/dy)``. ``y`` is what the network returns *after* its output
activation (a sigmoid value, a softmax probability, ...); the output layer's
backward pass turns ``dL/dy`` into the gradient of its pre-activations.

Whether a loss is taken at the last step or at every step follows from the
shapes: a 2-D output ``(B, O)`` is one value per sequence, a 3-D output
``(B, T, O)`` one per step. For sequences of different lengths in one batch
a boolean ``mask`` of shape ``(B, T)`` marks the steps that count; masked
steps get a zero gradient.
"""

from __future__ import annotations

import logging

import numpy as np

from crossbar.validation import check_array, check_choice, check_number, fail

logger = logging.getLogger(__name__)

__all__ = ["CrossEntropyLoss", "MSELoss", "sequence_mask"]


def sequence_mask(lengths, steps: int) -> np.ndarray:
    """Boolean mask ``(B, steps)``, True where ``t < lengths[b]``.

    Parameters
    ----------
    lengths : array_like of int, shape (B,)
        Valid length of every sequence, in steps.
    steps : int
        Padded length ``T``.
    """
    check_number("steps", steps, low=1, integer=True)
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or not np.issubdtype(lengths.dtype, np.integer):
        fail("lengths", "a 1-D array of integers", lengths)
    if lengths.size and (lengths.min() < 1 or lengths.max() > steps):
        fail("lengths", f"integers in [1, {steps}]", lengths)
    return np.arange(steps)[None, :] < lengths[:, None]


def _check_mask(mask, y: np.ndarray) -> np.ndarray | None:
    """Validate ``mask`` against output ``y``; None means every step counts."""
    if mask is None:
        return None
    if y.ndim != 3:
        fail(
            "mask",
            "None for a last-step output of shape (B, O)",
            np.asarray(mask),
            "a mask selects steps of a (B, T, O) output",
        )
    mask = np.asarray(mask)
    if mask.shape != y.shape[:2]:
        fail("mask", f"an array of shape {y.shape[:2]} (B, T)", mask)
    if mask.dtype != np.bool_:
        if not np.issubdtype(mask.dtype, np.number) or not np.all(
            (mask == 0) | (mask == 1)
        ):
            fail("mask", "a boolean array (or of 0 and 1)", mask)
        mask = mask.astype(bool)
    return mask


class MSELoss:
    """Squared error ``sum (y - target)**2``, summed or averaged.

    Like PyTorch's ``MSELoss`` there is no factor 1/2, so the gradient is
    ``2 (y - target)`` (divided by the element count for ``"mean"``).

    Parameters
    ----------
    reduction : {"sum", "mean"}
        ``"sum"`` adds the squared errors of every counted element;
        ``"mean"`` divides that sum by the number of counted elements
        (counted steps times outputs).
    """

    def __init__(self, reduction: str = "mean"):
        check_choice("reduction", reduction, ["sum", "mean"])
        self.reduction = reduction

    def __repr__(self) -> str:
        return f"MSELoss(reduction={self.reduction!r})"

    def __call__(self, y, target, mask=None) -> tuple[float, np.ndarray]:
        """Loss value and its gradient with respect to ``y``.

        Parameters
        ----------
        y : ndarray, shape (B, O) or (B, T, O)
            Network outputs (dimensionless, the data's scaled units).
        target : array_like, same shape as ``y``
            Wanted outputs.
        mask : array_like of bool, shape (B, T), optional
            Steps that count, for a per-step output only.

        Returns
        -------
        value : float
        grad : ndarray, same shape as ``y``
        """
        y = check_array("y", y)
        if y.ndim not in (2, 3):
            fail("y", "an array of shape (B, O) or (B, T, O)", y)
        target = check_array("target", target, shape=y.shape)
        mask = _check_mask(mask, y)
        diff = y - target
        if mask is not None:
            diff *= mask[:, :, None]
            count = int(mask.sum()) * y.shape[2]
        else:
            count = y.size
        value = float(np.sum(diff * diff))
        grad = 2.0 * diff
        if self.reduction == "mean":
            if count == 0:
                fail("mask", "True at one step at least", mask)
            value /= count
            grad /= count
        return value, grad


class CrossEntropyLoss:
    """Negative log-likelihood of class probabilities (a softmax output).

    The value is ``-sum log y[target]`` over the counted sequences (last-step
    output ``(B, C)``) or counted steps (per-step output ``(B, T, C)``),
    averaged over them for ``"mean"``. The gradient is ``-1 / y[target]`` at
    the target class and zero elsewhere; through the softmax's backward pass
    it becomes the familiar ``y - onehot(target)``.

    Parameters
    ----------
    reduction : {"mean", "sum"}
        Average or sum over the counted sequences or steps.
    eps : float
        Lower clip of the probabilities (dimensionless) inside ``log`` and
        the division, so that a probability that underflowed to 0 gives a
        finite value and gradient. The default, the smallest normal float64,
        leaves every probability a softmax can represent unchanged.
    """

    def __init__(
        self, reduction: str = "mean", eps: float = float(np.finfo(np.float64).tiny)
    ):
        check_choice("reduction", reduction, ["mean", "sum"])
        check_number("eps", eps, low=0.0, high=1.0, low_open=True, high_open=True)
        self.reduction = reduction
        self.eps = float(eps)

    def __repr__(self) -> str:
        return f"CrossEntropyLoss(reduction={self.reduction!r}, eps={self.eps!r})"

    def __call__(self, y, target, mask=None) -> tuple[float, np.ndarray]:
        """Loss value and its gradient with respect to the probabilities ``y``.

        Parameters
        ----------
        y : ndarray, shape (B, C) or (B, T, C)
            Class probabilities (each row sums to 1).
        target : array_like of int, shape (B,) or (B, T)
            Class indices in ``[0, C)``.
        mask : array_like of bool, shape (B, T), optional
            Steps that count, for a per-step output only.

        Returns
        -------
        value : float
        grad : ndarray, same shape as ``y``
        """
        y = check_array("y", y)
        if y.ndim not in (2, 3):
            fail("y", "an array of shape (B, C) or (B, T, C)", y)
        if np.any(y < 0.0) or np.any(y > 1.0):
            fail("y", "probabilities in [0, 1]", y, "use a softmax output layer")
        n_classes = y.shape[-1]
        target = np.asarray(target)
        if target.shape != y.shape[:-1]:
            fail("target", f"class indices of shape {y.shape[:-1]}", target)
        if not np.issubdtype(target.dtype, np.integer):
            fail("target", "an array of integer class indices", target)
        if target.size and (target.min() < 0 or target.max() >= n_classes):
            fail(
                "target",
                f"class indices in [0, {n_classes - 1}]",
                target,
                f"found values from {target.min()} to {target.max()}",
            )
        mask = _check_mask(mask, y)
        weight = np.ones(y.shape[:-1]) if mask is None else mask.astype(np.float64)
        count = float(weight.sum())
        if count == 0:
            fail("mask", "True at one step at least", mask)
        p = np.take_along_axis(y, target[..., None], axis=-1)[..., 0]
        p = np.maximum(p, self.eps)
        value = float(-np.sum(weight * np.log(p)))
        grad = np.zeros_like(y)
        np.put_along_axis(grad, target[..., None], (-weight / p)[..., None], axis=-1)
        if self.reduction == "mean":
            value /= count
            grad /= count
        return value, grad
