import math

import pytest
import torch
from torch import nn

from smartmtl.tasks import TASKS, squared_error, symmetric_bernoulli_kl, symmetric_kl
from smartmtl.train.smart import (
    EmaTeacher,
    Perturbation,
    SameDropout,
    adversarial_term,
    at_site,
    bregman_loss,
    project,
    relative_size,
    teacher_beta,
    token_norm,
)


# ------------------------------------------------------------------------ divergences
@pytest.mark.parametrize("name", ["sst", "qqp", "sts"])
def test_divergence_zero_positive_symmetric(name):
    div = TASKS[name].divergence
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
    assert symmetric_bernoulli_kl(a, b).item() > 0.1  # not a softmax over one logit (always 0)


def test_squared_error_value_and_float32():
    p = torch.tensor([1.0, 2.0, 3.0], dtype=torch.bfloat16)
    q = torch.tensor([1.5, 2.0, 1.0], dtype=torch.bfloat16)
    out = squared_error(p, q)
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx((0.25 + 0 + 4) / 3, rel=1e-6)


# ------------------------------------------------------------------ a toy model with a site
class ToyPair(nn.Module):
    """Token ids -> embedding (the site) -> dropout -> MLP -> mean; a pair calls the site twice."""

    def __init__(self, dropout=0.0):
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.drop = nn.Dropout(dropout)
        self.mlp = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))

    def forward(self, ids):
        pooled = [self.mlp(self.drop(self.embed(x))).mean(dim=1) for x in ids]
        return pooled[0] + 0.5 * pooled[1] if len(pooled) == 2 else pooled[0]


def _toy(dropout=0.0, n_seqs=2):
    torch.manual_seed(0)
    model = ToyPair(dropout)
    ids = [torch.randint(1, 20, (4, 6)) for _ in range(n_seqs)]
    masks = [torch.ones(4, 6) for _ in range(n_seqs)]
    return model, ids, masks


def _term(model, ids, masks, how, same_dropout=None):
    with at_site(model.embed) as clean_inputs:
        clean = model(ids)
    term, deltas = adversarial_term(lambda: model(ids), model.embed, clean_inputs, clean, symmetric_kl, how,
                                    masks, same_dropout)
    return term, deltas, clean_inputs


def test_at_site_records_each_call_and_adds_its_own_delta():
    model, ids, _ = _toy()
    deltas = [torch.full((4, 6, 8), 1.0), torch.full((4, 6, 8), -2.0)]
    seen = []
    model.mlp.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    with at_site(model.embed) as plain:
        model(ids)
    with at_site(model.embed, deltas) as recorded:
        model(ids)
    assert len(plain) == len(recorded) == 2
    torch.testing.assert_close(seen[2], plain[0] + 1.0)
    torch.testing.assert_close(seen[3], plain[1] - 2.0)
    assert not model.embed._forward_hooks  # the hook is gone after the block


def test_same_dropout_replays_masks_and_then_moves_on():
    drop = nn.Dropout(0.5)
    x = torch.ones(1000)
    torch.manual_seed(1)
    reference = [drop(x), torch.rand(3), drop(x)]  # a forward, a noise draw, the next step's forward
    torch.manual_seed(1)
    same = SameDropout(torch.device("cpu"))
    first = drop(x)
    noise = torch.rand(3)
    same.replay()
    again = drop(x)
    same.close()
    assert torch.equal(first, again) and torch.equal(first, reference[0])
    assert torch.equal(noise, reference[1])
    assert torch.equal(drop(x), reference[2])  # the stream continues as if no replay had happened


@pytest.mark.parametrize("update", ["project", "normalize"])
def test_zero_perturbation_with_shared_masks_is_exactly_zero(update):
    model, ids, masks = _toy(dropout=0.3)
    how = Perturbation(update=update, sigma=0.0, epsilon=0.0, eta=0.0, steps=1)
    shared, _, _ = _term(model, ids, masks, how, SameDropout(torch.device("cpu")))
    independent, _, _ = _term(model, ids, masks, how, None)
    assert shared.item() == 0.0
    assert independent.item() > 1e-3  # two dropout draws alone: the term the masks now remove


def test_one_normalised_step_reaches_the_boundary():
    # Algorithm 1: however small the gradient, one step of eta >= epsilon along g / ||g||_inf
    # puts every token's largest coordinate on the ball's boundary.
    model, ids, masks = _toy()
    how = Perturbation(update="project", norm="inf", sigma=1e-6, epsilon=0.05, eta=0.05, steps=1)
    _, deltas, clean_inputs = _term(model, ids, masks, how)
    for d, x in zip(deltas, clean_inputs):
        ratio = token_norm(d, "inf") / token_norm(x.detach(), "inf")
        torch.testing.assert_close(ratio, torch.full_like(ratio, 0.05))


def test_normalize_puts_every_token_on_the_sphere_and_padding_at_zero():
    model, ids, masks = _toy()
    masks[1][:, 4:] = 0
    how = Perturbation(update="normalize", norm="l2", sigma=0.01, epsilon=0.02, eta=1.0, steps=2)
    _, deltas, clean_inputs = _term(model, ids, masks, how)
    ratio = token_norm(deltas[0], "l2") / token_norm(clean_inputs[0].detach(), "l2")
    torch.testing.assert_close(ratio, torch.full_like(ratio, 0.02))
    assert (deltas[1][:, 4:] == 0).all() and (deltas[1][:, :4] != 0).any()
    assert relative_size(deltas, clean_inputs, masks, "l2").item() == pytest.approx(0.02, rel=1e-4)


def test_ascent_increases_the_term_over_its_random_start():
    model, ids, masks = _toy()
    start = Perturbation(sigma=0.05, epsilon=0.05, eta=0.05, steps=0)
    torch.manual_seed(3)
    random_start, _, _ = _term(model, ids, masks, start)
    torch.manual_seed(3)
    ascended, _, _ = _term(model, ids, masks, Perturbation(sigma=0.05, epsilon=0.05, eta=0.05, steps=2))
    assert ascended.item() > 1.5 * random_start.item() > 0


def test_term_grows_with_the_radius():
    model, ids, masks = _toy()
    terms = []
    for eps in (1e-3, 1e-2, 1e-1):
        torch.manual_seed(0)
        terms.append(_term(model, ids, masks, Perturbation(sigma=eps / 10, epsilon=eps, eta=eps, steps=1))[0].item())
    assert 0 < terms[0] < terms[1] < terms[2]
    assert terms[1] > 10 * terms[0]  # about quadratic for small radii


def test_project_l2_only_shrinks_tokens_outside_the_ball():
    delta = torch.tensor([[[3.0, 4.0], [0.03, 0.04]]])  # norms 5 and 0.05
    out = project(delta, torch.full((1, 2, 1), 0.1), "l2")
    torch.testing.assert_close(out[0, 0], torch.tensor([0.06, 0.08]))
    torch.testing.assert_close(out[0, 1], delta[0, 1])
    torch.testing.assert_close(project(delta, torch.full((1, 2, 1), 0.1), "inf"), delta.clamp(-0.1, 0.1))


def test_ascent_makes_no_weight_gradient_and_the_term_reaches_the_weights():
    model, ids, masks = _toy()
    term, _, _ = _term(model, ids, masks, Perturbation(sigma=0.01, epsilon=0.05, eta=0.05, steps=2))
    assert all(p.grad is None for p in model.parameters())
    term.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_perturbation_rejects_unknown_settings():
    with pytest.raises(ValueError, match="update"):
        Perturbation(update="sideways")
    with pytest.raises(ValueError, match="norm"):
        Perturbation(norm="l7")


# ------------------------------------------------------------------------ EMA teacher
def test_teacher_beta_ties_the_time_constant_to_the_run_above_a_floor():
    assert teacher_beta(0.1, 110, floor=0.0) == pytest.approx(1 - 1 / 11)
    assert teacher_beta(0.1, 10_680, floor=0.99) == pytest.approx(0.99906, abs=1e-5)  # above the floor
    assert teacher_beta(0.1, 5, floor=0.0) == 0.0  # under one step: the teacher is the last student
    # A short run's time constant of a step or two gives way to the floor.
    assert teacher_beta(0.1, 50, floor=0.99) == 0.99


def _distance(teacher: EmaTeacher, student: nn.Module) -> float:
    return math.sqrt(sum(float((mine - theirs).detach().pow(2).sum())
                         for mine, theirs in zip(teacher.model.parameters(), student.parameters(), strict=True)))


def test_teacher_distance_shrinks_at_the_rate_the_rule_sets():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    beta = teacher_beta(0.1, 110, floor=0.0)
    teacher = EmaTeacher(student, beta, own_prefixes=())
    assert all(not p.requires_grad for p in teacher.model.parameters())
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
    start = _distance(teacher, student)
    for k in range(1, 12):
        teacher.update(student)
        assert _distance(teacher, student) == pytest.approx(start * beta**k, rel=1e-4)
    # one time constant (11 steps) closes 1 - 1/e of the gap
    assert _distance(teacher, student) / start == pytest.approx(math.exp(-1), abs=0.02)


def test_teacher_heads_are_the_students_own():
    torch.manual_seed(0)
    student = nn.ModuleDict({"encoder": nn.Linear(3, 3), "heads": nn.ModuleDict({"sst": nn.Linear(3, 5)})})
    teacher = EmaTeacher(student, beta=0.9)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    teacher.update(student)
    assert torch.equal(teacher.model["heads"]["sst"].weight, student["heads"]["sst"].weight)
    torch.testing.assert_close(teacher.model["encoder"].weight, student["encoder"].weight - 0.9)


def test_bregman_is_zero_against_an_identical_teacher_and_grows_when_it_lags():
    torch.manual_seed(0)
    student = nn.Linear(3, 5)
    teacher = EmaTeacher(student, beta=0.5, own_prefixes=())
    x = torch.randn(4, 3)
    assert bregman_loss(student(x), teacher(x), symmetric_kl).item() == pytest.approx(0.0, abs=1e-7)
    with torch.no_grad():
        student.weight.add_(1.0)
    teacher.update(student)
    loss = bregman_loss(student(x), teacher(x), symmetric_kl)
    assert loss.item() > 0
    loss.backward()
    assert student.weight.grad is not None
    assert all(p.grad is None for p in teacher.model.parameters())


# ----------------------------------------------------------------- real bundled backbone
@pytest.fixture(scope="module")
def backbone():
    from smartmtl.model.backbone import load_encoder, load_tokenizer
    from smartmtl.model.heads import MultitaskModel

    torch.manual_seed(0)
    model = MultitaskModel(load_encoder("all-MiniLM-L6-v2", 0.1), "concat", 0.1, "mean").train()
    tokenizer = load_tokenizer("all-MiniLM-L6-v2")
    batch = tokenizer(["a gripping , funny film", "it was dull and far too long", "a masterpiece ."],
                      padding=True, return_tensors="pt")
    return model, [dict(batch)]


@pytest.mark.parametrize("site", ["word_embeddings", "embedding_output"])
def test_real_backbone_term_is_the_perturbations_not_dropouts(backbone, site):
    # Dropout on (hidden 0.1, attention 0.1): the perturbation's term stands at least 10x
    # above what the same forward without a perturbation gives, and grows with the radius.
    model, segments = backbone
    where = model.perturbation_site(site)
    masks = [segments[0]["attention_mask"]]
    terms = []
    for eps in (1e-2, 1e-1):
        torch.manual_seed(0)
        same = SameDropout(torch.device("cpu"))
        with at_site(where) as clean_inputs:
            clean = model("sst", segments)
        how = Perturbation(update="project", sigma=eps / 10, epsilon=eps, eta=eps, steps=1)
        term, _ = adversarial_term(lambda: model("sst", segments), where, clean_inputs, clean, symmetric_kl, how,
                                   masks, same)
        same.replay()
        with torch.no_grad():
            floor = symmetric_kl(model("sst", segments), clean)
        same.close()
        assert term.item() >= 10 * floor.item()
        terms.append(term.item())
    assert terms[1] > terms[0] > 0
