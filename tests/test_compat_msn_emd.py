"""pointmetrics.compat.msn_emd against MSN's emd_module (Colin97/MSN-Point-Cloud-Completion, commit
dc6450f1e942c1617bf91084df86e8e5a29f5441, emd/emd_module.py and emd/emd_cuda.cu).

The original is an approximate auction; the reference here is the exact optimum it approximates:
scipy's linear_sum_assignment on the float64 matrix of Euclidean distances (its bid value is
3 - |x - y| - price, emd_cuda.cu line 146, so it minimises the sum of unsquared distances). Its
outputs are then transcribed: dist from CalcDist (lines 217-225) and input1's gradient from
NmDistanceGradKernel (lines 284-300).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

import pointmetrics as pm
from pointmetrics.compat import msn_emd

EXACT = 1e-12  # rel_tol at which the solver returns the optimum itself (unique at generic points)


# ------------------------------------------------------------------------------------------------
# Slow references


def exact_matching(x: torch.Tensor, y: torch.Tensor) -> tuple[float, np.ndarray]:
    """(optimal sum of Euclidean distances, (N,) partner in y or -1) for one (N, D), (M, D) pair."""
    a, b = x.detach().double().cpu().numpy(), y.detach().double().cpu().numpy()
    cost = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    rows, cols = linear_sum_assignment(cost)
    partner = np.full(len(a), -1)
    partner[rows] = cols
    return float(cost[rows, cols].sum()), partner


def calc_dist(x: torch.Tensor, y: torch.Tensor, assignment: torch.Tensor) -> torch.Tensor:
    """emd_cuda.cu CalcDist (lines 217-225): dist[i][j] = sum over xyz of (xyz1[j] - xyz2[k])^2 with
    k = assignment[i][j]; an unmatched point (k = -1, our extension for N > M) gets 0."""
    B, N = assignment.shape
    dist = torch.zeros(B, N, dtype=torch.float64)
    for i in range(B):
        for j in range(N):
            k = int(assignment[i, j])
            if k >= 0:
                dist[i, j] = sum((float(x[i, j, c]) - float(y[i, k, c])) ** 2 for c in range(x.shape[2]))
    return dist


def original_grad_xyz1(x, y, assignment, grad_dist) -> torch.Tensor:
    """emd_cuda.cu NmDistanceGradKernel (lines 284-300): grad_xyz[j] = 2 g_j (xyz1[j] - xyz2[k])."""
    grad = torch.zeros(x.shape, dtype=torch.float64)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            k = int(assignment[i, j])
            if k >= 0:
                grad[i, j] = 2 * float(grad_dist[i, j]) * (x[i, j].double() - y[i, k].double())
    return grad


def corrected_grad_xyz2(x, y, assignment, grad_dist) -> torch.Tensor:
    """What the original should have returned for xyz2 (it returns zeros): -2 g_j (xyz1[j] - xyz2[k])
    accumulated on k."""
    grad = torch.zeros(y.shape, dtype=torch.float64)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            k = int(assignment[i, j])
            if k >= 0:
                grad[i, k] -= 2 * float(grad_dist[i, j]) * (x[i, j].double() - y[i, k].double())
    return grad


def assert_valid_matching(assignment: torch.Tensor, n: int, m: int) -> None:
    """Each row: int32, in [-1, m), partners distinct, exactly min(n, m) points matched."""
    assert assignment.dtype == torch.int32 and assignment.shape[1] == n
    for row in assignment.cpu().tolist():
        matched = [k for k in row if k >= 0]
        assert all(-1 <= k < m for k in row), row
        assert len(matched) == len(set(matched)) == min(n, m), row


# ------------------------------------------------------------------------------------------------
# Values


@pytest.mark.parametrize("n,m", [(1, 1), (7, 7), (16, 16), (5, 9), (3, 20), (9, 5), (20, 3)])
def test_dist_and_assignment_are_the_exact_matchings(gen, device, n, m):
    x = torch.rand(3, n, 3, generator=gen, dtype=torch.float64)
    y = torch.rand(3, m, 3, generator=gen, dtype=torch.float64)
    dist, assignment = msn_emd.emdModule(rel_tol=EXACT)(x.to(device), y.to(device), 0.005, 50)
    assert dist.shape == (3, n) and dist.dtype == torch.float64 and dist.device.type == device.type
    assert_valid_matching(assignment, n, m)
    assignment, dist = assignment.cpu(), dist.cpu()
    for b in range(3):
        optimum, partner = exact_matching(x[b], y[b])
        assert assignment[b].tolist() == partner.tolist()
        assert math.isclose(float(dist[b].sqrt().sum()), optimum, rel_tol=1e-9)
    torch.testing.assert_close(dist, calc_dist(x, y, assignment), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("n,m", [(64, 64), (50, 80), (80, 50)])
def test_default_tolerance_is_certified(gen, device, n, m):
    x = torch.rand(2, n, 3, generator=gen, dtype=torch.float64)
    y = torch.rand(2, m, 3, generator=gen, dtype=torch.float64)
    dist, assignment = msn_emd.emdModule()(x.to(device), y.to(device), 0.005, 50)
    assert_valid_matching(assignment, n, m)
    dist, assignment = dist.cpu(), assignment.cpu()
    torch.testing.assert_close(dist, calc_dist(x, y, assignment), rtol=1e-12, atol=1e-15)
    for b in range(2):
        optimum, _ = exact_matching(x[b], y[b])
        got = float(dist[b].sqrt().sum())
        assert optimum * (1 - 1e-12) <= got <= optimum * (1 + 1e-3), (got, optimum)


@pytest.mark.parametrize("D", [1, 2, 5])
def test_any_point_dimension(gen, D):
    x = torch.rand(2, 8, D, generator=gen, dtype=torch.float64)
    y = torch.rand(2, 6, D, generator=gen, dtype=torch.float64)
    dist, assignment = msn_emd.emdModule(rel_tol=EXACT)(x, y, 0.005, 50)
    for b in range(2):
        optimum, partner = exact_matching(x[b], y[b])
        if D > 1:  # on a line, |x - y| costs tie between crossing and nested pairs: only the cost is unique
            assert assignment[b].tolist() == partner.tolist()
        assert math.isclose(float(dist[b].sqrt().sum()), optimum, rel_tol=1e-9)
    assert_valid_matching(assignment, 8, 6)


def test_the_mean_of_sqrt_dist_is_pointmetrics_emd(gen, device):
    # PoinTr's metric: mean(sqrt(dist)); MSN's loss: sqrt(dist).mean(1)
    x = torch.rand(3, 40, 3, generator=gen, dtype=torch.float64, device=device)
    y = torch.rand(3, 40, 3, generator=gen, dtype=torch.float64, device=device)
    dist, _ = msn_emd.emdModule(rel_tol=EXACT)(x, y, 0.005, 50)
    want = pm.earth_movers_distance(x, y, p=1, rel_tol=EXACT).distance
    torch.testing.assert_close(dist.sqrt().mean(1), want, rtol=1e-10, atol=0)


def test_duplicated_points_matched_to_their_copies(gen, device):
    # 4 distinct points, each 3 times; y is x shuffled: the optimum is 0, every dist exactly 0
    base = torch.rand(2, 4, 3, generator=gen, dtype=torch.float64)
    x = base.repeat_interleave(3, dim=1)
    perm = torch.randperm(12, generator=gen)
    y = x[:, perm]
    dist, assignment = msn_emd.emdModule()(x.to(device), y.to(device), 0.005, 50)
    assert_valid_matching(assignment, 12, 12)
    assert torch.equal(dist.cpu(), torch.zeros(2, 12, dtype=torch.float64))
    assert torch.equal(y[torch.arange(2)[:, None], assignment.cpu().long()], x)


def test_ties_on_an_integer_grid(gen, device):
    # coordinates in {0, 1, 2}: many equal distances and repeated points, so optimal assignments are
    # not unique; the cost must still be the optimum and the assignment a matching
    for n, m in [(15, 15), (12, 18), (18, 12)]:
        x = torch.randint(0, 3, (2, n, 3), generator=gen).double()
        y = torch.randint(0, 3, (2, m, 3), generator=gen).double()
        dist, assignment = msn_emd.emdModule(rel_tol=EXACT)(x.to(device), y.to(device), 0.005, 50)
        assert_valid_matching(assignment, n, m)
        dist, assignment = dist.cpu(), assignment.cpu()
        torch.testing.assert_close(dist, calc_dist(x, y, assignment), rtol=0, atol=0)
        for b in range(2):
            optimum, _ = exact_matching(x[b], y[b])
            assert math.isclose(float(dist[b].sqrt().sum()), optimum, rel_tol=1e-9, abs_tol=1e-12)


def test_extra_points_of_input1_are_unmatched(gen, device):
    # input1 = input2 shuffled plus 4 far points: those 4 are the unmatched ones (-1, dist 0)
    y = torch.rand(2, 10, 3, generator=gen, dtype=torch.float64)
    far = 10 + torch.rand(2, 4, 3, generator=gen, dtype=torch.float64)
    x = torch.cat([y[:, torch.randperm(10, generator=gen)], far], 1)
    order = torch.randperm(14, generator=gen)
    x = x[:, order]
    dist, assignment = msn_emd.emdModule()(x.to(device), y.to(device), 0.005, 50)
    assignment, dist = assignment.cpu(), dist.cpu()
    extra = order >= 10
    assert torch.equal(assignment[:, extra], torch.full((2, 4), -1, dtype=torch.int32))
    assert torch.equal(dist, torch.zeros(2, 14, dtype=torch.float64))
    assert_valid_matching(assignment, 14, 10)


def test_any_scale_and_offset(gen):
    # the original assumes points in [0, 1] (every distance below 3); the matching does not depend on scale
    x = torch.rand(2, 20, 3, generator=gen, dtype=torch.float64)
    y = torch.rand(2, 20, 3, generator=gen, dtype=torch.float64)
    module = msn_emd.emdModule(rel_tol=EXACT)
    dist, assignment = module(x, y, 0.005, 50)
    big_dist, big_assignment = module(1000 * x - 700, 1000 * y - 700, 0.005, 50)
    assert torch.equal(assignment, big_assignment)
    torch.testing.assert_close(big_dist, 1e6 * dist, rtol=1e-9, atol=1e-9)


def test_empty_clouds(device):
    x = torch.rand(2, 5, 3, device=device, requires_grad=True)
    dist, assignment = msn_emd.emdModule()(x, torch.rand(2, 0, 3, device=device), 0.005, 50)
    assert torch.equal(assignment.cpu(), torch.full((2, 5), -1, dtype=torch.int32))
    assert torch.equal(dist.cpu(), torch.zeros(2, 5))
    dist.sum().backward()
    assert torch.equal(x.grad.cpu(), torch.zeros(2, 5, 3))
    dist, assignment = msn_emd.emdModule()(torch.rand(2, 0, 3, device=device), x, 0.005, 50)
    assert dist.shape == assignment.shape == (2, 0) and assignment.dtype == torch.int32


# ------------------------------------------------------------------------------------------------
# Gradients


@pytest.mark.parametrize("n,m", [(5, 5), (4, 7), (7, 4)])
def test_gradcheck_both_inputs(gen, n, m):
    x = torch.rand(2, n, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, m, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    module = msn_emd.emdModule(rel_tol=EXACT)

    def dist(a, b):
        return module(a, b, 0.005, 50)[0]

    assert torch.autograd.gradcheck(dist, (x, y))
    assert torch.autograd.gradgradcheck(dist, (x, y))


@pytest.mark.parametrize("n,m", [(12, 12), (9, 14), (14, 9)])
def test_gradients_against_the_original_backward(gen, device, n, m):
    x = torch.rand(2, n, 3, generator=gen, dtype=torch.float64)
    y = torch.rand(2, m, 3, generator=gen, dtype=torch.float64)
    g = torch.rand(2, n, generator=gen, dtype=torch.float64)
    xd, yd = x.to(device).clone().requires_grad_(), y.to(device).clone().requires_grad_()
    dist, assignment = msn_emd.emdModule()(xd, yd, 0.005, 50)
    dist.backward(g.to(device))
    assignment = assignment.cpu()
    torch.testing.assert_close(xd.grad.cpu(), original_grad_xyz1(x, y, assignment, g), rtol=1e-12, atol=1e-14)
    want_y = corrected_grad_xyz2(x, y, assignment, g)
    assert want_y.abs().sum() > 0  # the original returned zeros here
    torch.testing.assert_close(yd.grad.cpu(), want_y, rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------------------------------------
# Dtypes and layouts


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_reduced_precision_inputs(gen, device, dtype):
    x = torch.rand(2, 30, 3, generator=gen).to(dtype)
    y = torch.rand(2, 40, 3, generator=gen).to(dtype)
    xd, yd = x.to(device).clone().requires_grad_(), y.to(device).clone().requires_grad_()
    dist, assignment = msn_emd.emdModule()(xd, yd, 0.005, 50)
    assert dist.dtype == torch.float32 and assignment.dtype == torch.int32
    assert_valid_matching(assignment, 30, 40)
    dist.sum().backward()
    assert xd.grad.dtype == dtype and yd.grad.dtype == dtype
    assert torch.isfinite(xd.grad).all() and torch.isfinite(yd.grad).all() and yd.grad.abs().sum() > 0
    dist, assignment = dist.detach().cpu(), assignment.cpu()
    # dist of the returned matching, in float64 from the same rounded inputs
    torch.testing.assert_close(dist.double(), calc_dist(x.double(), y.double(), assignment), rtol=1e-6, atol=1e-7)
    for b in range(2):
        optimum, _ = exact_matching(x[b].double(), y[b].double())
        got = float(dist[b].double().sqrt().sum())
        assert optimum * (1 - 1e-5) <= got <= optimum * (1 + 1e-3 + 1e-5), (got, optimum)


def test_mixed_dtypes_promote(gen):
    x = torch.rand(2, 10, 3, generator=gen, dtype=torch.float64)
    y = torch.rand(2, 10, 3, generator=gen, dtype=torch.float64)
    module = msn_emd.emdModule()
    dist, assignment = module(x.float(), y, 0.005, 50)
    want, want_assignment = module(x.float().double(), y, 0.005, 50)
    assert dist.dtype == torch.float64
    assert torch.equal(assignment, want_assignment) and torch.equal(dist, want)


def test_non_contiguous_inputs(gen, device):
    x_cf = torch.rand(2, 3, 17, generator=gen, dtype=torch.float64, device=device)  # channels first
    y_wide = torch.rand(2, 30, 6, generator=gen, dtype=torch.float64, device=device)
    x, y = x_cf.transpose(1, 2), y_wide[:, ::2, 1:4]
    assert not x.is_contiguous() and not y.is_contiguous()
    module = msn_emd.emdModule()
    dist, assignment = module(x, y, 0.005, 50)
    want, want_assignment = module(x.contiguous(), y.contiguous(), 0.005, 50)
    assert torch.equal(assignment, want_assignment) and torch.equal(dist, want)


def test_emd_function_apply_and_default_arguments(gen):
    x = torch.rand(2, 12, 3, generator=gen)
    y = torch.rand(2, 12, 3, generator=gen)
    dist, assignment = msn_emd.emdModule()(x, y, 0.005, 50)
    for got in (msn_emd.emdFunction.apply(x, y, 0.005, 50), msn_emd.emdModule()(x, y)):
        assert torch.equal(got[0], dist) and torch.equal(got[1], assignment)


def test_eps_and_iters_are_checked_and_do_not_change_the_result(gen):
    x = torch.rand(2, 20, 3, generator=gen)
    y = torch.rand(2, 20, 3, generator=gen)
    module = msn_emd.emdModule()
    dist, assignment = module(x, y, 0.005, 50)
    for eps, iters in [(0.002, 10000), (0.5, 1), (torch.tensor(0.005), torch.tensor(50))]:
        got = module(x, y, eps, iters)
        assert torch.equal(got[0], dist) and torch.equal(got[1], assignment)
    for eps in (0, -0.1, float("nan"), float("inf"), "0.005", None):
        with pytest.raises(ValueError, match="eps"):
            module(x, y, eps, 50)
    for iters in (0, -3, 2.5, True, None):
        with pytest.raises(ValueError, match="iters"):
            module(x, y, 0.005, iters)


def test_bad_inputs_name_the_argument():
    x = torch.rand(2, 8, 3)
    module = msn_emd.emdModule()
    with pytest.raises(ValueError, match="input1"):
        module(torch.rand(8, 3), x, 0.005, 50)
    with pytest.raises(ValueError, match="input2"):
        module(x, torch.rand(1, 2, 8, 3), 0.005, 50)
    with pytest.raises(TypeError, match="input2"):
        module(x, torch.ones(2, 8, 3, dtype=torch.int64), 0.005, 50)
    with pytest.raises(TypeError, match="input1"):
        module([x[0]], x, 0.005, 50)
    with pytest.raises(ValueError, match="batch"):
        module(x, torch.rand(3, 8, 3), 0.005, 50)
    with pytest.raises(ValueError, match="dimension"):
        module(x, torch.rand(2, 8, 2), 0.005, 50)
    bad = x.clone()
    bad[1, 3, 0] = float("nan")
    with pytest.raises(ValueError, match="input2 contains NaN"):
        module(x, bad, 0.005, 50)
    with pytest.raises(ValueError, match="rel_tol"):
        msn_emd.emdModule(rel_tol=0)
