"""RunSpec: every builder says how many epochs its run trains, from the setting its stage declares."""

from __future__ import annotations

import dataclasses

from conftest import tiny_params

from smartmtl.variants import grid_spec, planned_runs, pretrain_spec, saved_spec, sst_lambda_spec, table2_spec

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


def test_the_builders_agree_with_planned_runs():
    params = tiny_params(**EPOCHS)
    row = next(iter(params.variants))
    assert table2_spec(params, row, 0).epochs == 3
    assert grid_spec(params, params.model.dropout, params.smart.lambda_s, 0).epochs == 3
    assert sst_lambda_spec(params, params.sweep.sst_lambda_s[0], 0).epochs == 7


def test_a_saved_spec_reads_back_and_old_ones_get_the_epochs_they_trained():
    params = tiny_params(**EPOCHS)
    for spec in [pretrain_spec(params), *planned_runs(params)]:
        saved = dataclasses.asdict(spec)  # what runner writes into run.json
        assert saved_spec(saved, params) == spec
        del saved["epochs"]  # a run.json written before RunSpec held its epochs
        assert saved_spec(saved, params) == spec
    # A saved value wins over the parameters: it is what the run trained.
    assert saved_spec({**dataclasses.asdict(pretrain_spec(params)), "epochs": 2}, params).epochs == 2
