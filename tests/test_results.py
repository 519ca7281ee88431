"""Run folders, atomic writers, metadata and checkpoints."""

from __future__ import annotations

import csv
import json
import tomllib

import numpy as np
import pytest

from crossbar.validation import ParameterError
from lstm_hw import results
from lstm_hw.config import load_config
from lstm_hw.results import (
    Checkpoint,
    CheckpointError,
    RunDirError,
    new_run_dir,
    save_figure,
    write_csv,
    write_json,
    write_metadata,
    write_npz,
    write_text,
)


def leftovers(folder):
    """Temporary files a writer may have left behind."""
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------------------
# Run folders


def test_new_run_dirs_are_fresh_and_never_shared(tmp_path):
    base = tmp_path / "runs"
    made = [new_run_dir(base, "airline") for _ in range(3)]
    assert len(set(made)) == 3
    for path in made:
        assert path.is_dir() and path.parent == base
        assert path.name.startswith("airline-")
        assert not any(path.iterdir())
    stamp = made[0].name.removeprefix("airline-")
    assert len(stamp.split("-")[0]) == 8 and len(stamp.split("-")[1]) == 6


def test_out_folder_missing_or_empty_is_used(tmp_path):
    out = tmp_path / "a" / "b"
    assert new_run_dir(tmp_path, "x", out) == out and out.is_dir()
    assert new_run_dir(tmp_path, "x", out) == out  # still empty


def test_non_empty_out_is_refused_without_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text("{}")
    (out / "metrics.json").write_text('{"old": 1}')
    with pytest.raises(RunDirError, match="not empty.*--overwrite"):
        new_run_dir(tmp_path, "x", out)
    assert (out / "metrics.json").read_text() == '{"old": 1}'
    # With overwrite an earlier run is emptied.
    (out / "sub").mkdir()
    assert new_run_dir(tmp_path, "x", out, overwrite=True) == out
    assert not any(out.iterdir())


def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path):
    out = tmp_path / "home"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(RunDirError, match="not a run folder"):
        new_run_dir(tmp_path, "x", out, overwrite=True)
    assert (out / "thesis.tex").read_text() == "precious"
    afile = tmp_path / "file"
    afile.write_text("")
    with pytest.raises(RunDirError, match="not a folder"):
        new_run_dir(tmp_path, "x", afile)


def test_run_name_must_be_a_safe_folder_name(tmp_path):
    with pytest.raises(ParameterError, match="'name'"):
        new_run_dir(tmp_path, "../escape")


# ---------------------------------------------------------------------------
# Atomic writers


def test_writers_write_what_they_are_given(tmp_path):
    write_json(
        tmp_path / "m.json",
        {"a": np.float64(1.5), "b": np.arange(3), "c": (1, 2), "d": np.int64(7)},
    )
    assert json.loads((tmp_path / "m.json").read_text()) == {
        "a": 1.5,
        "b": [0, 1, 2],
        "c": [1, 2],
        "d": 7,
    }
    write_text(tmp_path / "t.txt", "héllo\n")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo\n"
    rows = [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": np.float64(0.25), "acc": 1}]
    write_csv(tmp_path / "h.csv", rows)
    with open(tmp_path / "h.csv", newline="") as fh:
        read = list(csv.DictReader(fh))
    assert read == [
        {"epoch": "1", "loss": "0.5", "acc": ""},
        {"epoch": "2", "loss": "0.25", "acc": "1"},
    ]
    w = np.random.default_rng(0).standard_normal((4, 3))
    write_npz(tmp_path / "a.npz", w=w, labels=np.array(["x", "y"]))
    with np.load(tmp_path / "a.npz", allow_pickle=False) as z:
        np.testing.assert_array_equal(z["w"], w)
        assert list(z["labels"]) == ["x", "y"]
    assert leftovers(tmp_path) == []


def test_write_json_nan_becomes_null_unless_not_strict(tmp_path):
    write_json(tmp_path / "a.json", {"x": float("nan"), "y": [np.inf]})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": None, "y": [None]}
    write_json(tmp_path / "b.json", {"x": float("nan")}, strict=False)
    assert np.isnan(json.loads((tmp_path / "b.json").read_text())["x"])


def test_write_npz_refuses_object_arrays(tmp_path):
    with pytest.raises(ParameterError, match="pickle"):
        write_npz(tmp_path / "a.npz", bad=np.array([{"a": 1}], dtype=object))
    assert not (tmp_path / "a.npz").exists()
    assert leftovers(tmp_path) == []


class Explodes:
    """A value whose text form cannot be computed."""

    def __str__(self):
        raise RuntimeError("boom")


def test_failed_json_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"old": 1})
    with pytest.raises(TypeError):
        write_json(path, {"new": 2, "bad": object()})
    assert json.loads(path.read_text()) == {"old": 1}
    assert leftovers(tmp_path) == []


def test_failed_csv_write_midway_keeps_the_old_file(tmp_path):
    path = tmp_path / "history.csv"
    write_csv(path, [{"epoch": 1}])
    old = path.read_bytes()
    rows = [{"epoch": n} for n in range(1000)] + [{"epoch": Explodes()}]
    with pytest.raises(RuntimeError, match="boom"):
        write_csv(path, rows)
    assert path.read_bytes() == old
    assert leftovers(tmp_path) == []


def test_failed_npz_write_midway_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "snap.npz"
    write_npz(path, g=np.ones(3))

    def half_then_fail(fh, **arrays):
        fh.write(b"PK\x03\x04 partial archive")
        raise OSError("disk full")

    monkeypatch.setattr(results.np, "savez", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write_npz(path, g=np.zeros(3))
    monkeypatch.undo()
    with np.load(path) as z:
        np.testing.assert_array_equal(z["g"], np.ones(3))
    assert leftovers(tmp_path) == []


def test_failed_figure_save_keeps_the_old_file(tmp_path):
    class HalfFigure:
        def savefig(self, fh, format, **kwargs):
            fh.write(b"\x89PNG half")
            raise RuntimeError("renderer crashed")

    path = tmp_path / "curves.png"
    write_text(path, "old")
    with pytest.raises(RuntimeError, match="renderer"):
        save_figure(HalfFigure(), path)
    assert path.read_text() == "old"
    assert leftovers(tmp_path) == []


def test_save_figure_writes_a_png(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    save_figure(fig, tmp_path / "f.png")
    plt.close(fig)
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------------------
# Metadata


def test_write_metadata(tmp_path):
    cfg = load_config("airline", ["seed=7"])
    info = write_metadata(tmp_path, cfg, 7, argv=["lstm-hw", "run", "--seed", "7"])
    assert load_config(tmp_path / "config.toml") == cfg
    run = json.loads((tmp_path / "run.json").read_text())
    assert run == info
    assert run["seed"] == 7
    assert run["command"] == "lstm-hw run --seed 7"
    assert set(run["versions"]) >= {"lstm-hw", "python", "numpy", "numba"}
    assert run["versions"]["numpy"] == np.__version__
    # The kernels' products run on scipy's OpenBLAS, whose CPU kernel is named.
    scipy_blas = [b for b in run["blas"] if "scipy" in b["library"]]
    assert scipy_blas and scipy_blas[0]["api"] == "openblas"
    assert scipy_blas[0]["architecture"] not in ("", "None")
    assert run["platform"] and run["start_time"]
    tomllib.loads((tmp_path / "config.toml").read_text())


# ---------------------------------------------------------------------------
# Checkpoints


def test_checkpoint_round_trip_is_exact(tmp_path):
    ckpt = Checkpoint(tmp_path, "checkpoint-insitu")
    assert not ckpt.exists() and ckpt.load() is None
    rng = np.random.default_rng(1)
    rng.standard_normal(5)
    arrays = {
        "rnn.weight_ih": rng.standard_normal((8, 3)),
        "pulses": np.arange(4, dtype=np.int64),
        "stuck": np.array([True, False]),
    }
    state = {
        "epoch": 12,
        "loss": 0.1 + 0.2,
        "best": float("nan"),
        "rng": rng.bit_generator.state,
    }
    ckpt.save(arrays, state)
    got_arrays, got_state = ckpt.load()
    assert set(got_arrays) == set(arrays)
    for key, value in arrays.items():
        np.testing.assert_array_equal(got_arrays[key], value)
        assert got_arrays[key].dtype == value.dtype
    assert got_state["epoch"] == 12 and got_state["loss"] == 0.1 + 0.2
    assert np.isnan(got_state["best"])
    again = np.random.default_rng()
    again.bit_generator.state = got_state["rng"]
    np.testing.assert_array_equal(again.standard_normal(4), rng.standard_normal(4))


def test_checkpoint_keeps_only_the_latest_arrays(tmp_path):
    ckpt = Checkpoint(tmp_path, "ck")
    other = Checkpoint(tmp_path, "ck-other")
    other.save({"a": np.zeros(1)}, {})
    for epoch in range(3):
        ckpt.save({"w": np.full(2, epoch)}, {"epoch": epoch})
    arrays, state = ckpt.load()
    assert state == {"epoch": 2}
    np.testing.assert_array_equal(arrays["w"], [2, 2])
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "ck-000003.npz",
        "ck-other-000001.npz",
        "ck-other.json",
        "ck.json",
    ]
    ckpt.clear()
    assert not ckpt.exists() and other.exists()


def test_interrupted_checkpoint_save_leaves_the_previous_one(tmp_path, monkeypatch):
    ckpt = Checkpoint(tmp_path)
    ckpt.save({"w": np.ones(2)}, {"epoch": 1})

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    # Interrupted after the new arrays are written, before the commit.
    monkeypatch.setattr(results, "write_json", crash)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save({"w": np.zeros(2)}, {"epoch": 2})
    monkeypatch.undo()
    arrays, state = ckpt.load()
    assert state == {"epoch": 1}
    np.testing.assert_array_equal(arrays["w"], np.ones(2))
    # The next save cleans up the orphaned array file.
    ckpt.save({"w": np.zeros(2)}, {"epoch": 2})
    assert len(list(tmp_path.glob("checkpoint-*.npz"))) == 1


def test_checkpoint_errors(tmp_path):
    ckpt = Checkpoint(tmp_path)
    ckpt.save({"w": np.ones(2)}, {})
    for npz in tmp_path.glob("*.npz"):
        npz.unlink()
    with pytest.raises(CheckpointError, match="missing"):
        ckpt.load()
    ckpt.state_path.write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read"):
        ckpt.load()
    with pytest.raises(ParameterError, match="pickle"):
        ckpt.save({"o": np.array([None], dtype=object)}, {})
    with pytest.raises(ParameterError):
        Checkpoint(tmp_path, "../x")
