"""The training modes end to end, on small settings."""

import json

import numpy as np
import pytest

from lstm_hw.cli import main
from lstm_hw.config import load_config
from lstm_hw.experiment import run_experiment

ALL = '["ideal", "offline", "offline_aware", "insitu"]'


def _cfg(*overrides):
    return load_config(
        "airline",
        [
            "training.epochs=4",
            "training.eval_every=2",
            "training.snapshot_every=2",
            f"modes={ALL}",
            *overrides,
        ],
    )


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("full")
    return run_dir, run_experiment(_cfg(), run_dir)


def test_every_mode_reports_its_metrics(full_run):
    run_dir, metrics = full_run
    assert set(metrics["modes"]) == {"ideal", "offline", "offline_aware", "insitu"}
    for mode, m in metrics["modes"].items():
        assert np.isfinite(m["test_rmse"]) and m["test_rmse"] > 0
        assert m["train_seconds"] >= 0
        assert ("programming_pulses" in m) == (mode != "ideal")
    # Offline programs each device of the two matrices once.
    assert metrics["modes"]["offline"]["programming_pulses"] == 2 * 60 * 17 + 2 * 16
    # In situ spends at least one SET pulse per device per update.
    assert metrics["modes"]["insitu"]["programming_pulses"] > 4 * 2072
    assert json.loads((run_dir / "metrics.json").read_text()) == metrics


def test_outputs_are_written(full_run):
    run_dir, _ = full_run
    for name in (
        "metrics.json",
        "history.csv",
        "training_curves.png",
        "predictions.png",
        "conductance_insitu.png",
    ):
        assert (run_dir / name).stat().st_size > 0, name
    with np.load(run_dir / "modes" / "insitu" / "conductances.npz") as f:
        keys = set(f.files)
        assert {"before", "after", "epoch_00000", "epoch_00002"} <= keys
        assert f["after"].shape == (1, 128, 64)
        assert not np.array_equal(f["before"], f["after"])
    lines = (run_dir / "history.csv").read_text().splitlines()
    assert len(lines) == 1 + 4 * 4


def test_same_seed_same_numbers_and_resume(full_run, tmp_path):
    _, metrics = full_run
    # Interrupt after two modes: their results stay, the rest is redone.
    partial = run_experiment(_cfg('modes=["ideal", "offline"]'), tmp_path)
    assert partial["modes"]["ideal"] == metrics["modes"]["ideal"] | {
        "train_seconds": partial["modes"]["ideal"]["train_seconds"]
    }
    stamp = (tmp_path / "modes" / "ideal" / "metrics.json").stat().st_mtime_ns
    resumed = run_experiment(_cfg(), tmp_path, resume=True)
    assert (tmp_path / "modes" / "ideal" / "metrics.json").stat().st_mtime_ns == stamp
    for mode, m in metrics["modes"].items():
        for key, value in m.items():
            if key != "train_seconds":
                assert resumed["modes"][mode][key] == value, (mode, key)


def test_hardware_noise_costs_accuracy_reproducibly():
    a = run_experiment(_cfg('modes=["offline"]', "device.prog_noise=20e-6"), None)
    b = run_experiment(_cfg('modes=["offline"]', "device.prog_noise=20e-6"), None)
    c = run_experiment(_cfg('modes=["offline"]', "device.prog_noise=0"), None)
    assert a["modes"]["offline"]["test_rmse"] == b["modes"]["offline"]["test_rmse"]
    assert a["modes"]["offline"]["test_rmse"] != c["modes"]["offline"]["test_rmse"]


def test_command_line_run_writes_a_complete_folder(tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "run",
        "airline",
        "--set",
        "training.epochs=2",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    for name in (
        "config.toml",
        "run.json",
        "metrics.json",
        "run.log",
        "history.csv",
        "training_curves.png",
    ):
        assert (out / name).exists(), name
    first = (out / "metrics.json").read_text()
    # A second run never overwrites the first unasked.
    assert main(args) == 2
    assert "error:" in capsys.readouterr().err
    assert (out / "metrics.json").read_text() == first


@pytest.mark.parametrize("mode", ["ideal", "offline_aware", "insitu"])
def test_resume_inside_a_mode_gives_the_uninterrupted_numbers(
    full_run, tmp_path, monkeypatch, mode
):
    from lstm_hw import experiment

    _, metrics = full_run
    monkeypatch.setattr(experiment.Experiment, "checkpoint_seconds", 0.0)
    real_update = experiment.Progress.update

    def interrupt(self, n=1, **info):
        real_update(self, n, **info)
        if self.n == 3:  # after epoch 2
            raise KeyboardInterrupt

    monkeypatch.setattr(experiment.Progress, "update", interrupt)
    cfg = _cfg(f'modes=["{mode}"]')
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, tmp_path)
    assert (tmp_path / "modes" / mode / "checkpoint.json").exists()
    monkeypatch.setattr(experiment.Progress, "update", real_update)
    resumed = run_experiment(cfg, tmp_path, resume=True)
    for key, value in metrics["modes"][mode].items():
        if key != "train_seconds":
            assert resumed["modes"][mode][key] == value, key
    history = (tmp_path / "history.csv").read_text().splitlines()
    assert len(history) == 1 + 4
    assert not (tmp_path / "modes" / mode / "checkpoint.json").exists()
