"""A fused group of runs (smartmtl.fused.group) equals its runs trained one by one (smartmtl.train.loop)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TRAIN_ROWS, tiny_params

from smartmtl import presets
from smartmtl.config import parse_params
from smartmtl.fused.group import (
    MEMBER_ATTENTION,
    MemberDropout,
    StackedModel,
    check_group,
    clip_per_member,
    group_names,
    named_group,
    run_group,
    train_group,
)
from smartmtl.layout import Layout
from smartmtl.model.features import load_features
from smartmtl.model.heads import build_model, save_model
from smartmtl.train import loop
from smartmtl.train.hardware import resolve_compute
from smartmtl.train.loop import TrainingLog, train
from smartmtl.train.runner import run
from smartmtl.variants import PRETRAIN, RunSpec, planned_runs, pretrain_spec, table2_spec

TASKS = ("sst", "qqp", "sts")
SEEDS = (0, 1, 2)
TOLERANCE = 1e-5
# Dropout 0: with it, SMART's Gaussian starts are a run's only random draws after its model is built.
SPEC = RunSpec(name="row", kind="table2", label="Row", head="concat", schedule="simultaneous", epochs=2,
               smart=True, surgery=False, pretrained=False, dropout=0.0, lambda_s=1.0, seed=0, row="row")
CASES = {
    "plain": dict(smart=False),
    "smart_bregman": dict(smart=True, lambda_s=1.0),
    # Two segments a pair (two noise draws), and surgery: 1 epoch (2 steps), to stay near 30 s.
    "smart_bregman_pairs_apart": dict(smart=True, lambda_s=1.0, head="separate", epochs=1),
    "smart_bregman_surgery": dict(smart=True, lambda_s=1.0, surgery=True, epochs=1),
}


class Steps(TrainingLog):
    """Each logged step's terms (every step at this size: 4 steps < LOG_POINTS)."""

    def __init__(self):
        self.seen = []

    def steps(self, step, terms):
        self.seen.append((step, terms))


def _params(prepared_dir, head_init="random"):
    # Random heads: the members start apart (a probe fits every member's head on the same rows).
    return tiny_params(prepared_dir, model={"dropout": 0.0}, smart={"mu": 1.0}, train={"head_init": head_init})


def _members(case):
    return [dataclasses.replace(SPEC, **CASES[case], name=f"row-s{seed}", seed=seed) for seed in SEEDS]


@pytest.fixture(scope="module")
def features(prepared_dir):
    cache = {}

    def get(head):
        if head not in cache:
            cache[head] = load_features(_params(prepared_dir), TASKS, head, splits=("train", "dev"))
        return cache[head]

    return get


def _max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@pytest.mark.parametrize("case", list(CASES))
def test_a_fused_group_equals_its_runs_one_by_one(case, features, prepared_dir):
    _assert_group_equals_runs(_members(case), _params(prepared_dir), features)


def test_grid_cells_fused_equal_their_runs_one_by_one(features, prepared_dir):
    # Table 3's cells differ in lambda_s: each member weighs its adversarial term by its own.
    specs = [dataclasses.replace(spec, lambda_s=lambda_s, row=f"cell-{lambda_s}")
             for spec, lambda_s in zip(_members("smart_bregman"), (1.0, 5.0, 0.0), strict=True)]
    _assert_group_equals_runs(specs, _params(prepared_dir), features, same_terms=False)


def test_smarts_diagnostics_once_the_teacher_has_moved_equal_the_runs(features, prepared_dir, monkeypatch):
    # On step 0 the teacher is the model, so both log a Bregman gradient ratio of 0: diagnosing
    # step 2 as well compares the ratios where the proximal term pulls.
    monkeypatch.setattr(loop, "DIAGNOSE_EVERY", 2)
    logs = _assert_group_equals_runs(_members("smart_bregman"), _params(prepared_dir), features)
    for log in logs:
        step, terms = log.seen[2]  # the window of step 2 (counted from 0)
        assert step == 3
        assert all(terms[f"train/bregman_grad_ratio_{task}"] > 0 for task in TASKS)
        assert all(terms[f"train/smart_grad_ratio_{task}"] > 0 for task in TASKS)


def test_probed_heads_fused_equal_their_runs_one_by_one(features, prepared_dir):
    # Sequential: STS's and SST's heads are fitted mid-run, each member's on its own rows.
    params = _params(prepared_dir, head_init="probe")
    specs = [dataclasses.replace(spec, schedule="sequential", epochs=1) for spec in _members("smart_bregman")]
    # A logistic fit on 8 rows passes the encoders' last-digit differences on to the head about
    # tenfold (1.2e-5 on an SST bias near 1, measured): the tolerance is ten times the others'.
    # The members' heads start from one fit (the same 8 rows): only their batches' order and
    # SMART's noise set them apart. STS's probe also reads rows no step trains on (data.probe_limit).
    def with_probe_rows(head):
        data = features(head)
        return {**data, "probe": {"sts": data["dev"]["sts"]}}

    _assert_group_equals_runs(specs, params, with_probe_rows, tolerance=10 * TOLERANCE, members_apart=1e-4)


def _assert_group_equals_runs(specs, params, features, same_terms=True, tolerance=TOLERANCE, members_apart=1e-3):
    data = features(specs[0].head)
    compute = resolve_compute("fp32")
    alone = []
    for spec in specs:
        log = Steps()
        model = train(spec, params, data, compute, log=log)
        alone.append((model.state_dict(), log.seen))
    logs = [Steps() for _ in specs]
    fused = [model.state_dict() for model in train_group(specs, params, data, compute, logs=logs)]

    for (weights, steps), fused_weights, fused_log in zip(alone, fused, logs, strict=True):
        assert _max_difference(weights, fused_weights) <= tolerance
        # Simultaneous: an epoch is a pass over SST; sequential: a pass over each task in turn.
        batches = {task: -(-rows // params.train.batch_size) for task, rows in TRAIN_ROWS.items()}
        total = batches["sst"] * specs[0].epochs if specs[0].schedule == "simultaneous" else sum(batches.values())
        steps_run = list(range(1, total + 1))
        assert [step for step, _ in fused_log.seen] == [step for step, _ in steps] == steps_run
        for (_, terms), (_, fused_terms) in zip(steps, fused_log.seen, strict=True):
            # Both log SMART's diagnostics (step 0); the fused group also logs the adversarial term
            # of a member whose lambda_s is 0 (it weighs it by 0).
            for name, value in fused_terms.items():
                if name in terms or same_terms:
                    assert value == pytest.approx(terms[name], abs=tolerance), name
        last_tasks = TASKS if specs[0].schedule == "simultaneous" else ("sst",)
        expected = {f"train/{term}_{task}" for task in last_tasks
                    for term in (("loss", "smart", "bregman") if specs[0].smart else ("loss",))}
        expected |= {"train/surgery_conflict", "train/surgery_cosine"} if specs[0].surgery else set()
        assert set(fused_log.seen[-1][1]) == expected
    if specs[0].surgery:  # PCGrad projected somewhere: the members' task gradients did conflict
        assert any(terms["train/surgery_conflict"] > 0 for log in logs for _, terms in log.seen)
    # The members are three runs, not one run three times: their starts, batches and noise differ.
    assert _max_difference(fused[0], fused[1]) > members_apart and _max_difference(fused[1], fused[2]) > members_apart
    first_loss = "train/loss_sst" if specs[0].schedule == "simultaneous" else "train/loss_qqp"
    assert logs[0].seen[0][1][first_loss] != logs[1].seen[0][1][first_loss]
    return logs


def test_one_adamw_over_stacked_tensors_is_one_adamw_per_member():
    generator = torch.Generator().manual_seed(0)
    shapes = [(3, 5, 4), (3, 7)]
    stacked = [torch.randn(shape, generator=generator).requires_grad_() for shape in shapes]
    alone = [[p[m].detach().clone().requires_grad_() for p in stacked] for m in range(3)]
    settings = dict(betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01, fused=True)
    optimizers = [torch.optim.AdamW([{"params": ps[:1], "lr": 1e-2}, {"params": ps[1:], "lr": 1e-1}], **settings)
                  for ps in [stacked, *alone]]
    for _ in range(5):
        grads = [torch.randn(shape, generator=generator) for shape in shapes]
        for p, g in zip(stacked, grads):
            p.grad = g.clone()
        for m, ps in enumerate(alone):
            for p, g in zip(ps, grads):
                p.grad = g[m].clone()
        for optimizer in optimizers:
            optimizer.step()
    for m, ps in enumerate(alone):
        for p, q in zip(stacked, ps):
            assert torch.allclose(p[m], q, atol=1e-7, rtol=0)


def test_clipping_is_per_member():
    generator = torch.Generator().manual_seed(1)
    holder = torch.nn.Linear(4, 3)
    holder.weight = torch.nn.Parameter(torch.zeros(3, 3, 4))
    holder.bias = torch.nn.Parameter(torch.zeros(3, 3))
    scales = torch.tensor([0.01, 1.0, 100.0])  # one member below the norm, two above
    holder.weight.grad = torch.randn(3, 3, 4, generator=generator) * scales.view(3, 1, 1)
    holder.bias.grad = torch.randn(3, 3, generator=generator) * scales.view(3, 1)
    alone = []
    for m in range(3):
        ps = [torch.nn.Parameter(holder.weight[m].detach().clone()), torch.nn.Parameter(holder.bias[m].detach().clone())]
        ps[0].grad, ps[1].grad = holder.weight.grad[m].clone(), holder.bias.grad[m].clone()
        torch.nn.utils.clip_grad_norm_(ps, 1.0)
        alone.append(ps)
    clip_per_member(holder, 1.0)
    for m, (weight, bias) in enumerate(alone):
        assert torch.allclose(holder.weight.grad[m], weight.grad, rtol=1e-6, atol=0)
        assert torch.allclose(holder.bias.grad[m], bias.grad, rtol=1e-6, atol=0)


def test_a_group_is_one_configuration_with_several_seeds_dropouts_and_lambdas():
    specs = _members("smart_bregman")
    check_group([specs[0], dataclasses.replace(specs[1], lambda_s=5.0, dropout=0.3, row="cell")])
    with pytest.raises(ValueError, match="differ only in their seed, dropout and lambda_s"):
        check_group([specs[0], dataclasses.replace(specs[1], surgery=True)])
    with pytest.raises(ValueError, match="differ only in their seed, dropout and lambda_s"):
        check_group([specs[0], dataclasses.replace(specs[1], head="separate")])


@pytest.mark.parametrize("preset", ["laptop", "paper"])
@pytest.mark.parametrize("cell", ["on the grid", "off the grid"])
def test_the_groups_train_every_planned_run_once(preset, cell):
    raw = presets.render(preset)
    if cell == "off the grid":  # Table 2's Concat+SMART+Pretrain is then table2-cell's own row
        raw["model"]["dropout"] = 0.15
    params = parse_params(raw)
    grouped = [spec for name in group_names(params) for spec in named_group(params, name)]
    planned = planned_runs(params)
    assert sorted(spec.name for spec in grouped) == sorted(spec.name for spec in planned)
    assert {spec.name: spec for spec in grouped} == {spec.name: spec for spec in planned}
    for name in group_names(params):
        check_group(named_group(params, name))
    assert ("table2-cell" in group_names(params)) == (cell == "off the grid")


def test_member_dropout_drops_each_member_at_its_own_rate():
    rates = torch.tensor([0.0, 0.3, 0.9])
    dropout = MemberDropout(0.0).train()
    torch.manual_seed(0)
    out = torch.vmap(lambda rate, x: torch.func.functional_call(dropout, {"rate": rate}, (x,)),
                     randomness="different")(rates, torch.ones(3, 20_000))
    for member, rate in enumerate(rates.tolist()):
        kept = out[member][out[member] != 0]
        assert float((out[member] == 0).float().mean()) == pytest.approx(rate, abs=0.01)
        assert torch.allclose(kept, torch.full_like(kept, 1 / (1 - rate)))
    assert torch.equal(dropout.eval()(torch.ones(4)), torch.ones(4))


def test_members_of_different_dropouts_share_a_skeleton_that_drops_at_each_ones_rate(prepared_dir, features):
    # Two members of one seed (one start), dropout 0 and 0.5, on the same batch in train mode:
    # the first computes exactly what its model computes without dropout; the second, dropping
    # in every layer and in attention, does not; and each comes back with its own nn.Dropout.
    params = _params(prepared_dir)
    models = []
    for dropout in (0.0, 0.5):
        torch.manual_seed(0)
        models.append(build_model(dataclasses.replace(SPEC, dropout=dropout), params).train())
    reference = build_model(SPEC, params)
    reference.load_state_dict(models[0].state_dict())
    stacked = StackedModel(models)
    assert stacked.skeleton.encoder.config._attn_implementation == MEMBER_ATTENTION
    assert not any(isinstance(m, torch.nn.Dropout) for m in stacked.skeleton.modules())
    segments, _ = features("concat")["train"]["sst"].batch(np.arange(4))
    called = set()  # every dropout drops, the attention probabilities' (member_attention) too
    for name, module in stacked.skeleton.named_modules():
        if isinstance(module, MemberDropout):
            module.register_forward_hook(lambda module, args, out, name=name: called.add(name))
    outputs, _ = stacked.run(stacked.parameters(), "sst", [{k: torch.stack([v, v]) for k, v in s.items()}
                                                          for s in segments])
    assert called == {name for name, m in stacked.skeleton.named_modules() if isinstance(m, MemberDropout)}
    assert any(name.endswith("attention.self.dropout") for name in called)
    assert torch.allclose(outputs[0], reference.eval()("sst", segments), atol=1e-5, rtol=0)
    assert (outputs[1] - outputs[0]).abs().max() > 1e-2
    for member, rate in enumerate((0.0, 0.5)):
        dropouts = [m for m in stacked.member(member).modules() if isinstance(m, torch.nn.Dropout)]
        assert len(dropouts) == 3 * 6 + 2 and {d.p for d in dropouts} == {rate}  # 3 a layer, embeddings, head


def test_with_dropout_each_member_draws_its_own_masks_and_replays_them(features, prepared_dir):
    # Two members of one seed: the same start, batches and SMART noise, so only their dropout
    # masks can tell them apart. The teacher equals the student at the first step: its Bregman
    # term is zero only where SMART's forwards replay the clean forward's masks (smart.SameDropout).
    params = tiny_params(prepared_dir, model={"dropout": 0.3}, smart={"mu": 1.0})
    specs = [dataclasses.replace(SPEC, dropout=0.3, epochs=1, name=f"row-{m}") for m in range(2)]
    logs = [Steps() for _ in specs]
    train_group(specs, params, features("concat"), resolve_compute("fp32"), logs=logs)
    first = [log.seen[0][1] for log in logs]
    for terms in first:
        for task in TASKS:
            assert terms[f"train/bregman_{task}"] == pytest.approx(0.0, abs=1e-7)
            assert terms[f"train/smart_{task}"] > 0
    assert all(first[0][f"train/loss_{task}"] != first[1][f"train/loss_{task}"] for task in TASKS)


def test_run_group_writes_each_runs_outputs_as_run_does(prepared_dir, tmp_path):
    # Grid runs (they predict test too) of a pretrained row: each member must start from the
    # pretrain checkpoint as its run does, here one moved away from the bare backbone.
    params = _params(prepared_dir)
    specs = [dataclasses.replace(table2_spec(params, "concat_smart_surgery_pretrain", seed), surgery=False,
                                 kind="grid") for seed in (0, 1)]
    checkpoint = Layout(tmp_path / "pretrain").model_dir(PRETRAIN) / "model.safetensors"
    checkpoint.parent.mkdir(parents=True)
    torch.manual_seed(5)
    pretrained = build_model(pretrain_spec(params), params)
    with torch.no_grad():
        for parameter in pretrained.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    save_model(pretrained, checkpoint)
    alone, fused = Layout(tmp_path / "alone"), Layout(tmp_path / "fused")
    for layout in (alone, fused):
        shutil.copytree(checkpoint.parent, layout.model_dir(PRETRAIN))

    records = [run(spec, params, alone) for spec in specs]
    fused_records = run_group(specs, params, fused)

    for spec, record, fused_record in zip(specs, records, fused_records, strict=True):
        assert fused_record["group"] == 2
        assert fused_record["dev"] == pytest.approx(record["dev"], abs=TOLERANCE)
        for task in TASKS:
            for split in ("dev", "test"):
                ours, theirs = (pd.read_csv(layout.predictions_file(spec.name, task, split))
                                for layout in (fused, alone))
                assert ours["id"].tolist() == theirs["id"].tolist()
                assert np.allclose(ours["prediction"], theirs["prediction"], atol=TOLERANCE, rtol=0)
        assert json.loads(fused.metrics_file(spec.name).read_text()) == fused_record
        assert (fused.model_dir(spec.name) / "model.safetensors").exists()
        assert json.loads((fused.live_dir(spec.name) / "metrics.json").read_text())["dev"] == fused_record["dev"]
    assert records[0]["dev"] != records[1]["dev"]  # two seeds, two runs


class Record(TrainingLog):
    """Everything the loop tells one run's log, in order."""

    def __init__(self):
        self.seen = []

    def steps(self, step, terms):
        self.seen.append(("steps", step, terms))

    def start(self, step, epoch, scores):
        self.seen.append(("start", step, epoch, scores))

    def epoch(self, epoch, step, metrics):
        self.seen.append(("epoch", epoch, step, {k: v for k, v in metrics.items() if k != "train/seconds"}))


def test_an_interrupted_group_resumes_and_equals_an_uninterrupted_one(features, prepared_dir, tmp_path):
    # Two members, SMART, Bregman and surgery, 2 epochs: killed after the first, started again
    # with the same resume directory, the group trains the second epoch only (each member's
    # SMART noise and PCGrad generator continuing) and ends as the uninterrupted group.
    params = _params(prepared_dir)
    specs = [dataclasses.replace(spec, surgery=True, epochs=2) for spec in _members("smart_bregman")[:2]]
    data, compute = features(SPEC.head), resolve_compute("fp32")
    full_logs = [Record() for _ in specs]
    full = train_group(specs, params, data, compute, logs=full_logs, resume_dir=tmp_path / "full")

    directory = tmp_path / "group"
    first_logs = [Record() for _ in specs]
    train_group(specs, params, data, compute, logs=first_logs, resume_dir=directory, stop_after_epochs=1)
    assert (directory / "state.pt").exists() and (directory / "teacher.safetensors").exists()
    resumed_logs = [Record() for _ in specs]
    resumed = train_group(specs, params, data, compute, logs=resumed_logs, resume_dir=directory)

    first_epoch_steps = max(entry[1] for entry in first_logs[0].seen if entry[0] == "steps")
    for model, fused_model, full_log, first_log, resumed_log in zip(full, resumed, full_logs, first_logs,
                                                                    resumed_logs, strict=True):
        assert _max_difference(model.state_dict(), fused_model.state_dict()) == 0
        # Given again: the starts and the first epoch; trained: only the second epoch's steps.
        trained_steps = [entry[1] for entry in resumed_log.seen if entry[0] == "steps"]
        assert trained_steps and min(trained_steps) > first_epoch_steps
        assert [e for e in resumed_log.seen if e[0] != "steps"] == [e for e in full_log.seen if e[0] != "steps"]
        assert [e for e in first_log.seen if e[0] != "steps"] == [e for e in full_log.seen if e[0] != "steps"][:2]
    assert _max_difference(full[0].state_dict(), full[1].state_dict()) > 1e-3
