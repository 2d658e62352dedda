"""Analysis: figure files, plot-data CSVs, the worst STS pair and the SST error example."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smartmtl.analysis import AnalysisError, run_analysis
from smartmtl.config import parse_params

RNG = np.random.default_rng(0)
N_SST, N_STS = 60, 80


def build(root: Path) -> None:
    prepared = root / "data" / "prepared"
    prepared.mkdir(parents=True)
    sst_gold = np.arange(N_SST) % 5
    sst_pred = sst_gold.copy()
    sst_pred[::4] = np.clip(sst_gold[::4] + 1, 0, 4)
    sst_pred[10] = 3  # gold 0 -> 3
    sst_pred[20] = 4  # gold 0 -> 4: the most confidently wrong
    sst_pred[4] = 0  # gold 4 -> 0 is as far, but the paper's rule prefers gold 0
    pd.DataFrame({"id": [f"s{i}" for i in range(N_SST)], "sentence": [f"sentence {i}" for i in range(N_SST)], "label": sst_gold}).to_parquet(prepared / "sst-dev.parquet")
    sts_gold = RNG.uniform(0, 5, N_STS)
    sts_pred = np.clip(sts_gold + RNG.normal(0, 0.4, N_STS), 0, 5)
    sts_gold[33], sts_pred[33] = 5.0, 2.22
    pd.DataFrame({"id": [f"t{i}" for i in range(N_STS)], "sentence1": [f"first {i}" for i in range(N_STS)], "sentence2": [f"second {i}" for i in range(N_STS)], "label": sts_gold}).to_parquet(prepared / "sts-dev.parquet")
    sts_gold_worst = ("it's also a matter of taste", "it's definitely just a matter of preference")
    frame = pd.read_parquet(prepared / "sts-dev.parquet")
    frame.loc[33, ["sentence1", "sentence2"]] = sts_gold_worst
    frame.to_parquet(prepared / "sts-dev.parquet")
    folder = root / "predictions" / "ensemble"
    folder.mkdir(parents=True)
    # Shuffled row order: the analysis must match on id.
    order = RNG.permutation(N_SST)
    pd.DataFrame({"id": [f"s{i}" for i in order], "prediction": sst_pred[order]}).to_csv(folder / "sst-dev.csv", index=False)
    pd.DataFrame({"id": [f"t{i}" for i in range(N_STS)], "prediction": sts_pred}).to_csv(folder / "sts-dev.csv", index=False)

    metrics = root / "metrics" / "finetune"
    metrics.mkdir(parents=True)
    epochs = {0.5: 3, 5.0: 4}
    for lam, n in epochs.items():
        name = f"sst-lambda{lam:g}"
        (metrics / f"{name}.json").write_text(json.dumps({"name": name, "kind": "sst_lambda", "config": {"lambda_s": lam, "seed": 0}, "dev": {"sst": 0.5}}))
        write_tsv(root, name, "dev/sst", [0.40 + 0.03 * e + 0.01 * lam for e in range(n)])
    for name in ("grid-d0.1-l1", "concat"):
        (metrics / f"{name}.json").write_text(json.dumps({"name": name, "kind": "grid", "config": {"lambda_s": 1.0, "seed": 0}, "dev": {"overall": 0.7}}))
        write_tsv(root, name, "dev/overall", [0.6, 0.7, 0.72])
        for task in ("sst", "qqp", "sts"):
            write_tsv(root, name, f"train/loss_{task}", [1.0, 0.6, 0.4])


def write_tsv(root: Path, name: str, metric: str, values: list[float]) -> None:
    path = root / "dvclive" / name / "plots" / "metrics" / f"{metric}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    column = metric.split("/")[-1]
    pd.DataFrame({"step": range(len(values)), column: values}).to_csv(path, sep="\t", index=False)


def analyse(root: Path):
    return run_analysis(
        parse_params({}),
        prepared_dir=root / "data" / "prepared",
        predictions_dir=root / "predictions",
        finetune_metrics_dir=root / "metrics" / "finetune",
        dvclive_dir=root / "dvclive",
        plots_dir=root / "plots",
        analysis_metrics=root / "metrics" / "analysis.json",
    )


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    root = tmp_path_factory.mktemp("analysis")
    build(root)
    return root, analyse(root)


def test_writes_all_figures(analysed):
    root, _ = analysed
    for name in ("fig3_lambda_sst.png", "fig4_sst_confusion.png", "fig4_sts_scatter.png", "training_curves.png"):
        data = (root / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
    assert not [p for p in (root / "plots").iterdir() if p.name.startswith(".")]  # no temporaries left


def test_confusion_csv_has_one_row_per_dev_example(analysed):
    root, result = analysed
    frame = pd.read_csv(root / "plots" / "sst_confusion.csv")
    assert list(frame.columns) == ["actual", "predicted"]
    assert len(frame) == N_SST
    gold = np.arange(N_SST) % 5
    assert frame["actual"].tolist() == gold.tolist()  # prepared order, not the CSV's shuffled order
    counts = np.array(result["sst_confusion"])
    assert counts.sum() == N_SST
    assert counts[0, 4] == 1 and counts[0, 3] == 1 and counts[4, 0] == 1


def test_fig3_csv_one_row_per_epoch_per_lambda(analysed):
    root, _ = analysed
    frame = pd.read_csv(root / "plots" / "fig3_lambda_sst.csv")
    assert list(frame.columns) == ["epoch", "lambda_s", "seed", "sst_dev_accuracy"]
    assert len(frame) == 3 + 4
    assert frame.groupby("lambda_s").size().to_dict() == {0.5: 3, 5.0: 4}
    assert frame[frame["lambda_s"] == 5.0]["epoch"].tolist() == [1, 2, 3, 4]
    assert frame.iloc[0]["sst_dev_accuracy"] == pytest.approx(0.405)


def test_worst_sts_pair(analysed):
    root, result = analysed
    worst = result["sts_worst_pair"]
    assert worst["id"] == "t33"
    assert worst["sentence1"] == "it's also a matter of taste"
    assert worst["sentence2"] == "it's definitely just a matter of preference"
    assert worst["gold"] == 5.0 and worst["prediction"] == pytest.approx(2.22)
    scatter = pd.read_csv(root / "plots" / "sts_scatter.csv")
    assert list(scatter.columns) == ["id", "gold", "prediction"] and len(scatter) == N_STS
    saved = json.loads((root / "metrics" / "analysis.json").read_text())
    assert saved["sts_worst_pair"]["id"] == "t33"


def test_sst_most_confidently_wrong_prefers_gold_negative_predicted_positive(analysed):
    _, result = analysed
    wrong = result["sst_most_confidently_wrong"]
    assert wrong["id"] == "s20"
    assert (wrong["gold"], wrong["prediction"]) == (0, 4)
    assert wrong["sentence"] == "sentence 20"


def test_missing_predictions_is_a_clean_error(tmp_path):
    build(tmp_path)
    (tmp_path / "predictions" / "ensemble" / "sts-dev.csv").unlink()
    with pytest.raises(AnalysisError, match="sts-dev.csv not found"):
        analyse(tmp_path)


def test_no_lambda_models_still_writes_fig3(tmp_path):
    build(tmp_path)
    for path in (tmp_path / "metrics" / "finetune").glob("sst-lambda*.json"):
        path.unlink()
    analyse(tmp_path)
    frame = pd.read_csv(tmp_path / "plots" / "fig3_lambda_sst.csv")
    assert len(frame) == 0 and list(frame.columns) == ["epoch", "lambda_s", "seed", "sst_dev_accuracy"]
    assert (tmp_path / "plots" / "fig3_lambda_sst.png").exists()
