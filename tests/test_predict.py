"""`smartmtl predict`: labels by the task table's rules with their probabilities, an ensemble by its
combining rules, any number of sentences or a file of them, and a refusal for a model whose head
for a task was never trained."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_params
from typer.testing import CliRunner

from smartmtl.app.cli import app
from smartmtl.app.predict import PredictError, predict_text, read_rows, saved_params
from smartmtl.model.heads import build_model
from smartmtl.train.runner import save_run
from smartmtl.variants import table2_spec


def fake_run(models: Path, name: str, schedule: str) -> None:
    folder = models / name
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"")  # never loaded: the check comes first
    (folder / "run.json").write_text(json.dumps({"spec": {"name": name, "schedule": schedule}, "params": {}}))


@pytest.fixture()
def models(tmp_path) -> Path:
    fake_run(tmp_path, "pretrain", "pretrain")
    fake_run(tmp_path, "sst-l1.0-s0", "sst_only")
    fake_run(tmp_path, "concat-s0", "sequential")
    return tmp_path


def test_the_qqp_pretraining_has_no_sentiment_head(models):
    with pytest.raises(PredictError, match=r"pretrain never trained its sst head; models that trained sst: "
                                           r"concat-s0, sst-l1.0-s0$"):
        predict_text("pretrain", ["a good film"], models_dir=models)


def test_an_sst_only_run_cannot_compare_two_sentences(models):
    with pytest.raises(PredictError, match=r"sst-l1.0-s0 never trained its qqp, sts head; .*: concat-s0$"):
        predict_text("sst-l1.0-s0", ["a good film", "a fine film"], models_dir=models)


def saved_run(models: Path, name: str, seed: int) -> None:
    """An untrained concat model saved as the runner saves one (weights and run.json)."""
    params = tiny_params()
    spec = table2_spec(params, "concat", seed)
    torch.manual_seed(seed)  # the heads' initial weights differ between members
    save_run(build_model(spec, params), spec, params, models / name)


def test_a_pair_gets_labels_by_the_task_rules_and_an_ensemble_combines_its_members(tmp_path):
    for seed in (0, 1, 2):
        saved_run(tmp_path, f"m{seed}", seed)
    pair = ["A fine film.", "A good movie."]
    members = [predict_text(f"m{seed}", pair, models_dir=tmp_path) for seed in (0, 1, 2)]
    for rows in members:
        assert [row.texts for row in rows] == [("A fine film.",), ("A good movie.",), ("A fine film.", "A good movie.")]
        for row in rows[:2]:
            assert row.sentiment in range(5) and row.paraphrase is None
            assert row.sentiment == int(np.argmax(row.sentiment_probabilities))
            assert sum(row.sentiment_probabilities) == pytest.approx(1, abs=1e-6)
        assert rows[2].sentiment is None
        assert rows[2].paraphrase == int(rows[2].paraphrase_probability > 0.5)
    ensemble_file = tmp_path / "ensemble.json"
    ensemble_file.write_text(json.dumps({"members": ["m0", "m1", "m2"]}))
    ensemble = predict_text("ensemble", pair, models_dir=tmp_path, ensemble_metrics=ensemble_file)
    pairs = [rows[2] for rows in members]
    assert ensemble[2].similarity == pytest.approx(np.median([m.similarity for m in pairs]))
    assert ensemble[2].paraphrase_probability == pytest.approx(np.median([m.paraphrase_probability for m in pairs]))
    assert ensemble[2].paraphrase == int(sum(m.paraphrase for m in pairs) >= 2)  # the majority of three
    # The class probabilities shown for an ensemble are its members' mean.
    np.testing.assert_allclose(ensemble[0].sentiment_probabilities,
                               np.mean([rows[0].sentiment_probabilities for rows in members], axis=0), atol=1e-6)


def test_any_number_of_sentences_each_gets_its_sentiment(tmp_path):
    saved_run(tmp_path, "m0", 0)
    sentences = ["A fine film.", "A dull one.", "Three is no longer refused.", "Nor four."]
    rows = predict_text("m0", sentences, models_dir=tmp_path)
    assert [row.texts for row in rows] == [(sentence,) for sentence in sentences]
    assert all(row.sentiment_probabilities is not None and row.similarity is None for row in rows)


def test_a_file_of_sentences_and_pairs_is_read_with_its_line_numbers(tmp_path):
    path = tmp_path / "input.txt"
    path.write_text("A fine film.\n\nHow do I learn Python?\tWhat is the best way to learn Python?\n  \nA dull one.\n")
    assert read_rows(path) == [(1, ("A fine film.",)),
                               (3, ("How do I learn Python?", "What is the best way to learn Python?")),
                               (5, ("A dull one.",))]


@pytest.mark.parametrize("text, message", [
    ("fine\na\tb\tc\n", r"input.txt, line 2: 3 tab-separated fields"),
    ("fine\nfine\nA pair\t\n", r"input.txt, line 3: an empty sentence \(after the tab\)"),
    ("\tA pair\n", r"input.txt, line 1: an empty sentence \(before the tab\)"),
    ("\n\n", r"input.txt: no sentence in the file"),
])
def test_a_bad_line_is_named_with_its_file_and_number(tmp_path, text, message):
    path = tmp_path / "input.txt"
    path.write_text(text)
    with pytest.raises(PredictError, match=message):
        read_rows(path)
    path.write_bytes(b"caf\xe9\n")
    with pytest.raises(PredictError, match="input.txt: not UTF-8 text"):
        read_rows(path)


def project_with_a_model(root: Path) -> None:
    (root / "models").mkdir()
    saved_run(root / "models", "m0", 0)
    (root / "metrics" / "finetune").mkdir(parents=True)
    (root / "metrics" / "finetune" / "m0.json").write_text(
        json.dumps({"dev": {"sst": 0.4125, "qqp": 0.75, "sts": 0.5, "overall": 0.6}}))


def test_the_cli_shows_the_probabilities_and_the_models_dev_scores(tmp_path, monkeypatch):
    project_with_a_model(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["predict", "--model", "m0", "A fine film.", "A good movie."])
    assert result.exit_code == 0, result.output
    # What the command answers, without transformers' progress bar for loading the weights.
    lines = [line for line in result.output.splitlines() if line.startswith(("model:", "sentiment:", "paraphrase:"))]
    assert lines[0] == "model: m0; dev scores: SST accuracy 0.412, QQP accuracy 0.750, STS pearson 0.500"
    assert re.fullmatch(r"sentiment: \d \D+ \(p 0\.\d\d; next \d \D+, p 0\.\d\d\)  <- A fine film\.", lines[1])
    assert re.fullmatch(r"paraphrase: (yes|no) \(probability 0\.\d{3}\); similarity: \d\.\d\d / 5  "
                        r"<- A fine film\. \| A good movie\.", lines[3])


def test_the_cli_writes_a_files_answers_as_csv(tmp_path, monkeypatch):
    project_with_a_model(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.txt").write_text("A fine film.\nA fine film.\tA good movie.\n\nA dull one.\n")
    result = CliRunner().invoke(app, ["predict", "--model", "m0", "--input", "in.txt", "--output", "out.csv"])
    assert result.exit_code == 0, result.output
    assert "wrote 3 rows to out.csv" in result.output and "row" in result.stderr  # the progress bar
    frame = pd.read_csv(tmp_path / "out.csv")
    assert frame["line"].tolist() == [1, 2, 4]
    probabilities = frame.filter(like="p_")
    assert list(probabilities.columns) == ["p_negative", "p_somewhat_negative", "p_neutral", "p_somewhat_positive",
                                           "p_positive"]
    assert probabilities.iloc[[0, 2]].sum(axis=1).round(4).tolist() == [1.0, 1.0]
    assert frame["sentiment"].iloc[[0, 2]].tolist() == probabilities.iloc[[0, 2]].to_numpy().argmax(1).tolist()
    assert frame["sentence2"].iloc[1] == "A good movie." and frame["sentiment"].isna().iloc[1]
    assert 0 <= frame["paraphrase_probability"].iloc[1] <= 1 and 0 <= frame["similarity"].iloc[1] <= 5
    bad = CliRunner().invoke(app, ["predict", "--model", "m0", "--input", "missing.txt"])
    assert bad.exit_code == 1 and bad.output.strip() == "predict: missing.txt: no such file"


def test_a_run_saved_before_the_dev_and_test_limits_were_split_still_loads():
    raw = tiny_params().model_dump(mode="json")
    old = {**raw, "data": {**{k: v for k, v in raw["data"].items() if k not in ("dev_limit", "test_limit")},
                           "eval_limit": {"sst": 5, "qqp": None, "sts": 7}}}
    params = saved_params(old, "run.json")
    assert params.data.dev_limit.model_dump() == params.data.test_limit.model_dump() == {"sst": 5, "qqp": None, "sts": 7}
    assert saved_params(raw, "run.json") == tiny_params()  # a run saved today reads back unchanged
