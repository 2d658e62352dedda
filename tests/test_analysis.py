"""Analysis: figure files, plot-data CSVs, the worst STS pair and the SST error example."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smartmtl.config import parse_params
from smartmtl.layout import Layout
from smartmtl.results.analysis import AnalysisError, best_trained_mean, curve_shapes, lambda_curves, plot_lambda_curves, run_analysis
from smartmtl.results.outputs import load_model_metrics

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
    # DVCLive's step is the optimizer step; the epoch number is logged at each epoch's end.
    epochs = {0.5: 3, 5.0: 4}
    for lam, n in epochs.items():
        for seed in (0, 1):
            name = f"sst-l{lam}-s{seed}"
            (metrics / f"{name}.json").write_text(json.dumps({"dev": {"sst": 0.5}}))
            write_tsv(root, name, "dev/sst", [0.40 + 0.03 * e + 0.01 * lam + 0.02 * seed for e in range(n)], every=10)
            write_tsv(root, name, "epoch", list(range(1, n + 1)), every=10)
    for name in ("grid-d0.1-l1.0-s0", "concat-s0"):
        (metrics / f"{name}.json").write_text(json.dumps({"dev": {"overall": 0.7}}))
        write_tsv(root, name, "dev/overall", [0.6, 0.7, 0.72], every=10)
        for task in ("sst", "qqp", "sts"):
            write_tsv(root, name, f"train/loss_{task}", [1.0, 0.6, 0.4], every=5)


def write_tsv(root: Path, name: str, metric: str, values: list[float], every: int) -> None:
    path = root / "dvclive" / name / "plots" / "metrics" / f"{metric}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    column = metric.split("/")[-1]
    pd.DataFrame({"step": [every * (i + 1) for i in range(len(values))], column: values}).to_csv(path, sep="\t", index=False)


PARAMS = {"model": {"dropout": 0.1},
          "sweep": {"seeds": [0, 1], "dropout": [0.1], "lambda_s": [1.0], "sst_lambda_s": [0.5, 5.0]},
          "variants": {"concat": {"label": "Concat", "head": "concat", "schedule": "sequential"}}}


def analyse(root: Path):
    return run_analysis(parse_params(PARAMS), layout=Layout(root))


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


def test_fig3_csv_one_row_per_epoch_per_lambda_averaged_over_seeds(analysed):
    root, result = analysed
    frame = pd.read_csv(root / "plots" / "fig3_lambda_sst.csv")
    assert list(frame.columns) == ["series", "epoch", "sst_dev_accuracy"]
    assert frame.groupby("series").size().to_dict() == {"lambda_s 0.5": 3, "lambda_s 5": 4}
    assert frame[frame["series"] == "lambda_s 5"]["epoch"].tolist() == [1, 2, 3, 4]  # epochs, not steps
    assert frame.iloc[0]["sst_dev_accuracy"] == pytest.approx(0.405 + 0.01)  # seeds 0 and 1: 0.405, 0.425
    assert result["fig3_best"] == {"lambda_s": 5.0, "epoch": 4, "sst_dev_accuracy": pytest.approx(0.55)}  # 0.54, 0.56


def test_training_curves_data_one_series_per_model_with_steps(analysed):
    root, result = analysed
    overall = pd.read_csv(root / "plots" / "curves" / "dev_overall.csv")
    assert list(overall.columns) == ["series", "step", "overall"]
    assert set(overall["series"]) == {"grid-d0.1-l1.0", "concat"}  # rows, seeds averaged
    loss = pd.read_csv(root / "plots" / "curves" / "train_loss_sts.csv")
    assert loss[loss["series"] == "concat"]["step"].tolist() == [5, 10, 15]
    assert loss[loss["series"] == "concat"]["loss"].tolist() == [1.0, 0.6, 0.4]
    assert result["training_curve_models"] == ["concat", "grid-d0.1-l1.0"]  # the SST-only runs logged no losses here


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
    for path in (tmp_path / "metrics" / "finetune").glob("sst-l*.json"):
        path.unlink()
    analyse(tmp_path)
    frame = pd.read_csv(tmp_path / "plots" / "fig3_lambda_sst.csv")
    assert len(frame) == 0 and list(frame.columns) == ["series", "epoch", "sst_dev_accuracy"]
    assert (tmp_path / "plots" / "fig3_lambda_sst.png").exists()


def test_sts_scale_reports_how_far_predictions_reach(analysed):
    _, result = analysed
    scale = result["sts_scale"]
    assert scale["gold_max"] == 5.0
    assert scale["prediction_p99"] <= 5.0 and scale["mean_prediction_gold_4_to_5"] < 5.0


def test_fig3_data_has_each_epochs_training_loss_and_the_starting_score(tmp_path):
    build(tmp_path)
    name = "sst-l0.5-s0"  # dev/sst and epoch at steps 10, 20, 30: three epochs of 10 steps
    write_tsv(tmp_path, name, "train/loss_sst", [1.5, 1.3, 1.0, 0.8, 0.5, 0.3], every=5)
    for metric, start in (("dev/sst", 0.38), ("epoch", 0)):  # the score before the first step
        path = tmp_path / "dvclive" / name / "plots" / "metrics" / f"{metric}.tsv"
        frame = pd.read_csv(path, sep="\t")
        pd.concat([pd.DataFrame({"step": [0], frame.columns[1]: [start]}), frame]).to_csv(path, sep="\t", index=False)
    params = parse_params(PARAMS)
    curves = lambda_curves(load_model_metrics(params, Layout(tmp_path)), Layout(tmp_path))
    run = curves[(curves["lambda_s"] == 0.5) & (curves["seed"] == 0)]
    assert run["epoch"].tolist() == [0, 1, 2, 3]
    assert run["sst_dev_accuracy"].iloc[0] == pytest.approx(0.38)
    assert np.isnan(run["train_loss"].iloc[0])  # nothing trained before epoch 0's score
    assert run["train_loss"].iloc[1:].tolist() == pytest.approx([1.4, 0.9, 0.4])  # steps 5-10, 15-20, 25-30
    assert curves[curves["lambda_s"] == 5.0]["train_loss"].isna().all()  # no loss logged: none drawn
    plot_lambda_curves(curves, tmp_path / "fig3.png")
    assert (tmp_path / "fig3.png").read_bytes()[:4] == b"\x89PNG"


def _curve(lambda_s, seed, accuracy, loss):
    return pd.DataFrame({"epoch": range(len(accuracy)), "lambda_s": lambda_s, "seed": seed,
                         "sst_dev_accuracy": accuracy, "train_loss": [math.nan, *loss]})


def test_curve_shapes_say_where_the_mean_peaks_and_whether_it_overfits():
    curves = pd.concat([
        # lambda_s 0: the mean over seeds peaks at epoch 1 (0.41) and ends at 0.37 while the loss falls.
        _curve(0.0, 0, [0.39, 0.42, 0.40, 0.36], [1.2, 0.8, 0.3]),
        _curve(0.0, 1, [0.39, 0.40, 0.38, 0.38], [1.3, 0.7, 0.4]),
        # lambda_s 1: the mean rises to its last epoch.
        _curve(1.0, 0, [0.39, 0.40, 0.41, 0.42], [1.2, 0.9, 0.6]),
        _curve(1.0, 1, [0.39, 0.39, 0.40, 0.42], [1.2, 0.9, 0.6]),
    ])
    shapes = curve_shapes(curves)
    assert shapes["0"] == {"seeds": 2, "peak_epoch": 1, "peak": pytest.approx(0.41), "last_epoch": 3,
                           "last": pytest.approx(0.37), "train_loss_first": pytest.approx(1.25),
                           "train_loss_last": pytest.approx(0.35), "overfits": True}
    assert shapes["1"]["peak_epoch"] == 3 and not shapes["1"]["overfits"]
    # A dev score that peaks and falls while the loss does not fall is not the paper's overfitting.
    flat_loss = _curve(0.0, 0, [0.39, 0.42, 0.40, 0.36], [0.5, 0.5, 0.6])
    assert not curve_shapes(flat_loss)["0"]["overfits"]



def test_the_best_figure3_mean_is_after_training_not_the_shared_start():
    curves = pd.concat([_curve(0.0, 0, [0.45, 0.40, 0.38], [1.2, 0.8]), _curve(1.0, 0, [0.45, 0.39, 0.41], [1.2, 0.8]),
                        _curve(1.0, 1, [0.45, 0.39, 0.43], [1.2, 0.8])])
    assert best_trained_mean(curves) == {"lambda_s": 1.0, "epoch": 2, "sst_dev_accuracy": pytest.approx(0.42)}
    assert best_trained_mean(curves[curves["epoch"] == 0]) is None
