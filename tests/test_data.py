"""Data sets: shipped files, generated problems, user files and their errors."""

import dataclasses
import math
from importlib import resources

import numpy as np
import pytest

from crossbar.validation import ParameterError
from lstm_hw.data import (
    DataError,
    Dataset,
    MinMaxScaler,
    load_airline,
    load_csv_series,
    load_japanese_vowels,
    load_npz_sequences,
    make_adding_problem,
    persistence_rmse,
)


def raw_airline():
    text = (resources.files("lstm_hw") / "data" / "airline_passengers.csv").read_text()
    return np.array([float(line.split(",")[1]) for line in text.split()[1:]])


# ----------------------------------------------------------------- airline


def test_airline_split_and_scaling():
    ds = load_airline()
    raw = raw_airline()
    assert raw.size == 144 and raw[0] == 112.0 and raw[-1] == 432.0
    assert ds.task == "regression" and ds.per_step
    assert ds.x_train.shape == (1, 95, 1) and ds.y_train.shape == (1, 95, 1)
    assert ds.x_test.shape == (1, 143, 1) and ds.y_test.shape == (1, 143, 1)
    assert ds.lengths_train.tolist() == [95] and ds.lengths_test.tolist() == [143]
    assert ds.test_start == 95 and 143 - ds.test_start == 48
    assert (ds.scaler.data_min, ds.scaler.data_max) == (raw.min(), raw.max())
    np.testing.assert_allclose(ds.inverse_transform(ds.x_test[0, :, 0]), raw[:-1])
    np.testing.assert_allclose(ds.inverse_transform(ds.y_test[0, :, 0]), raw[1:])
    np.testing.assert_array_equal(ds.x_train[0], ds.x_test[0, :95])
    np.testing.assert_array_equal(ds.y_train[0], ds.y_test[0, :95])
    # the target of a step is the input of the next step
    np.testing.assert_array_equal(ds.y_test[0, :-1], ds.x_test[0, 1:])
    assert 0.0 <= ds.x_test.min() and ds.x_test.max() <= 1.0
    mask = ds.metric_mask("test")
    assert mask.sum() == 48 and mask[0, 95:].all()
    assert ds.metric_mask("train").all()


def test_airline_persistence_rmse():
    raw = raw_airline()
    expected = math.sqrt(np.mean((raw[96:] - raw[95:-1]) ** 2))
    value = persistence_rmse(load_airline())
    assert value == pytest.approx(expected, rel=1e-12)
    assert 47.5 < value < 48.5


def test_dataset_is_frozen_and_read_only():
    ds = load_airline()
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.test_start = 3
    with pytest.raises(ValueError, match="read-only"):
        ds.x_train[0, 0, 0] = 1.0
    assert "airline" in repr(ds) and len(repr(ds)) < 300


# --------------------------------------------------------- Japanese vowels


def test_japanese_vowels_shapes_labels_lengths():
    ds = load_japanese_vowels()
    assert ds.task == "classification" and not ds.per_step
    assert ds.x_train.shape == (270, 29, 12) and ds.x_test.shape == (370, 29, 12)
    assert ds.n_classes == 9
    np.testing.assert_array_equal(np.bincount(ds.y_train), np.full(9, 30))
    assert np.bincount(ds.y_test, minlength=9).tolist() == [
        31, 35, 88, 44, 29, 24, 40, 50, 29,
    ]  # fmt: skip
    assert ds.lengths_train.min() == 7 and ds.lengths_train.max() == 26
    assert ds.lengths_test.min() == 7 and ds.lengths_test.max() == 29
    for x, lengths in ((ds.x_train, ds.lengths_train), (ds.x_test, ds.lengths_test)):
        valid = np.arange(29)[None, :] < lengths[:, None]
        assert np.all(x[~valid] == 0.0)
        assert np.all(np.any(x[valid] != 0.0, axis=-1))


def test_japanese_vowels_standardisation():
    ds = load_japanese_vowels()
    valid = np.arange(29)[None, :] < ds.lengths_train[:, None]
    frames = ds.x_train[valid]
    np.testing.assert_allclose(frames.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(frames.std(axis=0), 1.0, rtol=1e-12)
    # first value of the first training case, from the raw file
    text = (resources.files("lstm_hw") / "data" / "JapaneseVowels_TRAIN.ts").read_text()
    first_case = next(
        line for line in text.splitlines() if line and line[0] not in "#@"
    )
    raw = float(first_case.split(":")[0].split(",")[0])
    assert raw == 1.860936
    expected = (raw - ds.x_mean[0]) / ds.x_std[0]
    assert ds.x_train[0, 0, 0] == pytest.approx(expected, rel=1e-14)
    assert first_case.split(":")[-1] == "1" and ds.y_train[0] == 0


# ----------------------------------------------------------- adding problem


def test_adding_problem():
    ds = make_adding_problem(64, 20, np.random.default_rng(3), n_test=16)
    assert ds.x_train.shape == (64, 20, 2) and ds.x_test.shape == (16, 20, 2)
    assert ds.y_train.shape == (64, 1) and not ds.per_step
    assert ds.scaler is None
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        markers = x[:, :, 1]
        assert np.all(markers.sum(axis=1) == 2.0)
        assert np.all(markers[:, :10].sum(axis=1) == 1.0)
        assert np.all((0.0 <= x[:, :, 0]) & (x[:, :, 0] < 1.0))
        np.testing.assert_allclose(y[:, 0], np.sum(x[:, :, 0] * markers, axis=1))
    again = make_adding_problem(64, 20, np.random.default_rng(3), n_test=16)
    np.testing.assert_array_equal(again.x_train, ds.x_train)
    other = make_adding_problem(64, 20, np.random.default_rng(4), n_test=16)
    assert not np.array_equal(other.x_train, ds.x_train)
    assert make_adding_problem(8, 4, np.random.default_rng(0)).x_test.shape[0] == 2


def test_adding_problem_errors():
    with pytest.raises(ParameterError, match="parameter 'T'"):
        make_adding_problem(4, 1, np.random.default_rng(0))
    with pytest.raises(ParameterError, match="parameter 'rng'"):
        make_adding_problem(4, 5, 0)


# ---------------------------------------------------------------- CSV files


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_series_like_airline(tmp_path):
    path = write(tmp_path, "series.csv", "when,a,b\n1,10,5\n2,20,6\n\n3,30,7\n4,40,8\n")
    ds = load_csv_series(path, "a", train_fraction=0.5)
    assert ds.name == "series"
    assert ds.x_train.shape == (1, 1, 1) and ds.x_test.shape == (1, 3, 1)
    assert ds.test_start == 1
    np.testing.assert_allclose(ds.x_test[0, :, 0], [0.0, 1 / 3, 2 / 3])
    np.testing.assert_allclose(ds.inverse_transform(ds.y_test[0, :, 0]), [20, 30, 40])
    assert persistence_rmse(ds) == pytest.approx(10.0)
    last = load_csv_series(path)  # default: last column
    np.testing.assert_allclose(last.inverse_transform(last.x_test[0, :, 0]), [5, 6, 7])
    by_index = load_csv_series(path, 1)
    np.testing.assert_array_equal(by_index.x_test, ds.x_test)


def test_csv_series_without_header_and_train_scaling(tmp_path):
    path = write(tmp_path, "s.csv", "1;0\n2;10\n3;20\n4;40\n")
    ds = load_csv_series(
        path, 1, header=False, delimiter=";", train_fraction=2 / 3, scale_on="train"
    )
    assert ds.x_train.shape == (1, 2, 1)
    assert (ds.scaler.data_min, ds.scaler.data_max) == (0.0, 20.0)
    assert ds.y_test[0, -1, 0] == 2.0  # beyond the training range


def test_airline_file_through_the_csv_loader():
    path = resources.files("lstm_hw") / "data" / "airline_passengers.csv"
    ds = load_csv_series(path, "Passengers")
    ref = load_airline()
    np.testing.assert_array_equal(ds.x_test, ref.x_test)
    np.testing.assert_array_equal(ds.y_train, ref.y_train)
    assert ds.test_start == ref.test_start


@pytest.mark.parametrize(
    ("text", "kwargs", "pattern"),
    [
        ("t,value\n1,2\n", {"column": "valu"}, r"column 'valu' must be one of .*"
         r"found no such column \(did you mean 'value'\?\)"),
        ("t,v\n1,2\n2,abc\n3,4\n", {}, r"line 3, column 'v' must be a number; "
         r"found 'abc'"),
        ("t,v\n1,2\n\n2,nan\n3,4\n", {}, r"line 4, column 'v' must be a finite "
         r"number; found 'nan'"),
        ("t,v\n1,2\n2\n3,4\n", {}, r"line 3 must be at least 2 cells"),
        ("t,v\n1,2\n2,3\n", {}, r"column 'v' must be at least 3 values; found 2"),
        ("t,v\n1,5\n2,5\n3,5\n", {}, r"parameter 'values' must be a series that"),
        ("", {}, "must be CSV text with rows"),
        ("t,v\n", {}, "must be data rows"),
        ("t,v\n1,2\n2,3\n3,4\n", {"column": 5}, r"column 5 must be an index below 2"),
    ],
)  # fmt: skip
def test_csv_errors(tmp_path, text, kwargs, pattern):
    path = write(tmp_path, "bad.csv", text)
    with pytest.raises(ValueError, match=pattern) as info:
        load_csv_series(path, **kwargs)
    if info.type is DataError:
        assert str(path) in str(info.value)


def test_csv_not_utf8(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("v\n1\n2\n3\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="latin.csv: the file must be UTF-8 text"):
        load_csv_series(path)


def test_csv_parameter_errors(tmp_path):
    path = write(tmp_path, "s.csv", "v\n1\n2\n3\n")
    with pytest.raises(ParameterError, match="parameter 'train_fraction'"):
        load_csv_series(path, train_fraction=1.0)
    with pytest.raises(ParameterError, match="parameter 'train_fraction'"):
        load_csv_series(path, train_fraction=0.1)  # no training pair left
    with pytest.raises(ParameterError, match="parameter 'scale_on'"):
        load_csv_series(path, scale_on="test")
    with pytest.raises(ParameterError, match="parameter 'column'"):
        load_csv_series(path, "v", header=False)
    assert issubclass(DataError, ValueError)


# ---------------------------------------------------------------- NPZ files


def sequences(rng, n=10, t=6, f=3):
    x = rng.normal(size=(n, t, f))
    y = rng.integers(0, 3, size=n)
    lengths = rng.integers(2, t + 1, size=n)
    return x, y, lengths


def test_npz_with_test_fraction(tmp_path):
    rng = np.random.default_rng(0)
    x, y, lengths = sequences(rng)
    x[0, lengths[0] :] = np.nan  # padding may hold anything
    path = tmp_path / "seq.npz"
    np.savez(path, x=x, y=y, lengths=lengths)
    ds = load_npz_sequences(path, test_fraction=0.3)
    assert ds.task == "classification" and ds.n_classes == 3
    assert ds.x_train.shape == (7, 6, 3) and ds.x_test.shape == (3, 6, 3)
    np.testing.assert_array_equal(ds.y_test, y[7:])
    np.testing.assert_array_equal(ds.lengths_train, lengths[:7])
    assert np.all(ds.x_train[0, lengths[0] :] == 0.0)
    valid = np.arange(6)[None, :] < lengths[:7, None]
    np.testing.assert_array_equal(ds.x_train[valid], x[:7][valid])
    shuffled = load_npz_sequences(path, 0.3, np.random.default_rng(1))
    again = load_npz_sequences(path, 0.3, np.random.default_rng(1))
    np.testing.assert_array_equal(shuffled.y_test, again.y_test)
    order = np.random.default_rng(1).permutation(10)
    np.testing.assert_array_equal(shuffled.y_test, y[np.sort(order[7:])])


def test_npz_with_test_arrays_and_standardisation(tmp_path):
    rng = np.random.default_rng(1)
    x, y, lengths = sequences(rng)
    xt = rng.normal(size=(4, 8, 3)) * 2 + 1
    path = tmp_path / "seq.npz"
    np.savez(path, x=x * 3 + 5, y=y.astype(float), x_test=xt, y_test=[0, 1, 2, 5])
    ds = load_npz_sequences(path, standardize=True)
    assert ds.n_classes == 6
    assert ds.x_train.shape == (10, 8, 3) and ds.x_test.shape == (4, 8, 3)
    assert np.all(ds.x_train[:, 6:] == 0.0) and np.all(ds.lengths_train == 6)
    frames = ds.x_train[:, :6].reshape(-1, 3)
    np.testing.assert_allclose(frames.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(frames.std(axis=0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(ds.x_test, (xt - ds.x_mean) / ds.x_std)
    assert load_npz_sequences(path, n_classes=8).n_classes == 8


def test_npz_errors(tmp_path):
    rng = np.random.default_rng(2)
    x, y, lengths = sequences(rng)

    def check(pattern, **arrays):
        path = tmp_path / "bad.npz"
        np.savez(path, **arrays)
        with pytest.raises(DataError, match=pattern) as info:
            load_npz_sequences(path)
        assert str(path) in str(info.value)

    check(r"array 'y' must be present; found only \['x'\]", x=x)
    check(r"only the arrays .* found \['labels'\]$", x=x, y=y, labels=y)
    check(r"found \['lenghts'\] \(did you mean 'lengths'\?\)", x=x, y=y, lenghts=y)
    check(r"array 'x' must be a non-empty array of shape \(N, T, F\); found shape "
          r"\(10, 6\)", x=x[..., 0], y=y)  # fmt: skip
    check(r"array 'y' must be shape \(10,\)", x=x, y=y[:5])
    check(r"array 'y' must be integer class labels; found dtype float64 with non",
          x=x, y=y + 0.5)  # fmt: skip
    check(r"array 'y' must be class labels >= 0", x=x, y=y - 5)
    check(r"array 'lengths' must be lengths in \[1, 6\]", x=x, y=y, lengths=lengths + 5)
    bad = x.copy()
    bad[2, 0, 1] = np.inf
    check(r"array 'x' must be finite values at the valid steps; found inf at "
          r"\[2, 0, 1\]", x=bad, y=y)  # fmt: skip
    check(r"array 'x' must be real numbers; found dtype <U1", x=np.full((2, 2, 1),
          "a"), y=[0, 1])  # fmt: skip
    check(r"array 'x' must be a numeric array \(pickled objects are refused\)",
          x=np.array([x[0], x[1, :3]], dtype=object), y=[0, 1])  # fmt: skip
    check(r"test arrays must be 'x_test' and 'y_test' together", x=x, y=y, x_test=x)
    check(r"array 'x_test' must be 3 features", x=x, y=y, x_test=x[..., :2], y_test=y)
    path = tmp_path / "bad.npz"
    np.savez(path, x=x, y=y)
    with pytest.raises(DataError, match=r"the labels must be below n_classes=2"):
        load_npz_sequences(path, n_classes=2)
    with pytest.raises(DataError, match=r"enough sequences to hold out"):
        load_npz_sequences(path, test_fraction=0.01)


def test_npz_not_an_archive(tmp_path):
    path = tmp_path / "x.npz"
    path.write_text("not a zip file")
    with pytest.raises(DataError, match="must be an NPZ archive"):
        load_npz_sequences(path)
    npy = tmp_path / "x.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(DataError, match="a single .npy array"):
        load_npz_sequences(npy)
    with pytest.raises(FileNotFoundError):
        load_npz_sequences(tmp_path / "missing.npz")


# ------------------------------------------------------------ Dataset checks


def test_dataset_validation():
    x = np.zeros((2, 3, 1))
    common = dict(
        name="d",
        task="classification",
        x_train=x,
        y_train=np.array([0, 1]),
        lengths_train=np.array([3, 3]),
        x_test=x,
        y_test=np.array([1, 0]),
        lengths_test=np.array([1, 2]),
        n_classes=2,
    )
    ds = Dataset(**common)
    assert ds.n_outputs == 2 and ds.n_features == 1
    with pytest.raises(ParameterError, match="parameter 'lengths_test'"):
        Dataset(**{**common, "lengths_test": np.array([0, 2])})
    with pytest.raises(ParameterError, match="parameter 'y_train'"):
        Dataset(**{**common, "y_train": np.array([0, 2])})
    with pytest.raises(ParameterError, match="parameter 'task'.*did you mean"):
        Dataset(**{**common, "task": "classify"})
    with pytest.raises(ParameterError, match="parameter 'test_start'"):
        Dataset(**{**common, "test_start": 1})
    with pytest.raises(ParameterError, match="parameter 'x_train'"):
        Dataset(**{**common, "x_train": np.full((2, 3, 1), np.nan)})
    with pytest.raises(ParameterError, match="parameter 'task'"):
        ds.inverse_transform([1.0])


def test_min_max_scaler():
    s = MinMaxScaler(100.0, 300.0)
    np.testing.assert_allclose(s.transform([100, 200, 300]), [0, 0.5, 1])
    np.testing.assert_allclose(s.inverse_transform(s.transform([123.0])), [123.0])
    with pytest.raises(ParameterError, match="parameter 'data_max'"):
        MinMaxScaler(1.0, 1.0)
