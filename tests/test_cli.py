"""The lstm-hw command line (with a stand-in for the training modes)."""

from __future__ import annotations

import json
import logging
import sys
import types

import pytest

from crossbar.validation import ParameterError
from lstm_hw import progress
from lstm_hw.cli import format_summary, main
from lstm_hw.config import list_shipped_configs, load_config, parse_config


@pytest.fixture
def fake_experiment(monkeypatch, tmp_path):
    """Replace lstm_hw.experiment by a recorder; run in a scratch folder."""
    calls = []
    behaviour = {"raise": None}
    log = logging.getLogger("lstm_hw.experiment")

    def run_experiment(cfg, run_dir, resume=False, progress=False):
        calls.append(
            {"cfg": cfg, "run_dir": run_dir, "resume": resume, "progress": progress}
        )
        log.info("training %s", ",".join(cfg.modes))
        if behaviour["raise"] is not None:
            raise behaviour["raise"]
        per_mode = {}
        for n, mode in enumerate(cfg.modes):
            per_mode[mode] = {"test_rmse": 20.0 + n, "train_seconds": 1.5}
            if mode != "ideal":
                per_mode[mode]["programming_pulses"] = 1000 * (n + 1)
        return {"modes": per_mode}

    module = types.ModuleType("lstm_hw.experiment")
    module.run_experiment = run_experiment
    monkeypatch.setitem(sys.modules, "lstm_hw.experiment", module)
    monkeypatch.chdir(tmp_path)
    return types.SimpleNamespace(calls=calls, behaviour=behaviour, root=tmp_path)


def assert_clean_error(capsys, *fragments):
    """One line 'error: ...' on stderr (after any log lines of a run)."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert [n for n in lines if n.startswith("error: ")] == lines[-1:], err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[-1]
    return lines[-1]


# ---------------------------------------------------------------------------
# configs, show, check


def test_configs_lists_every_shipped_config(capsys):
    assert main(["configs"]) == 0
    out = capsys.readouterr().out
    for name, description in list_shipped_configs():
        assert name in out and description in out
    assert "airline (default)" in out


def test_show_prints_the_resolved_config_as_toml(capsys):
    assert main(["show", "airline", "--set", "device.prog_noise=8e-6"]) == 0
    out = capsys.readouterr().out
    cfg = parse_config(out)
    expected = load_config("airline", ["device.prog_noise=8e-6"])
    assert cfg.device == expected.device
    assert cfg.modes == expected.modes
    assert main(["show", "japanese_vowels", "--comments"]) == 0
    out = capsys.readouterr().out
    assert "# programming noise" in out
    assert parse_config(out).network == load_config("japanese_vowels").network


def test_check_accepts_a_valid_config(capsys, tmp_path):
    assert main(["check", "adding_gru"]) == 0
    assert capsys.readouterr().out.startswith("ok: config 'adding_gru' is valid")
    path = tmp_path / "mine.toml"
    path.write_text('modes = ["ideal"]\n[network]\nhidden_size = 4\n')
    assert main(["check", str(path)]) == 0
    assert "ok: config 'mine'" in capsys.readouterr().out


def test_check_reports_a_bad_override_in_one_line(capsys):
    assert main(["check", "airline", "--set", "training.epoch=3"]) == 2
    assert_clean_error(
        capsys, "unknown key 'training.epoch'", "did you mean 'training.epochs'?"
    )


def test_check_reports_a_bad_file_in_one_line(capsys, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[device]\nprog_noise = "high"\n')
    assert main(["check", str(path)]) == 2
    assert_clean_error(
        capsys, "'device.prog_noise'", "a real number", "got 'high'", "bad.toml"
    )
    assert main(["show", "no_such_config"]) == 2
    assert_clean_error(capsys, "unknown config 'no_such_config'")


def test_verbose_shows_the_traceback(capsys):
    assert main(["check", "airline", "--set", "seed=-1", "-v"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert err.strip().splitlines()[-1].startswith("error: parameter 'seed'")


@pytest.mark.parametrize("command", [[], ["run"], ["configs"], ["show"], ["check"]])
def test_help_everywhere(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    assert "usage: lstm-hw" in capsys.readouterr().out


def test_missing_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


# ---------------------------------------------------------------------------
# run


def only_run_dir(root):
    runs = list((root / "runs").iterdir())
    assert len(runs) == 1
    return runs[0]


def test_run_default_config(fake_experiment, capsys):
    assert main(["run", "--no-progress"]) == 0
    (call,) = fake_experiment.calls
    assert call["cfg"] == load_config("airline")
    assert call["resume"] is False and call["progress"] is False
    run_dir = only_run_dir(fake_experiment.root)
    assert call["run_dir"].resolve() == run_dir
    assert run_dir.name.startswith("airline-")
    assert load_config(run_dir / "config.toml") == call["cfg"]
    run = json.loads((run_dir / "run.json").read_text())
    assert run["seed"] == 0
    assert "training ideal,insitu" in (run_dir / "run.log").read_text()
    out = capsys.readouterr().out
    header, rule, ideal, insitu = out.splitlines()[:4]
    assert header.split() == [
        "mode",
        "test_rmse",
        "train_seconds",
        "programming_pulses",
    ]
    assert set(rule) <= {"-", " "}
    assert ideal.split() == ["ideal", "20", "1.5", "-"]
    assert insitu.split() == ["insitu", "21", "1.5", "2000"]
    assert f"results in runs/{run_dir.name}" in out


def test_run_with_seed_set_and_out(fake_experiment, capsys):
    out = fake_experiment.root / "mine"
    args = ["run", "japanese_vowels", "--seed", "5", "--out", str(out)]
    args += ["--set", "training.epochs=2", "--set", 'modes=["ideal"]']
    assert main([*args, "--no-progress"]) == 0
    cfg = fake_experiment.calls[0]["cfg"]
    assert (cfg.seed, cfg.training.epochs, cfg.modes) == (5, 2, ("ideal",))
    assert json.loads((out / "run.json").read_text())["seed"] == 5
    # The same --out again is refused: earlier results are never overwritten.
    capsys.readouterr()
    assert main([*args, "--no-progress"]) == 2
    assert_clean_error(capsys, "not empty", "--overwrite")
    assert len(fake_experiment.calls) == 1
    assert main([*args, "--no-progress", "--overwrite"]) == 0


def test_run_checks_the_config_before_any_work(fake_experiment, capsys):
    assert main(["run", "--set", "device.g_min=1.0"]) == 2
    assert_clean_error(capsys, "'device.g_max'", "greater than device.g_min")
    assert main(["run", "--seed", "-3"]) == 2
    assert_clean_error(capsys, "'seed'")
    assert fake_experiment.calls == []
    assert not (fake_experiment.root / "runs").exists()


def test_resume_continues_with_the_saved_config(fake_experiment, capsys):
    assert main(["run", "adding_gru", "--seed", "3", "--no-progress"]) == 0
    run_dir = only_run_dir(fake_experiment.root)
    assert main(["run", "--resume", str(run_dir), "--no-progress"]) == 0
    first, second = fake_experiment.calls
    assert second["resume"] is True and second["run_dir"] == run_dir
    assert second["cfg"] == first["cfg"]
    assert len(json.loads((run_dir / "run.json").read_text())["resumed"]) == 1
    capsys.readouterr()
    assert main(["run", "--resume", str(run_dir), "--set", "seed=1"]) == 2
    assert_clean_error(capsys, "drop --set")
    assert main(["run", "--resume", str(fake_experiment.root)]) == 2
    assert_clean_error(capsys, "not a run folder")


def test_errors_during_the_run_are_clean_and_logged(fake_experiment, capsys):
    fake_experiment.behaviour["raise"] = ParameterError("parameter 'x' is bad")
    assert main(["run", "--no-progress"]) == 2
    assert_clean_error(capsys, "parameter 'x' is bad")
    run_dir = only_run_dir(fake_experiment.root)
    assert "parameter 'x' is bad" in (run_dir / "run.log").read_text()


def test_data_errors_are_clean(fake_experiment, capsys):
    from lstm_hw.data import DataError

    fake_experiment.behaviour["raise"] = DataError("file.csv: column missing")
    assert main(["run", "--no-progress"]) == 2
    assert_clean_error(capsys, "file.csv: column missing")


def test_interrupted_run_says_how_to_resume(fake_experiment, capsys):
    fake_experiment.behaviour["raise"] = KeyboardInterrupt()
    assert main(["run", "--no-progress"]) == 130
    run_dir = only_run_dir(fake_experiment.root)
    hint = f"lstm-hw run --resume runs/{run_dir.name}"
    assert hint in capsys.readouterr().err
    assert progress.enabled() is False


def test_unexpected_errors_keep_their_traceback(fake_experiment):
    fake_experiment.behaviour["raise"] = ZeroDivisionError("bug")
    with pytest.raises(ZeroDivisionError):
        main(["run", "--no-progress"])
    log = (only_run_dir(fake_experiment.root) / "run.log").read_text()
    assert "Traceback" in log and "ZeroDivisionError" in log


def test_logging_is_restored_after_a_run(fake_experiment):
    root = logging.getLogger()
    handlers = list(root.handlers)
    assert main(["run", "--no-progress"]) == 0
    assert root.handlers == handlers


# ---------------------------------------------------------------------------
# Summary table and progress


def test_format_summary_orders_modes_and_metrics():
    metrics = {
        "modes": {
            "insitu": {"programming_pulses": 12, "test_accuracy": 0.93, "x": [1]},
            "ideal": {"test_accuracy": 0.951234, "train_seconds": 2.0},
        }
    }
    lines = format_summary(metrics, ["ideal", "insitu"]).splitlines()
    assert lines[0].split() == [
        "mode",
        "test_accuracy",
        "train_seconds",
        "programming_pulses",
    ]
    assert lines[2].split() == ["ideal", "0.9512", "2", "-"]
    assert lines[3].split() == ["insitu", "0.93", "-", "12"]


def test_progress_logs_when_bars_are_off(caplog):
    caplog.set_level(logging.INFO, logger="lstm_hw.progress")
    with progress.Progress(total=20, desc="insitu", unit="epoch") as bar:
        for _ in range(20):
            bar.update(loss=0.5)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10
    assert lines[0] == "insitu: 2/20 epoch loss=0.5"
    assert lines[-1] == "insitu: 20/20 epoch loss=0.5"
    assert list(progress.track(range(5), desc="x")) == [0, 1, 2, 3, 4]


def test_progress_draws_a_bar_when_enabled(capsys, caplog):
    caplog.set_level(logging.INFO, logger="lstm_hw.progress")
    progress.set_enabled(True)
    try:
        assert list(progress.track([1, 2, 3], desc="programming")) == [1, 2, 3]
    finally:
        progress.set_enabled(False)
    assert "programming" in capsys.readouterr().err
    assert caplog.records == []
