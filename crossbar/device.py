"""Memristive devices: parameters, fabrication and the physics of one write.

A :class:`DeviceArray` holds the devices of one crossbar. It is the only place
where conductances change, so every way of programming (see
:mod:`crossbar.programming`) inherits the same invariants:

* every conductance stays inside its device's own window ``[g_lo, g_hi]``;
* with a finite number of levels, every write lands on one of that device's
  levels;
* devices stuck at fabrication never move.

Conductance drift follows the power law ``G(t) = G(t0) (t / t0) ** -nu`` where
``t`` is the time since the device was last programmed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from crossbar.gaussian import fill_normal, new_state, seed_from
from crossbar.jit import njit
from crossbar.validation import check_array, check_choice, check_number, fail

logger = logging.getLogger(__name__)

PROG_NOISE_MODES = ("absolute", "relative", "state")

# Under device-to-device variation a device's window never narrows below this
# fraction of the nominal window, so that every device stays programmable.
MIN_WINDOW_FRACTION = 0.01


@dataclass(frozen=True)
class DeviceParams:
    """Parameters of one device type (every device of an array shares them).

    Attributes
    ----------
    g_min : float
        Lowest conductance of the nominal window [S], ``>= 0``.
    g_max : float
        Highest conductance of the nominal window [S], ``> g_min``.
    n_levels : int or None
        Number of programmable levels, uniform in conductance over the
        device's window with both ends included (``>= 2``); ``None`` for an
        analog device.
    prog_noise : float
        Programming noise, ``>= 0``. Its unit depends on ``prog_noise_mode``:
        siemens for ``"absolute"``, dimensionless otherwise.
    prog_noise_mode : str
        ``"absolute"``: sigma = ``prog_noise`` [S]; ``"relative"``: sigma =
        ``prog_noise * (g_max - g_min)``; ``"state"``: sigma = ``prog_noise``
        times the target conductance (clipped into the device's window), so
        high states are noisier.
    read_noise : float
        Relative standard deviation of read noise [-], ``>= 0``; a read sees
        ``G * (1 + read_noise * N(0, 1))`` with a fresh draw on every read.
    d2d_sigma : float
        Relative device-to-device spread of each device's own ``g_min`` and
        ``g_max`` [-], ``>= 0``, drawn once at fabrication.
    p_stuck_min, p_stuck_max : float
        Probabilities [-] that a device is stuck at its own ``g_min`` or
        ``g_max`` forever; each in ``[0, 1]``, their sum ``<= 1``.
    drift_nu : float
        Mean drift exponent ``nu`` [-], ``>= 0`` (``0`` disables drift).
    drift_nu_sigma : float
        Device-to-device standard deviation of ``nu`` [-], ``>= 0``; each
        device's exponent is clipped at 0, so drift never raises a conductance.
    drift_t0 : float
        Reference time ``t0`` [s], ``> 0``: a device's conductance is constant
        for ``t0`` after programming and then decays as ``(t / t0) ** -nu``.
    """

    g_min: float = 1e-6
    g_max: float = 100e-6
    n_levels: int | None = None
    prog_noise: float = 0.0
    prog_noise_mode: str = "absolute"
    read_noise: float = 0.0
    d2d_sigma: float = 0.0
    p_stuck_min: float = 0.0
    p_stuck_max: float = 0.0
    drift_nu: float = 0.0
    drift_nu_sigma: float = 0.0
    drift_t0: float = 1.0

    def __post_init__(self) -> None:
        check_number("g_min", self.g_min, low=0.0)
        check_number("g_max", self.g_max, low=0.0)
        if self.g_max <= self.g_min:
            fail(
                "g_max",
                f"a real number greater than g_min = {self.g_min!r}",
                self.g_max,
            )
        if self.n_levels is not None:
            check_number("n_levels", self.n_levels, low=2, integer=True)
        check_number("prog_noise", self.prog_noise, low=0.0)
        check_choice("prog_noise_mode", self.prog_noise_mode, PROG_NOISE_MODES)
        check_number("read_noise", self.read_noise, low=0.0)
        check_number("d2d_sigma", self.d2d_sigma, low=0.0)
        check_number("p_stuck_min", self.p_stuck_min, low=0.0, high=1.0)
        check_number("p_stuck_max", self.p_stuck_max, low=0.0, high=1.0)
        total = self.p_stuck_min + self.p_stuck_max
        if total > 1.0:
            fail(
                "p_stuck_max",
                f"at most 1 - p_stuck_min = {1.0 - self.p_stuck_min!r}",
                self.p_stuck_max,
                "the two stuck probabilities sum above 1",
            )
        check_number("drift_nu", self.drift_nu, low=0.0)
        check_number("drift_nu_sigma", self.drift_nu_sigma, low=0.0)
        check_number("drift_t0", self.drift_t0, low=0.0, low_open=True)

    @classmethod
    def li2019(cls, prog_noise: float = 4e-6, **overrides) -> DeviceParams:
        """The 1T1R Ta/HfO2 device of Li et al. 2019.

        C. Li et al., "Long short-term memory networks in memristor crossbar
        arrays", Nature Machine Intelligence 1, 49-57 (2019); their public
        simulator is github.com/lican81/memNN. The window is ``[0, 400 uS]``
        and programming noise is absolute, 4 uS per pulse by default (their
        airline demo uses 0.01 x 400 uS, their gait demo 0.014 x 400 uS).

        Parameters
        ----------
        prog_noise : float
            Absolute programming noise per pulse [S].
        **overrides
            Any other :class:`DeviceParams` field.
        """
        fields = {
            "g_min": 0.0,
            "g_max": 400e-6,
            "prog_noise": prog_noise,
            "prog_noise_mode": "absolute",
        }
        fields.update(overrides)
        return cls(**fields)

    def with_(self, **changes) -> DeviceParams:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    @property
    def drifts(self) -> bool:
        """Whether any device can drift."""
        return self.drift_nu > 0.0 or self.drift_nu_sigma > 0.0

    def levels(self) -> np.ndarray | None:
        """The nominal levels [S] (without device-to-device variation)."""
        if self.n_levels is None:
            return None
        # The same arithmetic as the writes use, so levels compare exactly.
        k = np.arange(self.n_levels, dtype=np.float64)
        return reachable_values(
            self.g_min + k * (self.g_max - self.g_min) / (self.n_levels - 1),
            self.g_min,
            self.g_max,
            self.n_levels,
        )


def reachable_values(
    g: np.ndarray, g_lo: np.ndarray, g_hi: np.ndarray, n_levels: int | None
) -> np.ndarray:
    """Closest conductances a working device can hold: on a level, in its window.

    ``g``, ``g_lo`` and ``g_hi`` broadcast together. Infinite values go to
    the window's ends.
    """
    g = np.asarray(g, dtype=np.float64)
    if n_levels is None:
        return np.clip(g, g_lo, g_hi)
    top = n_levels - 1
    step = (g_hi - g_lo) / top
    with np.errstate(over="ignore", invalid="ignore"):
        k = np.clip(np.rint((g - g_lo) / step), 0, top)
    # The top level is g_hi exactly, whatever the rounding of g_lo + top*step.
    out = np.where(k == top, g_hi, g_lo + k * step)
    return np.clip(out, g_lo, g_hi)


class KernelWriteArgs(NamedTuple):
    """The state of a device array as a programming kernel takes it, in the
    order of the kernel's trailing arguments. Flat arrays."""

    g: np.ndarray  # copy of the stored conductances [S], written by the kernel
    t_program: np.ndarray  # copy of the programming times [s], written too
    g_now: np.ndarray  # present conductances [S], drift applied (may be g)
    g_lo: np.ndarray  # each device's window [S]
    g_hi: np.ndarray
    stuck: np.ndarray  # bool
    noise_mode: int  # index into PROG_NOISE_MODES
    prog_noise: float
    span: float  # nominal window g_max - g_min [S]
    n_levels: int  # 0 = no levels
    now: float  # the array's clock [s]


@njit
def legal_value(g: float, lo: float, hi: float, n_levels: int) -> float:
    """:func:`reachable_values` of one device, for kernels (``n_levels`` 0 =
    no levels); the same operations in the same order, so bit for bit equal."""
    if n_levels == 0:
        return min(max(g, lo), hi)
    top = n_levels - 1
    step = (hi - lo) / top
    k = min(max(np.rint((g - lo) / step), 0.0), float(top))
    out = hi if k == top else lo + k * step
    return min(max(out, lo), hi)


@njit
def noise_sigma(
    target: float, lo: float, hi: float, mode: int, noise: float, span: float
) -> float:
    """Programming-noise standard deviation [S] of one write, for kernels.

    ``mode`` indexes :data:`PROG_NOISE_MODES`; ``span`` is the nominal window
    ``g_max - g_min``.
    """
    if mode == 0:
        return noise
    if mode == 1:
        return noise * span
    return noise * min(max(target, lo), hi)


class DeviceArray:
    """The physical devices of one array, fabricated at construction.

    Parameters
    ----------
    params : DeviceParams
        The device type.
    shape : tuple of int
        ``(rows, cols)``.
    rng : numpy.random.Generator
        Source of every random draw of these devices (fabrication, writes,
        reads), kept as ``self.rng``.
    g_init : float, array or None
        Initial conductance [S], legalized without noise; ``None`` puts every
        device at the bottom of its window.

    Attributes
    ----------
    g_lo, g_hi : ndarray
        Each device's own window [S] (read only).
    stuck_min, stuck_max, stuck : ndarray of bool
        Devices stuck at ``g_lo``, at ``g_hi``, and either (read only).
    nu : ndarray
        Each device's drift exponent [-] (0 for stuck devices).
    g : ndarray
        Conductance left by the last programming of each device [S], before
        drift (read only; writes go through the methods).
    t_program : ndarray
        Time of each device's last programming [s] (read only).
    time : float
        Current time [s]; starts at 0 and moves with :meth:`advance_time`.

    Notes
    -----
    Fabrication draws, in this order and only when the parameter is nonzero:
    the windows (two standard normal arrays), the stuck devices (one uniform
    array), the drift exponents (one standard normal array).
    """

    def __init__(
        self,
        params: DeviceParams,
        shape: tuple[int, int],
        rng: np.random.Generator,
        g_init: float | np.ndarray | None = None,
    ) -> None:
        if not isinstance(params, DeviceParams):
            fail("params", "a DeviceParams", params)
        if (
            not isinstance(shape, tuple | list)
            or len(shape) != 2
            or not all(isinstance(s, int | np.integer) and s >= 1 for s in shape)
        ):
            fail("shape", "a pair of positive integers (rows, cols)", shape)
        if not isinstance(rng, np.random.Generator):
            fail("rng", "a numpy.random.Generator", rng)
        self.params = params
        self.shape = (int(shape[0]), int(shape[1]))
        self.rng = rng
        self._fabricate()
        self._time = 0.0
        self._version = 0
        self._t_program = np.zeros(self.shape)
        if g_init is None:
            start = self._g_lo.copy()
        else:
            start = self.check_field("g_init", g_init)
        self._g = self.legalize(start)
        for arr in (self._g, self._t_program):
            arr.flags.writeable = False
        logger.debug(
            "fabricated %s devices: %d stuck at g_min, %d stuck at g_max",
            self.shape,
            int(self._stuck_min.sum()),
            int(self._stuck_max.sum()),
        )

    # ------------------------------------------------------------ fabrication
    def _fabricate(self) -> None:
        p = self.params
        rng = self.rng
        if p.d2d_sigma > 0.0:
            z_lo = rng.standard_normal(self.shape)
            z_hi = rng.standard_normal(self.shape)
            g_lo = np.maximum(p.g_min * (1.0 + p.d2d_sigma * z_lo), 0.0)
            g_hi = p.g_max * (1.0 + p.d2d_sigma * z_hi)
            min_width = MIN_WINDOW_FRACTION * (p.g_max - p.g_min)
            g_hi = np.maximum(g_hi, g_lo + min_width)
        else:
            g_lo = np.full(self.shape, float(p.g_min))
            g_hi = np.full(self.shape, float(p.g_max))
        if p.p_stuck_min > 0.0 or p.p_stuck_max > 0.0:
            u = rng.random(self.shape)
            stuck_min = u < p.p_stuck_min
            stuck_max = (u >= p.p_stuck_min) & (u < p.p_stuck_min + p.p_stuck_max)
        else:
            stuck_min = np.zeros(self.shape, dtype=bool)
            stuck_max = np.zeros(self.shape, dtype=bool)
        stuck = stuck_min | stuck_max
        if p.drift_nu_sigma > 0.0:
            z_nu = rng.standard_normal(self.shape)
            nu = np.maximum(p.drift_nu + p.drift_nu_sigma * z_nu, 0.0)
        else:
            nu = np.full(self.shape, float(p.drift_nu))
        nu[stuck] = 0.0
        self._g_lo, self._g_hi = g_lo, g_hi
        self._stuck_min, self._stuck_max, self._stuck = stuck_min, stuck_max, stuck
        self._nu = nu
        for arr in (g_lo, g_hi, stuck_min, stuck_max, stuck, nu):
            arr.flags.writeable = False

    # ------------------------------------------------------------- read-only
    @property
    def g(self) -> np.ndarray:
        return self._g

    @property
    def g_lo(self) -> np.ndarray:
        return self._g_lo

    @property
    def g_hi(self) -> np.ndarray:
        return self._g_hi

    @property
    def stuck_min(self) -> np.ndarray:
        return self._stuck_min

    @property
    def stuck_max(self) -> np.ndarray:
        return self._stuck_max

    @property
    def stuck(self) -> np.ndarray:
        return self._stuck

    @property
    def nu(self) -> np.ndarray:
        return self._nu

    @property
    def t_program(self) -> np.ndarray:
        return self._t_program

    @property
    def version(self) -> int:
        """Counter that changes whenever the conductances seen by a read may
        have changed (a write, or time passing on a drifting device)."""
        return self._version

    @property
    def time(self) -> float:
        return self._time

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    def __repr__(self) -> str:
        return (
            f"DeviceArray(shape={self.shape}, stuck={int(self._stuck.sum())}, "
            f"time={self._time!r}, params={self.params!r})"
        )

    # ----------------------------------------------------------- input checks
    def check_field(self, name: str, value, *, finite: bool = True) -> np.ndarray:
        """``value`` (scalar or array of ``self.shape``) as a new float array.

        Raises :class:`~crossbar.validation.ParameterError` naming ``name``
        for a wrong shape or for NaN (and infinities when ``finite``).
        """
        arr = check_array(name, value, finite=False)
        if arr.ndim != 0 and arr.shape != self.shape:
            fail(name, f"a scalar or an array of shape {self.shape}", value)
        if np.any(np.isnan(arr)):
            fail(
                name,
                "free of NaN",
                value,
                f"{int(np.count_nonzero(np.isnan(arr)))} entries are NaN",
            )
        if finite and not np.all(np.isfinite(arr)):
            fail(name, "finite (no inf)", value)
        return np.array(np.broadcast_to(arr, self.shape), dtype=np.float64)

    def check_mask(self, mask, name: str = "mask") -> np.ndarray:
        """``mask`` as a boolean array of ``self.shape`` (``None`` = all)."""
        if mask is None:
            return np.ones(self.shape, dtype=bool)
        arr = np.asarray(mask)
        if arr.dtype != np.bool_:
            fail(
                name,
                f"a boolean array of shape {self.shape} or None",
                mask,
                f"dtype is {arr.dtype}",
            )
        if arr.shape != self.shape:
            fail(name, f"a boolean array of shape {self.shape} or None", mask)
        return arr

    # ----------------------------------------------------------------- physics
    def reachable(self, g) -> np.ndarray:
        """Closest values a working device can hold (window and levels only)."""
        g = self.check_field("g", g, finite=False)
        return reachable_values(g, self._g_lo, self._g_hi, self.params.n_levels)

    def legalize(self, g) -> np.ndarray:
        """What a write of ``g`` [S] really leaves in the devices.

        Quantize to the nearest of the device's own levels (when levels are
        set), clip into the device's window, and put stuck devices at their
        stuck value. Accepts any non-NaN values, infinities included.
        """
        out = self.reachable(g)
        out[self._stuck_min] = self._g_lo[self._stuck_min]
        out[self._stuck_max] = self._g_hi[self._stuck_max]
        return out

    def prog_sigma(self, target) -> np.ndarray:
        """Standard deviation [S] of the programming noise for ``target``."""
        target = self.check_field("target", target, finite=False)
        return self._sigma(target, self._g_lo, self._g_hi)

    def _sigma(self, target, g_lo, g_hi) -> np.ndarray:
        p = self.params
        if p.prog_noise_mode == "absolute":
            return np.full(np.shape(target), float(p.prog_noise))
        if p.prog_noise_mode == "relative":
            return np.full(np.shape(target), p.prog_noise * (p.g_max - p.g_min))
        return p.prog_noise * np.clip(target, g_lo, g_hi)

    def _store(self, values: np.ndarray, sel: np.ndarray) -> None:
        """Put already legal ``values`` into the selected devices (now).

        ``sel`` is a boolean mask of the array's shape or flat indices.
        """
        g = self._g.copy()
        t = self._t_program.copy()
        if sel.dtype == np.bool_:
            g[sel] = values
            t[sel] = self._time
        else:
            g.ravel()[sel] = values
            t.ravel()[sel] = self._time
        g.flags.writeable = False
        t.flags.writeable = False
        self._g, self._t_program = g, t
        self._version += 1

    def write(self, target, mask=None) -> int:
        """One programming pulse per selected device towards ``target`` [S].

        Each selected, working device ends at ``legalize(target + noise)``,
        the noise drawn with :meth:`prog_sigma`. Unselected and stuck devices
        do not change. Returns the number of pulses spent (selected devices
        that are not stuck); their programming time becomes the current time.
        """
        return self._write(self.check_field("target", target), self.check_mask(mask))

    def _write(self, target: np.ndarray, mask: np.ndarray) -> int:
        """:meth:`write` for inputs already checked (float array, bool mask)."""
        idx = np.flatnonzero(mask & ~self._stuck)
        n = int(idx.size)
        if n == 0:
            return 0
        lo, hi = self._g_lo.ravel()[idx], self._g_hi.ravel()[idx]
        t = target.ravel()[idx]
        if self.params.prog_noise > 0.0:
            t = t + self._sigma(t, lo, hi) * self.normals(n)
        self._store(reachable_values(t, lo, hi, self.params.n_levels), idx)
        return n

    def normals(self, n: int) -> np.ndarray:
        """``n`` standard normals for programming and read noise.

        Drawn with :mod:`crossbar.gaussian` (several times faster than the
        Generator's own normals), seeded by one 64-bit draw of this array's
        generator, so the same seed still gives the same noise. ``n = 0``
        draws nothing.
        """
        z = np.empty(int(n))
        if n:
            fill_normal(new_state(seed_from(self.rng)), z)
        return z

    def _kernel_args(self) -> KernelWriteArgs:
        """What a programming kernel needs to write like :meth:`write`."""
        p = self.params
        g = self._g.ravel().copy()
        return KernelWriteArgs(
            g,
            self._t_program.ravel().copy(),
            # Without drift the stored values are the present ones; the kernel
            # may then read and write the same array.
            self.conductance().ravel() if p.drifts else g,
            self._g_lo.ravel(),
            self._g_hi.ravel(),
            self._stuck.ravel(),
            PROG_NOISE_MODES.index(p.prog_noise_mode),
            float(p.prog_noise),
            float(p.g_max - p.g_min),
            0 if p.n_levels is None else int(p.n_levels),
            float(self._time),
        )

    def _commit(self, g: np.ndarray, t_program: np.ndarray) -> None:
        """Adopt conductances and programming times a kernel wrote (legal)."""
        g = g.reshape(self.shape)
        t = t_program.reshape(self.shape)
        g.flags.writeable = False
        t.flags.writeable = False
        self._g, self._t_program = g, t
        self._version += 1

    def set_exact(self, g, mask=None) -> int:
        """Noise-free write of ``g`` [S], still legalized; returns the pulses."""
        g = self.check_field("g", g)
        sel = self.check_mask(mask) & ~self._stuck
        n = int(np.count_nonzero(sel))
        if n:
            values = reachable_values(
                g[sel], self._g_lo[sel], self._g_hi[sel], self.params.n_levels
            )
            self._store(values, sel)
        return n

    def conductance(self, t: float | None = None) -> np.ndarray:
        """Conductances [S] at time ``t`` [s] (default: now), drift applied.

        A device programmed at ``t_p`` keeps its value while ``t - t_p < t0``
        and then follows ``G ((t - t_p) / t0) ** -nu``, floored at its ``g_lo``.
        """
        if t is None:
            t = self._time
        else:
            check_number("t", t)
        if not self.params.drifts:
            return self._g.copy()
        t0 = self.params.drift_t0
        age = np.maximum(t - self._t_program, t0)
        g = self._g * (age / t0) ** -self._nu
        return np.maximum(g, self._g_lo)

    def get_state(self) -> dict[str, np.ndarray]:
        """The mutable state (conductances, programming times, clock) as
        arrays, for checkpoints; fabrication is rebuilt from the seed."""
        return {
            "g": self._g.copy(),
            "t_program": self._t_program.copy(),
            "time": np.array(self._time),
        }

    def set_state(self, state: dict) -> None:
        """Restore what :meth:`get_state` returned."""
        g = check_array("state['g']", state["g"], shape=self.shape)
        t = check_array("state['t_program']", state["t_program"], shape=self.shape)
        g, t = g.copy(), t.copy()
        g.flags.writeable = False
        t.flags.writeable = False
        self._g, self._t_program = g, t
        self._time = float(state["time"])
        self._version += 1

    def advance_time(self, dt: float) -> None:
        """Let ``dt`` [s] (``>= 0``) pass."""
        check_number("dt", dt, low=0.0)
        self._time += float(dt)
        if self.params.drifts:
            self._version += 1

    def read_back(self, noisy: bool = True) -> np.ndarray:
        """Conductances [S] as software sees them when reading the array back.

        With ``noisy`` and ``read_noise > 0`` each value is
        ``G (1 + read_noise N(0, 1))`` with a fresh draw.
        """
        g = self.conductance()
        if noisy and self.params.read_noise > 0.0:
            z = self.normals(self.size).reshape(self.shape)
            g = g * (1.0 + self.params.read_noise * z)
        return g
