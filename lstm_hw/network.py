"""A recurrent layer followed by a dense head: the networks of the experiments."""

from __future__ import annotations

import logging

import numpy as np

from crossbar.validation import check_array, check_choice, fail
from lstm_hw.dense import Dense
from lstm_hw.gru import GRU
from lstm_hw.lstm import (
    LSTM,
    check_seed,
    check_sequence,
    check_truncate,
    resolve_lengths,
)

logger = logging.getLogger(__name__)

OUTPUTS = ("last", "all")
PLAN_KEYS = ("rnn", "head")


def head_seed(seed: int) -> int:
    """A 32-bit seed for the head, mixed from the network's ``seed``.

    An integer hash (the finaliser of the splitmix64 generator) rather than
    ``seed + 1``, with which the head at seed ``s`` would replay the noise of
    the recurrent layer at seed ``s + 1`` (training loops use consecutive
    seeds).
    """
    mask = (1 << 64) - 1
    z = (seed + 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return (z ^ (z >> 31)) & 0xFFFFFFFF


class Network:
    """``rnn`` (LSTM or GRU) followed by ``head`` (Dense).

    Parameters
    ----------
    rnn : LSTM or GRU
    head : Dense
        Its ``in_features`` must equal the hidden size of ``rnn``.
    output : {"last", "all"}
        ``"last"``: the head reads the hidden state at each sequence's last
        valid step and ``y`` is (B, O). ``"all"``: the head reads every step,
        ``y`` is (B, T, O) and is zero at padded steps.
    """

    def __init__(self, rnn, head, output: str = "last"):
        if not isinstance(rnn, LSTM | GRU):
            fail("rnn", "an lstm_hw.LSTM or lstm_hw.GRU", rnn)
        if not isinstance(head, Dense):
            fail("head", "an lstm_hw.Dense", head)
        if head.in_features != rnn.hidden_size:
            fail(
                "head",
                f"a Dense with in_features = {rnn.hidden_size} "
                "(the hidden size of rnn)",
                head,
            )
        check_choice("output", output, OUTPUTS)
        self.rnn = rnn
        self.head = head
        self.output = output
        self._lengths: np.ndarray | None = None
        self._steps = 0

    def __repr__(self) -> str:
        return f"Network({self.rnn!r}, {self.head!r}, output={self.output!r})"

    def forward(self, x, lengths=None, plans=None, seed=0, mask=None):
        """Network outputs for batch-first ``x`` (B, T, I).

        Parameters
        ----------
        x : array (B, T, I)
        lengths : int array (B,), optional
            Valid steps of each sequence; ``mask`` (B, T) is the alternative.
        plans : dict, optional
            ``{"rnn": plan, "head": plan}``; a missing key means the exact
            product for that layer.
        seed : int
            Seed for read noise, in [0, 2**32 - 1]. The recurrent layer uses
            it as is and the head a seed mixed from it (:func:`head_seed`), so
            their noise streams differ.

        Returns
        -------
        y : ndarray (B, O) or (B, T, O)
        """
        x = check_sequence(x, self.rnn.input_size)
        batch, steps, _ = x.shape
        lens = resolve_lengths(lengths, mask, batch, steps)
        plans = self._check_plans(plans)
        seed = check_seed(seed)
        zeros = np.zeros((batch, self.rnn.hidden_size))
        out, state = self.rnn._forward(x, lens, zeros, zeros, plans.get("rnn"), seed)
        self._lengths = lens
        self._steps = steps
        if self.output == "last":
            h_n = state[0] if isinstance(state, tuple) else state
            return self.head._forward(h_n, plans.get("head"), head_seed(seed))
        y = self.head._forward(out, plans.get("head"), head_seed(seed))
        return np.where(self._valid()[:, :, None], y, 0.0)

    def backward(self, dy, truncate=None) -> None:
        """Fill the gradients of both layers from ``dy`` = dL/dy.

        ``dy`` has the shape of ``y``; for ``output="all"`` its entries at
        padded steps are ignored. ``truncate`` is passed to the recurrent
        layer (truncated BPTT over chunks of that many steps).
        """
        if self._lengths is None:
            raise RuntimeError("backward() needs a forward() call first")
        batch = self._lengths.shape[0]
        steps = self._steps
        o = self.head.out_features
        trunc = check_truncate(truncate)
        zeros = np.zeros((batch, self.rnn.hidden_size))
        if self.output == "last":
            dy = check_array("dy", dy, shape=(batch, o))
            # The last valid output is the final state: its gradient enters
            # the recurrence at each sequence's last step.
            dh = np.ascontiguousarray(self.head._backward(dy))
            self.rnn._backward(np.zeros((1, 1, 1)), False, dh, zeros, trunc, False)
        else:
            dy = check_array("dy", dy, shape=(batch, steps, o))
            dy = np.where(self._valid()[:, :, None], dy, 0.0)
            d_out = np.ascontiguousarray(self.head._backward(dy))
            self.rnn._backward(d_out, True, zeros, zeros, trunc, False)

    def _valid(self) -> np.ndarray:
        return np.arange(self._steps)[None, :] < self._lengths[:, None]

    def _check_plans(self, plans) -> dict:
        if plans is None:
            return {}
        if not isinstance(plans, dict):
            fail("plans", "a dict {'rnn': plan, 'head': plan} or None", plans)
        for key in plans:
            if key not in PLAN_KEYS:
                fail("plans", f"a dict with keys among {list(PLAN_KEYS)}", key)
        return plans

    # --------------------------------------------------------- parameters

    def params(self) -> dict[str, np.ndarray]:
        """Flat dict ``"rnn.weight_ih"``, ..., ``"head.bias"`` of the arrays.

        The values are the layers' own arrays, so in-place updates change the
        layers.
        """
        out = {f"rnn.{k}": v for k, v in self.rnn.params.items()}
        out.update({f"head.{k}": v for k, v in self.head.params.items()})
        return out

    def grads(self) -> dict[str, np.ndarray]:
        """Flat dict of the gradient arrays, same keys as :meth:`params`."""
        out = {f"rnn.{k}": v for k, v in self.rnn.grads.items()}
        out.update({f"head.{k}": v for k, v in self.head.grads.items()})
        return out

    def combined_matrices(self) -> dict[str, np.ndarray]:
        """``{"rnn": M, "head": M}``, each layer's combined matrix."""
        return {"rnn": self.rnn.combined_matrix(), "head": self.head.combined_matrix()}

    def set_from_combined(self, matrices: dict) -> None:
        """Load ``{"rnn": M, "head": M}`` (either key may be missing)."""
        if not isinstance(matrices, dict) or not set(matrices) <= set(PLAN_KEYS):
            fail("matrices", f"a dict with keys among {list(PLAN_KEYS)}", matrices)
        if "rnn" in matrices:
            self.rnn.set_from_combined(matrices["rnn"])
        if "head" in matrices:
            self.head.set_from_combined(matrices["head"])

    def combined_grads(self) -> dict[str, np.ndarray]:
        """``{"rnn": dM, "head": dM}`` in the layout of the combined matrices."""
        return {"rnn": self.rnn.combined_grad(), "head": self.head.combined_grad()}
