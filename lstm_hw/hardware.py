"""A network whose weight matrices live on simulated crossbars.

Each layer's combined matrix ``[W_ih | W_hh | b]`` (rows x (I + H + 1)) is
stored on differential pairs. The bias is a constant input driven on
``bias_rows`` extra rows at ``bias_voltage``, as in Li et al., Nature Machine
Intelligence 1, 49-57 (2019); the bias column is shared equally among those
rows. Data inputs are driven at ``v_read / x_scale`` volts per unit so that
the largest training input stays inside the DAC range, hidden states
(``|h| <= 1``) at ``v_read``.

The forward pass reads the arrays through :class:`crossbar.read_kernel.ReadPlan`
objects, so the same numba LSTM kernels run on hardware and on exact weights.
Weights are read back device by device for backpropagation in software.
"""

from __future__ import annotations

import logging

import numpy as np

from crossbar.differential import DifferentialMapping
from crossbar.tiling import Chip, TiledMatrix
from crossbar.validation import ParameterError, check_array

logger = logging.getLogger(__name__)

LAYERS = ("rnn", "head")


class HardwareNetwork:
    """The weight matrices of a :class:`lstm_hw.network.Network` on a chip.

    Parameters
    ----------
    net : Network
        The network whose ``rnn`` and ``head`` matrices are mapped. Digital
        parameters (peephole vectors) stay in software.
    chip : crossbar.tiling.Chip
        Arrays to place the matrices on.
    mapping : crossbar.differential.DifferentialMapping
        Pair layout, conductance per unit weight and reference.
    placement : {"paper", "tiled"}
        ``"paper"``: both layers on array 0, the recurrent layer at corner
        (0, 0) and the output layer in the columns to its right, as in Li et
        al. (2019); an error says what does not fit. ``"tiled"``: each layer
        tiled over arrays of its own.
    v_read : float
        Read voltage per unit of hidden state [V].
    bias_voltage : float
        Voltage on each bias row [V].
    bias_rows : int
        Number of rows carrying the bias of each layer.
    x_scale : float
        Input magnitude that maps to ``v_read`` (>= 1).
    """

    def __init__(
        self,
        net,
        chip: Chip,
        mapping: DifferentialMapping,
        placement: str = "paper",
        v_read: float = 0.2,
        bias_voltage: float = 0.2,
        bias_rows: int = 1,
        x_scale: float = 1.0,
    ):
        self.net = net
        self.chip = chip
        self.mapping = mapping
        self.bias_rows = int(bias_rows)
        self.matrices: dict[str, TiledMatrix] = {}
        self._update_pulses = 0
        self._update_cache: list | None = None
        combined = net.combined_matrices()
        self._shapes = {k: m.shape for k, m in combined.items()}
        n_x = net.rnn.input_size
        hidden = net.rnn.hidden_size
        scales = {
            "rnn": np.concatenate(
                [
                    np.full(n_x, v_read / x_scale),
                    np.full(hidden, v_read),
                    np.full(self.bias_rows, bias_voltage),
                ]
            ),
            "head": np.concatenate(
                [np.full(hidden, v_read), np.full(self.bias_rows, bias_voltage)]
            ),
        }
        shapes = {
            k: (m.shape[0], m.shape[1] - 1 + self.bias_rows)
            for k, m in combined.items()
        }
        if placement == "paper":
            self._place_paper(shapes, scales, v_read)
        elif placement == "tiled":
            for name in LAYERS:
                self.matrices[name] = chip.map_matrix(
                    shapes[name],
                    mapping,
                    v_read=v_read,
                    in_scale=scales[name],
                    name=name,
                )
        else:
            raise ParameterError(
                "parameter 'placement' must be one of ['paper', 'tiled']; "
                f"got {placement!r}"
            )

    def _place_paper(self, shapes, scales, v_read) -> None:
        """Both layers on array 0: the output layer right of the recurrent one,
        or below it when the columns run out (reads are sequential, so layers
        sharing columns never drive rows at the same time)."""
        rnn_rows, rnn_cols = self.mapping.physical_shape(*shapes["rnn"])
        head_rows, head_cols = self.mapping.physical_shape(*shapes["head"])
        p = self.chip.array_params
        if rnn_cols + head_cols <= p.cols:
            corner = (0, rnn_cols)
        elif rnn_rows + head_rows <= p.rows and head_cols <= p.cols:
            corner = (rnn_rows, 0)
        else:
            raise ParameterError(
                f"placement 'paper' needs the recurrent layer ({rnn_rows} x "
                f"{rnn_cols} devices) and the output layer ({head_rows} x "
                f"{head_cols}) on one {p.rows} x {p.cols} array, side by side or "
                "stacked; set mapping.placement = 'tiled' or use a larger array"
            )
        for name, c in (("rnn", (0, 0)), ("head", corner)):
            self.matrices[name] = self.chip.map_matrix(
                shapes[name],
                self.mapping,
                corner=c,
                array=0,
                v_read=v_read,
                in_scale=scales[name],
                name=name,
            )

    # -- layout helpers ----------------------------------------------------------

    def _bias_share(self, n_in: int) -> tuple[np.ndarray, np.ndarray]:
        """For each column of an expanded matrix, the combined-matrix column
        it comes from and the number of bias rows sharing that column."""
        j = np.arange(n_in - 1 + self.bias_rows)
        col = np.minimum(j, n_in - 1)
        return col, np.where(j >= n_in - 1, float(self.bias_rows), 1.0)

    def _expand(self, m: np.ndarray) -> np.ndarray:
        """Share the bias column of a combined matrix among the bias rows."""
        col, shared_by = self._bias_share(m.shape[1])
        return m[:, col] / shared_by

    def _collapse(self, m: np.ndarray) -> np.ndarray:
        n = self.bias_rows
        return np.concatenate([m[:, :-n], m[:, -n:].sum(axis=1, keepdims=True)], 1)

    # -- programming and updates ---------------------------------------------------

    def program(self, scheme=None) -> int:
        """Program the network's current weights once; return pulses spent."""
        combined = self.net.combined_matrices()
        return sum(
            self.matrices[k].program(self._expand(combined[k]), scheme) for k in LAYERS
        )

    def initialize(self, scheme=None) -> int:
        """Start every weight at zero on the devices (see
        :meth:`crossbar.tiling.TiledMatrix.initialize`); return pulses spent.
        The network's own weights only fix the conductance scale when the
        mapping leaves it open."""
        combined = self.net.combined_matrices()
        return sum(
            self.matrices[k].initialize(scheme, self._expand(combined[k]))
            for k in LAYERS
        )

    def apply_update(self, delta: dict[str, np.ndarray], scheme) -> int:
        """Write combined-matrix weight changes with the device's own rule."""
        flat = np.concatenate(
            [
                check_array(f"delta['{k}']", delta[k], shape=self._shapes[k]).ravel()
                for k in LAYERS
            ]
        )
        pulses = sum(
            self.chip.write_changes(k, idx, coef * flat[src], scheme)
            for k, idx, src, coef in self._update_plan()
        )
        self._update_pulses += pulses
        return pulses

    def _update_plan(self) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        """Per array ``(array, idx, src, coef)``: device ``idx[j]`` changes by
        ``coef[j] * d[src[j]]`` for the layers' combined changes ``d``
        flattened one after the other. The bias change is shared among the
        bias rows like the bias itself; both layers are written together, one
        programming call per array."""
        if self._update_cache is None:
            parts: dict[int, list] = {}
            offset = 0
            for name in LAYERS:
                n_out, n_in = self._shapes[name]
                n_exp = self.matrices[name].shape[1]
                col, shared_by = self._bias_share(n_in)
                for k, idx, src, coef in self.matrices[name].update_map():
                    o, e = np.divmod(src, n_exp)
                    parts.setdefault(k, []).append(
                        (idx, offset + o * n_in + col[e], coef / shared_by[e])
                    )
                offset += n_out * n_in
            self._update_cache = []
            for k, items in parts.items():
                idx, src, coef = (np.concatenate(a) for a in zip(*items, strict=True))
                order = np.argsort(idx, kind="stable")
                self._update_cache.append((k, idx[order], src[order], coef[order]))
        return self._update_cache

    # -- reading -------------------------------------------------------------------

    def plans(self, noisy: bool = True) -> dict:
        """Read plans of both layers for the programmed state."""
        return {k: self.matrices[k].plan(noisy=noisy) for k in LAYERS}

    def read_weights(self, noisy: bool = True) -> dict[str, np.ndarray]:
        """Combined matrices as software reads them back from the devices.

        Every array is read once, and layers sharing an array see that read.
        """
        readback = self.chip.read_back(noisy=noisy)
        return {
            k: self._collapse(self.matrices[k].weights(readback=readback))
            for k in LAYERS
        }

    def load_into_network(self, noisy: bool = True) -> None:
        """Set the network's matrices to the weights read back from the chip."""
        self.net.set_from_combined(self.read_weights(noisy=noisy))

    @property
    def pulses(self) -> int:
        """Programming pulses spent on this network so far."""
        return self._update_pulses + sum(m.pulses for m in self.matrices.values())

    def get_state(self) -> dict[str, np.ndarray]:
        """Every array's device state, gate voltages and pulse counts."""
        out = {}
        for k, arr in enumerate(self.chip.arrays):
            for name, value in arr.devices.get_state().items():
                out[f"array{k}/{name}"] = value
        for k, state in self.chip.gate_states.items():
            out[f"gate{k}"] = state.v_gate.copy()
        out["pulses"] = np.array(
            [self._update_pulses] + [self.matrices[k].pulses for k in LAYERS]
        )
        return out

    def set_state(self, state: dict, scheme=None) -> None:
        """Restore what :meth:`get_state` returned (``scheme`` makes gate
        states when the checkpoint has them)."""
        for k, arr in enumerate(self.chip.arrays):
            arr.devices.set_state(
                {n: state[f"array{k}/{n}"] for n in ("g", "t_program", "time")}
            )
            if f"gate{k}" in state:
                if k not in self.chip.gate_states:
                    self.chip.gate_states[k] = scheme.initial_state(arr.shape)
                self.chip.gate_states[k].v_gate[...] = state[f"gate{k}"]
        pulses = [int(p) for p in state["pulses"]]
        self._update_pulses = pulses[0]
        for k, p in zip(LAYERS, pulses[1:], strict=True):
            self.matrices[k].pulses = p

    def device_masks(self) -> list[np.ndarray]:
        """The devices that hold the network: a boolean mask per array of the
        chip (see :meth:`crossbar.tiling.TiledMatrix.device_masks`)."""
        masks = [np.zeros(a.shape, dtype=bool) for a in self.chip.arrays]
        for m in self.matrices.values():
            for k, mask in m.device_masks().items():
                masks[k] |= mask
        return masks

    def conductances(self) -> np.ndarray:
        """Conductances of every array of the chip [S], shape (arrays, rows, cols)."""
        return np.stack([a.g for a in self.chip.arrays])
