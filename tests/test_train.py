"""The trainer on the real backbone with tiny data: SMART's terms, resuming, and the runner."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_params
from safetensors.torch import load_file

from smartmtl.data.prepared import load_split
from smartmtl.evaluate import task_metric
from smartmtl.layout import Layout
from smartmtl.model.features import load_features
from smartmtl.model.heads import build_model
from smartmtl.model.inference import evaluate
from smartmtl.tasks import task_loss
from smartmtl.train import probe, smart
from smartmtl.train.hardware import resolve_compute
from smartmtl.train.loop import (
    SingleRun,
    StepTerms,
    TrainingLog,
    fingerprint,
    smart_settings,
    task_objective,
    train,
    train_runs,
)
from smartmtl.train.runner import run
from smartmtl.variants import PRETRAIN, RunSpec, table2_spec

TASKS = ("sst", "qqp", "sts")
SPEC = RunSpec(name="tiny", kind="table2", label="Tiny", head="concat", schedule="simultaneous", epochs=2,
               smart=True, surgery=False, pretrained=False, dropout=0.1, lambda_s=1.0, seed=0, row="tiny")


def spec(**changes) -> RunSpec:
    return dataclasses.replace(SPEC, **changes)


def _train(run_spec, params, features, **options):
    return train(run_spec, params, features, resolve_compute(params.train.precision), **options)


class Epochs(TrainingLog):
    """Keeps each epoch's (epoch, metrics) as the loop reports them."""

    def __init__(self):
        self.seen = []

    def epoch(self, epoch, step, metrics):
        self.seen.append((epoch, metrics))


@pytest.fixture(scope="module")
def features(prepared_dir):
    return load_features(tiny_params(prepared_dir), TASKS, "concat", splits=("train", "dev"))


# ------------------------------------------------------------- SMART in task_objective

@pytest.fixture(scope="module")
def model(prepared_dir):
    torch.manual_seed(0)
    built = build_model(SPEC, tiny_params(prepared_dir))
    built.eval()  # no dropout: only SMART's noise differs between calls
    return built


def _batch(features, task):
    return features["train"][task].batch(np.arange(4))


def _objective(model, teacher, task, features, run_spec, params, seed=0):
    segments, labels = _batch(features, task)
    terms = StepTerms()
    torch.manual_seed(seed)
    return task_objective(model, teacher, task, segments, labels, smart_settings(run_spec, params), terms), terms


@pytest.mark.parametrize("task", TASKS)
def test_smart_with_zero_weights_is_the_plain_task_loss(task, model, features, prepared_dir):
    params = tiny_params(prepared_dir, smart={"mu": 0.0})
    teacher = smart.EmaTeacher(model, 0.9)
    with torch.no_grad():  # a teacher that differs from the student, so mu=0 is what silences it
        for p in teacher.model.parameters():
            p.add_(0.01)
    smart_loss, smart_terms = _objective(model, teacher, task, features, spec(lambda_s=0.0), params)
    plain_loss, plain_terms = _objective(model, None, task, features, spec(smart=False), params)
    segments, labels = _batch(features, task)
    with torch.no_grad():
        direct = task_loss(task, model(task, segments), labels)
    assert torch.equal(smart_loss, plain_loss)
    assert torch.equal(smart_loss.detach(), direct)
    assert set(smart_terms.sums) == set(plain_terms.sums) == {f"loss_{task}"}


def _encoder_grad(model, teacher, task, features, run_spec, params) -> torch.Tensor:
    model.zero_grad(set_to_none=True)
    loss, terms = _objective(model, teacher, task, features, run_spec, params, seed=123)
    loss.backward()
    grad = torch.cat([p.grad.reshape(-1) for p in model.shared_parameters() if p.grad is not None])
    model.zero_grad(set_to_none=True)
    return grad, terms


@pytest.mark.parametrize("task", TASKS)
def test_lambda_s_scales_the_adversarial_gradient(task, model, features, prepared_dir):
    params = tiny_params(prepared_dir, smart={"mu": 0.0})
    g0, _ = _encoder_grad(model, None, task, features, spec(lambda_s=0.0), params)
    g1, terms1 = _encoder_grad(model, None, task, features, spec(lambda_s=1.0), params)
    g5, terms5 = _encoder_grad(model, None, task, features, spec(lambda_s=5.0), params)
    adversarial = terms1.sums[f"smart_{task}"]
    assert adversarial > 0
    assert torch.equal(terms5.sums[f"smart_{task}"], adversarial)  # same seed: same perturbation
    assert not torch.allclose(g1, g5)
    # The objective is L + lambda_s * R_s: the encoder gradient is affine in lambda_s.
    residual = (g5 - g1) - 4 * (g1 - g0)
    assert residual.norm() <= 1e-2 * (g5 - g1).norm()


@pytest.mark.parametrize("task", TASKS)
def test_diagnostics_show_the_term_above_its_floor_and_change_nothing(task, features, prepared_dir):
    # In training mode (dropout on), the diagnostics measure the term's floor with the same
    # dropout masks; they must leave the objective, its gradient and the RNG stream unchanged.
    torch.manual_seed(0)
    params = tiny_params(prepared_dir, smart={"mu": 1.0})
    student = build_model(SPEC, params).train()
    teacher = smart.EmaTeacher(student, 0.9)
    results = []
    for diagnose in (False, True):
        student.zero_grad(set_to_none=True)
        segments, labels = _batch(features, task)
        terms = StepTerms()
        torch.manual_seed(7)
        loss = task_objective(student, teacher, task, segments, labels, smart_settings(SPEC, params), terms,
                              diagnose)
        loss.backward()
        after = torch.rand(1)
        results.append((loss.detach(), student.heads[task].weight.grad.clone(), after, terms.means()))
    (loss_a, grad_a, rng_a, _), (loss_b, grad_b, rng_b, means) = results
    assert torch.equal(loss_a, loss_b) and torch.equal(grad_a, grad_b) and torch.equal(rng_a, rng_b)
    assert means[f"smart_{task}"] >= 10 * means[f"smart_floor_{task}"]
    assert means[f"smart_delta_{task}"] == pytest.approx(params.smart.epsilon, rel=0.05)
    assert means[f"smart_grad_ratio_{task}"] > 0.01


@pytest.mark.parametrize("task", TASKS)
def test_bregman_is_zero_when_teacher_equals_student(task, model, features, prepared_dir):
    params = tiny_params(prepared_dir, smart={"mu": 1.0})
    teacher = smart.EmaTeacher(model, 0.9)
    loss, terms = _objective(model, teacher, task, features, spec(lambda_s=0.0), params)
    assert terms.sums[f"bregman_{task}"] == 0.0
    assert loss.item() == pytest.approx(terms.means()[f"loss_{task}"], abs=0)
    # And it measures the distance once the teacher's encoder moves away.
    with torch.no_grad():
        for p in teacher.model.encoder.parameters():
            p.mul_(1.05)
    moved, terms = _objective(model, teacher, task, features, spec(lambda_s=0.0), params)
    means = terms.means()
    assert means[f"bregman_{task}"] > 1e-6
    assert moved.item() == pytest.approx(means[f"loss_{task}"] + means[f"bregman_{task}"], rel=1e-6)


@pytest.mark.parametrize("task", TASKS)
def test_bregman_is_zero_against_an_equal_teacher_with_dropout_on(task, features, prepared_dir):
    # In training, both sides draw the same dropout masks: the term measures the teacher's
    # distance alone, so an equal teacher is at distance zero, whatever the dropout.
    params = tiny_params(prepared_dir, smart={"mu": 1.0})
    torch.manual_seed(0)
    student = build_model(spec(dropout=0.3), params).train()
    teacher = smart.EmaTeacher(student, 0.99)
    _, terms = _objective(student, teacher, task, features, spec(lambda_s=1.0, dropout=0.3), params)
    assert terms.sums[f"bregman_{task}"].item() == pytest.approx(0.0, abs=1e-7)
    assert terms.sums[f"smart_{task}"] > 0


def test_surgery_logs_how_often_the_task_gradients_conflicted(prepared_dir, tmp_path):
    params = tiny_params(prepared_dir)
    run_spec = table2_spec(params, "concat_smart_surgery_pretrain", 0)
    run_spec = dataclasses.replace(run_spec, pretrained=False)
    record = run(run_spec, params, Layout(tmp_path))
    assert 0.0 <= record["surgery"]["conflict_share"] <= 1.0
    assert -1.0 <= record["surgery"]["mean_cosine"] <= 1.0
    assert "surgery" not in run(table2_spec(params, "concat_smart_star", 0), params, Layout(tmp_path))


def test_the_heads_train_at_their_own_learning_rate(features, prepared_dir):
    # An encoder step of 1e-9 leaves the encoder where it started, the heads' step of 1e-2 moves them.
    params = tiny_params(prepared_dir, train={"lr": 1e-9, "head_lr": 1e-2, "warmup": 0.0})
    run_spec = spec(smart=False, epochs=1)
    torch.manual_seed(0)
    start = build_model(run_spec, params).state_dict()
    trained = _train(run_spec, params, features).state_dict()
    encoder_change = max(float((trained[k] - start[k]).abs().max()) for k in start if k.startswith("encoder."))
    head_change = max(float((trained[k] - start[k]).abs().max()) for k in start if k.startswith("heads."))
    assert encoder_change < 1e-6 < 1e-3 < head_change


# ------------------------------------------------------------------- where training starts

class Starts(TrainingLog):
    """Keeps each start(step, epoch, scores) the loop reports."""

    def __init__(self):
        self.seen = []

    def start(self, step, epoch, scores):
        self.seen.append((step, epoch, scores))


@pytest.mark.parametrize("schedule", ["simultaneous", "sequential"])
def test_each_task_is_scored_on_its_whole_dev_split_right_before_its_first_step(schedule, features, prepared_dir):
    # Random heads and no SMART: the model a task starts from is the one built (simultaneous), or
    # the one its earlier tasks trained (sequential: an epoch per task, QQP, STS, then SST).
    params = tiny_params(prepared_dir, train={"head_init": "random"})
    run_spec = spec(smart=False, schedule=schedule, epochs=1)
    compute = resolve_compute("fp32")
    torch.manual_seed(run_spec.seed)
    built = evaluate(build_model(run_spec, params), features["dev"], params.train.eval_batch_size, compute.device,
                     compute.autocast)[0]
    starts = Starts()
    runs = SingleRun(run_spec, params, features["train"], compute)
    history = train_runs(runs, params, features, compute, logs=[starts]).histories[0]
    begins = probe.first_steps(runs.plans[0])
    assert [(step, epoch) for step, epoch, _ in starts.seen] == \
        ([(0, 0)] if schedule == "simultaneous" else [(begins[t], e) for e, t in enumerate(("qqp", "sts", "sst"))])
    assert {key for _, _, scores in starts.seen for key in scores} == {f"dev/{task}" for task in TASKS}
    assert history.dev_start == {key[4:]: value for _, _, scores in starts.seen for key, value in scores.items()}
    first = "qqp" if schedule == "sequential" else "sst"
    assert history.dev_start[first] == built[first]
    if schedule == "sequential":  # STS starts from the encoder QQP trained, not from the one built
        assert history.dev_start["sts"] != built["sts"]
    else:
        assert history.dev_start == {task: built[task] for task in TASKS}


# ------------------------------------------------------------------------------- resume

RESUME_CASES = {
    "smart_bregman": spec(),
    "smart_bregman_surgery": spec(surgery=True),
    # An epoch per task: a run resumed after QQP's epoch fits the heads of STS and SST only.
    "sequential_probed": spec(schedule="sequential"),
}


def _resume_params(prepared_dir, **train):
    return tiny_params(prepared_dir, train={"epochs": 2, "seed": 3, **train},
                       smart={"mu": 1.0})


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _snapshot(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def uninterrupted(prepared_dir, features, tmp_path_factory):
    """One uninterrupted 2-epoch run per case (with a resume dir: its first epoch's checkpoint is kept)."""
    cache = {}

    def get(case):
        if case not in cache:
            directory = tmp_path_factory.mktemp(f"full_{case}") / "checkpoint"
            epochs = Epochs()
            model = _train(RESUME_CASES[case], _resume_params(prepared_dir), features, resume_dir=directory, log=epochs)
            cache[case] = (_snapshot(model), directory, epochs.seen)
        return cache[case]

    return get


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_interrupted_and_resumed_run_equals_uninterrupted(case, uninterrupted, features, prepared_dir, tmp_path):
    # Fp32 on CPU with one thread: every step is deterministic, so the two runs must agree exactly.
    full_state, full_dir, full_epochs = uninterrupted(case)
    run_spec, params = RESUME_CASES[case], _resume_params(prepared_dir)
    directory = tmp_path / "checkpoint"

    first_log = Epochs()
    first = _train(run_spec, params, features, resume_dir=directory, stop_after_epochs=1, log=first_log)
    first_epochs = first_log.seen
    assert [e for e, _ in first_epochs] == [0]
    assert (directory / "state.pt").exists() and (directory / "teacher.safetensors").exists()
    after_one = _snapshot(first)
    del first

    resumed_log = Epochs()
    resumed = _train(run_spec, params, features, resume_dir=directory, log=resumed_log)
    resumed_epochs = resumed_log.seen
    # The logger is given the finished epoch again, then the new one.
    assert [e for e, _ in resumed_epochs] == list(range(len(full_epochs)))
    assert resumed_epochs[0][1] == first_epochs[0][1]
    resumed_state = _snapshot(resumed)

    assert not _states_equal(after_one, resumed_state), "the second epoch must have trained"
    assert _states_equal(resumed_state, full_state)
    # The EMA teacher and the epoch's logged terms (SMART, Bregman, dev scores) agree too.
    assert _states_equal(load_file(directory / "teacher.safetensors"), load_file(full_dir / "teacher.safetensors"))
    for (_, mine), (_, theirs) in zip(resumed_epochs, full_epochs, strict=True):
        mine = {k: v for k, v in mine.items() if k != "train/seconds"}
        assert mine == {k: v for k, v in theirs.items() if k != "train/seconds"}
        assert any(k.startswith("train/bregman_") for k in mine) and any(k.startswith("train/smart_") for k in mine)


def test_the_spec_not_the_sweep_says_how_long_a_run_trains(features, prepared_dir):
    params = tiny_params(prepared_dir, sweep={"sst_epochs": 3})
    epochs = Epochs()
    _train(spec(schedule="sst_only", smart=False, epochs=1), params, features, log=epochs)
    assert [epoch for epoch, _ in epochs.seen] == [0]


def test_fingerprint_depends_on_spec_and_params(prepared_dir):
    params = _resume_params(prepared_dir)
    assert fingerprint(SPEC, params) == fingerprint(spec(), _resume_params(prepared_dir))
    assert fingerprint(SPEC, params) != fingerprint(SPEC, _resume_params(prepared_dir, lr=2e-5))
    assert fingerprint(SPEC, params) != fingerprint(spec(lambda_s=5.0), params)
    assert fingerprint(SPEC, params) != fingerprint(spec(epochs=3), params)
    assert fingerprint(SPEC, params) != fingerprint(spec(name="other"), params)


def test_resume_dir_from_other_parameters_is_ignored(uninterrupted, features, prepared_dir, tmp_path, caplog):
    full_state, full_dir, _ = uninterrupted("smart_bregman")
    directory = tmp_path / "checkpoint"
    shutil.copytree(full_dir, directory)  # a 2-epoch run's checkpoint, written with lr 1e-5
    other = _resume_params(prepared_dir, lr=2e-5)
    epochs = Epochs()
    with caplog.at_level(logging.INFO, logger="smartmtl.train.loop"):
        model = _train(RESUME_CASES["smart_bregman"], other, features, resume_dir=directory, stop_after_epochs=1,
                       log=epochs)
    assert "written with other parameters" in caplog.text
    # Trained from scratch: one fresh epoch, whose checkpoint replaced the foreign one.
    assert [epoch for epoch, _ in epochs.seen] == [0]
    state = torch.load(directory / "state.pt", weights_only=True)  # tensors and plain values only
    assert state["run_id"] == fingerprint(RESUME_CASES["smart_bregman"], other)
    assert len(state["history"]) == 1
    assert not _states_equal(_snapshot(model), full_state)


# ------------------------------------------------------------------------------- runner

def _read_predictions(path):
    lines = path.read_text().splitlines()
    return lines[0], pd.read_csv(path)


def _check_run_outputs(layout, name, prepared, record, tasks=TASKS, splits=("dev", "test")):
    model_dir = layout.model_dir(name)
    weights = load_file(model_dir / "model.safetensors")
    assert any(key.startswith("encoder.") for key in weights) and "heads.sst.weight" in weights
    run_info = json.loads((model_dir / "run.json").read_text())
    assert run_info["spec"]["name"] == name and "train" in run_info["params"]
    for task in tasks:
        assert {path.name for path in layout.predictions_dir(name).glob(f"{task}-*.csv")} == \
            {f"{task}-{split}.csv" for split in splits}
        for split in splits:
            header, frame = _read_predictions(layout.predictions_dir(name) / f"{task}-{split}.csv")
            assert header == "id,prediction"
            assert list(frame.columns) == ["id", "prediction"]
            expected_ids = load_split(prepared, task, split)["id"].tolist()
            assert frame["id"].astype(str).tolist() == expected_ids  # one row per id, in order
            values = frame["prediction"]
            if task == "qqp":
                assert values.dtype.kind == "i" and set(values) <= {0, 1}
            elif task == "sst":
                assert values.dtype.kind == "i" and set(values) <= set(range(5))
            else:
                assert values.dtype.kind == "f"
                assert values.map(lambda v: float(v) != int(v)).any()  # real scores, not rounded
    metrics = json.loads(layout.metrics_file(name).read_text())
    assert metrics == json.loads(json.dumps(record))
    for split in set(metrics) & {"dev", "test"}:  # the scores are those of the predictions written
        for task in tasks:
            written = pd.read_csv(layout.predictions_dir(name) / f"{task}-{split}.csv")
            gold = load_split(prepared, task, split)["label"].to_numpy()
            # The CSV holds each float32 score's shortest decimal: on near-equal scores (a strongly
            # penalised probe over 4 rows spreads them over 0.01) Pearson moves in its 6th digit.
            assert metrics[split][task] == pytest.approx(task_metric(task, written["prediction"].to_numpy(), gold),
                                                         abs=1e-5)
    assert set(metrics["dev"]) == {*tasks, "overall"}
    # Numbers only (what `dvc metrics` and `dvc exp show` display); the spec lives in run.json.
    assert set(metrics) <= {"dev", "dev_start", "test", "surgery", "train_seconds"}
    assert set(metrics["dev_start"]) == {*tasks, "overall"}  # where training started, scored as "dev" is
    assert all(isinstance(v, float) for split in ("dev", "test") for v in metrics.get(split, {}).values())
    assert not layout.resume_dir(name).exists()  # deleted once the model is complete
    return metrics


def test_runner_writes_outputs_without_test_scores(prepared_dir, tmp_path):
    params = tiny_params(prepared_dir)
    run_spec = table2_spec(params, "concat_smart_star", 0)
    layout = Layout(tmp_path)
    record = run(run_spec, params, layout)
    # No test predictions: only the grid's runs, the ensemble's candidates, may be submitted.
    metrics = _check_run_outputs(layout, run_spec.name, prepared_dir, record, splits=("dev",))
    assert "test" not in metrics
    assert 0 <= metrics["dev"]["sst"] <= 1 and -1 <= metrics["dev"]["sts"] <= 1
    # The last epoch's curve point is the whole dev set's score, computed once for both.
    logged = json.loads((layout.live_dir(run_spec.name) / "metrics.json").read_text())
    assert logged["dev"] == metrics["dev"]
    # DVCLive's steps are optimizer steps: the training loss several times, the dev scores and
    # the epoch number at the epoch's end, and at step 0 (epoch 0) where training started.
    curves = layout.live_dir(run_spec.name) / "plots" / "metrics"
    loss = pd.read_csv(curves / "train" / "loss_sst.tsv", sep="\t")
    epoch = pd.read_csv(curves / "epoch.tsv", sep="\t")
    assert len(loss) > 1 and loss["step"].is_monotonic_increasing and loss["loss_sst"].gt(0).all()
    assert epoch["epoch"].tolist() == list(range(len(epoch))) and epoch["step"].iloc[0] == 0
    assert epoch["step"].iloc[-1] >= loss["step"].iloc[-1]
    for task in TASKS:
        dev = pd.read_csv(curves / "dev" / f"{task}.tsv", sep="\t")
        assert dev["step"].iloc[0] == 0 and dev[task].iloc[0] == metrics["dev_start"][task]


def test_runner_scores_a_labelled_test_split(labelled_prepared_dir, tmp_path):
    params = tiny_params(labelled_prepared_dir)
    # A grid run predicts test; the cosine head, with no STS layer, trains fast and needs no pretraining.
    run_spec = dataclasses.replace(table2_spec(params, "cos_sim", 0), kind="grid")
    layout = Layout(tmp_path)
    record = run(run_spec, params, layout)
    metrics = _check_run_outputs(layout, run_spec.name, labelled_prepared_dir, record)
    assert set(metrics["test"]) == {*TASKS, "overall"}


def test_pretrain_variant_without_checkpoint(prepared_dir, tmp_path):
    params = tiny_params(prepared_dir)
    run_spec = table2_spec(params, "concat_smart_surgery_pretrain", 0)
    assert run_spec.pretrained
    layout = Layout(tmp_path)
    missing = layout.model_dir(PRETRAIN) / "model.safetensors"
    with pytest.raises(FileNotFoundError) as info:
        run(run_spec, params, layout)
    assert str(missing) in str(info.value)
    assert "pretrain" in str(info.value)
    assert not layout.model_dir(run_spec.name).exists()
