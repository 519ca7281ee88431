"""One physical crossbar array: devices, wires, DAC and ADC.

Inputs are voltages on the rows, outputs are currents on the columns. An
ideal array computes ``I = V @ G``. This class adds what a real 1T1R array
does to that product: the devices' own state (levels, window, stuck devices,
drift, programming noise, see :mod:`crossbar.device`), read noise drawn fresh
on every read, the DAC on the inputs, the ADC on the outputs and, when wire
resistance is set, the exact IR drop of :mod:`crossbar.ir_drop`.

IR drop enters every read through :meth:`CrossbarArray.effective_conductance`:
the circuit is linear, so for a programmed state there is one matrix
``G_eff`` with ``I = V @ G_eff``. It is computed once per programmed state
and reused until the conductances change (a write, or drift).

A read of a batch costs one pass of the DAC over the inputs (bit for bit
:func:`crossbar.converters.quantize_symmetric`), the float64 product
``V @ G_eff`` and one pass of the ADC. With read noise it also costs the
float32 product ``V**2 @ (sigma G)**2``, which gives each column current its
exact Gaussian variance, and one draw per column and input vector from
:mod:`crossbar.gaussian`, seeded for every read from the array's generator;
adding the noise is fused with the ADC pass.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from crossbar.converters import ADC, DAC, quantize_symmetric
from crossbar.device import DeviceArray, DeviceParams
from crossbar.gaussian import fill_normal, seed_from, seed_state
from crossbar.jit import njit
from crossbar.validation import ParameterError, check_array, check_number

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArrayParams:
    """Geometry and periphery of one array.

    Attributes
    ----------
    rows, cols : int
        Number of word lines (inputs) and bit lines (outputs). The default
        128 x 64 is the array of Li et al., Nature Machine Intelligence 1,
        49-57 (2019).
    r_row, r_col : float
        Wire resistance per segment of a row and of a column line [ohm];
        0 means ideal wires (no IR drop).
    r_driver, r_sense : float
        Extra series resistance of each row driver and of each sense
        amplifier input [ohm]; used only when wire resistance is set.
    dac, adc : DAC, ADC
        Input and output converters; the defaults are ideal.
    """

    rows: int = 128
    cols: int = 64
    r_row: float = 0.0
    r_col: float = 0.0
    r_driver: float = 0.0
    r_sense: float = 0.0
    dac: DAC = field(default_factory=DAC)
    adc: ADC = field(default_factory=ADC)

    def __post_init__(self):
        check_number("rows", self.rows, low=1, integer=True)
        check_number("cols", self.cols, low=1, integer=True)
        for name in ("r_row", "r_col", "r_driver", "r_sense"):
            check_number(name, getattr(self, name), low=0.0)
        if (self.r_row > 0) != (self.r_col > 0):
            raise ParameterError(
                "parameters 'r_row' and 'r_col' must both be 0 (ideal wires) or "
                f"both > 0; got r_row={self.r_row!r}, r_col={self.r_col!r}"
            )
        if not isinstance(self.dac, DAC):
            raise ParameterError(f"parameter 'dac' must be a DAC; got {self.dac!r}")
        if not isinstance(self.adc, ADC):
            raise ParameterError(f"parameter 'adc' must be an ADC; got {self.adc!r}")

    @property
    def has_wires(self) -> bool:
        """True when wire resistance is set and reads solve the circuit."""
        return self.r_row > 0.0


class _ArrayPlan(NamedTuple):
    """What a read of one array needs, kept per programmed state."""

    g: np.ndarray  # (n_in, n_out) effective conductance [S], float64, C order
    q: np.ndarray | None  # (n_in, n_out) float32 scaled read-noise variance
    std_scale: float  # column noise std [A] = sqrt(u**2 @ q) * std_scale
    dac_steps: float
    dac_full_scale: float  # [V]
    adc_steps: float
    adc_full_scale: float  # [A]


# quantize_symmetric divides twice per entry, which bounds a loop of it by
# the division throughput. The stages below find the level index with a
# multiply instead whenever that provably gives the same index: ``x * (n /
# fs)`` is within 4 ulp of the reference operand ``x / fs * n``, so for
# operands below _FAST_MAX_OPERAND it lies within 3e-7 of it, and rounding
# agrees unless the operand is within _TIE_TOL of a rounding tie. A batch with
# such an entry (or with NaN or inf) is redone with quantize_symmetric itself.
_FAST_MAX_STEPS = 2.0**24
_FAST_MAX_OPERAND = 2.0**29
_TIE_TOL = 1e-6


@njit
def _fast_setup(n_steps: float, full_scale: float):
    """``(usable, c, lo, hi, t_max)`` for :func:`_fast_level`."""
    fs = abs(full_scale)
    usable = 0.0 < n_steps <= _FAST_MAX_STEPS and 0.0 < fs < np.inf
    c = n_steps / fs if usable else 0.0
    if full_scale > 0.0:
        # Clipping the index gives the same level as clipping x first, and
        # makes the operand's size irrelevant.
        return usable, c, -n_steps, n_steps, np.inf
    return usable, c, -np.inf, np.inf, _FAST_MAX_OPERAND


@njit
def _fast_level(x: float, c: float, lo: float, hi: float, t_max: float):
    """Level index of ``x`` and whether it is undecided (see above)."""
    t = x * c
    m = np.rint(t)
    # Both comparisons are False for NaN and inf: undecided as well.
    decided = (abs(t - m) <= 0.5 - _TIE_TOL) & (abs(t) <= t_max)
    return min(max(m, lo), hi), not decided


@njit
def _dac_stage(v, n_steps: float, full_scale: float, noisy: bool):
    """Row voltages [V] through the DAC, and ``(V / full_scale)**2`` in float32.

    ``v`` is 2-D and ``full_scale > 0`` (a DAC saturates). Returns ``(volts,
    u_sq, finite)``: ``u_sq`` is empty unless ``noisy``, ``finite`` is False
    when ``v`` holds NaN or inf.
    """
    rows, cols = v.shape
    fs = full_scale
    inv_fs = 1.0 / fs
    volts = np.empty((rows, cols))
    u_sq = np.empty((rows, cols) if noisy else (0, 0), dtype=np.float32)
    usable, c, lo, hi, t_max = _fast_setup(n_steps, full_scale)
    if usable:
        undecided = 0
        for b in range(rows):
            for k in range(cols):
                m, und = _fast_level(v[b, k], c, lo, hi, t_max)
                undecided += und
                x = m / n_steps * fs
                volts[b, k] = x
                if noisy:
                    u = x * inv_fs
                    u_sq[b, k] = u * u
        if undecided == 0:
            return volts, u_sq, True
    bad = 0
    for b in range(rows):
        for k in range(cols):
            x = v[b, k]
            bad += not (abs(x) < np.inf)
            x = quantize_symmetric(x, n_steps, full_scale)
            volts[b, k] = x
            if noisy:
                u = x * inv_fs
                u_sq[b, k] = u * u
    return volts, u_sq, bad == 0


@njit
def _adc_stage(current, n_steps: float, full_scale: float):
    """Column currents [A] through the ADC, as a new array."""
    rows, cols = current.shape
    fs = abs(full_scale)
    out = np.empty((rows, cols))
    usable, c, lo, hi, t_max = _fast_setup(n_steps, full_scale)
    if usable:
        undecided = 0
        for b in range(rows):
            for k in range(cols):
                m, und = _fast_level(current[b, k], c, lo, hi, t_max)
                undecided += und
                out[b, k] = m / n_steps * fs
        if undecided == 0:
            return out
    for b in range(rows):
        for k in range(cols):
            out[b, k] = quantize_symmetric(current[b, k], n_steps, full_scale)
    return out


@njit
def _noisy_adc_stage(
    current, var, std_scale: float, seed, n_steps: float, full_scale: float
):
    """Column currents [A] with read noise, through the ADC, as a new array.

    Entry ``(b, c)`` gains ``sqrt(var[b, c]) * std_scale * z``, ``z`` a
    standard normal of :mod:`crossbar.gaussian` seeded with ``seed`` and drawn
    in row-major order, before it is quantized.
    """
    rows, cols = current.shape
    noisy = np.empty((rows, cols))
    state = np.empty(4, dtype=np.uint64)
    seed_state(state, seed)
    fill_normal(state, noisy)
    for b in range(rows):
        for k in range(cols):
            # The standard deviation is rounded to float32 (see the plan).
            std = np.float64(np.sqrt(var[b, k])) * std_scale
            noisy[b, k] = current[b, k] + std * noisy[b, k]
    return _adc_stage(noisy, n_steps, full_scale)


class CrossbarArray:
    """A ``rows x cols`` array of devices of one type.

    Parameters
    ----------
    params : ArrayParams
        Geometry, wires and converters.
    device : DeviceParams
        The device type of every cell.
    rng : numpy.random.Generator
        Source of every random draw: fabrication, programming and read noise.
    g_init : float or ndarray, optional
        Conductance right after fabrication [S]; defaults to the device's
        ``g_min`` (see :class:`crossbar.device.DeviceArray`).
    """

    def __init__(
        self,
        params: ArrayParams | None = None,
        device: DeviceParams | None = None,
        rng: np.random.Generator | None = None,
        g_init=None,
    ):
        self.params = params if params is not None else ArrayParams()
        self.device = device if device is not None else DeviceParams()
        if rng is None:
            rng = np.random.default_rng()
        if not isinstance(rng, np.random.Generator):
            raise ParameterError(
                f"parameter 'rng' must be a numpy.random.Generator; got {rng!r}"
            )
        self.rng = rng
        shape = (self.params.rows, self.params.cols)
        self.devices = DeviceArray(self.device, shape, rng, g_init=g_init)
        self._solver = None
        self._geff_key: int | None = None
        self._plans: dict = {}
        self._geff: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return (self.params.rows, self.params.cols)

    @property
    def g(self) -> np.ndarray:
        """Conductances at the current time, drift included [S] (a copy)."""
        return self.devices.conductance()

    # -- IR drop ---------------------------------------------------------------

    def effective_conductance(self) -> np.ndarray:
        """``G_eff`` (rows, cols) [S] with ``I = V @ G_eff`` for this state.

        Without wire resistance this is the conductance matrix itself. With it,
        the circuit is solved exactly once per programmed state and reused.
        Rows and columns at the edges of the array whose devices all have
        zero conductance (unused parts of a partly filled array with
        ``g_min = 0``) carry no device current, so they are folded exactly into
        the driver and sense resistances and the smaller circuit is solved.
        """
        if not self.params.has_wires:
            return self.g
        if self._geff is not None and self._geff_key == self.devices.version:
            return self._geff
        g = self.g
        rows_used = np.flatnonzero(g.any(axis=1))
        cols_used = np.flatnonzero(g.any(axis=0))
        g_eff = np.zeros_like(g)
        if rows_used.size:
            r0, r1 = int(rows_used[0]), int(rows_used[-1]) + 1
            c0, c1 = int(cols_used[0]), int(cols_used[-1]) + 1
            solver = self._solver_for(r0, r1, c0, c1)
            g_eff[r0:r1, c0:c1] = solver.effective_conductance(g[r0:r1, c0:c1])
        g_eff.flags.writeable = False
        self._geff = g_eff
        self._geff_key = self.devices.version
        return g_eff

    def _solver_for(self, r0: int, r1: int, c0: int, c1: int):
        """The solver of the sub-circuit rows r0:r1, columns c0:c1.

        Columns before c0 only lengthen each row's wire from its driver, rows
        after r1 only lengthen each column's wire to its sense amplifier; rows
        before r0 and columns after c1 carry no current.
        """
        key = (r0, r1, c0, c1)
        if self._solver is None or self._solver[0] != key:
            from crossbar.ir_drop import IRDropSolver

            p = self.params
            solver = IRDropSolver(
                r1 - r0,
                c1 - c0,
                p.r_row,
                p.r_col,
                r_driver=p.r_driver + c0 * p.r_row,
                r_sense=p.r_sense + (p.rows - r1) * p.r_col,
            )
            self._solver = (key, solver)
        return self._solver[1]

    def ir_drop_error(self) -> np.ndarray:
        """Relative error map ``(G_eff - G) / max(G)`` of this state."""
        g = self.g
        return (self.effective_conductance() - g) / max(float(g.max()), 1e-30)

    # -- reads -----------------------------------------------------------------

    def _single_plan(
        self, g_eff: np.ndarray, g_dev: np.ndarray, noisy: bool
    ) -> _ArrayPlan:
        sigma = self.device.read_noise if noisy else 0.0
        p = self.params
        dac_steps, dac_full_scale = p.dac.kernel_args()
        adc_steps, adc_full_scale = p.adc.kernel_args()
        q = None
        std_scale = 0.0
        if sigma > 0.0:
            q64 = (sigma * np.asarray(g_dev, dtype=np.float64)) ** 2
            # float32 is enough for the variance: it only scales a noise draw,
            # and its 1e-7 relative error is far below any read noise. A power
            # of two brings the largest coefficient near 1, so that small
            # conductances neither underflow nor lose digits in float32.
            q_max = float(q64.max())
            scale = 2.0 ** math.frexp(math.sqrt(q_max))[1] if q_max > 0.0 else 1.0
            q = np.ascontiguousarray(q64 / (scale * scale), dtype=np.float32)
            # Voltages enter as u = V / v_max, so std = sqrt(u**2 @ q) * this.
            std_scale = abs(dac_full_scale) * scale
        return _ArrayPlan(
            g=np.ascontiguousarray(g_eff, dtype=np.float64),
            q=q,
            std_scale=std_scale,
            dac_steps=dac_steps,
            dac_full_scale=dac_full_scale,
            adc_steps=adc_steps,
            adc_full_scale=adc_full_scale,
        )

    def read(self, v, noisy: bool = True) -> np.ndarray:
        """Column currents [A] for row voltages ``v`` [V].

        ``v`` has shape (rows,) or (batch, rows); the result has shape (cols,)
        or (batch, cols). The DAC quantizes and clips ``v``, read noise (unless
        ``noisy`` is False) and IR drop act on the product, the ADC quantizes
        and saturates the currents.
        """
        return self._read(v, transposed=False, noisy=noisy)

    def read_transposed(self, v, noisy: bool = True) -> np.ndarray:
        """Row currents [A] for voltages ``v`` [V] applied to the columns.

        The backward direction of an array used for a hardware backward pass:
        ``I = V @ G.T`` for ideal wires. With wire resistance, the column lines
        are driven from their sense-amplifier end (after the last row) and the
        rows are sensed at their driver end (column 0), so each line keeps its
        own wire resistance and the mirrored circuit is solved exactly.
        """
        return self._read(v, transposed=True, noisy=noisy)

    def _read(self, v, transposed: bool, noisy: bool) -> np.ndarray:
        n_in = self.params.cols if transposed else self.params.rows
        v = np.asarray(v, dtype=np.float64)
        if v.ndim not in (1, 2) or v.shape[-1] != n_in:
            raise ParameterError(
                f"parameter 'v' must have shape ({n_in},) or (batch, {n_in}); "
                f"got shape {v.shape}"
            )
        single = v.ndim == 1
        plan = self._plan(transposed, noisy)
        noisy = plan.q is not None

        # DAC, with the finite check of v in the same pass.
        volts, u_sq, finite = _dac_stage(
            v.reshape(1, n_in) if single else v,
            plan.dac_steps,
            plan.dac_full_scale,
            noisy,
        )
        if not finite:
            check_array("v", v)  # names the NaN or inf entries
        current = volts @ plan.g
        if noisy:
            # Column variance sum_k V_k**2 (sigma G_k)**2, scaled (see the plan).
            var = u_sq @ plan.q
            # The noise of this read is seeded from the array's generator.
            current = _noisy_adc_stage(
                current,
                var,
                plan.std_scale,
                seed_from(self.rng),
                plan.adc_steps,
                plan.adc_full_scale,
            )
        elif plan.adc_steps > 0.0 or 0.0 < plan.adc_full_scale < math.inf:
            current = _adc_stage(current, plan.adc_steps, plan.adc_full_scale)
        return current[0] if single else current

    def _plan(self, transposed: bool, noisy: bool) -> _ArrayPlan:
        # Plans are kept per programmed state: a read then costs the kernels only.
        key = (transposed, noisy)
        cached = self._plans.get(key)
        if cached is not None and cached[0] == self.devices.version:
            return cached[1]
        g_dev = self.g
        if transposed:
            g_eff = self._transposed_effective(g_dev)
            g_dev = g_dev.T
        else:
            g_eff = self.effective_conductance()
        plan = self._single_plan(g_eff, g_dev, noisy)
        self._plans[key] = (self.devices.version, plan)
        return plan

    def _transposed_effective(self, g: np.ndarray) -> np.ndarray:
        if not self.params.has_wires:
            return np.ascontiguousarray(g.T)
        from crossbar.ir_drop import effective_conductance

        p = self.params
        # Mirror so that the drivers sit at index 0 and the sense ends last.
        mirrored = np.ascontiguousarray(g.T[::-1, ::-1])
        g_eff = effective_conductance(
            mirrored, p.r_col, p.r_row, r_driver=p.r_sense, r_sense=p.r_driver
        )
        return np.ascontiguousarray(g_eff[::-1, ::-1])

    def read_conductances(self, noisy: bool = True) -> np.ndarray:
        """Conductances as software sees them when reading the array back [S].

        Each device is read on its own (no IR drop), with fresh read noise
        unless ``noisy`` is False.
        """
        return self.devices.read_back(noisy=noisy)

    # -- programming -----------------------------------------------------------

    def program(self, target, scheme=None, mask=None) -> int:
        """Write target conductances [S] with ``scheme``; return pulses spent.

        ``scheme`` defaults to one-shot
        :class:`crossbar.programming.WriteToTarget`. ``mask`` selects the devices
        to write (others are left alone).
        """
        from crossbar.programming import WriteToTarget

        target = check_array("target", target, shape=self.shape)
        if scheme is None:
            scheme = WriteToTarget()
        result = scheme.program(self.devices, target, mask=mask)
        return int(getattr(result, "pulses", result))

    def advance_time(self, dt: float) -> None:
        """Let ``dt`` seconds pass (conductances drift if the device drifts)."""
        self.devices.advance_time(dt)
