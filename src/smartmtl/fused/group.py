"""Horizontal fusion (issue 26): train a group of runs as one model, the runs of one configuration
with several seeds, or the cells of a dropout x lambda_s grid (Table 3) with theirs.

The M members' weights are stacked along a new first dimension (one tensor per parameter, as
``torch.func.stack_module_state`` makes them) and every forward is one ``vmap`` over
``functional_call`` of a single skeleton model, so that one kernel launch serves M runs: on a
GPU at batch 8 a step is bound by kernel launches, not arithmetic (docs/speed.md).

Each member stays the run it would be alone (:func:`smartmtl.train.loop.train`):

* **its model**: built as ``SingleRun`` builds it, ``torch.manual_seed(seed)`` then ``build_model``,
  at its own dropout: where the members' dropouts differ, every dropout of the shared skeleton
  (BERT's attention probabilities included) is a :class:`MemberDropout`, whose rate is a stacked
  tensor like the weights;
* **its data order**: its own plan, ``build_plan(..., seed)``; a step's batches are padded to the
  longest member's length with attention mask 0 (the encoder gets the additive 4-D mask, which
  ``vmap`` can trace; transformers' 2-D mask path branches on the data). Members whose batch has
  a different number of rows (the short last batch of a pass) are vmapped in separate groups;
* **its optimizer**: AdamW is elementwise, so one AdamW over the stacked tensors, with the
  encoder's and the heads' learning rates as its two groups, is M independent AdamWs, and the
  learning-rate schedule is the same for all;
* **its gradient clipping**: the global norm is taken per member, over dim 0 of the stacked grads;
* **its SMART perturbation**: :func:`smartmtl.smart.adversarial_term` itself, on the stacked site
  outputs, with the member's own random stream for its noise (:class:`MemberNoise`), weighted by
  the member's own lambda_s, and
* **its Bregman teacher**: :class:`smartmtl.smart.EmaTeacher` over the stacked parameters (the
  moving average is elementwise too).

With dropout 0 the only random draws after a model is built are SMART's Gaussian starts, so a
group equals its runs trained one by one (tests/test_fused.py: losses and weights within
1e-5 in fp32). Gradient surgery combines each member's task gradients with its own PCGrad
generator (a loop over the members: pcgrad branches on Python floats). Left out for now
(docs/fused.md): with dropout on, each member draws its own masks (``vmap(randomness=
"different")``, replayed across SMART's forwards by smart.SameDropout) but not the masks its
run alone would draw; several processes.

The group trains in the one loop a run trains in, :func:`smartmtl.train.loop.train_runs`
(its optimizer, schedule, teacher, probes, logs, dev scores and resume checkpoints):
:class:`StackedRuns` is what it trains, as ``train.loop.SingleRun`` is for a run.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import shutil
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap
from transformers import AttentionInterface

from smartmtl.config import Params
from smartmtl.layout import Layout
from smartmtl.model.features import TaskFeatures, load_features
from smartmtl.model.heads import MultitaskModel, build_model
from smartmtl.model.inference import evaluate
from smartmtl.tasks import TASKS, task_loss
from smartmtl.train import distributed, pcgrad, probe, smart
from smartmtl.train.hardware import Compute, resolve_compute
from smartmtl.train.loop import StepTerms, TrainingLog, fingerprint, run_data, run_plan, smart_settings, train_runs
from smartmtl.train.schedules import tasks_of
from smartmtl.variants import (
    TABLE2_CELL,
    RunSpec,
    VariantError,
    planned_runs,
    run_name,
    smart_pretrain_row,
    table2_cell_seeds,
)

# --- the stacked model --------------------------------------------------------------------

def _set_parameter(module: nn.Module, name: str, value: Tensor) -> None:
    owner, _, leaf = name.rpartition(".")
    setattr(module.get_submodule(owner) if owner else module, leaf, nn.Parameter(value))


def _additive_mask(module, args, kwargs):
    """The encoder's 2-D padding mask as the additive 4-D mask transformers uses as it is."""
    mask = kwargs.get("attention_mask")
    if mask is not None and mask.dim() == 2:
        kwargs["attention_mask"] = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
    return args, kwargs


class MemberDropout(nn.Module):
    """``nn.Dropout`` whose probability is a buffer, ``rate``: ``functional_call`` swaps in each
    member's inside vmap, so that one skeleton drops at M rates. A rate of 0 keeps every unit
    (a uniform draw is never below 0), so such a member computes what its run alone does."""

    # What BERT's self-attention reads and hands its attention function as the probability
    # dropout: 0, since member_attention applies this module itself.
    p = 0.0

    def __init__(self, rate: float):
        super().__init__()
        self.register_buffer("rate", torch.tensor(float(rate)))

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return x
        keep = torch.rand_like(x, dtype=torch.float32) >= self.rate
        return x * (keep / (1.0 - self.rate)).to(x.dtype)


def member_attention(module: nn.Module, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None,
                     scaling: float | None = None, dropout: float = 0.0, **kwargs) -> tuple[Tensor, Tensor]:
    """transformers' eager attention, with the attention probabilities dropped by the module's own
    ``dropout`` (a MemberDropout) rather than at the Python float it passes (``dropout``, 0)."""
    scaling = query.size(-1) ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    weights = module.dropout(torch.softmax(scores, dim=-1))
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


MEMBER_ATTENTION = "smartmtl_member_eager"
AttentionInterface.register(MEMBER_ATTENTION, member_attention)


def _dropout_rates(models: Sequence[nn.Module]) -> dict[str, list[float]]:
    """Each ``nn.Dropout`` of the models (by name) and its probability in each member."""
    return {name: [m.get_submodule(name).p for m in models]
            for name, module in models[0].named_modules() if isinstance(module, nn.Dropout)}


class StackedModel:
    """M models of one architecture as one: ``holder`` is a copy of the first whose parameters
    are the members' stacked along dim 0 (it is never called; it owns the tensors the optimizer,
    the clipping and the teacher see), ``skeleton`` the module ``vmap(functional_call)`` runs.
    Where the members' dropouts differ, ``rates`` holds each MemberDropout's stacked rate."""

    def __init__(self, models: Sequence[MultitaskModel], attention: str | None = "eager"):
        first = models[0]
        self._attention = first.encoder.config._attn_implementation
        self.members = len(models)
        self._dropouts = _dropout_rates(models)
        self.rates: dict[str, Tensor] = {}
        if any(len(set(rates)) > 1 for rates in self._dropouts.values()):
            if attention not in ("eager", MEMBER_ATTENTION):
                raise ValueError(f"members of different dropouts train with eager attention, not {attention!r}")
            attention = MEMBER_ATTENTION
            device = next(first.parameters()).device
            for name, rates in self._dropouts.items():
                owner, _, leaf = name.rpartition(".")
                setattr(first.get_submodule(owner) if owner else first, leaf, MemberDropout(rates[0]).to(device))
                self.rates[f"{name}.rate"] = torch.tensor(rates, device=device)
        self.holder = copy.deepcopy(first)
        with torch.no_grad():
            for name, _ in first.named_parameters():
                _set_parameter(self.holder, name, torch.stack([m.get_parameter(name).detach() for m in models]))
        self.skeleton = first
        for p in self.skeleton.parameters():
            p.requires_grad_(False)
        self._mask_hook = self.skeleton.encoder.register_forward_pre_hook(_additive_mask, with_kwargs=True)
        if attention is not None:  # vmap has no batching rule for the fused SDPA kernels: it loops over members
            self.skeleton.encoder.set_attn_implementation(attention)

    def parameters(self, module: nn.Module | None = None, members: Tensor | None = None) -> dict[str, Tensor]:
        """``module``'s (by default the holder's) stacked parameters and the dropout rates, of
        ``members`` only if given: what ``functional_call`` gives the skeleton."""
        named = {**dict((module or self.holder).named_parameters()), **self.rates}
        return named if members is None else {name: p[members] for name, p in named.items()}

    def member(self, index: int) -> MultitaskModel:
        """Member ``index`` as a model of its own (a copy)."""
        self._mask_hook.remove()  # a model of its own takes the 2-D mask
        model = copy.deepcopy(self.skeleton)
        self._mask_hook = self.skeleton.encoder.register_forward_pre_hook(_additive_mask, with_kwargs=True)
        model.encoder.set_attn_implementation(self._attention)
        if self.rates:
            for name, rates in self._dropouts.items():
                owner, _, leaf = name.rpartition(".")
                setattr(model.get_submodule(owner) if owner else model, leaf, nn.Dropout(rates[index]))
        with torch.no_grad():
            for name, stacked in self.holder.named_parameters():
                _set_parameter(model, name, stacked[index].detach().clone())
        return model

    def view(self, index: int) -> MemberView:
        """Member ``index`` as a model to score or probe, on its rows of the stacked parameters (no copy)."""
        return MemberView(self, index)

    def run(self, stacked: dict[str, Tensor], task: str, segments: list[dict[str, Tensor]],
            site: str | None = None, deltas: Sequence[Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Every member's output for its own batch (``segments`` stacked along dim 0), and, when
        ``site`` is named, the site's outputs; ``deltas`` (stacked) are added there."""
        at = self.skeleton.perturbation_site(site) if site is not None else None

        def one(params, segs, ds):
            if at is None:
                return functional_call(self.skeleton, params, (task, segs)), ()
            with smart.at_site(at, ds) as outputs:
                output = functional_call(self.skeleton, params, (task, segs))
            return output, tuple(outputs)

        in_dims = (0, 0, None if deltas is None else 0)
        return vmap(one, in_dims=in_dims, randomness="different")(stacked, segments, deltas)


class MemberView(nn.Module):
    """Member ``index`` of a StackedModel, called as its model is (``view(task, segments)``), for
    scoring and probing: the skeleton run on the member's rows of the stacked parameters, views
    that follow the training, rather than a copy of the model made for each score and probe.
    ``heads`` are the skeleton's (their forward hooks see the member's head inputs; their
    weights are not the member's)."""

    def __init__(self, stacked: StackedModel, index: int):
        super().__init__()
        self.skeleton, self.heads = stacked.skeleton, stacked.skeleton.heads  # eval() and train() reach them
        self._stacked, self._index = stacked, index

    def forward(self, task: str, segments: list[dict[str, Tensor]]) -> Tensor:
        params = {name: p[self._index] for name, p in self._stacked.parameters().items()}
        return functional_call(self.skeleton, params, (task, segments))


# --- per-member noise for SMART -----------------------------------------------------------

class MemberNoise:
    """SMART's noise for a stacked [G, B, T, H] input: each member's slice drawn from that
    member's own random stream, at its own length T_g, so that it is the very noise the
    member's separate run draws (``adversarial_term`` draws once per segment, in order).
    Member streams are the global generator's states, kept in ``states``; the global one is put
    back after each draw, so that dropout (drawn from it) is what :class:`smart.SameDropout`
    replays. ``members``: the group's members drawn for, by index into ``states``;
    ``lengths[segment][g]``: member g's own sequence length in that segment."""

    def __init__(self, states: list[Tensor], members: list[int], lengths: list[list[int]], device: torch.device):
        self.states, self.members, self.lengths, self.device = states, members, lengths, device
        self.segment = 0

    def __call__(self, like: Tensor) -> Tensor:
        out = torch.zeros(like.shape, dtype=torch.float32, device=like.device)
        outer = smart.rng_state(self.device)
        for g, member in enumerate(self.members):
            length = self.lengths[self.segment][g]
            smart.set_rng_state(self.device, self.states[member])
            out[g, :, :length] = torch.randn(out.shape[1], length, *out.shape[3:], dtype=out.dtype,
                                             device=out.device)
            self.states[member] = smart.rng_state(self.device)
        smart.set_rng_state(self.device, outer)
        self.segment += 1
        return out


class _PerMember:
    """A divergence for stacked outputs: each member's own, summed (members are independent, so
    the sum's gradient is each member's); the vector of the last call is kept for the logs."""

    def __init__(self, divergence):
        self.divergence = vmap(divergence)
        self.last: Tensor | None = None

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        self.last = self.divergence(a, b)
        return self.last.sum()


class _Site(nn.Module):
    """Where ``adversarial_term`` adds its perturbation in the fused step: called once per segment
    outside vmap on zeros, its hook's output is the stacked delta the vmapped forward adds."""

    def forward(self, x: Tensor) -> Tensor:
        return x


# --- the stacked batch --------------------------------------------------------------------

def _pad_to(tensor: Tensor, width: int) -> Tensor:
    return F.pad(tensor, (0, width - tensor.shape[-1]))


def stack_batches(batches: list[tuple[list[dict[str, Tensor]], Tensor]]) -> tuple[list[dict[str, Tensor]], Tensor,
                                                                                    list[list[int]]]:
    """Members' batches (of equal rows) as one: each segment's tensors padded to the longest and
    stacked; the labels stacked; and each member's own length per segment."""
    segments, lengths = [], []
    for k in range(len(batches[0][0])):
        width = max(segs[k]["input_ids"].shape[-1] for segs, _ in batches)
        segments.append({key: torch.stack([_pad_to(segs[k][key], width) for segs, _ in batches])
                         for key in batches[0][0][k]})
        lengths.append([segs[k]["input_ids"].shape[-1] for segs, _ in batches])
    return segments, torch.stack([labels for _, labels in batches]), lengths


# --- one step -----------------------------------------------------------------------------

class StackedRuns:
    """A group of runs as what :func:`smartmtl.train.loop.train_runs` trains: the members built
    as train.loop.SingleRun builds its run (seeded, then build_model), stacked (``stacked``;
    ``model``: its holder, whose parameters the loop's one AdamW, its teacher and resume see),
    each member's plan, random stream (``states``: SMART's noise) and surgery generator."""

    def __init__(self, specs: Sequence[RunSpec], params: Params, train_data: dict[str, TaskFeatures],
                 compute: Compute, init: Path | None = None, attention: str | None = "eager"):
        check_group(specs)
        self.specs, self.compute, self.init = list(specs), compute, init
        self.name = f"{specs[0].name} and {len(specs) - 1} more" if len(specs) > 1 else specs[0].name
        models, self.states = [], []
        for member in specs:
            torch.manual_seed(member.seed)
            models.append(build_model(member, params, init).to(compute.device).train())
            self.states.append(smart.rng_state(compute.device))
        self.stacked = StackedModel(models, attention)
        del models
        self.model = self.stacked.holder.train()
        self.settings = smart_settings(specs[0], params)
        self.lambda_s = tuple(member.lambda_s for member in specs)  # each member's weight of its adversarial term
        self.surgery = params.surgery.reduction if specs[0].surgery else None
        self.surgery_rngs = [torch.Generator().manual_seed(member.seed) for member in specs]
        self.plans = [run_plan(member, params, train_data) for member in specs]
        shape = [len(epoch) for epoch in self.plans[0]]
        if any([len(epoch) for epoch in plan] != shape for plan in self.plans):
            raise NotImplementedError("the members' plans differ in length: a sequential fraction of a task")
        self.run_id = hashlib.sha256("".join(fingerprint(member, params) for member in specs).encode()).hexdigest()[:16]

    @property
    def members(self) -> int:
        return len(self.specs)

    def gradients(self, steps: list[dict[str, np.ndarray]], train_data: dict[str, TaskFeatures], teacher,
                  terms: list[StepTerms], diagnose: bool) -> None:
        group_step(self, steps, train_data, teacher, terms, self.compute.autocast,
                   diagnose=diagnose and self.settings is not None)

    def clip(self, max_norm: float) -> None:
        clip_per_member(self.model, max_norm)

    @torch.no_grad()
    def fit_probe(self, task: str, features: TaskFeatures, rows: Sequence[np.ndarray], batch_size: int, teacher,
                  extra: TaskFeatures | None = None) -> None:
        """Each member's ``task`` head as a run's is fitted (smartmtl.train.probe), on its own rows and
        ``extra``, in the stack and in the teacher, which reads the student's heads."""
        owners = [self.model] + ([teacher.model] if teacher is not None else [])
        for index, member_rows in enumerate(rows):
            fitted = probe.fitted_head(self.stacked.view(index), task, features, member_rows, batch_size,
                                       self.compute.device, self.compute.autocast, extra)
            if fitted is not None:
                for owner in owners:
                    owner.heads[task].weight[index].copy_(fitted[0])
                    owner.heads[task].bias[index].copy_(fitted[1])

    def score(self, dev: dict[str, TaskFeatures], batch_size: int) -> list[dict[str, float]]:
        return [evaluate(self.stacked.view(index), dev, batch_size, self.compute.device, self.compute.autocast)[0]
                for index in range(self.members)]

    def models(self) -> list[MultitaskModel]:
        return [self.stacked.member(index).train() for index in range(self.members)]

    def random_state(self) -> dict[str, Tensor]:
        return {"torch_rng": torch.get_rng_state(), "member_rngs": torch.stack(self.states),
                "surgery_rngs": torch.stack([rng.get_state() for rng in self.surgery_rngs])}

    def set_random_state(self, state: dict[str, Tensor]) -> None:
        torch.set_rng_state(state["torch_rng"])
        self.states = [row.clone() for row in state["member_rngs"]]  # a generator takes a tensor of its own
        for rng, rng_state in zip(self.surgery_rngs, state["surgery_rngs"], strict=True):
            rng.set_state(rng_state.clone())


def group_objective(group: StackedRuns, teacher: smart.EmaTeacher | None, terms: list[StepTerms], task: str,
                    members: list[int], batches, diagnose: bool = False) -> Tensor:
    """The sum over ``members`` of each one's task_objective (smartmtl.train.loop) on its own batch,
    with SMART's diagnostics where ``diagnose`` (each member's, as its run alone logs them)."""
    segments, labels, lengths = stack_batches(batches)
    index = None if members == list(range(group.stacked.members)) else torch.tensor(members, device=group.compute.device)
    params = group.stacked.parameters(members=index)
    settings = group.settings
    site = settings.site if settings is not None else None
    # As in task_objective: every forward of the step draws the clean forward's dropout masks
    # (each member its own, vmap's randomness="different"); nothing is drawn with dropout 0.
    same_dropout = smart.SameDropout(group.compute.device) if settings is not None else None
    output, clean_inputs = group.stacked.run(params, task, segments, site)
    losses = vmap(functools.partial(task_loss, task))(output, labels)
    for g, member in enumerate(members):
        terms[member].add(f"loss_{task}", losses[g])
    objective = losses
    if settings is None:
        return objective.sum()
    divergence = TASKS[task].divergence
    rows = torch.tensor(members, device=group.compute.device)
    shared = group.stacked.holder.shared_parameters()
    # train.loop's gradient ratios (a term's gradient norm over the loss's) share the loss's norms.
    loss_norms = _gradient_norms(losses, shared, rows).clamp_min(1e-30) if diagnose else None
    if any(weight > 0 for weight in group.lambda_s):
        per_member, site_proxy = _PerMember(divergence), _Site()
        token_masks = [segment["attention_mask"] for segment in segments]

        def perturbed() -> Tensor:
            deltas = [site_proxy(torch.zeros_like(x)) for x in clean_inputs]  # the hook adds adversarial_term's
            return group.stacked.run(params, task, segments, site, deltas)[0]

        _, deltas = smart.adversarial_term(perturbed, site_proxy, list(clean_inputs), output, per_member,
                                           settings.perturbation, token_masks, same_dropout,
                                           noise=MemberNoise(group.states, members, lengths, group.compute.device))
        diagnostics = {}
        if diagnose:
            same_dropout.replay()
            with torch.no_grad():  # the same forward without the perturbation: dropout and rounding
                diagnostics[f"smart_floor_{task}"] = vmap(divergence)(group.stacked.run(params, task, segments)[0],
                                                                      output)
            diagnostics[f"smart_delta_{task}"] = vmap(functools.partial(smart.relative_size,
                                                                        norm=settings.perturbation.norm))(
                deltas, list(clean_inputs), token_masks)
            diagnostics[f"smart_grad_ratio_{task}"] = _gradient_norms(per_member.last, shared, rows) / loss_norms
        for g, member in enumerate(members):
            terms[member].add(f"smart_{task}", per_member.last[g])
            for name, values in diagnostics.items():
                terms[member].add(name, values[g])
        weights = torch.tensor([group.lambda_s[m] for m in members], device=group.compute.device)
        objective = objective + weights * per_member.last
    if teacher is not None and settings.mu > 0:
        same_dropout.replay()
        with torch.no_grad():
            teacher_params = group.stacked.parameters(teacher.model, index)
            taught = group.stacked.run(teacher_params, task, segments)[0]
        bregman = vmap(functools.partial(smart.bregman_loss, divergence=divergence))(output, taught)
        ratios = _gradient_norms(bregman, shared, rows) / loss_norms if diagnose else None
        for g, member in enumerate(members):
            terms[member].add(f"bregman_{task}", bregman[g])
            if ratios is not None:
                terms[member].add(f"bregman_grad_ratio_{task}", ratios[g])
        objective = objective + settings.mu * bregman
    same_dropout.close()
    return objective.sum()


def _gradient_norms(value: Tensor, shared: Sequence[Tensor], rows: Tensor) -> Tensor:
    """For each member in ``rows``, the norm of its ``value``'s gradient over its encoder's parameters
    (the members are independent, so the gradient of the sum over them holds each one's in its row),
    without touching .grad."""
    grads = torch.autograd.grad(value.sum(), shared, retain_graph=True, allow_unused=True)
    return _member_norms([g for g in grads if g is not None])[rows]


def _member_norms(stacked: Sequence[Tensor]) -> Tensor:
    """Each member's global 2-norm over ``stacked`` tensors (member m in row m of each), in float32,
    without copying them."""
    members = stacked[0].shape[0]
    per_tensor = [torch.linalg.vector_norm(t.reshape(members, -1), dim=1, dtype=torch.float32) for t in stacked]
    return torch.linalg.vector_norm(torch.stack(per_tensor, dim=1), dim=1)


def clip_per_member(stacked: nn.Module, max_norm: float) -> Tensor:
    """``clip_grad_norm_`` for each member: its global 2-norm over all its gradients; returns the norms."""
    grads = [p.grad for p in stacked.parameters() if p.grad is not None]
    norms = _member_norms(grads)
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view(-1, *([1] * (g.dim() - 1))).to(g.dtype))
    return norms


def _flat_per_member(params: Sequence[Tensor]) -> Tensor:
    """The stacked gradients as one [M, N] float32 matrix: row m is member m's pcgrad.flatten_grads."""
    members = params[0].shape[0]
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(members, -1).float()
                      for p in params], dim=1)


def _surgery(group: StackedRuns, terms: list[StepTerms], shared: Sequence[Tensor], task_grads: list[Tensor]) -> None:
    """PCGrad for each member (pcgrad.project_conflicting with its own generator), written into
    the stacked gradients as pcgrad.surgery_backward writes a run's; its cosines logged."""
    combined = []
    for member in range(group.stacked.members):
        grads = [g[member] for g in task_grads]
        combined.append(pcgrad.project_conflicting(grads, group.surgery_rngs[member], group.surgery))
        cosines = pcgrad.pairwise_cosines(grads)
        if len(cosines):
            terms[member].add("surgery_conflict", (cosines < 0).any().float())
            terms[member].add("surgery_cosine", cosines.mean())
    flat, offset = torch.stack(combined), 0
    for p in shared:
        size = p[0].numel()
        p.grad = flat[:, offset:offset + size].reshape(p.shape).to(p.dtype).clone()
        offset += size


def group_step(group: StackedRuns, steps: list[dict[str, np.ndarray]], train_data: dict[str, TaskFeatures],
               teacher: smart.EmaTeacher | None, terms: list[StepTerms], autocast, diagnose: bool = False) -> None:
    """One optimizer step's gradients for every member (``steps[m]``: member m's batches). With
    surgery each task's shared-encoder gradients are set aside and combined per member."""
    shared = group.stacked.holder.shared_parameters()
    task_grads = []
    for task in steps[0]:
        if group.surgery:
            for p in shared:
                p.grad = None
        by_rows: dict[int, list[int]] = {}
        for member, batches in enumerate(steps):
            by_rows.setdefault(len(batches[task]), []).append(member)
        for members in by_rows.values():
            batches = [train_data[task].batch(steps[m][task], group.compute.device) for m in members]
            with autocast():
                objective = group_objective(group, teacher, terms, task, members, batches, diagnose)
            objective.backward()
        if group.surgery:
            task_grads.append(_flat_per_member(shared))
    if group.surgery:
        _surgery(group, terms, shared, task_grads)


# --- the loop -----------------------------------------------------------------------------

def check_group(specs: Sequence[RunSpec]) -> None:
    """A group is one configuration trained with several seeds, dropouts and lambda_s."""
    if not specs:
        raise ValueError("a fused group needs at least one run")

    def configuration(spec: RunSpec) -> RunSpec:
        return replace(spec, name="", row="", label="", seed=0, dropout=0.0, lambda_s=0.0)

    for spec in specs[1:]:
        if configuration(spec) != configuration(specs[0]):
            raise ValueError(f"runs of a fused group differ only in their seed, dropout and lambda_s: "
                             f"{specs[0]} vs {spec}")
    if distributed.world_size() > 1:
        raise NotImplementedError("a fused group trains in one process")


def group_of(spec: RunSpec) -> str:
    """The group a planned run trains in: ``table3`` for the grid's runs (table2-cell's too, when
    they are more seeds of a cell), ``figure3`` for the SST-only lambda_s runs, else its row."""
    return {"grid": "table3", "sst_lambda": "figure3"}.get(spec.kind, spec.row)


def group_names(params: Params) -> list[str]:
    """Groups that together train every run of params.yaml once (variants.planned_runs): each
    Table 2 row, ``table3``, ``table2-cell`` where that is a row of its own, and ``figure3``."""
    return list(dict.fromkeys(group_of(spec) for spec in planned_runs(params)))


def named_group(params: Params, name: str, seeds: Sequence[int] | None = None) -> list[RunSpec]:
    """The planned runs of group ``name`` (:func:`group_of`), of ``seeds`` only if given."""
    specs = [spec for spec in planned_runs(params)
             if group_of(spec) == name and (seeds is None or spec.seed in seeds)]
    if not specs:
        raise VariantError(f"params.yaml plans no run of group {name!r}"
                           f"{f' with seeds {list(seeds)}' if seeds else ''}; its groups: "
                           f"{', '.join(group_names(params))} (a new seed goes into sweep.seeds first)")
    return specs


def train_group(specs: Sequence[RunSpec], params: Params, data: dict[str, dict[str, TaskFeatures]],
                compute: Compute, *, init: Path | None = None, logs: Sequence[TrainingLog] | None = None,
                attention: str | None = "eager", log_every: int | None = None, resume_dir: Path | None = None,
                stop_after_epochs: int | None = None) -> list[MultitaskModel]:
    """Train the runs ``specs`` (one configuration, several seeds) as one fused model and return
    each run's model: what :func:`smartmtl.train.loop.train` returns for each, run by run, from
    the same ``init`` checkpoint. ``attention``: the encoder's attention implementation inside
    vmap (None: the model's own); the rest as train_runs takes it."""
    check_group(specs)
    data = run_data(specs[0], params, data)
    runs = StackedRuns(specs, params, data["train"], compute, init, attention)
    return train_runs(runs, params, data, compute, resume_dir=resume_dir, logs=logs,
                      stop_after_epochs=stop_after_epochs, log_every=log_every).models


def group_resume_dir(specs: Sequence[RunSpec], layout: Layout) -> Path:
    """Where a group keeps its resume checkpoint: named by its runs, so that the same group finds it."""
    names = hashlib.sha256(" ".join(spec.name for spec in specs).encode()).hexdigest()[:12]
    return layout.resume_dir(f"group-{names}")


def run_group(specs: list[RunSpec], params: Params, layout: Layout = Layout(),
              stop_after_epochs: int | None = None) -> list[dict]:
    """Train the runs ``specs`` (one configuration, several seeds) as one fused model and write
    each run's outputs as :func:`smartmtl.train.runner.run` writes them; each record's
    ``train_seconds`` is its share of the group's, and ``group`` its size. A group killed
    mid-way resumes from its last finished epoch when started again."""
    # Imported here: the runner writes DVCLive folders, and training a group (the GPU bench,
    # train_group) needs neither it nor dvclive.
    from smartmtl.train.runner import LiveLog, pretrained_init, score_and_save

    features = load_features(params, tasks_of(specs[0].schedule), specs[0].head)
    init = pretrained_init(specs[0], layout)
    compute = resolve_compute(params.train.precision, params.train.device)
    started = time.perf_counter()
    logs = [LiveLog(layout.live_dir(spec.name)) for spec in specs]
    resume_dir = group_resume_dir(specs, layout)
    runs = StackedRuns(specs, params, features["train"], compute, init)
    trained = train_runs(runs, params, features, compute, resume_dir=resume_dir, logs=logs,
                         stop_after_epochs=stop_after_epochs)
    if stop_after_epochs is not None:
        for log in logs:
            log.end()
        return []
    timing = {"train_seconds": round((time.perf_counter() - started) / len(specs), 1), "group": len(specs)}
    records = [score_and_save(spec, params, layout, model, history, features, compute, run_log, timing)
               for spec, model, history, run_log in zip(specs, trained.models, trained.histories, logs, strict=True)]
    shutil.rmtree(resume_dir, ignore_errors=True)
    return records


def run_named_group(params: Params, name: str, seeds: Sequence[int] | None = None,
                    layout: Layout = Layout()) -> list[tuple[RunSpec, dict]]:
    """:func:`run_group` over :func:`named_group`'s runs, each with its record. The ``table3``
    group also writes what the table2-cell stage writes for the runs the grid trains
    (smartmtl.outputs.write_untrained), so that the groups of :func:`group_names` write every
    fine-tuning stage's outputs and ``dvc commit`` can record them all."""
    from smartmtl.results.outputs import write_untrained

    specs = named_group(params, name, seeds)
    records = run_group(specs, params, layout)
    if name == "table3" and smart_pretrain_row(params) != TABLE2_CELL:
        trained_by_cell = set(table2_cell_seeds(params))
        for seed in [s for s in params.sweep.seeds if (not seeds or s in seeds) and s not in trained_by_cell]:
            write_untrained(run_name(TABLE2_CELL, seed), run_name(smart_pretrain_row(params), seed), layout)
    return list(zip(specs, records, strict=True))
