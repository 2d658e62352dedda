"""Which batches each step sees: sequential and simultaneous plans (Section 4.2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from smartmtl.model.features import bucketed_batches
from smartmtl.train.schedules import (
    build_plan,
    learning_rate_schedule,
    sequential_plan,
    simultaneous_plan,
    tasks_of,
)

BATCH = 4


def _lengths(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(5, 60, size=n)


def _sizes(sst=10, qqp=30, sts=5) -> dict[str, np.ndarray]:
    return {"sst": _lengths(sst, 1), "qqp": _lengths(qqp, 2), "sts": _lengths(sts, 3)}


def _task_batches(plan, task, epochs=None) -> list[np.ndarray]:
    epochs = plan if epochs is None else [plan[e] for e in epochs]
    return [step[task] for epoch in epochs for step in epoch if task in step]


def assert_consecutive_passes(batches: list[np.ndarray], n: int) -> int:
    """Rows come in whole passes: none repeats before all n were seen. Returns full passes."""
    seen: set[int] = set()
    passes = 0
    for batch in batches:
        for index in batch.tolist():
            assert 0 <= index < n
            if len(seen) == n:
                seen.clear()
                passes += 1
            assert index not in seen, f"row {index} repeated after {len(seen)} of {n} rows"
            seen.add(index)
    return passes + (len(seen) == n)


# ------------------------------------------------------------------------ sequential

def test_sequential_visits_qqp_then_sts_then_sst_never_returning():
    lengths = _sizes(sst=9, qqp=10, sts=7)
    epochs = {"qqp": 2, "sts": 1, "sst": 3}
    plan = sequential_plan(lengths, BATCH, epochs, seed=0)
    assert len(plan) == 2 + 1 + 3
    epoch_tasks = []
    for epoch in plan:
        tasks = {task for step in epoch for task in step}
        assert len(tasks) == 1, "a sequential epoch trains one task"
        assert all(len(step) == 1 for step in epoch)
        epoch_tasks.append(tasks.pop())
    assert epoch_tasks == ["qqp", "qqp", "sts", "sst", "sst", "sst"]
    # Each epoch is one pass over its task.
    for epoch, task in zip(plan, epoch_tasks, strict=True):
        n = len(lengths[task])
        assert len(epoch) == math.ceil(n / BATCH)
        assert np.array_equal(np.sort(np.concatenate([step[task] for step in epoch])), np.arange(n))
    # Through build_plan, the ordering does not depend on the dict's order.
    reordered = build_plan("sequential", lengths, BATCH, 0, epochs=99,
                           sequential_epochs={"sst": 3, "sts": 1, "qqp": 2})
    assert [next(iter(epoch[0])) for epoch in reordered] == epoch_tasks


def test_sequential_skips_a_task_with_zero_epochs():
    plan = sequential_plan(_sizes(), BATCH, {"qqp": 0, "sts": 1, "sst": 1}, seed=0)
    assert [next(iter(epoch[0])) for epoch in plan] == ["sts", "sst"]


def test_sequential_fractional_epochs_train_on_part_of_a_task():
    lengths = _sizes(sst=9, qqp=40, sts=7)
    plan = sequential_plan(lengths, BATCH, {"qqp": 0.3, "sts": 1.5, "sst": 1}, seed=0)
    qqp, sts_full, sts_half, sst = plan
    assert len(qqp) == 3, "0.3 of QQP's 10 batches"
    qqp_rows = np.concatenate([step["qqp"] for step in qqp])
    assert len(set(qqp_rows.tolist())) == len(qqp_rows) == 12, "a partial pass repeats no row"
    assert len(sts_full) == 2 and len(sts_half) == 1 and len(sst) == 3
    assert assert_consecutive_passes(_task_batches(plan, "sts"), 7) == 1


# ---------------------------------------------------------------------- simultaneous

@pytest.mark.parametrize("n_qqp", [7, 30])
def test_simultaneous_epochs(n_qqp):
    n_sst, n_sts, epochs = 10, 5, 3
    lengths = _sizes(sst=n_sst, qqp=n_qqp, sts=n_sts)
    plan = simultaneous_plan(lengths, BATCH, epochs, seed=0)
    assert len(plan) == epochs
    per_epoch = math.ceil(n_sst / BATCH)
    for e, epoch in enumerate(plan):
        # SST defines the epoch: one batch of every task per step.
        assert len(epoch) == per_epoch
        assert all(set(step) == {"sst", "qqp", "sts"} for step in epoch)
        # Every SST row exactly once per epoch.
        sst = np.concatenate(_task_batches(plan, "sst", [e]))
        assert np.array_equal(np.sort(sst), np.arange(n_sst))
        # STS cycles within the epoch: it has fewer rows than there are SST steps' rows, so
        # its rows repeat, in whole passes, and every row appears.
        sts_batches = _task_batches(plan, "sts", [e])
        sts = np.concatenate(sts_batches)
        assert len(sts) > n_sts
        assert set(sts.tolist()) == set(range(n_sts))
        assert assert_consecutive_passes(sts_batches, n_sts) >= 1
    # QQP continues across epochs: over all epochs its batches are consecutive passes.
    qqp_batches = _task_batches(plan, "qqp")
    assert_consecutive_passes(qqp_batches, n_qqp)
    first_epoch = np.concatenate(_task_batches(plan, "qqp", [0]))
    second_epoch = np.concatenate(_task_batches(plan, "qqp", [1]))
    if n_qqp >= len(first_epoch) + len(second_epoch):
        # Epoch 2 picks up where epoch 1 stopped: no row seen twice in the same pass.
        assert not set(first_epoch.tolist()) & set(second_epoch.tolist())


def test_qqp_epoch_two_is_not_epoch_one_again():
    lengths = _sizes(sst=8, qqp=40, sts=5)
    plan = simultaneous_plan(lengths, BATCH, 2, seed=0)
    one = [step["qqp"].tolist() for step in plan[0]]
    two = [step["qqp"].tolist() for step in plan[1]]
    assert one != two
    # The one-epoch plan is the first epoch of the two-epoch plan (a resumed run rebuilds it).
    short = simultaneous_plan(lengths, BATCH, 1, seed=0)
    assert [step["qqp"].tolist() for step in short[0]] == one


def _as_lists(plan):
    return [[{task: rows.tolist() for task, rows in step.items()} for step in epoch] for epoch in plan]


@pytest.mark.parametrize("schedule", ["sequential", "simultaneous", "pretrain", "sst_only"])
def test_plans_are_deterministic_per_seed(schedule):
    lengths = _sizes()
    make = lambda seed: _as_lists(build_plan(schedule, lengths, BATCH, seed, epochs=2,  # noqa: E731
                                             sequential_epochs={"qqp": 1, "sts": 2, "sst": 1}))
    assert make(0) == make(0)
    assert make(0) != make(1)


@pytest.mark.parametrize("schedule", ["sequential", "simultaneous", "pretrain", "sst_only"])
def test_batches_are_at_most_batch_size(schedule):
    lengths = _sizes(sst=11, qqp=13, sts=6)
    plan = build_plan(schedule, lengths, BATCH, 3, epochs=2, sequential_epochs={"qqp": 2, "sts": 2, "sst": 2})
    steps = [step for epoch in plan for step in epoch]
    assert steps
    for step in steps:
        assert set(step) <= set(tasks_of(schedule))
        for rows in step.values():
            assert 1 <= len(rows) <= BATCH
            assert len(set(rows.tolist())) == len(rows)


def test_single_task_schedules():
    lengths = _sizes(sst=9, qqp=6)
    pretrain = build_plan("pretrain", lengths, BATCH, 0, epochs=2, sequential_epochs={})
    assert len(pretrain) == 2 and all(set(step) == {"qqp"} for epoch in pretrain for step in epoch)
    sst_only = build_plan("sst_only", lengths, BATCH, 0, epochs=1, sequential_epochs={})
    assert len(sst_only[0]) == 3 and all(set(step) == {"sst"} for step in sst_only[0])
    with pytest.raises(ValueError, match="unknown schedule 'roundrobin'"):
        build_plan("roundrobin", lengths, BATCH, 0, epochs=1, sequential_epochs={})


def test_bucketed_batches_have_less_padding_than_random():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 120, size=2000)
    batch = 16

    def padded(batches):  # tokens the encoder sees: each batch pads to its longest row
        return sum(len(b) * int(lengths[b].max()) for b in batches)

    bucketed = bucketed_batches(lengths, batch, np.random.default_rng(1))
    order = np.random.default_rng(1).permutation(len(lengths))
    random = [order[i: i + batch] for i in range(0, len(order), batch)]
    # Both are one full pass.
    assert np.array_equal(np.sort(np.concatenate(bucketed)), np.arange(len(lengths)))
    assert all(len(b) <= batch for b in bucketed)
    assert padded(bucketed) < 0.8 * padded(random)
    # The plans use bucketed batches too.
    plan = build_plan("sst_only", {"sst": lengths}, batch, 0, epochs=1, sequential_epochs={})
    assert padded([step["sst"] for step in plan[0]]) < 0.8 * padded(random)
    # And they are still shuffled: the batches are not in length order.
    maxima = [int(lengths[b].max()) for b in bucketed]
    assert maxima != sorted(maxima) and maxima != sorted(maxima, reverse=True)


def _rates(total: int, warmup: float, decay: str, encoder_lr=1e-4, head_lr=2e-3) -> list[tuple[float, float]]:
    """Each optimizer step's (encoder, head) learning rate under the run's schedule."""
    encoder, head = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW([{"params": encoder.parameters(), "lr": encoder_lr},
                                   {"params": head.parameters(), "lr": head_lr}])
    schedule = learning_rate_schedule(optimizer, total, warmup, decay)
    rates = []
    for _ in range(total):
        rates.append(tuple(group["lr"] for group in optimizer.param_groups))
        optimizer.step()
        schedule.step()
    return rates


@pytest.mark.parametrize("decay", ["constant", "linear", "cosine"])
def test_the_heads_keep_their_own_learning_rate_through_the_schedule(decay):
    rates = _rates(100, warmup=0.1, decay=decay)
    assert rates[10] == pytest.approx((1e-4, 2e-3))  # the warm-up ends at each group's peak
    assert all(head == pytest.approx(20 * encoder) for encoder, head in rates)


def test_learning_rate_warms_up_then_holds_or_falls_to_zero():
    constant = [encoder for encoder, _ in _rates(100, warmup=0.1, decay="constant")]
    linear = [encoder for encoder, _ in _rates(100, warmup=0.1, decay="linear")]
    for rates in (constant, linear):
        assert all(a < b for a, b in zip(rates[:10], rates[1:11], strict=False))  # a rise over ten steps
    assert constant[10:] == [pytest.approx(1e-4)] * 90
    assert all(a > b for a, b in zip(linear[10:], linear[11:], strict=False))
    assert linear[-1] == pytest.approx(1e-4 / 90)  # one step before zero


def test_learning_rate_without_warmup_starts_at_the_peak():
    assert _rates(50, warmup=0.0, decay="constant")[0][0] == pytest.approx(1e-4)
    assert _rates(50, warmup=0.0, decay="linear")[25][0] == pytest.approx(5e-5)
    with pytest.raises(ValueError, match="unknown decay"):
        _rates(50, warmup=0.0, decay="stepwise")
