"""Weight matrices placed on, and tiled over, physical arrays.

A :class:`Chip` owns a growing list of physical :class:`CrossbarArray` of one
geometry and device type. :meth:`Chip.map_matrix` reserves room for a signed
matrix and returns a :class:`TiledMatrix`:

* placed explicitly at a corner of a given array (several matrices can share
  one array, as the LSTM and output layers of Li et al. 2019 share one
  128 x 64 array); a clear error is raised when they overlap or do not fit;
* or tiled automatically over as many fresh arrays as it needs, each tile
  computing a partial product that is added digitally.

Each physical array is its own circuit: with wire resistance, a tile sees
the effective conductance of its own position in its array.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from crossbar.array import ArrayParams, CrossbarArray
from crossbar.device import DeviceParams
from crossbar.differential import DifferentialMapping
from crossbar.read_kernel import ReadPlan, exact_plan, matvec
from crossbar.validation import ParameterError, check_array, check_number, fail

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tile:
    """The part of a matrix stored on one array.

    ``array`` indexes :attr:`Chip.arrays`; ``(row, col)`` is the corner of the
    physical block in that array; inputs ``in_start:in_stop`` and outputs
    ``out_start:out_stop`` of the logical matrix live there.
    """

    array: int
    row: int
    col: int
    in_start: int
    in_stop: int
    out_start: int
    out_stop: int

    @property
    def n_in(self) -> int:
        return self.in_stop - self.in_start

    @property
    def n_out(self) -> int:
        return self.out_stop - self.out_start


class Chip:
    """Physical arrays of one geometry and device type, filled on demand.

    Parameters
    ----------
    array_params : ArrayParams
        Geometry, wires and converters of every array.
    device : DeviceParams
        Device type of every array.
    rng : numpy.random.Generator
        Shared source of randomness (fabrication, programming, reads).
    """

    def __init__(
        self,
        array_params: ArrayParams | None = None,
        device: DeviceParams | None = None,
        rng: np.random.Generator | None = None,
    ):
        self.array_params = array_params if array_params is not None else ArrayParams()
        self.device = device if device is not None else DeviceParams()
        self.rng = rng if rng is not None else np.random.default_rng()
        self.arrays: list[CrossbarArray] = []
        self._occupied: list[list[tuple[int, int, int, int, str]]] = []
        self.gate_states: dict[int, object] = {}

    def add_array(self) -> int:
        """Fabricate one more array; return its index."""
        self.arrays.append(CrossbarArray(self.array_params, self.device, self.rng))
        self._occupied.append([])
        return len(self.arrays) - 1

    def read_back(self, noisy: bool = True) -> list[np.ndarray]:
        """Every array's conductances as software reads them back [S]."""
        return [a.read_conductances(noisy=noisy) for a in self.arrays]

    def gate_state(self, k: int, scheme):
        """The gate voltages of array ``k`` under a gate-voltage ``scheme``
        (created at its initial voltage on first use)."""
        if k not in self.gate_states:
            self.gate_states[k] = scheme.initial_state(self.arrays[k].shape)
        return self.gate_states[k]

    def write_changes(self, k: int, idx: np.ndarray, values, scheme) -> int:
        """Write conductance changes ``values`` [S] to the devices of array
        ``k`` at the ascending flat indices ``idx`` with the update rule of
        ``scheme``; return the pulses spent."""
        devices = self.arrays[k].devices
        if _is_gate_scheme(scheme):
            state = self.gate_state(k, scheme)
            return int(scheme.apply_update_at(devices, state, idx, values))
        delta = np.zeros(devices.shape)
        mask = np.zeros(devices.shape, dtype=bool)
        delta.ravel()[idx] = values
        mask.ravel()[idx] = True
        return int(scheme.apply_update(devices, delta, mask=mask))

    def _reserve(self, array: int, row: int, col: int, shape, name: str) -> None:
        rows, cols = self.array_params.rows, self.array_params.cols
        if row < 0 or col < 0 or row + shape[0] > rows or col + shape[1] > cols:
            raise ParameterError(
                f"matrix '{name}' needs a {shape[0]} x {shape[1]} block of devices "
                f"at corner ({row}, {col}), which does not fit in a {rows} x {cols} "
                "array; move the corner, use a larger array, or leave 'corner' "
                "unset to tile it over several arrays"
            )
        for r0, c0, nr, nc, other in self._occupied[array]:
            rows_meet = row < r0 + nr and r0 < row + shape[0]
            if rows_meet and col < c0 + nc and c0 < col + shape[1]:
                raise ParameterError(
                    f"matrix '{name}' at corner ({row}, {col}) of array {array} "
                    f"({shape[0]} x {shape[1]} devices) overlaps matrix '{other}' "
                    f"at corner ({r0}, {c0}) ({nr} x {nc} devices)"
                )
        self._occupied[array].append((row, col, shape[0], shape[1], name))

    def map_matrix(
        self,
        shape: tuple[int, int],
        mapping: DifferentialMapping | None = None,
        *,
        corner: tuple[int, int] | None = None,
        array: int | None = None,
        v_read: float = 0.2,
        in_scale=None,
        name: str = "W",
    ) -> TiledMatrix:
        """Reserve devices for a signed matrix of ``shape`` (out, in).

        Parameters
        ----------
        shape : (int, int)
            Logical shape (outputs, inputs) of the weight matrix.
        mapping : DifferentialMapping
            Pair layout and conductance per unit weight.
        corner : (int, int), optional
            Top-left device of the block; with ``array`` (default 0, created
            if needed). Without it the matrix is tiled over fresh arrays.
        v_read : float
            Read voltage per unit input [V] and reference of the output scale.
        in_scale : array (in,), optional
            Voltage per unit of each input [V] (for example a bias row driven
            at its own voltage); defaults to ``v_read`` for every input. The
            conductances are scaled so that the product is unchanged.
        name : str
            Name used in placement errors.
        """
        mapping = mapping if mapping is not None else DifferentialMapping()
        n_out, n_in = int(shape[0]), int(shape[1])
        check_number("shape[0]", n_out, low=1, integer=True)
        check_number("shape[1]", n_in, low=1, integer=True)
        check_number("v_read", v_read, low=0.0, low_open=True)
        if in_scale is None:
            scale = np.full(n_in, float(v_read))
        else:
            scale = check_array("in_scale", in_scale, shape=(n_in,))
            if np.any(scale <= 0):
                raise ParameterError(
                    "parameter 'in_scale' must be > 0 for every input; got "
                    f"minimum {scale.min()!r}"
                )

        rows, cols = self.array_params.rows, self.array_params.cols
        tiles = []
        if corner is not None or array is not None:
            array = 0 if array is None else int(array)
            row, col = (0, 0) if corner is None else (int(corner[0]), int(corner[1]))
            while len(self.arrays) <= array:
                self.add_array()
            self._reserve(array, row, col, mapping.physical_shape(n_out, n_in), name)
            tiles.append(Tile(array, row, col, 0, n_in, 0, n_out))
        else:
            if mapping.layout == "row_pairs":
                max_in, max_out = rows // 2, cols
            else:
                max_in, max_out = rows, cols // 2
            if max_in < 1 or max_out < 1:
                raise ParameterError(
                    f"a {rows} x {cols} array cannot hold one differential pair in "
                    f"layout '{mapping.layout}'"
                )
            for i0 in range(0, n_in, max_in):
                for o0 in range(0, n_out, max_out):
                    i1, o1 = min(i0 + max_in, n_in), min(o0 + max_out, n_out)
                    k = self.add_array()
                    block = mapping.physical_shape(o1 - o0, i1 - i0)
                    self._reserve(k, 0, 0, block, name)
                    tiles.append(Tile(k, 0, 0, i0, i1, o0, o1))
        logger.debug("matrix %s (%d x %d) on %d tile(s)", name, n_out, n_in, len(tiles))
        return TiledMatrix(self, (n_out, n_in), mapping, tiles, float(v_read), scale)


def _is_linear(converter_args: tuple[float, float]) -> bool:
    """Whether a converter with these kernel arguments neither quantizes nor
    saturates."""
    steps, full_scale = converter_args
    return steps == 0.0 and not 0.0 < full_scale < np.inf


def _is_gate_scheme(scheme) -> bool:
    return hasattr(scheme, "initial_state") and hasattr(scheme, "program_target")


class TiledMatrix:
    """A signed matrix stored on differential pairs over one or more tiles.

    Create it with :meth:`Chip.map_matrix`. The product it computes is
    ``y = W @ u`` for inputs ``u`` in units where 1 means ``v_read`` volts.
    """

    def __init__(self, chip, shape, mapping, tiles, v_read, in_scale):
        self.chip = chip
        self.shape = shape
        self.mapping = mapping
        self.tiles: list[Tile] = tiles
        self.v_read = v_read
        self.in_scale = in_scale
        self.g_unit: float | None = mapping.g_unit
        self.pulses = 0
        self._plan_cache: tuple | None = None
        self._update_map: list | None = None
        self._linear_base: tuple | None = None

    # -- geometry helpers --------------------------------------------------------

    def _block_slices(self, tile: Tile):
        nr, nc = self.mapping.physical_shape(tile.n_out, tile.n_in)
        return slice(tile.row, tile.row + nr), slice(tile.col, tile.col + nc)

    def device_masks(self) -> dict[int, np.ndarray]:
        """The devices that hold this matrix: a boolean mask per array it
        uses, keyed by the array's index in :attr:`Chip.arrays`."""
        masks: dict[int, np.ndarray] = {}
        for tile in self.tiles:
            shape = self.chip.arrays[tile.array].shape
            mask = masks.setdefault(tile.array, np.zeros(shape, dtype=bool))
            mask[self._block_slices(tile)] = True
        return masks

    def window(self, scheme=None) -> tuple[float, float]:
        """The conductance range targets are placed in [S]."""
        if scheme is not None and hasattr(scheme, "conductance_range"):
            return tuple(float(x) for x in scheme.conductance_range())
        return (self.chip.device.g_min, self.chip.device.g_max)

    def _row_factor(self) -> np.ndarray:
        # Conductances are scaled so that inputs at their own voltage give W u.
        return self.v_read / self.in_scale

    # -- programming -------------------------------------------------------------

    def program(self, w, scheme=None) -> int:
        """Program the weights ``w`` (out, in); return the pulses spent.

        ``scheme`` is a :class:`crossbar.programming.WriteToTarget` (default,
        one shot) or a :class:`crossbar.programming.GateVoltageScheme`.
        """
        from crossbar.programming import WriteToTarget

        w = check_array("w", w, shape=self.shape)
        scheme = scheme if scheme is not None else WriteToTarget()
        window = self.window(scheme)
        w_dev = self._fix_g_unit(w, window)
        g_pos, g_neg = self.mapping.targets(w_dev, window, self.g_unit)

        pulses = 0
        for tile in self.tiles:
            arr = self.chip.arrays[tile.array]
            sl_r, sl_c = self._block_slices(tile)
            sub = (
                slice(tile.out_start, tile.out_stop),
                slice(tile.in_start, tile.in_stop),
            )
            block = self.mapping.assemble(g_pos[sub], g_neg[sub])
            target = arr.devices.g.copy()
            target[sl_r, sl_c] = block
            mask = np.zeros(arr.shape, dtype=bool)
            mask[sl_r, sl_c] = True
            if _is_gate_scheme(scheme):
                state = self.chip.gate_state(tile.array, scheme)
                pulses += int(scheme.program_target(arr.devices, state, target, mask))
            else:
                result = scheme.program(arr.devices, target, mask=mask)
                pulses += int(getattr(result, "pulses", result))
        self.pulses += pulses
        return pulses

    def _fix_g_unit(self, w: np.ndarray, window) -> np.ndarray:
        """``w`` in device units; fixes the conductance per unit weight from
        ``w`` when the mapping leaves it to the first weights programmed."""
        w_dev = w * self._row_factor()[None, :]
        if self.g_unit is None:
            self.g_unit = self.mapping.resolve_g_unit(w_dev, window)
        return w_dev

    def initialize(self, scheme=None, w=None) -> int:
        """Start every pair of the matrix at zero weight; return the pulses.

        A gate-voltage scheme RESETs each device and SETs it at its initial
        gate voltage, as Li et al. (2019) start in-situ training, so the
        weights are zero up to programming noise. Any other scheme programs
        zero weights with one-shot writes. ``w`` (out, in) fixes the
        conductance per unit weight when the mapping leaves it to the weights
        (``g_unit=None``); it is not programmed.
        """
        from crossbar.programming import WriteToTarget

        scheme = scheme if scheme is not None else WriteToTarget()
        if self.g_unit is None:
            if w is None:
                fail(
                    "w",
                    "the weights when the mapping has g_unit=None",
                    w,
                    "they fix the conductance per unit weight",
                )
            self._fix_g_unit(check_array("w", w, shape=self.shape), self.window(scheme))
        if not _is_gate_scheme(scheme):
            return self.program(np.zeros(self.shape), WriteToTarget())
        pulses = 0
        for k, mask in self.device_masks().items():
            state = self.chip.gate_state(k, scheme)
            pulses += int(scheme.initialize(self.chip.arrays[k].devices, state, mask))
        self.pulses += pulses
        return pulses

    def update_map(self) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        """How a weight change ``dw`` (out, in) reaches the devices.

        Per tile ``(array, idx, src, coef)``: the device at flat index
        ``idx[j]`` of that array (ascending) changes by ``coef[j] *
        dw.flat[src[j]]`` [S]. Each pair gets ``+dw g_unit / 2`` on its
        positive device and ``-dw g_unit / 2`` on its negative one (in the
        conductance units of its input row), so that the weight moves by
        ``dw`` when the devices respond linearly.
        """
        if self.g_unit is None:
            raise ParameterError(
                "the matrix has no 'g_unit' yet: program it once before updates"
            )
        if self._update_map is None:
            n_out, n_in = self.shape
            src = np.arange(n_out * n_in).reshape(n_out, n_in)
            half = np.broadcast_to(0.5 * self.g_unit * self._row_factor(), self.shape)
            cols = self.chip.array_params.cols
            self._update_map = []
            for tile in self.tiles:
                sl_r, sl_c = self._block_slices(tile)
                sub = (
                    slice(tile.out_start, tile.out_stop),
                    slice(tile.in_start, tile.in_stop),
                )
                idx = (
                    np.arange(sl_r.start, sl_r.stop)[:, None] * cols
                    + np.arange(sl_c.start, sl_c.stop)[None, :]
                )
                self._update_map.append(
                    (
                        tile.array,
                        idx.ravel(),
                        self.mapping.assemble(src[sub], src[sub]).ravel(),
                        self.mapping.assemble(half[sub], -half[sub]).ravel(),
                    )
                )
        return self._update_map

    def apply_update(self, dw, scheme) -> int:
        """Write a weight change ``dw`` (out, in) with the device's own rule.

        ``scheme`` is a :class:`crossbar.programming.GateVoltageScheme` or
        :class:`crossbar.programming.IncrementalPulses`; see
        :meth:`update_map` for how ``dw`` is shared by a pair. Returns the
        pulses spent.
        """
        dw = check_array("dw", dw, shape=self.shape).ravel()
        pulses = sum(
            self.chip.write_changes(k, idx, coef * dw[src], scheme)
            for k, idx, src, coef in self.update_map()
        )
        self.pulses += pulses
        return pulses

    # -- reading -----------------------------------------------------------------

    def conductance_blocks(self) -> list[np.ndarray]:
        """The physical conductance block of every tile [S] (copies)."""
        out = []
        for tile in self.tiles:
            sl_r, sl_c = self._block_slices(tile)
            out.append(self.chip.arrays[tile.array].g[sl_r, sl_c].copy())
        return out

    def weights(self, noisy: bool = True, readback=None) -> np.ndarray:
        """The weights as software reads them back from the devices (out, in).

        Each device is read on its own, with read noise unless ``noisy`` is
        False. This is what in-situ training backpropagates through.
        ``readback`` (from :meth:`Chip.read_back`) reuses one read of every
        array for several matrices.
        """
        if self.g_unit is None:
            raise ParameterError(
                "the matrix has no 'g_unit' yet: program it before reading it back"
            )
        w = np.zeros(self.shape)
        for tile in self.tiles:
            sl_r, sl_c = self._block_slices(tile)
            if readback is None:
                g = self.chip.arrays[tile.array].read_conductances(noisy=noisy)
            else:
                g = readback[tile.array]
            block = g[sl_r, sl_c]
            w[tile.out_start : tile.out_stop, tile.in_start : tile.in_stop] = (
                self.mapping.weights(block, tile.n_out, tile.n_in, self.g_unit)
            )
        return w / self._row_factor()[None, :]

    def plan(self, noisy: bool = True) -> ReadPlan:
        """The numba read plan of the programmed state (IR drop included).

        With an ideal ADC the plan is linear: tiles, pairs and scales are
        folded into one matrix (see :mod:`crossbar.read_kernel`). Plans are
        kept until a device of the matrix's arrays changes.
        """
        if self.g_unit is None:
            raise ParameterError(
                "the matrix has no 'g_unit' yet: program it before reading it"
            )
        arrays = self.chip.arrays
        key = (noisy, tuple(arrays[t.array].devices.version for t in self.tiles))
        if self._plan_cache is not None and self._plan_cache[0] == key:
            return self._plan_cache[1]
        p = self.chip.array_params
        if _is_linear(p.adc.kernel_args()):
            plan = self._linear_plan(noisy)
        else:
            plan = self._tile_plan(noisy)
        self._plan_cache = (key, plan)
        return plan

    def _linear_plan(self, noisy: bool) -> ReadPlan:
        """One (in, out) matrix in output units and its read-noise variances."""
        n_out, n_in = self.shape
        sigma = self.chip.device.read_noise if noisy else 0.0
        if self._linear_base is None:
            # Volts per input unit times output units per ampere, per input.
            scale = self.in_scale / (self.g_unit * self.v_read)
            dac_steps, dac_full_scale = self.chip.array_params.dac.kernel_args()
            base = exact_plan(np.zeros((n_out, n_in)))._replace(
                in_scale=np.array(self.in_scale, dtype=np.float64)[None],
                dac_steps=dac_steps,
                dac_full_scale=dac_full_scale,
            )
            self._linear_base = (base, scale[:, None])
        base, scale = self._linear_base
        single = len(self.tiles) == 1
        w = np.zeros((n_in, n_out)) if not single else None
        q = np.zeros((n_in, n_out)) if sigma > 0.0 and not single else None
        for tile in self.tiles:
            arr = self.chip.arrays[tile.array]
            sl_r, sl_c = self._block_slices(tile)
            ins = slice(tile.in_start, tile.in_stop)
            outs = slice(tile.out_start, tile.out_stop)
            dev = arr.devices.g if not arr.device.drifts else arr.g
            if arr.params.has_wires:
                eff = arr.effective_conductance()[sl_r, sl_c]
            else:
                eff = dev[sl_r, sl_c]
            # The pair matrices transposed, (in, out): views of the block.
            pos, neg = (m.T for m in self.mapping.split(eff, tile.n_out, tile.n_in))
            part = (pos - neg) * scale[ins]
            if single:
                w = part
            else:
                w[ins, outs] = part
            if sigma > 0.0:
                # Both devices of a pair add their own noise to the output.
                d_pos, d_neg = (
                    m.T
                    for m in self.mapping.split(dev[sl_r, sl_c], tile.n_out, tile.n_in)
                )
                var = (d_pos**2 + d_neg**2) * (sigma * scale[ins]) ** 2
                if single:
                    q = var
                else:
                    q[ins, outs] = var
        return base._replace(
            g=np.ascontiguousarray(w)[None],
            q=np.ascontiguousarray(q)[None] if sigma > 0.0 else base.q,
            noisy=sigma > 0.0,
        )

    def _tile_plan(self, noisy: bool) -> ReadPlan:
        """Tile by tile, for an ADC that quantizes or saturates."""
        n_out, n_in = self.shape
        pair_rows = self.mapping.layout == "row_pairs"
        n_k = max(t.n_in for t in self.tiles)
        n_c = max(t.n_out if pair_rows else 2 * t.n_out for t in self.tiles)
        n_t = len(self.tiles)
        sigma = self.chip.device.read_noise if noisy else 0.0
        g = np.zeros((n_t, n_k, n_c))
        # Without read noise the kernel never looks at q.
        q = np.zeros((n_t, n_k, n_c) if sigma > 0.0 else (n_t, 1, 1))
        in_idx = np.full((n_t, n_k), -1, dtype=np.int64)
        in_scale = np.zeros((n_t, n_k))
        ch_out = np.full((n_t, n_c), -1, dtype=np.int64)
        ch_sign = np.zeros((n_t, n_c))

        for t, tile in enumerate(self.tiles):
            arr = self.chip.arrays[tile.array]
            sl_r, sl_c = self._block_slices(tile)
            eff = arr.effective_conductance()[sl_r, sl_c]
            dev = arr.g[sl_r, sl_c] if sigma > 0.0 else None
            n, m = tile.n_in, tile.n_out
            in_idx[t, :n] = np.arange(tile.in_start, tile.in_stop)
            in_scale[t, :n] = self.in_scale[tile.in_start : tile.in_stop]
            outs = np.arange(tile.out_start, tile.out_stop)
            if pair_rows:
                g[t, :n, :m] = eff[:n] - eff[n:]
                if dev is not None:
                    q[t, :n, :m] = sigma**2 * (dev[:n] ** 2 + dev[n:] ** 2)
                ch_out[t, :m] = outs
                ch_sign[t, :m] = 1.0
            else:
                g[t, :n, : 2 * m] = eff
                if dev is not None:
                    q[t, :n, : 2 * m] = sigma**2 * dev**2
                ch_out[t, :m] = outs
                ch_out[t, m : 2 * m] = outs
                ch_sign[t, :m] = 1.0
                ch_sign[t, m : 2 * m] = -1.0

        p = self.chip.array_params
        return ReadPlan(
            g=g,
            q=q,
            in_idx=in_idx,
            in_scale=in_scale,
            ch_out=ch_out,
            ch_sign=ch_sign,
            dac_steps=p.dac.kernel_args()[0],
            dac_full_scale=p.dac.kernel_args()[1],
            adc_steps=p.adc.kernel_args()[0],
            adc_full_scale=p.adc.kernel_args()[1],
            out_scale=1.0 / (self.g_unit * self.v_read),
            n_in=n_in,
            n_out=n_out,
            noisy=sigma > 0.0,
            linear=False,
        )

    def matvec(self, u, noisy: bool = True) -> np.ndarray:
        """``W @ u`` computed on the arrays for a batch ``u`` (B, in)."""
        seed = int(self.chip.rng.integers(2**62)) if noisy else None
        return matvec(self.plan(noisy=noisy), u, seed=seed)
