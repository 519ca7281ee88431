"""Data sets for sequence regression and classification.

Every loader returns a :class:`Dataset`: padded batch-first inputs
``(N, T, F)`` with the valid length of each sequence, targets, and what is
needed to report the test metric in the data's own units.

Shipped with the package (see ``lstm_hw/data/README.md`` for provenance):

- :func:`load_airline` -- monthly airline passengers 1949-1960, next-month
  regression in the setup of Li et al. (2019);
- :func:`load_japanese_vowels` -- speaker identification from 12 cepstrum
  coefficients per frame, 9 classes, 7 to 29 frames.

Generated: :func:`make_adding_problem` (Hochreiter and Schmidhuber 1997).
A user's own data: :func:`load_csv_series` (a time series in a CSV file,
regression) and :func:`load_npz_sequences` (sequences and integer labels in
an NPZ archive, classification). Malformed files raise :class:`DataError`
naming the file, the field, what was expected and what was found.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from crossbar.validation import check_choice, check_number, closest_key, fail

logger = logging.getLogger(__name__)

__all__ = [
    "DataError",
    "Dataset",
    "MinMaxScaler",
    "load_airline",
    "load_csv_series",
    "load_japanese_vowels",
    "load_npz_sequences",
    "make_adding_problem",
    "persistence_rmse",
]


class DataError(ValueError):
    """A data file does not hold what its loader expects."""


def _data_error(source, field: str, expected: str, found: str) -> DataError:
    return DataError(f"{source}: {field} must be {expected}; found {found}")


@dataclass(frozen=True)
class MinMaxScaler:
    """Affine map of a series onto [0, 1].

    Attributes
    ----------
    data_min : float
        Value mapped to 0, in the data's own units.
    data_max : float
        Value mapped to 1, in the data's own units (> ``data_min``).
    """

    data_min: float
    data_max: float

    def __post_init__(self):
        check_number("data_min", self.data_min)
        check_number("data_max", self.data_max)
        if not self.data_max > self.data_min:
            fail("data_max", f"greater than data_min={self.data_min}", self.data_max)

    @property
    def span(self) -> float:
        """``data_max - data_min`` in the data's units."""
        return self.data_max - self.data_min

    def transform(self, values) -> np.ndarray:
        """Data units -> scaled units."""
        return (np.asarray(values, dtype=np.float64) - self.data_min) / self.span

    def inverse_transform(self, values) -> np.ndarray:
        """Scaled units -> data units."""
        return np.asarray(values, dtype=np.float64) * self.span + self.data_min


def _frozen(arr: np.ndarray) -> np.ndarray:
    arr = np.ascontiguousarray(arr)
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test pair of padded sequence sets.

    Attributes
    ----------
    name : str
        Short identifier, e.g. ``"airline"``.
    task : {"regression", "classification"}
    x_train, x_test : ndarray, shape (N, T, F)
        Inputs, batch-first, zero beyond each sequence's length (in the
        scaled or standardised units the network sees).
    y_train, y_test : ndarray
        Regression: float targets ``(N, O)`` for the last valid step or
        ``(N, T, O)`` for every step, in scaled units. Classification: int
        class indices ``(N,)`` or ``(N, T)``.
    lengths_train, lengths_test : ndarray of int64, shape (N,)
        Valid steps of each sequence, in [1, T].
    n_classes : int or None
        Number of classes (classification only).
    scaler : MinMaxScaler or None
        Regression targets are ``scaler.transform(data)``; None means the
        targets are already in the data's own units.
    test_start : int
        For per-step targets: the first step of the test sequences whose
        predictions count in the test metric (earlier steps only warm up the
        state). 0 otherwise.
    description : str
        Provenance and preprocessing in a few sentences.
    x_mean, x_std : ndarray of shape (F,) or None
        Per-channel mean and standard deviation subtracted from and divided
        into the raw inputs, when the loader standardised them.
    """

    name: str
    task: str
    x_train: np.ndarray
    y_train: np.ndarray
    lengths_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    lengths_test: np.ndarray
    n_classes: int | None = None
    scaler: MinMaxScaler | None = None
    test_start: int = 0
    description: str = ""
    x_mean: np.ndarray | None = None
    x_std: np.ndarray | None = None

    def __post_init__(self):
        check_choice("task", self.task, ["regression", "classification"])
        if not isinstance(self.name, str) or not self.name:
            fail("name", "a non-empty string", self.name)
        n_feat = None
        y_ndim = None
        for split in ("train", "test"):
            x = np.asarray(getattr(self, f"x_{split}"), dtype=np.float64)
            if x.ndim != 3 or 0 in x.shape:
                fail(f"x_{split}", "a non-empty array of shape (N, T, F)", x)
            if not np.all(np.isfinite(x)):
                fail(f"x_{split}", "finite (no NaN or inf)", x)
            if n_feat is None:
                n_feat = x.shape[2]
            elif x.shape[2] != n_feat:
                fail("x_test", f"{n_feat} features like x_train", x)
            n, t = x.shape[:2]
            lengths = np.asarray(getattr(self, f"lengths_{split}"))
            if (
                lengths.shape != (n,)
                or not np.issubdtype(lengths.dtype, np.integer)
                or lengths.min() < 1
                or lengths.max() > t
            ):
                fail(f"lengths_{split}", f"{n} integers in [1, {t}]", lengths)
            y = self._checked_targets(
                split, np.asarray(getattr(self, f"y_{split}")), n, t
            )
            if split == "train":
                y_ndim = y.ndim
            elif y.ndim != y_ndim:
                fail("y_test", f"a {y_ndim}-D array like y_train", y)
            object.__setattr__(self, f"x_{split}", _frozen(x))
            object.__setattr__(self, f"y_{split}", _frozen(y))
            object.__setattr__(
                self, f"lengths_{split}", _frozen(lengths.astype(np.int64))
            )
        if (
            self.task == "regression"
            and self.y_train.shape[-1] != self.y_test.shape[-1]
        ):
            fail(
                "y_test", f"{self.y_train.shape[-1]} outputs like y_train", self.y_test
            )
        if self.scaler is not None and not isinstance(self.scaler, MinMaxScaler):
            fail("scaler", "a MinMaxScaler or None", self.scaler)
        check_number("test_start", self.test_start, low=0, integer=True)
        if self.test_start and not self.per_step:
            fail("test_start", "0 for last-step targets", self.test_start)
        if self.per_step and self.test_start >= self.lengths_test.min():
            fail(
                "test_start",
                f"below the shortest test length {self.lengths_test.min()}",
                self.test_start,
            )
        for field in ("x_mean", "x_std"):
            value = getattr(self, field)
            if value is not None:
                value = np.asarray(value, dtype=np.float64)
                if value.shape != (n_feat,):
                    fail(field, f"None or an array of shape ({n_feat},)", value)
                object.__setattr__(self, field, _frozen(value))

    def _checked_targets(self, split: str, y: np.ndarray, n: int, t: int):
        name = f"y_{split}"
        if self.task == "regression":
            if self.n_classes is not None:
                fail("n_classes", "None for a regression task", self.n_classes)
            if (
                not (
                    (y.ndim == 2 and y.shape[0] == n)
                    or (y.ndim == 3 and y.shape[:2] == (n, t))
                )
                or y.shape[-1] == 0
                or not np.issubdtype(y.dtype, np.number)
            ):
                fail(name, f"a float array of shape ({n}, O) or ({n}, {t}, O)", y)
            y = y.astype(np.float64)
            if not np.all(np.isfinite(y)):
                fail(name, "finite (no NaN or inf)", y)
            return y
        check_number("n_classes", self.n_classes, low=2, integer=True)
        if self.scaler is not None:
            fail("scaler", "None for a classification task", self.scaler)
        if y.shape not in ((n,), (n, t)) or not np.issubdtype(y.dtype, np.integer):
            fail(name, f"integer class indices of shape ({n},) or ({n}, {t})", y)
        if y.min() < 0 or y.max() >= self.n_classes:
            fail(name, f"class indices in [0, {self.n_classes - 1}]", y)
        return y.astype(np.int64)

    def __repr__(self) -> str:
        extra = (
            f"n_classes={self.n_classes}"
            if self.task == "classification"
            else f"scaler={self.scaler}, test_start={self.test_start}"
        )
        return (
            f"Dataset(name={self.name!r}, task={self.task!r}, "
            f"train={self.x_train.shape}, test={self.x_test.shape}, "
            f"y_train={self.y_train.shape}, {extra})"
        )

    @property
    def per_step(self) -> bool:
        """True when every step has a target, False for one per sequence."""
        extra = 1 if self.task == "regression" else 0
        return self.y_train.ndim == 2 + extra

    @property
    def n_features(self) -> int:
        """Input features per step."""
        return self.x_train.shape[2]

    @property
    def n_outputs(self) -> int:
        """Network outputs per step: regression targets or classes."""
        if self.task == "classification":
            return int(self.n_classes)
        return self.y_train.shape[-1]

    def split(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(x, y, lengths)`` of ``"train"`` or ``"test"``."""
        check_choice("split", split, ["train", "test"])
        return (
            getattr(self, f"x_{split}"),
            getattr(self, f"y_{split}"),
            getattr(self, f"lengths_{split}"),
        )

    def metric_mask(self, split: str = "test") -> np.ndarray | None:
        """Boolean ``(N, T)`` mask of the steps counted in the metric of
        ``split`` (valid steps, from ``test_start`` on for the test split);
        None for last-step targets."""
        x, _, lengths = self.split(split)
        if not self.per_step:
            return None
        t = np.arange(x.shape[1])[None, :]
        mask = t < lengths[:, None]
        if split == "test":
            mask &= t >= self.test_start
        return mask

    def inverse_transform(self, values) -> np.ndarray:
        """Scaled regression values -> the data's own units."""
        if self.task != "regression":
            fail("task", "'regression' for inverse_transform", self.task)
        if self.scaler is None:
            return np.asarray(values, dtype=np.float64)
        return self.scaler.inverse_transform(values)


# ----------------------------------------------------------------- helpers


def _package_text(filename: str) -> tuple[str, str]:
    """Text of a package data file and a name for error messages."""
    res = resources.files("lstm_hw") / "data" / filename
    return res.read_text(encoding="utf-8"), f"lstm_hw/data/{filename}"


def _standardise(x_train, lengths_train, others):
    """Per-channel standardisation with statistics of the valid training
    steps; padding stays 0. Returns (x_train, others, mean, std)."""
    mask = np.arange(x_train.shape[1])[None, :] < lengths_train[:, None]
    frames = x_train[mask]
    mean = frames.mean(axis=0)
    std = frames.std(axis=0)
    std = np.where(std > 0.0, std, 1.0)

    def apply(x, lengths):
        valid = np.arange(x.shape[1])[None, :] < lengths[:, None]
        return np.where(valid[:, :, None], (x - mean) / std, 0.0)

    return (
        apply(x_train, lengths_train),
        [apply(x, n) for x, n in others],
        mean,
        std,
    )


def _pairs_dataset(
    values: np.ndarray,
    train_fraction: float,
    scale_on: str,
    name: str,
    description: str,
) -> Dataset:
    """Next-value regression on one series: input ``s[t]``, target
    ``s[t+1]``; train on the first pairs, test on the rest with the
    state warmed up on the training part."""
    n_pairs = values.size - 1
    n_train = int(math.floor(n_pairs * train_fraction + 1e-9))
    if not 1 <= n_train < n_pairs:
        fail(
            "train_fraction",
            f"a fraction leaving 1 to {n_pairs - 1} of the {n_pairs} pairs for "
            "training",
            train_fraction,
        )
    basis = values if scale_on == "series" else values[: n_train + 1]
    lo, hi = float(basis.min()), float(basis.max())
    if not hi > lo:
        fail(
            "values",
            "a series that is not constant",
            float(lo),
            f"min and max of the {scale_on} scaling range are equal",
        )
    scaler = MinMaxScaler(lo, hi)
    s = scaler.transform(values)
    x, y = s[:-1], s[1:]
    return Dataset(
        name=name,
        task="regression",
        x_train=x[None, :n_train, None],
        y_train=y[None, :n_train, None],
        lengths_train=np.array([n_train]),
        x_test=x[None, :, None],
        y_test=y[None, :, None],
        lengths_test=np.array([n_pairs]),
        scaler=scaler,
        test_start=n_train,
        description=description,
    )


def _read_csv_column(
    text: str, source: str, column, header: bool, delimiter: str
) -> tuple[np.ndarray, str]:
    """Parse one numeric column of a CSV text; returns (values, column name)."""
    rows = [
        (i + 1, row)
        for i, row in enumerate(csv.reader(io.StringIO(text), delimiter=delimiter))
        if row and any(cell.strip() for cell in row)
    ]
    if not rows:
        raise _data_error(source, "the file", "CSV text with rows", "an empty file")
    names = None
    if header:
        names = [c.strip() for c in rows[0][1]]
        rows = rows[1:]
    if not rows:
        raise _data_error(source, "the file", "data rows", "none")
    width = len(names) if names is not None else len(rows[0][1])
    if column is None:
        index = width - 1
    elif isinstance(column, str):
        if names is None:
            fail("column", "an integer index when header=False", column)
        if column not in names:
            near = closest_key(column, names)
            hint = f" (did you mean '{near}'?)" if near else ""
            raise _data_error(
                source,
                f"column '{column}'",
                f"one of the header's {names}",
                f"no such column{hint}",
            )
        index = names.index(column)
    else:
        check_number("column", column, low=0, integer=True)
        index = int(column)
        if index >= width:
            raise _data_error(
                source,
                f"column {index}",
                f"an index below {width}",
                f"only {width} columns",
            )
    label = names[index] if names else str(index)
    values = []
    for line, row in rows:
        if index >= len(row):
            raise _data_error(
                source,
                f"line {line}",
                f"at least {index + 1} cells",
                f"{len(row)}: {delimiter.join(row)!r}",
            )
        cell = row[index].strip()
        try:
            value = float(cell)
        except ValueError:
            raise _data_error(
                source, f"line {line}, column '{label}'", "a number", repr(cell)
            ) from None
        if not math.isfinite(value):
            raise _data_error(
                source,
                f"line {line}, column '{label}'",
                "a finite number",
                repr(cell),
            )
        values.append(value)
    if len(values) < 3:
        raise _data_error(
            source, f"column '{label}'", "at least 3 values", f"{len(values)}"
        )
    return np.array(values), label


# ---------------------------------------------------------------- airline


def load_airline() -> Dataset:
    """Monthly international airline passengers, next-month regression.

    The setup of Li et al., Nature Machine Intelligence 1, 49-57 (2019): the
    144 monthly totals (thousands of passengers, 1949-1960) are scaled to
    [0, 1] with the minimum and maximum of the whole series; the input of
    step t is month t and its target month t + 1, giving 143 pairs. The
    first ``floor(143 * 2 / 3) = 95`` pairs form the training sequence
    (one sequence, batch 1). The test input is the whole 143-step sequence
    and only its predictions from step ``test_start = 95`` on (the last 48
    months) count, so that the state is warmed up on the training months.

    Returns
    -------
    Dataset
        ``x_train`` (1, 95, 1), ``x_test`` (1, 143, 1), per-step targets;
        ``inverse_transform`` gives thousands of passengers.
    """
    text, source = _package_text("airline_passengers.csv")
    values, _ = _read_csv_column(text, source, "Passengers", True, ",")
    if values.size != 144:
        raise _data_error(source, "the series", "144 monthly values", values.size)
    return _pairs_dataset(
        values,
        2.0 / 3.0,
        "series",
        "airline",
        "Monthly international airline passengers 1949-1960 (thousands; Box, "
        "Jenkins and Reinsel, series G). Input: one month scaled to [0, 1] by the "
        "series' min and max; target: the next month. Train on the first 95 "
        "pairs as one sequence; test on the last 48 months after running the "
        "whole 143-step sequence (setup of Li et al. 2019).",
    )


def persistence_rmse(dataset: Dataset) -> float:
    """RMSE of the naive forecast "next value = current value" on the test
    steps, in the data's own units.

    Valid for next-value regression data sets (``load_airline``,
    ``load_csv_series``) whose input at step t is the target of step t - 1.
    For the airline data this is about 48 thousand passengers.
    """
    if dataset.task != "regression" or not dataset.per_step:
        fail("dataset", "a per-step regression data set", dataset.name)
    if dataset.n_features != dataset.n_outputs:
        fail(
            "dataset",
            "a next-value data set with as many inputs as outputs",
            dataset.name,
        )
    mask = dataset.metric_mask("test")
    pred = dataset.inverse_transform(dataset.x_test)[mask]
    true = dataset.inverse_transform(dataset.y_test)[mask]
    return float(np.sqrt(np.mean((pred - true) ** 2)))


# -------------------------------------------------------- Japanese vowels


def _parse_ts(text: str, source: str):
    """Parse a multivariate ``.ts`` text: list of (T_i, D) arrays, labels,
    and the class labels declared in the header."""
    dims = None
    class_labels = None
    in_data = False
    cases, labels = [], []
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            if not line.startswith("@"):
                raise _data_error(
                    source,
                    f"line {line_no}",
                    "a header line starting with '@'",
                    repr(line[:40]),
                )
            key, _, rest = line[1:].partition(" ")
            key = key.lower()
            if key == "dimensions":
                if not rest.strip().isdigit():
                    raise _data_error(
                        source,
                        f"line {line_no}",
                        "'@dimensions <integer>'",
                        repr(line),
                    )
                dims = int(rest)
            elif key == "classlabel":
                words = rest.split()
                if words and words[0].lower() == "true":
                    class_labels = words[1:]
            elif key == "data":
                in_data = True
            continue
        parts = line.split(":")
        if dims is not None and len(parts) != dims + 1:
            raise _data_error(
                source,
                f"line {line_no}",
                f"{dims} dimensions and a label separated by ':'",
                f"{len(parts)} fields",
            )
        try:
            channels = [np.array(p.split(","), dtype=np.float64) for p in parts[:-1]]
        except ValueError:
            raise _data_error(
                source,
                f"line {line_no}",
                "comma-separated numbers",
                "a non-numeric value",
            ) from None
        if len({c.size for c in channels}) != 1:
            raise _data_error(
                source,
                f"line {line_no}",
                "dimensions of equal length",
                f"lengths {sorted({c.size for c in channels})}",
            )
        case = np.stack(channels, axis=1)
        if not np.all(np.isfinite(case)):
            raise _data_error(source, f"line {line_no}", "finite values", "NaN or inf")
        cases.append(case)
        labels.append(parts[-1].strip())
    if not cases:
        raise _data_error(source, "the file", "cases after '@data'", "none")
    return cases, labels, class_labels


def _pad(cases: list[np.ndarray], steps: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.zeros((len(cases), steps, cases[0].shape[1]))
    for i, case in enumerate(cases):
        x[i, : case.shape[0]] = case
    return x, np.array([c.shape[0] for c in cases], dtype=np.int64)


def load_japanese_vowels() -> Dataset:
    """Japanese Vowels speaker identification (Kudo et al. 1999).

    Nine speakers, 12 LPC cepstrum coefficients per frame, 7 to 29 frames:
    270 training and 370 test utterances, padded with zeros to 29 frames
    with their lengths kept. Labels 1..9 become 0..8. Every channel is
    standardised with the mean and (population) standard deviation of the
    valid training frames; the statistics are kept in ``x_mean`` and
    ``x_std``. One target per sequence, to be read at its last valid step.
    """
    split_data = {}
    class_labels = None
    for split in ("TRAIN", "TEST"):
        text, source = _package_text(f"JapaneseVowels_{split}.ts")
        cases, labels, declared = _parse_ts(text, source)
        class_labels = class_labels or declared
        split_data[split] = (cases, labels, source)
    if class_labels is None:
        class_labels = sorted(
            {lab for _, labs, _ in split_data.values() for lab in labs}
        )
    index = {lab: i for i, lab in enumerate(class_labels)}
    steps = max(c.shape[0] for cases, _, _ in split_data.values() for c in cases)
    arrays = {}
    for split, (cases, labels, source) in split_data.items():
        unknown = sorted(set(labels) - set(index))
        if unknown:
            raise _data_error(source, "class labels", f"one of {class_labels}", unknown)
        x, lengths = _pad(cases, steps)
        arrays[split] = (x, np.array([index[lab] for lab in labels]), lengths)
    (x_tr, y_tr, n_tr), (x_te, y_te, n_te) = arrays["TRAIN"], arrays["TEST"]
    x_tr, (x_te,), mean, std = _standardise(x_tr, n_tr, [(x_te, n_te)])
    return Dataset(
        name="japanese_vowels",
        task="classification",
        x_train=x_tr,
        y_train=y_tr,
        lengths_train=n_tr,
        x_test=x_te,
        y_test=y_te,
        lengths_test=n_te,
        n_classes=len(class_labels),
        description=(
            "Japanese Vowels (Kudo, Toyama and Shimbo 1999, UCI, CC BY 4.0): "
            "identify one of 9 speakers from 12 LPC cepstrum coefficients per "
            f"frame, 7 to {steps} frames, padded to {steps}. Channels standardised "
            "with the mean and std of the valid training frames. 270 train / 370 "
            "test."
        ),
        x_mean=mean,
        x_std=std,
    )


# ---------------------------------------------------------- adding problem


def make_adding_problem(
    n: int, T: int, rng: np.random.Generator, n_test: int | None = None
) -> Dataset:
    """The adding problem (Hochreiter and Schmidhuber 1997), long time lags.

    Each step has two inputs: a value drawn uniformly from [0, 1) and a
    marker, 1 at exactly two steps and 0 elsewhere. One marked step is
    drawn from the first half of the sequence and one from the second half;
    the target, read after the last step, is the sum of the two marked
    values. Predicting the mean 1 gives an RMSE of ``sqrt(1/6) = 0.41``.

    Parameters
    ----------
    n : int
        Training sequences, >= 1.
    T : int
        Steps per sequence, >= 2.
    rng : numpy.random.Generator
        Source of all randomness (training set first, then test set).
    n_test : int, optional
        Test sequences; default ``max(1, n // 4)``.
    """
    check_number("n", n, low=1, integer=True)
    check_number("T", T, low=2, integer=True)
    if not isinstance(rng, np.random.Generator):
        fail("rng", "a numpy.random.Generator", rng)
    if n_test is None:
        n_test = max(1, n // 4)
    check_number("n_test", n_test, low=1, integer=True)

    def draw(count):
        values = rng.uniform(0.0, 1.0, size=(count, T))
        half = T // 2
        first = rng.integers(0, half, size=count)
        second = rng.integers(half, T, size=count)
        rows = np.arange(count)
        x = np.zeros((count, T, 2))
        x[:, :, 0] = values
        x[rows, first, 1] = 1.0
        x[rows, second, 1] = 1.0
        y = values[rows, first] + values[rows, second]
        return x, y[:, None], np.full(count, T, dtype=np.int64)

    x_tr, y_tr, n_tr = draw(n)
    x_te, y_te, n_te = draw(n_test)
    return Dataset(
        name="adding",
        task="regression",
        x_train=x_tr,
        y_train=y_tr,
        lengths_train=n_tr,
        x_test=x_te,
        y_test=y_te,
        lengths_test=n_te,
        description=(
            f"Adding problem (Hochreiter and Schmidhuber 1997), T={T}: inputs "
            "(value in [0, 1), marker); target the sum of the two marked values "
            "at the last step. Constant prediction RMSE: 0.41."
        ),
    )


# ------------------------------------------------------- user's own files


def load_csv_series(
    path,
    column: str | int | None = None,
    train_fraction: float = 2.0 / 3.0,
    *,
    header: bool = True,
    delimiter: str = ",",
    scale_on: str = "series",
    name: str | None = None,
) -> Dataset:
    """A univariate time series from a CSV file as next-value regression.

    Same convention as :func:`load_airline`: values scaled to [0, 1], input
    ``s[t]`` and target ``s[t + 1]``; the first
    ``floor((L - 1) * train_fraction)`` pairs are the training sequence and
    the test metric covers the remaining pairs after running the whole
    sequence.

    Parameters
    ----------
    path : str or Path
        CSV file. Blank lines are skipped.
    column : str or int, optional
        Header name or 0-based index of the value column; default the last.
    train_fraction : float
        Fraction of the pairs used for training, in (0, 1).
    header : bool
        Whether the first non-blank line holds column names.
    delimiter : str
        Cell separator.
    scale_on : {"series", "train"}
        Take min and max from the whole series (as Li et al. 2019) or from
        the training part only (no test information in the scaling).
    name : str, optional
        Dataset name; default the file's stem.

    Raises
    ------
    DataError
        Missing column, non-numeric or non-finite cell (with its line
        number), or fewer than 3 values.
    """
    check_number(
        "train_fraction",
        train_fraction,
        low=0.0,
        high=1.0,
        low_open=True,
        high_open=True,
    )
    check_choice("scale_on", scale_on, ["series", "train"])
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise _data_error(
            str(path), "the file", "UTF-8 text", f"undecodable bytes ({err.reason})"
        ) from None
    values, label = _read_csv_column(text, str(path), column, header, delimiter)
    logger.info("read %d values of column %r from %s", values.size, label, path)
    return _pairs_dataset(
        values,
        train_fraction,
        scale_on,
        name or path.stem,
        f"Column '{label}' of {path.name}: {values.size} values scaled to [0, 1] "
        f"by the {scale_on}'s min and max; next-value regression, train fraction "
        f"{train_fraction:.3g}.",
    )


_NPZ_ARRAYS = ("x", "y", "lengths", "x_test", "y_test", "lengths_test")


def _npz_array(archive, key: str, source: str) -> np.ndarray | None:
    if key not in archive.files:
        return None
    try:
        return archive[key]
    except ValueError as err:
        raise _data_error(
            source,
            f"array '{key}'",
            "a numeric array (pickled objects are refused)",
            f"an array that needs pickle ({err})",
        ) from None


def _npz_inputs(x, source: str, key: str) -> np.ndarray:
    if x.dtype == object or not (
        np.issubdtype(x.dtype, np.integer)
        or np.issubdtype(x.dtype, np.floating)
        or x.dtype == np.bool_
    ):
        raise _data_error(source, f"array '{key}'", "real numbers", f"dtype {x.dtype}")
    if x.ndim != 3 or 0 in x.shape:
        raise _data_error(
            source,
            f"array '{key}'",
            "a non-empty array of shape (N, T, F)",
            f"shape {x.shape}",
        )
    return x.astype(np.float64)


def _npz_labels(y, n: int, source: str, key: str) -> np.ndarray:
    if y.shape != (n,):
        raise _data_error(
            source,
            f"array '{key}'",
            f"shape ({n},) (one label per sequence)",
            f"shape {y.shape}",
        )
    if np.issubdtype(y.dtype, np.integer):
        labels = y.astype(np.int64)
    elif (
        np.issubdtype(y.dtype, np.floating)
        and np.all(np.isfinite(y))
        and np.all(y == np.round(y))
    ):
        labels = y.astype(np.int64)
    else:
        raise _data_error(
            source,
            f"array '{key}'",
            "integer class labels",
            f"dtype {y.dtype}"
            + (
                " with non-integer values"
                if np.issubdtype(y.dtype, np.floating)
                else ""
            ),
        )
    if labels.size and labels.min() < 0:
        raise _data_error(
            source,
            f"array '{key}'",
            "class labels >= 0",
            f"minimum {labels.min()}",
        )
    return labels


def _npz_lengths(lengths, x: np.ndarray, source: str, key: str) -> np.ndarray:
    n, t = x.shape[:2]
    if lengths is None:
        return np.full(n, t, dtype=np.int64)
    ok_type = np.issubdtype(lengths.dtype, np.integer) or (
        np.issubdtype(lengths.dtype, np.floating)
        and np.all(np.isfinite(lengths))
        and np.all(lengths == np.round(lengths))
    )
    if lengths.shape != (n,) or not ok_type:
        raise _data_error(
            source,
            f"array '{key}'",
            f"{n} integers",
            f"shape {lengths.shape}, dtype {lengths.dtype}",
        )
    lengths = lengths.astype(np.int64)
    if lengths.min() < 1 or lengths.max() > t:
        raise _data_error(
            source,
            f"array '{key}'",
            f"lengths in [1, {t}]",
            f"values from {lengths.min()} to {lengths.max()}",
        )
    return lengths


def _npz_clean(x: np.ndarray, lengths: np.ndarray, source: str, key: str):
    """Check the valid steps are finite; set the padding to 0."""
    valid = np.arange(x.shape[1])[None, :] < lengths[:, None]
    bad = valid[:, :, None] & ~np.isfinite(x)
    if bad.any():
        i, t, f = (int(v) for v in np.argwhere(bad)[0])
        raise _data_error(
            source,
            f"array '{key}'",
            "finite values at the valid steps",
            f"{x[i, t, f]} at [{i}, {t}, {f}] ({int(bad.sum())} entries)",
        )
    return np.where(valid[:, :, None], x, 0.0)


def load_npz_sequences(
    path,
    test_fraction: float = 0.2,
    rng: np.random.Generator | None = None,
    *,
    n_classes: int | None = None,
    standardize: bool = False,
    name: str | None = None,
) -> Dataset:
    """Labelled sequences from an NPZ archive as a classification Dataset.

    The archive holds ``x`` (N, T, F) real inputs, ``y`` (N,) integer labels
    in ``[0, n_classes)``, and optionally ``lengths`` (N,) valid steps per
    sequence (default T), and a test set ``x_test``, ``y_test``,
    ``lengths_test``. Values beyond a sequence's length are ignored (they
    may be NaN) and set to 0. It is read with ``allow_pickle=False``.

    Parameters
    ----------
    path : str or Path
        The ``.npz`` file.
    test_fraction : float
        Without ``x_test``: fraction of the sequences held out, in (0, 1).
    rng : numpy.random.Generator, optional
        Without ``x_test``: draws the held-out sequences; None takes the last
        ones in file order.
    n_classes : int, optional
        Number of classes; default the largest label + 1.
    standardize : bool
        Standardise every channel with the mean and std of the valid
        training steps.
    name : str, optional
        Dataset name; default the file's stem.

    Raises
    ------
    DataError
        Missing or unknown arrays, wrong shapes or types, non-finite inputs,
        labels out of range, or arrays that need pickle.
    """
    check_number(
        "test_fraction",
        test_fraction,
        low=0.0,
        high=1.0,
        low_open=True,
        high_open=True,
    )
    if rng is not None and not isinstance(rng, np.random.Generator):
        fail("rng", "a numpy.random.Generator or None", rng)
    path = Path(path)
    source = str(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise _data_error(
            source, "the file", "an NPZ archive (numpy.savez)", f"unreadable: {err}"
        ) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise _data_error(
            source, "the file", "an NPZ archive (numpy.savez)", "a single .npy array"
        )
    with archive:
        unknown = [k for k in archive.files if k not in _NPZ_ARRAYS]
        if unknown:
            near = closest_key(unknown[0], _NPZ_ARRAYS)
            hint = f" (did you mean '{near}'?)" if near else ""
            raise _data_error(
                source,
                "the archive",
                f"only the arrays {list(_NPZ_ARRAYS)}",
                f"{unknown}{hint}",
            )
        arrays = {k: _npz_array(archive, k, source) for k in _NPZ_ARRAYS}
    for key in ("x", "y"):
        if arrays[key] is None:
            raise _data_error(
                source, f"array '{key}'", "present", f"only {sorted(archive.files)}"
            )
    has_test = arrays["x_test"] is not None
    if has_test != (arrays["y_test"] is not None) or (
        arrays["lengths_test"] is not None and not has_test
    ):
        raise _data_error(
            source,
            "the test arrays",
            "'x_test' and 'y_test' together ('lengths_test' only with them)",
            sorted(
                k for k in ("x_test", "y_test", "lengths_test") if arrays[k] is not None
            ),
        )
    x = _npz_inputs(arrays["x"], source, "x")
    y = _npz_labels(arrays["y"], x.shape[0], source, "y")
    lengths = _npz_lengths(arrays["lengths"], x, source, "lengths")
    x = _npz_clean(x, lengths, source, "x")
    if has_test:
        x_te = _npz_inputs(arrays["x_test"], source, "x_test")
        if x_te.shape[2] != x.shape[2]:
            raise _data_error(
                source,
                "array 'x_test'",
                f"{x.shape[2]} features like 'x'",
                f"shape {x_te.shape}",
            )
        y_te = _npz_labels(arrays["y_test"], x_te.shape[0], source, "y_test")
        n_te = _npz_lengths(arrays["lengths_test"], x_te, source, "lengths_test")
        x_te = _npz_clean(x_te, n_te, source, "x_test")
        steps = max(x.shape[1], x_te.shape[1])
        x = np.pad(x, ((0, 0), (0, steps - x.shape[1]), (0, 0)))
        x_te = np.pad(x_te, ((0, 0), (0, steps - x_te.shape[1]), (0, 0)))
        x_tr, y_tr, n_tr = x, y, lengths
    else:
        n = x.shape[0]
        n_test = int(round(n * test_fraction))
        if not 1 <= n_test < n:
            raise _data_error(
                source,
                "array 'x'",
                f"enough sequences to hold out test_fraction={test_fraction}",
                f"{n} sequences",
            )
        order = np.arange(n) if rng is None else rng.permutation(n)
        tr, te = np.sort(order[: n - n_test]), np.sort(order[n - n_test :])
        x_tr, y_tr, n_tr = x[tr], y[tr], lengths[tr]
        x_te, y_te, n_te = x[te], y[te], lengths[te]
    top = int(max(y_tr.max(), y_te.max()))
    if n_classes is None:
        n_classes = max(2, top + 1)
    else:
        check_number("n_classes", n_classes, low=2, integer=True)
        if top >= n_classes:
            raise _data_error(
                source,
                "the labels",
                f"below n_classes={n_classes}",
                f"label {top}",
            )
    mean = std = None
    if standardize:
        x_tr, (x_te,), mean, std = _standardise(x_tr, n_tr, [(x_te, n_te)])
    return Dataset(
        name=name or path.stem,
        task="classification",
        x_train=x_tr,
        y_train=y_tr,
        lengths_train=n_tr,
        x_test=x_te,
        y_test=y_te,
        lengths_test=n_te,
        n_classes=int(n_classes),
        description=(
            f"{path.name}: {x_tr.shape[0]} train / {x_te.shape[0]} test sequences, "
            f"{x_tr.shape[2]} features, up to {x_tr.shape[1]} steps, {n_classes} "
            "classes"
            + ("; channels standardised on the train set." if standardize else ".")
        ),
        x_mean=mean,
        x_std=std,
    )
