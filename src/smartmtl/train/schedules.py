"""Which batches each optimizer step sees (Section 4.2, Figure 2).

A plan is a list of epochs; an epoch a list of steps; a step maps each task it trains to
the row indices of its batch. Plans are pure functions of the dataset sizes and the seed,
so a run resumed at epoch e rebuilds the same plan and continues exactly where it stopped.

- ``sequential``: QQP, then STS, then SST, each for its own number of epochs (a fraction
  such as 0.3 trains on a random 30 % of the task);
- ``simultaneous``: an epoch is one pass over SST; each step takes one batch of every
  task; STS cycles within the epoch; QQP continues across epochs, so over all epochs
  training walks through QQP rather than seeing its first batches again and again;
- ``pretrain``: QQP alone (the checkpoint the ``+Pretrain`` variants start from);
- ``sst_only``: SST alone (Figure 3).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from smartmtl.model.features import bucketed_batches

Step = dict[str, np.ndarray]
Plan = list[list[Step]]
SEQUENTIAL_ORDER = ("qqp", "sts", "sst")
STREAM_IDS = {"sst": 0, "qqp": 1, "sts": 2}


def batch_stream(lengths: np.ndarray, batch_size: int, seed: int, task: str) -> Iterator[np.ndarray]:
    """Endless batches of one task: pass k is a fresh shuffle seeded by (seed, task, k)."""
    for k in range(1 << 62):
        generator = np.random.default_rng([seed, STREAM_IDS[task], k])
        yield from bucketed_batches(lengths, batch_size, generator)


def _single_task(task: str, lengths: np.ndarray, batch_size: int, epochs: float, seed: int) -> Plan:
    """``epochs`` passes over one task; a fraction ends with a partial pass (its own epoch)."""
    stream = batch_stream(lengths, batch_size, seed, task)
    per_epoch = -(-len(lengths) // batch_size)
    full, rest = divmod(round(epochs * per_epoch), per_epoch)
    return [[{task: next(stream)} for _ in range(steps)] for steps in [per_epoch] * full + [rest] * (rest > 0)]


def sequential_plan(lengths: dict[str, np.ndarray], batch_size: int, epochs: dict[str, float], seed: int) -> Plan:
    plan: Plan = []
    for task in SEQUENTIAL_ORDER:
        if epochs.get(task):
            plan += _single_task(task, lengths[task], batch_size, epochs[task], seed)
    return plan


def simultaneous_plan(lengths: dict[str, np.ndarray], batch_size: int, epochs: int, seed: int) -> Plan:
    sst = batch_stream(lengths["sst"], batch_size, seed, "sst")
    qqp = batch_stream(lengths["qqp"], batch_size, seed, "qqp")
    per_epoch = -(-len(lengths["sst"]) // batch_size)
    plan = []
    for epoch in range(epochs):
        # STS restarts its cycle every epoch: a fresh shuffle stream per epoch.
        sts = batch_stream(lengths["sts"], batch_size, seed + 7919 * (epoch + 1), "sts")
        plan.append([{"sst": next(sst), "sts": next(sts), "qqp": next(qqp)} for _ in range(per_epoch)])
    return plan


def build_plan(schedule: str, lengths: dict[str, np.ndarray], batch_size: int, seed: int, *,
               epochs: int, sequential_epochs: dict[str, float]) -> Plan:
    if schedule == "sequential":
        return sequential_plan(lengths, batch_size, sequential_epochs, seed)
    if schedule == "simultaneous":
        return simultaneous_plan(lengths, batch_size, epochs, seed)
    if schedule == "pretrain":
        return _single_task("qqp", lengths["qqp"], batch_size, epochs, seed)
    if schedule == "sst_only":
        return _single_task("sst", lengths["sst"], batch_size, epochs, seed)
    raise ValueError(f"unknown schedule {schedule!r}; schedules are sequential, simultaneous, pretrain, sst_only")


# train.decay -> the name of transformers' scheduler that rises over the warm-up, then does that.
SCHEDULERS = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}


def learning_rate_schedule(optimizer, total_steps: int, warmup: float, decay: str):
    """transformers' scheduler for a run of ``total_steps`` optimizer steps: a linear rise over
    the first ``warmup`` fraction, then constant or a decay to 0. It scales every parameter
    group's own learning rate, so the heads keep their ratio to the encoder throughout."""
    from transformers import get_scheduler

    if decay not in SCHEDULERS:
        raise ValueError(f"unknown decay {decay!r}; decays are {', '.join(SCHEDULERS)}")
    return get_scheduler(SCHEDULERS[decay], optimizer, num_warmup_steps=int(warmup * total_steps),
                         num_training_steps=total_steps)


def tasks_of(schedule: str) -> tuple[str, ...]:
    return {"pretrain": ("qqp",), "sst_only": ("sst",)}.get(schedule, ("sst", "qqp", "sts"))
