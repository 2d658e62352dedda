"""params.yaml validation: every mistake stops with a message naming the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from smartmtl import presets
from smartmtl.config import ConfigError, Params, load_params, parse_params

REPO = Path(__file__).parents[1]


def _with(section: str, **values) -> dict:
    raw = copy.deepcopy(presets.render("paper"))
    raw[section] = {**raw[section], **values}
    return raw


def _error(raw: dict) -> str:
    with pytest.raises(ConfigError) as info:
        parse_params(raw, "params.yaml")
    return str(info.value)


def test_valid_paper_preset_parses():
    params = parse_params(presets.render("paper"))
    assert isinstance(params, Params)
    assert params.train.lr == 1e-5


@pytest.mark.parametrize("section, key", [("train", "lrr"), ("model", "backbone_name"), ("smart", "lamda_s")])
def test_unknown_key(section, key):
    message = _error(_with(section, **{key: 1}))
    assert f"{section}.{key}: unknown key" in message
    assert message.startswith("params.yaml")


def test_the_old_eval_limit_key_says_what_replaced_it():
    message = _error(_with("data", eval_limit={"sst": 3}))
    assert message.startswith("params.yaml") and "data" in message
    assert "eval_limit was split into dev_limit and test_limit" in message


def test_unknown_top_level_section():
    raw = copy.deepcopy(presets.render("paper"))
    raw["optimiser"] = {"lr": 1}
    assert "optimiser: unknown key" in _error(raw)


@pytest.mark.parametrize("section, key, value", [
    ("train", "batch_size", "many"),
    ("train", "lr", "fast"),
    ("model", "max_length", [64]),
    ("smart", "steps", "sometimes"),
])
def test_wrong_type(section, key, value):
    assert f"{section}.{key}:" in _error(_with(section, **{key: value}))


@pytest.mark.parametrize("section, key, value", [
    ("train", "lr", -1e-5),
    ("train", "lr", 0.0),
    ("model", "dropout", 1.0),
    ("model", "dropout", -0.1),
    ("train", "batch_size", 0),
    ("train", "warmup", 1.0),
    ("smart", "lambda_s", -1.0),
])
def test_out_of_range(section, key, value):
    assert f"{section}.{key}:" in _error(_with(section, **{key: value}))


def test_negative_lr_message():
    message = _error(_with("train", lr=-0.001))
    assert "train.lr" in message and "greater than 0" in message


@pytest.mark.parametrize("field, value, allowed", [
    ("head", "bilinear", ["separate", "cosine", "concat"]),
    ("schedule", "roundrobin", ["sequential", "simultaneous"]),
])
def test_unknown_head_or_schedule_lists_allowed_values(field, value, allowed):
    raw = copy.deepcopy(presets.render("paper"))
    variant = {"label": "X", "head": "concat", "schedule": "sequential", field: value}
    raw["variants"] = {**raw["variants"], "mine": variant}
    message = _error(raw)
    assert f"variants.mine.{field}" in message
    assert repr(value) in message
    assert "allowed" in message
    for name in allowed:
        assert repr(name) in message


@pytest.mark.parametrize("section, key, value, allowed", [
    ("train", "precision", "fp16", ["bf16", "fp32"]),
    ("model", "pooling", "max", ["cls", "mean"]),
    ("smart", "norm", "l1", ["inf", "l2"]),
    ("train", "decay", "stepwise", ["constant", "linear", "cosine"]),
])
def test_other_literals_list_allowed_values(section, key, value, allowed):
    message = _error(_with(section, **{key: value}))
    assert f"{section}.{key}" in message
    for name in allowed:
        assert repr(name) in message


@pytest.mark.parametrize("section, key, value", [("model", "dropout", 0.25), ("smart", "lambda_s", 2.0)])
def test_a_dropout_or_lambda_s_off_the_grid_is_valid(section, key, value):
    # `dvc exp run -S model.dropout=0.25` is an experiment: Table 2's Concat+SMART+Pretrain then
    # trains as a row of its own (smartmtl.variants.smart_pretrain_row).
    params = parse_params(_with(section, **{key: value}))
    assert getattr(getattr(params, section), key) == value
    assert value not in getattr(params.sweep, key)


def test_a_smart_flag_on_a_row_points_to_smart_variants():
    raw = copy.deepcopy(presets.render("paper"))
    raw["variants"] = {"old": {"label": "O", "head": "concat", "schedule": "sequential", "smart": True}}
    message = _error(raw)
    assert "variants.old" in message and "smart_variants" in message


def test_a_row_is_listed_once():
    raw = copy.deepcopy(presets.render("paper"))
    raw["variants"] = {**raw["variants"], "concat_smart": {"label": "C", "head": "concat", "schedule": "sequential"}}
    assert "concat_smart" in _error(raw) and "listed once" in _error(raw)


def test_rows_with_smart_train_with_it_and_the_others_without():
    rows = parse_params(presets.render("paper")).table2_rows()
    assert {name for name, (_, with_smart) in rows.items() if with_smart} == {
        "concat_smart", "concat_smart_star", "concat_smart_surgery_pretrain"}
    assert list(rows)[:4] == ["baseline", "cos_sim", "concat", "concat_star"]


def test_surgery_needs_simultaneous():
    raw = copy.deepcopy(presets.render("paper"))
    raw["variants"] = {"bad": {"label": "B", "head": "concat", "schedule": "sequential", "surgery": True}}
    message = _error(raw)
    assert "variants.bad" in message and "simultaneous" in message


@pytest.mark.parametrize("name", presets.available())
def test_every_preset_renders_and_validates(name):
    raw = presets.render(name)
    params = parse_params(raw, f"preset {name}")
    assert params.preset == name
    # Round trip through YAML, as `smartmtl preset` writes it.
    assert parse_params(yaml.safe_load(yaml.safe_dump(raw)), name) == params


def test_presets_available():
    assert set(presets.available()) >= {"paper", "laptop", "smoke"}
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        presets.render("huge")


def test_written_preset_loads_back(tmp_path):
    presets.write("smoke", tmp_path / "params.yaml")
    assert load_params(tmp_path / "params.yaml") == parse_params(presets.render("smoke"))


def test_missing_params_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml")


def test_committed_params_are_the_laptop_preset():
    committed = load_params(REPO / "params.yaml")
    assert committed == parse_params(presets.render("laptop")), (
        "params.yaml must stay the laptop preset: run `smartmtl preset laptop`"
    )


def test_the_code_defaults_are_the_paper_preset():
    # One source of defaults: a key left out of params.yaml means the paper's setting.
    defaults = parse_params({}).model_dump(exclude={"preset", "descriptive_variants", "variants", "smart_variants"})
    assert defaults == parse_params(presets.render("paper")).model_dump(exclude={"preset", "descriptive_variants", "variants", "smart_variants"})


@pytest.mark.parametrize("key", ["dropout", "lambda_s", "sst_lambda_s"])
def test_sweep_values_written_as_integers_are_refused(key):
    # DVC names runs by the value as written: [1, 5] beside [1.0, 5.0] would train each twice.
    with pytest.raises(ConfigError, match=rf"sweep.{key}: .*write 0.0, not 0"):
        parse_params({"model": {"dropout": 0.0}, "smart": {"lambda_s": 0.0},
                      "sweep": {"dropout": [0.0], "lambda_s": [0.0], "sst_lambda_s": [0.0], key: [0]}})


@pytest.mark.parametrize("train_limit", [400, None])
def test_a_probe_limit_that_adds_no_row_is_refused(train_limit):
    message = _error(_with("data", train_limit={"sst": train_limit}, probe_limit={"sst": 400}))
    assert message.startswith("params.yaml") and "probe_limit.sst (400) must be above train_limit.sst" in message
    assert parse_params(_with("data", train_limit={"sst": 400}, probe_limit={"sst": 401})).data.probe_limit.sst == 401


def test_figure3_takes_lambda_s_0_as_its_control():
    params = parse_params(_with("sweep", sst_lambda_s=[0.0, 1.0]))
    assert params.sweep.sst_lambda_s == [0.0, 1.0]
    assert "lambda_s -0.5 is negative" in _error(_with("sweep", sst_lambda_s=[-0.5, 1.0]))


def test_figure3s_training_rows_are_rows_the_data_keeps():
    assert parse_params(_with("data", train_limit={"sst": 400})).sweep.sst_train_rows is None  # all of them
    raw = {**_with("data", train_limit={"sst": 400}), "sweep": {"sst_train_rows": 200}}
    assert parse_params(raw).sweep.sst_train_rows == 200
    message = _error({**raw, "sweep": {"sst_train_rows": 401}})
    assert "sweep.sst_train_rows (401) is above data.train_limit.sst (400)" in message
    assert "sweep.sst_train_rows:" in _error({"sweep": {"sst_train_rows": 0}})
    assert parse_params({"sweep": {"sst_train_rows": 10_000}}).sweep.sst_train_rows == 10_000  # train_limit: all
