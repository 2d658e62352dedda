"""Report: Tables 2-5 beside the paper, means over seeds, the Table 2 grid mapping, missing
models, the claims' paired intervals, report.md links."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from smartmtl import presets
from smartmtl.config import parse_params
from smartmtl.layout import Layout
from smartmtl.results.claims import table5
from smartmtl.results.outputs import load_model_metrics
from smartmtl.results.paper import PAPER_TABLE2, PAPER_TABLE3
from smartmtl.results.report import build_report, caveats, table2

VARIANTS = {
    "baseline": {"label": "Baseline", "head": "separate", "schedule": "sequential"},
    "cos_sim": {"label": "Cos-Sim", "head": "cosine", "schedule": "sequential"},
    "concat": {"label": "Concat", "head": "concat", "schedule": "sequential"},
    "concat_star": {"label": "Concat*", "head": "concat", "schedule": "simultaneous"},
}
SMART_VARIANTS = {
    "concat_smart": {"label": "Concat+SMART", "head": "concat", "schedule": "sequential"},
    "concat_smart_star": {"label": "Concat+SMART*", "head": "concat", "schedule": "simultaneous"},
    "concat_smart_surgery_pretrain": {"label": "Concat+SMART+Surgery+Pretrain", "head": "concat", "schedule": "simultaneous", "surgery": True, "pretrained": True},
}


def make_params(dropout: float = 0.3):
    return parse_params(
        {
            "preset": "laptop",
            "model": {"dropout": dropout},
            "smart": {"lambda_s": 1.0},
            "sweep": {"seeds": [0, 1, 2], "dropout": [0.1, 0.3, 0.7], "lambda_s": [1.0, 5.0],
                      "sst_lambda_s": [1.0, 5.0]},
            "variants": VARIANTS,
            "smart_variants": SMART_VARIANTS,
            "train": {"epochs": 2, "batch_size": 16, "lr": 2e-5},
        }
    )


def scores(value: float) -> dict:
    return {"sst": value, "qqp": value + 0.1, "sts": value + 0.2, "overall": value + 0.05}


def write_metrics(root: Path, row: str, kind: str, dev: dict, config: dict | None = None, seconds=10.0,
                  seed: int = 0, start: dict | None = None) -> None:
    folder = root / "metrics" / "finetune"
    folder.mkdir(parents=True, exist_ok=True)
    # Scores only, in the run's file: what the run is comes from params.yaml (smartmtl.variants).
    record = {"dev": dev, "train_seconds": seconds} | ({"dev_start": start} if start else {})
    (folder / f"{row}-s{seed}.json").write_text(json.dumps(record))


@pytest.fixture()
def root(tmp_path):
    # Three seeds a row, 0.01 apart: mean = value + 0.01, sd = 0.01.
    rows = ["baseline", "concat", "concat_smart", "concat_smart_star", "concat_star", "concat_smart_surgery_pretrain"]
    for index, name in enumerate(rows):
        for seed in (0, 1, 2):
            # Concat's runs recorded their start, 0.1 below their end; the others are older runs without one.
            start = scores(0.1 * index + 0.01 * seed - 0.1) if name == "concat" else None
            write_metrics(tmp_path, name, "table2", scores(0.1 * index + 0.01 * seed), seed=seed, start=start)
    # cos_sim is missing on purpose; one seed of a run no longer in sweep.seeds must be ignored.
    write_metrics(tmp_path, "concat", "table2", scores(0.9), seed=7)
    for dropout in (0.1, 0.3, 0.7):
        for lambda_s in (1.0, 5.0):
            if (dropout, lambda_s) == (0.7, 5.0):
                continue  # one grid cell missing
            write_metrics(tmp_path, f"grid-d{dropout}-l{lambda_s}", "grid", scores(dropout + lambda_s / 100), {"dropout": dropout, "lambda_s": lambda_s})
    # Figure 3's runs: lambda_s 5 above lambda_s 1 by 0.02 +- 0.01 over three seeds.
    for seed, gap in zip((0, 1, 2), (0.01, 0.02, 0.03)):
        write_metrics(tmp_path, "sst-l1.0", "sst_lambda", {"sst": 0.4}, {"lambda_s": 1.0}, seed=seed)
        write_metrics(tmp_path, "sst-l5.0", "sst_lambda", {"sst": 0.4 + gap}, {"lambda_s": 5.0}, seed=seed)
    best_member = {"sst": 0.49, "qqp": 0.81, "sts": 0.84, "overall": 0.73}
    (tmp_path / "metrics" / "ensemble.json").write_text(
        json.dumps({"members": ["grid-d0.3-l1.0-s0"], "dev": {"sst": 0.5, "qqp": 0.8, "sts": 0.85, "overall": 0.74},
                    "members_dev": {"grid-d0.3-l1.0-s0": best_member}})
    )
    (tmp_path / "metrics" / "analysis.json").write_text(
        json.dumps({"model": "ensemble", "sts_worst_pair": {"sentence1": "a cat", "sentence2": "a dog", "gold": 5.0, "prediction": 2.2}})
    )
    (tmp_path / "metrics" / "tables").mkdir(parents=True)
    (tmp_path / "metrics" / "tables" / "table1_data.md").write_text("### Table 1: data\n\n| Task | Train |\n|---|---|\n| SST | 8544 |\n")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "fig3_lambda_sst.png").write_bytes(b"png")
    (tmp_path / "plots" / "fig4_sts_scatter.png").write_bytes(b"png")
    build_report(make_params(), Layout(tmp_path))
    return tmp_path


def table(root: Path, stem: str) -> pd.DataFrame:
    return pd.read_csv(root / "metrics" / "tables" / f"{stem}.csv")


def test_table2_has_paper_beside_ours_and_maps_pretrain_row_to_grid_cell(root):
    frame = table(root, "table2_methods").set_index("Model")
    assert list(frame.index) == [row["Model"] for row in PAPER_TABLE2]
    for column in ("SST", "SST (paper)", "QQP", "QQP (paper)", "STS", "STS (paper)", "Overall", "Overall (paper)", "Training Method"):
        assert column in frame.columns
    assert frame.loc["Concat", "SST (paper)"] == 0.494
    # The mean and standard deviation over the three seeds (seed 7 is not in sweep.seeds).
    assert frame.loc["Concat", "SST"] == pytest.approx(0.11)
    assert frame.loc["Concat", "SST sd"] == pytest.approx(0.01)
    assert frame.loc["Concat", "n"] == 3
    assert math.isnan(frame.loc["Concat* (no SMART)", "SST (paper)"])  # our control: not in the paper
    # params: dropout 0.3, lambda_s 1 -> grid cell grid-d0.3-l1.0 whose dev sst = 0.3 + 0.01, one seed.
    row = frame.loc["Concat+SMART+Pretrain"]
    assert row["SST"] == pytest.approx(0.31)
    assert row["Overall"] == pytest.approx(0.36)
    assert row["n"] == 1 and math.isnan(row["SST sd"])
    assert row["Overall (paper)"] == 0.791
    assert "dropout=0.3, lambda_s=1" in row["Our row"]


def test_table2_and_the_claims_read_the_pretrain_rows_own_runs_off_the_grid(root):
    params = make_params(dropout=0.2)  # not in sweep.dropout
    for seed in (0, 1, 2):
        write_metrics(root, "table2-cell", "table2", scores(0.5 + 0.01 * seed), seed=seed)
    metrics = load_model_metrics(params, Layout(root))
    row = table2(params, metrics)[0].set_index("Model").loc["Concat+SMART+Pretrain"]
    assert row["Our row"] == "table2-cell (dropout=0.2, lambda_s=1)"
    assert row["SST"] == pytest.approx(0.51) and row["n"] == 3
    claims = table5(params, metrics)
    assert (claims[claims["Claim"].str.startswith("QQP pretraining")]["n"] == 3).all()  # the grid cell has 1 seed


def test_table2_missing_model_is_nan_with_note(root):
    frame = table(root, "table2_methods").set_index("Model")
    assert math.isnan(frame.loc["Cos-Sim", "SST"])
    assert frame.loc["Cos-Sim", "SST (paper)"] == 0.507
    markdown = (root / "metrics" / "tables" / "table2_methods.md").read_text()
    assert "Cos-Sim: no run of cos_sim has dev metrics" in markdown


def test_table_notes_state_differences(root):
    markdown = (root / "metrics" / "tables" / "table3_grid.md").read_text()
    assert "all-MiniLM-L6-v2" in markdown and "BERT-base" in markdown
    assert "Quora" in markdown and "283,010" in markdown
    assert "Preset 'laptop'" in markdown and "2 epoch(s)" in markdown and "batch size 16" in markdown
    assert f"{make_params().model.pooling} pooling" in markdown


def test_settings_note_reads_the_paper_side_from_the_paper_preset(root):
    markdown = (root / "metrics" / "tables" / "table2_methods.md").read_text()
    ours, paper = markdown.split("Preset 'laptop': ")[1].split("(the paper, as the 'paper' preset: ")
    paper_params = parse_params(presets.render("paper"))
    assert f"batch size {paper_params.train.batch_size}," in paper and f"lr {paper_params.train.lr:g}," in paper
    assert "train_limit none (all data)" in paper and "dropout 0.3 (grid 0.1, 0.2, 0.3, 0.4, 0.5)" in paper
    assert "batch size 16," in ours and "dropout 0.3 (grid 0.1, 0.3, 0.7)" in ours


def test_smart_note_names_the_units_of_the_radius_and_the_teachers_floor(tmp_path):
    token, absolute = (parse_params({"preset": "laptop", "smart": {"scale": scale, "epsilon": 0.02,
                                                                  "teacher_beta_min": 0.995}})
                       for scale in ("token", "absolute"))
    token_note, absolute_note = (caveats(params, tmp_path / "data.json")[-1] for params in (token, absolute))
    assert "radius 0.02" in token_note and "fractions of each token's norm" in token_note
    assert "absolute units" in absolute_note and "token's norm" not in absolute_note
    assert "momentum at least 0.995" in token_note


def test_the_data_note_counts_the_qqp_pairs_the_prepare_stage_kept(tmp_path):
    """From metrics/data.json, which the report stage declares, and not from the prepared data,
    which a workspace may hold from an earlier run (it once said 4,000 pairs where 8,000 trained)."""
    params = parse_params({"preset": "laptop"})
    summary = tmp_path / "data.json"
    summary.write_text(json.dumps({"tasks": {"qqp": {"train": {"rows": 7996}}}}))
    assert any("QQP train here is 7,996 pairs vs the paper's 283,010" in note for note in caveats(params, summary))
    unknown = caveats(params, tmp_path / "missing.json")
    assert any("QQP train here is a ~27k-pair subset" in note for note in unknown)


def test_table3_grid_with_paper_cells(root):
    frame = table(root, "table3_grid")
    assert len(frame) == 6
    cell = frame[(frame["lambda_s"] == 5.0) & (frame["Dropout"] == 0.1)].iloc[0]
    assert cell["SST"] == pytest.approx(0.15)
    assert cell["SST (paper)"] == PAPER_TABLE3[(5.0, 0.1)]["sst"]
    odd = frame[(frame["lambda_s"] == 1.0) & (frame["Dropout"] == 0.7)].iloc[0]
    assert odd["SST"] == pytest.approx(0.71) and math.isnan(odd["SST (paper)"])  # no paper cell
    missing = frame[(frame["lambda_s"] == 5.0) & (frame["Dropout"] == 0.7)].iloc[0]
    assert math.isnan(missing["SST"])
    assert "Not trained (empty rows): (lambda_s=5, dropout=0.7)" in (root / "metrics" / "tables" / "table3_grid.md").read_text()


def test_table4_dev_beside_paper_and_unlabelled_test_note(root):
    frame = table(root, "table4_ensemble").set_index("Split")
    assert frame.loc["Dev", "Overall"] == 0.74 and frame.loc["Dev", "Overall (paper)"] == 0.8
    assert frame.loc["Test", "SST (paper)"] == 0.54 and math.isnan(frame.loc["Test", "SST"])
    assert "predictions/ensemble" in frame.loc["Test", "Note"]


def test_report_inlines_tables_and_links_existing_figures(root):
    report = (root / "metrics" / "report.md").read_text()
    assert "### Table 1: data" in report
    for title in ("Table 2:", "Table 3:", "Table 4:", "Table 5:"):
        assert title in report
    assert "](../plots/fig3_lambda_sst.png)" in report
    assert "](../plots/fig4_sts_scatter.png)" in report
    assert "](../plots/fig4_sst_confusion.png)" not in report  # not produced: no dead link
    assert "fig4_sst_confusion.png missing" in report
    assert "a cat" in report and "a dog" in report
    assert "| grid-d0.3-l1.0-s0" in report  # runtime table
    assert "](../plots/table5_claims.png)" in report


def test_table5_pairs_runs_by_seed_and_gives_verdicts(root):
    frame = table(root, "table5_claims")
    claim = frame[frame["Claim"].str.startswith("SMART helps in sequential") & (frame["Metric"] == "sst")].iloc[0]
    # concat_smart (index 2) minus concat (index 1): 0.1 at every seed, so a zero-width interval
    # and no spread for a test to stand on.
    assert claim["n"] == 3 and claim["Difference"] == pytest.approx(0.1)
    assert claim["95% low"] == pytest.approx(0.1) and claim["Verdict"].startswith("not resolved (no spread")
    reversed_ = frame[frame["Claim"].str.startswith("Simultaneous beats") & (frame["Metric"] == "overall")].iloc[0]
    assert reversed_["Difference"] == pytest.approx(0.1)  # index 3 - index 2
    lam = frame[frame["Claim"].str.startswith("lambda_s 5 beats 1")].iloc[0]
    # differences 0.01, 0.02, 0.03: mean 0.02, sd 0.01, t(0.975, 2) = 4.303 -> half-width 0.0248
    assert lam["Difference"] == pytest.approx(0.02)
    assert lam["95% high"] - lam["Difference"] == pytest.approx(4.3027 * 0.01 / 3**0.5, rel=1e-3)
    # t = 0.02 / (0.01 / sqrt 3) on 2 degrees of freedom: p = 0.074 before Holm's correction.
    assert lam["Primary"] == "yes" and lam["p difference (Holm)"] >= 0.074
    assert lam["Verdict"] == "not resolved"
    pretrain = frame[frame["Claim"].str.startswith("QQP pretraining") & (frame["Primary"] == "yes")].iloc[0]
    assert pretrain["n"] == 1 and pretrain["Verdict"].startswith("not resolved (fewer than 2 seeds)")
    ensemble = frame[frame["Claim"].str.startswith("The ensemble") & (frame["Metric"] == "overall")].iloc[0]
    assert ensemble["Difference"] == pytest.approx(0.01)


def test_start_and_end_per_row_and_task_leave_runs_without_a_start_blank(root):
    frame = table(root, "table2_start_end").set_index("Model")
    concat = frame.loc["Concat"]
    assert concat["n"] == 3
    assert concat["SST start"] == pytest.approx(0.01) and concat["SST end"] == pytest.approx(0.11)
    assert concat["SST change"] == pytest.approx(0.1) and concat["STS change"] == pytest.approx(0.1)
    baseline = frame.loc["Baseline"]  # older runs: no dev_start
    assert baseline["SST end"] == pytest.approx(0.01)
    assert math.isnan(baseline["SST start"]) and math.isnan(baseline["SST change"])
    markdown = (root / "metrics" / "tables" / "table2_start_end.md").read_text()
    assert "nan" not in markdown and "no dev_start" in markdown


def test_every_table_and_the_report_say_at_this_scale(root):
    for stem in ("table2_methods", "table2_start_end", "table3_grid", "table4_ensemble", "table5_claims"):
        assert "at this scale" in (root / "metrics" / "tables" / f"{stem}.md").read_text().lower()
    report = (root / "metrics" / "report.md").read_text()
    assert "At this scale" in report and "Table 2, start and end" in report


def test_findings_name_compressed_sts_predictions_only_when_they_are():
    from smartmtl.results.report import _findings

    compressed = {"gold_max": 5.0, "prediction_p99": 2.8, "mean_prediction_gold_4_to_5": 2.3}
    assert any("below 2.80 while gold reaches 5.0" in line for line in _findings({"sts_scale": compressed}))
    full = {"gold_max": 5.0, "prediction_p99": 4.6, "mean_prediction_gold_4_to_5": 4.1}
    assert not any("compressed" in line for line in _findings({"sts_scale": full}))


def test_findings_say_whether_figure3s_control_overfits():
    from smartmtl.results.report import _findings

    shape = {"seeds": 4, "peak_epoch": 2, "peak": 0.405, "last_epoch": 12, "last": 0.371,
             "train_loss_first": 1.24, "train_loss_last": 0.25, "overfits": True}
    line = next(line for line in _findings({"fig3_shapes": {"0": shape}}) if "control" in line)
    assert "peaked at epoch 2 (0.405" in line and "ended at epoch 12 (0.371)" in line and "rose, then fell" in line
    at_start = {**shape, "peak_epoch": 0}
    line = next(line for line in _findings({"fig3_shapes": {"0": at_start}}) if "control" in line)
    assert "from the first epoch" in line and "without raising dev accuracy" in line
    flat = {**shape, "peak_epoch": 12, "peak": 0.371, "overfits": False}
    assert "did not overfit" in next(line for line in _findings({"fig3_shapes": {"0": flat}}) if "control" in line)
