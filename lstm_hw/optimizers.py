"""First-order optimizers with PyTorch's update conventions.

Every optimizer updates a flat ``dict[str, ndarray]`` of parameters in place
(``Network.params()`` returns views of the layers' arrays, so the layers see
the new values) from a dict of gradients with the same keys. The internal
state (momentum buffers, running averages, step count) is kept per key and
can be saved and restored as a dict of plain arrays, so that a run resumed
from ``state_dict()`` continues bit for bit.

The update rules, for a gradient ``g`` and learning rate ``lr``:

- :class:`SGD`: ``v = momentum * v + g``; ``p -= lr * v`` (Nesterov:
  ``p -= lr * (g + momentum * v)``). The first step sets ``v = g``.
- :class:`RMSprop`: ``s = alpha * s + (1 - alpha) * g**2``;
  ``p -= lr * g / (sqrt(s) + eps)``.
- :class:`Adam`: ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g**2``,
  ``p -= lr / (1 - b1**t) * m / (sqrt(v) / sqrt(1 - b2**t) + eps)``.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from crossbar.validation import check_number, closest_key, fail

logger = logging.getLogger(__name__)

__all__ = ["SGD", "Adam", "Optimizer", "RMSprop", "clip_grad_norm"]

# Separates a buffer name from a parameter name in state_dict keys;
# parameter names themselves contain dots ("rnn.weight_ih").
_SEP = "/"


def clip_grad_norm(grads: dict[str, np.ndarray], max_norm: float) -> float:
    """Scale all gradients in place so that their joint L2 norm is at most
    ``max_norm``.

    Follows ``torch.nn.utils.clip_grad_norm_``: the factor is
    ``max_norm / (norm + 1e-6)``, applied only when it is below 1.

    Parameters
    ----------
    grads : dict of ndarray
        Gradients, modified in place.
    max_norm : float
        Largest allowed norm, > 0.

    Returns
    -------
    float
        The joint norm before clipping.
    """
    check_number("max_norm", max_norm, low=0.0, low_open=True)
    total = math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
    if not math.isfinite(total):
        fail(
            "grads",
            "finite (no NaN or inf)",
            total,
            "the gradient norm is not finite; lower the learning rate",
        )
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for g in grads.values():
            g *= coef
    return total


class Optimizer:
    """Common bookkeeping: hyperparameters, per-key buffers, step count.

    Subclasses list their hyperparameters in ``_hyper`` and their buffer
    names in ``_buffers`` and implement :meth:`_update`.
    """

    _hyper: tuple[str, ...] = ("lr",)
    _buffers: tuple[str, ...] = ()

    def __init__(self, lr: float):
        check_number("lr", lr, low=0.0)
        self.lr = float(lr)
        self.step_count = 0
        self.state: dict[str, dict[str, np.ndarray]] = {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._hyper)
        return f"{type(self).__name__}({args})"

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]):
        """Update every array of ``params`` in place from ``grads``.

        Parameters
        ----------
        params : dict of ndarray
            Writable float64 arrays (views into the layers).
        grads : dict of ndarray
            Gradients with the same keys and shapes.
        """
        if params.keys() != grads.keys():
            missing = sorted(set(params) - set(grads))
            extra = sorted(set(grads) - set(params))
            fail(
                "grads",
                "a dict with the same keys as params",
                sorted(grads),
                f"missing {missing}, unexpected {extra}",
            )
        for key, p in params.items():
            g = grads[key]
            if not isinstance(p, np.ndarray) or p.dtype != np.float64:
                fail(f"params[{key!r}]", "a float64 ndarray", p)
            if not p.flags.writeable:
                fail(f"params[{key!r}]", "a writable array", p)
            if np.shape(g) != p.shape:
                fail(f"grads[{key!r}]", f"an array of shape {p.shape}", np.asarray(g))
            for name, buf in self.state.get(key, {}).items():
                if buf.shape != p.shape:
                    fail(
                        f"params[{key!r}]",
                        f"an array of shape {buf.shape} like its '{name}' buffer",
                        p,
                    )
        self.step_count += 1
        names = self._buffer_names()
        for key, p in params.items():
            state = self.state.setdefault(key, {})
            for name in names:
                if name not in state:
                    state[name] = np.zeros_like(p)
            self._update(p, np.asarray(grads[key], dtype=np.float64), state)

    def _buffer_names(self, hyper: dict | None = None) -> tuple[str, ...]:
        """Names of the per-parameter buffers for the hyperparameters
        ``hyper`` (default: the current ones)."""
        return self._buffers

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict) -> None:
        raise NotImplementedError

    def zero_state(self) -> None:
        """Forget every buffer and the step count."""
        self.state.clear()
        self.step_count = 0

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copy of the optimizer state as a flat dict of plain arrays.

        Keys: the hyperparameters and ``"step"`` (0-d arrays), and
        ``"<buffer>/<parameter name>"`` for every buffer. The dict can be
        written with ``numpy.savez`` and read back with ``numpy.load``.
        """
        out = {k: np.array(float(getattr(self, k))) for k in self._hyper}
        out["step"] = np.array(self.step_count, dtype=np.int64)
        for key, state in self.state.items():
            for name, buf in state.items():
                out[f"{name}{_SEP}{key}"] = buf.copy()
        return out

    def load_state_dict(self, state: dict) -> None:
        """Restore hyperparameters, step count and buffers from
        :meth:`state_dict`.

        Nothing changes when ``state`` is invalid.

        Parameters
        ----------
        state : mapping of str to array_like
            As returned by :meth:`state_dict` (or loaded from an NPZ file).
        """
        keys = set(state)
        need = set(self._hyper) | {"step"}
        missing = sorted(need - keys)
        if missing:
            fail(
                "state",
                f"a state dict of {type(self).__name__} with keys {sorted(need)}",
                sorted(keys),
                f"missing {missing}",
            )
        hyper = {}
        for k in self._hyper:
            value = np.asarray(state[k])
            if value.shape != () or not np.issubdtype(value.dtype, np.number):
                fail(f"state[{k!r}]", "a 0-d numeric array", value)
            hyper[k] = float(value)
            check_number(f"state[{k!r}]", hyper[k], low=0.0)
        step = np.asarray(state["step"])
        if step.shape != () or not np.issubdtype(step.dtype, np.integer) or step < 0:
            fail("state['step']", "a 0-d non-negative integer array", step)
        names = self._buffer_names(hyper)
        buffers: dict[str, dict[str, np.ndarray]] = {}
        for k in sorted(keys - need):
            name, sep, pname = k.partition(_SEP)
            if not sep or name not in names:
                near = closest_key(name, names)
                hint = f"did you mean '{near}{_SEP}{pname}'?" if near and sep else ""
                fail(
                    "state",
                    f"keys of {type(self).__name__} (buffers {list(names)})",
                    k,
                    hint,
                )
            buffers.setdefault(pname, {})[name] = np.array(state[k], dtype=np.float64)
        for pname, bufs in buffers.items():
            if set(bufs) != set(names):
                fail(
                    "state",
                    f"every buffer {list(names)} for parameter '{pname}'",
                    sorted(bufs),
                )
        for k, v in hyper.items():
            setattr(self, k, v)
        self.step_count = int(step)
        self.state = buffers


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    Parameters
    ----------
    lr : float
        Learning rate (parameter units per gradient unit), >= 0.
    momentum : float
        Momentum factor ``mu`` in [0, 1).
    nesterov : bool
        Use Nesterov momentum (needs ``momentum > 0``).
    """

    _hyper = ("lr", "momentum")

    def __init__(self, lr: float, momentum: float = 0.0, nesterov: bool = False):
        super().__init__(lr)
        check_number("momentum", momentum, low=0.0, high=1.0, high_open=True)
        if not isinstance(nesterov, bool):
            fail("nesterov", "True or False", nesterov)
        if nesterov and momentum == 0.0:
            fail("momentum", "> 0 when nesterov=True", momentum)
        self.momentum = float(momentum)
        self.nesterov = nesterov

    def _buffer_names(self, hyper: dict | None = None) -> tuple[str, ...]:
        momentum = self.momentum if hyper is None else hyper["momentum"]
        return ("momentum_buffer",) if momentum > 0.0 else ()

    def __repr__(self) -> str:
        return (
            f"SGD(lr={self.lr!r}, momentum={self.momentum!r}, "
            f"nesterov={self.nesterov!r})"
        )

    def _update(self, p, g, state):
        if self.momentum == 0.0:
            p -= self.lr * g
            return
        v = state["momentum_buffer"]
        v *= self.momentum
        v += g
        if self.nesterov:
            p -= self.lr * (g + self.momentum * v)
        else:
            p -= self.lr * v


class RMSprop(Optimizer):
    """RMSprop, PyTorch's form (``eps`` added after the square root).

    Parameters
    ----------
    lr : float
        Learning rate, >= 0.
    alpha : float
        Smoothing constant of the running mean of squared gradients, in [0, 1).
    eps : float
        Added to the root mean square (gradient units), > 0.
    """

    _hyper = ("lr", "alpha", "eps")
    _buffers = ("square_avg",)

    def __init__(self, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8):
        super().__init__(lr)
        check_number("alpha", alpha, low=0.0, high=1.0, high_open=True)
        check_number("eps", eps, low=0.0, low_open=True)
        self.alpha = float(alpha)
        self.eps = float(eps)

    def _update(self, p, g, state):
        s = state["square_avg"]
        s *= self.alpha
        s += (1.0 - self.alpha) * (g * g)
        p -= self.lr * (g / (np.sqrt(s) + self.eps))


class Adam(Optimizer):
    """Adam with bias correction (Kingma and Ba 2015), PyTorch's form.

    Parameters
    ----------
    lr : float
        Learning rate, >= 0.
    betas : tuple of float
        Decay rates ``(b1, b2)`` of the first and second moment, each in [0, 1).
    eps : float
        Added to the bias-corrected root of the second moment, > 0.
    """

    _hyper = ("lr", "beta1", "beta2", "eps")
    _buffers = ("exp_avg", "exp_avg_sq")

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        super().__init__(lr)
        if not isinstance(betas, tuple | list) or len(betas) != 2:
            fail("betas", "a pair (b1, b2)", betas)
        check_number("betas[0]", betas[0], low=0.0, high=1.0, high_open=True)
        check_number("betas[1]", betas[1], low=0.0, high=1.0, high_open=True)
        check_number("eps", eps, low=0.0, low_open=True)
        self.beta1 = float(betas[0])
        self.beta2 = float(betas[1])
        self.eps = float(eps)

    @property
    def betas(self) -> tuple[float, float]:
        """The pair ``(beta1, beta2)``."""
        return (self.beta1, self.beta2)

    def __repr__(self) -> str:
        return f"Adam(lr={self.lr!r}, betas={self.betas!r}, eps={self.eps!r})"

    def _update(self, p, g, state):
        m = state["exp_avg"]
        v = state["exp_avg_sq"]
        m *= self.beta1
        m += (1.0 - self.beta1) * g
        v *= self.beta2
        v += (1.0 - self.beta2) * (g * g)
        t = self.step_count
        step_size = self.lr / (1.0 - self.beta1**t)
        denom = np.sqrt(v) / math.sqrt(1.0 - self.beta2**t) + self.eps
        p -= step_size * (m / denom)
