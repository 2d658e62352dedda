"""Ensemble: member selection, vote/median with the tie rule, id checks, metrics json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smartmtl.config import parse_params
from smartmtl.evaluate import overall_score
from smartmtl.layout import Layout
from smartmtl.results.ensemble import EnsembleError, build_ensemble, select_members
from smartmtl.results.outputs import load_model_metrics, move_stale, run_record, write_untrained
from smartmtl.tasks import combine, vote
from smartmtl.variants import planned_runs

SST_GOLD = [0, 1, 2, 3, 4, 0]
QQP_GOLD = [0, 1, 1, 0]
STS_GOLD = [0.0, 1.0, 2.5, 4.0, 5.0]


# Runs of the sweep params() defines, named as the pipeline names them.
GRID_A, GRID_B, GRID_C, GRID_D = "grid-d0.1-l1.0-s0", "grid-d0.1-l1.0-s1", "grid-d0.3-l1.0-s0", "grid-d0.3-l1.0-s1"
CONCAT = "concat-s0"
OLD = "grid-d0.05-l1.0-s0"  # a cell of an earlier sweep


def ids(task: str, n: int) -> list[str]:
    return [f"{task}{i}" for i in range(n)]


def write_prepared(root: Path, test_labels: bool = False) -> Path:
    prepared = root / "data" / "prepared"
    prepared.mkdir(parents=True)
    for split in ("dev", "test"):
        for task, gold in (("sst", SST_GOLD), ("qqp", QQP_GOLD), ("sts", STS_GOLD)):
            frame = pd.DataFrame({"id": ids(task, len(gold)), "sentence": "s"})
            if split == "dev" or test_labels:
                frame["label"] = gold
            frame.to_parquet(prepared / f"{task}-{split}.parquet")
    return prepared


def write_model(root: Path, name: str, overall: float, sst, qqp, sts, splits=("dev", "test")) -> None:
    metrics = root / "metrics" / "finetune"
    metrics.mkdir(parents=True, exist_ok=True)
    record = {"dev": {"sst": 0.5, "qqp": 0.8, "sts": 0.8, "overall": overall}, "train_seconds": 1.0}
    (metrics / f"{name}.json").write_text(json.dumps(record))
    for split in splits:
        folder = root / "predictions" / name
        folder.mkdir(parents=True, exist_ok=True)
        for task, values in (("sst", sst), ("qqp", qqp), ("sts", sts)):
            pd.DataFrame({"id": ids(task, len(values)), "prediction": values}).to_csv(folder / f"{task}-{split}.csv", index=False)


def params(members="auto", size=3):
    return parse_params({"ensemble": {"members": members, "size": size},
                         "sweep": {"seeds": [0, 1], "dropout": [0.1, 0.3], "lambda_s": [1.0], "sst_lambda_s": [1.0]},
                         "variants": {"concat": {"label": "Concat", "head": "concat", "schedule": "sequential"}}})


def run(root: Path, p):
    return build_ensemble(p, Layout(root))


def test_vote_majority_and_tie_goes_to_highest_ranked_member():
    stacked = np.array(
        [
            [1, 2, 3, 0],  # best member
            [2, 2, 4, 1],
            [2, 1, 4, 2],
            [0, 1, 3, 3],
        ]
    )
    # col0: 2 has 2 votes (majority); col1: 2 vs 1 tie -> best member says 2;
    # col2: 3 vs 4 tie -> best member says 3; col3: all different -> best member's 0.
    assert vote(stacked).tolist() == [2, 2, 3, 0]
    # The same tie, ranked the other way round, goes the other way.
    assert vote(stacked[::-1]).tolist() == [2, 1, 3, 3]


def test_tie_when_best_member_is_not_among_tied_classes():
    # counts: 1 -> 2, 2 -> 2, 0 -> 1; best member voted 0 (not tied); second-best voted 2.
    stacked = np.array([[0], [2], [1], [1], [2]])
    assert vote(stacked).tolist() == [2]


def test_median_for_sts():
    stacked = np.array([[1.0, 5.0], [2.0, 0.0], [4.0, 4.0], [3.0, 1.0]])
    assert combine("sts", stacked).tolist() == [2.5, 2.5]
    assert combine("sts", stacked[:3]).tolist() == [2.0, 4.0]


def test_auto_selects_best_grid_models_by_dev_overall_ties_by_name(tmp_path):
    sst, qqp, sts = SST_GOLD, QQP_GOLD, STS_GOLD
    write_model(tmp_path, GRID_C, 0.70, sst, qqp, sts)
    write_model(tmp_path, GRID_B, 0.80, sst, qqp, sts)
    write_model(tmp_path, GRID_A, 0.80, sst, qqp, sts)
    write_model(tmp_path, GRID_D, 0.60, sst, qqp, sts)
    write_model(tmp_path, CONCAT, 0.99, sst, qqp, sts)  # a Table 2 row, not a grid cell
    metrics = load_model_metrics(params(), Layout(tmp_path))
    assert metrics[CONCAT].kind == "table2" and metrics[GRID_A].dropout == 0.1
    assert select_members(params(size=3), metrics, Layout(tmp_path)) == [GRID_A, GRID_B, GRID_C]


def test_a_runs_record_joins_its_spec_and_its_scores_and_leaves_missing_splits_empty(tmp_path):
    spec = next(spec for spec in planned_runs(params()) if spec.name == GRID_C)
    start = {"sst": 0.2, "qqp": 0.5, "sts": 0.1, "overall": 0.4}
    record = run_record(spec, {"dev": {"overall": 0.7}, "dev_start": start, "train_seconds": 3,
                               "surgery": {"conflict_share": 0.5, "mean_cosine": 0.01}})
    assert (record.name, record.row, record.kind, record.seed) == (GRID_C, "grid-d0.3-l1.0", "grid", 0)
    assert (record.dropout, record.lambda_s, record.train_seconds) == (0.3, 1.0, 3.0)
    assert record.scores("dev_start") == start and record.surgery["conflict_share"] == 0.5
    # An older run: no start, no test, no surgery; a stand-in that trained nothing: no scores at all.
    older = run_record(spec, {"dev": {"overall": 0.7}})
    assert older.dev_start == {} and older.test == {} and older.surgery == {} and older.train_seconds is None
    assert run_record(spec, {"same_as": GRID_A}).dev == {}
    with pytest.raises(ValueError, match="no split 'train'"):
        record.scores("train")


def test_auto_ignores_grid_models_of_an_earlier_sweep(tmp_path):
    # A cell dropped from sweep.dropout leaves its files behind; its score must not count.
    write_model(tmp_path, OLD, 0.95, SST_GOLD, QQP_GOLD, STS_GOLD)
    write_model(tmp_path, GRID_A, 0.80, SST_GOLD, QQP_GOLD, STS_GOLD)
    write_model(tmp_path, GRID_B, 0.70, SST_GOLD, QQP_GOLD, STS_GOLD)
    write_prepared(tmp_path)
    assert OLD not in load_model_metrics(params(), Layout(tmp_path))
    assert run(tmp_path, params(size=2))["members"] == [GRID_A, GRID_B]
    summary = json.loads((tmp_path / "metrics" / "summary.json").read_text())
    assert list(summary) == ["dev_ensemble", "dev_overall", "dev_sst"]  # test labels absent: no test scores
    assert summary["dev_overall"] == {"grid-d0.1-l1.0": pytest.approx(0.75)}  # seeds 0 and 1 averaged


def test_outputs_of_runs_no_longer_defined_move_to_stale(tmp_path):
    write_model(tmp_path, OLD, 0.95, SST_GOLD, QQP_GOLD, STS_GOLD)
    write_model(tmp_path, GRID_A, 0.80, SST_GOLD, QQP_GOLD, STS_GOLD)
    for name in (OLD, GRID_A, "pretrain"):
        (tmp_path / "models" / name).mkdir(parents=True)
        (tmp_path / "models" / name / "model.safetensors").write_text(name)
    assert move_stale(params(), Layout(tmp_path)) == [OLD]
    for kept in (tmp_path / "models" / GRID_A, tmp_path / "models" / "pretrain", tmp_path / "predictions" / GRID_A):
        assert kept.is_dir()
    assert not (tmp_path / "models" / OLD).exists() and not (tmp_path / "metrics" / "finetune" / f"{OLD}.json").exists()
    assert (tmp_path / "stale" / "models" / OLD / "model.safetensors").read_text() == OLD
    assert json.loads((tmp_path / "stale" / "metrics" / "finetune" / f"{OLD}.json").read_text())["dev"]["overall"] == 0.95
    # A second move (the old run trained again, then dropped again) replaces the earlier copy.
    write_model(tmp_path, OLD, 0.90, SST_GOLD, QQP_GOLD, STS_GOLD)
    assert move_stale(params(), Layout(tmp_path)) == [OLD]
    assert json.loads((tmp_path / "stale" / "metrics" / "finetune" / f"{OLD}.json").read_text())["dev"]["overall"] == 0.90


def test_the_table2_cell_stage_writes_empty_outputs_on_the_grid_and_they_stay(tmp_path):
    layout, name = Layout(tmp_path), "table2-cell-s0"
    write_model(tmp_path, name, 0.9, SST_GOLD, QQP_GOLD, STS_GOLD)  # trained while its cell was off the grid
    write_untrained(name, stand_in=GRID_C, layout=layout)
    for folder in (layout.model_dir(name), layout.predictions_dir(name), layout.live_dir(name)):
        assert folder.is_dir() and not any(folder.iterdir())
    assert json.loads(layout.metrics_file(name).read_text()) == {"same_as": GRID_C}
    # No result is read from them, but they stay: DVC would rerun a stage whose outputs moved away.
    assert name not in load_model_metrics(params(), layout)
    assert move_stale(params(), layout) == []


def test_untrained_member_error_names_it_and_lists_existing(tmp_path):
    write_model(tmp_path, GRID_A, 0.8, SST_GOLD, QQP_GOLD, STS_GOLD)
    write_model(tmp_path, GRID_B, 0.8, SST_GOLD, QQP_GOLD, STS_GOLD)
    write_prepared(tmp_path)
    with pytest.raises(EnsembleError, match=rf"'grid-zz' was not trained.*{GRID_A}, {GRID_B}"):
        run(tmp_path, params(members=[GRID_A, "grid-zz"]))


def test_member_without_predictions_is_an_error(tmp_path):
    write_model(tmp_path, GRID_A, 0.8, SST_GOLD, QQP_GOLD, STS_GOLD)
    write_model(tmp_path, GRID_B, 0.8, SST_GOLD, QQP_GOLD, STS_GOLD)
    (tmp_path / "predictions" / GRID_B / "sts-dev.csv").unlink()
    write_prepared(tmp_path)
    with pytest.raises(EnsembleError, match=rf"'{GRID_B}' has no predictions"):
        run(tmp_path, params(members=[GRID_A, GRID_B]))


def test_id_mismatch_names_member_and_ids(tmp_path):
    write_model(tmp_path, GRID_A, 0.9, SST_GOLD, QQP_GOLD, STS_GOLD)
    write_model(tmp_path, GRID_B, 0.8, SST_GOLD, QQP_GOLD, STS_GOLD)
    path = tmp_path / "predictions" / GRID_B / "qqp-dev.csv"
    frame = pd.read_csv(path)
    frame.loc[2, "id"] = "stranger"
    frame.to_csv(path, index=False)
    write_prepared(tmp_path)
    with pytest.raises(EnsembleError, match=rf"qqp-dev: member '{GRID_B}'.*lacks 1 .*'qqp2'.*has 1 .*'stranger'"):
        run(tmp_path, params(size=2))


def test_build_writes_predictions_and_metrics(tmp_path):
    write_prepared(tmp_path)
    # Ranked by dev overall: a (0.9), b (0.8), c (0.7).
    write_model(tmp_path, GRID_A, 0.9, [0, 1, 2, 3, 4, 1], [0, 1, 0, 0], [0.0, 1.0, 2.0, 3.0, 4.0])
    write_model(tmp_path, GRID_B, 0.8, [0, 2, 2, 0, 3, 2], [1, 1, 1, 1], [1.0, 1.0, 3.0, 5.0, 5.0])
    write_model(tmp_path, GRID_C, 0.7, [1, 2, 1, 3, 3, 0], [0, 0, 1, 1], [0.0, 2.0, 2.5, 4.0, 1.0])
    result = run(tmp_path, params(size=3))

    assert result["members"] == [GRID_A, GRID_B, GRID_C]
    sst = pd.read_csv(tmp_path / "predictions" / "ensemble" / "sst-dev.csv", dtype={"id": str})
    # ex5: 1/2/0 three-way tie -> grid-a's 1.
    assert sst["prediction"].tolist() == [0, 2, 2, 3, 3, 1]
    assert sst["id"].tolist() == ids("sst", 6)
    qqp = pd.read_csv(tmp_path / "predictions" / "ensemble" / "qqp-dev.csv")
    assert qqp["prediction"].tolist() == [0, 1, 1, 1]
    sts = pd.read_csv(tmp_path / "predictions" / "ensemble" / "sts-dev.csv")
    assert sts["prediction"].tolist() == [0.0, 1.0, 2.5, 4.0, 4.0]
    assert (tmp_path / "predictions" / "ensemble" / "sts-test.csv").exists()

    expected_sst = np.mean(np.array([0, 2, 2, 3, 3, 1]) == np.array(SST_GOLD))
    expected_qqp = 0.75
    expected_sts = np.corrcoef([0.0, 1.0, 2.5, 4.0, 4.0], STS_GOLD)[0, 1]
    written = json.loads((tmp_path / "metrics" / "ensemble.json").read_text())
    assert written["dev"]["sst"] == pytest.approx(expected_sst)
    assert written["dev"]["qqp"] == pytest.approx(expected_qqp)
    assert written["dev"]["sts"] == pytest.approx(expected_sts)
    assert written["dev"]["overall"] == pytest.approx(overall_score(expected_sst, expected_qqp, expected_sts))
    assert "test" not in written  # the prepared test split is unlabelled
    assert set(written["members_dev"]) == {GRID_A, GRID_B, GRID_C}
    assert written["members_dev"][GRID_A]["overall"] == 0.9


def test_test_metrics_present_when_test_is_labelled(tmp_path):
    write_prepared(tmp_path, test_labels=True)
    write_model(tmp_path, GRID_A, 0.9, SST_GOLD, QQP_GOLD, STS_GOLD)
    result = run(tmp_path, params(size=1))
    assert result["test"]["sst"] == 1.0
    assert result["test"]["overall"] == pytest.approx(1.0)
