"""Figures 3 and 4, the training curves, and the paper's Section 6 error analysis.

- Figure 3: SST dev accuracy per epoch of SST trained alone, one line per lambda_s.
- Figure 4 (left): the analysed model's SST dev confusion matrix (counts, row-normalised).
- Figure 4 (right): STS dev prediction vs gold coloured by point density, worst pair in red.
- Training curves: dev overall and each task's training loss per optimizer step, one line per
  model (its seeds averaged), from DVCLive.

Every figure and CSV is written atomically; the figures use fixed sizes and the Agg backend.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.stats import gaussian_kde  # noqa: E402

from smartmtl.config import Params  # noqa: E402
from smartmtl.data.prepared import read_prepared  # noqa: E402
from smartmtl.errors import UserError  # noqa: E402
from smartmtl.evaluate import task_metric  # noqa: E402
from smartmtl.io import atomic_path, read_predictions, write_json  # noqa: E402
from smartmtl.layout import (  # noqa: E402
    CURVES_DIR,
    CURVES_PNG,
    FIG3_CSV,
    FIG3_PNG,
    FIG4_CONFUSION_CSV,
    FIG4_CONFUSION_PNG,
    FIG4_SCATTER_CSV,
    FIG4_SCATTER_PNG,
    Layout,
)
from smartmtl.results.outputs import ENSEMBLE_NAME, RunRecord, load_model_metrics  # noqa: E402
from smartmtl.tasks import TASKS  # noqa: E402

SST_CLASSES = TASKS["sst"].classes  # the confusion matrix's rows and columns


class AnalysisError(UserError, RuntimeError):
    """The analysis cannot run on what the earlier stages produced; the message says why."""


# ------------------------------------------------------------------------- helpers


def _save_figure(figure: plt.Figure, destination: Path) -> None:
    with atomic_path(destination) as path:
        figure.savefig(path, format="png", dpi=110)
    plt.close(figure)


def _save_csv(frame: pd.DataFrame, destination: Path) -> None:
    with atomic_path(destination) as path:
        frame.to_csv(path, index=False)


def _no_data(figure: plt.Figure, message: str) -> None:
    figure.text(0.5, 0.5, message, ha="center", va="center", fontsize=12, wrap=True)


def _labelled(prepared_dir: Path, task: str) -> pd.DataFrame:
    frame = read_prepared(prepared_dir, task, "dev")
    if frame is None or "label" not in frame.columns:
        raise AnalysisError(f"{prepared_dir / f'{task}-dev.parquet'}: missing, or has no label column")
    return frame


def _joined(predictions: pd.DataFrame, prepared: pd.DataFrame, task: str) -> pd.DataFrame:
    """Prepared dev rows (in their order) with the model's prediction beside the label."""
    merged = prepared.merge(predictions, on="id", how="left")
    if merged["prediction"].isna().any():
        count = int(merged["prediction"].isna().sum())
        raise AnalysisError(f"{task}: {count} dev examples have no prediction")
    return merged


# ---------------------------------------------------------------- Figure 4: SST


def sst_confusion(joined: pd.DataFrame) -> np.ndarray:
    """5 x 5 counts, rows = actual label, columns = predicted label."""
    counts = np.zeros((len(SST_CLASSES), len(SST_CLASSES)), dtype=np.int64)
    np.add.at(counts, (joined["label"].astype(int).to_numpy(), joined["prediction"].astype(int).to_numpy()), 1)
    return counts


def most_confidently_wrong_sst(joined: pd.DataFrame) -> dict | None:
    """The paper's example: gold negative (0) predicted positive-ish (4 first, then 3).

    Without such a case, the largest |gold - prediction| (first in dev order on ties).
    None when every prediction is right.
    """
    gold = joined["label"].astype(int)
    predicted = joined["prediction"].astype(int)
    candidates = joined[(gold == 0) & (predicted >= 3)]
    if len(candidates):
        row = candidates.loc[candidates["prediction"].astype(int).idxmax()]
        rule = "gold negative (0) predicted somewhat positive (3) or positive (4)"
    else:
        distance = (gold - predicted).abs()
        if distance.max() == 0:
            return None
        row = joined.loc[distance.idxmax()]
        rule = "largest |gold - prediction| (no gold-0 example was predicted 3 or 4)"
    return {
        "id": str(row["id"]),
        "sentence": str(row.get("sentence", "")),
        "gold": int(row["label"]),
        "prediction": int(row["prediction"]),
        "gold_name": SST_CLASSES[int(row["label"])],
        "prediction_name": SST_CLASSES[int(row["prediction"])],
        "rule": rule,
    }


def plot_sst_confusion(counts: np.ndarray, destination: Path, example: dict | None, title: str) -> None:
    totals = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)
    figure, axes = plt.subplots(1, 2, figsize=(13, 6.2))
    short = [f"{index}\n{name}" for index, name in enumerate(SST_CLASSES)]
    for axis, values, panel in ((axes[0], counts, "counts"), (axes[1], normalised, "row-normalised (recall)")):
        image = axis.imshow(values, cmap="Blues", vmin=0)
        for row in range(values.shape[0]):
            for column in range(values.shape[1]):
                value = values[row, column]
                text = f"{value:d}" if panel == "counts" else f"{value:.2f}"
                dark = value > values.max() * 0.6 if values.max() > 0 else False
                axis.text(column, row, text, ha="center", va="center", fontsize=9, color="white" if dark else "black")
        axis.set_xticks(range(len(short)), short, fontsize=8)
        axis.set_yticks(range(len(short)), short, fontsize=8)
        axis.set_xlabel("predicted label")
        axis.set_ylabel("actual label")
        axis.set_title(panel)
        figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    figure.suptitle(f"{title}: SST dev confusion matrix (accuracy {accuracy:.3f}, n={counts.sum()})")
    if example is not None:
        sentence = textwrap.shorten(example["sentence"], 150, placeholder="...")
        figure.text(
            0.5,
            0.02,
            f'Most confidently wrong: "{sentence}"  gold {example["gold"]} ({example["gold_name"]}), '
            f'predicted {example["prediction"]} ({example["prediction_name"]})',
            ha="center",
            fontsize=8.5,
            wrap=True,
        )
    figure.tight_layout(rect=(0, 0.07, 1, 0.95))
    _save_figure(figure, destination)


# ---------------------------------------------------------------- Figure 4: STS


def worst_sts_pair(joined: pd.DataFrame) -> dict:
    """The dev pair with the largest |prediction - gold| (first in dev order on ties)."""
    error = (joined["prediction"].astype(float) - joined["label"].astype(float)).abs()
    row = joined.loc[error.idxmax()]
    return {
        "id": str(row["id"]),
        "sentence1": str(row.get("sentence1", "")),
        "sentence2": str(row.get("sentence2", "")),
        "gold": float(row["label"]),
        "prediction": float(row["prediction"]),
        "abs_error": float(error.max()),
    }


def sts_scale(joined: pd.DataFrame) -> dict[str, float]:
    """How far the predictions reach: Pearson ignores scale, a reader of Figure 4 does not."""
    gold, prediction = joined["label"].astype(float), joined["prediction"].astype(float)
    high = gold >= 4
    return {"gold_max": float(gold.max()), "prediction_p99": float(prediction.quantile(0.99)),
            "mean_prediction_gold_4_to_5": float(prediction[high].mean()) if high.any() else math.nan}


def point_density(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gaussian-KDE density at each point; constant when the KDE is undefined (few/collinear points)."""
    try:
        return gaussian_kde(np.vstack([x, y]))(np.vstack([x, y]))
    except (np.linalg.LinAlgError, ValueError):
        return np.ones_like(x, dtype=float)


def plot_sts_scatter(joined: pd.DataFrame, worst: dict, destination: Path, title: str, pearson: float) -> None:
    gold = joined["label"].to_numpy(dtype=float)
    predicted = joined["prediction"].to_numpy(dtype=float)
    density = point_density(gold, predicted)
    order = np.argsort(density)  # densest points drawn last, on top
    figure, axis = plt.subplots(figsize=(11, 6.5))
    points = axis.scatter(gold[order], predicted[order], c=density[order], cmap="viridis", s=12, linewidths=0)
    figure.colorbar(points, ax=axis, label="point density (Gaussian KDE)")
    low = min(0.0, gold.min(), predicted.min())
    high = max(5.0, gold.max(), predicted.max())
    axis.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1, label="prediction = gold")
    axis.scatter([worst["gold"]], [worst["prediction"]], color="red", s=70, edgecolors="black", zorder=5, label="largest error")
    axis.set_xlabel("gold similarity")
    axis.set_ylabel("predicted similarity")
    axis.set_xlim(low - 0.2, high + 0.2)
    axis.set_ylim(low - 0.2, high + 0.2)
    axis.set_aspect("equal")
    axis.legend(loc="upper left", fontsize=8)
    axis.set_title(f"{title}: STS dev (Pearson {pearson:.3f}, n={len(gold)})")
    wrap = lambda text: "\n".join(textwrap.wrap(textwrap.shorten(text, 160, placeholder="..."), 34))  # noqa: E731
    figure.text(
        0.70,
        0.5,
        "Largest error (red):\n\n"
        f"S1: {wrap(worst['sentence1'])}\n\nS2: {wrap(worst['sentence2'])}\n\n"
        f"gold {worst['gold']:.2f}\npredicted {worst['prediction']:.2f}",
        fontsize=9,
        va="center",
        ha="left",
        color="darkred",
    )
    figure.subplots_adjust(left=0.07, right=0.66, top=0.92, bottom=0.1)
    _save_figure(figure, destination)


# ------------------------------------------------------------------- DVCLive data


def read_dvclive(live_dir: Path, metric: str) -> pd.DataFrame | None:
    """A run's ``<live_dir>/plots/metrics/<metric>.tsv`` (where DVCLive writes it) as columns
    step, value; None if absent."""
    path = live_dir / "plots" / "metrics" / f"{metric}.tsv"
    if not path.exists():
        return None
    frame = pd.read_csv(path, sep="\t")
    value_column = [column for column in frame.columns if column not in ("step", "timestamp")]
    if "step" not in frame.columns or not value_column:
        raise AnalysisError(f"{path}: expected columns step and {metric.split('/')[-1]}")
    return frame[["step", value_column[-1]]].rename(columns={value_column[-1]: "value"})


def lambda_curves(metrics: dict[str, RunRecord], layout: Layout) -> pd.DataFrame:
    """Figure 3's data: epoch, lambda_s, seed, sst_dev_accuracy and train_loss (the mean SST
    training loss the run logged during that epoch; none at epoch 0, the starting score) for
    every sst_lambda run."""
    rows = []
    for name, record in sorted(metrics.items()):
        if record.kind != "sst_lambda":
            continue
        live = layout.live_dir(name)
        accuracy, epoch = read_dvclive(live, "dev/sst"), read_dvclive(live, "epoch")
        if accuracy is None or epoch is None:
            continue
        loss = read_dvclive(live, "train/loss_sst")
        lambda_s, seed = record.lambda_s, record.seed
        joined = accuracy.merge(epoch, on="step", suffixes=("", "_epoch")).sort_values("step", kind="stable")
        previous_end = 0
        for step, value, epoch_number in zip(joined["step"], joined["value"], joined["value_epoch"]):
            # DVCLive's step is the optimizer step: an epoch's losses are those logged after
            # the previous epoch's end, up to its own.
            logged = None if loss is None else loss["value"][(loss["step"] > previous_end) & (loss["step"] <= step)]
            rows.append({"epoch": int(epoch_number), "lambda_s": lambda_s, "seed": seed,
                         "sst_dev_accuracy": float(value),
                         "train_loss": float(logged.mean()) if logged is not None and len(logged) else math.nan})
            previous_end = step
    frame = pd.DataFrame(rows, columns=["epoch", "lambda_s", "seed", "sst_dev_accuracy", "train_loss"])
    return frame.sort_values(["lambda_s", "seed", "epoch"], kind="stable").reset_index(drop=True)


def curve_shapes(curves: pd.DataFrame) -> dict[str, dict]:
    """Per lambda_s, the shape of Figure 3's mean curve over seeds: the epoch where its SST dev
    accuracy peaks, the score there and at the last epoch, the mean training loss of its first and
    last epochs, and ``overfits``: the mean peaks before the last epoch and ends lower while the
    training loss falls (the paper's reason for SMART). Keyed by lambda_s as text, for JSON."""
    shapes = {}
    for lambda_s, group in curves.groupby("lambda_s", sort=True):
        means = group.groupby("epoch")[["sst_dev_accuracy", "train_loss"]].mean()
        peak_epoch, last_epoch = int(means["sst_dev_accuracy"].idxmax()), int(means.index.max())
        losses = means["train_loss"].dropna()
        first_loss, last_loss = (float(losses.iloc[0]), float(losses.iloc[-1])) if len(losses) else (None, None)
        peak, last = float(means["sst_dev_accuracy"].max()), float(means["sst_dev_accuracy"].loc[last_epoch])
        shapes[_lambda_text(lambda_s)] = {
            "seeds": int(group["seed"].nunique()), "peak_epoch": peak_epoch, "peak": peak,
            "last_epoch": last_epoch, "last": last, "train_loss_first": first_loss, "train_loss_last": last_loss,
            "overfits": bool(peak_epoch < last_epoch and last < peak
                             and first_loss is not None and last_loss < first_loss),
        }
    return shapes


def best_trained_mean(curves: pd.DataFrame) -> dict | None:
    """Figure 3's best mean over seeds after some training: its lambda_s, epoch and SST dev
    accuracy. Epoch 0 is left out: it is the start, the same heads for every lambda_s."""
    trained = curves[curves["epoch"] > 0]
    if trained.empty:
        return None
    means = trained.groupby(["lambda_s", "epoch"], as_index=False)["sst_dev_accuracy"].mean()
    best = means.loc[means["sst_dev_accuracy"].idxmax()]
    return {"lambda_s": float(best["lambda_s"]), "epoch": int(best["epoch"]),
            "sst_dev_accuracy": float(best["sst_dev_accuracy"])}


def lambda_series(curves: pd.DataFrame) -> pd.DataFrame:
    """Figure 3 for `dvc plots`: the mean over seeds, one series per lambda_s."""
    means = curves.groupby(["lambda_s", "epoch"], as_index=False)["sst_dev_accuracy"].mean()
    means.insert(0, "series", [f"lambda_s {_lambda_text(value)}" for value in means["lambda_s"]])
    return means[["series", "epoch", "sst_dev_accuracy"]]


def row_curves(metrics: dict[str, RunRecord], layout: Layout, metric: str) -> pd.DataFrame:
    """One DVCLive metric for every run, averaged over each row's seeds at each step:
    columns series (the row), step, value."""
    frames = []
    for name, record in sorted(metrics.items()):
        curve = read_dvclive(layout.live_dir(name), metric)
        if curve is not None:
            frames.append(curve.assign(series=record.row))
    if not frames:
        return pd.DataFrame(columns=["series", "step", "value"])
    joined = pd.concat(frames, ignore_index=True)
    return joined.groupby(["series", "step"], as_index=False, sort=True)["value"].mean()


def _lambda_text(value: float) -> str:
    return f"{value:g}"


def plot_lambda_curves(curves: pd.DataFrame, destination: Path) -> None:
    """Figure 3 as the paper drew it, SST dev accuracy per epoch for each lambda_s (the mean
    over seeds, a band of one standard deviation, each seed faintly), and beside it the SST
    training loss per epoch, so that the lambda_s 0 control's overfitting shows: its dev
    accuracy falling while its training loss keeps falling."""
    figure, (accuracy_axis, loss_axis) = plt.subplots(1, 2, figsize=(12, 5), width_ratios=(3, 2))
    if curves.empty:
        _no_data(figure, "No sst_lambda model has DVCLive dev/sst data yet")
        accuracy_axis.set_axis_off()
        loss_axis.set_axis_off()
        figure.tight_layout()
        _save_figure(figure, destination)
        return
    colours = plt.get_cmap("tab10")
    control = float(curves["lambda_s"].min())
    for index, (lambda_s, group) in enumerate(curves.groupby("lambda_s", sort=True)):
        colour = colours(index % colours.N)
        for _, run in group.groupby("seed"):  # each seed faintly, the mean boldly
            accuracy_axis.plot(run["epoch"], run["sst_dev_accuracy"], color=colour, alpha=0.25, linewidth=1)
        by_epoch = group.groupby("epoch")["sst_dev_accuracy"]
        mean, spread, seeds = by_epoch.mean(), by_epoch.std(ddof=1).fillna(0.0), group["seed"].nunique()
        name = f"lambda_s = {_lambda_text(lambda_s)}" + (" (control: no adversarial term)" if lambda_s == 0 else "")
        accuracy_axis.fill_between(mean.index, mean - spread, mean + spread, color=colour, alpha=0.15, linewidth=0)
        accuracy_axis.plot(mean.index, mean.values, color=colour, marker="o", linewidth=2.5,
                           label=f"{name}, mean of {seeds} seed{'s' * (seeds > 1)} +- 1 sd")
        loss = group.dropna(subset=["train_loss"]).groupby("epoch")["train_loss"].mean()
        loss_axis.plot(loss.index, loss.values, color=colour, marker="o",
                       linewidth=2.5 if lambda_s == control else 1.2, alpha=1.0 if lambda_s == control else 0.6,
                       label=name)
    # An axis that starts at chance (1 of 5 classes) rather than at the data, so that
    # a difference of a few sentences does not look like a win.
    accuracy_axis.set_ylim(0.2, max(0.6, float(curves["sst_dev_accuracy"].max()) + 0.05))
    accuracy_axis.set_ylabel("SST dev accuracy")
    accuracy_axis.set_title("SST dev accuracy (epoch 0: before training; last: whole dev set)", fontsize=10)
    loss_axis.set_ylabel("SST training loss (epoch's mean, seeds' mean)")
    loss_axis.set_title("SST training loss", fontsize=10)
    loss_axis.set_ylim(bottom=0)
    for axis in (accuracy_axis, loss_axis):
        axis.set_xlabel("epoch")
        axis.xaxis.get_major_locator().set_params(integer=True)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    loss_axis.set_xlim(accuracy_axis.get_xlim())  # the same epochs under each other
    figure.suptitle("Figure 3: SMART regularisation strength lambda_s on SST (trained alone)\n"
                    "Only lambda_s differs: the Bregman proximal term (smart.mu) is on in every curve; "
                    "lambda_s 0 is the control, without the adversarial term.",
                    fontsize=10)
    figure.tight_layout()
    _save_figure(figure, destination)


def plot_training_curves(curves: dict[str, pd.DataFrame], destination: Path) -> list[str]:
    """One panel per curve (dev overall, then each task's training loss), one colour per row
    (its seeds averaged), optimizer steps on x. Returns the rows drawn."""
    figure, axes = plt.subplots(2, 2, figsize=(14, 8.5))
    rows = sorted({row for frame in curves.values() for row in frame["series"]})
    colours = plt.get_cmap("tab20" if len(rows) > 10 else "tab10")
    handles = {}
    for axis, (title, frame) in zip(axes.flat, curves.items()):
        for row, group in frame.groupby("series", sort=True):
            (line,) = axis.plot(group["step"], group["value"], color=colours(rows.index(row) % colours.N),
                                marker="." if len(group) < 5 else None, linewidth=1.2)
            handles.setdefault(row, line)
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("optimizer step")
        axis.grid(alpha=0.3)
        if frame.empty:
            axis.text(0.5, 0.5, "no data", ha="center", va="center", transform=axis.transAxes)
    if handles:
        figure.legend(list(handles.values()), list(handles), loc="center left", bbox_to_anchor=(0.82, 0.5),
                      fontsize=8, title="model (mean over seeds)")
    figure.suptitle("Training curves (DVCLive)")
    figure.tight_layout(rect=(0, 0, 0.82, 0.96))
    _save_figure(figure, destination)
    return rows


# ---------------------------------------------------------------------------- stage


def run_analysis(params: Params, *, model: str = ENSEMBLE_NAME, layout: Layout = Layout()) -> dict:
    """Write Figures 3-4, their plot data, the training curves and the analysis metrics."""
    prepared_dir, plots_dir = layout.prepared_dir(params), layout.plots
    title = "Ensemble" if model == ENSEMBLE_NAME else model

    def predictions(task: str) -> pd.DataFrame:
        path = layout.predictions_file(model, task, "dev")
        if not path.exists():
            raise AnalysisError(f"{path} not found: run the stage that predicts for {model!r} first")
        return read_predictions(path)

    # Figure 4, left: SST.
    sst = _joined(predictions("sst"), _labelled(prepared_dir, "sst"), "sst")
    counts = sst_confusion(sst)
    wrong = most_confidently_wrong_sst(sst)
    plot_sst_confusion(counts, plots_dir / FIG4_CONFUSION_PNG, wrong, title)
    _save_csv(
        pd.DataFrame({"actual": sst["label"].astype(int), "predicted": sst["prediction"].astype(int)}),
        plots_dir / FIG4_CONFUSION_CSV,
    )

    # Figure 4, right: STS.
    sts = _joined(predictions("sts"), _labelled(prepared_dir, "sts"), "sts")
    worst = worst_sts_pair(sts)
    pearson = task_metric("sts", sts["prediction"].to_numpy(dtype=float), sts["label"].to_numpy(dtype=float))
    plot_sts_scatter(sts, worst, plots_dir / FIG4_SCATTER_PNG, title, pearson)
    _save_csv(
        pd.DataFrame({"id": sts["id"], "gold": sts["label"].astype(float), "prediction": sts["prediction"].astype(float)}),
        plots_dir / FIG4_SCATTER_CSV,
    )

    # Figure 3 and the training curves.
    metrics = load_model_metrics(params, layout)
    curves = lambda_curves(metrics, layout)
    _save_csv(lambda_series(curves), plots_dir / FIG3_CSV)
    plot_lambda_curves(curves, plots_dir / FIG3_PNG)
    training = {"dev overall (at each epoch's end)": ("dev_overall", "dev/overall", "overall")} | {
        f"{task.upper()} training loss": (f"train_loss_{task}", f"train/loss_{task}", "loss") for task in TASKS}
    drawn = {}
    for title, (stem, metric, column) in training.items():
        drawn[title] = row_curves(metrics, layout, metric)
        _save_csv(drawn[title].rename(columns={"value": column}), plots_dir / CURVES_DIR / f"{stem}.csv")
    curve_models = plot_training_curves(drawn, plots_dir / CURVES_PNG)

    totals = counts.sum(axis=1)
    recall = {
        SST_CLASSES[index]: (float(counts[index, index] / totals[index]) if totals[index] else None)
        for index in range(len(SST_CLASSES))
    }
    best_lambda = best_trained_mean(curves)
    result = {
        "model": model,
        "sst_dev_accuracy": float(np.trace(counts) / max(counts.sum(), 1)),
        "sst_recall_by_class": recall,
        "sst_confusion": counts.tolist(),
        "sst_most_confidently_wrong": wrong,
        "sts_dev_pearson": pearson,
        "sts_worst_pair": worst,
        "sts_scale": sts_scale(sts),
        "fig3_best": best_lambda,
        "fig3_shapes": curve_shapes(curves) if not curves.empty else {},
        "training_curve_models": curve_models,
    }
    write_json(result, layout.analysis_metrics)
    return result
