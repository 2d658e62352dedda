"""`smartmtl export`: a trained run as a Hugging Face folder that loads elsewhere, without smartmtl,
and predicts what `smartmtl predict` does; its card holds the dev scores and the caveats."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import PAIRS, tiny_params
from typer.testing import CliRunner

from smartmtl.app.cli import app
from smartmtl.app.export import HEADS_FILE, ExportError, export, push_to_hub
from smartmtl.app.predict import load_predictor
from smartmtl.layout import Layout
from smartmtl.model.heads import build_model
from smartmtl.train.runner import run, save_run
from smartmtl.variants import table2_spec

pytestmark = pytest.mark.slow  # trains a tiny model and starts Python processes that import transformers

SENTENCES = ["a gorgeous film .", "the plot is thin , the jokes fall flat and the actors look bored ."]
ROWS = [(sentence,) for sentence in SENTENCES] + [PAIRS[0], PAIRS[5]]

# Runs the card's code block unchanged in the exported folder, then its functions on ROWS.
RUN_CARD = """
import json, sys
namespace = {}
exec(compile(sys.stdin.read(), "README.md", "exec"), namespace)
rows = json.loads(sys.argv[1])
singles = [row[0] for row in rows if len(row) == 1]
firsts, seconds = [row[0] for row in rows if len(row) == 2], [row[1] for row in rows if len(row) == 2]
answers = {"sentiment": namespace["sentiment"](singles).tolist(),
           "paraphrase_probability": namespace["paraphrase_probability"](firsts, seconds).tolist(),
           "similarity": namespace["similarity"](firsts, seconds).tolist(),
           "imported": sorted(name for name in sys.modules if name.split(".")[0] == "smartmtl")}
print("ANSWERS " + json.dumps(answers))
"""


def card_code(folder: Path) -> str:
    blocks = re.findall(r"```python\n(.*?)```", (folder / "README.md").read_text(), flags=re.DOTALL)
    assert len(blocks) == 1
    return blocks[0]


def run_card_elsewhere(folder: Path) -> dict:
    """The card's code in a fresh Python that cannot import smartmtl from this checkout."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", RUN_CARD, json.dumps(ROWS)], input=card_code(folder),
                            cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.split("ANSWERS ", 1)[1])


def assert_same_as_predict(folder: Path, name: str, models: Path) -> None:
    answers = run_card_elsewhere(folder)
    assert answers["imported"] == []
    predicted = load_predictor(name, ROWS, models_dir=models).predict(ROWS)
    singles = [p for p in predicted if len(p.texts) == 1]
    pairs = [p for p in predicted if len(p.texts) == 2]
    np.testing.assert_allclose(answers["sentiment"], [p.sentiment_probabilities for p in singles], atol=1e-5)
    np.testing.assert_allclose(answers["paraphrase_probability"], [p.paraphrase_probability for p in pairs],
                               atol=1e-5)
    np.testing.assert_allclose(answers["similarity"], [p.similarity for p in pairs], atol=1e-5)


@pytest.fixture(scope="module")
def trained(prepared_dir, tmp_path_factory) -> tuple[Layout, str]:
    """A smoke-sized concat run trained and written by the runner, as the pipeline writes one."""
    layout = Layout(tmp_path_factory.mktemp("project"))
    params = tiny_params(prepared_dir)
    spec = dataclasses.replace(table2_spec(params, "concat_star", 0), pretrained=False)
    torch.manual_seed(0)
    run(spec, params, layout)
    return layout, spec.name


def test_an_exported_run_loads_without_smartmtl_and_predicts_as_predict_does(trained, tmp_path):
    layout, name = trained
    folder = tmp_path / "export"
    assert export(name, folder, models_dir=layout.models, lock=tmp_path / "no.lock") == [folder]
    from transformers import AutoModel

    assert AutoModel.from_pretrained(folder).config.hidden_size == 384
    assert (folder / HEADS_FILE).exists() and (folder / "tokenizer.json").exists()
    assert_same_as_predict(folder, name, layout.models)


def test_the_card_holds_the_dev_scores_the_caveats_and_the_metadata(trained, tmp_path):
    layout, name = trained
    folder = tmp_path / "export"
    lock = tmp_path / "dvc.lock"
    lock.write_text(yaml.safe_dump({"schema": "2.0", "stages": {
        "finetune@concat_star-0": {"cmd": "python stages/finetune.py variant concat_star --seed 0",
                                   "outs": [{"path": f"models/{name}", "md5": "x"}]}}}))
    export(name, folder, models_dir=layout.models, lock=lock)
    card = (folder / "README.md").read_text()
    dev = json.loads(layout.metrics_file(name).read_text())["dev"]
    metadata = yaml.safe_load(card.split("---\n")[1])
    assert metadata["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert {"SetFit/sst5", "nyu-mll/glue", "sentence-transformers/stsb"} == set(metadata["datasets"])
    results = {result["task"]["name"]: result for result in metadata["model-index"][0]["results"]}
    assert results["Sentiment Analysis"]["metrics"][0]["value"] == round(dev["sst"], 4)
    assert results["Semantic Textual Similarity"]["metrics"][0]["type"] == "pearsonr"
    assert all(result["dataset"]["split"] == "dev" for result in results.values())
    for task in ("sst", "qqp", "sts", "overall"):
        assert f"{dev[task]:.4f}" in card
    assert "Quora duplicate questions" in card and "QQP scores are flattered" in card
    assert "dev split" in card and "not the paper's 283,010" in card
    assert "dvc repro finetune@concat_star-0" in card and "smartmtl preset smoke" in card
    assert "lambda_s" in card and "head_lr" in card  # the parameters


@pytest.mark.parametrize("row, pooling", [("baseline", "cls"), ("baseline", "mean"), ("cos_sim", "cls")])
def test_the_other_pair_designs_export_too(tmp_path, row, pooling):
    """Separate and cosine heads (untrained, saved as the runner saves them): the card's code for them."""
    params = tiny_params(model={"pooling": pooling})
    spec = table2_spec(params, row, 0)
    assert spec.head != "concat"
    torch.manual_seed(0)
    (tmp_path / "models").mkdir()
    save_run(build_model(spec, params), spec, params, tmp_path / "models" / spec.name)
    folder = tmp_path / "export"
    export(spec.name, folder, models_dir=tmp_path / "models", lock=tmp_path / "no.lock")
    assert "No dev scores were found" in (folder / "README.md").read_text()
    assert_same_as_predict(folder, spec.name, tmp_path / "models")


def test_the_ensemble_exports_each_member_beside_a_card_of_its_own(tmp_path):
    params = tiny_params()
    metrics = tmp_path / "metrics"
    (metrics / "finetune").mkdir(parents=True)
    (tmp_path / "models").mkdir()
    members = []
    for seed in (0, 1):
        spec = table2_spec(params, "concat", seed)
        torch.manual_seed(seed)
        save_run(build_model(spec, params), spec, params, tmp_path / "models" / spec.name)
        (metrics / "finetune" / f"{spec.name}.json").write_text(json.dumps({"dev": {"sst": 0.4 + seed / 10}}))
        members.append(spec.name)
    (metrics / "ensemble.json").write_text(json.dumps({"members": members, "dev": {"sst": 0.61, "qqp": 0.8}}))
    folders = export("ensemble", tmp_path / "out", models_dir=tmp_path / "models", lock=tmp_path / "no.lock",
                     ensemble_metrics=metrics / "ensemble.json")
    assert folders == [tmp_path / "out" / name for name in members]
    assert all((folder / HEADS_FILE).exists() and (folder / "README.md").exists() for folder in folders)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "0.6100" in card and "0.4000" in card and "0.5000" in card and f"({members[1]}/README.md)" in card


def test_export_refuses_an_untrained_model_and_a_folder_in_use(trained, tmp_path):
    layout, name = trained
    with pytest.raises(ExportError, match=rf"model nothing is not trained .*; trained models: {name}$"):
        export("nothing", tmp_path / "a", models_dir=layout.models)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "file").write_text("mine")
    with pytest.raises(ExportError, match="used exists and is not an empty folder"):
        export(name, tmp_path / "used", models_dir=layout.models)


def test_pushing_offline_fails_in_one_line(tmp_path, monkeypatch):
    import huggingface_hub

    def offline(*args, **kwargs):
        raise huggingface_hub.errors.OfflineModeIsEnabled("Cannot reach https://huggingface.co: offline mode is enabled.")

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", offline)
    with pytest.raises(ExportError) as error:
        push_to_hub(tmp_path, "someone/model")
    message = str(error.value)
    assert "\n" not in message and "someone/model" in message and "OfflineModeIsEnabled" in message


def test_the_cli_exports_and_reports_a_failed_push_as_one_line(trained, tmp_path, monkeypatch):
    layout, name = trained
    monkeypatch.chdir(layout.root)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    result = CliRunner().invoke(app, ["export", name, str(tmp_path / "out"), "--push-to-hub", "someone/model"])
    assert result.exit_code == 1
    assert f"wrote {tmp_path / 'out'}" in result.output
    assert result.output.strip().splitlines()[-1].startswith("export: could not push")
    assert (tmp_path / "out" / "README.md").exists()
