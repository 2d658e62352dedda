"""SMART regularisation (Jiang et al., 2020): the smoothness-inducing adversarial term and the
Bregman proximal point teacher.

The adversarial term (paper eq. 4) is ``l_s(f(x + delta), f(x))`` with ``delta`` the
perturbation within a ball around the input that most changes the output, and ``l_s`` the
task's divergence (:mod:`smartmtl.tasks`: symmetric KL for classes, squared error for
scores). The choices that make it a regulariser rather than a number (docs/smart.md):

* **Where** ``delta`` is added: a forward hook on a *site* module adds it to that module's
  output: the word embeddings (Algorithm 1's input) or the embedding layer's output after
  its LayerNorm (what the MT-DNN reference code perturbs). The model runs unchanged.
* **In what units**: ``scale="token"`` measures ``sigma``, ``epsilon`` and ``eta`` as
  fractions of each token's norm at the site, so one setting means the same at either site;
  ``scale="absolute"`` takes them as they are, as the reference code does.
* **The ascent step**: ``project`` is Algorithm 1, a step of ``eta`` along the gradient
  normalised per token, then projection onto the ``epsilon``-ball. ``normalize`` takes a raw
  gradient step and rescales the result onto the sphere of radius ``epsilon``; with absolute
  units and ``epsilon`` 1 that is the reference code's rule (MT-DNN's ``SmartPerturbation``,
  smart-pytorch's ``SMARTLoss``): each token's perturbation has unit norm.
* **Dropout**: every forward of a step (clean, ascent, perturbed, the teacher's) draws the
  same dropout masks (:class:`SameDropout`), so each term measures what it is about (the
  perturbation, the teacher's distance), not two dropout draws.

The Bregman teacher (paper eq. 5-6) is an exponential moving average of the encoder whose
time constant is a fraction of the run, with a floor on its momentum (:func:`teacher_beta`),
and whose heads are the student's own: a head that the starting checkpoint never trained is
no point to stay near.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from smartmtl.tasks import Divergence

# Norms are clamped to this before dividing, so that a zero gradient or a zero (padding) token
# stays zero while a gradient of 1e-20 is still normalised exactly.
_TINY = torch.finfo(torch.float32).tiny


# ----------------------------------------------------------------- the perturbation site
@contextlib.contextmanager
def at_site(site: nn.Module, deltas: Sequence[Tensor] | None = None) -> Iterator[list[Tensor]]:
    """Within the block, record the output of each call of ``site`` and add ``deltas[k]`` to
    the k-th call's output (a pair encoded as two sequences calls the site twice)."""
    outputs: list[Tensor] = []

    def hook(module, args, output):
        outputs.append(output)
        if deltas is not None:
            return output + deltas[len(outputs) - 1].to(output.dtype)
        return None

    handle = site.register_forward_hook(hook)
    try:
        yield outputs
    finally:
        handle.remove()


def rng_state(device: torch.device) -> Tensor:
    """The state of the generator that draws dropout masks and SMART's noise on ``device``."""
    if device.type == "cuda":
        return torch.cuda.get_rng_state(device)
    if device.type == "mps":  # Apple's GPU draws from a generator of its own
        return torch.mps.get_rng_state()
    return torch.get_rng_state()


def set_rng_state(device: torch.device, state: Tensor) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    elif device.type == "mps":
        torch.mps.set_rng_state(state)
    else:
        torch.set_rng_state(state)


class SameDropout:
    """Lets several forwards of one step draw the dropout masks of the first.

    Made before the first forward; ``replay()`` before each later forward rewinds the random
    number generator to where it was made. ``close()`` moves it on to where it stood before
    the first replay, so the next step's draws are fresh and nothing is drawn twice.
    """

    def __init__(self, device: torch.device):
        self._device = device
        self._start = rng_state(device)
        self._after: Tensor | None = None

    def replay(self) -> None:
        if self._after is None:
            self._after = rng_state(self._device)
        set_rng_state(self._device, self._start)

    def close(self) -> None:
        if self._after is not None:
            set_rng_state(self._device, self._after)


# --------------------------------------------------------------------- adversarial term
@dataclass(frozen=True)
class Perturbation:
    """How the adversarial perturbation is found; sizes in the units of ``scale``."""

    update: str = "project"  # "project" (Algorithm 1) or "normalize" (rescaled onto the sphere)
    norm: str = "inf"  # per-token norm of the ball: "inf" or "l2"
    scale: str = "token"  # sizes as fractions of each token's norm ("token") or as they are ("absolute")
    sigma: float = 1e-2  # std of the Gaussian start
    epsilon: float = 2e-2  # radius of the ball
    eta: float = 2e-2  # ascent step size
    steps: int = 1  # ascent steps

    def __post_init__(self):
        if self.update not in ("project", "normalize"):
            raise ValueError(f"update must be 'project' or 'normalize', got {self.update!r}")
        if self.norm not in ("inf", "l2"):
            raise ValueError(f"norm must be 'inf' or 'l2', got {self.norm!r}")
        if self.scale not in ("token", "absolute"):
            raise ValueError(f"scale must be 'token' or 'absolute', got {self.scale!r}")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")


@dataclass(frozen=True)
class Settings:
    """SMART as one run trains with it: the perturbation, where it is added, and the weights
    of the adversarial (lambda_s) and Bregman (mu) terms."""

    perturbation: Perturbation
    site: str
    lambda_s: float
    mu: float


def token_norm(x: Tensor, norm: str) -> Tensor:
    """Per-token norm over the last (hidden) dim, keepdim."""
    return x.abs().amax(dim=-1, keepdim=True) if norm == "inf" else x.norm(dim=-1, keepdim=True)


def project(delta: Tensor, radius: Tensor, norm: str) -> Tensor:
    """Each token of ``delta`` onto its ball (radius per token, shape [..., 1])."""
    if norm == "inf":
        return torch.maximum(torch.minimum(delta, radius), -radius)
    return delta * (radius / token_norm(delta, "l2").clamp_min(_TINY)).clamp(max=1.0)


def _ascent(delta: Tensor, grad: Tensor, scale: Tensor, how: Perturbation) -> Tensor:
    radius = how.epsilon * scale
    if how.update == "project":  # Algorithm 1: normalised gradient, step, projection
        direction = grad / token_norm(grad, how.norm).clamp_min(_TINY)
        return project(delta + how.eta * scale * direction, radius, how.norm)
    moved = delta + how.eta * grad  # the reference code: raw gradient, then onto the sphere
    return moved * (radius / token_norm(moved, how.norm).clamp_min(_TINY))


def adversarial_term(forward: Callable[[], Tensor], site: nn.Module, clean_inputs: Sequence[Tensor],
                     clean_output: Tensor, divergence: Divergence, how: Perturbation,
                     token_masks: Sequence[Tensor], same_dropout: SameDropout | None = None,
                     noise: Callable[[Tensor], Tensor] | None = None) -> tuple[Tensor, list[Tensor]]:
    """SMART's smoothness term for one batch, and the perturbations it used.

    ``forward()`` runs the model; ``clean_inputs`` are the site's outputs in the clean forward
    (one [B, T, H] tensor per call of the site) and ``clean_output`` its output. The
    perturbation starts as Gaussian noise, takes ``how.steps`` ascent steps on
    ``divergence(f(x + delta), f(x))`` (gradients w.r.t. delta only: no weight gradient is
    made), and is zero on padding. The returned term is attached to the model's parameters
    through both outputs; delta is detached. ``noise(like)`` draws the standard normal start
    (default: ``torch.randn_like``; a fused group draws each member's from its own stream).
    """
    masks = [m.unsqueeze(-1).to(torch.float32) for m in token_masks]
    scales = [(token_norm(x.detach().float(), how.norm) if how.scale == "token" else 1.0) * m
              for x, m in zip(clean_inputs, masks, strict=True)]
    draw = noise or (lambda like: torch.randn_like(like, dtype=torch.float32))
    deltas = [draw(s.expand_as(x)) * how.sigma * s for x, s in zip(clean_inputs, scales)]
    if how.steps == 0:  # the start itself, kept inside the ball
        deltas = [project(d, how.epsilon * s, how.norm) for d, s in zip(deltas, scales)]
    clean = clean_output.detach()
    for _ in range(how.steps):
        deltas = [d.requires_grad_(True) for d in deltas]
        if same_dropout is not None:
            same_dropout.replay()
        with torch.enable_grad(), at_site(site, deltas):
            distance = divergence(forward(), clean)
        grads = torch.autograd.grad(distance, deltas, allow_unused=True)
        deltas = [_ascent(d.detach(), torch.zeros_like(d) if g is None else g.float(), s, how) * m
                  for d, g, s, m in zip(deltas, grads, scales, masks)]
    if same_dropout is not None:
        same_dropout.replay()
    with at_site(site, deltas):
        term = divergence(forward(), clean_output)
    return term, deltas


def relative_size(deltas: Sequence[Tensor], clean_inputs: Sequence[Tensor], token_masks: Sequence[Tensor],
                  norm: str) -> Tensor:
    """Mean over real tokens of ||delta|| / ||x|| at the site: how far the input was moved."""
    ratios, counts = [], []
    for d, x, m in zip(deltas, clean_inputs, token_masks, strict=True):
        ratio = token_norm(d, norm).squeeze(-1) / token_norm(x.detach().float(), norm).squeeze(-1).clamp_min(_TINY)
        ratios.append((ratio * m).sum())
        counts.append(m.sum())
    return sum(ratios) / sum(counts)


# ----------------------------------------------------------------- Bregman proximal point
def teacher_beta(horizon: float, total_steps: int, floor: float) -> float:
    """The EMA momentum whose time constant is ``horizon`` of the run's optimizer steps, and
    at least ``floor``.

    After k updates toward a fixed student the teacher's distance is beta^k of what it was,
    so it closes 1 - 1/e of the gap in one time constant. A long run gets its momentum from
    the horizon (the paper's scale: 10 epochs of 1,068 steps at horizon 0.1 give 0.99906, the
    SMART paper's 0.999); a short run's time constant would be a step or two, a teacher that
    is the student of a moment ago, so the floor keeps it near where the run started.
    """
    return max(floor, 1.0 - 1.0 / max(1.0, horizon * total_steps))


class EmaTeacher:
    """Bregman proximal point's teacher: a moving average of the student's encoder.

    Holds a deep copy of the model without gradients, in the student's mode: in training it
    draws dropout like the student, and the caller replays the student's masks for it
    (:class:`SameDropout`), so that a teacher equal to the student is at distance zero.
    ``update(student)`` sets teacher <- beta * teacher + (1 - beta) * student for every
    parameter whose name does not start with one of ``own_prefixes``; those (the task heads)
    are copied from the student, so the proximal term measures how far the encoder moved,
    seen through today's heads.
    """

    def __init__(self, model: nn.Module, beta: float, own_prefixes: tuple[str, ...] = ("heads.",)):
        self.model = copy.deepcopy(model)
        for p in self.model.parameters():
            p.requires_grad_(False)
            p.grad = None
        self.beta = float(beta)
        self.own_prefixes = own_prefixes

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        averaged, targets = [], []
        for (name, mine), theirs in zip(self.model.named_parameters(), model.parameters(), strict=True):
            if name.startswith(self.own_prefixes):
                mine.copy_(theirs)
            else:
                averaged.append(mine)
                targets.append(theirs.detach())
        if averaged:
            torch._foreach_lerp_(averaged, targets, 1.0 - self.beta)
        for mine, theirs in zip(self.model.buffers(), model.buffers(), strict=True):
            mine.copy_(theirs)

    def __call__(self, *args, **kwargs):
        with torch.no_grad():
            return self.model(*args, **kwargs)


def bregman_loss(student_output: Tensor, teacher_output: Tensor, divergence: Divergence) -> Tensor:
    """Bregman proximal point term: divergence(student, teacher) with the teacher detached."""
    return divergence(student_output, teacher_output.detach())
