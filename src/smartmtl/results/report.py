"""Tables 2-4 beside the paper's numbers (smartmtl.results.paper), Table 5's claims, the
start and end of each row's training, and the one-page ``metrics/report.md``.
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
from smartmtl.results.outputs import RunRecord, load_model_metrics
from smartmtl.results.paper import PAPER_TABLE2, PAPER_TABLE3, PAPER_TABLE4
from smartmtl.tasks import TASKS
from smartmtl.variants import grid_row, smart_pretrain_row

COLUMN = {"sst": "SST", "qqp": "QQP", "sts": "STS", "overall": "Overall"}

TABLE2 = "table2_methods"
TABLE2_START_END = "table2_start_end"
TABLE3 = "table3_grid"
TABLE4 = "table4_ensemble"
TABLE5 = "table5_claims"
FOREST_PNG = "table5_claims.png"

FIGURES = [
    ("Figure 3: SST dev accuracy per epoch for each lambda_s", FIG3_PNG),
    ("Figure 4 (left): SST dev confusion matrix", FIG4_CONFUSION_PNG),
    ("Figure 4 (right): STS dev prediction vs gold", FIG4_SCATTER_PNG),
    ("Training curves", CURVES_PNG),
    ("Table 5 as a forest plot: paired differences over seeds with 95 % intervals, and the paper's effect", FOREST_PNG),
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
    return [scale_note(params), backbone_note, data_note, settings_note, smart_note]


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


def table2(params: Params, metrics: dict[str, RunRecord]) -> tuple[pd.DataFrame, list[str]]:
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


def table3(params: Params, metrics: dict[str, RunRecord]) -> tuple[pd.DataFrame, list[str]]:
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


def scale_note(params: Params) -> str:
    """What every table and verdict here is about: this backbone at this preset's scale."""
    return (f"At this scale: every number and verdict here is about this backbone ({params.model.backbone}) "
            f"trained as preset '{params.preset}' trains it, not about the paper's BERT-base at its scale.")


def table5_notes(params: Params) -> list[str]:
    settings = params.claims
    return [
        scale_note(params),
        "Each claim compares two rows run by run with the same seed (same data order, same initial heads): "
        "Difference is the mean of (first row - second row) over the n seeds both ran, each run's final dev score "
        f"(its last epoch), with its {1 - settings.alpha:.0%} t-interval.",
        "Paper's effect: the same difference in the paper's Table 2 (one run a row), where the paper has both rows; "
        "blank where it gives no number, and then a claim is tested against zero alone.",
        "Each claim has one primary metric, named in params.yaml (claims.primary) before the runs; only it gets a "
        "verdict. p difference: paired t-test of the difference from 0 (two-sided). p smaller than paper's: "
        "one-sided paired t-test of 'ours is smaller than the paper's effect' (small telescopes, Simonsohn 2015, "
        "with the paper's own effect as the reference: it reports no spread from which a d33 could be computed). "
        f"p equivalence: for the claim of no effect, a paired TOST within +-{settings.equivalence_delta:g}. All "
        f"are adjusted by Holm's method over every primary test (family-wise error {settings.alpha:g}; statsmodels).",
        "Verdicts: holds (the difference from 0 is resolved with the paper's sign, and the paper's effect is not "
        "rejected); smaller than the paper's (the paper's effect is rejected; '(positive)' when a smaller positive "
        "effect is resolved, '(no effect resolved)' when not); reversed (resolved against the paper's sign); "
        f"equivalent within +-{settings.equivalence_delta:g} (the no-effect claim, shown); differs (its opposite); "
        "not resolved (the seeds cannot tell).",
        f"Smallest detectable: the difference a paired t-test on these n seeds finds with power {settings.power:g} "
        f"at level {settings.alpha:g}, given the observed spread (statsmodels TTestPower): a claim whose "
        "difference is below it cannot be resolved at this scale.",
        "The paper's effect is one run's difference and carries a seed's noise of its own: the 95% interval of ours "
        "shows how far one seed's difference can stray.",
        "Dev scores: members, presets and the SMART radius were chosen on dev, so these are not test results.",
    ]


VERDICT_COLOURS = {"holds": "tab:green", "reversed": "tab:red", "differs": "tab:red"}


def _verdict_colour(verdict: str) -> str:
    if verdict.startswith("smaller than the paper's"):
        return "tab:orange"
    if verdict.startswith("equivalent"):
        return "tab:blue"
    return VERDICT_COLOURS.get(verdict, "tab:gray")


def plot_claims(frame: pd.DataFrame, destination: Path) -> None:
    """The forest plot of Table 5: each claim's paired difference per metric with its interval,
    and the paper's effect on each primary row."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    shown = frame[frame["n"] >= 1].iloc[::-1]
    figure, axis = plt.subplots(figsize=(12, 0.45 * len(shown) + 2.4), layout="constrained")
    labels = ["\n".join(textwrap.wrap(f"{claim} [{metric}]", 80, max_lines=2, placeholder=f"... [{metric}]"))
              for claim, metric in zip(shown["Claim"], shown["Metric"], strict=True)]
    y = np.arange(len(shown))
    for row, (_, claim) in zip(y, shown.iterrows(), strict=True):
        colour = _verdict_colour(str(claim["Verdict"]))
        if not math.isnan(claim["95% low"]):
            axis.plot([claim["95% low"], claim["95% high"]], [row, row], color=colour, linewidth=2, zorder=2)
        axis.plot([claim["Difference"]], [row], "o", color=colour, zorder=3)
        if claim["Primary"] == "yes" and not math.isnan(claim["Paper's effect"]):
            axis.plot([claim["Paper's effect"]], [row], "D", markerfacecolor="none", markeredgecolor="black",
                      markersize=8, zorder=1)
    axis.axvline(0, color="black", linewidth=0.8)
    axis.set_yticks(y, labels, fontsize=7.5)
    axis.set_xlabel("\n".join(textwrap.wrap(
        "paired difference on dev (first row - second row), mean and 95 % interval over seeds", 70)))
    axis.set_title("\n".join([
        "Table 5: the paper's claims at this scale, seed by seed",
        *textwrap.wrap("green: holds; orange: smaller than the paper's; blue: equivalent; red: reversed or differs; "
                       "grey: not resolved or no verdict", 80)]), fontsize=10)
    axis.legend(handles=[Line2D([], [], marker="D", linestyle="none", markerfacecolor="none",
                                markeredgecolor="black", label="paper's effect"),
                         Line2D([], [], marker="o", color="tab:gray", label="ours (95 % interval)")],
                loc="lower right", fontsize=8)
    axis.grid(axis="x", alpha=0.3)
    with atomic_path(destination) as path:
        figure.savefig(path, dpi=110, format="png")
    plt.close(figure)


# ------------------------------------------------------------------ start and end


def start_and_end(params: Params, metrics: dict[str, RunRecord]) -> tuple[pd.DataFrame, list[str]]:
    """Per Table 2 row and task: the mean dev score before the first optimizer step (the run's
    ``dev_start``), the mean final dev score, and the mean change (end - start) over the runs
    that have both, so that a reader sees where training moved each score. Runs written
    before runs recorded ``dev_start`` leave the start and change blank."""
    starts, ends = runs_by_row(metrics, "dev_start"), runs_by_row(metrics)
    rows, defined = [], params.table2_rows()
    for entry in PAPER_TABLE2:
        key = entry["model"] if entry["model"] is not None else smart_pretrain_row(params)
        if entry["model"] is not None and entry["model"] not in defined:
            continue
        start, end = starts.get(key, {}), ends.get(key, {})
        row: dict = {"Model": entry["Model"], "Our row": key, "n": len(end)}
        for metric in METRICS:
            paired = [end[seed][metric] - start[seed][metric] for seed in sorted(set(start) & set(end))
                      if start[seed].get(metric) is not None and end[seed].get(metric) is not None]
            row[f"{COLUMN[metric]} start"] = spread(start, metric)[0]
            row[f"{COLUMN[metric]} end"] = spread(end, metric)[0]
            row[f"{COLUMN[metric]} change"] = float(np.mean(paired)) if paired else math.nan
        rows.append(row)
    notes = [
        scale_note(params),
        "Start: each task's dev score right before the first optimizer step that trains it, its head as "
        f"initialised (from {HEAD_STARTS[params.train.head_init]}): for simultaneous rows the run's first step; "
        "for sequential rows the moment that task's turn begins, after the tasks before it trained the encoder "
        "(so their overall start combines scores taken at different steps). End: the final dev score (last "
        "epoch); change: the mean of (end - start) over the runs that have both; means over the row's n runs.",
    ]
    if any(not starts.get(row["Our row"]) for row in rows):
        notes.append("Blank start and change: runs written before runs recorded their start (no dev_start).")
    return pd.DataFrame(rows), notes


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


def _blank_missing(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its missing numbers (no run, no paper number, no test) as blank cells,
    which a reader takes for "none", not as "nan", which reads like a computed result."""
    return frame.astype(object).where(frame.notna(), None)


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
    control = analysis.get("fig3_shapes", {}).get("0")
    if control:
        loss = (f", while its training loss fell from {control['train_loss_first']:.2f} to "
                f"{control['train_loss_last']:.2f}" if control["train_loss_first"] is not None else "")
        if not control["overfits"]:
            verdict = "it did not overfit in that sense, so Figure 3 does not test SMART against overfitting here"
        elif control["peak_epoch"] == 0:
            verdict = ("it overfits from the first epoch: the runs fit their training rows without raising dev "
                       "accuracy above where the heads started")
        else:
            verdict = "it overfits: dev accuracy rose, then fell as the training loss kept falling"
        lines.append(f"Figure 3's control (lambda_s 0, mean of {control['seeds']} seeds): SST dev accuracy peaked at "
                     f"epoch {control['peak_epoch']} ({control['peak']:.3f}; epoch 0 is the start, before any step) "
                     f"and ended at epoch {control['last_epoch']} ({control['last']:.3f}){loss}: {verdict}.")
    best = analysis.get("fig3_best")
    if best:
        lines.append(f"Figure 3: best mean SST dev accuracy over seeds {best['sst_dev_accuracy']:.3f} at lambda_s={best['lambda_s']:g}, epoch {best['epoch']} (paper: lambda_s=5 best; Table 5 says whether the difference is resolved).")
    return lines


def _runtimes(metrics: dict[str, RunRecord]) -> pd.DataFrame:
    rows = [
        {"Model": name, "Kind": record.kind, "Train seconds": record.train_seconds}
        for name, record in sorted(metrics.items())
        if record.train_seconds is not None
    ]
    return pd.DataFrame(rows, columns=["Model", "Kind", "Train seconds"])


def build_report(params: Params, layout: Layout = Layout()) -> Path:
    """Write Tables 2-5 (``table{2,3,4,5}_*.{md,csv}`` in the layout's tables, with Table 2's start and
    end) and the report."""
    tables_dir, plots_dir, report_path = layout.tables, layout.plots, layout.report
    metrics = load_model_metrics(params, layout)
    ensemble = read_json(layout.ensemble_metrics) if layout.ensemble_metrics.exists() else None
    analysis = read_json(layout.analysis_metrics) if layout.analysis_metrics.exists() else None
    common = caveats(params, layout.data_metrics)

    frame2, notes2 = table2(params, metrics)
    write_table(_blank_missing(frame2), tables_dir / TABLE2, "Table 2: dev scores of the training methods (ours at this scale vs paper)",
                [*notes2, *common])
    frame_moved, notes_moved = start_and_end(params, metrics)
    write_table(_blank_missing(frame_moved), tables_dir / TABLE2_START_END,
                "Table 2, start and end: where training moved each dev score (at this scale)", notes_moved)
    frame3, notes3 = table3(params, metrics)
    write_table(_blank_missing(frame3), tables_dir / TABLE3, "Table 3: Concat+SMART+Pretrain dev scores per lambda_s and dropout (ours at this scale vs paper)", [*notes3, *common])
    frame4, notes4 = table4(ensemble)
    write_table(_blank_missing(frame4), tables_dir / TABLE4, "Table 4: ensemble dev/test scores (ours at this scale vs paper)", [*notes4, *common])
    frame5 = table5(params, metrics, ensemble)
    write_table(_blank_missing(frame5), tables_dir / TABLE5, "Table 5: the paper's claims, tested seed by seed against zero and against the paper's effect, at this scale", table5_notes(params))
    plot_claims(frame5, plots_dir / FOREST_PNG)

    lines = [
        "# SMART fine-tuning reproduction: report",
        "",
        "Multitask sentence model on SST-5 (accuracy), QQP (accuracy) and STS-B (Pearson); "
        "overall = (SST + QQP + (STS + 1) / 2) / 3.",
        "",
        scale_note(params),
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
    for stem in (TABLE2, TABLE2_START_END, TABLE3, TABLE4, TABLE5):
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
