"""Three ways to program the devices of a :class:`~crossbar.device.DeviceArray`.

* :class:`WriteToTarget`: one pulse straight to a target conductance, or
  write-verify (read back, rewrite what is off, repeat).
* :class:`GateVoltageScheme`: the 1T1R scheme of Li et al. 2019, where a SET
  pulse's final conductance is fixed by the transistor's gate voltage.
* :class:`IncrementalPulses`: identical pulses that each nudge the
  conductance up or down, for pulse-based training.

Every scheme changes conductances only through the device array, so the
window, the levels, the stuck devices and the noise of the device model all
apply. Pulse counts count the pulses that reach working (not stuck) devices.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np

from crossbar.device import DeviceArray, legal_value, noise_sigma, reachable_values
from crossbar.jit import njit
from crossbar.validation import check_array, check_number, fail

logger = logging.getLogger(__name__)


class WriteVerifyWarning(UserWarning):
    """Write-verify stopped with devices still outside the tolerance."""


@dataclass(frozen=True)
class ProgramResult:
    """Outcome of one programming call.

    Attributes
    ----------
    pulses : int
        Programming pulses spent on working devices.
    iterations : int
        Write rounds (1 for a one-shot write).
    converged : int
        Selected devices within the tolerance at the end.
    selected : int
        Devices that were asked to be programmed.
    """

    pulses: int
    iterations: int
    converged: int
    selected: int

    @property
    def not_converged(self) -> int:
        return self.selected - self.converged


def _check_devices(devices) -> None:
    if not isinstance(devices, DeviceArray):
        fail("devices", "a DeviceArray", devices)


@dataclass(frozen=True)
class WriteToTarget:
    """Program each device straight to a target conductance.

    Attributes
    ----------
    verify : bool
        ``False``: one pulse per device. ``True``: write-verify, which reads
        the array back (with read noise) after each round and rewrites only
        the devices farther than ``tolerance`` from their reachable target.
    tolerance : float
        Accepted distance [S] between a device's read value and the closest
        conductance it can hold (target clipped to its window and put on a
        level), ``>= 0``.
    max_iterations : int
        Maximum number of write rounds in write-verify, ``>= 1``.
    """

    verify: bool = False
    tolerance: float = 1e-6
    max_iterations: int = 20

    def __post_init__(self) -> None:
        if not isinstance(self.verify, bool | np.bool_):
            fail("verify", "True or False", self.verify)
        check_number("tolerance", self.tolerance, low=0.0)
        check_number("max_iterations", self.max_iterations, low=1, integer=True)

    def program(self, devices: DeviceArray, target, mask=None) -> ProgramResult:
        """Program the selected devices to ``target`` [S].

        Without verification ``converged`` counts the devices whose true
        conductance ended within the tolerance. With verification it counts
        the devices whose last read was within the tolerance; a
        :class:`WriteVerifyWarning` says how many were not.
        """
        _check_devices(devices)
        target = devices.check_field("target", target)
        sel = devices.check_mask(mask)
        reference = devices.reachable(target)
        n_sel = int(np.count_nonzero(sel))
        pulses = devices.write(target, sel)
        iterations = 1
        if not self.verify:
            off = np.abs(devices.conductance() - reference) > self.tolerance
            converged = n_sel - int(np.count_nonzero(off & sel))
            return ProgramResult(pulses, iterations, converged, n_sel)
        while True:
            read = devices.read_back(noisy=True)
            pending = sel & (np.abs(read - reference) > self.tolerance)
            if not pending.any() or iterations >= self.max_iterations:
                break
            pulses += devices.write(target, pending)
            iterations += 1
        left = int(np.count_nonzero(pending))
        logger.debug(
            "write-verify: %d pulses, %d rounds, %d of %d devices off",
            pulses,
            iterations,
            left,
            n_sel,
        )
        if left:
            n_stuck = int(np.count_nonzero(pending & devices.stuck))
            warnings.warn(
                f"write-verify left {left} of {n_sel} devices outside the "
                f"tolerance of {self.tolerance:g} S after {iterations} rounds "
                f"({n_stuck} of them stuck)",
                WriteVerifyWarning,
                stacklevel=2,
            )
        return ProgramResult(pulses, iterations, n_sel - left, n_sel)


@dataclass
class GateState:
    """Gate voltage [V] of the last SET of each device, kept by the caller.

    :class:`GateVoltageScheme` is frozen, so the per-device state of in-situ
    training lives here; create it with :meth:`GateVoltageScheme.initial_state`.
    """

    v_gate: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return self.v_gate.shape


@dataclass(frozen=True)
class GateVoltageScheme:
    """The 1T1R gate-voltage programming scheme of Li et al. 2019.

    C. Li et al., "Long short-term memory networks in memristor crossbar
    arrays", Nature Machine Intelligence 1, 49-57 (2019); parameters as in
    their public simulator, github.com/lican81/memNN.

    A RESET pulse (``v_reset`` on the device, ``v_gate_reset`` on the gate)
    brings a device to the bottom of its window. A SET pulse (``v_set``) with
    gate voltage ``Vg`` switches a device below ``G_set(Vg) = slope * Vg +
    offset``, the compliance the transistor allows, to ``G_set(Vg)``. A
    device already at or above the compliance does not switch: the
    transistor limits the current before the device sees the SET voltage,
    so it keeps its conductance. Each switching pulse adds the programming
    noise of the device model (use
    :meth:`crossbar.device.DeviceParams.li2019`: 4 uS per pulse) and is
    legalized into the window and levels.

    The memNN simulator instead adds the noise to every device a SET reaches
    (``G = max(G_set(Vg), G) + noise``). A device whose gate voltage keeps
    rising then random-walks upward until its next RESET: simulating the
    airline task of the paper (800 updates, 4 uS noise, seeds 0-4), devices
    ended up to 164 uS above their compliance, against 17 uS without
    (``benchmarks/gate_creep.py``). ``unswitched_noise=True`` reproduces that
    model.

    Attributes
    ----------
    slope : float
        ``dG_set / dVg`` [S/V], ``> 0``.
    offset : float
        ``G_set`` at zero gate voltage [S].
    v_gate_min, v_gate_max : float
        Gate voltage range of SET pulses [V].
    v_set : float
        SET pulse amplitude [V].
    v_reset : float
        RESET pulse amplitude [V].
    v_gate_reset : float
        Gate voltage during RESET [V].
    v_read : float
        Read voltage [V].
    v_gate_initial : float
        Gate voltage of the first SET after initialization [V], inside
        ``[v_gate_min, v_gate_max]``.
    unswitched_noise : bool
        Add the programming noise to devices a SET pulse leaves unswitched
        too, as memNN does.
    """

    slope: float = 98e-6
    offset: float = 120e-6
    v_gate_min: float = 0.7
    v_gate_max: float = 1.6
    v_set: float = 2.5
    v_reset: float = 1.7
    v_gate_reset: float = 5.0
    v_read: float = 0.2
    v_gate_initial: float = 1.0
    unswitched_noise: bool = False

    def __post_init__(self) -> None:
        check_number("slope", self.slope, low=0.0, low_open=True)
        check_number("offset", self.offset)
        check_number("v_gate_min", self.v_gate_min)
        check_number("v_gate_max", self.v_gate_max)
        if self.v_gate_max <= self.v_gate_min:
            fail(
                "v_gate_max",
                f"a voltage greater than v_gate_min = {self.v_gate_min!r}",
                self.v_gate_max,
            )
        for name in ("v_set", "v_reset", "v_gate_reset", "v_read"):
            check_number(name, getattr(self, name), low=0.0, low_open=True)
        check_number(
            "v_gate_initial",
            self.v_gate_initial,
            low=self.v_gate_min,
            high=self.v_gate_max,
        )
        if not isinstance(self.unswitched_noise, bool):
            fail("unswitched_noise", "True or False", self.unswitched_noise)

    def g_set(self, v_gate) -> np.ndarray:
        """Conductance [S] a SET pulse at gate voltage ``v_gate`` [V] sets."""
        return self.slope * np.asarray(v_gate, dtype=np.float64) + self.offset

    def v_gate_for(self, target) -> np.ndarray:
        """Gate voltage [V] whose SET gives ``target`` [S], clipped to range."""
        v = (np.asarray(target, dtype=np.float64) - self.offset) / self.slope
        return np.clip(v, self.v_gate_min, self.v_gate_max)

    def conductance_range(self) -> tuple[float, float]:
        """``(G_set(v_gate_min), G_set(v_gate_max))`` [S]."""
        return (
            float(self.g_set(self.v_gate_min)),
            float(self.g_set(self.v_gate_max)),
        )

    def initial_state(self, shape: tuple[int, int]) -> GateState:
        """A gate state with every device at ``v_gate_initial``."""
        return GateState(np.full(tuple(shape), float(self.v_gate_initial)))

    def _check_state(self, devices: DeviceArray, state) -> None:
        if not isinstance(state, GateState):
            fail("state", "a GateState", state)
        if state.shape != devices.shape:
            fail("state", f"a GateState of shape {devices.shape}", state.v_gate)

    def _reset(self, devices: DeviceArray, where: np.ndarray) -> int:
        if not where.any():
            return 0
        return devices._write(devices.g_lo, where)

    def _set(self, devices: DeviceArray, v_gate: np.ndarray, where: np.ndarray) -> int:
        g_set, g_now = self.g_set(v_gate), devices.conductance()
        if self.unswitched_noise:
            return devices._write(np.maximum(g_set, g_now), where)
        # Unswitched devices still receive the pulse, so it is counted.
        unswitched = np.count_nonzero(where & (g_set <= g_now) & ~devices.stuck)
        return devices._write(g_set, where & (g_set > g_now)) + int(unswitched)

    def initialize(self, devices: DeviceArray, state: GateState, mask=None) -> int:
        """RESET the selected devices (default: all), then SET them at
        ``v_gate_initial``; returns the pulses spent. Both devices of a pair
        then hold the same conductance up to programming noise."""
        _check_devices(devices)
        self._check_state(devices, state)
        sel = devices.check_mask(mask)
        state.v_gate[sel] = self.v_gate_initial
        pulses = self._reset(devices, sel)
        return pulses + self._set(devices, state.v_gate, sel)

    def program_target(
        self, devices: DeviceArray, state: GateState, target, mask=None
    ) -> int:
        """Program ``target`` [S]: RESET where it is below the present value,
        then SET at the gate voltage of the target (clipped); returns pulses.
        """
        _check_devices(devices)
        self._check_state(devices, state)
        target = devices.check_field("target", target)
        sel = devices.check_mask(mask)
        v_gate = self.v_gate_for(target)
        pulses = self._reset(devices, sel & (target < devices.conductance()))
        pulses += self._set(devices, v_gate, sel)
        state.v_gate[sel] = v_gate[sel]
        return pulses

    def apply_update(
        self, devices: DeviceArray, state: GateState, delta_g, mask=None
    ) -> int:
        """The in-situ update: move each gate voltage by ``delta_g / slope``.

        ``Vg_new = clip(Vg + delta_g / slope)``; devices whose gate voltage
        goes down are RESET first; every selected device then gets a SET at
        ``Vg_new``, which switches the devices below its compliance. Returns
        the pulses spent.
        """
        _check_devices(devices)
        self._check_state(devices, state)
        delta_g = devices.check_field("delta_g", delta_g)
        idx = np.flatnonzero(devices.check_mask(mask))
        return self.apply_update_at(devices, state, idx, delta_g.ravel()[idx])

    def apply_update_at(
        self, devices: DeviceArray, state: GateState, idx, delta_g
    ) -> int:
        """:meth:`apply_update` on the devices of the flat indices ``idx``,
        with one change [S] per index; inputs already checked.

        Works on the selected devices only, in one compiled pass, which is
        what makes repeated in-situ updates of a partly used array cheap.
        """
        idx = np.ascontiguousarray(idx, dtype=np.int64)
        delta_g = np.ascontiguousarray(delta_g, dtype=np.float64)
        if idx.size == 0:
            return 0
        w = devices._kernel_args()
        n_reset = _gate_reset_count(idx, delta_g, w.stuck)
        # The noise of the RESETs, then of the switching SETs, drawn as two
        # masked writes draw it.
        noisy = devices.params.prog_noise > 0.0
        z = devices.normals(n_reset) if noisy else np.zeros(0)
        v_gate = state.v_gate.reshape(-1)
        v_new, pulses, switch, n_switch = _gate_reset(
            v_gate, idx, delta_g, z, self.slope, self.offset,
            self.v_gate_min, self.v_gate_max, self.unswitched_noise, *w,
        )  # fmt: skip
        z = devices.normals(n_switch) if noisy else np.zeros(0)
        pulses += _gate_set(
            v_gate, idx, v_new, switch, z, self.slope, self.offset, *w
        )  # fmt: skip
        if n_reset or n_switch:
            devices._commit(w.g, w.t_program)
        return pulses


# The kernels below take the device state as the trailing arguments
# ``g, t_program, g_now, g_lo, g_hi, stuck, noise_mode, prog_noise, span,
# n_levels, now`` (:class:`~crossbar.device.KernelWriteArgs`, unpacked: numba
# unboxes a named tuple of arrays far more slowly than its arrays). Helpers
# called per device take scalars only: an array argument costs reference
# counting on every call, several times the work of the write itself.


@njit
def _gate_reset_count(idx, delta_g, stuck):
    """Working devices whose gate voltage goes down: the RESETs of an update."""
    n = 0
    for a in range(idx.size):
        if delta_g[a] < 0.0 and not stuck[idx[a]]:
            n += 1
    return n


@njit
def _written(target, z, lo, hi, mode, noise, span, levels):
    """The conductance [S] a write of ``target`` leaves on a device with window
    ``[lo, hi]``, given the standard normal draw ``z`` of its noise."""
    if noise > 0.0:
        target += noise_sigma(target, lo, hi, mode, noise, span) * z
    return legal_value(target, lo, hi, levels)


@njit
def _gate_reset(
    v_gate, idx, delta_g, z, slope, offset, v_min, v_max, every,
    g, t, g_now, lo, hi, stuck, mode, noise, span, levels, now,
):  # fmt: skip
    """The new gate voltages of the devices ``idx`` and the RESET of every
    working device whose gate voltage goes down, written into the device
    state with noise ``z`` in index order; then which working devices the
    SET at the new voltages will switch (all of them with ``every``, the
    memNN model). Returns ``(v_new, pulses, switch, number switching)``."""
    n = idx.size
    v_new = np.empty(n)
    draws = 0
    pulses = 0
    for a in range(n):
        i = idx[a]
        dv = delta_g[a] / slope
        v_new[a] = min(max(v_gate[i] + dv, v_min), v_max)
        if dv < 0.0 and not stuck[i]:
            zi = 0.0
            if noise > 0.0:
                zi = z[draws]
                draws += 1
            g[i] = _written(lo[i], zi, lo[i], hi[i], mode, noise, span, levels)
            t[i] = now
            # A device programmed now has not drifted: the SET sees this value.
            g_now[i] = g[i]
            pulses += 1
    switch = np.zeros(n, dtype=np.bool_)
    n_switch = 0
    for a in range(n):
        i = idx[a]
        if not stuck[i] and (every or slope * v_new[a] + offset > g_now[i]):
            switch[a] = True
            n_switch += 1
    return v_new, pulses, switch, n_switch


@njit
def _gate_set(
    v_gate, idx, v_new, switch, z, slope, offset,
    g, t, g_now, lo, hi, stuck, mode, noise, span, levels, now,
):  # fmt: skip
    """The SET at gate voltages ``v_new``: devices marked in ``switch`` go to
    ``max(G_set, G)`` plus noise ``z`` in index order; the other working
    devices keep their state. Stores ``v_new`` in ``v_gate``; returns the
    pulses (one per working device)."""
    draws = 0
    pulses = 0
    for a in range(idx.size):
        i = idx[a]
        v_gate[i] = v_new[a]
        if stuck[i]:
            continue
        pulses += 1
        if switch[a]:
            target = max(slope * v_new[a] + offset, g_now[i])
            zi = 0.0
            if noise > 0.0:
                zi = z[draws]
                draws += 1
            g[i] = _written(target, zi, lo[i], hi[i], mode, noise, span, levels)
            t[i] = now
    return pulses


@dataclass(frozen=True)
class IncrementalPulses:
    """Identical SET/RESET pulses that each move a conductance by one step.

    A potentiating pulse adds ``dg_up``, a depressing pulse removes
    ``dg_down``. With soft bounds the steps shrink near the window's edges:
    up by ``(g_hi - G) / (g_hi - g_lo)``, down by ``(G - g_lo) / (g_hi -
    g_lo)``, so a device approaches its bounds without crossing them. Every
    step is multiplied by ``1 + c2c_noise N(0, 1)``. The device's
    ``prog_noise`` belongs to write-to-target style writes and does not apply
    here. After each pulse the conductance is clipped into the device's
    window and, when the device has levels, put on the nearest level: a
    step smaller than half the level spacing then leaves the device where it
    is.

    Attributes
    ----------
    dg_up, dg_down : float
        Nominal step of one potentiating / depressing pulse [S], ``> 0``.
    soft_bounds : bool
        Scale the steps with the distance to the window's edge.
    c2c_noise : float
        Relative cycle-to-cycle standard deviation of each step [-], ``>= 0``.
    max_pulses_per_update : int
        Most pulses one device gets in :meth:`apply_update`, ``>= 1``.
    """

    dg_up: float = 1e-6
    dg_down: float = 1e-6
    soft_bounds: bool = True
    c2c_noise: float = 0.0
    max_pulses_per_update: int = 100

    def __post_init__(self) -> None:
        check_number("dg_up", self.dg_up, low=0.0, low_open=True)
        check_number("dg_down", self.dg_down, low=0.0, low_open=True)
        if not isinstance(self.soft_bounds, bool | np.bool_):
            fail("soft_bounds", "True or False", self.soft_bounds)
        check_number("c2c_noise", self.c2c_noise, low=0.0)
        check_number(
            "max_pulses_per_update", self.max_pulses_per_update, low=1, integer=True
        )

    def step(self, g, g_lo, g_hi, up) -> np.ndarray:
        """Noise-free signed change [S] of one pulse from conductance ``g``."""
        g = np.asarray(g, dtype=np.float64)
        if self.soft_bounds:
            width = g_hi - g_lo
            rise = self.dg_up * (g_hi - g) / width
            fall = self.dg_down * (g - g_lo) / width
        else:
            rise = np.full(g.shape, self.dg_up)
            fall = np.full(g.shape, self.dg_down)
        return np.where(up, rise, -fall)

    def apply_pulses(self, devices: DeviceArray, n_pulses) -> int:
        """Apply ``n_pulses`` (signed integers, one per device) pulse by pulse.

        Positive counts potentiate, negative depress. Returns the pulses
        spent on working devices (sum of ``|n|`` over devices not stuck).
        """
        _check_devices(devices)
        n = _check_counts(n_pulses, devices.shape)
        n[devices.stuck] = 0
        count = np.abs(n)
        total = int(count.sum())
        if total == 0:
            return 0
        moved = count > 0
        idx = np.flatnonzero(moved)
        g = devices.conductance().ravel()[idx]
        lo = devices.g_lo.ravel()[idx]
        hi = devices.g_hi.ravel()[idx]
        up = n.ravel()[idx] > 0
        left = count.ravel()[idx]
        levels = devices.params.n_levels
        for k in range(int(left.max())):
            # Devices with pulses left; shrinking the working set keeps the
            # loop cheap when a few devices need many pulses.
            act = np.flatnonzero(left > k)
            ga, la, ha = g[act], lo[act], hi[act]
            dg = self.step(ga, la, ha, up[act])
            if self.c2c_noise > 0.0:
                dg = dg * (1.0 + self.c2c_noise * devices.normals(act.size))
            g[act] = reachable_values(ga + dg, la, ha, levels)
        full = devices.conductance()
        np.put(full, idx, g)
        devices.set_exact(full, moved)
        return total

    def pulses_for(self, delta_g) -> np.ndarray:
        """Signed pulse counts for a wanted change ``delta_g`` [S], clipped."""
        delta_g = np.asarray(delta_g, dtype=np.float64)
        step = np.where(delta_g >= 0.0, self.dg_up, self.dg_down)
        n = np.rint(delta_g / step)
        cap = self.max_pulses_per_update
        return np.clip(n, -cap, cap).astype(np.int64)

    def apply_update(self, devices: DeviceArray, delta_g, mask=None) -> int:
        """Apply ``round(delta_g / step)`` pulses (nominal step, clipped to
        ``max_pulses_per_update``) to the selected devices; returns pulses.
        """
        _check_devices(devices)
        delta_g = devices.check_field("delta_g", delta_g)
        sel = devices.check_mask(mask)
        n = self.pulses_for(delta_g)
        n[~sel] = 0
        return self.apply_pulses(devices, n)


def _check_counts(n_pulses, shape) -> np.ndarray:
    arr = np.asarray(n_pulses)
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        fail("n_pulses", f"an integer array of shape {shape}", n_pulses)
    if arr.shape != tuple(shape):
        fail("n_pulses", f"an integer array of shape {shape}", n_pulses)
    if np.issubdtype(arr.dtype, np.floating):
        arr = check_array("n_pulses", arr)
        if not np.all(arr == np.rint(arr)):
            fail("n_pulses", "whole numbers of pulses", n_pulses)
    return arr.astype(np.int64)
