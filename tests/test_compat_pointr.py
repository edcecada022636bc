"""pointmetrics.compat.pointr against a transcription of PoinTr's extensions/chamfer_dist
(yuxumin/PoinTr 2e53e72367db9dbc3832ca534569f0fed9dd7dc1: chamfer.cu, __init__.py)."""

import pytest
import torch

import pointmetrics as pm
from pointmetrics.compat import pointr
from pointmetrics.compat.pointr import (
    ChamferDistanceL1,
    ChamferDistanceL1_PM,
    ChamferDistanceL2,
    ChamferDistanceL2_split,
    ChamferFunction,
)


def kernel_nearest(xyz1, xyz2, batch=512):
    """chamfer.cu, chamfer_dist_kernel (lines 15-146), as a loop: for each point of xyz1, the
    squared distance to and index of its nearest xyz2 point. The kernel scans xyz2 in chunks of
    `batch` points; inside a chunk the first point sets the best (`k == 0 ||`) and later ones
    replace it only if strictly closer (`dist < best_dist`); a chunk's best replaces the stored one
    only if strictly closer (`k2 == 0 || dist[...] > best_dist`). Outputs start at zero
    (torch::zeros in chamfer_cuda_forward), so an empty xyz2 leaves 0 and index 0."""
    B, n, m = xyz1.shape[0], xyz1.shape[1], xyz2.shape[1]
    p1, p2 = xyz1.tolist(), xyz2.tolist()
    dist = [[0.0] * n for _ in range(B)]
    index = [[0] * n for _ in range(B)]
    for i in range(B):
        for k2 in range(0, m, batch):
            end_k = min(m, k2 + batch) - k2
            for j in range(n):
                x1, y1, z1 = p1[i][j]
                best, best_index = 0.0, 0
                for k in range(end_k):
                    x2, y2, z2 = p2[i][k2 + k]
                    d = (x2 - x1) ** 2 + (y2 - y1) ** 2 + (z2 - z1) ** 2
                    if k == 0 or d < best:
                        best, best_index = d, k + k2
                if k2 == 0 or dist[i][j] > best:
                    dist[i][j], index[i][j] = best, best_index
    return torch.tensor(dist, dtype=torch.float64).reshape(B, n), torch.tensor(index, dtype=torch.int32).reshape(B, n)


def reference_forward(xyz1, xyz2):
    """chamfer_cuda_forward: the kernel both ways."""
    d1, i1 = kernel_nearest(xyz1, xyz2)
    d2, i2 = kernel_nearest(xyz2, xyz1)
    return d1, d2, i1, i2


def reference_ignore_zeros(xyz1, xyz2, ignore_zeros):
    """__init__.py, every module's forward (e.g. lines 36-41): batch size 1 only, keep points whose
    coordinate sum is not 0."""
    batch_size = xyz1.size(0)
    if batch_size == 1 and ignore_zeros:
        non_zeros1 = torch.sum(xyz1, dim=2).ne(0)
        non_zeros2 = torch.sum(xyz2, dim=2).ne(0)
        xyz1 = xyz1[non_zeros1].unsqueeze(dim=0)
        xyz2 = xyz2[non_zeros2].unsqueeze(dim=0)
    return xyz1, xyz2


def reference_losses(xyz1, xyz2, ignore_zeros=False):
    """__init__.py lines 43-44, 60-61, 77-82 and 98-100: the four modules' formulas."""
    xyz1, xyz2 = reference_ignore_zeros(xyz1.detach().cpu().double(), xyz2.detach().cpu().double(), ignore_zeros)
    dist1, dist2, _, _ = reference_forward(xyz1, xyz2)
    return {
        "L2": torch.mean(dist1) + torch.mean(dist2),
        "L2_split": (torch.mean(dist1), torch.mean(dist2)),
        "L1": (torch.mean(torch.sqrt(dist1)) + torch.mean(torch.sqrt(dist2))) / 2,
        "L1_PM": torch.mean(torch.sqrt(dist1)),
    }


def ours(xyz1, xyz2, ignore_zeros=False):
    return {
        "L2": ChamferDistanceL2(ignore_zeros)(xyz1, xyz2),
        "L2_split": ChamferDistanceL2_split(ignore_zeros)(xyz1, xyz2),
        "L1": ChamferDistanceL1(ignore_zeros)(xyz1, xyz2),
        "L1_PM": ChamferDistanceL1_PM(ignore_zeros)(xyz1, xyz2),
    }


def assert_losses_equal(got, want, **tol):
    for name in want:
        g, w = got[name], want[name]
        g, w = (g, w) if isinstance(w, tuple) else ((g,), (w,))
        for a, b in zip(g, w):
            assert a.ndim == 0, name
            torch.testing.assert_close(a.detach().cpu().double(), b, equal_nan=True, **tol, msg=name)


def with_duplicates_and_ties(gen, B, N, M):
    """Random clouds where x repeats some y points exactly (distance 0), y holds duplicates (ties
    between two indices) and all coordinates lie on a coarse grid (many equal distances)."""
    x = torch.randint(0, 4, (B, N, 3), generator=gen).double() / 4
    y = torch.randint(0, 4, (B, M, 3), generator=gen).double() / 4
    y[:, M // 2 :] = y[:, : M - M // 2]
    x[:, : min(N, M) // 3] = y[:, : min(N, M) // 3]
    return x, y


SIZES = [(2, 37, 23), (3, 1, 9), (1, 8, 1), (2, 16, 16)]


@pytest.mark.parametrize("B,N,M", SIZES)
def test_forward_matches_the_kernel(device, gen, B, N, M):
    x = torch.rand(B, N, 3, generator=gen, dtype=torch.float64)
    y = torch.rand(B, M, 3, generator=gen, dtype=torch.float64)
    got = pointr.chamfer_forward(x.to(device), y.to(device))
    want = reference_forward(x, y)
    assert [t.dtype for t in got] == [torch.float64, torch.float64, torch.int32, torch.int32]
    assert [t.shape for t in got] == [(B, N), (B, M), (B, N), (B, M)]
    for g, w in zip(got, want):
        torch.testing.assert_close(g.cpu(), w)
    d1, d2 = ChamferFunction.apply(x.to(device), y.to(device))
    torch.testing.assert_close(d1.cpu(), want[0])
    torch.testing.assert_close(d2.cpu(), want[1])


@pytest.mark.parametrize("B,N,M", [(2, 30, 41), (1, 12, 12), (3, 700, 9)])
def test_ties_and_duplicates_take_the_kernels_index(device, gen, B, N, M):
    x, y = with_duplicates_and_ties(gen, B, N, M)
    got = pointr.chamfer_forward(x.to(device), y.to(device))
    want = reference_forward(x, y)
    for g, w in zip(got, want):
        assert torch.equal(g.cpu(), w.to(g.dtype))


def test_more_than_one_kernel_chunk(gen):
    # 700 > 512 target points: the kernel compares chunk minima with a strict ">", so on a tie across
    # chunks the first chunk's index stays. Point 600 duplicates point 10.
    x = torch.rand(1, 20, 3, generator=gen, dtype=torch.float64)
    y = torch.rand(1, 700, 3, generator=gen, dtype=torch.float64)
    y[0, 600] = y[0, 10]
    x[0, 0] = y[0, 10]
    got = pointr.chamfer_forward(x, y)
    want = reference_forward(x, y)
    assert got[2][0, 0] == 10 and want[2][0, 0] == 10
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=0)  # indices exactly, distances to rounding


@pytest.mark.parametrize("B,N,M", SIZES)
def test_modules_match_the_original_formulas(device, gen, B, N, M):
    x = torch.rand(B, N, 3, generator=gen, dtype=torch.float64)
    y = torch.rand(B, M, 3, generator=gen, dtype=torch.float64)
    assert_losses_equal(ours(x.to(device), y.to(device)), reference_losses(x, y))
    x, y = with_duplicates_and_ties(gen, B, N, M)
    assert_losses_equal(ours(x.to(device), y.to(device)), reference_losses(x, y))


def test_the_conventions_by_hand():
    # One point each, 3 apart: squared 9 each way.
    x = torch.tensor([[[0.0, 0.0, 0.0]]])
    y = torch.tensor([[[3.0, 0.0, 0.0]]])
    assert ChamferDistanceL2()(x, y).item() == 18.0  # squared, both directions, not halved
    assert [t.item() for t in ChamferDistanceL2_split()(x, y)] == [9.0, 9.0]
    assert ChamferDistanceL1()(x, y).item() == 3.0  # unsquared, halved
    # x -> y only: (0,0,0) and (3,0,0) against y = {(3,0,0)}: distances 3 and 0.
    x2 = torch.tensor([[[0.0, 0.0, 0.0], [3.0, 0.0, 0.0]]])
    assert ChamferDistanceL1_PM()(x2, y).item() == 1.5
    assert ChamferDistanceL1_PM()(y, x2).item() == 0.0


def test_means_run_over_batch_and_points(gen):
    # Every cloud has the same N, so the mean of all B x N equals pm's mean of per-cloud means.
    x = torch.rand(4, 33, 3, generator=gen, dtype=torch.float64)
    y = torch.rand(4, 21, 3, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(ChamferDistanceL2()(x, y), pm.chamfer_l2(x, y))
    torch.testing.assert_close(ChamferDistanceL1()(x, y), pm.chamfer_l1(x, y))
    d1, d2 = ChamferDistanceL2_split()(x, y)
    torch.testing.assert_close(d1, pm.chamfer_distance(x, y, single_directional=True)[0])
    torch.testing.assert_close(d2, pm.chamfer_distance(y, x, single_directional=True)[0])


def zero_sum_clouds(gen, B):
    """Clouds with exact zeros, points whose coordinates sum to zero without being zero, and a
    point whose coordinates are zero but one."""
    x = torch.rand(B, 12, 3, generator=gen, dtype=torch.float64)
    y = torch.rand(B, 9, 3, generator=gen, dtype=torch.float64)
    x[:, 3] = 0
    x[:, 7] = torch.tensor([1.0, -1.0, 0.0])
    x[:, 8] = torch.tensor([0.5, 0.25, -0.75])
    x[:, 9] = torch.tensor([0.0, 0.0, 0.5])  # kept: sums to 0.5
    y[:, 0] = 0
    y[:, 5] = torch.tensor([-0.25, 0.0, 0.25])
    return x, y


def test_ignore_zeros_drops_zero_sum_points_for_batch_size_one(device, gen):
    x, y = zero_sum_clouds(gen, 1)
    got = ours(x.to(device), y.to(device), ignore_zeros=True)
    assert_losses_equal(got, reference_losses(x, y, ignore_zeros=True))
    kept_x, kept_y = x[:, [i for i in range(12) if i not in (3, 7, 8)]], y[:, [j for j in range(9) if j not in (0, 5)]]
    assert_losses_equal(got, reference_losses(kept_x, kept_y))
    # ...which is not what the full clouds give: the test above would notice a no-op.
    assert not torch.isclose(ChamferDistanceL2(True)(x, y), ChamferDistanceL2(False)(x, y))


def test_ignore_zeros_does_nothing_for_larger_batches(device, gen):
    x, y = zero_sum_clouds(gen, 2)
    got = ours(x.to(device), y.to(device), ignore_zeros=True)
    assert_losses_equal(got, reference_losses(x, y, ignore_zeros=True))
    assert_losses_equal(got, reference_losses(x, y, ignore_zeros=False))


def test_ignore_zeros_gradient_skips_the_dropped_points(gen):
    x, y = zero_sum_clouds(gen, 1)
    x.requires_grad_(True)
    y.requires_grad_(True)
    ChamferDistanceL2(ignore_zeros=True)(x, y).backward()
    assert torch.all(x.grad[0, [3, 7, 8]] == 0) and torch.all(y.grad[0, [0, 5]] == 0)
    assert torch.all(x.grad[0, [0, 1, 9]].abs().sum(-1) > 0)


def test_all_points_dropped_gives_nan(device):
    x = torch.zeros(1, 5, 3, device=device)
    y = torch.rand(1, 4, 3, device=device)
    assert torch.isnan(ChamferDistanceL2(ignore_zeros=True)(x, y))
    want = reference_losses(x, y, ignore_zeros=True)
    assert torch.isnan(want["L2"])
    assert_losses_equal(ours(x, y, ignore_zeros=True), want)


def test_empty_other_cloud_gives_zero_and_index_zero(device, gen):
    x = torch.rand(2, 5, 3, generator=gen).to(device)
    y = torch.zeros(2, 0, 3, device=device)
    d1, d2, i1, i2 = pointr.chamfer_forward(x, y)
    assert torch.equal(d1, torch.zeros(2, 5, device=device))
    assert torch.equal(i1, torch.zeros(2, 5, dtype=torch.int32, device=device))
    assert d2.shape == (2, 0) and i2.shape == (2, 0) and i2.dtype == torch.int32
    want = reference_forward(x.cpu(), y.cpu())
    assert torch.equal(d1.cpu().double(), want[0]) and torch.equal(i1.cpu(), want[2])


def test_gradcheck_function_and_modules(device, gen):
    x = torch.rand(2, 4, 3, generator=gen, dtype=torch.float64).to(device).requires_grad_(True)
    y = torch.rand(2, 3, 3, generator=gen, dtype=torch.float64).to(device).requires_grad_(True)
    assert torch.autograd.gradcheck(ChamferFunction.apply, (x, y))
    # The modules are means of the same distances: a random-direction check each (fast_mode) suffices.
    for module in (ChamferDistanceL2(), ChamferDistanceL1(), ChamferDistanceL1_PM()):
        assert torch.autograd.gradcheck(module, (x, y), fast_mode=True), type(module).__name__
    assert torch.autograd.gradcheck(lambda a, b: ChamferDistanceL2_split()(a, b), (x, y), fast_mode=True)
    assert torch.autograd.gradgradcheck(ChamferDistanceL2(), (x, y), fast_mode=True)


def test_gradients_match_the_kernels_backward(gen):
    # chamfer.cu chamfer_dist_grad_kernel (lines 170-196): g = 2 grad_dist; xyz1 += g (x1 - x2),
    # xyz2[idx] -= g (x1 - x2), for both directions.
    x = torch.rand(2, 9, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, 6, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    g1, g2 = torch.rand(2, 9, generator=gen, dtype=torch.float64), torch.rand(2, 6, generator=gen, dtype=torch.float64)
    d1, d2 = ChamferFunction.apply(x, y)
    gx, gy = torch.autograd.grad((d1 * g1).sum() + (d2 * g2).sum(), (x, y))
    _, _, i1, i2 = reference_forward(x.detach(), y.detach())
    wx, wy = torch.zeros_like(x), torch.zeros_like(y)
    for (p, q, idx, g, gp, gq) in ((x, y, i1, g1, wx, wy), (y, x, i2, g2, wy, wx)):
        for b in range(p.shape[0]):
            for j in range(p.shape[1]):
                diff = 2 * g[b, j] * (p[b, j] - q[b, idx[b, j]]).detach()
                gp[b, j] += diff
                gq[b, idx[b, j]] -= diff
    torch.testing.assert_close(gx, wx)
    torch.testing.assert_close(gy, wy)


def test_l1_gradient_is_finite_at_coincident_points(device, gen):
    # The original's torch.sqrt gives an infinite slope at 0 and its kernel multiplies it by 0: NaN.
    x = torch.rand(1, 6, 3, generator=gen).to(device)
    y = torch.cat([x[:, :3], torch.rand(1, 2, 3, generator=gen).to(device)], 1)
    x.requires_grad_(True)
    y.requires_grad_(True)
    for module in (ChamferDistanceL1(), ChamferDistanceL1_PM()):
        gx, gy = torch.autograd.grad(module(x, y), (x, y))
        assert torch.isfinite(gx).all() and torch.isfinite(gy).all()
    # x -> y only: the coincident points are at a minimum of their distance, so their gradient is 0.
    gx, _ = torch.autograd.grad(ChamferDistanceL1_PM()(x, y), (x, y))
    assert torch.all(gx[0, :3] == 0) and torch.all(gx[0, 3:].abs().sum(-1) > 0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_inputs_give_float32(device, gen, dtype):
    x = torch.rand(2, 40, 3, generator=gen).to(device, dtype).requires_grad_(True)
    y = torch.rand(2, 30, 3, generator=gen).to(device, dtype).requires_grad_(True)
    d1, d2, i1, i2 = pointr.chamfer_forward(x, y)
    assert d1.dtype == d2.dtype == torch.float32 and i1.dtype == i2.dtype == torch.int32
    want = reference_losses(x, y)  # the same (rounded) points, in float64
    got = ours(x, y)
    for value in got.values():
        for v in value if isinstance(value, tuple) else (value,):
            assert v.dtype == torch.float32
    assert_losses_equal(got, want, rtol=1e-5, atol=1e-6)
    got["L1"].backward()
    assert x.grad.dtype == dtype and y.grad.dtype == dtype and torch.isfinite(x.grad.float()).all()


def test_non_contiguous_inputs(device, gen):
    x = torch.rand(2, 3, 25, generator=gen, dtype=torch.float64).to(device).transpose(1, 2)
    y = torch.rand(2, 19, 6, generator=gen, dtype=torch.float64).to(device)[:, :, ::2]
    assert not x.is_contiguous() and not y.is_contiguous()
    assert_losses_equal(ours(x, y), reference_losses(x, y))
    for g, w in zip(pointr.chamfer_forward(x, y), reference_forward(x.cpu(), y.cpu())):
        torch.testing.assert_close(g.cpu(), w)


@pytest.mark.parametrize(
    "x, y, error, name",
    [
        (torch.rand(2, 5, 2), torch.rand(2, 5, 2), ValueError, "xyz1"),
        (torch.rand(5, 3), torch.rand(2, 5, 3), ValueError, "xyz1"),
        (torch.rand(2, 5, 3), [torch.rand(5, 3)], TypeError, "xyz2"),
        (torch.rand(2, 5, 3), torch.rand(3, 5, 3), ValueError, "batch sizes"),
        (torch.rand(1, 5, 3), torch.rand(2, 5, 3), ValueError, "batch sizes"),
        (torch.rand(2, 5, 3), torch.full((2, 4, 3), float("nan")), ValueError, "xyz2"),
        (torch.randint(0, 3, (2, 5, 3)), torch.rand(2, 5, 3), TypeError, "xyz1"),
    ],
)
def test_bad_input_names_the_argument(x, y, error, name):
    for call in (pointr.chamfer_forward, ChamferDistanceL2(), ChamferDistanceL1(ignore_zeros=True)):
        with pytest.raises(error, match=name):
            call(x, y)
