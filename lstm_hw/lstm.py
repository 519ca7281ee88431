"""The LSTM layer (vanilla, peephole and CIFG variants) on numba kernels.

Weights use PyTorch's layout and gate order (input, forget, cell, output), so
arrays move to and from ``torch.nn.LSTM`` unchanged. Every matrix-vector
product of the forward pass goes through a :class:`crossbar.read_kernel.ReadPlan`
of the layer's combined matrix; the backward pass runs in software on the
layer's weights as they were at the forward pass.

This module also holds the input checks shared by all recurrent layers and
the network (sequence lengths, masks, states, plans, seeds).
"""

from __future__ import annotations

import logging
import math

import numpy as np

from crossbar.read_kernel import ReadPlan, exact_plan
from crossbar.validation import (
    check_array,
    check_choice,
    check_number,
    fail,
)
from lstm_hw import kernels

logger = logging.getLogger(__name__)

VARIANTS = {
    "vanilla": kernels.VANILLA,
    "peephole": kernels.PEEPHOLE,
    "cifg": kernels.CIFG,
}

SEED_MAX = 2**32 - 1


# ------------------------------------------------------------ shared checks


def make_rng(rng) -> np.random.Generator:
    """The generator for weight initialisation.

    ``None`` gives a fresh, unseeded generator (pass a Generator for
    reproducible weights).
    """
    if rng is None:
        return np.random.default_rng()
    if not isinstance(rng, np.random.Generator):
        fail(
            "rng",
            "a numpy.random.Generator or None",
            rng,
            "use numpy.random.default_rng(seed)",
        )
    return rng


def lengths_from_mask(mask) -> np.ndarray:
    """Sequence lengths (B,) from a boolean validity mask (B, T).

    Each row must be a valid prefix: ``True`` for the first ``lengths[b]`` steps
    (at least one) and ``False`` after.
    """
    arr = np.asarray(mask)
    if arr.dtype != np.bool_ or arr.ndim != 2:
        fail("mask", "a 2-D boolean array (batch, time)", mask)
    lengths = arr.sum(axis=1).astype(np.int64)
    steps = np.arange(arr.shape[1])
    if not np.array_equal(arr, steps[None, :] < lengths[:, None]):
        fail(
            "mask",
            "True on a prefix of each row and False after it",
            mask,
            "padding must come at the end of each sequence",
        )
    if np.any(lengths < 1):
        fail("mask", "True at the first step of every row", mask)
    return lengths


def resolve_lengths(lengths, mask, batch: int, steps: int) -> np.ndarray:
    """int64 lengths (B,) from ``lengths`` or ``mask`` (at most one given)."""
    if lengths is not None and mask is not None:
        fail(
            "mask",
            "None when 'lengths' is given",
            mask,
            "give either lengths or a mask",
        )
    if mask is not None:
        out = lengths_from_mask(mask)
        if out.shape[0] != batch or np.asarray(mask).shape[1] != steps:
            fail("mask", f"of shape ({batch}, {steps}) like x", np.asarray(mask))
        return out
    if lengths is None:
        return np.full(batch, steps, dtype=np.int64)
    arr = np.asarray(lengths)
    if arr.ndim != 1 or arr.shape[0] != batch:
        fail("lengths", f"a 1-D integer array of length {batch}", lengths)
    if not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            fail("lengths", "integers", lengths)
    if np.any(arr < 1) or np.any(arr > steps):
        fail(
            "lengths",
            f"integers in [1, {steps}] (the time axis of x)",
            lengths,
            f"min {arr.min()}, max {arr.max()}",
        )
    return kernel_array(arr, np.int64)


def kernel_array(arr: np.ndarray, dtype=np.float64) -> np.ndarray:
    """C-contiguous and writable, so that every call hits one compiled kernel.

    Numba compiles a separate specialisation for read-only arrays; copying
    them is cheaper than a compilation.
    """
    arr = np.ascontiguousarray(arr, dtype=dtype)
    return arr if arr.flags.writeable else arr.copy()


def check_sequence(x, input_size: int) -> np.ndarray:
    """Batch-first input (B, T, I) as a C-contiguous float64 array."""
    x = check_array("x", x, ndim=3)
    if x.shape[2] != input_size or x.shape[0] < 1 or x.shape[1] < 1:
        fail("x", f"of shape (batch >= 1, time >= 1, {input_size})", x)
    return kernel_array(x)


def check_state(name: str, value, batch: int, hidden: int) -> np.ndarray:
    """An initial state (B, H), zeros when ``value`` is None."""
    if value is None:
        return np.zeros((batch, hidden))
    return kernel_array(check_array(name, value, shape=(batch, hidden)))


class ExactPlanCache:
    """The exact plan of a layer's combined matrix, refreshed in place.

    Building a plan checks and copies the matrix; during training the weights
    change at every step, so the layer keeps one plan and overwrites its
    ``g[0]`` (which holds ``W.T`` in an exact plan) instead.
    """

    def __init__(self):
        self._plan: ReadPlan | None = None

    def __call__(self, matrix: np.ndarray) -> ReadPlan:
        if not np.all(np.isfinite(matrix)):
            fail(
                "params",
                "finite (no NaN or inf)",
                matrix,
                "the weights diverged or were set to non-finite values",
            )
        plan = self._plan
        if plan is None or plan.g.shape[1:] != matrix.shape[::-1]:
            plan = self._plan = exact_plan(matrix)
        else:
            plan.g[0] = matrix.T
        return plan


def resolve_plan(
    plan, matrix: np.ndarray, n_x: int, n_h: int, cache: ExactPlanCache
) -> ReadPlan:
    """The plan to use: exact for ``matrix`` when None, else checked shapes."""
    if plan is None:
        return cache(matrix)
    if not isinstance(plan, ReadPlan):
        fail("plan", "a crossbar.read_kernel.ReadPlan or None", plan)
    rows = matrix.shape[0]
    if plan.n_out != rows or plan.n_in < n_x + n_h + 1:
        fail(
            "plan",
            f"a plan with n_out = {rows} and n_in >= {n_x + n_h + 1}",
            f"n_out = {plan.n_out}, n_in = {plan.n_in}",
            "build it from the layer's combined_matrix()",
        )
    return plan


def check_d_out(d_out, batch: int, steps: int, hidden: int):
    """The output gradient (B, T, H) and whether it is used (None: zeros)."""
    if d_out is None:
        return np.zeros((1, 1, 1)), False
    return kernel_array(check_array("d_out", d_out, shape=(batch, steps, hidden))), True


def check_seed(seed) -> int:
    """Seed of the numba generator (read noise of hardware plans)."""
    check_number("seed", seed, low=0, high=SEED_MAX, integer=True)
    return int(seed)


def check_truncate(truncate) -> int:
    """Truncation length for BPTT; 0 stands for full BPTT."""
    if truncate is None:
        return 0
    check_number("truncate", truncate, low=1, integer=True)
    return int(truncate)


def uniform_init(rng: np.random.Generator, bound: float, shape) -> np.ndarray:
    """Weights drawn from U(-bound, bound)."""
    return rng.uniform(-bound, bound, size=shape)


# -------------------------------------------------------------------- layers


class RecurrentLayer:
    """Plumbing shared by :class:`LSTM` and :class:`lstm_hw.gru.GRU`.

    Subclasses set ``input_size``, ``hidden_size``, ``params`` and
    ``gate_rows`` and implement ``combined_matrix``, ``_new_workspace``,
    ``_forward`` and ``_backward`` on checked inputs; the public ``forward``
    and ``backward`` check their arguments and call those.
    """

    input_size: int
    hidden_size: int
    params: dict[str, np.ndarray]

    def _setup(self) -> None:
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.grad_h0: np.ndarray | None = None
        self._cache: dict | None = None
        self._ws: dict = {}
        self._ws_key: tuple | None = None
        self._exact = ExactPlanCache()

    def _workspace(self, batch: int, steps: int, n_in: int) -> dict:
        """Work arrays of the kernels, kept while the shapes stay the same.

        They hold what backward needs from forward; reusing them spares the
        page faults of fresh large allocations at every call. A new forward
        overwrites them, as it replaces the cache anyway.
        """
        key = (batch, steps, n_in)
        if self._ws_key != key:
            self._ws = self._new_workspace(batch, steps, n_in)
            self._ws_key = key
        return self._ws

    def _check_inputs(self, x, lengths, mask, seed):
        x = check_sequence(x, self.input_size)
        lens = resolve_lengths(lengths, mask, x.shape[0], x.shape[1])
        return x, lens, check_seed(seed)

    def _prepare_backward(self, d_out, truncate):
        if self._cache is None:
            raise RuntimeError("backward() needs a forward() call first")
        batch, steps, _ = self._cache["shape"]
        d_out, use_d_out = check_d_out(d_out, batch, steps, self.hidden_size)
        return d_out, use_d_out, check_truncate(truncate)

    def _split_matrix(self):
        """Input and recurrent column blocks of the forward's matrix."""
        m = self._cache["matrix"]
        n_x, h = self.input_size, self.hidden_size
        return (
            np.ascontiguousarray(m[:, :n_x]),
            np.ascontiguousarray(m[:, n_x : n_x + h]),
        )

    @property
    def lengths(self) -> np.ndarray | None:
        """Sequence lengths used by the last forward pass."""
        return None if self._cache is None else self._cache["lengths"]


class LSTM(RecurrentLayer):
    """A single LSTM layer, batch-first, with full or truncated BPTT.

    Parameters
    ----------
    input_size, hidden_size : int
        Number of input features ``I`` and hidden units ``H``.
    variant : {"vanilla", "peephole", "cifg"}
        ``"vanilla"``: input, forget, cell and output gates (Hochreiter and
        Schmidhuber 1997, forget gate of Gers et al. 2000), as torch.nn.LSTM.
        ``"peephole"``: the gates also see the cell state through the
        elementwise weights ``weight_ci``, ``weight_cf`` (on ``c_{t-1}``) and
        ``weight_co`` (on ``c_t``), after Gers and Schmidhuber (2000).
        ``"cifg"``: coupled input and forget gate, ``f = 1 - i``. The forget
        rows of ``weight_ih``, ``weight_hh``, ``bias_ih`` and ``bias_hh`` stay
        in the arrays so that the layout matches torch.nn.LSTM, but they are
        never used and their gradient is zero; the combined matrix leaves them
        out (3H rows).
    rng : numpy.random.Generator, optional
        Source of the initial weights, all drawn from U(-1/sqrt(H), 1/sqrt(H))
        like PyTorch, in the order weight_ih, weight_hh, bias_ih, bias_hh, then
        the peephole weights.

    Attributes
    ----------
    params : dict of str to ndarray
        ``weight_ih`` (4H, I), ``weight_hh`` (4H, H), ``bias_ih``, ``bias_hh``
        (4H,), and for the peephole variant ``weight_ci``, ``weight_cf``,
        ``weight_co`` (H,). Updated in place by optimizers.
    grads : dict of str to ndarray
        Same keys and shapes, overwritten by :meth:`backward`.
    grad_h0, grad_c0 : ndarray (B, H) or None
        Gradients of the initial state from the last :meth:`backward`.

    Notes
    -----
    Truncated BPTT (``backward(..., truncate=k)``) cuts the common time axis
    into chunks of ``k`` steps and backpropagates inside each chunk only; the
    state entering a chunk is a constant for the gradient (see
    :mod:`lstm_hw.kernels`).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        variant: str = "vanilla",
        rng: np.random.Generator | None = None,
    ):
        check_number("input_size", input_size, low=1, integer=True)
        check_number("hidden_size", hidden_size, low=1, integer=True)
        check_choice("variant", variant, VARIANTS)
        rng = make_rng(rng)
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.variant = variant
        self._variant_id = VARIANTS[variant]
        h, i = self.hidden_size, self.input_size
        bound = 1.0 / math.sqrt(h)
        self.params = {
            "weight_ih": uniform_init(rng, bound, (4 * h, i)),
            "weight_hh": uniform_init(rng, bound, (4 * h, h)),
            "bias_ih": uniform_init(rng, bound, (4 * h,)),
            "bias_hh": uniform_init(rng, bound, (4 * h,)),
        }
        if variant == "peephole":
            for name in ("weight_ci", "weight_cf", "weight_co"):
                self.params[name] = uniform_init(rng, bound, (h,))
        self._setup()
        self.grad_c0: np.ndarray | None = None
        # Rows i, g, o of the PyTorch layout for cifg (forget rows left out).
        self._rows = np.r_[0:h, 2 * h : 4 * h] if variant == "cifg" else None

    def __repr__(self) -> str:
        return (
            f"LSTM(input_size={self.input_size}, "
            f"hidden_size={self.hidden_size}, variant={self.variant!r})"
        )

    @property
    def gate_rows(self) -> int:
        """Rows of the combined matrix: 3H for cifg, 4H otherwise."""
        return (3 if self.variant == "cifg" else 4) * self.hidden_size

    def _take(self, arr: np.ndarray) -> np.ndarray:
        return arr if self._rows is None else arr[self._rows]

    def _peep(self) -> np.ndarray:
        if self.variant != "peephole":
            return np.zeros((3, self.hidden_size))
        p = self.params
        return np.stack([p["weight_ci"], p["weight_cf"], p["weight_co"]])

    # ------------------------------------------------------ combined layout

    def combined_matrix(self) -> np.ndarray:
        """``[W_ih | W_hh | b_ih + b_hh]`` of shape (rows, I + H + 1).

        Rows are the gates i, f, g, o (4H), or i, g, o (3H) for cifg. The
        product with ``u = [x_t, h_{t-1}, 1]`` gives the gate pre-activations
        (peephole terms are added digitally and are not part of it).
        """
        p = self.params
        bias = self._take(p["bias_ih"] + p["bias_hh"])
        return np.concatenate(
            [self._take(p["weight_ih"]), self._take(p["weight_hh"]), bias[:, None]],
            axis=1,
        )

    def set_from_combined(self, matrix) -> None:
        """Load weights from a combined matrix (inverse of combined_matrix).

        Extra trailing bias columns (a plan with several bias inputs) are
        summed. The summed bias goes to ``bias_ih`` while ``bias_hh`` keeps its
        value, so only their sum, which is all the layer uses, changes.
        """
        i, h = self.input_size, self.hidden_size
        m = check_array("matrix", matrix, ndim=2)
        if m.shape[0] != self.gate_rows or m.shape[1] < i + h + 1:
            fail("matrix", f"of shape ({self.gate_rows}, >= {i + h + 1})", m)
        rows = slice(None) if self._rows is None else self._rows
        p = self.params
        p["weight_ih"][rows] = m[:, :i]
        p["weight_hh"][rows] = m[:, i : i + h]
        p["bias_ih"][rows] = m[:, i + h :].sum(axis=1) - p["bias_hh"][rows]

    def combined_grad(self) -> np.ndarray:
        """Gradient of the loss in the layout of :meth:`combined_matrix`."""
        g = self.grads
        return np.concatenate(
            [
                self._take(g["weight_ih"]),
                self._take(g["weight_hh"]),
                self._take(g["bias_ih"])[:, None],
            ],
            axis=1,
        )

    # -------------------------------------------------------------- passes

    def forward(self, x, h0=None, c0=None, lengths=None, plan=None, seed=0, mask=None):
        """Run the layer over a batch of sequences.

        Parameters
        ----------
        x : array (B, T, I)
            Batch-first inputs.
        h0, c0 : array (B, H), optional
            Initial hidden and cell state (zeros by default).
        lengths : int array (B,), optional
            Valid steps of each sequence (1..T); later steps are padding: the
            state stays frozen there and the output is zero.
        plan : ReadPlan, optional
            How the combined matrix is read (exact product when None).
        seed : int
            Seed of the read noise of a hardware plan, in [0, 2**32 - 1].
        mask : bool array (B, T), optional
            Alternative to ``lengths``: True on the valid prefix of each row.

        Returns
        -------
        out : ndarray (B, T, H)
        state : tuple (h_n, c_n) of ndarrays (B, H)
            State at each sequence's last valid step.
        """
        x, lens, seed = self._check_inputs(x, lengths, mask, seed)
        batch, h = x.shape[0], self.hidden_size
        h0 = check_state("h0", h0, batch, h)
        c0 = check_state("c0", c0, batch, h)
        return self._forward(x, lens, h0, c0, plan, seed)

    def _forward(self, x, lens, h0, c0, plan, seed):
        batch, steps, _ = x.shape
        matrix = self.combined_matrix()
        plan = resolve_plan(
            plan, matrix, self.input_size, self.hidden_size, self._exact
        )
        peep = self._peep()
        ws = self._workspace(batch, steps, plan.n_in)
        out, h_n, c_n = kernels.lstm_forward(
            plan,
            x,
            lens,
            h0,
            c0,
            peep,
            self._variant_id,
            seed,
            ws["u_all"],
            ws["gates"],
            ws["cells"],
            ws["tanh_c"],
        )
        self._cache = {
            "matrix": matrix,
            "peep": peep,
            "lengths": lens,
            "shape": x.shape,
            "ws": ws,
        }
        return out, (h_n, c_n)

    def _new_workspace(self, batch: int, steps: int, n_in: int) -> dict:
        h, rows = self.hidden_size, self.gate_rows
        return {
            "u_all": np.zeros((steps, batch, n_in)),
            "gates": np.zeros((steps, batch, rows)),
            "cells": np.zeros((steps + 1, batch, h)),
            "tanh_c": np.zeros((steps, batch, h)),
            "dz": np.zeros((steps, batch, rows)),
        }

    def backward(self, d_out, d_state=None, truncate=None, input_grad=True):
        """Backpropagation through time of the last :meth:`forward`.

        Parameters
        ----------
        d_out : array (B, T, H) or None
            Gradient of the loss with respect to the output sequence; entries
            at padded steps are ignored. None stands for zeros (a loss on the
            final state only).
        d_state : tuple (d_h, d_c), optional
            Gradients with respect to the final state; either may be None.
        truncate : int, optional
            Truncated BPTT in chunks of ``truncate`` steps (see
            :mod:`lstm_hw.kernels` for the exact definition); full BPTT when
            None.
        input_grad : bool
            Compute the input gradient (skip it when ``x`` is data).

        Returns
        -------
        d_x : ndarray (B, T, I), or None when ``input_grad`` is False.
        """
        d_out, use_d_out, trunc = self._prepare_backward(d_out, truncate)
        batch, h = self._cache["shape"][0], self.hidden_size
        if d_state is None:
            d_state = (None, None)
        elif not isinstance(d_state, tuple | list) or len(d_state) != 2:
            fail("d_state", "a pair (d_h, d_c) or None", d_state)
        d_h = check_state("d_state[0]", d_state[0], batch, h)
        d_c = check_state("d_state[1]", d_state[1], batch, h)
        return self._backward(d_out, use_d_out, d_h, d_c, trunc, bool(input_grad))

    def _backward(self, d_out, use_d_out, d_h, d_c, trunc, input_grad):
        cache = self._cache
        n_x, h = self.input_size, self.hidden_size
        w_ih, w_hh = self._split_matrix()
        ws = cache["ws"]
        d_comb, d_peep, d_x, d_h0, d_c0 = kernels.lstm_backward(
            w_ih,
            w_hh,
            cache["peep"],
            self._variant_id,
            cache["lengths"],
            ws["u_all"],
            ws["gates"],
            ws["cells"],
            ws["tanh_c"],
            d_out,
            use_d_out,
            d_h,
            d_c,
            trunc,
            input_grad,
            ws["dz"],
        )
        g = self.grads
        rows = slice(None) if self._rows is None else self._rows
        if self._rows is not None:
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                g[name][...] = 0.0
        g["weight_ih"][rows] = d_comb[:, :n_x]
        g["weight_hh"][rows] = d_comb[:, n_x : n_x + h]
        g["bias_ih"][rows] = d_comb[:, n_x + h]
        g["bias_hh"][rows] = d_comb[:, n_x + h]
        if self.variant == "peephole":
            g["weight_ci"][...] = d_peep[0]
            g["weight_cf"][...] = d_peep[1]
            g["weight_co"][...] = d_peep[2]
        self.grad_h0 = d_h0
        self.grad_c0 = d_c0
        return d_x if input_grad else None
