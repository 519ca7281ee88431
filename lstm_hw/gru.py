"""The GRU layer (Cho et al. 2014) in PyTorch's formulation, on numba kernels.

Gates are ordered reset, update, new, as in ``torch.nn.GRU``, with PyTorch's
placement of the reset gate: ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``
and ``h' = (1 - z) n + z h``.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from crossbar.validation import check_array, check_number, fail
from lstm_hw import kernels
from lstm_hw.lstm import (
    RecurrentLayer,
    check_state,
    make_rng,
    resolve_plan,
    uniform_init,
)

logger = logging.getLogger(__name__)


class GRU(RecurrentLayer):
    """A single GRU layer, batch-first, with full or truncated BPTT.

    Parameters
    ----------
    input_size, hidden_size : int
        Number of input features ``I`` and hidden units ``H``.
    rng : numpy.random.Generator, optional
        Source of the initial weights, all drawn from U(-1/sqrt(H), 1/sqrt(H))
        like PyTorch, in the order weight_ih, weight_hh, bias_ih, bias_hh.

    Attributes
    ----------
    params : dict of str to ndarray
        ``weight_ih`` (3H, I), ``weight_hh`` (3H, H), ``bias_ih``, ``bias_hh``
        (3H,), gate rows r, z, n. Updated in place by optimizers.
    grads : dict of str to ndarray
        Same keys and shapes, overwritten by :meth:`backward`.
    grad_h0 : ndarray (B, H) or None
        Gradient of the initial state from the last :meth:`backward`.

    Notes
    -----
    The combined matrix has 4H rows ``r, z, n_x, n_h`` because the reset gate
    multiplies only the recurrent part of the new gate: ``n_x = [W_in | 0 |
    b_in]`` and ``n_h = [0 | W_hn | b_hn]``. The zero blocks are structural:
    :meth:`set_from_combined` ignores them and :meth:`combined_grad` reports
    zeros there.
    """

    def __init__(
        self, input_size: int, hidden_size: int, rng: np.random.Generator | None = None
    ):
        check_number("input_size", input_size, low=1, integer=True)
        check_number("hidden_size", hidden_size, low=1, integer=True)
        rng = make_rng(rng)
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        h, i = self.hidden_size, self.input_size
        bound = 1.0 / math.sqrt(h)
        self.params = {
            "weight_ih": uniform_init(rng, bound, (3 * h, i)),
            "weight_hh": uniform_init(rng, bound, (3 * h, h)),
            "bias_ih": uniform_init(rng, bound, (3 * h,)),
            "bias_hh": uniform_init(rng, bound, (3 * h,)),
        }
        self._setup()

    def __repr__(self) -> str:
        return f"GRU(input_size={self.input_size}, hidden_size={self.hidden_size})"

    @property
    def gate_rows(self) -> int:
        """Rows of the combined matrix (4H)."""
        return 4 * self.hidden_size

    # ------------------------------------------------------ combined layout

    def combined_matrix(self) -> np.ndarray:
        """Rows ``r, z, n_x, n_h`` of shape (4H, I + H + 1), see the class notes."""
        i, h = self.input_size, self.hidden_size
        p = self.params
        m = np.zeros((4 * h, i + h + 1))
        m[: 2 * h, :i] = p["weight_ih"][: 2 * h]
        m[: 2 * h, i : i + h] = p["weight_hh"][: 2 * h]
        m[: 2 * h, i + h] = p["bias_ih"][: 2 * h] + p["bias_hh"][: 2 * h]
        m[2 * h : 3 * h, :i] = p["weight_ih"][2 * h :]
        m[2 * h : 3 * h, i + h] = p["bias_ih"][2 * h :]
        m[3 * h :, i : i + h] = p["weight_hh"][2 * h :]
        m[3 * h :, i + h] = p["bias_hh"][2 * h :]
        return m

    def set_from_combined(self, matrix) -> None:
        """Load weights from a combined matrix (inverse of combined_matrix).

        The structural zero blocks are ignored. Extra trailing bias columns are
        summed. For the r and z rows the summed bias goes to ``bias_ih`` while
        ``bias_hh`` keeps its value; the n rows set ``b_in`` and ``b_hn``
        separately.
        """
        i, h = self.input_size, self.hidden_size
        m = check_array("matrix", matrix, ndim=2)
        if m.shape[0] != 4 * h or m.shape[1] < i + h + 1:
            fail("matrix", f"of shape ({4 * h}, >= {i + h + 1})", m)
        p = self.params
        bias = m[:, i + h :].sum(axis=1)
        p["weight_ih"][: 2 * h] = m[: 2 * h, :i]
        p["weight_hh"][: 2 * h] = m[: 2 * h, i : i + h]
        p["bias_ih"][: 2 * h] = bias[: 2 * h] - p["bias_hh"][: 2 * h]
        p["weight_ih"][2 * h :] = m[2 * h : 3 * h, :i]
        p["bias_ih"][2 * h :] = bias[2 * h : 3 * h]
        p["weight_hh"][2 * h :] = m[3 * h :, i : i + h]
        p["bias_hh"][2 * h :] = bias[3 * h :]

    def combined_grad(self) -> np.ndarray:
        """Gradient of the loss in the layout of :meth:`combined_matrix`."""
        i, h = self.input_size, self.hidden_size
        g = self.grads
        m = np.zeros((4 * h, i + h + 1))
        m[: 2 * h, :i] = g["weight_ih"][: 2 * h]
        m[: 2 * h, i : i + h] = g["weight_hh"][: 2 * h]
        m[: 2 * h, i + h] = g["bias_ih"][: 2 * h]
        m[2 * h : 3 * h, :i] = g["weight_ih"][2 * h :]
        m[2 * h : 3 * h, i + h] = g["bias_ih"][2 * h :]
        m[3 * h :, i : i + h] = g["weight_hh"][2 * h :]
        m[3 * h :, i + h] = g["bias_hh"][2 * h :]
        return m

    # -------------------------------------------------------------- passes

    def forward(self, x, h0=None, lengths=None, plan=None, seed=0, mask=None):
        """Run the layer over a batch of sequences.

        Parameters
        ----------
        x : array (B, T, I)
            Batch-first inputs.
        h0 : array (B, H), optional
            Initial hidden state (zeros by default).
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
        h_n : ndarray (B, H)
            State at each sequence's last valid step.
        """
        x, lens, seed = self._check_inputs(x, lengths, mask, seed)
        h0 = check_state("h0", h0, x.shape[0], self.hidden_size)
        return self._forward(x, lens, h0, None, plan, seed)

    def _forward(self, x, lens, h0, c0, plan, seed):
        # c0 is accepted (and ignored) so that both layer types share a call.
        batch, steps, _ = x.shape
        matrix = self.combined_matrix()
        plan = resolve_plan(
            plan, matrix, self.input_size, self.hidden_size, self._exact
        )
        ws = self._workspace(batch, steps, plan.n_in)
        out, h_n = kernels.gru_forward(
            plan, x, lens, h0, seed, ws["u_all"], ws["gates"]
        )
        self._cache = {"matrix": matrix, "lengths": lens, "shape": x.shape, "ws": ws}
        return out, h_n

    def _new_workspace(self, batch: int, steps: int, n_in: int) -> dict:
        rows = self.gate_rows
        return {
            "u_all": np.zeros((steps, batch, n_in)),
            "gates": np.zeros((steps, batch, rows)),
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
        d_state : array (B, H), optional
            Gradient with respect to the final state.
        truncate : int, optional
            Truncated BPTT in chunks of ``truncate`` steps (see
            :mod:`lstm_hw.kernels`); full BPTT when None.
        input_grad : bool
            Compute the input gradient (skip it when ``x`` is data).

        Returns
        -------
        d_x : ndarray (B, T, I), or None when ``input_grad`` is False.
        """
        d_out, use_d_out, trunc = self._prepare_backward(d_out, truncate)
        d_h = check_state("d_state", d_state, self._cache["shape"][0], self.hidden_size)
        return self._backward(d_out, use_d_out, d_h, None, trunc, bool(input_grad))

    def _backward(self, d_out, use_d_out, d_h, d_c, trunc, input_grad):
        cache = self._cache
        n_x, h = self.input_size, self.hidden_size
        w_ih, w_hh = self._split_matrix()
        ws = cache["ws"]
        d_comb, d_x, d_h0 = kernels.gru_backward(
            w_ih,
            w_hh,
            cache["lengths"],
            ws["u_all"],
            ws["gates"],
            d_out,
            use_d_out,
            d_h,
            trunc,
            input_grad,
            ws["dz"],
        )
        g = self.grads
        col_b = n_x + h
        g["weight_ih"][: 2 * h] = d_comb[: 2 * h, :n_x]
        g["weight_ih"][2 * h :] = d_comb[2 * h : 3 * h, :n_x]
        g["weight_hh"][: 2 * h] = d_comb[: 2 * h, n_x:col_b]
        g["weight_hh"][2 * h :] = d_comb[3 * h :, n_x:col_b]
        g["bias_ih"][: 2 * h] = d_comb[: 2 * h, col_b]
        g["bias_ih"][2 * h :] = d_comb[2 * h : 3 * h, col_b]
        g["bias_hh"][: 2 * h] = d_comb[: 2 * h, col_b]
        g["bias_hh"][2 * h :] = d_comb[3 * h :, col_b]
        self.grad_h0 = d_h0
        return d_x if input_grad else None
