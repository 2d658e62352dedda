"""The heads' linear probe before fine-tuning (smartmtl.train.probe) and where the loop fits it."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import threadpoolctl
import torch
from conftest import tiny_params
from sklearn.linear_model import LogisticRegressionCV, RidgeCV

from smartmtl.model.features import load_features
from smartmtl.model.heads import build_model, save_model
from smartmtl.tasks import TASKS, to_unit
from smartmtl.train import loop as train
from smartmtl.train import probe, smart
from smartmtl.train.hardware import resolve_compute
from smartmtl.train.schedules import build_plan
from smartmtl.variants import RunSpec

TASK_NAMES = ("sst", "qqp", "sts")
SPEC = RunSpec(name="tiny", kind="table2", label="Tiny", head="concat", schedule="sequential", epochs=1,
               smart=True, surgery=False, pretrained=False, dropout=0.1, lambda_s=1.0, seed=0, row="tiny")


@pytest.fixture(scope="module")
def data(prepared_dir):
    return load_features(tiny_params(prepared_dir), TASK_NAMES, "concat", splits=("train", "dev"))


def _head_outputs(head: torch.nn.Linear, inputs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return head(torch.as_tensor(inputs, dtype=torch.float32)).numpy()


# ------------------------------------------------------------------------- the fit itself

def _logistic(inputs, labels, folds=probe.FOLDS):
    return LogisticRegressionCV(Cs=1 / probe.LOGISTIC_REGULARISATION, cv=folds, scoring="neg_log_loss", tol=1e-8, l1_ratios=(0.0,),
                                max_iter=10_000, use_legacy_attributes=False).fit(inputs, labels)


def test_a_class_head_is_sklearns_cross_validated_logistic_regression():
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(60, 4))
    labels = np.array([0, 1, 3, 4] * 15)  # class 2 never appears
    inputs[:, 0] += labels  # something to learn
    weight, bias = probe.fit_linear("sst", inputs, labels)
    reference = _logistic(inputs, labels)
    logits = inputs @ weight.T + bias
    np.testing.assert_allclose(logits[:, [0, 1, 3, 4]], reference.decision_function(inputs), atol=1e-9)
    # The absent class keeps no weight, and is never the most likely.
    assert np.all(weight[2] == 0) and bias[2] == bias.min()
    assert 2 not in logits.argmax(1)


def test_a_binary_head_is_one_logit_for_the_positive_class():
    rng = np.random.default_rng(1)
    inputs = rng.normal(size=(80, 3))
    labels = (inputs[:, 0] + 0.1 * rng.normal(size=80) > 0).astype(int)
    weight, bias = probe.fit_linear("qqp", inputs, labels)
    assert weight.shape == (1, 3) and bias.shape == (1,)
    logit = (inputs @ weight.T + bias)[:, 0]
    assert np.mean((logit > 0) == labels) > 0.9


def test_the_regularisation_is_chosen_on_the_rows_not_fixed():
    # Many noisy features, few rows: cross-validation picks a strong penalty; a clean signal, a weak one.
    rng = np.random.default_rng(3)
    noisy = rng.normal(size=(40, 30))
    scores = np.clip(2.5 + noisy[:, 0] + 2 * rng.normal(size=40), 0, 5)
    clean = np.clip(2.5 + noisy[:, 0], 0, 5)
    strong, _ = probe.fit_linear("sts", noisy, scores)
    weak, _ = probe.fit_linear("sts", noisy, clean)
    # The score's unit range is [-1, 1] for 0-5: a slope of 0.4 per feature unit, unshrunk on clean rows.
    assert weak[0, 0] == pytest.approx(0.4, abs=0.01)
    assert 0 < strong[0, 0] < 0.25 * weak[0, 0]


def test_a_score_head_is_a_ridge_fit_of_the_score_on_its_unit_range():
    rng = np.random.default_rng(2)
    inputs = rng.normal(size=(50, 3))
    scores = np.clip(2.5 + inputs @ [1.0, -0.5, 0.2], 0, 5)
    weight, bias = probe.fit_linear("sts", inputs, scores)
    reference = RidgeCV(alphas=probe.REGULARISATION).fit(inputs, to_unit(scores, TASKS["sts"].score_range))
    np.testing.assert_allclose((inputs @ weight.T + bias)[:, 0], reference.predict(inputs), atol=1e-9)


def test_rows_that_cannot_choose_a_penalty_fit_nothing():
    assert probe.fit_linear("qqp", np.ones((5, 2)), np.zeros(5, dtype=int)) is None  # one class
    assert probe.fit_linear("qqp", np.eye(5), np.array([0, 0, 0, 0, 1])) is None  # a class of one row


def test_the_logistic_fit_runs_on_one_blas_thread(monkeypatch):
    # Two OpenBLAS pools (numpy's, scipy's) contending on 2 cores made an 800-row SST fit 17x slower.
    seen = []
    fit = LogisticRegressionCV.fit

    def recording_fit(self, *args, **kwargs):
        seen.extend(pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas")
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(LogisticRegressionCV, "fit", recording_fit)
    rng = np.random.default_rng(0)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        probe.fit_linear("sst", rng.normal(size=(50, 4)), np.arange(50) % 5)
        after = [pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]
    assert seen and set(seen) == {1}
    assert set(after) == {2}  # the caller's threads come back


def test_fit_head_puts_the_fit_into_the_head_of_a_real_model(data, prepared_dir):
    params = tiny_params(prepared_dir)
    compute = resolve_compute("fp32")
    torch.manual_seed(0)
    model = build_model(SPEC, params).train()
    qqp = data["train"]["qqp"]  # 6 rows, 3 a class: 3 folds (SST's 8 rows leave classes of one row: no fit)
    rows = np.arange(len(qqp))
    assert probe.fit_head(model, "qqp", qqp, rows, 8, compute.device, compute.autocast)
    assert model.training  # left in the mode it was in
    inputs = probe.head_inputs(model, "qqp", qqp, rows, 8, compute.device, compute.autocast)
    reference = _logistic(inputs, qqp.labels.numpy(), folds=3)
    outputs = _head_outputs(model.heads["qqp"], inputs)[:, 0]
    np.testing.assert_allclose(outputs, reference.decision_function(inputs), atol=1e-4)
    assert not probe.fit_head(model, "sst", data["train"]["sst"], rows, 8, compute.device, compute.autocast)


def test_rows_only_the_probe_reads_join_the_fit(data, prepared_dir):
    compute = resolve_compute("fp32")
    torch.manual_seed(0)
    model = build_model(SPEC, tiny_params(prepared_dir)).train()
    qqp, extra = data["train"]["qqp"], data["dev"]["qqp"]  # any labelled rows will do as the probe's own
    rows = np.arange(len(qqp))
    inputs = [probe.head_inputs(model, "qqp", f, np.arange(len(f)), 8, compute.device, compute.autocast)
              for f in (qqp, extra)]
    assert probe.fit_head(model, "qqp", qqp, rows, 8, compute.device, compute.autocast, extra)
    both = np.concatenate(inputs)
    reference = _logistic(both, np.concatenate([qqp.labels.numpy(), extra.labels.numpy()]), folds=3)
    np.testing.assert_allclose(_head_outputs(model.heads["qqp"], both)[:, 0], reference.decision_function(both),
                               atol=1e-4)


def test_features_bring_the_probes_rows_where_prepare_wrote_them(prepared_dir, tmp_path):
    directory = shutil.copytree(prepared_dir, tmp_path / "prepared")
    shutil.copy(directory / "sts-dev.parquet", directory / "sts-probe.parquet")
    params = tiny_params(directory)
    loaded = load_features(params, TASK_NAMES, "concat", splits=("train", "dev"))
    assert list(loaded["probe"]) == ["sts"]
    assert loaded["probe"]["sts"].ids == loaded["dev"]["sts"].ids
    assert "probe" not in load_features(params, TASK_NAMES, "concat", splits=("dev",))


def test_the_cosine_head_has_no_score_layer_to_fit(data, prepared_dir):
    compute = resolve_compute("fp32")
    model = build_model(dataclasses.replace(SPEC, head="cosine"), tiny_params(prepared_dir))
    assert not probe.fit_head(model, "sts", data["train"]["sts"], np.arange(4), 8, compute.device, compute.autocast)


# --------------------------------------------------------------------- where and on what

def _plan(data, schedule: str, batch_size=4, seed=0):
    return build_plan(schedule, {t: data["train"][t].lengths for t in TASK_NAMES}, batch_size, seed,
                      epochs=1, sequential_epochs={"qqp": 1, "sts": 1, "sst": 1})


def test_each_head_is_fitted_when_its_task_begins(data):
    sequential = _plan(data, "sequential")
    phases = {t: -(-len(data["train"][t]) // 4) for t in TASK_NAMES}
    assert probe.first_steps(sequential) == {"qqp": 0, "sts": phases["qqp"], "sst": phases["qqp"] + phases["sts"]}
    assert probe.first_steps(_plan(data, "simultaneous")) == {"sst": 0, "sts": 0, "qqp": 0}


def _trained(plan, task: str) -> np.ndarray:
    return np.concatenate([step[task] for epoch in plan for step in epoch if task in step])


def test_the_probe_sees_the_rows_the_run_trains_on_once_each_in_index_order(data, monkeypatch):
    plan = _plan(data, "simultaneous")
    trained = _trained(plan, "sts")
    np.testing.assert_array_equal(probe.planned_rows(plan, "sts"), np.unique(trained))
    monkeypatch.setattr(probe, "PROBE_MAX_ROWS", 3)  # the first three to be trained on, in index order
    _, first = np.unique(trained, return_index=True)
    np.testing.assert_array_equal(probe.planned_rows(plan, "sts"), np.sort(trained[np.sort(first)[:3]]))


def test_seeds_that_train_the_same_rows_give_their_probes_the_same_rows(data):
    one, other = _plan(data, "simultaneous", seed=0), _plan(data, "simultaneous", seed=1)
    assert not np.array_equal(_trained(one, "sst"), _trained(other, "sst"))  # each seed's own order
    np.testing.assert_array_equal(probe.planned_rows(one, "sst"), probe.planned_rows(other, "sst"))


def test_the_loop_fits_each_head_once_at_its_tasks_first_step(data, prepared_dir, monkeypatch):
    params = tiny_params(prepared_dir, train={"head_init": "probe"}, smart={"mu": 1.0})
    fits = []
    fit_head = probe.fit_head

    def recording(model, task, features, rows, *args):
        fits.append((task, sorted(rows), {k: v.clone() for k, v in model.encoder.state_dict().items()}))
        return fit_head(model, task, features, rows, *args)

    monkeypatch.setattr(probe, "fit_head", recording)
    torch.manual_seed(0)
    start = build_model(SPEC, params).encoder.state_dict()
    train.train(SPEC, params, data, resolve_compute("fp32"))
    plan = build_plan("sequential", {t: data["train"][t].lengths for t in TASK_NAMES}, 4, SPEC.seed, epochs=1,
                      sequential_epochs=params.train.sequential_epochs.model_dump())
    assert [task for task, _, _ in fits] == ["qqp", "sts", "sst"]
    for task, rows, _ in fits:
        assert rows == sorted(probe.planned_rows(plan, task))
    # QQP's probe reads the encoder as built; STS's, the encoder QQP's phase trained.
    assert all(torch.equal(fits[0][2][k], start[k]) for k in start)
    assert not all(torch.equal(fits[1][2][k], start[k]) for k in start)


def test_a_pretrained_run_keeps_the_qqp_head_its_checkpoint_trained(data, prepared_dir, tmp_path, monkeypatch):
    params = tiny_params(prepared_dir, train={"head_init": "probe"}, smart={"mu": 1.0})
    torch.manual_seed(1)
    checkpoint = build_model(SPEC, params)
    save_model(checkpoint, tmp_path / "pretrain.safetensors")
    fits, qqp_heads_seen = [], []
    fit_head, step_gradients = probe.fit_head, train.step_gradients

    def recording(model, task, *args):
        fits.append(task)
        return fit_head(model, task, *args)

    def first_step(model, *args, **kwargs):  # the heads as the first optimizer step finds them
        qqp_heads_seen.append(model.heads["qqp"].weight.detach().clone())
        return step_gradients(model, *args, **kwargs)

    monkeypatch.setattr(probe, "fit_head", recording)
    monkeypatch.setattr(train, "step_gradients", first_step)
    spec = dataclasses.replace(SPEC, schedule="simultaneous", pretrained=True)
    train.train(spec, params, data, resolve_compute("fp32"), init=tmp_path / "pretrain.safetensors")
    assert sorted(fits) == ["sst", "sts"]
    assert torch.equal(qqp_heads_seen[0], checkpoint.heads["qqp"].weight)
    assert probe.first_steps(_plan(data, "simultaneous"), train.pretrained_heads(None)) == {"sst": 0, "sts": 0, "qqp": 0}


def test_the_loop_gives_each_head_the_rows_only_its_probe_reads(data, prepared_dir, monkeypatch):
    params = tiny_params(prepared_dir, train={"head_init": "probe"})
    extras = {}
    fit_head = probe.fit_head

    def recording(model, task, features, rows, batch_size, device, autocast, extra=None, cache=None):
        extras[task] = extra
        return fit_head(model, task, features, rows, batch_size, device, autocast, extra, cache)

    monkeypatch.setattr(probe, "fit_head", recording)
    with_probe = {**data, "probe": {"sts": data["dev"]["sts"]}}
    train.train(dataclasses.replace(SPEC, schedule="simultaneous"), params, with_probe, resolve_compute("fp32"))
    assert extras == {"sst": None, "qqp": None, "sts": data["dev"]["sts"]}


def test_random_heads_are_not_fitted(data, prepared_dir, monkeypatch):
    params = tiny_params(prepared_dir, train={"head_init": "random"})
    monkeypatch.setattr(probe, "fit_head", lambda *args: pytest.fail("fitted a head under head_init random"))
    train.train(dataclasses.replace(SPEC, smart=False), params, data, resolve_compute("fp32"))


def test_the_teacher_reads_the_fitted_head_from_the_first_step(data, prepared_dir):
    params = tiny_params(prepared_dir)
    compute = resolve_compute("fp32")
    torch.manual_seed(0)
    model = build_model(SPEC, params).train()
    teacher = smart.EmaTeacher(model, 0.99)
    random_start = teacher.model.heads["qqp"].weight.clone()
    rows = np.arange(len(data["train"]["qqp"]))
    train._probe_head(model, teacher, "qqp", data["train"]["qqp"], rows, params.train.eval_batch_size, compute)
    for name, fitted in model.heads["qqp"].state_dict().items():
        assert torch.equal(teacher.model.heads["qqp"].state_dict()[name], fitted)
    assert not torch.equal(teacher.model.heads["qqp"].weight, random_start)
