import pytest
import torch
from torch import nn

from smartmtl.train.pcgrad import (
    assign_flat_grad,
    flatten_grads,
    iter_projected,
    project_conflicting,
    surgery_backward,
)


def _reference(grads, seed):
    """PCGrad written plainly (float64), with the documented visiting order; also returns
    the last task each g_i was compared with."""
    gen = torch.Generator().manual_seed(seed)
    g64 = [g.double() for g in grads]
    out, last = [], []
    for i in range(len(grads)):
        cur = g64[i].clone()
        order = [j for j in torch.randperm(len(grads), generator=gen).tolist() if j != i]
        for j in order:
            dot = cur @ g64[j]
            if dot < 0:
                cur = cur - dot / (g64[j] @ g64[j]) * g64[j]
        out.append(cur)
        last.append(order[-1])
    return out, last


def _conflicting(seed, dim=30):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(dim, generator=g)
    grads = [
        base + 0.3 * torch.randn(dim, generator=g),
        -base + 0.5 * torch.randn(dim, generator=g),
        torch.randn(dim, generator=g) - 0.5 * base,
    ]
    assert min(torch.dot(grads[i], grads[j]) for i in range(3) for j in range(i + 1, 3)) < 0
    return grads


def test_two_conflicting_grads_match_formula():
    g1 = torch.tensor([1.0, 0.0])
    g2 = torch.tensor([-1.0, 1.0])  # g1 . g2 = -1
    # g1' = g1 - (-1)/2 g2 = (0.5, 0.5); g2' = g2 - (-1)/1 g1 = (0, 1)
    p1, p2 = iter_projected([g1, g2])
    torch.testing.assert_close(p1, torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(p2, torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(project_conflicting([g1, g2]), torch.tensor([0.5, 1.5]))
    torch.testing.assert_close(project_conflicting([g1, g2], reduction="mean"), torch.tensor([0.25, 0.75]))
    # inputs untouched
    assert torch.equal(g1, torch.tensor([1.0, 0.0])) and torch.equal(g2, torch.tensor([-1.0, 1.0]))


@pytest.mark.parametrize("seed", range(5))
def test_two_tasks_projected_grads_do_not_conflict(seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(40, generator=g)
    b = -a + torch.randn(40, generator=g)
    assert torch.dot(a, b) < 0
    pa, pb = iter_projected([a, b])
    assert abs(torch.dot(pa, b).item()) < 1e-4 and abs(torch.dot(pb, a).item()) < 1e-4
    assert torch.dot(pa, pb) >= -1e-5


@pytest.mark.parametrize("seed", range(6))
def test_three_tasks_match_reference_and_last_projection_holds(seed):
    # With 3+ tasks PCGrad does NOT guarantee that every pair of projected gradients is
    # non-conflicting (a later projection can re-create a conflict with an earlier task);
    # what holds is: g_i' does not conflict with the last task it was projected against,
    # and every projection only removed components along conflicting g_j.
    grads = _conflicting(seed)
    expected, last = _reference(grads, seed)
    got = list(iter_projected(grads, generator=torch.Generator().manual_seed(seed)))
    for i in range(3):
        torch.testing.assert_close(got[i].double(), expected[i], rtol=1e-5, atol=1e-5)
        assert torch.dot(got[i], grads[last[i]]) >= -1e-4
    total = project_conflicting(grads, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(total.double(), sum(expected), rtol=1e-5, atol=1e-5)
    # projection changed something, and the combined update differs from the plain sum
    assert not torch.allclose(total, sum(grads))


def test_non_conflicting_unchanged_and_mean():
    g = torch.Generator().manual_seed(0)
    base = torch.rand(10, generator=g)
    grads = [base * (k + 1) + 0.01 * torch.rand(10, generator=g) for k in range(3)]  # all positive
    total = project_conflicting(grads, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(total, sum(grads))
    mean = project_conflicting(grads, generator=torch.Generator().manual_seed(1), reduction="mean")
    torch.testing.assert_close(mean, total / 3)
    conflicting = _conflicting(3)
    torch.testing.assert_close(
        project_conflicting(conflicting, torch.Generator().manual_seed(2), reduction="mean"),
        project_conflicting(conflicting, torch.Generator().manual_seed(2)) / 3,
    )


def test_zero_gradient_is_safe():
    grads = [torch.zeros(5), torch.tensor([1.0, -2.0, 0.0, 3.0, 1.0]), torch.tensor([-1.0, 0.0, 0.0, 0.0, 0.0])]
    out = project_conflicting(grads, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out).all()
    # the zero task contributes nothing and is never projected onto; tasks 1 and 2 conflict
    expected, _ = _reference(grads, 0)
    torch.testing.assert_close(out.double(), sum(expected))
    torch.testing.assert_close(project_conflicting([torch.zeros(4), torch.zeros(4)]), torch.zeros(4))


def test_low_precision_inputs_give_float32():
    grads = [torch.tensor([1.0, 0.0], dtype=torch.bfloat16), torch.tensor([-1.0, 1.0], dtype=torch.bfloat16)]
    out = project_conflicting(grads)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.tensor([0.5, 1.5]))


def test_flatten_and_assign_roundtrip():
    lin = nn.Linear(3, 2)
    lin.weight.grad = torch.arange(6.0).view(2, 3)
    flat = flatten_grads(lin.parameters())  # bias grad None -> zeros
    torch.testing.assert_close(flat, torch.tensor([0.0, 1, 2, 3, 4, 5, 0, 0]))
    assign_flat_grad(lin.parameters(), torch.arange(8.0))
    torch.testing.assert_close(lin.weight.grad, torch.arange(6.0).view(2, 3))
    torch.testing.assert_close(lin.bias.grad, torch.tensor([6.0, 7.0]))
    with pytest.raises(ValueError):
        assign_flat_grad(lin.parameters(), torch.zeros(3))


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 6))
        self.heads = nn.ModuleDict({"a": nn.Linear(6, 1), "b": nn.Linear(6, 1)})


def _losses(model, x, y):
    return {
        "a": ((model.heads["a"](model.trunk(x)).squeeze(-1) - y) ** 2).mean(),
        "b": ((model.heads["b"](model.trunk(x)).squeeze(-1) + 3 * y) ** 2).mean(),  # opposite targets
    }


def test_surgery_backward_on_two_head_model():
    torch.manual_seed(0)
    model = TwoHeads()
    x, y = torch.randn(16, 4), torch.randn(16)
    shared = list(model.trunk.parameters())

    # per-task gradients, computed independently
    own = {}
    for task in ("a", "b"):
        model.zero_grad(set_to_none=True)
        _losses(model, x, y)[task].backward()
        own[task] = {
            "shared": flatten_grads(shared),
            "head": [p.grad.clone() for p in model.heads[task].parameters()],
        }
    assert torch.dot(own["a"]["shared"], own["b"]["shared"]) < 0  # the tasks conflict

    def backward_of(task):
        return lambda: _losses(model, x, y)[task].backward()

    model.zero_grad(set_to_none=True)
    surgery_backward([backward_of("a"), backward_of("b")], shared, reduction="sum",
                     generator=torch.Generator().manual_seed(4))
    for task in ("a", "b"):
        for p, g in zip(model.heads[task].parameters(), own[task]["head"]):
            torch.testing.assert_close(p.grad, g)
    expected = project_conflicting([own["a"]["shared"], own["b"]["shared"]], generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(flatten_grads(shared), expected)
    assert not torch.allclose(expected, own["a"]["shared"] + own["b"]["shared"])

    # mean reduction; a stale shared gradient from before is discarded, not added
    model.zero_grad(set_to_none=True)
    for p in shared:
        p.grad = torch.ones_like(p)
    surgery_backward([backward_of("a"), backward_of("b")], shared, reduction="mean",
                     generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(flatten_grads(shared), expected / 2)


def test_pairwise_cosines_say_which_task_gradients_conflict():
    from smartmtl.train.pcgrad import pairwise_cosines

    grads = [torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.0]), torch.tensor([0.0, 2.0]), torch.zeros(2)]
    cosines = pairwise_cosines(grads)
    # Pairs in order (0,1), (0,2), (0,3), (1,2), (1,3), (2,3); a zero gradient agrees with nothing.
    assert cosines.tolist() == pytest.approx([-1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
