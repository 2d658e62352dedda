"""Tables 2-4 beside the paper's numbers, and the one-page ``metrics/report.md``.

The paper's numbers are data here (``PAPER_TABLE2``, ``PAPER_TABLE3``, ``PAPER_TABLE4``),
copied from Tables 2-4 of the paper (dev scores; Table 4 also test).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from smartmtl import presets
from smartmtl.config import Params, parse_params
from smartmtl.io import atomic_path, read_json, write_table
from smartmtl.layout import CURVES_PNG, FIG3_PNG, FIG4_CONFUSION_PNG, FIG4_SCATTER_PNG, TABLE1, Layout
from smartmtl.results.claims import METRICS, runs_by_row, spread, table5
from smartmtl.results.outputs import load_model_metrics
from smartmtl.tasks import TASKS
from smartmtl.variants import grid_row, smart_pretrain_row

COLUMN = {"sst": "SST", "qqp": "QQP", "sts": "STS", "overall": "Overall"}

# Table 2. The paper's "Training Method" column has merged cells; we read them as
# Conventional (Baseline, Cos-Sim), Sequential (Concat, Concat+SMART) and Simultaneous
# (the rest), as Section 5.4.1 describes. ``model`` is how we find our row.
PAPER_TABLE2 = [
    {"Model": "Baseline", "Training Method": "Conventional", "model": "baseline", "sst": 0.506, "qqp": 0.673, "sts": 0.224, "overall": 0.597},
    {"Model": "Cos-Sim", "Training Method": "Conventional", "model": "cos_sim", "sst": 0.507, "qqp": 0.787, "sts": 0.394, "overall": 0.664},
    {"Model": "Concat", "Training Method": "Sequential", "model": "concat", "sst": 0.494, "qqp": 0.795, "sts": 0.833, "overall": 0.735},
    {"Model": "Concat+SMART", "Training Method": "Sequential", "model": "concat_smart", "sst": 0.530, "qqp": 0.782, "sts": 0.771, "overall": 0.733},
    {"Model": "Concat+SMART*", "Training Method": "Simultaneous", "model": "concat_smart_star", "sst": 0.510, "qqp": 0.883, "sts": 0.874, "overall": 0.777},
    # Not in the paper: the control that "SMART helps in simultaneous training" needs.
    {"Model": "Concat* (no SMART)", "Training Method": "Simultaneous", "model": "concat_star", "sst": math.nan, "qqp": math.nan, "sts": math.nan, "overall": math.nan},
    {"Model": "Concat+SMART+Pretrain", "Training Method": "Simultaneous", "model": None, "sst": 0.530, "qqp": 0.906, "sts": 0.873, "overall": 0.791},
    {"Model": "Concat+SMART+Surgery+Pretrain", "Training Method": "Simultaneous", "model": "concat_smart_surgery_pretrain", "sst": 0.533, "qqp": 0.904, "sts": 0.864, "overall": 0.790},
]

# Table 3: (lambda_s, dropout) -> dev scores of Concat+SMART+Pretrain.
PAPER_TABLE3 = {
    (1.0, 0.1): {"sst": 0.536, "qqp": 0.905, "sts": 0.884, "overall": 0.794},
    (1.0, 0.2): {"sst": 0.546, "qqp": 0.900, "sts": 0.888, "overall": 0.797},
    (1.0, 0.3): {"sst": 0.530, "qqp": 0.906, "sts": 0.873, "overall": 0.791},
    (1.0, 0.4): {"sst": 0.536, "qqp": 0.900, "sts": 0.888, "overall": 0.793},
    (1.0, 0.5): {"sst": 0.537, "qqp": 0.897, "sts": 0.884, "overall": 0.792},
    (5.0, 0.1): {"sst": 0.544, "qqp": 0.904, "sts": 0.893, "overall": 0.798},
    (5.0, 0.2): {"sst": 0.530, "qqp": 0.905, "sts": 0.895, "overall": 0.794},
    (5.0, 0.3): {"sst": 0.540, "qqp": 0.902, "sts": 0.889, "overall": 0.796},
    (5.0, 0.4): {"sst": 0.544, "qqp": 0.905, "sts": 0.889, "overall": 0.798},
    (5.0, 0.5): {"sst": 0.530, "qqp": 0.903, "sts": 0.884, "overall": 0.792},
}

# Table 4: the ensemble, with the leaderboard ranking the paper reports.
PAPER_TABLE4 = {
    "Dev": {"sst": 0.545, "qqp": 0.908, "sts": 0.894, "overall": 0.800, "ranking": 2},
    "Test": {"sst": 0.540, "qqp": 0.908, "sts": 0.893, "overall": 0.798, "ranking": 3},
}

TABLE2 = "table2_methods"
TABLE3 = "table3_grid"
TABLE4 = "table4_ensemble"
TABLE5 = "table5_claims"
FOREST_PNG = "table5_claims.png"

FIGURES = [
    ("Figure 3: SST dev accuracy per epoch for each lambda_s", FIG3_PNG),
    ("Figure 4 (left): SST dev confusion matrix", FIG4_CONFUSION_PNG),
    ("Figure 4 (right): STS dev prediction vs gold", FIG4_SCATTER_PNG),
    ("Training curves", CURVES_PNG),
    ("Table 5 as a forest plot: paired differences over seeds with 95 % intervals", FOREST_PNG),
]


# ------------------------------------------------------------------------- caveats


def _qqp_train_rows(data_metrics: Path) -> int | None:
    """The QQP training pairs the prepare stage kept, from its summary (metrics/data.json): a file
    the report stage declares, unlike the prepared data, which a workspace may hold from another run."""
    if not data_metrics.exists():
        return None
    return read_json(data_metrics)["tasks"]["qqp"]["train"]["rows"]


HEAD_STARTS = {"random": "random weights", "probe": "a linear probe"}


def _settings(params: Params) -> str:
    """The training settings a table's numbers depend on, in one line."""
    train = params.train
    sequential = ", ".join(f"{task} {epochs:g}" for task, epochs in train.sequential_epochs.model_dump().items())
    limits = [f"{task}={params.data.train_limit.get(task)}" for task in TASKS if params.data.train_limit.get(task)]
    grid = ", ".join(f"{dropout:g}" for dropout in params.sweep.dropout)
    heads = HEAD_STARTS[train.head_init]
    probed = [f"{task}={params.data.probe_limit.get(task)}" for task in TASKS if params.data.probe_limit.get(task)]
    if train.head_init == "probe" and probed:
        heads += f" (on {', '.join(probed)} training rows)"
    return (
        f"{train.epochs} epoch(s) (sequential: {sequential}), batch size {train.batch_size}, lr {train.lr:g}, "
        f"train_limit {', '.join(limits) or 'none (all data)'}, dropout {params.model.dropout:g} (grid {grid}), "
        f"{params.model.pooling} pooling, heads from {heads}, precision {train.precision}"
    )


def caveats(params: Params, data_metrics: Path) -> list[str]:
    """What differs from the paper: backbone, data scale, preset and training settings."""
    backbone = params.model.backbone
    if "minilm-l6" in backbone.lower():
        backbone_note = (
            f"Backbone: {backbone} (6 layers, 384 hidden, 22.7M parameters) instead of the paper's BERT-base "
            "(12 layers, 768 hidden, 110M). It was trained on sentence pairs that include Quora duplicate "
            "questions, so its QQP scores are flattered."
        )
    else:
        backbone_note = f"Backbone: {backbone} instead of the paper's BERT-base (12 layers, 768 hidden, 110M)."
    rows = _qqp_train_rows(data_metrics)
    qqp_train = f"{rows:,} pairs" if rows is not None else "a ~27k-pair subset"
    data_note = (
        f"Data scale: QQP train here is {qqp_train} vs the paper's 283,010; QQP dev and test are the two halves "
        "of the CS224N QQP dev file, so QQP scores are not comparable with the paper's."
    )
    settings_note = (
        f"Preset '{params.preset}': {_settings(params)} (the paper, as the 'paper' preset: "
        f"{_settings(parse_params(presets.render('paper'), 'preset paper'))})."
    )
    smart = params.smart
    smart_note = (
        f"SMART perturbs the {smart.site.replace('_', ' ')} with {smart.steps} ascent step(s) ({smart.update}, "
        f"{smart.norm}-norm ball of radius {smart.epsilon:g}, step {smart.eta:g}, start {smart.sigma:g}, "
        + ("in fractions of each token's norm" if smart.scale == "token" else "in absolute units")
        + "); the clean and perturbed forwards share their dropout masks. Bregman teacher: "
        + (f"mu {smart.mu:g}, time constant {smart.teacher_horizon:g} of the run, momentum at least "
           f"{smart.teacher_beta_min:g}." if smart.mu > 0 else "off.")
    )
    return [backbone_note, data_note, settings_note, smart_note]


# -------------------------------------------------------------------------- tables


def _ours(record: dict | None, split: str = "dev") -> dict[str, float]:
    values = (record or {}).get(split) or {}
    return {metric: float(values[metric]) if values.get(metric) is not None else math.nan for metric in METRICS}


def _side_by_side(ours: dict[str, float], paper: dict[str, float] | None) -> dict[str, float]:
    row = {}
    for metric in METRICS:
        row[COLUMN[metric]] = ours[metric]
        row[f"{COLUMN[metric]} (paper)"] = paper[metric] if paper else math.nan
    return row


def _over_seeds(by_seed: dict[int, dict[str, float]], paper: dict[str, float] | None) -> dict[str, float]:
    """Mean and standard deviation over seeds of each metric, n, and the paper's single number."""
    row: dict[str, float] = {"n": len(by_seed)}
    for metric in METRICS:
        mean, sd, _ = spread(by_seed, metric)
        row[COLUMN[metric]] = mean
        row[f"{COLUMN[metric]} sd"] = sd
        row[f"{COLUMN[metric]} (paper)"] = paper[metric] if paper else math.nan
    return row


def table2(params: Params, metrics: dict[str, dict]) -> tuple[pd.DataFrame, list[str]]:
    rows_by_key, rows, notes = runs_by_row(metrics), [], []
    defined = params.table2_rows()
    for paper in PAPER_TABLE2:
        key = paper["model"]
        if key is None:  # Concat+SMART+Pretrain: a grid cell, or its own row off the grid
            name, dropout, lambda_s = smart_pretrain_row(params), params.model.dropout, params.smart.lambda_s
            source = f"{name} (dropout={dropout:g}, lambda_s={lambda_s:g})"
            runs = rows_by_key.get(name, {})
        else:
            source = key
            runs = rows_by_key.get(key, {}) if key in defined else {}
            if key not in defined:
                notes.append(f"{paper['Model']}: variant '{key}' is in neither variants nor smart_variants; "
                             "row left empty.")
        if not runs and (key is None or key in defined):
            notes.append(f"{paper['Model']}: no run of {source} has dev metrics in metrics/finetune; row left empty.")
        paper_values = None if math.isnan(paper["overall"]) else paper
        rows.append({"Model": paper["Model"], "Training Method": paper["Training Method"], "Our row": source,
                     **_over_seeds(runs, paper_values)})
    notes.append(
        "Training Method: the paper's merged cells are read as Conventional (Baseline, Cos-Sim), "
        "Sequential (Concat, Concat+SMART) and Simultaneous (the rest), following Section 5.4.1."
    )
    notes.append(_seeds_note(params))
    return pd.DataFrame(rows), notes


def _seeds_note(params: Params) -> str:
    return (f"Ours: mean and standard deviation (sd) over n runs with seeds {params.sweep.seeds}; the paper reports "
            "one run. A difference smaller than the sd is not a result: Table 5 pairs the runs seed by seed.")


def table3(params: Params, metrics: dict[str, dict]) -> tuple[pd.DataFrame, list[str]]:
    rows_by_key, rows, notes, missing = runs_by_row(metrics), [], [], []
    for lambda_s in sorted(params.sweep.lambda_s):
        for dropout in sorted(params.sweep.dropout):
            runs = rows_by_key.get(grid_row(dropout, lambda_s), {})
            if not runs:
                missing.append(f"(lambda_s={lambda_s:g}, dropout={dropout:g})")
            paper = next(
                (values for (lam, d), values in PAPER_TABLE3.items() if math.isclose(lam, lambda_s) and math.isclose(d, dropout)),
                None,
            )
            rows.append({"lambda_s": lambda_s, "Dropout": dropout, **_over_seeds(runs, paper)})
    frame = pd.DataFrame(rows)
    if missing:
        notes.append(f"Not trained (empty rows): {', '.join(missing)}.")
    if frame["Overall"].notna().any():
        best = frame.loc[frame["Overall"].idxmax()]
        notes.append(f"Our best cell by mean: lambda_s={best['lambda_s']:g}, dropout={best['Dropout']:g} (overall "
                     f"{best['Overall']:.3f} +- {best['Overall sd']:.3f}); the paper's best: lambda_s=5 with dropout 0.1 "
                     "or 0.4 (0.798).")
    if frame["Overall (paper)"].isna().any():
        notes.append("Paper columns are empty where the paper has no such (lambda_s, dropout) cell.")
    notes.append(_seeds_note(params))
    return frame, notes


def table5_notes(params: Params) -> list[str]:
    settings = params.claims
    return [
        "Each claim compares two rows run by run with the same seed (same data order, same initial heads): "
        "Difference is the mean of (first row - second row) over the n seeds both ran, with its "
        f"{1 - settings.alpha:.0%} t-interval.",
        "Each claim has one primary metric, named in params.yaml (claims.primary) before the runs; only it gets a "
        "verdict. p-values are paired t-tests (difference from 0) and, for the claim of no effect, a paired TOST "
        f"(equivalence within +-{settings.equivalence_delta:g}), adjusted by Holm's method over all primary tests "
        f"(family-wise error {settings.alpha:g}; statsmodels).",
        "Verdicts: holds (the difference is resolved, with the paper's sign), reversed (resolved, against it), "
        f"equivalent within +-{settings.equivalence_delta:g} (the no-effect claim, shown), differs (its opposite), "
        "not resolved (neither: the seeds cannot tell).",
        f"Smallest detectable: the difference a paired t-test on these n seeds finds with power {settings.power:g} "
        f"at level {settings.alpha:g}, given the observed spread (statsmodels TTestPower): a claim whose "
        "difference is below it cannot be resolved at this scale.",
        "Dev scores: members, presets and the SMART radius were chosen on dev, so these are not test results.",
    ]


def plot_claims(frame: pd.DataFrame, destination: Path) -> None:
    """The forest plot of Table 5: each claim's paired difference per metric with its interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = frame[frame["n"] >= 1].iloc[::-1]
    figure, axis = plt.subplots(figsize=(10, 0.32 * len(shown) + 1.5))
    labels = [f"{claim[:60]}{'...' if len(claim) > 60 else ''} [{metric}]" for claim, metric in
              zip(shown["Claim"], shown["Metric"], strict=True)]
    y = np.arange(len(shown))
    for row, (_, claim) in zip(y, shown.iterrows(), strict=True):
        colour = {"holds": "tab:green", "reversed": "tab:red", "differs": "tab:red"}.get(
            claim["Verdict"], "tab:blue" if str(claim["Verdict"]).startswith("equivalent") else "tab:gray")
        if not math.isnan(claim["95% low"]):
            axis.plot([claim["95% low"], claim["95% high"]], [row, row], color=colour, linewidth=2)
        axis.plot([claim["Difference"]], [row], "o", color=colour)
    axis.axvline(0, color="black", linewidth=0.8)
    axis.set_yticks(y, labels, fontsize=8)
    axis.set_xlabel("paired difference on dev (first row - second row), 95 % interval over seeds")
    axis.set_title("Table 5: the paper's claims\n(green: holds; blue: equivalent; red: reversed or differs; "
                   "grey: not resolved or no verdict)",
                   fontsize=10)
    axis.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    with atomic_path(destination) as path:
        figure.savefig(path, dpi=110, format="png")
    plt.close(figure)


def table4(ensemble: dict | None) -> tuple[pd.DataFrame, list[str]]:
    rows, notes = [], []
    if ensemble is None:
        notes.append("metrics/ensemble.json not found: the ensemble was not built; our columns are empty.")
    for split in ("Dev", "Test"):
        paper = PAPER_TABLE4[split]
        ours = _ours(ensemble, split.lower())
        note = ""
        if split == "Test" and ensemble is not None and "test" not in ensemble:
            note = "test labels unavailable: predictions written to predictions/ensemble/ for external scoring"
        rows.append({"Split": split, **_side_by_side(ours, paper), "Ranking (paper)": paper["ranking"], "Note": note})
    if ensemble is not None:
        members = ", ".join(ensemble.get("members", []))
        notes.append(f"Members ({len(ensemble.get('members', []))}), best first: {members}. SST/QQP by majority vote (ties: highest-ranked member), STS by median.")
        gain = ensemble.get("gain")
        if gain:
            notes.append(f"Dev overall gain over the mean member {gain['over_mean_member']['overall']:+.3f}, over the best "
                         f"member {gain['over_best_member']['overall']:+.3f} (members were chosen on dev).")
    notes.append("Paper ranking is the CS224N leaderboard position; we have no leaderboard.")
    return pd.DataFrame(rows), notes


# -------------------------------------------------------------------------- report


def _relative(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target, start)).as_posix()


def _findings(analysis: dict | None) -> list[str]:
    if not analysis:
        return ["Analysis not available (metrics/analysis.json not found)."]
    lines = []
    recall = analysis.get("sst_recall_by_class") or {}
    if recall:
        text = ", ".join(f"{label} {value:.2f}" if value is not None else f"{label} n/a" for label, value in recall.items())
        lines.append(f"SST dev recall by class ({analysis.get('model', '')}): {text}. The paper found classes 1 and 3 predicted well and 0, 2, 4 poorly.")
    wrong = analysis.get("sst_most_confidently_wrong")
    if wrong:
        lines.append(
            f"Most confidently wrong SST example: \"{wrong['sentence']}\" gold {wrong['gold']} ({wrong['gold_name']}), "
            f"predicted {wrong['prediction']} ({wrong['prediction_name']}); rule: {wrong['rule']}. "
            "(Paper: \"This one is definitely one to skip, even for horror movie fanatics.\" gold 0, predicted 3.)"
        )
    worst = analysis.get("sts_worst_pair")
    if worst:
        lines.append(
            f"Worst STS pair: \"{worst['sentence1']}\" / \"{worst['sentence2']}\" gold {worst['gold']:.2f}, "
            f"predicted {worst['prediction']:.2f}. (Paper: \"it's also a matter of taste\" / \"it's definitely just a "
            "matter of preference\", gold 5, predicted 2.22.)"
        )
    scale = analysis.get("sts_scale")
    if scale and scale["prediction_p99"] < scale["gold_max"] - 1:
        lines.append(
            f"STS predictions are compressed: 99 % of them lie below {scale['prediction_p99']:.2f} while gold "
            f"reaches {scale['gold_max']:.1f}, and pairs with gold 4-5 get {scale['mean_prediction_gold_4_to_5']:.2f} on "
            "average (Figure 4, right). Pearson measures the ranking, not the scale, so the score does not show it."
        )
    best = analysis.get("fig3_best")
    if best:
        lines.append(f"Figure 3: best mean SST dev accuracy over seeds {best['sst_dev_accuracy']:.3f} at lambda_s={best['lambda_s']:g}, epoch {best['epoch']} (paper: lambda_s=5 best; Table 5 says whether the difference is resolved).")
    return lines


def _runtimes(metrics: dict[str, dict]) -> pd.DataFrame:
    rows = [
        {"Model": name, "Kind": record.get("kind", ""), "Train seconds": float(record["train_seconds"])}
        for name, record in sorted(metrics.items())
        if record.get("train_seconds") is not None
    ]
    return pd.DataFrame(rows, columns=["Model", "Kind", "Train seconds"])


def build_report(params: Params, layout: Layout = Layout()) -> Path:
    """Write Tables 2-5 (``table{2,3,4,5}_*.{md,csv}`` in the layout's tables) and the report."""
    tables_dir, plots_dir, report_path = layout.tables, layout.plots, layout.report
    metrics = load_model_metrics(params, layout)
    ensemble = read_json(layout.ensemble_metrics) if layout.ensemble_metrics.exists() else None
    analysis = read_json(layout.analysis_metrics) if layout.analysis_metrics.exists() else None
    common = caveats(params, layout.data_metrics)

    frame2, notes2 = table2(params, metrics)
    write_table(frame2, tables_dir / TABLE2, "Table 2: dev scores of the training methods (ours vs paper)", [*notes2, *common])
    frame3, notes3 = table3(params, metrics)
    write_table(frame3, tables_dir / TABLE3, "Table 3: Concat+SMART+Pretrain dev scores per lambda_s and dropout (ours vs paper)", [*notes3, *common])
    frame4, notes4 = table4(ensemble)
    write_table(frame4, tables_dir / TABLE4, "Table 4: ensemble dev/test scores (ours vs paper)", [*notes4, *common])
    frame5 = table5(params, metrics, ensemble)
    write_table(frame5, tables_dir / TABLE5, "Table 5: the paper's claims, tested seed by seed", table5_notes(params))
    plot_claims(frame5, plots_dir / FOREST_PNG)

    lines = [
        "# SMART fine-tuning reproduction: report",
        "",
        "Multitask sentence model on SST-5 (accuracy), QQP (accuracy) and STS-B (Pearson); "
        "overall = (SST + QQP + (STS + 1) / 2) / 3.",
        "",
        "## Caveats",
        "",
        *[f"- {note}" for note in common],
        "",
    ]
    table1 = tables_dir / f"{TABLE1}.md"
    if table1.exists():
        lines += ["## Data", "", table1.read_text().strip(), ""]
    lines += ["## Results", ""]
    for stem in (TABLE2, TABLE3, TABLE4, TABLE5):
        lines += [(tables_dir / f"{stem}.md").read_text().strip(), ""]
    lines += ["## Figures", ""]
    for caption, file_name in FIGURES:
        path = plots_dir / file_name
        if path.exists():
            lines += [f"![{caption}]({_relative(path, report_path.parent)})", ""]
        else:
            lines += [f"- {caption}: not produced ({file_name} missing)", ""]
    lines += ["", "## Analysis (Section 6)", "", *[f"- {line}" for line in _findings(analysis)], ""]
    runtimes = _runtimes(metrics)
    if not runtimes.empty:
        lines += ["## Training time per model", "", runtimes.to_markdown(index=False, floatfmt=".1f"), ""]
    with atomic_path(report_path) as path:
        path.write_text("\n".join(lines))
    return report_path
