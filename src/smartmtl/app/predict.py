"""Use what you trained: sentiment, paraphrase probability and similarity for new text, with
how sure the model is and how well it scored on dev.

A model is a trained ``models/<name>/`` folder (its ``run.json`` says how to rebuild it) or
``ensemble``, whose members are read from ``metrics/ensemble.json`` and combined with the
ensemble's own rules (mode for labels, median for scores); its class probabilities are the
members' mean, shown beside the voted label.

Input is a list of rows, each one sentence (its sentiment) or a pair (paraphrase and
similarity): from the command line, or from a file of one sentence or one tab-separated pair
per line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from smartmtl.config import Params, parse_params
from smartmtl.errors import UserError
from smartmtl.io import read_json
from smartmtl.results.outputs import ENSEMBLE_NAME
from smartmtl.tasks import TASKS, combine
from smartmtl.train.schedules import tasks_of

Row = tuple[str] | tuple[str, str]
PAIR_TASKS = ("qqp", "sts")
# Rows scored per model call: small enough for a progress bar to move, large enough to batch.
BLOCK_ROWS = 256


class PredictError(UserError, ValueError):
    pass


@dataclass
class RowPrediction:
    """One row's answers: a sentence's sentiment, or a pair's paraphrase and similarity."""

    texts: Row
    sentiment: int | None = None
    sentiment_probabilities: list[float] | None = None  # one per SST class
    paraphrase: int | None = None
    paraphrase_probability: float | None = None
    similarity: float | None = None  # 0-5


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


def ensemble_members(ensemble_metrics: Path) -> list[str]:
    if not ensemble_metrics.exists():
        raise PredictError(f"{ensemble_metrics} not found: run `dvc repro ensemble` first")
    return read_json(ensemble_metrics)["members"]


def dev_scores(model: str, models_dir: Path, ensemble_metrics: Path) -> dict[str, float] | None:
    """The model's dev scores as the pipeline recorded them (None where that file is missing):
    metrics/finetune/<name>.json beside models/, or the ensemble's metrics file."""
    path = ensemble_metrics if model == ENSEMBLE_NAME else models_dir.parent / "metrics" / "finetune" / f"{model}.json"
    return read_json(path).get("dev") if path.exists() else None


def check_trained(members: list[str], needed: set[str], models_dir: Path) -> None:
    missing = [name for name in members if not (models_dir / name / "model.safetensors").exists()]
    if missing:
        raise PredictError(f"model(s) {', '.join(missing)} not trained; trained models: "
                           f"{', '.join(trained_models(models_dir)) or 'none'}")
    for name in members:
        untrained = needed - trained_tasks(models_dir / name)
        if untrained:
            able = [other for other in trained_models(models_dir) if needed <= trained_tasks(models_dir / other)]
            raise PredictError(f"model {name} never trained its {', '.join(sorted(untrained))} head; models that "
                               f"trained {', '.join(sorted(needed))}: {', '.join(able) or 'none'}")


def needed_tasks(rows: list[Row]) -> set[str]:
    return ({"sst"} if any(len(row) == 1 for row in rows) else set()) | \
           (set(PAIR_TASKS) if any(len(row) == 2 for row in rows) else set())


class Member:
    """One trained run, loaded once, in fp32: its raw outputs for blocks of rows."""

    def __init__(self, model_dir: Path, device: str = "cpu"):
        from smartmtl.model.backbone import load_tokenizer
        from smartmtl.model.heads import build_model
        from smartmtl.train.hardware import pick_device
        from smartmtl.variants import saved_spec

        run = read_json(model_dir / "run.json")
        self.params = saved_params(run["params"], str(model_dir / "run.json"))
        self.spec = saved_spec(run["spec"], self.params)
        self.device = pick_device(device)
        self.model = build_model(self.spec, self.params, model_dir / "model.safetensors").to(self.device).eval()
        self.tokenizer = load_tokenizer(self.params.model.backbone)

    def outputs(self, task: str, rows: list[Row]) -> np.ndarray:
        """The head's raw outputs (SST logits, QQP logit, STS [-1, 1] score), one per row."""
        import contextlib

        from smartmtl.model.features import tokenize
        from smartmtl.model.inference import predict

        columns = TASKS[task].text_columns
        frame = pd.DataFrame({"id": [str(i) for i in range(len(rows))],
                              **{column: [row[k] for row in rows] for k, column in enumerate(columns)}})
        features = tokenize(frame, task, self.spec.head, self.tokenizer, self.params.model.max_length)
        _, outputs = predict(self.model, features, task, self.params.train.eval_batch_size, self.device,
                             contextlib.nullcontext)
        return outputs


def _predict_block(members: list[Member], rows: list[Row]) -> list[RowPrediction]:
    """Each member's outputs for the block, read as probabilities and scores, then combined."""
    import torch

    predictions = [RowPrediction(row) for row in rows]
    singles = [i for i, row in enumerate(rows) if len(row) == 1]
    pairs = [i for i, row in enumerate(rows) if len(row) == 2]
    if singles:
        logits = np.stack([member.outputs("sst", [rows[i] for i in singles]) for member in members])
        probabilities = torch.from_numpy(logits).softmax(-1).numpy()  # members x rows x classes
        labels = combine("sst", probabilities.argmax(-1))
        for k, i in enumerate(singles):
            predictions[i].sentiment = int(labels[k])
            predictions[i].sentiment_probabilities = probabilities[:, k].mean(0).tolist()
    if pairs:
        pair_rows = [rows[i] for i in pairs]
        qqp = torch.from_numpy(np.stack([member.outputs("qqp", pair_rows) for member in members]))
        sts = torch.from_numpy(np.stack([member.outputs("sts", pair_rows) for member in members]))
        paraphrase = combine("qqp", TASKS["qqp"].to_predictions(qqp).numpy())
        probability = np.median(qqp.sigmoid().numpy(), axis=0)
        similarity = combine("sts", TASKS["sts"].to_predictions(sts).numpy())
        for k, i in enumerate(pairs):
            predictions[i].paraphrase = int(paraphrase[k])
            predictions[i].paraphrase_probability = float(probability[k])
            predictions[i].similarity = float(similarity[k])
    return predictions


@dataclass
class Predictor:
    """A model ready to predict: its members loaded, its dev scores read."""

    name: str
    members: list[Member]
    member_names: list[str]
    dev: dict[str, float] | None

    def predict(self, rows: list[Row], progress: Callable[[int], None] | None = None) -> list[RowPrediction]:
        results = []
        for start in range(0, len(rows), BLOCK_ROWS):
            block = rows[start:start + BLOCK_ROWS]
            results += _predict_block(self.members, block)
            if progress is not None:
                progress(len(block))
        return results


def load_predictor(model: str, rows: list[Row], models_dir: Path = Path("models"),
                   ensemble_metrics: Path = Path("metrics/ensemble.json"), device: str = "cpu") -> Predictor:
    """The model (or the ensemble's members), checked to have the heads ``rows`` need."""
    members = ensemble_members(ensemble_metrics) if model == ENSEMBLE_NAME else [model]
    check_trained(members, needed_tasks(rows), models_dir)
    return Predictor(model, [Member(models_dir / name, device) for name in members], members,
                     dev_scores(model, models_dir, ensemble_metrics))


def sentence_rows(sentences: list[str]) -> list[Row]:
    """Command-line sentences: each one's sentiment, and two are also compared as a pair."""
    if not sentences:
        raise PredictError("give at least one sentence, or a file with --input")
    rows: list[Row] = [(sentence,) for sentence in sentences]
    return rows + [(sentences[0], sentences[1])] if len(sentences) == 2 else rows


def read_rows(path: Path) -> list[tuple[int, Row]]:
    """A file's rows with their line numbers: one sentence, or two tab-separated, per line;
    blank lines are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PredictError(f"{path}: no such file") from None
    except UnicodeDecodeError as error:
        raise PredictError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) > 2:
            raise PredictError(f"{path}, line {number}: {len(fields)} tab-separated fields; "
                               "a line holds one sentence, or two separated by one tab")
        if any(not field.strip() for field in fields):
            raise PredictError(f"{path}, line {number}: an empty sentence "
                               f"({'before' if not fields[0].strip() else 'after'} the tab)")
        rows.append((number, tuple(field.strip() for field in fields)))
    if not rows:
        raise PredictError(f"{path}: no sentence in the file")
    return rows


def results_frame(lines: list[int], predictions: list[RowPrediction]) -> pd.DataFrame:
    """One CSV row per input line: the sentence or pair, then what the model answered for it."""
    classes = TASKS["sst"].classes
    records = []
    for line, prediction in zip(lines, predictions, strict=True):
        record = {"line": line, "sentence1": prediction.texts[0],
                  "sentence2": prediction.texts[1] if len(prediction.texts) == 2 else None,
                  "sentiment": prediction.sentiment,
                  "sentiment_label": None if prediction.sentiment is None else classes[prediction.sentiment]}
        for k, name in enumerate(classes):
            probabilities = prediction.sentiment_probabilities
            record[f"p_{name.replace(' ', '_')}"] = None if probabilities is None else round(probabilities[k], 6)
        record.update(paraphrase=prediction.paraphrase,
                      paraphrase_probability=None if prediction.paraphrase_probability is None
                      else round(prediction.paraphrase_probability, 6),
                      similarity=None if prediction.similarity is None else round(prediction.similarity, 6))
        records.append(record)
    frame = pd.DataFrame.from_records(records)
    for column in ("sentiment", "paraphrase"):
        frame[column] = frame[column].astype("Int64")
    return frame


def predict_text(model: str, sentences: list[str], models_dir: Path = Path("models"),
                 ensemble_metrics: Path = Path("metrics/ensemble.json")) -> list[RowPrediction]:
    """The command line's rows for ``sentences``, predicted (a library shortcut for one call)."""
    rows = sentence_rows(sentences)
    return load_predictor(model, rows, models_dir, ensemble_metrics).predict(rows)


def describe_model(predictor: Predictor) -> str:
    """Which model answered, and its dev scores per task: how far to trust what follows."""
    members = "" if predictor.member_names == [predictor.name] else \
        f" ({len(predictor.member_names)} members: {', '.join(predictor.member_names)})"
    if predictor.dev is None:
        return f"model: {predictor.name}{members}; dev scores: not found"
    scores = [f"{TASKS[task].dataset} {TASKS[task].metric.__name__} {predictor.dev[task]:.3f}"
              for task in TASKS if task in predictor.dev]
    return f"model: {predictor.name}{members}; dev scores: {', '.join(scores)}"


def describe(prediction: RowPrediction) -> str:
    """One row's answer with its doubt: the two likeliest classes, or the pair's probability."""
    if prediction.sentiment_probabilities is not None:
        classes = TASKS["sst"].classes
        first, second = np.argsort(prediction.sentiment_probabilities)[::-1][:2]
        probabilities = prediction.sentiment_probabilities
        label = prediction.sentiment
        runner_up = second if first == label else first  # an ensemble's vote may differ from its mean's top class
        return (f"sentiment: {label} {classes[label]} (p {probabilities[label]:.2f}; next "
                f"{runner_up} {classes[runner_up]}, p {probabilities[runner_up]:.2f})  <- {prediction.texts[0]}")
    return (f"paraphrase: {'yes' if prediction.paraphrase else 'no'} (probability {prediction.paraphrase_probability:.3f}); "
            f"similarity: {prediction.similarity:.2f} / 5  <- {prediction.texts[0]} | {prediction.texts[1]}")
