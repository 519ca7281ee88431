"""The training modes end to end, on small settings."""

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

from crossbar.programming import GateVoltageScheme
from lstm_hw.cli import main
from lstm_hw.config import load_config
from lstm_hw.experiment import Experiment, SymmetricStartWarning, run_experiment

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


def _insitu_start(*overrides):
    """In-situ run of one epoch; the 'before' conductances and the warnings."""
    cfg = _cfg('modes=["insitu"]', "training.epochs=1", *overrides)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = Experiment(cfg).run_mode("insitu")
    symmetric = [w for w in caught if issubclass(w.category, SymmetricStartWarning)]
    return result.snapshots["before"][0], symmetric


def test_insitu_starts_at_zero_weights_and_warns_when_nothing_breaks_symmetry():
    g_start = GateVoltageScheme().g_set(1.0)
    g, symmetric = _insitu_start("device.prog_noise=0")
    # LSTM pairs: rows of [x | h | bias], 4H columns; the output layer in the
    # next column, rows of [h | bias]; the rest of the array untouched.
    used = np.zeros(g.shape, dtype=bool)
    used[:34, :60] = used[:32, 60] = True
    assert np.all(g[used] == g_start) and not np.any(g[~used] == g_start)
    assert len(symmetric) == 1 and "insitu.init" in str(symmetric[0].message)
    g, symmetric = _insitu_start()
    assert 0 < np.abs(g[used] - g_start).max() < 30e-6 and not symmetric
    # Peephole weights are digital and differ between units.
    _, symmetric = _insitu_start("device.prog_noise=0", "network.variant=peephole")
    assert not symmetric
    g, symmetric = _insitu_start("device.prog_noise=0", "insitu.init=network")
    assert not symmetric and len(np.unique(g[:34, :60])) > 100


def test_numbers_do_not_depend_on_blas_threads_or_earlier_runs():
    # OpenBLAS sums long products differently with one and two threads. In a
    # fresh process, the first run starts inside a thread limit set before
    # any kernel ran, the second without one, the third inside one again:
    # all three must give the same weights, bit for bit.
    script = """
import numpy as np
from threadpoolctl import threadpool_limits
from lstm_hw.config import load_config
from lstm_hw.experiment import Experiment
cfg = load_config("japanese_vowels", ["training.epochs=1", "modes=['ideal']"])
def run():
    return Experiment(cfg).run_mode("ideal").params
with threadpool_limits(limits=1):
    a = run()
b = run()
with threadpool_limits(limits=1):
    c = run()
print(all(np.array_equal(a[k], b[k]) and np.array_equal(a[k], c[k]) for k in a))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert out.stdout.split()[-1] == "True"
