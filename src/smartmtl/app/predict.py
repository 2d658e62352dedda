"""Use what you trained: sentiment, paraphrase probability and similarity for new text.

A model is a trained ``models/<name>/`` folder (its ``run.json`` says how to rebuild it) or
``ensemble``, whose members are read from ``metrics/ensemble.json`` and combined with the
ensemble's own rules (mode for labels, median for scores).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from smartmtl.config import Params, parse_params
from smartmtl.errors import UserError
from smartmtl.io import read_json
from smartmtl.model.backbone import load_tokenizer
from smartmtl.model.features import tokenize
from smartmtl.model.heads import build_model
from smartmtl.results.outputs import ENSEMBLE_NAME
from smartmtl.tasks import TASKS, combine
from smartmtl.train.schedules import tasks_of
from smartmtl.variants import saved_spec


class PredictError(UserError, ValueError):
    pass


@dataclass
class Prediction:
    sentiment: list[int]  # one per sentence
    paraphrase_probability: float | None  # pair only
    paraphrase: int | None
    similarity: float | None


def trained_models(models_dir: Path) -> list[str]:
    return sorted(path.parent.name for path in models_dir.glob("*/model.safetensors"))


def trained_tasks(model_dir: Path) -> set[str]:
    """The tasks whose heads the run trained (the QQP pretraining trains one, SST-only runs one)."""
    return set(tasks_of(read_json(model_dir / "run.json")["spec"]["schedule"]))


def saved_params(raw: dict, source: str) -> Params:
    """The parameters a run.json saved. Unlike params.yaml, which a person edits and is told
    to rename an old key, a run's record is read as it was written: runs saved before
    data.eval_limit was split into dev_limit and test_limit get it under both names."""
    data = raw.get("data", {})
    if "eval_limit" in data:
        limit = data["eval_limit"]
        raw = {**raw, "data": {**{k: v for k, v in data.items() if k != "eval_limit"},
                               "dev_limit": limit, "test_limit": limit}}
    return parse_params(raw, source)


def _predict_one(model_dir: Path, sentences: list[str]) -> Prediction:
    run = read_json(model_dir / "run.json")
    params = saved_params(run["params"], str(model_dir / "run.json"))
    spec = saved_spec(run["spec"], params)
    model = build_model(spec, params, model_dir / "model.safetensors").eval()
    tokenizer = load_tokenizer(params.model.backbone)
    with torch.no_grad():
        single = pd.DataFrame({"id": [str(i) for i in range(len(sentences))], "sentence": sentences})
        features = tokenize(single, "sst", spec.head, tokenizer, params.model.max_length)
        sentiment = TASKS["sst"].to_predictions(model("sst", features.batch(np.arange(len(sentences)))[0])).tolist()
        if len(sentences) == 1:
            return Prediction(sentiment, None, None, None)
        pair = pd.DataFrame({"id": ["0"], "sentence1": [sentences[0]], "sentence2": [sentences[1]]})
        qqp, sts = (model(task, tokenize(pair, task, spec.head, tokenizer, params.model.max_length).batch(np.arange(1))[0])
                    for task in ("qqp", "sts"))
    return Prediction(sentiment, paraphrase_probability=float(qqp.sigmoid()[0]),
                      paraphrase=int(TASKS["qqp"].to_predictions(qqp)[0]),
                      similarity=float(TASKS["sts"].to_predictions(sts)[0]))


def predict_text(model: str, sentences: list[str], models_dir: Path = Path("models"),
                 ensemble_metrics: Path = Path("metrics/ensemble.json")) -> Prediction:
    if len(sentences) not in (1, 2):
        raise PredictError("give one sentence (sentiment) or two (sentiment, paraphrase, similarity)")
    if model == ENSEMBLE_NAME:
        if not ensemble_metrics.exists():
            raise PredictError(f"{ensemble_metrics} not found: run `dvc repro ensemble` first")
        members = read_json(ensemble_metrics)["members"]
    else:
        members = [model]
    missing = [name for name in members if not (models_dir / name / "model.safetensors").exists()]
    if missing:
        raise PredictError(f"model(s) {', '.join(missing)} not trained; trained models: "
                           f"{', '.join(trained_models(models_dir)) or 'none'}")
    needed = {"sst"} if len(sentences) == 1 else set(TASKS)
    for name in members:
        untrained = needed - trained_tasks(models_dir / name)
        if untrained:
            able = [other for other in trained_models(models_dir) if needed <= trained_tasks(models_dir / other)]
            raise PredictError(f"model {name} never trained its {', '.join(sorted(untrained))} head; models that "
                               f"trained {', '.join(sorted(needed))}: {', '.join(able) or 'none'}")
    results = [_predict_one(models_dir / name, sentences) for name in members]
    sentiment = combine("sst", np.array([r.sentiment for r in results])).tolist()
    if len(sentences) == 1:
        return Prediction(sentiment, None, None, None)
    # Each member's labels by the task table's rule, combined by the ensemble's (as for the dev set).
    return Prediction(sentiment,
                      paraphrase_probability=float(np.median([r.paraphrase_probability for r in results])),
                      paraphrase=int(combine("qqp", np.array([[r.paraphrase] for r in results]))[0]),
                      similarity=float(combine("sts", np.array([[r.similarity] for r in results]))[0]))
