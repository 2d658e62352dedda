"""RunSpec: every builder says how many epochs its run trains, from the setting its stage declares."""

from __future__ import annotations

import dataclasses
import json

from conftest import tiny_params

from smartmtl.layout import Layout
from smartmtl.model.features import load_features
from smartmtl.train.loop import training_rows
from smartmtl.train.runner import run
from smartmtl.variants import (
    TABLE2_CELL,
    grid_row,
    grid_spec,
    planned_runs,
    pretrain_spec,
    run_name,
    saved_spec,
    smart_pretrain_row,
    sst_lambda_row,
    sst_lambda_spec,
)

# Three different values, so that a spec that read the wrong setting shows it.
EPOCHS = {"train": {"epochs": 3, "pretrain_epochs": 5}, "sweep": {"sst_epochs": 7}}


def test_each_schedule_takes_its_own_epochs_setting():
    params = tiny_params(**EPOCHS)
    schedules = set()
    for spec in planned_runs(params):
        schedules.add(spec.schedule)
        assert spec.epochs == (7 if spec.schedule == "sst_only" else 3), spec.name
    # Table 2 has sequential and simultaneous rows, the grid simultaneous, Figure 3 SST alone.
    assert schedules == {"sequential", "simultaneous", "sst_only"}
    assert pretrain_spec(params).epochs == 5


def test_planned_runs_are_every_row_once_with_each_seed_in_dvc_yamls_order():
    params = tiny_params(sweep={"seeds": [0, 1], "descriptive_seeds": [0]})
    assert len(params.sweep.dropout) > 1 and len(params.sweep.sst_lambda_s) > 1  # so that a row left out shows
    cell = smart_pretrain_row(params)  # Table 2's Concat+SMART+Pretrain: a grid cell here
    expected = [
        # The rows no claim compares train with the descriptive seeds only, the others with all.
        *(run_name(row, seed) for row in params.descriptive_variants for seed in (0,)),
        *(run_name(row, seed) for row in [*params.variants, *params.smart_variants] for seed in (0, 1)),
        *(run_name(grid_row(d, lam), 0) for d in params.sweep.dropout for lam in params.sweep.lambda_s),
        run_name(TABLE2_CELL, 1),  # the claims' seed of Table 2's cell that the grid does not train
        *(run_name(sst_lambda_row(lam), seed) for lam in params.sweep.sst_lambda_s for seed in (0, 1)),
    ]
    planned = planned_runs(params)
    assert [spec.name for spec in planned] == expected
    extra = planned[expected.index(run_name(TABLE2_CELL, 1))]
    assert (extra.row, extra.kind, extra.seed) == (cell, "grid", 1)  # a seed of the grid cell's row
    assert {spec.seed for spec in planned if spec.row == cell} == {0, 1}


def test_table2s_pretrain_row_is_the_grid_cell_on_the_grid_and_a_run_of_its_own_off_it():
    on = tiny_params()  # dropout 0.1 and lambda_s 1.0: a cell of the smoke sweep
    assert smart_pretrain_row(on) == "grid-d0.1-l1.0"
    assert TABLE2_CELL not in {spec.row for spec in planned_runs(on)}
    for off in (tiny_params(model={"dropout": 0.2}), tiny_params(smart={"lambda_s": 2.0})):
        assert smart_pretrain_row(off) == TABLE2_CELL
        cells = [spec for spec in planned_runs(off) if spec.row == TABLE2_CELL]
        assert [spec.name for spec in cells] == [f"{TABLE2_CELL}-s{seed}" for seed in off.sweep.seeds]
        # It trains as a grid cell would at the parameters' own dropout and lambda_s, but is
        # no grid cell: not an ensemble member under "auto".
        cell = grid_spec(off, off.sweep.dropout[0], off.sweep.lambda_s[0], cells[0].seed)
        assert cells[0].config() == {**cell.config(), "dropout": off.model.dropout, "lambda_s": off.smart.lambda_s}
        assert cells[0].kind == "table2" and cells[0].label == cell.label


def test_a_saved_spec_reads_back_and_old_ones_get_the_epochs_they_trained():
    params = tiny_params(**EPOCHS)
    for spec in [pretrain_spec(params), *planned_runs(params)]:
        saved = dataclasses.asdict(spec)  # what runner writes into run.json
        assert saved_spec(saved, params) == spec
        del saved["epochs"]  # a run.json written before RunSpec held its epochs
        assert saved_spec(saved, params) == spec
    # A saved value wins over the parameters: it is what the run trained.
    assert saved_spec({**dataclasses.asdict(pretrain_spec(params)), "epochs": 2}, params).epochs == 2


def test_figure3s_control_is_the_same_run_with_lambda_s_0():
    params = tiny_params(sweep={"sst_lambda_s": [0.0, 1.0], "sst_train_rows": 3})
    control, smart = sst_lambda_spec(params, 0.0, 1), sst_lambda_spec(params, 1.0, 1)
    assert control.name == "sst-l0.0-s1" and control.row == sst_lambda_row(0.0)
    # SMART stays on (its proximal term with it): only lambda_s differs between the curves.
    assert dataclasses.replace(control, name="", row="", label="", lambda_s=1.0) == \
        dataclasses.replace(smart, name="", row="", label="")
    assert control.smart and control.train_rows == 3
    assert {spec.name for spec in planned_runs(params) if spec.kind == "sst_lambda"} >= {"sst-l0.0-s0", "sst-l1.0-s0"}
    # The other runs read all their training rows.
    assert {spec.train_rows for spec in planned_runs(params) if spec.kind != "sst_lambda"} == {None}


def test_a_figure3_run_trains_on_its_rows_the_same_for_every_seed(prepared_dir, tmp_path):
    params = tiny_params(prepared_dir, sweep={"sst_lambda_s": [0.0], "sst_epochs": 1, "sst_train_rows": 3},
                         train={"head_init": "random"})
    features = load_features(params, ("sst",), "concat", splits=("train", "dev"))
    assert len(features["train"]["sst"]) > 4  # so that all the rows would take two steps or more
    layout = Layout(tmp_path)
    for seed in (0, 1):  # through the runner, the path the sst_lambda stage takes
        spec = sst_lambda_spec(params, 0.0, seed)
        run(spec, params, layout)
        steps = json.loads((layout.live_dir(spec.name) / "metrics.json").read_text())["step"]
        assert steps == 1  # 3 rows in batches of 4
    chosen = [training_rows(features["train"], ("sst",), 3, params.data.seed)["sst"].ids for _ in range(2)]
    assert chosen[0] == chosen[1] and len(set(chosen[0])) == 3
    assert chosen[0] != features["train"]["sst"].ids[:3]  # drawn, not the file's first rows
    assert training_rows(features["train"], ("sst",), None, params.data.seed) is features["train"]
