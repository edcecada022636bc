"""pointmetrics.compat.pytorchemd against PyTorchEMD (daerduoCarey/PyTorchEMD, commit
e5c0feb8c15741a858362f9c397d9ed4b8b1752b, emd.py and cuda/emd_kernel.cu).

The original's cost is matchcost (emd_kernel.cu lines 200-243): the sum over a transport plan of mass
times squared distance, with mass 1 on each point of the larger set and max // min on each point of
the smaller one (approxmatch, lines 29-35). Its plan is approximate; the references here are the
exact optimum of that transport problem (scipy's linear_sum_assignment for equal sizes, its linear
program otherwise) and a transcription of approxmatch itself, whose cost the exact one never exceeds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment, linprog

import pointmetrics as pm
from pointmetrics.compat import pytorchemd
from pointmetrics.compat.pytorchemd import EarthMoverDistanceFunction, earth_mover_distance

EXACT = 1e-12  # rel_tol at which the solver returns the optimum itself


# ------------------------------------------------------------------------------------------------
# Slow references (one cloud: (n, 3) and (m, 3) float64 arrays)


def masses(n: int, m: int) -> tuple[float, float]:
    """approxmatch lines 29-35: multiL, multiR, with C's integer division n / m."""
    return (1.0, float(n // m)) if n >= m else (float(m // n), 1.0)


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def exact_plan(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, m) optimal transport plan of the original's problem: linear_sum_assignment for n == m,
    else the linear program min sum c T, row sums <= multiL, column sums <= multiR, total mass =
    the smaller side's total."""
    n, m = len(a), len(b)
    cost = squared_distances(a, b)
    if n == m:
        rows, cols = linear_sum_assignment(cost)
        plan = np.zeros((n, m))
        plan[rows, cols] = 1
        return plan
    multi_l, multi_r = masses(n, m)
    rows = np.kron(np.eye(n), np.ones(m))  # row sums
    cols = np.kron(np.ones(n), np.eye(m))  # column sums
    total = min(n * multi_l, m * multi_r)
    res = linprog(cost.ravel(), A_ub=np.vstack([rows, cols]), b_ub=np.r_[np.full(n, multi_l), np.full(m, multi_r)],
                  A_eq=np.ones((1, n * m)), b_eq=[total], bounds=(0, None), method="highs")
    assert res.status == 0, res.message
    return res.x.reshape(n, m)


def match_cost(a: np.ndarray, b: np.ndarray, plan: np.ndarray) -> float:
    """matchcost (lines 200-243): sum over k, l of match[l][k] * |xyz1[k] - xyz2[l]|^2."""
    return float((plan * squared_distances(a, b)).sum())


def approxmatch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """approxmatch (lines 25-158), transcribed level by level in float64: (n, m) plan."""
    n, m = len(a), len(b)
    multi_l, multi_r = masses(n, m)
    d2 = squared_distances(a, b)
    plan = np.zeros((n, m))
    remain_l, remain_r = np.full(n, multi_l), np.full(m, multi_r)
    for j in range(7, -3, -1):
        level = 0.0 if j == -2 else -(4.0**j)
        w = np.exp(level * d2)
        ratio_l = remain_l / (1e-9 + w @ remain_r)  # lines 51-84
        sum_r = remain_r * (w.T @ ratio_l)  # lines 86-119
        ratio_r = np.minimum(remain_r / (sum_r + 1e-9), 1.0) * remain_r
        remain_r = np.maximum(0.0, remain_r - sum_r)
        flow = w * ratio_l[:, None] * ratio_r[None, :]  # lines 121-154
        plan += flow
        remain_l = np.maximum(0.0, remain_l - flow.sum(1))
    return plan


def plan_grads(a: np.ndarray, b: np.ndarray, plan: np.ndarray, g: float) -> tuple[np.ndarray, np.ndarray]:
    """matchcostgrad1 / matchcostgrad2 (lines 286-355): 2 g sum_l match (x_k - y_l), and its opposite."""
    diff = a[:, None, :] - b[None, :, :]
    return 2 * g * (plan[:, :, None] * diff).sum(1), -2 * g * (plan[:, :, None] * diff).sum(0)


def numpy_clouds(x: torch.Tensor) -> list[np.ndarray]:
    """(B, N, 3) tensor -> B float64 arrays."""
    return list(x.detach().double().cpu().numpy())


# ------------------------------------------------------------------------------------------------
# Values


def test_the_repository_example():
    # PyTorchEMD's test_emd_loss.py: the two points cross over, gt_dist is the sum of squared distances
    p1 = torch.tensor([[[1.7, -0.1, 0.1], [0.1, 1.2, 0.3]]]).repeat(3, 1, 1).requires_grad_()
    p2 = torch.tensor([[[0.3, 1.8, 0.2], [1.2, -0.2, 0.3]]]).repeat(3, 1, 1).requires_grad_()
    gt = [((p1[i, 0] - p2[i, 1]) ** 2).sum() + ((p1[i, 1] - p2[i, 0]) ** 2).sum() for i in range(3)]
    gt_loss = gt[0] / 2 + gt[1] * 2 + gt[2] / 3
    want = torch.autograd.grad(gt_loss, (p1, p2))
    d = earth_mover_distance(p1, p2, transpose=False)
    assert d.shape == (3,) and d.dtype == torch.float32
    torch.testing.assert_close(d, torch.stack(gt).detach())
    got = torch.autograd.grad(d[0] / 2 + d[1] * 2 + d[2] / 3, (p1, p2))
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("n,m", [(1, 1), (8, 8), (12, 4), (13, 4), (4, 13), (5, 11), (7, 3), (1, 5)])
def test_cost_is_the_exact_optimum(gen, device, n, m):
    x = torch.rand(2, 3, n, generator=gen, dtype=torch.float64)  # channels first: transpose=True
    y = torch.rand(2, 3, m, generator=gen, dtype=torch.float64)
    cost = earth_mover_distance(x.to(device), y.to(device), rel_tol=EXACT)
    assert cost.shape == (2,) and cost.dtype == torch.float64 and cost.device.type == device.type
    for b, (a, c) in enumerate(zip(numpy_clouds(x.transpose(1, 2)), numpy_clouds(y.transpose(1, 2)))):
        assert math.isclose(float(cost[b]), match_cost(a, c, exact_plan(a, c)), rel_tol=1e-9)


@pytest.mark.parametrize("n,m", [(40, 40), (30, 70), (70, 30)])
def test_default_tolerance_is_certified(gen, device, n, m):
    x = torch.rand(2, n, 3, generator=gen, dtype=torch.float64)
    y = torch.rand(2, m, 3, generator=gen, dtype=torch.float64)
    cost = earth_mover_distance(x.to(device), y.to(device), transpose=False).cpu()
    for b, (a, c) in enumerate(zip(numpy_clouds(x), numpy_clouds(y))):
        optimum = match_cost(a, c, exact_plan(a, c))
        assert optimum * (1 - 1e-12) <= float(cost[b]) <= optimum * (1 + 1e-3), (float(cost[b]), optimum)


@pytest.mark.parametrize("n,m", [(10, 10), (12, 6), (7, 3), (5, 9)])
def test_never_above_the_original_approximation(gen, n, m):
    x = torch.rand(3, n, 3, generator=gen, dtype=torch.float64)
    y = torch.rand(3, m, 3, generator=gen, dtype=torch.float64)
    cost = earth_mover_distance(x, y, transpose=False, rel_tol=EXACT)
    q = max(n, m) // min(n, m)
    for b, (a, c) in enumerate(zip(numpy_clouds(x), numpy_clouds(y))):
        plan = approxmatch(a, c)
        assert math.isclose(plan.sum(), q * min(n, m), rel_tol=1e-6)  # it moves (almost) all the mass
        assert float(cost[b]) <= match_cost(a, c, plan) * (1 + 1e-6)


@pytest.mark.parametrize("n,m", [(10, 10), (10, 20), (30, 10)])
def test_equals_the_original_where_its_approximation_is_exact(gen, n, m):
    # well separated clusters (grid spacing 0.5, noise 0.01): approxmatch finds the optimal plan
    centres = torch.stack(torch.meshgrid(*[torch.arange(3.0)] * 3, indexing="ij"), -1).reshape(-1, 3).double() * 0.5
    k = min(n, m)
    pick = centres[torch.randperm(27, generator=gen)[:k]]
    x = pick.repeat(n // k, 1) + 0.01 * torch.randn(n, 3, generator=gen, dtype=torch.float64)
    y = pick.repeat(m // k, 1) + 0.01 * torch.randn(m, 3, generator=gen, dtype=torch.float64)
    y = y[torch.randperm(m, generator=gen)]
    original = match_cost(x.numpy(), y.numpy(), approxmatch(x.numpy(), y.numpy()))
    assert math.isclose(float(earth_mover_distance(x, y, transpose=False, rel_tol=EXACT)), original, rel_tol=1e-6)


def test_duplicates_cost_nothing(gen, device):
    base = torch.rand(2, 5, 3, generator=gen, dtype=torch.float64)
    x = base.repeat_interleave(4, dim=1)
    y = x[:, torch.randperm(20, generator=gen)]
    zero = torch.zeros(2, dtype=torch.float64)
    assert torch.equal(earth_mover_distance(x.to(device), y.to(device), transpose=False).cpu(), zero)
    # 5 distinct points against each of them 4 times: every copy gets its own 4 coincident points
    assert torch.equal(earth_mover_distance(base.to(device), y.to(device), transpose=False).cpu(), zero)


def test_ties_on_an_integer_grid(gen, device):
    for n, m in [(15, 15), (10, 20), (21, 10)]:
        x = torch.randint(0, 3, (2, n, 3), generator=gen).double()
        y = torch.randint(0, 3, (2, m, 3), generator=gen).double()
        cost = earth_mover_distance(x.to(device), y.to(device), transpose=False, rel_tol=EXACT).cpu()
        for b, (a, c) in enumerate(zip(numpy_clouds(x), numpy_clouds(y))):
            assert math.isclose(float(cost[b]), match_cost(a, c, exact_plan(a, c)), rel_tol=1e-9, abs_tol=1e-12)


def test_is_pointmetrics_emd_times_the_pairs(gen, device):
    x = torch.rand(3, 25, 3, generator=gen, dtype=torch.float64, device=device)
    y = torch.rand(3, 25, 3, generator=gen, dtype=torch.float64, device=device)
    want = 25 * pm.earth_movers_distance(x, y, p=2, rel_tol=EXACT).distance
    torch.testing.assert_close(earth_mover_distance(x, y, transpose=False, rel_tol=EXACT), want, rtol=1e-12, atol=0)


def test_any_scale_and_offset(gen):
    x = torch.rand(2, 3, 20, generator=gen, dtype=torch.float64)
    y = torch.rand(2, 3, 14, generator=gen, dtype=torch.float64)
    cost = earth_mover_distance(x, y, rel_tol=EXACT)
    torch.testing.assert_close(earth_mover_distance(300 * x - 50, 300 * y - 50, rel_tol=EXACT), 9e4 * cost, rtol=1e-9,
                               atol=0)


def test_empty_clouds_cost_zero(device):
    x = torch.rand(2, 3, 6, device=device, requires_grad=True)
    for a, b in [(x, torch.rand(2, 3, 0, device=device)), (torch.rand(2, 3, 0, device=device), x)]:
        cost = earth_mover_distance(a, b)
        assert cost.shape == (2,) and torch.equal(cost.detach().cpu(), torch.zeros(2))
        cost.sum().backward()
    assert torch.equal(x.grad.cpu(), torch.zeros(2, 3, 6))


# ------------------------------------------------------------------------------------------------
# Layout


def test_transpose_and_single_clouds(gen, device):
    x = torch.rand(2, 12, 3, generator=gen, dtype=torch.float64, device=device)
    y = torch.rand(2, 9, 3, generator=gen, dtype=torch.float64, device=device)
    want = earth_mover_distance(x, y, transpose=False)
    torch.testing.assert_close(earth_mover_distance(x.transpose(1, 2), y.transpose(1, 2)), want, rtol=0, atol=0)
    torch.testing.assert_close(earth_mover_distance(x.transpose(1, 2).contiguous(), y.transpose(1, 2).contiguous()),
                               want, rtol=0, atol=0)
    single = earth_mover_distance(x[1].T, y[1].T)  # (3, N): a batch of one, as in the original
    assert single.shape == (1,) and torch.equal(single, want[1:])
    assert torch.equal(earth_mover_distance(x[1], y[1], transpose=False), want[1:])


def test_non_contiguous_inputs(gen, device):
    x = torch.rand(2, 3, 40, generator=gen, device=device)[:, :, ::2]
    y = torch.rand(2, 6, 18, generator=gen, device=device)[:, 1:4]
    assert not x.is_contiguous() and not y.is_contiguous()
    assert torch.equal(earth_mover_distance(x, y), earth_mover_distance(x.contiguous(), y.contiguous()))


def test_earth_mover_distance_function_apply(gen):
    x = torch.rand(2, 12, 3, generator=gen)
    y = torch.rand(2, 8, 3, generator=gen)
    assert torch.equal(EarthMoverDistanceFunction.apply(x, y), earth_mover_distance(x, y, transpose=False))


# ------------------------------------------------------------------------------------------------
# Gradients and dtypes


@pytest.mark.parametrize("n,m", [(5, 5), (6, 3), (4, 9)])
def test_gradcheck_both_inputs(gen, n, m):
    x = torch.rand(2, 3, n, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, 3, m, generator=gen, dtype=torch.float64, requires_grad=True)

    def cost(a, b):
        return earth_mover_distance(a, b, rel_tol=EXACT)

    assert torch.autograd.gradcheck(cost, (x, y))
    assert torch.autograd.gradgradcheck(cost, (x, y))


@pytest.mark.parametrize("n,m", [(9, 9), (12, 5), (4, 10)])
def test_gradients_are_the_original_formula_on_the_exact_plan(gen, device, n, m):
    x = torch.rand(2, n, 3, generator=gen, dtype=torch.float64)
    y = torch.rand(2, m, 3, generator=gen, dtype=torch.float64)
    g = torch.rand(2, generator=gen, dtype=torch.float64) + 0.5
    xd, yd = x.to(device).clone().requires_grad_(), y.to(device).clone().requires_grad_()
    earth_mover_distance(xd, yd, transpose=False, rel_tol=EXACT).backward(g.to(device))
    for b, (a, c) in enumerate(zip(numpy_clouds(x), numpy_clouds(y))):
        want_x, want_y = plan_grads(a, c, exact_plan(a, c), float(g[b]))
        np.testing.assert_allclose(xd.grad[b].cpu().numpy(), want_x, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(yd.grad[b].cpu().numpy(), want_y, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_reduced_precision_inputs(gen, device, dtype):
    x = torch.rand(2, 3, 30, generator=gen).to(dtype)
    y = torch.rand(2, 3, 20, generator=gen).to(dtype)
    xd, yd = x.to(device).clone().requires_grad_(), y.to(device).clone().requires_grad_()
    cost = earth_mover_distance(xd, yd)
    assert cost.dtype == torch.float32
    cost.sum().backward()
    cost = cost.detach().cpu()
    assert xd.grad.dtype == dtype and yd.grad.dtype == dtype
    assert torch.isfinite(xd.grad).all() and torch.isfinite(yd.grad).all()
    for b, (a, c) in enumerate(zip(numpy_clouds(x.transpose(1, 2)), numpy_clouds(y.transpose(1, 2)))):
        optimum = match_cost(a, c, exact_plan(a, c))  # of the same rounded inputs
        assert optimum * (1 - 1e-5) <= float(cost[b]) <= optimum * (1 + 1e-3 + 1e-5)


def test_mixed_dtypes_promote(gen):
    x = torch.rand(2, 3, 10, generator=gen, dtype=torch.float64)
    y = torch.rand(2, 3, 10, generator=gen, dtype=torch.float64)
    cost = earth_mover_distance(x.float(), y)
    assert cost.dtype == torch.float64 and torch.equal(cost, earth_mover_distance(x.float().double(), y))


def test_bad_inputs_name_the_argument():
    x = torch.rand(2, 3, 8)
    with pytest.raises(ValueError, match=r"xyz1 must have shape \(B, 3, N\).*transpose=False"):
        earth_mover_distance(torch.rand(2, 8, 3), x)  # (B, N, 3) passed with the default transpose=True
    with pytest.raises(ValueError, match=r"xyz2 must have shape \(B, N, 3\)"):
        earth_mover_distance(torch.rand(2, 8, 3), x, transpose=False)
    with pytest.raises(ValueError, match="xyz2"):
        earth_mover_distance(x, torch.rand(1, 2, 3, 8))
    with pytest.raises(TypeError, match="xyz1"):
        earth_mover_distance(torch.ones(2, 3, 8, dtype=torch.int32), x)
    with pytest.raises(TypeError, match="xyz2"):
        earth_mover_distance(x, [x[0]])
    with pytest.raises(ValueError, match="batch"):
        earth_mover_distance(x, torch.rand(3, 3, 8))
    bad = x.clone()
    bad[0, 1, 2] = float("inf")
    with pytest.raises(ValueError, match="xyz1 contains NaN or Inf"):
        earth_mover_distance(bad, x)
    with pytest.raises(ValueError, match="rel_tol"):
        earth_mover_distance(x, x, rel_tol=-1.0)
    assert pytorchemd.REL_TOL == 1e-3
