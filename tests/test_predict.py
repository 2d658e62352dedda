"""`smartmtl predict` refuses a model whose head for a task was never trained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smartmtl.predict import PredictError, predict_text


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
