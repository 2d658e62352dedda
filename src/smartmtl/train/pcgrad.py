"""Gradient surgery / PCGrad (Yu et al., 2020) for the shared parameters of a multitask model.

For each task i, starting from a copy g_i' of its gradient, and for every other task j in a
random order: if g_i' . g_j < 0 (against the *original* g_j), remove the conflicting
component, g_i' <- g_i' - (g_i' . g_j) / ||g_j||^2 g_j. The update is the sum (the paper) or
the mean of the projected gradients. Task-specific (head) parameters are not touched: each
head only receives its own task's gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Literal

import torch
from torch import Tensor, nn


def _prepare(grads: Sequence[Tensor]) -> tuple[list[Tensor], torch.dtype]:
    if not grads:
        raise ValueError("no gradients to combine")
    grads = [g.reshape(-1) if g.dtype in (torch.float32, torch.float64) else g.reshape(-1).float() for g in grads]
    size = grads[0].numel()
    if any(g.numel() != size for g in grads):
        raise ValueError(f"gradients of different lengths: {[g.numel() for g in grads]}")
    out_dtype = torch.float64 if any(g.dtype == torch.float64 for g in grads) else torch.float32
    return grads, out_dtype


def iter_projected(grads: Sequence[Tensor], generator: torch.Generator | None = None) -> Iterator[Tensor]:
    """Yield each task's projected gradient g_i', one at a time (task order 0..n-1).

    For task i the other tasks are visited in the order of the i-th
    ``torch.randperm(n, generator=generator)`` draw, skipping i. Each projection uses the
    *original* g_j. Dot products run in float32 (float64 if any input is float64), the
    coefficient is a Python float. A zero-norm g_j is skipped (nothing to project onto).
    Only one working vector is alive at a time if the caller drops each yielded one.
    """
    grads, out_dtype = _prepare(grads)
    n = len(grads)
    sq_norms = [float(torch.dot(g, g)) for g in grads]
    for i in range(n):
        current = grads[i].to(out_dtype, copy=True)
        order = torch.randperm(n, generator=generator).tolist()
        for j in order:
            if j == i or sq_norms[j] == 0.0:
                continue
            other = grads[j] if grads[j].dtype == out_dtype else grads[j].to(out_dtype)
            dot = float(torch.dot(current, other))
            if dot < 0.0:
                current.add_(other, alpha=-dot / sq_norms[j])
        yield current
        del current  # so that the next task's working vector is the only one alive


def project_conflicting(
    grads: Sequence[Tensor],
    generator: torch.Generator | None = None,
    reduction: Literal["sum", "mean"] = "sum",
) -> Tensor:
    """Combine flat per-task gradients of the shared parameters with PCGrad.

    ``grads`` are 1-D tensors of equal length (cast to float32 if of lower precision); the
    result is float32 (float64 if any input is). Returns the sum (the paper) or the mean of
    the projected gradients of :func:`iter_projected` (see there for the visiting order).
    Memory: one working vector (the current g_i') beyond the inputs and the output.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    prepared, out_dtype = _prepare(grads)
    total = torch.zeros(prepared[0].numel(), dtype=out_dtype, device=prepared[0].device)
    for projected in iter_projected(prepared, generator):
        total.add_(projected)
        del projected
    if reduction == "mean":
        total.div_(len(prepared))
    return total


def flatten_grads(params: Iterable[nn.Parameter]) -> Tensor:
    """Concatenate the parameters' ``.grad`` into one float32 vector (zeros where None)."""
    chunks = []
    for p in params:
        if p.grad is None:
            chunks.append(torch.zeros(p.numel(), dtype=torch.float32, device=p.device))
        else:
            chunks.append(p.grad.detach().reshape(-1).float())
    if not chunks:
        return torch.zeros(0)
    return torch.cat(chunks)


def assign_flat_grad(params: Iterable[nn.Parameter], flat: Tensor) -> None:
    """Write ``flat`` (as from :func:`flatten_grads`) into the parameters' ``.grad`` (replacing it)."""
    params = list(params)
    total = sum(p.numel() for p in params)
    if flat.numel() != total:
        raise ValueError(f"flat gradient has {flat.numel()} elements, parameters {total}")
    offset = 0
    for p in params:
        chunk = flat[offset : offset + p.numel()].view_as(p).to(dtype=p.dtype, device=p.device)
        if p.grad is None:
            p.grad = chunk.clone()
        else:
            p.grad.copy_(chunk)
        offset += p.numel()


def pairwise_cosines(grads: Sequence[Tensor]) -> Tensor:
    """The cosine of every pair of task gradients (i < j): where one is negative, surgery
    projects. A zero gradient has cosine 0 with every other."""
    flat = torch.stack([g.reshape(-1).float() for g in grads])
    unit = flat / flat.norm(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    first, second = torch.triu_indices(len(grads), len(grads), offset=1)
    return (unit[first] * unit[second]).sum(dim=1)


def surgery_backward(
    task_backwards: Iterable[Callable[[], None]],
    shared_params: Sequence[nn.Parameter],
    reduction: Literal["sum", "mean"] = "sum",
    generator: torch.Generator | None = None,
    average: Callable[[Tensor], Tensor] = lambda flat: flat,
) -> Tensor:
    """Run each task's backward in turn and give the shared parameters PCGrad's gradient.

    ``task_backwards`` are callables, one per task, each computing its loss and calling
    ``backward()``: only one task's graph is alive at a time. After each, the shared
    gradient is set aside as one flat vector and cleared; then the shared ``.grad`` becomes
    ``project_conflicting`` of those vectors. Other parameters (the heads) accumulate as
    usual, so a head used by one task gets exactly that task's gradient. Shared gradients
    present on entry are discarded. ``average`` is applied to each task's vector before
    surgery: several processes average theirs, so that surgery sees the whole batch's.
    """
    shared_params = list(shared_params)
    task_grads: list[Tensor] = []
    for backward in task_backwards:
        for p in shared_params:
            p.grad = None
        backward()
        task_grads.append(average(flatten_grads(shared_params)))
    assign_flat_grad(shared_params, project_conflicting(task_grads, generator=generator, reduction=reduction))
    return pairwise_cosines(task_grads)
