"""Experiment configuration: schema, TOML loading, validation and writing.

A configuration is a tree of frozen dataclasses::

    cfg = load_config("airline", ["device.prog_noise=8e-6"])
    cfg.device.prog_noise        # 8e-06 (siemens)
    cfg.network.hidden_size      # 15
    cfg.get("training.epochs")   # the same fields by their dotted key

Every field declares its documentation, unit, default and allowed values
once, next to the field (see :func:`option`). One generic validator reads
those declarations, so a config built in Python and one read from TOML are
checked the same way; checks that involve several fields live in each
section's ``_check``.

TOML has no null, so numeric fields that can be switched off use ``0`` for
"off" (documented per field). Every problem raises :class:`ConfigError`
before any work starts, naming the full key (``device.prog_noise``), what
was expected, what was found and, for a misspelt key, the closest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import json
import logging
import math
import re
import tomllib
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from crossbar.validation import ParameterError, closest_key, fail

logger = logging.getLogger(__name__)

__all__ = [
    "MODES",
    "PRESETS",
    "TASK_KINDS",
    "AwareConfig",
    "ArrayConfig",
    "Config",
    "ConfigError",
    "DeviceConfig",
    "InsituConfig",
    "MappingConfig",
    "NetworkConfig",
    "OptimizerConfig",
    "SweepConfig",
    "TaskConfig",
    "TrainingConfig",
    "config_from_dict",
    "config_to_dict",
    "dump_toml",
    "list_shipped_configs",
    "load_config",
    "option",
    "parse_config",
    "parse_overrides",
    "schema_keys",
    "shipped_config_path",
    "with_overrides",
]

MODES = ("ideal", "offline", "offline_aware", "insitu")

# Whether each task is a regression or a classification.
TASK_KINDS = {
    "airline": "regression",
    "japanese_vowels": "classification",
    "adding": "regression",
    "csv": "regression",
    "npz": "classification",
}

# Device keys a preset fills when the config does not set them. "li2019" is
# the 1T1R Ta/HfO2 device of C. Li et al., Nature Machine Intelligence 1,
# 49-57 (2019): window [0, 400 uS], 4 uS absolute programming noise per pulse.
PRESETS: dict[str, dict[str, object]] = {
    "li2019": {
        "g_min": 0.0,
        "g_max": 400e-6,
        "prog_noise": 4e-6,
        "prog_noise_mode": "absolute",
    },
    "custom": {
        "g_min": 0.0,
        "g_max": 100e-6,
        "prog_noise": 0.0,
        "prog_noise_mode": "absolute",
    },
}

# Above this many grid points a sweep is checked value by value only, not
# point by point (the cross-field checks of every combination).
_MAX_CHECKED_GRID_POINTS = 1024

_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.\-]*"


class ConfigError(ParameterError):
    """A configuration is invalid: unknown key, wrong type or impossible value.

    Subclasses :class:`crossbar.validation.ParameterError` (a ``ValueError``).
    """


# ---------------------------------------------------------------------------
# Field declarations


@dataclass(frozen=True)
class Spec:
    """What one config field holds and allows.

    Attributes
    ----------
    doc : str
        One-line description.
    unit : str
        Physical unit (``"S"``, ``"ohm"``, ``"V"``, ``"A"``, ``"s"``), or ``""``.
    choices : tuple or None
        Allowed values (for a list field: allowed items).
    low, high : float or None
        Allowed range of a number; ``low_open``/``high_open`` exclude the end.
    off : int, float or None
        A value outside the range that means "off" (for example ``0``).
    off_doc : str
        What ``off`` means, for messages and documentation.
    pattern : str or None
        Regular expression a string must match in full.
    nonempty, unique : bool
        For list fields: at least one item; no repeated items.
    """

    doc: str
    unit: str = ""
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    off: int | float | None = None
    off_doc: str = "off"
    pattern: str | None = None
    nonempty: bool = False
    unique: bool = False


def option(default, doc: str, **spec):
    """Declare a config field: its default, documentation and allowed values.

    Parameters
    ----------
    default : object
        Default value (a tuple or dict is copied for each instance).
    doc : str
        One-line description.
    **spec
        Any other :class:`Spec` attribute (unit, choices, range, ...).
    """
    meta = {"spec": Spec(doc=doc, **spec)}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=meta)
    return field(default=default, metadata=meta)


def _kind(hint) -> str:
    """The validator kind of a type hint: str, int, float, bool, list, grid."""
    if hint in (str, int, float, bool):
        return hint.__name__
    origin = typing.get_origin(hint)
    if origin is tuple:
        return "list"
    if origin is dict:
        return "grid"
    raise TypeError(f"unsupported config field type {hint!r}")


def _type_name(value) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


def _num(x) -> str:
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(x)


def _range_text(spec: Spec, noun: str) -> str:
    """``"a real number > 0"``, ``"an integer in [2, 64]"``, ..."""
    lo, hi = spec.low, spec.high
    if lo is not None and hi is not None:
        left = "(" if spec.low_open else "["
        right = ")" if spec.high_open else "]"
        text = f"{noun} in {left}{_num(lo)}, {_num(hi)}{right}"
    elif lo is not None:
        text = f"{noun} {'>' if spec.low_open else '>='} {_num(lo)}"
    elif hi is not None:
        text = f"{noun} {'<' if spec.high_open else '<='} {_num(hi)}"
    else:
        text = noun
    if spec.off is not None:
        text = f"{_num(spec.off)} ({spec.off_doc}) or {text}"
    return text


def expected_text(kind: str, spec: Spec) -> str:
    """Human description of what a field accepts (used in messages and docs)."""
    if spec.choices is not None and kind != "list":
        return f"one of {list(spec.choices)}"
    if kind == "int":
        return _range_text(spec, "an integer")
    if kind == "float":
        return _range_text(spec, "a real number")
    if kind == "bool":
        return "true or false"
    if kind == "str":
        return "a string" + (f" matching {spec.pattern}" if spec.pattern else "")
    if kind == "list":
        what = "a list"
        if spec.nonempty:
            what = "a non-empty list"
        if spec.choices is not None:
            what += f" of items from {list(spec.choices)}"
        if spec.unique:
            what += " without repeats"
        return what
    return "a table"


def check_value(key: str, kind: str, spec: Spec, value):
    """Check one value against its declaration and return it normalized.

    Integers given for a real number become floats; lists become tuples.
    Raises :class:`ConfigError` naming ``key``, the expectation and ``value``.
    """
    try:
        return _check_value(key, kind, spec, value)
    except ConfigError:
        raise
    except ParameterError as err:
        raise ConfigError(str(err)) from None


def _check_value(key: str, kind: str, spec: Spec, value):
    expected = expected_text(kind, spec)
    if isinstance(value, np.generic):
        # Sweeps often come from numpy (np.linspace, np.arange).
        value = value.item()
    if kind == "bool":
        if not isinstance(value, bool):
            fail(key, expected, value, _type_hint(value))
        return value
    if kind == "str":
        if not isinstance(value, str):
            fail(key, expected, value, _type_hint(value))
        if spec.choices is not None and value not in spec.choices:
            close = difflib.get_close_matches(value, list(spec.choices), n=1)
            fail(key, expected, value, f"did you mean {close[0]!r}?" if close else "")
        if spec.pattern is not None and not re.fullmatch(spec.pattern, value):
            fail(key, expected, value)
        return value
    if kind in ("int", "float"):
        return _check_number(key, kind, spec, value, expected)
    if kind == "list":
        if not isinstance(value, list | tuple):
            fail(key, expected, value, _type_hint(value))
        items = tuple(value)
        if spec.nonempty and not items:
            fail(key, expected, list(items))
        item_spec = dataclasses.replace(spec, nonempty=False, unique=False)
        for item in items:
            if not isinstance(item, str):
                fail(key, expected, list(items), f"item {item!r} is {_type_name(item)}")
            if item_spec.choices is not None and item not in item_spec.choices:
                close = difflib.get_close_matches(item, list(item_spec.choices), n=1)
                hint = f"item {item!r} is unknown"
                if close:
                    hint += f"; did you mean {close[0]!r}?"
                fail(key, expected, list(items), hint)
        if spec.unique:
            seen = [i for n, i in enumerate(items) if i in items[:n]]
            if seen:
                fail(key, expected, list(items), f"{seen[0]!r} appears twice")
        return items
    raise TypeError(f"no validator for kind {kind!r}")


def _type_hint(value) -> str:
    hint = f"found {_type_name(value)}"
    if isinstance(value, str):
        hint += "; write numbers and booleans without quotes"
    return hint


def _check_number(key: str, kind: str, spec: Spec, value, expected: str):
    if isinstance(value, bool) or not isinstance(value, int | float):
        fail(key, expected, value, _type_hint(value))
    if kind == "int" and not isinstance(value, int):
        fail(key, expected, value, _type_hint(value))
    if not math.isfinite(value):
        fail(key, expected, value, "not a finite number")
    converted = float(value) if kind == "float" else value
    if spec.off is not None and value == spec.off:
        return converted
    if spec.low is not None and (
        value < spec.low or (spec.low_open and value == spec.low)
    ):
        fail(key, expected, value)
    if spec.high is not None and (
        value > spec.high or (spec.high_open and value == spec.high)
    ):
        fail(key, expected, value)
    return converted


class _Section:
    """Mixin of every config section: generic field checks, then ``_check``."""

    SECTION = ""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            spec = f.metadata.get("spec")
            if spec is None:
                continue
            kind = _kind(hints[f.name])
            if kind == "grid":
                continue
            value = check_value(self._key(f.name), kind, spec, getattr(self, f.name))
            object.__setattr__(self, f.name, value)
        try:
            self._check()
        except ConfigError:
            raise
        except ParameterError as err:
            raise ConfigError(str(err)) from None

    def _key(self, name: str) -> str:
        return f"{self.SECTION}.{name}" if self.SECTION else name

    def _check(self) -> None:
        """Checks involving several fields (overridden by sections)."""


# ---------------------------------------------------------------------------
# The schema


@dataclass(frozen=True)
class TaskConfig(_Section):
    """``[task]``: the data set and its split."""

    SECTION = "task"

    name: str = option(
        "airline",
        "data set: airline passengers (Li et al. 2019), Japanese Vowels speakers, "
        "the adding problem, a CSV series or NPZ sequences",
        choices=tuple(TASK_KINDS),
    )
    path: str = option(
        "", "file to read for the csv and npz tasks (relative to the config file)"
    )
    column: str = option(
        "", "csv: name of the column holding the series ('' = the last column)"
    )
    train_fraction: float = option(
        2.0 / 3.0,
        "airline, csv, and npz without a test set: fraction used for training",
        low=0.0,
        high=1.0,
        low_open=True,
        high_open=True,
    )
    length: int = option(50, "adding: sequence length in steps", low=2)
    n_train: int = option(1000, "adding: number of training sequences", low=1)
    n_test: int = option(200, "adding: number of test sequences", low=1)

    @property
    def kind(self) -> str:
        """``"regression"`` or ``"classification"``."""
        return TASK_KINDS[self.name]

    def _check(self) -> None:
        if self.name in ("csv", "npz"):
            key = self._key("path")
            if not self.path:
                fail(key, f"the path of the {self.name} file", self.path)
            if not Path(self.path).is_file():
                fail(key, "an existing file", self.path, "no such file")


@dataclass(frozen=True)
class NetworkConfig(_Section):
    """``[network]``: the recurrent layer and the dense output layer."""

    SECTION = "network"

    cell: str = option("lstm", "recurrent cell", choices=("lstm", "gru"))
    variant: str = option(
        "vanilla",
        "LSTM variant (peephole connections, coupled input-forget gate)",
        choices=("vanilla", "peephole", "cifg"),
    )
    hidden_size: int = option(15, "number of hidden units", low=1)
    output_activation: str = option(
        "sigmoid",
        "activation of the dense output layer",
        choices=("identity", "sigmoid", "softmax"),
    )
    output: str = option(
        "all",
        "'all': an output at every step; 'last': one output per sequence",
        choices=("all", "last"),
    )

    def _check(self) -> None:
        if self.cell == "gru" and self.variant != "vanilla":
            fail(
                self._key("variant"),
                "'vanilla' when network.cell is 'gru'",
                self.variant,
                "the peephole and cifg variants exist for the LSTM only",
            )


@dataclass(frozen=True)
class TrainingConfig(_Section):
    """``[training]``: loss, epochs and batches."""

    SECTION = "training"

    epochs: int = option(100, "number of training epochs", low=1)
    batch_size: int = option(1, "sequences per weight update", low=1)
    loss: str = option("mse", "loss function", choices=("mse", "cross_entropy"))
    loss_reduction: str = option(
        "sum", "mse: sum or mean over the batch's outputs", choices=("sum", "mean")
    )
    clip_norm: float = option(
        0.0, "largest global gradient norm", low=0.0, low_open=True, off=0.0
    )
    truncate: int = option(
        0,
        "truncated backpropagation through time over this many steps",
        low=1,
        off=0,
        off_doc="full BPTT",
    )
    eval_every: int = option(1, "evaluate on the test split every N epochs", low=1)
    snapshot_every: int = option(10, "save conductance snapshots every N epochs", low=1)


@dataclass(frozen=True)
class OptimizerConfig(_Section):
    """``[optimizer]``: the software optimizer computing the weight updates."""

    SECTION = "optimizer"

    name: str = option("sgd", "optimizer", choices=("sgd", "rmsprop", "adam"))
    lr: float = option(0.01, "learning rate", low=0.0, low_open=True)
    momentum: float = option(0.0, "sgd: momentum", low=0.0, high=1.0, high_open=True)
    alpha: float = option(
        0.99,
        "rmsprop: decay of the squared-gradient average",
        low=0.0,
        high=1.0,
        high_open=True,
    )
    beta1: float = option(
        0.9, "adam: decay of the gradient average", low=0.0, high=1.0, high_open=True
    )
    beta2: float = option(
        0.999,
        "adam: decay of the squared-gradient average",
        low=0.0,
        high=1.0,
        high_open=True,
    )
    eps: float = option(
        1e-8, "rmsprop and adam: term added to the denominator", low=0.0, low_open=True
    )


@dataclass(frozen=True)
class DeviceConfig(_Section):
    """``[device]``: the memristive device (see :class:`crossbar.device.DeviceParams`).

    ``preset`` fills the keys listed in :data:`PRESETS` that the config does
    not set; keys given explicitly win. The defaults below are those of the
    ``li2019`` preset.
    """

    SECTION = "device"

    preset: str = option(
        "li2019",
        "li2019: the 1T1R device of Li et al. 2019 (0-400 uS, 4 uS absolute "
        "programming noise); custom: a noise-free 0-100 uS device",
        choices=tuple(PRESETS),
    )
    g_min: float = option(0.0, "lowest conductance of the window", unit="S", low=0.0)
    g_max: float = option(
        400e-6, "highest conductance of the window", unit="S", low=0.0, low_open=True
    )
    n_levels: int = option(
        0,
        "programmable levels, uniform over the window",
        low=2,
        off=0,
        off_doc="continuous",
    )
    prog_noise: float = option(
        4e-6,
        "programming noise: siemens when prog_noise_mode is 'absolute', "
        "a fraction otherwise",
        low=0.0,
    )
    prog_noise_mode: str = option(
        "absolute",
        "absolute: sigma = prog_noise; relative: prog_noise * (g_max - g_min); "
        "state: prog_noise * target conductance",
        choices=("absolute", "relative", "state"),
    )
    read_noise: float = option(
        0.0, "relative standard deviation of every read", low=0.0
    )
    d2d_sigma: float = option(
        0.0, "relative device-to-device spread of each window's ends", low=0.0
    )
    p_stuck_min: float = option(
        0.0, "probability that a device is stuck at g_min", low=0.0, high=1.0
    )
    p_stuck_max: float = option(
        0.0, "probability that a device is stuck at g_max", low=0.0, high=1.0
    )
    drift_nu: float = option(
        0.0, "drift exponent nu of G(t) = G(t0) (t/t0)^-nu (0 = no drift)", low=0.0
    )
    drift_time: float = option(
        0.0,
        "time between programming and evaluation",
        unit="s",
        low=0.0,
    )

    def _check(self) -> None:
        if self.g_max <= self.g_min:
            fail(
                self._key("g_max"),
                f"greater than device.g_min = {self.g_min!r}",
                self.g_max,
            )
        if self.p_stuck_min + self.p_stuck_max > 1.0:
            fail(
                self._key("p_stuck_max"),
                f"at most 1 - device.p_stuck_min = {1.0 - self.p_stuck_min!r}",
                self.p_stuck_max,
                "the two stuck probabilities sum above 1",
            )

    def to_params(self):
        """The :class:`crossbar.device.DeviceParams` this section describes."""
        from crossbar.device import DeviceParams

        return DeviceParams(
            g_min=self.g_min,
            g_max=self.g_max,
            n_levels=self.n_levels or None,
            prog_noise=self.prog_noise,
            prog_noise_mode=self.prog_noise_mode,
            read_noise=self.read_noise,
            d2d_sigma=self.d2d_sigma,
            p_stuck_min=self.p_stuck_min,
            p_stuck_max=self.p_stuck_max,
            drift_nu=self.drift_nu,
        )


@dataclass(frozen=True)
class ArrayConfig(_Section):
    """``[array]``: geometry, wires and converters of every array."""

    SECTION = "array"

    rows: int = option(128, "word lines (inputs) per array", low=1)
    cols: int = option(64, "bit lines (outputs) per array", low=1)
    r_row: float = option(
        0.0, "wire resistance per row segment (0 = ideal wires)", unit="ohm", low=0.0
    )
    r_col: float = option(
        0.0,
        "wire resistance per column segment (0 = ideal wires)",
        unit="ohm",
        low=0.0,
    )
    dac_bits: int = option(
        0, "input DAC resolution incl. sign", low=2, high=64, off=0, off_doc="ideal"
    )
    dac_v_max: float = option(
        0.2, "largest DAC output voltage", unit="V", low=0.0, low_open=True
    )
    adc_bits: int = option(
        0, "output ADC resolution incl. sign", low=2, high=64, off=0, off_doc="ideal"
    )
    adc_full_scale: float = option(
        0.0,
        "ADC full-scale current; required when adc_bits is set",
        unit="A",
        low=0.0,
        low_open=True,
        off=0.0,
        off_doc="no saturation",
    )

    def _check(self) -> None:
        if (self.r_row > 0) != (self.r_col > 0):
            fail(
                self._key("r_col" if self.r_row > 0 else "r_row"),
                "> 0 like the other wire resistance (both 0 means ideal wires)",
                self.r_col if self.r_row > 0 else self.r_row,
                f"array.r_row = {self.r_row!r}, array.r_col = {self.r_col!r}",
            )
        if self.adc_bits > 0 and self.adc_full_scale <= 0:
            fail(
                self._key("adc_full_scale"),
                "a current > 0 when array.adc_bits is set",
                self.adc_full_scale,
            )

    @property
    def has_wires(self) -> bool:
        """Whether wire resistance (IR drop) is on."""
        return self.r_row > 0

    def to_params(self):
        """The :class:`crossbar.array.ArrayParams` this section describes."""
        from crossbar.array import ArrayParams
        from crossbar.converters import ADC, DAC

        return ArrayParams(
            rows=self.rows,
            cols=self.cols,
            r_row=self.r_row,
            r_col=self.r_col,
            dac=DAC(bits=self.dac_bits or None, v_max=self.dac_v_max),
            adc=ADC(
                bits=self.adc_bits or None,
                i_full_scale=self.adc_full_scale or None,
            ),
        )


@dataclass(frozen=True)
class MappingConfig(_Section):
    """``[mapping]``: weights to conductance pairs and their placement."""

    SECTION = "mapping"

    layout: str = option(
        "row_pairs",
        "direction of the differential pairs",
        choices=("row_pairs", "column_pairs"),
    )
    g_unit: float = option(
        100e-6,
        "conductance difference per unit weight",
        unit="S",
        low=0.0,
        low_open=True,
        off=0.0,
        off_doc="fill the window",
    )
    reference: str = option(
        "center", "where a pair sits in the window", choices=("low", "center")
    )
    v_read: float = option(
        0.2, "read voltage per unit input", unit="V", low=0.0, low_open=True
    )
    bias_voltage: float = option(
        0.2, "voltage on the bias rows", unit="V", low=0.0, low_open=True
    )
    bias_rows: int = option(1, "rows carrying the bias input", low=1)
    placement: str = option(
        "paper",
        "paper: recurrent and output layers at corners of one array; "
        "tiled: every matrix tiled over its own arrays",
        choices=("paper", "tiled"),
    )

    def to_mapping(self):
        """The :class:`crossbar.differential.DifferentialMapping` of this section."""
        from crossbar.differential import DifferentialMapping

        return DifferentialMapping(
            layout=self.layout, g_unit=self.g_unit or None, reference=self.reference
        )


@dataclass(frozen=True)
class InsituConfig(_Section):
    """``[insitu]``: how in-situ training writes its updates to the devices."""

    SECTION = "insitu"

    scheme: str = option(
        "gate",
        "gate: the 1T1R gate-voltage scheme of Li et al. 2019; incremental: "
        "identical SET/RESET pulses",
        choices=("gate", "incremental"),
    )
    dg_up: float = option(
        1e-6, "incremental: step of one SET pulse", unit="S", low=0.0, low_open=True
    )
    dg_down: float = option(
        1e-6, "incremental: step of one RESET pulse", unit="S", low=0.0, low_open=True
    )
    c2c_noise: float = option(
        0.0, "incremental: relative cycle-to-cycle noise of a pulse", low=0.0
    )
    soft_bounds: bool = option(
        True, "incremental: steps shrink near the window's edges"
    )
    read_noise_in_backward: bool = option(
        True, "the backward pass uses a noisy read-back of the conductances"
    )
    init: str = option(
        "reset",
        "reset: every pair starts at zero weight plus programming noise (gate: "
        "RESET, then SET at the initial gate voltage, as Li et al. 2019; "
        "incremental: one-shot writes); network: the software initialization "
        "is programmed",
        choices=("reset", "network"),
    )
    unswitched_noise: bool = option(
        False,
        "gate: a SET also adds programming noise to devices already above its "
        "compliance, as the memNN simulator does",
    )


@dataclass(frozen=True)
class AwareConfig(_Section):
    """``[aware]``: hardware-aware offline training (mode ``offline_aware``)."""

    SECTION = "aware"

    noise_scale: float = option(
        1.0, "multiplies the programming noise seen in training", low=0.0
    )
    levels: bool = option(
        True, "quantize the weights to the device levels during training"
    )


@dataclass(frozen=True)
class SweepConfig(_Section):
    """``[sweep]``: a grid of configs run by a sweep.

    ``grid`` maps dotted config keys to lists of values, in TOML either as
    ``"device.prog_noise" = [0.0, 4e-6]`` under ``[sweep.grid]`` or nested
    (``[sweep.grid.device]``, ``prog_noise = [...]``).
    """

    SECTION = "sweep"

    repeats: int = option(1, "runs per grid point, with seeds seed, seed+1, ...", low=1)
    grid: dict[str, tuple] = option(
        {}, "config key -> list of values; every combination is one grid point"
    )

    def _check(self) -> None:
        keys = schema_keys()
        grid = {}
        for key, values in _flatten_grid(self.grid).items():
            if key.startswith("sweep."):
                raise ConfigError(f"sweep.grid cannot vary the sweep itself ('{key}')")
            if key not in keys:
                valid = [k for k in keys if not k.startswith("sweep.")]
                raise ConfigError(_unknown_key_message(key, valid, "in sweep.grid"))
            if isinstance(values, np.ndarray) and values.ndim == 1:
                values = values.tolist()
            if not isinstance(values, list | tuple) or not values:
                fail(
                    f"sweep.grid.{key}",
                    "a non-empty list of values",
                    values,
                    _type_hint(values) if not isinstance(values, list | tuple) else "",
                )
            kind, spec = keys[key]
            checked = []
            for n, value in enumerate(values):
                try:
                    checked.append(check_value(key, kind, spec, value))
                except ConfigError as err:
                    raise ConfigError(f"{err} (value {n + 1} of sweep.grid)") from None
            grid[key] = tuple(checked)
        object.__setattr__(self, "grid", FrozenGrid(grid))

    def points(self) -> list[dict[str, object]]:
        """Every grid point as ``{key: value}``, the last key varying fastest."""
        keys = list(self.grid)
        return [
            dict(zip(keys, combo, strict=True))
            for combo in itertools.product(*(self.grid[k] for k in keys))
        ]


class FrozenGrid(dict):
    """A read-only dict (so that a :class:`Config` stays immutable and hashable)."""

    def _read_only(self, *args, **kwargs):
        raise TypeError("a config's sweep grid is read-only; use with_overrides")

    __setitem__ = __delitem__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only
    __ior__ = _read_only

    def __hash__(self) -> int:
        return hash(tuple(self.items()))

    def __reduce__(self):
        # Rebuilt from a plain dict: the default protocol would call the
        # blocked __setitem__ (copy.deepcopy and multiprocessing need this).
        return (type(self), (dict(self),))


def _flatten_grid(grid, prefix: str = "") -> dict:
    """Accept nested tables (``grid.device.prog_noise``) as dotted keys."""
    if not isinstance(grid, Mapping):
        fail("sweep.grid", "a table of config keys", grid, _type_hint(grid))
    flat = {}
    for key, value in grid.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten_grid(value, full + "."))
        else:
            flat[full] = value
    return flat


SECTIONS: dict[str, type] = {
    "task": TaskConfig,
    "network": NetworkConfig,
    "training": TrainingConfig,
    "optimizer": OptimizerConfig,
    "device": DeviceConfig,
    "array": ArrayConfig,
    "mapping": MappingConfig,
    "insitu": InsituConfig,
    "aware": AwareConfig,
    "sweep": SweepConfig,
}


@dataclass(frozen=True)
class Config(_Section):
    """A whole experiment: top-level keys and one field per section.

    Access fields as attributes (``cfg.device.prog_noise``) or by dotted
    key (``cfg.get("device.prog_noise")``). Instances are immutable; use
    :meth:`with_overrides` for a changed copy.
    """

    name: str = option(
        "run",
        "name of the experiment, used in the run folder's name "
        "(default: the config file's name)",
        pattern=_NAME_PATTERN,
    )
    description: str = option("", "one line saying what the config reproduces")
    seed: int = option(0, "seed of every random draw of a run", low=0)
    modes: tuple[str, ...] = option(
        ("ideal", "insitu"),
        "training modes to run and compare, in this order",
        choices=MODES,
        nonempty=True,
        unique=True,
    )
    task: TaskConfig = field(default_factory=TaskConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    array: ArrayConfig = field(default_factory=ArrayConfig)
    mapping: MappingConfig = field(default_factory=MappingConfig)
    insitu: InsituConfig = field(default_factory=InsituConfig)
    aware: AwareConfig = field(default_factory=AwareConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)

    def _check(self) -> None:
        for name, cls in SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                fail(name, f"a {cls.__name__}", getattr(self, name))
        net, train, kind = self.network, self.training, self.task.kind
        if train.loss == "cross_entropy" and net.output_activation != "softmax":
            fail(
                "network.output_activation",
                "'softmax' when training.loss is 'cross_entropy'",
                net.output_activation,
                "cross entropy takes class probabilities",
            )
        if kind == "classification" and train.loss != "cross_entropy":
            fail(
                "training.loss",
                f"'cross_entropy' for the classification task {self.task.name!r}",
                train.loss,
            )
        if kind == "regression":
            if train.loss != "mse":
                fail(
                    "training.loss",
                    f"'mse' for the regression task {self.task.name!r}",
                    train.loss,
                )
            if net.output_activation == "softmax":
                fail(
                    "network.output_activation",
                    f"'identity' or 'sigmoid' for the regression task "
                    f"{self.task.name!r}",
                    net.output_activation,
                    "a softmax output sums to 1 and cannot follow a series",
                )
        if self.sweep.grid:
            self._check_grid_points()

    def _check_grid_points(self) -> None:
        points = self.sweep.points()
        if len(points) > _MAX_CHECKED_GRID_POINTS:
            logger.debug(
                "sweep grid has %d points: checked value by value only", len(points)
            )
            return
        base = config_to_dict(self)
        base["sweep"] = {"repeats": 1, "grid": {}}
        for point in points:
            try:
                _config_from_flat_overrides(base, point)
            except ConfigError as err:
                shown = ", ".join(f"{k}={v!r}" for k, v in point.items())
                raise ConfigError(f"{err} (at sweep grid point {shown})") from None

    def get(self, key: str):
        """The value of a dotted key such as ``"device.prog_noise"``."""
        if key not in schema_keys():
            raise ConfigError(_unknown_key_message(key, schema_keys()))
        obj = self
        for part in key.split("."):
            obj = getattr(obj, part)
        return obj

    def with_overrides(self, overrides: Mapping[str, object]) -> Config:
        """A validated copy with dotted keys changed; see :func:`with_overrides`."""
        return with_overrides(self, overrides)


# ---------------------------------------------------------------------------
# Schema introspection


def _section_fields(cls) -> dict[str, tuple[str, Spec]]:
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        spec = f.metadata.get("spec")
        if spec is not None:
            out[f.name] = (_kind(hints[f.name]), spec)
    return out


_SCHEMA: dict[str, tuple[str, Spec]] | None = None


def schema_keys() -> dict[str, tuple[str, Spec]]:
    """Every dotted key of the schema -> ``(kind, Spec)``, in file order."""
    global _SCHEMA
    if _SCHEMA is None:
        keys = dict(_section_fields(Config))
        for section, cls in SECTIONS.items():
            for name, entry in _section_fields(cls).items():
                keys[f"{section}.{name}"] = entry
        _SCHEMA = keys
    return _SCHEMA


def _leaf(key: str) -> str:
    return key.rpartition(".")[2]


def _unknown_key_message(key: str, valid: Iterable[str], where: str = "") -> str:
    valid = list(valid)
    where = f" {where}" if where else ""
    section, _, leaf = key.rpartition(".")
    # A known field name in the wrong section is the likeliest mistake, then
    # a misspelt name in the right section, then one anywhere.
    close = next((k for k in valid if _leaf(k) == leaf and k != key), None)
    in_section = [k for k in valid if k.rpartition(".")[0] == section]
    for pool in (in_section, valid):
        if close is None:
            by_leaf: dict[str, str] = {}
            for k in pool:
                by_leaf.setdefault(_leaf(k), k)
            match = closest_key(leaf, by_leaf)
            close = by_leaf[match] if match else None
    if close:
        return f"unknown key '{key}'{where}; did you mean '{close}'?"
    if section and in_section:
        return f"unknown key '{key}'{where}; valid keys are {', '.join(in_section)}"
    shown = [k for k in valid if "." not in k] + list(SECTIONS)
    return (
        f"unknown key '{key}'{where}; valid top-level keys and sections are "
        + ", ".join(shown)
    )


# ---------------------------------------------------------------------------
# Building a Config from plain data


def config_from_dict(data: Mapping, source: str = "config") -> Config:
    """Validate a nested dict (as read from TOML) and build a :class:`Config`.

    Parameters
    ----------
    data : mapping
        Top-level keys and one table per section; missing keys take their
        defaults (device keys from ``device.preset`` first).
    source : str
        Where the data came from, appended to error messages.
    """
    try:
        return _build(data)
    except ConfigError as err:
        raise ConfigError(f"{err} (in {source})") from None


def _build(data: Mapping) -> Config:
    if not isinstance(data, Mapping):
        raise ConfigError(f"a config must be a table of keys; got {_type_name(data)}")
    top_fields = _section_fields(Config)
    top, sections = {}, {}
    for key, value in data.items():
        if key in SECTIONS:
            if not isinstance(value, Mapping):
                raise ConfigError(
                    f"section '{key}' must be a table ([{key}]); got {value!r}"
                )
            sections[key] = dict(value)
        elif key in top_fields:
            top[key] = value
        elif isinstance(value, Mapping):
            close = closest_key(key, list(SECTIONS))
            hint = (
                f"did you mean '{close}'?"
                if close
                else f"valid sections are {', '.join(SECTIONS)}"
            )
            raise ConfigError(f"unknown section '{key}'; {hint}")
        else:
            raise ConfigError(_unknown_key_message(key, schema_keys()))
    for name, values in sections.items():
        fields = _section_fields(SECTIONS[name])
        for key in values:
            if key not in fields:
                raise ConfigError(_unknown_key_message(f"{name}.{key}", schema_keys()))
    device = sections.setdefault("device", {})
    preset = device.get("preset", DeviceConfig.preset)
    if isinstance(preset, str) and preset in PRESETS:
        for key, value in PRESETS[preset].items():
            device.setdefault(key, value)
    built = {name: cls(**sections.get(name, {})) for name, cls in SECTIONS.items()}
    return Config(**top, **built)


def config_to_dict(cfg: Config) -> dict:
    """The config as a nested dict of plain TOML values (lists, not tuples)."""

    def plain(value):
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    out = {}
    for name in _section_fields(Config):
        out[name] = plain(getattr(cfg, name))
    for section in SECTIONS:
        obj = getattr(cfg, section)
        out[section] = {
            name: plain(getattr(obj, name)) for name in _section_fields(type(obj))
        }
    return out


def _set_dotted(data: dict, key: str, value) -> None:
    """Set ``key`` (``"section.key"``, top-level, or ``"sweep.grid.<key>"``)."""
    if key.startswith("sweep.grid."):
        data.setdefault("sweep", {}).setdefault("grid", {})[key[11:]] = value
        return
    if "." not in key:
        data[key] = value
        return
    section, name = key.split(".", 1)
    if section not in SECTIONS or "." in name:
        raise ConfigError(_unknown_key_message(key, schema_keys()))
    if not isinstance(data.get(section, {}), dict):
        raise ConfigError(f"section '{section}' must be a table; got {data[section]!r}")
    data.setdefault(section, {})[name] = value


def _config_from_flat_overrides(base: dict, overrides: Mapping[str, object]) -> Config:
    data = json.loads(json.dumps(base))  # a deep copy of plain TOML values
    keys = schema_keys()
    for key, value in overrides.items():
        if key not in keys and not key.startswith("sweep.grid."):
            raise ConfigError(_unknown_key_message(key, keys))
        if isinstance(value, tuple):
            value = list(value)
        _set_dotted(data, key, value)
    preset = overrides.get("device.preset")
    if preset in PRESETS:
        # A new preset fills its keys again, except those overridden here.
        for key, value in PRESETS[preset].items():
            if f"device.{key}" not in overrides:
                data["device"][key] = value
    return _build(data)


def with_overrides(cfg: Config, overrides: Mapping[str, object]) -> Config:
    """A validated copy of ``cfg`` with dotted keys set to new values.

    ``with_overrides(cfg, {"device.prog_noise": 8e-6, "seed": 3})``. Setting
    ``device.preset`` also resets the preset's keys (:data:`PRESETS`) that
    are not set in the same call.
    """
    try:
        return _config_from_flat_overrides(config_to_dict(cfg), dict(overrides))
    except ConfigError as err:
        raise ConfigError(f"{err} (in overrides)") from None


# ---------------------------------------------------------------------------
# Reading TOML


def parse_overrides(overrides: Iterable[str]) -> dict[str, object]:
    """Parse ``"section.key=value"`` strings; values are TOML literals.

    A value that is not a TOML literal (``airline``, ``my file.csv``) is
    taken as a string.
    """
    out: dict[str, object] = {}
    for text in overrides:
        key, sep, raw = text.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key:
            raise ConfigError(
                f"an override must look like section.key=value; got {text!r}"
            )
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        out[key] = value
    return out


def shipped_config_dir():
    """The folder of the configs shipped with the package (a Traversable)."""
    return resources.files("lstm_hw") / "configs"


def _shipped_names() -> list[str]:
    folder = shipped_config_dir()
    if not folder.is_dir():
        return []
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def shipped_config_path(name: str) -> Path:
    """The file of a shipped config, ``"airline"`` -> ``.../configs/airline.toml``."""
    names = _shipped_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(
            f"unknown config '{name}': not a file and not a shipped config; {hint}"
            f"shipped configs are {', '.join(names)} (see 'lstm-hw configs')"
        )
    return Path(str(shipped_config_dir() / f"{name}.toml"))


def list_shipped_configs() -> list[tuple[str, str]]:
    """``(name, description)`` of every shipped config, sorted by name."""
    out = []
    for name in _shipped_names():
        path = shipped_config_path(name)
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
        out.append((name, str(data.get("description", ""))))
    return out


def _resolve_source(path_or_name) -> Path:
    text = str(path_or_name)
    path = Path(text)
    looks_like_path = (
        isinstance(path_or_name, Path)
        or text.endswith(".toml")
        or "/" in text
        or "\\" in text
    )
    if path.is_file():
        return path
    if looks_like_path:
        what = "a folder, not a file" if path.is_dir() else "no such file"
        raise ConfigError(f"cannot read config '{text}': {what}")
    return shipped_config_path(text)


def load_config(path_or_name, overrides: Iterable[str] = ()) -> Config:
    """Read, complete and validate a config.

    Parameters
    ----------
    path_or_name : str or Path
        A TOML file, or the name of a shipped config (``"airline"``).
    overrides : iterable of str
        ``"section.key=value"`` items applied on top of the file (values are
        TOML literals, otherwise strings); ``"sweep.grid.<key>=[...]"`` sets
        one sweep axis.

    Returns
    -------
    Config
        With every key set; a relative ``task.path`` is made absolute
        (relative to the config file when set there, to the working folder
        when set by an override).

    Raises
    ------
    ConfigError
        For an unreadable file, invalid TOML, an unknown key, a wrong type or
        an impossible value.
    """
    path = _resolve_source(path_or_name)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config '{path}': {err}") from None
    return parse_config(text, overrides, source=str(path), base_dir=path.parent)


def parse_config(
    text: str,
    overrides: Iterable[str] = (),
    *,
    source: str = "<string>",
    base_dir: Path | None = None,
) -> Config:
    """Like :func:`load_config` for TOML text; ``name`` defaults to the file stem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source} is not valid TOML: {err}") from None
    task = data.get("task")
    if isinstance(task, dict) and isinstance(task.get("path"), str) and task["path"]:
        if base_dir is not None and not Path(task["path"]).is_absolute():
            task["path"] = str((base_dir / task["path"]).resolve())
    if "name" not in data and source.endswith(".toml"):
        data["name"] = re.sub(r"[^A-Za-z0-9_.\-]", "_", Path(source).stem)
    changes = parse_overrides(overrides)
    if not changes:
        return config_from_dict(data, source)
    if isinstance(changes.get("task.path"), str) and changes["task.path"]:
        changes["task.path"] = str(Path(changes["task.path"]).resolve())
    try:
        # Overrides act on the file as written, so a preset given by --set
        # still fills the device keys the file leaves unset.
        for key, value in changes.items():
            if key not in schema_keys() and not key.startswith("sweep.grid."):
                raise ConfigError(_unknown_key_message(key, schema_keys()))
            _set_dotted(data, key, value)
    except ConfigError as err:
        raise ConfigError(f"{err} (in --set)") from None
    return config_from_dict(data, f"{source} with --set overrides")


# ---------------------------------------------------------------------------
# Writing TOML

_BARE_KEY = re.compile(r"[A-Za-z0-9_\-]+")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_str(key)


def _toml_str(text: str) -> str:
    # JSON string escapes are a subset of TOML basic-string escapes; DEL is
    # the one control character JSON leaves raw and TOML forbids.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as a TOML value")


def _comment(kind: str, spec: Spec, default) -> str:
    unit = f" [{spec.unit}]" if spec.unit else ""
    return (
        f"# {spec.doc}{unit}; {expected_text(kind, spec)}; "
        f"default {_toml_value(_plain(default))}"
    )


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def dump_toml(cfg: Config, comments: bool = False) -> str:
    """The config as TOML text that :func:`load_config` reads back unchanged.

    Parameters
    ----------
    comments : bool
        Write each key's documentation, allowed values and default above it.
    """
    data = config_to_dict(cfg)
    lines: list[str] = []

    def emit(cls, values: dict) -> None:
        defaults = {f.name: f for f in dataclasses.fields(cls)}
        for name, (kind, spec) in _section_fields(cls).items():
            if kind == "grid":
                continue
            if comments:
                f = defaults[name]
                default = f.default if f.default is not dataclasses.MISSING else None
                lines.append(_comment(kind, spec, default))
            lines.append(f"{_toml_key(name)} = {_toml_value(values[name])}")

    emit(Config, data)
    for section, cls in SECTIONS.items():
        lines.append("")
        lines.append(f"[{section}]")
        emit(cls, data[section])
    lines.append("")
    lines.append("[sweep.grid]")
    for key, values in data["sweep"]["grid"].items():
        lines.append(f"{_toml_key(key)} = {_toml_value(values)}")
    return "\n".join(lines) + "\n"
