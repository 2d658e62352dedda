"""`smartmtl predict`: labels by the task table's rules, an ensemble by its combining rules, and
a refusal for a model whose head for a task was never trained."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_params

from smartmtl.app.predict import PredictError, predict_text, saved_params
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
    for member in members:
        assert len(member.sentiment) == 2 and set(member.sentiment) <= set(range(5))
        assert member.paraphrase == int(member.paraphrase_probability > 0.5)
    ensemble_file = tmp_path / "ensemble.json"
    ensemble_file.write_text(json.dumps({"members": ["m0", "m1", "m2"]}))
    ensemble = predict_text("ensemble", pair, models_dir=tmp_path, ensemble_metrics=ensemble_file)
    assert ensemble.similarity == pytest.approx(np.median([m.similarity for m in members]))
    assert ensemble.paraphrase_probability == pytest.approx(np.median([m.paraphrase_probability for m in members]))
    assert ensemble.paraphrase == int(sum(m.paraphrase for m in members) >= 2)  # the majority of three


def test_a_run_saved_before_the_dev_and_test_limits_were_split_still_loads():
    raw = tiny_params().model_dump(mode="json")
    old = {**raw, "data": {**{k: v for k, v in raw["data"].items() if k not in ("dev_limit", "test_limit")},
                           "eval_limit": {"sst": 5, "qqp": None, "sts": 7}}}
    params = saved_params(old, "run.json")
    assert params.data.dev_limit.model_dump() == params.data.test_limit.model_dump() == {"sst": 5, "qqp": None, "sts": 7}
    assert saved_params(raw, "run.json") == tiny_params()  # a run saved today reads back unchanged
