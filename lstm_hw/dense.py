"""The dense output layer (identity, sigmoid or softmax), read through a plan."""

from __future__ import annotations

import logging
import math

import numpy as np

from crossbar.validation import check_array, check_choice, check_number, fail
from lstm_hw import kernels
from lstm_hw.lstm import (
    ExactPlanCache,
    check_seed,
    kernel_array,
    make_rng,
    resolve_plan,
    uniform_init,
)

logger = logging.getLogger(__name__)

ACTIVATIONS = ("identity", "sigmoid", "softmax")


class Dense:
    """``y = act(x @ weight.T + bias)`` on the last axis of ``x``.

    Parameters
    ----------
    in_features, out_features : int
        Input width ``I`` and output width ``O``.
    activation : {"identity", "sigmoid", "softmax"}
        Output nonlinearity; softmax is taken over the last axis.
    rng : numpy.random.Generator, optional
        Source of the initial weights, weight then bias, both from
        U(-1/sqrt(I), 1/sqrt(I)) like torch.nn.Linear.

    Attributes
    ----------
    params : dict of str to ndarray
        ``weight`` (O, I) and ``bias`` (O,), updated in place by optimizers.
    grads : dict of str to ndarray
        Same keys and shapes, overwritten by :meth:`backward`.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        activation: str = "identity",
        rng: np.random.Generator | None = None,
    ):
        check_number("in_features", in_features, low=1, integer=True)
        check_number("out_features", out_features, low=1, integer=True)
        check_choice("activation", activation, ACTIVATIONS)
        rng = make_rng(rng)
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.activation = activation
        bound = 1.0 / math.sqrt(self.in_features)
        self.params = {
            "weight": uniform_init(rng, bound, (self.out_features, self.in_features)),
            "bias": uniform_init(rng, bound, (self.out_features,)),
        }
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self._cache: dict | None = None
        self._exact = ExactPlanCache()

    def __repr__(self) -> str:
        return (
            f"Dense(in_features={self.in_features}, "
            f"out_features={self.out_features}, "
            f"activation={self.activation!r})"
        )

    def combined_matrix(self) -> np.ndarray:
        """``[weight | bias]`` of shape (O, I + 1), read with ``u = [x, 1]``."""
        p = self.params
        return np.concatenate([p["weight"], p["bias"][:, None]], axis=1)

    def set_from_combined(self, matrix) -> None:
        """Load weights from a combined matrix; extra bias columns are summed."""
        i, o = self.in_features, self.out_features
        m = check_array("matrix", matrix, ndim=2)
        if m.shape[0] != o or m.shape[1] < i + 1:
            fail("matrix", f"of shape ({o}, >= {i + 1})", m)
        self.params["weight"][...] = m[:, :i]
        self.params["bias"][...] = m[:, i:].sum(axis=1)

    def combined_grad(self) -> np.ndarray:
        """Gradient of the loss in the layout of :meth:`combined_matrix`."""
        g = self.grads
        return np.concatenate([g["weight"], g["bias"][:, None]], axis=1)

    def forward(self, x, plan=None, seed=0):
        """Outputs for ``x`` of shape (B, I) or (B, T, I).

        All rows go through one read of ``plan`` (exact product when None);
        ``seed`` seeds the read noise of a hardware plan.
        """
        x = check_array("x", x)
        if x.ndim not in (2, 3) or x.shape[-1] != self.in_features:
            fail(
                "x",
                f"of shape (B, {self.in_features}) or (B, T, {self.in_features})",
                x,
            )
        return self._forward(x, plan, check_seed(seed))

    def _forward(self, x, plan, seed):
        matrix = self.combined_matrix()
        plan = resolve_plan(plan, matrix, self.in_features, 0, self._exact)
        x2 = kernel_array(x.reshape(-1, self.in_features))
        z = kernels.dense_forward(plan, x2, seed)
        if self.activation == "sigmoid":
            y = 1.0 / (1.0 + np.exp(-z))
        elif self.activation == "softmax":
            e = np.exp(z - z.max(axis=1, keepdims=True))
            y = e / e.sum(axis=1, keepdims=True)
        else:
            y = z
        self._cache = {"x2": x2, "y2": y, "matrix": matrix, "shape": x.shape}
        return y.reshape(*x.shape[:-1], self.out_features)

    def backward(self, dy):
        """Gradients from ``dy``, the gradient of the loss w.r.t. the output.

        ``dy`` is taken with respect to the post-activation output (the
        softmax Jacobian is applied here). Returns the input gradient in the
        shape of the last forward input and overwrites :attr:`grads`.
        """
        if self._cache is None:
            raise RuntimeError("backward() needs a forward() call first")
        shape = (*self._cache["shape"][:-1], self.out_features)
        return self._backward(check_array("dy", dy, shape=shape))

    def _backward(self, dy):
        cache = self._cache
        dy = dy.reshape(-1, self.out_features)
        y = cache["y2"]
        if self.activation == "sigmoid":
            dz = dy * y * (1.0 - y)
        elif self.activation == "softmax":
            dz = y * (dy - np.sum(dy * y, axis=1, keepdims=True))
        else:
            dz = dy
        i = self.in_features
        self.grads["weight"][...] = dz.T @ cache["x2"]
        self.grads["bias"][...] = dz.sum(axis=0)
        dx = dz @ cache["matrix"][:, :i]
        return dx.reshape(cache["shape"])
