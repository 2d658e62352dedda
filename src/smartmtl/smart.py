"""SMART regularisation (Jiang et al., 2020): smoothness-inducing adversarial term and the
Bregman proximal point teacher.

Everything here is model-agnostic: the adversarial term works on a callable
``forward(list_of_embeds) -> output`` that runs the model from word embeddings, so it can
be tested with a toy model and used by the trainer with BERT (``inputs_embeds``).

Smoothness-inducing regulariser (paper, eq. 3 and Algorithm 1)::

    R_s = 1/n sum_i max_{||x~_i - x_i|| <= eps} l_s(f(x~_i), f(x_i))

approximated by ``steps`` projected gradient-ascent steps on the perturbation, started from
Gaussian noise ``N(0, sigma^2)``.

Precision (bf16 autocast), checked empirically on the bundled all-MiniLM-L6-v2 BertModel
with ``inputs_embeds`` under ``torch.autocast("cpu", dtype=torch.bfloat16)``:

* The perturbation itself is *not* rounded away: the noise is float32, the word embeddings
  are float32 (``nn.Embedding`` is not autocast), the addition ``e + n`` and the additions of
  position/type embeddings run in float32, and LayerNorm is on autocast's float32 list, so
  the embedding-LayerNorm output (float32) differs by ~5e-4 for noise of size 1e-5, the same
  as without autocast. The residual stream stays float32 through all layers.
* But every Linear/matmul rounds its input to bf16 (relative step 2^-8 ~ 4e-3), which is far
  coarser than the effect of a 1e-5 perturbation. Measured on two sentences with a 5-way
  head on CLS, noise 1e-5: max |logit change| is 1.4e-5 in float32 but 9.8e-4 (one bf16
  ulp) under autocast; the symmetric KL is 5e-11 in float32 but 9e-7 under autocast, and
  the cosine between the noise gradient under autocast and in float32 was -0.34. So at the
  paper's sigma = eps = 1e-5 the adversarial term under bf16 autocast measures rounding
  noise, not the model's local smoothness. ``disable_autocast=True`` runs the perturbed
  forwards in float32 (then the clean output should be float32 as well: the gap between a
  bf16 and a float32 clean output, ~7e-7 in KL, also dwarfs the 1e-5 effect).

Dropout: if the model is in training mode, the clean and the perturbed forwards draw
different dropout masks, and their divergence is dominated by dropout, not by the
perturbation. That is the caller's choice (the MT-DNN reference code runs them in training
mode); this module does not change the model's mode.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Divergence = Callable[[Tensor, Tensor], Tensor]

# Added to norms before dividing, so that a zero gradient or a zero (padding) noise stays zero.
_TINY = 1e-12


# --------------------------------------------------------------------------- divergences
def _per_example_mean(values: Tensor) -> Tensor:
    """Sum over all but the batch dimension, then mean over the batch."""
    if values.dim() == 0:
        return values
    return values.reshape(values.shape[0], -1).sum(dim=1).mean()


def symmetric_kl(logits_p: Tensor, logits_q: Tensor) -> Tensor:
    """KL(P||Q) + KL(Q||P) of two softmax distributions over the last dim; batch mean.

    Equals sum_c (p_c - q_c)(log p_c - log q_c). Computed in float32.
    """
    log_p = F.log_softmax(logits_p.float(), dim=-1)
    log_q = F.log_softmax(logits_q.float(), dim=-1)
    per_example = ((log_p.exp() - log_q.exp()) * (log_p - log_q)).sum(dim=-1)
    return _per_example_mean(per_example)


def symmetric_bernoulli_kl(logit_p: Tensor, logit_q: Tensor) -> Tensor:
    """Symmetric KL of two Bernoulli distributions given by single logits (shape [B]); batch mean.

    KL(P||Q) + KL(Q||P) = (p - q)(log p/(1-p) - log q/(1-q)) = (sigmoid(a) - sigmoid(b))(a - b).
    Computed in float32.
    """
    a, b = logit_p.float(), logit_q.float()
    return _per_example_mean((torch.sigmoid(a) - torch.sigmoid(b)) * (a - b))


def squared_error(pred_p: Tensor, pred_q: Tensor) -> Tensor:
    """Squared difference of two regression outputs (shape [B]); batch mean. Float32."""
    return _per_example_mean((pred_p.float() - pred_q.float()) ** 2)


DIVERGENCES: dict[str, Divergence] = {
    "sst": symmetric_kl,
    "qqp": symmetric_bernoulli_kl,
    "sts": squared_error,
}


# --------------------------------------------------------------------- adversarial term
def _token_norm(x: Tensor, norm: str) -> Tensor:
    """Per-token norm over the last (hidden) dim, keepdim."""
    if norm == "inf":
        return x.abs().amax(dim=-1, keepdim=True)
    if norm == "l2":
        return x.norm(dim=-1, keepdim=True)
    raise ValueError(f"norm must be 'inf' or 'l2', got {norm!r}")


def project_noise(noise: Tensor, epsilon: float, norm: str) -> Tensor:
    """Project each token vector of ``noise`` onto the ``epsilon``-ball of the given norm.

    inf: clamp every element to [-eps, eps]; l2: rescale each token whose l2 norm exceeds
    eps to norm eps (others unchanged).
    """
    if norm == "inf":
        return noise.clamp(-epsilon, epsilon)
    if norm == "l2":
        scale = (epsilon / _token_norm(noise, "l2").clamp_min(_TINY)).clamp(max=1.0)
        return noise * scale
    raise ValueError(f"norm must be 'inf' or 'l2', got {norm!r}")


@contextlib.contextmanager
def _maybe_no_autocast(disable: bool, device_type: str):
    if disable:
        with torch.autocast(device_type=device_type, enabled=False):
            yield
    else:
        yield


def _check_args(embeds, masks, norm, update, steps):
    if not embeds:
        raise ValueError("embeds must hold at least one tensor")
    if masks is not None and len(masks) != len(embeds):
        raise ValueError(f"{len(masks)} masks for {len(embeds)} embedding tensors")
    if norm not in ("inf", "l2"):
        raise ValueError(f"norm must be 'inf' or 'l2', got {norm!r}")
    if update not in ("project", "normalize"):
        raise ValueError(f"update must be 'project' or 'normalize', got {update!r}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")


def ascent_noise(
    forward: Callable[[list[Tensor]], Tensor],
    embeds: Sequence[Tensor],
    clean_output: Tensor,
    divergence: Divergence,
    *,
    sigma: float,
    epsilon: float,
    eta: float,
    steps: int,
    norm: Literal["inf", "l2"] = "inf",
    update: Literal["project", "normalize"] = "project",
    masks: Sequence[Tensor] | None = None,
    generator: torch.Generator | None = None,
    disable_autocast: bool = False,
) -> list[Tensor]:
    """The adversarial perturbations (float32, detached), one per embedding tensor.

    noise_i ~ N(0, sigma^2) (zero on padding), then ``steps`` ascent steps on
    ``divergence(forward([e_i.detach() + noise_i]), clean_output.detach())``; the gradient is
    taken w.r.t. the noises only (``torch.autograd.grad``), so no weight gradient is made.

    update="project" (the paper): noise <- Proj_eps(noise + eta * grad), the projection per
    token onto the eps-ball of ``norm`` (see :func:`project_noise`).

    update="normalize" (the MT-DNN reference code's variant, as specified here):
    direction = grad / (||grad||_tok + tiny); noise <- noise + eta * direction;
    noise <- eps * noise / (||noise||_tok + tiny), every norm taken per token with ``norm``
    (inf: max |.| over the hidden dim; l2: Euclidean). So every non-zero token ends on the
    *sphere* of radius eps, not inside the ball. (MT-DNN's own code normalises
    ``noise + step * grad`` to unit per-token norm without an eps factor and without first
    normalising the gradient; here the radius is ``epsilon`` so that both updates honour the
    same parameter.)

    With ``steps == 0`` the initial noise is returned (projected onto the ball if
    update="project", rescaled onto the sphere if "normalize").
    """
    _check_args(embeds, masks, norm, update, steps)
    fmasks = [None] * len(embeds) if masks is None else [m.to(torch.float32).unsqueeze(-1) for m in masks]
    device_type = embeds[0].device.type

    noises = []
    for e, m in zip(embeds, fmasks):
        # Drawn on the generator's device (CPU generator for CUDA embeddings is fine), then moved.
        where = generator.device if generator is not None else e.device
        n = torch.randn(e.shape, generator=generator, device=where, dtype=torch.float32).to(e.device) * sigma
        noises.append(n if m is None else n * m)

    def finish(ns: list[Tensor]) -> list[Tensor]:
        out = []
        for n, m in zip(ns, fmasks):
            if update == "project":
                n = project_noise(n, epsilon, norm)
            else:
                n = n * (epsilon / (_token_norm(n, norm) + _TINY))
            out.append((n if m is None else n * m).detach())
        return out

    if steps == 0:
        return finish(noises)

    clean = clean_output.detach()
    detached = [e.detach() for e in embeds]
    for _ in range(steps):
        noises = [n.detach().requires_grad_(True) for n in noises]
        with torch.enable_grad(), _maybe_no_autocast(disable_autocast, device_type):
            output = forward([e + n for e, n in zip(detached, noises)])
            loss = divergence(output, clean)
        grads = torch.autograd.grad(loss, noises, allow_unused=True)
        new = []
        for n, g, m in zip(noises, grads, fmasks):
            n = n.detach()
            g = torch.zeros_like(n) if g is None else g.detach().float()
            if m is not None:
                g = g * m
            if update == "project":
                n = project_noise(n + eta * g, epsilon, norm)
            else:
                direction = g / (_token_norm(g, norm) + _TINY)
                n = n + eta * direction
                n = n * (epsilon / (_token_norm(n, norm) + _TINY))
            new.append(n if m is None else n * m)
        noises = new
    return [n.detach() for n in noises]


def adversarial_loss(
    forward: Callable[[list[Tensor]], Tensor],
    embeds: Sequence[Tensor],
    clean_output: Tensor,
    divergence: Divergence,
    *,
    sigma: float,
    epsilon: float,
    eta: float,
    steps: int,
    norm: Literal["inf", "l2"] = "inf",
    update: Literal["project", "normalize"] = "project",
    masks: Sequence[Tensor] | None = None,
    generator: torch.Generator | None = None,
    disable_autocast: bool = False,
    return_noise: bool = False,
) -> Tensor | tuple[Tensor, list[Tensor]]:
    """SMART's smoothness-inducing term l_s(f(x + delta), f(x)) for one batch.

    ``forward(list_of_embeds) -> output`` runs the model from word embeddings (one [B, T, H]
    tensor per separately encoded sequence). The perturbation ``delta`` comes from
    :func:`ascent_noise` (see there for ``update``/``norm``/``masks``). The returned scalar is
    ``divergence(forward([e + delta]), clean_output)`` with the graph attached to the model
    parameters, to ``embeds`` and to ``clean_output`` (gradients reach the model through
    both the adversarial and the clean output); ``delta`` itself is detached.
    ``disable_autocast`` runs the perturbed forwards in float32 (see the module docstring).
    """
    noises = ascent_noise(
        forward, embeds, clean_output, divergence,
        sigma=sigma, epsilon=epsilon, eta=eta, steps=steps, norm=norm, update=update,
        masks=masks, generator=generator, disable_autocast=disable_autocast,
    )
    with _maybe_no_autocast(disable_autocast, embeds[0].device.type):
        output = forward([e + n for e, n in zip(embeds, noises)])
        loss = divergence(output, clean_output)
    return (loss, noises) if return_noise else loss


# ----------------------------------------------------------------- Bregman proximal point
class EmaTeacher:
    """Bregman proximal point's teacher: an exponential moving average of the student.

    Holds a deep copy of the model, in eval mode, with ``requires_grad`` off. After each
    optimizer step, ``update(student, step)`` sets teacher <- beta * teacher + (1 - beta) *
    student for every floating-point parameter (buffers are copied from the student), with
    beta = ``beta_early`` while ``step < beta_switch * total_steps`` and ``beta_late`` after.
    """

    def __init__(self, model: nn.Module, beta_early: float, beta_late: float, beta_switch: float, total_steps: int):
        self.model = copy.deepcopy(model)
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
            p.grad = None
        self.beta_early = float(beta_early)
        self.beta_late = float(beta_late)
        self.beta_switch = float(beta_switch)
        self.total_steps = int(total_steps)

    def beta(self, step: int) -> float:
        return self.beta_early if step < self.beta_switch * self.total_steps else self.beta_late

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        beta = self.beta(step)
        teacher_params = dict(self.model.named_parameters())
        mine, theirs = [], []
        for name, p in model.named_parameters():
            t = teacher_params[name]
            if t.is_floating_point():
                mine.append(t)
                theirs.append(p.detach())
        if mine:
            torch._foreach_mul_(mine, beta)
            torch._foreach_add_(mine, theirs, alpha=1.0 - beta)
        teacher_buffers = dict(self.model.named_buffers())
        for name, b in model.named_buffers():
            if name in teacher_buffers:
                teacher_buffers[name].copy_(b)

    def __call__(self, *args, **kwargs):
        """Run the teacher (no grad)."""
        with torch.no_grad():
            return self.model(*args, **kwargs)

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "beta_early": self.beta_early,
            "beta_late": self.beta_late,
            "beta_switch": self.beta_switch,
            "total_steps": self.total_steps,
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.beta_early = float(state["beta_early"])
        self.beta_late = float(state["beta_late"])
        self.beta_switch = float(state["beta_switch"])
        self.total_steps = int(state["total_steps"])


def bregman_loss(student_output: Tensor, teacher_output: Tensor, divergence: Divergence) -> Tensor:
    """Bregman proximal point term: divergence(student, teacher) with the teacher detached."""
    return divergence(student_output, teacher_output.detach())
