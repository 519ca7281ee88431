"""Config schema: loading, every kind of error, overrides, round trips."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import tomllib

import pytest

from crossbar.validation import ParameterError
from lstm_hw.config import (
    MODES,
    PRESETS,
    Config,
    ConfigError,
    DeviceConfig,
    config_from_dict,
    config_to_dict,
    dump_toml,
    list_shipped_configs,
    load_config,
    parse_config,
    parse_overrides,
    schema_keys,
    shipped_config_dir,
    with_overrides,
)

SHIPPED = [name for name, _ in list_shipped_configs()]


def error_of(text: str, overrides=()) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, overrides, source="test.toml")
    return str(info.value)


# ---------------------------------------------------------------------------
# Shipped configs


def test_the_expected_configs_are_shipped():
    assert set(SHIPPED) >= {
        "airline",
        "airline_all_modes",
        "japanese_vowels",
        "airline_ir_drop",
        "adding_gru",
        "adding_cifg",
    }


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_loads_and_documents_itself(name):
    cfg = load_config(name)
    assert cfg.name == name
    assert cfg.description
    text = (shipped_config_dir() / f"{name}.toml").read_text(encoding="utf-8")
    assert text.startswith("#"), "a shipped config starts with what it reproduces"
    # Every key of a shipped config is a key of the schema.
    data = tomllib.loads(text)
    for section, values in data.items():
        if isinstance(values, dict):
            for key in values:
                assert f"{section}.{key}" in schema_keys()


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_round_trips(name, tmp_path):
    cfg = load_config(name)
    path = tmp_path / "again.toml"
    path.write_text(dump_toml(cfg), encoding="utf-8")
    assert load_config(path) == cfg
    path.write_text(dump_toml(cfg, comments=True), encoding="utf-8")
    assert load_config(path) == cfg


def test_default_airline_config_matches_the_paper_setup():
    cfg = load_config("airline")
    assert cfg.modes == ("ideal", "insitu")
    assert cfg.task.name == "airline"
    assert (cfg.network.cell, cfg.network.variant) == ("lstm", "vanilla")
    assert cfg.network.hidden_size == 15
    assert cfg.network.output_activation == "sigmoid"
    assert cfg.network.output == "all"
    assert (cfg.optimizer.name, cfg.optimizer.lr) == ("sgd", 0.01)
    assert cfg.optimizer.momentum == 0.9
    assert (cfg.training.loss, cfg.training.loss_reduction) == ("mse", "sum")
    assert cfg.training.batch_size == 1
    assert cfg.device.preset == "li2019"
    assert cfg.device.g_min == 0.0
    assert cfg.device.g_max == pytest.approx(400e-6)
    assert cfg.device.prog_noise == pytest.approx(0.01 * 400e-6)
    assert cfg.device.prog_noise_mode == "absolute"
    assert (cfg.array.rows, cfg.array.cols) == (128, 64)


def test_japanese_vowels_config_matches_the_gait_setup():
    cfg = load_config("japanese_vowels")
    assert set(cfg.modes) == set(MODES)
    assert cfg.network.hidden_size == 14
    assert cfg.network.output_activation == "softmax"
    assert cfg.network.output == "last"
    assert (cfg.optimizer.name, cfg.optimizer.lr) == ("rmsprop", 0.01)
    assert (cfg.training.batch_size, cfg.training.epochs) == (50, 50)
    assert cfg.training.loss == "cross_entropy"
    assert cfg.device.prog_noise == pytest.approx(0.014 * 400e-6)


def test_ir_drop_and_adding_configs():
    ir = load_config("airline_ir_drop")
    assert ir.array.r_row == ir.array.r_col == 0.1 and ir.array.has_wires
    assert ir.modes == MODES
    assert load_config("airline_all_modes").modes == MODES
    gru, cifg = load_config("adding_gru"), load_config("adding_cifg")
    assert (gru.network.cell, gru.network.variant) == ("gru", "vanilla")
    assert (cifg.network.cell, cifg.network.variant) == ("lstm", "cifg")
    for cfg in (gru, cifg):
        assert cfg.task.name == "adding" and cfg.task.length == 30
        assert cfg.network.output_activation == "identity"
        assert cfg.training.loss_reduction == "mean"
        assert (cfg.optimizer.name, cfg.optimizer.lr) == ("adam", 0.01)


# ---------------------------------------------------------------------------
# Defaults, access, presets


def test_empty_config_equals_python_defaults():
    cfg = parse_config("")
    assert cfg == Config()
    assert cfg.get("device.prog_noise") == cfg.device.prog_noise
    assert cfg.get("seed") == 0


def test_every_field_declares_doc_and_is_reachable_by_key():
    keys = schema_keys()
    assert "device.prog_noise" in keys and "modes" in keys
    for key, (_, spec) in keys.items():
        assert spec.doc, key
    cfg = Config()
    for key in keys:
        cfg.get(key)
    units = {k: spec.unit for k, (_, spec) in keys.items()}
    assert units["device.g_max"] == "S"
    assert units["array.r_row"] == "ohm"
    assert units["mapping.v_read"] == "V"
    assert units["array.adc_full_scale"] == "A"
    assert units["device.drift_time"] == "s"


def test_li2019_preset_fills_unset_keys_and_explicit_keys_win():
    cfg = parse_config('[device]\npreset = "li2019"\nprog_noise = 5.6e-6')
    assert cfg.device.g_max == PRESETS["li2019"]["g_max"]
    assert cfg.device.prog_noise == 5.6e-6
    custom = parse_config('[device]\npreset = "custom"')
    for key, value in PRESETS["custom"].items():
        assert getattr(custom.device, key) == value
    # An override of the preset fills the keys the file leaves unset.
    over = parse_config("[device]\ng_min = 1e-6", ["device.preset=custom"])
    assert over.device.g_max == PRESETS["custom"]["g_max"]
    assert over.device.g_min == 1e-6


def test_with_overrides_of_the_preset_resets_its_keys():
    cfg = load_config("airline")
    custom = with_overrides(cfg, {"device.preset": "custom"})
    assert custom.device.prog_noise == PRESETS["custom"]["prog_noise"]
    both = with_overrides(cfg, {"device.preset": "custom", "device.prog_noise": 1e-6})
    assert both.device.prog_noise == 1e-6


def test_device_and_array_sections_build_crossbar_parameters():
    from crossbar.device import DeviceParams

    cfg = load_config("airline_ir_drop")
    assert cfg.device.to_params() == DeviceParams.li2019(prog_noise=4e-6)
    levels = with_overrides(cfg, {"device.n_levels": 16}).device.to_params()
    assert levels.n_levels == 16
    params = with_overrides(
        cfg, {"array.adc_bits": 8, "array.adc_full_scale": 1e-4}
    ).array.to_params()
    assert (params.r_row, params.r_col) == (0.1, 0.1)
    assert params.adc.bits == 8 and params.adc.i_full_scale == 1e-4
    assert params.dac.bits is None
    assert cfg.mapping.to_mapping().g_unit == cfg.mapping.g_unit
    assert (
        with_overrides(cfg, {"mapping.g_unit": 0}).mapping.to_mapping().g_unit is None
    )


def test_configs_are_immutable_hashable_and_picklable():
    cfg = parse_config('[sweep.grid]\n"device.prog_noise" = [0.0, 4e-6]')
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 3
    with pytest.raises(TypeError):
        cfg.sweep.grid["seed"] = (1,)
    assert hash(cfg) == hash(copy.deepcopy(cfg))
    assert pickle.loads(pickle.dumps(cfg)) == cfg


def test_config_error_is_a_parameter_error():
    assert issubclass(ConfigError, ParameterError)
    assert issubclass(ConfigError, ValueError)
    with pytest.raises(ConfigError, match="'device.prog_noise'"):
        DeviceConfig(prog_noise=-1.0)


# ---------------------------------------------------------------------------
# Errors: unknown keys and sections


@pytest.mark.parametrize(
    ("text", "unknown", "closest"),
    [
        ("[training]\nepoch = 3", "training.epoch", "training.epochs"),
        ("[device]\nprog_nois = 1e-6", "device.prog_nois", "device.prog_noise"),
        # A known key in the wrong section points to the right one.
        ("[training]\nprog_noise = 1e-6", "training.prog_noise", "device.prog_noise"),
        ("epochs = 3", "epochs", "training.epochs"),
        ("sed = 3", "sed", "seed"),
    ],
)
def test_unknown_key_names_it_and_the_closest_valid_key(text, unknown, closest):
    msg = error_of(text)
    assert msg.startswith(f"unknown key '{unknown}'; did you mean '{closest}'?")
    assert "test.toml" in msg


def test_unknown_section_suggests_the_closest_section():
    msg = error_of("[optimiser]\nlr = 0.1")
    assert "unknown section 'optimiser'; did you mean 'optimizer'?" in msg


def test_unknown_key_without_a_close_match_lists_the_valid_keys():
    msg = error_of("[array]\nqqqqqq = 1")
    assert "unknown key 'array.qqqqqq'" in msg
    assert "array.rows" in msg and "array.adc_bits" in msg


def test_section_given_as_a_value():
    assert "section 'device' must be a table" in error_of("device = 3")


def test_invalid_toml_is_a_config_error():
    assert "test.toml is not valid TOML" in error_of("x = = 3")


# ---------------------------------------------------------------------------
# Errors: wrong types


@pytest.mark.parametrize(
    ("text", "key", "expected", "found"),
    [
        (
            '[device]\nprog_noise = "4e-6"',
            "device.prog_noise",
            "a real number",
            "'4e-6'",
        ),
        ("[training]\nepochs = 2.5", "training.epochs", "an integer", "2.5"),
        ("[training]\nepochs = true", "training.epochs", "an integer", "True"),
        ("[insitu]\nsoft_bounds = 1", "insitu.soft_bounds", "true or false", "1"),
        ("[network]\nhidden_size = 15.0", "network.hidden_size", "an integer", "15.0"),
        ('modes = "ideal"', "modes", "a non-empty list", "'ideal'"),
        ("[task]\nname = 3", "task.name", "one of", "3"),
    ],
)
def test_wrong_type_names_key_expectation_and_value(text, key, expected, found):
    msg = error_of(text)
    assert f"parameter '{key}' must be {expected}" in msg
    assert f"got {found}" in msg


def test_string_for_a_number_says_what_was_found():
    msg = error_of('[optimizer]\nlr = "0.01"')
    assert "found a string" in msg


def test_an_integer_is_accepted_for_a_real_number():
    cfg = parse_config("[optimizer]\nlr = 1")
    assert cfg.optimizer.lr == 1.0 and isinstance(cfg.optimizer.lr, float)


# ---------------------------------------------------------------------------
# Errors: impossible values


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ("[device]\nprog_noise = -1e-6", "device.prog_noise", ">= 0; got -1e-06"),
        ("[device]\nread_noise = nan", "device.read_noise", "not a finite number"),
        ("[device]\ng_min = 5e-4", "device.g_max", "greater than device.g_min"),
        ("[device]\ng_min = 4e-4", "device.g_max", "greater than device.g_min"),
        ("[device]\nn_levels = 1", "device.n_levels", "0 (continuous) or an integer"),
        (
            "[device]\np_stuck_min = 0.6\np_stuck_max = 0.6",
            "device.p_stuck_max",
            "sum above 1",
        ),
        ("[device]\np_stuck_min = 1.5", "device.p_stuck_min", "in [0, 1]"),
        ("[network]\nhidden_size = 0", "network.hidden_size", ">= 1; got 0"),
        ("[optimizer]\nlr = 0", "optimizer.lr", "> 0; got 0"),
        ("[optimizer]\nlr = -0.1", "optimizer.lr", "> 0; got -0.1"),
        ("[optimizer]\nmomentum = 1.0", "optimizer.momentum", "in [0, 1)"),
        ("[training]\nbatch_size = 0", "training.batch_size", ">= 1"),
        ("[training]\ntruncate = -1", "training.truncate", "0 (full BPTT)"),
        ("[task]\ntrain_fraction = 1.0", "task.train_fraction", "in (0, 1)"),
        ('[task]\nname = "airlines"', "task.name", "did you mean 'airline'"),
        ("seed = -1", "seed", ">= 0"),
        ('modes = ["ideal", "insito"]', "modes", "did you mean 'insitu'"),
        ('modes = ["ideal", "ideal"]', "modes", "'ideal' appears twice"),
        ("modes = []", "modes", "a non-empty list"),
        ('[network]\ncell = "gru"\nvariant = "cifg"', "network.variant", "'gru'"),
        ("[array]\nr_row = 1.0", "array.r_col", "both 0 means ideal wires"),
        ("[array]\nr_row = -1.0", "array.r_row", ">= 0"),
        ("[array]\nadc_bits = 8", "array.adc_full_scale", "adc_bits is set"),
        (
            "[array]\ndac_bits = 1",
            "array.dac_bits",
            "0 (ideal) or an integer in [2, 64]",
        ),
        ("[mapping]\nv_read = 0", "mapping.v_read", "> 0"),
        ("[mapping]\ng_unit = -1e-6", "mapping.g_unit", "0 (fill the window)"),
        ('[mapping]\nplacement = "tiles"', "mapping.placement", "did you mean 'tiled'"),
        ("[insitu]\ndg_up = 0", "insitu.dg_up", "> 0"),
        ("[aware]\nnoise_scale = -1", "aware.noise_scale", ">= 0"),
        ("[sweep]\nrepeats = 0", "sweep.repeats", ">= 1"),
        ('name = "a b"', "name", "matching"),
    ],
)
def test_impossible_value_names_key_and_expectation(text, key, fragment):
    msg = error_of(text)
    assert f"parameter '{key}' must be" in msg
    assert fragment in msg


def test_loss_output_and_task_must_agree():
    msg = error_of('[network]\noutput_activation = "softmax"')
    assert "'network.output_activation'" in msg and "regression task" in msg
    msg = error_of('[training]\nloss = "cross_entropy"')
    assert "'network.output_activation' must be 'softmax'" in msg
    msg = error_of(
        '[task]\nname = "japanese_vowels"\n[network]\noutput_activation = "softmax"'
    )
    assert "'training.loss' must be 'cross_entropy'" in msg
    msg = error_of(
        '[training]\nloss = "cross_entropy"\n[network]\noutput_activation = "softmax"'
    )
    assert "'training.loss' must be 'mse' for the regression task" in msg


def test_file_tasks_need_an_existing_path(tmp_path):
    assert "must be the path of the csv file" in error_of('[task]\nname = "csv"')
    msg = error_of('[task]\nname = "npz"\npath = "/no/such/file.npz"')
    assert "'task.path' must be an existing file" in msg
    data = tmp_path / "series.csv"
    data.write_text("a\n1\n2\n", encoding="utf-8")
    config = tmp_path / "c.toml"
    config.write_text('[task]\nname = "csv"\npath = "series.csv"\n', encoding="utf-8")
    # A relative path is relative to the config file and stored absolute.
    cfg = load_config(config)
    assert cfg.task.path == str(data.resolve())
    assert cfg.name == "c"


# ---------------------------------------------------------------------------
# Overrides


def test_parse_overrides_reads_toml_literals_or_strings():
    parsed = parse_overrides(
        [
            "device.prog_noise=8e-6",
            "training.epochs=3",
            "insitu.soft_bounds=false",
            'modes=["ideal"]',
            "task.name=adding",
            "description = two words",
        ]
    )
    assert parsed == {
        "device.prog_noise": 8e-6,
        "training.epochs": 3,
        "insitu.soft_bounds": False,
        "modes": ["ideal"],
        "task.name": "adding",
        "description": "two words",
    }
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_overrides(["seed"])


def test_load_config_applies_overrides_and_validates_them():
    cfg = load_config("airline", ["device.prog_noise=8e-6", "modes=['ideal']"])
    assert cfg.device.prog_noise == 8e-6 and cfg.modes == ("ideal",)
    with pytest.raises(ConfigError) as info:
        load_config("airline", ["training.epoch=3"])
    assert "did you mean 'training.epochs'?" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_config("airline", ["training.epochs=many"])
    assert "parameter 'training.epochs' must be an integer" in str(info.value)
    assert "got 'many'" in str(info.value)


def test_numpy_scalars_are_accepted_as_plain_values(tmp_path):
    import numpy as np

    cfg = with_overrides(
        Config(),
        {
            "training.epochs": np.int64(3),
            "device.prog_noise": np.float32(0.5),
            "aware.levels": np.bool_(False),
            "sweep.grid": {"device.prog_noise": np.linspace(0, 8e-6, 3)},
        },
    )
    assert type(cfg.training.epochs) is int and type(cfg.device.prog_noise) is float
    assert cfg.aware.levels is False
    assert cfg.sweep.grid["device.prog_noise"] == (0.0, 4e-6, 8e-6)
    assert parse_config(dump_toml(cfg)) == cfg


def test_with_overrides_returns_a_validated_copy():
    cfg = load_config("airline")
    new = with_overrides(cfg, {"device.prog_noise": 8e-6, "seed": 4})
    assert new.device.prog_noise == 8e-6 and new.seed == 4
    assert cfg.device.prog_noise == 4e-6
    assert new == cfg.with_overrides({"device.prog_noise": 8e-6, "seed": 4})
    with pytest.raises(ConfigError, match="did you mean 'device.prog_noise'"):
        with_overrides(cfg, {"device.prog_nose": 1.0})
    with pytest.raises(ConfigError, match="greater than device.g_min"):
        with_overrides(cfg, {"device.g_min": 1e-3})


def test_unknown_shipped_name_and_missing_file():
    with pytest.raises(ConfigError, match="did you mean 'airline'"):
        load_config("airlin")
    with pytest.raises(ConfigError, match="no such file"):
        load_config("does/not/exist.toml")


# ---------------------------------------------------------------------------
# Round trip and sweep


def test_dump_round_trips_unusual_values(tmp_path):
    cfg = with_overrides(
        Config(),
        {
            "description": 'quote " backslash \\ tab \t newline \n del \x7f é',
            "task.train_fraction": 2.0 / 3.0,
            "device.prog_noise": 1e-300,
            "modes": ["insitu", "ideal"],
            "sweep.grid": {"device.prog_noise": [0.0, 4e-6], "training.epochs": [1]},
        },
    )
    text = dump_toml(cfg)
    assert parse_config(text) == cfg
    assert config_from_dict(tomllib.loads(text)) == cfg
    assert config_to_dict(cfg)["modes"] == ["insitu", "ideal"]


def test_sweep_grid_validation():
    cfg = parse_config(
        '[sweep]\nrepeats = 3\n[sweep.grid]\n"device.prog_noise" = [0, 4e-6]\n'
        "[sweep.grid.training]\nepochs = [1, 2]"
    )
    assert cfg.sweep.grid == {
        "device.prog_noise": (0.0, 4e-6),
        "training.epochs": (1, 2),
    }
    assert len(cfg.sweep.points()) == 4
    assert cfg.sweep.points()[1] == {"device.prog_noise": 0.0, "training.epochs": 2}
    msg = error_of('[sweep.grid]\n"device.prog_nois" = [1e-6]')
    assert "unknown key 'device.prog_nois' in sweep.grid" in msg
    assert "did you mean 'device.prog_noise'" in msg
    msg = error_of('[sweep.grid]\n"device.prog_noise" = [0, -1e-6]')
    assert "parameter 'device.prog_noise' must be a real number >= 0" in msg
    assert "value 2 of sweep.grid" in msg
    msg = error_of('[sweep.grid]\n"training.epochs" = 3')
    assert "a non-empty list of values" in msg
    msg = error_of('[sweep.grid]\n"device.g_min" = [0.0, 5e-4]')
    assert "greater than device.g_min" in msg and "device.g_min=0.0005" in msg
    assert "cannot vary the sweep itself" in error_of(
        '[sweep.grid]\n"sweep.repeats" = [1]'
    )
