"""Ensemble: member selection, vote/median with the tie rule, id checks, metrics json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smartmtl.config import parse_params
from smartmtl.ensemble import EnsembleError, build_ensemble, combine, load_model_metrics, select_members, vote
from smartmtl.evaluate import overall_score

SST_GOLD = [0, 1, 2, 3, 4, 0]
QQP_GOLD = [0, 1, 1, 0]
STS_GOLD = [0.0, 1.0, 2.5, 4.0, 5.0]


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


def write_model(root: Path, name: str, overall: float, sst, qqp, sts, kind: str = "grid", splits=("dev", "test"),
                dropout: float = 0.1) -> None:
    metrics = root / "metrics" / "finetune"
    metrics.mkdir(parents=True, exist_ok=True)
    record = {"name": name, "kind": kind, "label": "Concat+SMART+Pretrain", "config": {"dropout": dropout, "lambda_s": 1.0, "seed": 0},
              "dev": {"sst": 0.5, "qqp": 0.8, "sts": 0.8, "overall": overall}, "train_seconds": 1.0}
    (metrics / f"{name}.json").write_text(json.dumps(record))
    for split in splits:
        folder = root / "predictions" / name
        folder.mkdir(parents=True, exist_ok=True)
        for task, values in (("sst", sst), ("qqp", qqp), ("sts", sts)):
            pd.DataFrame({"id": ids(task, len(values)), "prediction": values}).to_csv(folder / f"{task}-{split}.csv", index=False)


def params(members="auto", size=3):
    return parse_params({"ensemble": {"members": members, "size": size}})


def run(root: Path, p):
    return build_ensemble(
        p,
        finetune_metrics_dir=root / "metrics" / "finetune",
        predictions_dir=root / "predictions",
        prepared_dir=root / "data" / "prepared",
        output_metrics=root / "metrics" / "ensemble.json",
    )


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
    write_model(tmp_path, "grid-c", 0.70, sst, qqp, sts)
    write_model(tmp_path, "grid-b", 0.80, sst, qqp, sts)
    write_model(tmp_path, "grid-a", 0.80, sst, qqp, sts)
    write_model(tmp_path, "grid-d", 0.60, sst, qqp, sts)
    write_model(tmp_path, "concat", 0.99, sst, qqp, sts, kind="table2")
    metrics = load_model_metrics(tmp_path / "metrics" / "finetune")
    assert select_members(params(size=3), metrics, tmp_path / "predictions") == ["grid-a", "grid-b", "grid-c"]


def test_auto_ignores_grid_models_of_an_earlier_sweep(tmp_path):
    # A cell dropped from sweep.dropout leaves its files behind; its score must not count.
    write_model(tmp_path, "grid-old", 0.95, SST_GOLD, QQP_GOLD, STS_GOLD, dropout=0.05)
    write_model(tmp_path, "grid-a", 0.80, SST_GOLD, QQP_GOLD, STS_GOLD)
    write_model(tmp_path, "grid-b", 0.70, SST_GOLD, QQP_GOLD, STS_GOLD)
    write_prepared(tmp_path)
    assert run(tmp_path, params(size=2))["members"] == ["grid-a", "grid-b"]
    everything = load_model_metrics(tmp_path / "metrics" / "finetune")
    assert select_members(params(size=2), everything, tmp_path / "predictions")[0] == "grid-old"


def test_untrained_member_error_names_it_and_lists_existing(tmp_path):
    write_model(tmp_path, "grid-a", 0.8, SST_GOLD, QQP_GOLD, STS_GOLD)
    write_model(tmp_path, "grid-b", 0.8, SST_GOLD, QQP_GOLD, STS_GOLD)
    write_prepared(tmp_path)
    with pytest.raises(EnsembleError, match=r"'grid-zz' was not trained.*grid-a, grid-b"):
        run(tmp_path, params(members=["grid-a", "grid-zz"]))


def test_member_without_predictions_is_an_error(tmp_path):
    write_model(tmp_path, "grid-a", 0.8, SST_GOLD, QQP_GOLD, STS_GOLD)
    write_model(tmp_path, "grid-b", 0.8, SST_GOLD, QQP_GOLD, STS_GOLD)
    (tmp_path / "predictions" / "grid-b" / "sts-dev.csv").unlink()
    write_prepared(tmp_path)
    with pytest.raises(EnsembleError, match=r"'grid-b' has no predictions"):
        run(tmp_path, params(members=["grid-a", "grid-b"]))


def test_id_mismatch_names_member_and_ids(tmp_path):
    write_model(tmp_path, "grid-a", 0.9, SST_GOLD, QQP_GOLD, STS_GOLD)
    write_model(tmp_path, "grid-b", 0.8, SST_GOLD, QQP_GOLD, STS_GOLD)
    path = tmp_path / "predictions" / "grid-b" / "qqp-dev.csv"
    frame = pd.read_csv(path)
    frame.loc[2, "id"] = "stranger"
    frame.to_csv(path, index=False)
    write_prepared(tmp_path)
    with pytest.raises(EnsembleError, match=r"qqp-dev: member 'grid-b'.*lacks 1 .*'qqp2'.*has 1 .*'stranger'"):
        run(tmp_path, params(size=2))


def test_build_writes_predictions_and_metrics(tmp_path):
    write_prepared(tmp_path)
    # Ranked by dev overall: a (0.9), b (0.8), c (0.7).
    write_model(tmp_path, "grid-a", 0.9, [0, 1, 2, 3, 4, 1], [0, 1, 0, 0], [0.0, 1.0, 2.0, 3.0, 4.0])
    write_model(tmp_path, "grid-b", 0.8, [0, 2, 2, 0, 3, 2], [1, 1, 1, 1], [1.0, 1.0, 3.0, 5.0, 5.0])
    write_model(tmp_path, "grid-c", 0.7, [1, 2, 1, 3, 3, 0], [0, 0, 1, 1], [0.0, 2.0, 2.5, 4.0, 1.0])
    result = run(tmp_path, params(size=3))

    assert result["members"] == ["grid-a", "grid-b", "grid-c"]
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
    assert set(written["members_dev"]) == {"grid-a", "grid-b", "grid-c"}
    assert written["members_dev"]["grid-a"]["overall"] == 0.9


def test_test_metrics_present_when_test_is_labelled(tmp_path):
    write_prepared(tmp_path, test_labels=True)
    write_model(tmp_path, "grid-a", 0.9, SST_GOLD, QQP_GOLD, STS_GOLD)
    result = run(tmp_path, params(size=1))
    assert result["test"]["sst"] == 1.0
    assert result["test"]["overall"] == pytest.approx(1.0)
