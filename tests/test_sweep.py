"""Sweeps on Dask: tasks, equality with serial runs, resume, failures, outputs.

One local cluster of two worker processes serves the whole module.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from importlib import resources

import numpy as np
import pytest

from crossbar.validation import ParameterError
from lstm_hw import plots
from lstm_hw.cli import main
from lstm_hw.config import ConfigError, parse_config
from lstm_hw.experiment import run_experiment
from lstm_hw.sweep import (
    RESULTS_CSV,
    SUMMARY_CSV,
    SUMMARY_PNG,
    SWEEP_MARKER,
    TASK_INFO,
    SweepDirError,
    local_cluster,
    plan_tasks,
    run_sweep,
    summarize,
    summary_figure,
    task_config,
)

distributed = pytest.importorskip("distributed")

MODES = ["ideal", "offline", "offline_aware", "insitu"]

# The adding problem at toy size: a task takes well under a second of
# training, so most of each task is the run folder's figures.
TINY = """
name = "tiny"
seed = 3
modes = ["ideal", "offline", "offline_aware", "insitu"]

[task]
name = "adding"
length = 6
n_train = 40
n_test = 20

[network]
hidden_size = 4
output_activation = "identity"
output = "last"

[training]
epochs = 2
batch_size = 10
loss_reduction = "mean"

[optimizer]
name = "adam"
lr = 0.01

[array]
rows = 32
cols = 32

[insitu]
init = "network"

[sweep]
repeats = 2

[sweep.grid]
"device.prog_noise" = [0.0, 8e-6]
"""


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def comparable(metrics):
    """metrics.json without the wall-clock entries."""
    return {
        mode: {k: v for k, v in values.items() if k != "train_seconds"}
        for mode, values in metrics["modes"].items()
    }


@pytest.fixture(scope="module")
def client():
    with local_cluster(2) as cluster, distributed.Client(cluster) as c:
        c.wait_for_workers(2, timeout=60)
        yield c


@pytest.fixture(scope="module")
def tiny_cfg():
    return parse_config(TINY)


@pytest.fixture(scope="module")
def first_sweep(client, tiny_cfg, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "tiny"
    result = run_sweep(tiny_cfg, out, client=client, argv=["test"])
    return result


# ---------------------------------------------------------------------------
# Planning (no cluster)


def test_tasks_cover_the_grid_with_consecutive_seeds():
    cfg = parse_config(
        TINY.replace("repeats = 2", "repeats = 3") + '"network.hidden_size" = [2, 5]\n'
    )
    tasks = plan_tasks(cfg)
    assert len(tasks) == 2 * 2 * 3
    assert [t.index for t in tasks] == list(range(12))
    expected = [
        {"device.prog_noise": noise, "network.hidden_size": hidden}
        for noise in (0.0, 8e-6)
        for hidden in (2, 5)
    ]
    assert [t.point for t in tasks[::3]] == expected
    assert [t.seed for t in tasks] == [3, 4, 5] * 4
    assert len({t.folder for t in tasks}) == 12
    assert tasks[4].folder == "runs/004-prog_noise_0-hidden_size_5-seed4"
    run_cfg = task_config(cfg, tasks[4])
    assert run_cfg.seed == 4
    assert run_cfg.network.hidden_size == 5
    assert run_cfg.device.prog_noise == 0.0
    assert not run_cfg.sweep.grid and run_cfg.sweep.repeats == 1
    # Everything not swept is the sweep's config.
    assert run_cfg.training == cfg.training and run_cfg.task == cfg.task


def test_a_config_without_grid_runs_its_repeats():
    cfg = parse_config(TINY.split("[sweep.grid]")[0])
    tasks = plan_tasks(cfg)
    assert [(t.point, t.seed) for t in tasks] == [({}, 3), ({}, 4)]
    assert tasks[1].folder == "runs/001-seed4"


def test_the_seed_is_set_by_repeats_not_by_the_grid():
    cfg = parse_config(TINY + "seed = [1, 2]\n")
    with pytest.raises(ConfigError, match="sweep.repeats"):
        plan_tasks(cfg)


def test_summary_statistics_against_numpy(tiny_cfg):
    rng = np.random.default_rng(0)
    rows, values = [], {}
    for task in plan_tasks(tiny_cfg):
        v = float(rng.normal())
        values.setdefault(task.point["device.prog_noise"], []).append(v)
        rows.append(
            {
                "index": task.index,
                **task.point,
                "seed": task.seed,
                "insitu.test_rmse": v,
                "status": "ok",
            }
        )
    rows.append({**rows[0], "index": 99, "insitu.test_rmse": 1e9, "status": "failed"})
    summary = summarize(rows, tiny_cfg)
    assert len(summary) == 2
    for s in summary:
        v = np.array(values[s["device.prog_noise"]])
        assert (s["mode"], s["metric"], s["n"]) == ("insitu", "test_rmse", 2)
        assert s["mean"] == pytest.approx(v.mean())
        assert s["std"] == pytest.approx(v.std(ddof=1))
        assert s["median"] == pytest.approx(np.median(v))
        assert (s["min"], s["max"]) == (v.min(), v.max())


def test_summary_figure_has_one_panel_per_value_of_the_second_key():
    grid = {"device.prog_noise": [0.0, 4e-6, 8e-6], "insitu.scheme": ["gate", "x"]}
    summary = []
    for noise in grid["device.prog_noise"]:
        for scheme in grid["insitu.scheme"]:
            for mode in ("ideal", "insitu"):
                for metric in ("test_accuracy", "train_seconds"):
                    summary.append(
                        {
                            "device.prog_noise": noise,
                            "insitu.scheme": scheme,
                            "mode": mode,
                            "metric": metric,
                            "n": 3,
                            "mean": 1.0 - noise * 1e4,
                            "std": 0.01,
                        }
                    )
    fig = summary_figure(summary, grid, ["ideal", "insitu"])
    axes = np.array(fig.axes).reshape(2, 2)
    assert [ax.get_title() for ax in axes[0]] == [
        "insitu.scheme=gate",
        "insitu.scheme=x",
    ]
    assert axes[0, 0].get_ylabel() == "test accuracy"
    line = axes[0, 0].lines[0]
    np.testing.assert_allclose(line.get_xdata(), [0.0, 4e-6, 8e-6])
    np.testing.assert_allclose(line.get_ydata(), [1.0, 0.96, 0.92])


# ---------------------------------------------------------------------------
# Sweep folders (no cluster: refused before any task is submitted)


def test_a_folder_of_another_config_is_refused(first_sweep, tiny_cfg, tmp_path, capsys):
    other = tiny_cfg.with_overrides({"training.epochs": 3})
    with pytest.raises(SweepDirError, match="training.epochs"):
        run_sweep(other, first_sweep.sweep_dir, n_workers=1)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SweepDirError, match="not empty"):
        run_sweep(tiny_cfg, tmp_path, n_workers=1)
    config = tmp_path.parent / f"{tmp_path.name}.toml"
    config.write_text(TINY)
    assert main(["sweep", str(config), "--out", str(tmp_path)]) == 2
    assert "not empty" in capsys.readouterr().err
    # Nothing was written into the folder (not even a log).
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_one_way_to_choose_the_cluster(tiny_cfg, tmp_path):
    with pytest.raises(ParameterError, match="n_workers"):
        run_sweep(tiny_cfg, tmp_path, scheduler="tcp://x:1", n_workers=2)
    with pytest.raises(ParameterError, match="scheduler"):
        run_sweep(tiny_cfg, tmp_path, client=object(), scheduler="tcp://x:1")
    with pytest.raises(ParameterError, match="n_workers"):
        run_sweep(tiny_cfg, tmp_path, n_workers=0)
    assert not any(tmp_path.iterdir())


def test_workers_and_scheduler_exclude_each_other(capsys):
    code = main(["sweep", "noise_sweep", "--scheduler", "tcp://x:1", "--workers", "2"])
    assert code == 2
    assert "--workers" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# On the cluster


@pytest.mark.filterwarnings("ignore::crossbar.differential.WeightClippingWarning")
def test_parallel_results_equal_serial_runs(first_sweep, tiny_cfg, client, tmp_path):
    """Every task's numbers equal the same run done in this process."""
    assert first_sweep.ok and first_sweep.ran == 4 and first_sweep.skipped == 0
    workers = set(client.scheduler_info()["workers"])
    for task in plan_tasks(tiny_cfg):
        run_dir = first_sweep.sweep_dir / task.folder
        swept = json.loads((run_dir / "metrics.json").read_text())
        assert json.loads((run_dir / TASK_INFO).read_text())["worker"] in workers
        with pytest.MonkeyPatch.context() as mp:
            # The figures are not what is compared, and they take most of
            # the time of such tiny runs.
            mp.setattr(plots, "save_plots", lambda exp, run_dir: [])
            serial = run_experiment(
                task_config(tiny_cfg, task), tmp_path / str(task.index)
            )
        assert serial["seed"] == task.seed
        assert comparable(swept) == comparable(serial)


def test_csv_has_one_row_per_task_with_every_metric(first_sweep, tiny_cfg):
    folder = first_sweep.sweep_dir
    rows = read_csv(folder / RESULTS_CSV)
    metric_cols = [
        f"{mode}.{metric}"
        for mode in MODES
        for metric in ("test_rmse", "programming_pulses", "train_seconds")
        if not (mode == "ideal" and metric == "programming_pulses")
    ]
    assert list(rows[0]) == [
        "index",
        "device.prog_noise",
        "seed",
        *metric_cols,
        "wall_seconds",
        "worker",
        "warnings",
        "status",
        "error",
        "run",
    ]
    tasks = plan_tasks(tiny_cfg)
    assert len(rows) == len(tasks)
    for row, task in zip(rows, tasks, strict=True):
        assert int(row["index"]) == task.index
        assert float(row["device.prog_noise"]) == task.point["device.prog_noise"]
        assert int(row["seed"]) == task.seed
        assert (row["status"], row["error"]) == ("ok", "")
        assert row["run"] == task.folder
        assert float(row["wall_seconds"]) > 0
        # Warnings in a worker are counted and kept in the task's run.log.
        log = (folder / task.folder / "run.log").read_text()
        assert int(row["warnings"]) == log.count(" WARNING py.warnings: ")
        metrics = json.loads((folder / task.folder / "metrics.json").read_text())
        for mode, values in metrics["modes"].items():
            for name, value in values.items():
                # Written with repr, so read back exactly.
                assert float(row[f"{mode}.{name}"]) == value
    # The same rows are in the returned result.
    assert [r["insitu.test_rmse"] for r in first_sweep.rows] == [
        float(r["insitu.test_rmse"]) for r in rows
    ]
    info = json.loads((folder / SWEEP_MARKER).read_text())
    assert info["grid"] == {"device.prog_noise": [0.0, 8e-6]}
    assert info["repeats"] == 2 and info["seeds"] == [3, 4] and info["n_tasks"] == 4
    assert info["versions"]["lstm-hw"]
    assert parse_config((folder / "config.toml").read_text()) == tiny_cfg
    summary = read_csv(folder / SUMMARY_CSV)
    first = next(
        s for s in summary if s["mode"] == "insitu" and s["metric"] == "test_rmse"
    )
    values = [float(r["insitu.test_rmse"]) for r in rows[:2]]
    assert float(first["mean"]) == pytest.approx(np.mean(values))
    assert (folder / SUMMARY_PNG).stat().st_size > 0
    # Each task's folder is a complete run folder.
    run_dir = folder / tasks[0].folder
    for name in ("config.toml", "run.json", "history.csv", "run.log"):
        assert (run_dir / name).is_file(), name
    assert parse_config((run_dir / "config.toml").read_text()) == task_config(
        tiny_cfg, tasks[0]
    )


def test_resume_runs_only_the_missing_tasks(first_sweep, tiny_cfg, client, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(first_sweep.sweep_dir, folder)
    again = run_sweep(tiny_cfg, folder, client=client, argv=["test"])
    assert (again.ran, again.skipped) == (0, 4)
    assert again.rows == first_sweep.rows

    tasks = plan_tasks(tiny_cfg)
    # An interrupted task (its modes saved, no metrics.json) and a lost one.
    (folder / tasks[1].folder / "metrics.json").unlink()
    shutil.rmtree(folder / tasks[2].folder)
    kept = {
        t.index: (folder / t.folder / TASK_INFO).stat().st_mtime_ns
        for t in (tasks[0], tasks[3])
    }
    again = run_sweep(tiny_cfg, folder, client=client, argv=["test"])
    assert (again.ran, again.skipped) == (2, 2)
    for t in (tasks[0], tasks[3]):
        assert (folder / t.folder / TASK_INFO).stat().st_mtime_ns == kept[t.index]

    def stable(row):
        # Where and how long a task ran, and the warnings of the modes run
        # again (a resumed task loads the others), may differ.
        return {
            k: v
            for k, v in row.items()
            if k not in ("worker", "warnings") and "seconds" not in k
        }

    # The same numbers as the uninterrupted sweep.
    assert [stable(r) for r in again.rows] == [stable(r) for r in first_sweep.rows]
    assert len(read_csv(folder / RESULTS_CSV)) == 4
    assert len(json.loads((folder / SWEEP_MARKER).read_text())["starts"]) == 3


def test_a_failing_task_is_recorded_and_the_others_finish(client, tmp_path, capsys):
    """A column missing from the CSV file fails one grid point at run time."""
    series = resources.files("lstm_hw") / "data" / "airline_passengers.csv"
    config = tmp_path / "columns.toml"
    config.write_text(
        f"""
name = "columns"
modes = ["ideal"]
[task]
name = "csv"
path = "{series}"
[network]
hidden_size = 2
[training]
epochs = 1
eval_every = 1
[sweep]
repeats = 1
[sweep.grid]
"task.column" = ["Seats", "Passengers"]
"""
    )
    out = tmp_path / "out"
    code = main(
        [
            "sweep",
            str(config),
            "--scheduler",
            client.scheduler.address,
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 1
    rows = read_csv(out / RESULTS_CSV)
    assert [(r["task.column"], r["status"]) for r in rows] == [
        ("Seats", "failed"),
        ("Passengers", "ok"),
    ]
    assert "DataError" in rows[0]["error"] and "Seats" in rows[0]["error"]
    assert rows[0]["ideal.test_rmse"] == ""
    assert math.isfinite(float(rows[1]["ideal.test_rmse"]))
    failed = out / rows[0]["run"]
    assert "Traceback" in (failed / "error.txt").read_text()
    assert json.loads((failed / TASK_INFO).read_text())["status"] == "failed"
    printed = capsys.readouterr().out
    assert "1 of 2 tasks ok" in printed and "1 failed" in printed
    assert rows[0]["run"] in printed
