"""pointmetrics.compat.chamfer3d against a transcription of ThibaultGROUEIX/ChamferDistancePytorch
(364c03c4ec5febc1e21068ffac362eca4a8f61d9: chamfer3D/chamfer3D.cu, chamfer3D/dist_chamfer_3D.py,
chamfer_python.py, fscore.py)."""

import math

import pytest
import torch

import pointmetrics as pm
from pointmetrics.compat import chamfer3d
from pointmetrics.compat.chamfer3d import chamfer_3DDist, chamfer_3DFunction, distChamfer, fscore


def kernel_nearest(xyz, xyz2, batch=512):
    """chamfer3D.cu, NmDistanceKernel (lines 11-143), as a loop: squared distance to, and index of,
    the nearest xyz2 point. Within a chunk of `batch` target points the first sets the best
    (`k == 0 ||`) and later ones replace it only if strictly closer (`d < best`); a chunk's best
    replaces the stored one only if strictly closer (`k2 == 0 || result[...] > best`). The outputs
    are zero-initialised (dist_chamfer_3D.py, torch.zeros), so an empty xyz2 leaves 0 and 0."""
    b, n, m, dim = xyz.shape[0], xyz.shape[1], xyz2.shape[1], xyz.shape[2]
    p1, p2 = xyz.tolist(), xyz2.tolist()
    result = [[0.0] * n for _ in range(b)]
    result_i = [[0] * n for _ in range(b)]
    for i in range(b):
        for k2 in range(0, m, batch):
            end_k = min(m, k2 + batch) - k2
            for j in range(n):
                best, best_i = 0.0, 0
                for k in range(end_k):
                    d = sum((p2[i][k2 + k][c] - p1[i][j][c]) ** 2 for c in range(dim))
                    if k == 0 or d < best:
                        best, best_i = d, k + k2
                if k2 == 0 or result[i][j] > best:
                    result[i][j], result_i[i][j] = best, best_i
    dist = torch.tensor(result, dtype=torch.float64).reshape(b, n)
    return dist, torch.tensor(result_i, dtype=torch.int32).reshape(b, n)


def reference_dist(input1, input2):
    """chamfer_3DFunction.forward / chamfer_cuda_forward: the kernel both ways, int32 indices."""
    d1, i1 = kernel_nearest(input1, input2)
    d2, i2 = kernel_nearest(input2, input1)
    return d1, d2, i1, i2


def reference_fscore(dist1, dist2, threshold=0.001):
    """fscore.py, lines 3-17, verbatim in substance."""
    precision_1 = torch.mean((dist1 < threshold).float(), dim=1)
    precision_2 = torch.mean((dist2 < threshold).float(), dim=1)
    fscore = 2 * precision_1 * precision_2 / (precision_1 + precision_2)
    fscore[torch.isnan(fscore)] = 0
    return fscore, precision_1, precision_2


def reference_dist_chamfer(a, b):
    """chamfer_python.py distChamfer (lines 17-45): |a|^2 + |b|^2 - 2 a.b in float64, min each way."""
    x, y = a.double(), b.double()
    bs, num_points_x, _ = x.size()
    _, num_points_y, _ = y.size()
    xx = torch.pow(x, 2).sum(2)
    yy = torch.pow(y, 2).sum(2)
    zz = torch.bmm(x, y.transpose(2, 1))
    rx = xx.unsqueeze(1).expand(bs, num_points_y, num_points_x)
    ry = yy.unsqueeze(1).expand(bs, num_points_x, num_points_y)
    P = rx.transpose(2, 1) + ry - 2 * zz
    return torch.min(P, 2)[0].float(), torch.min(P, 1)[0].float(), torch.min(P, 2)[1].int(), torch.min(P, 1)[1].int()


def with_duplicates_and_ties(gen, B, N, M, D=3):
    """Grid points (many equal distances), duplicated targets (ties) and shared points (distance 0)."""
    x = torch.randint(0, 4, (B, N, D), generator=gen).double() / 4
    y = torch.randint(0, 4, (B, M, D), generator=gen).double() / 4
    y[:, M // 2 :] = y[:, : M - M // 2]
    x[:, : min(N, M) // 3] = y[:, : min(N, M) // 3]
    return x, y


def assert_outputs_equal(got, want):
    assert [t.dtype for t in got[2:]] == [torch.int32, torch.int32]
    for g, w in zip(got, want):
        assert g.shape == w.shape
        if w.dtype == torch.int32:
            assert torch.equal(g.cpu(), w)
        else:
            torch.testing.assert_close(g.detach().cpu().double(), w)


@pytest.mark.parametrize("B,N,M", [(2, 31, 17), (3, 1, 8), (1, 9, 1), (2, 20, 20)])
def test_chamfer_3DDist_matches_the_kernel(device, gen, B, N, M):
    x = torch.rand(B, N, 3, generator=gen, dtype=torch.float64)
    y = torch.rand(B, M, 3, generator=gen, dtype=torch.float64)
    got = chamfer_3DDist()(x.to(device), y.to(device))
    assert len(got) == 4 and got[0].dtype == torch.float64
    assert_outputs_equal(got, reference_dist(x, y))
    assert_outputs_equal(chamfer_3DFunction.apply(x.to(device), y.to(device)), reference_dist(x, y))
    x, y = with_duplicates_and_ties(gen, B, N, M)
    assert_outputs_equal(chamfer_3DDist()(x.to(device), y.to(device)), reference_dist(x, y))


def test_ties_across_kernel_chunks(gen):
    # 600 > 512 targets: the duplicate in the second chunk (index 550) never displaces index 5.
    x = torch.rand(1, 10, 3, generator=gen, dtype=torch.float64)
    y = torch.rand(1, 600, 3, generator=gen, dtype=torch.float64)
    y[0, 550] = y[0, 5]
    x[0, 2] = y[0, 5]
    got = chamfer_3DDist()(x, y)
    assert got[2][0, 2] == 5
    assert_outputs_equal(got, reference_dist(x, y))


@pytest.mark.parametrize("module, D", [(chamfer3d.chamfer_2DDist, 2), (chamfer3d.chamfer_5DDist, 5),
                                       (chamfer3d.chamfer_6DDist, 6)])
def test_other_dimensions(device, gen, module, D):
    # Sizes 17 and 11 are 1 and 3 modulo 8, where the 6D kernel's loop reads past the chunk: not reproduced.
    random = (torch.rand(2, 13, D, generator=gen, dtype=torch.float64),
              torch.rand(2, 17, D, generator=gen, dtype=torch.float64))
    for x, y in (random, with_duplicates_and_ties(gen, 2, 11, 17, D)):
        assert_outputs_equal(module()(x.to(device), y.to(device)), reference_dist(x, y))
    with pytest.raises(ValueError, match=f"input1 must have {D} coordinates"):
        module()(torch.rand(1, 4, 3 if D != 3 else 2), torch.rand(1, 4, D))


def test_dist_chamfer_any_dimension(device, gen):
    for D in (1, 3, 4):
        x = torch.rand(2, 15, D, generator=gen, dtype=torch.float64)
        y = torch.rand(2, 11, D, generator=gen, dtype=torch.float64)
        got = distChamfer(x.to(device), y.to(device))
        want = reference_dist_chamfer(x, y)
        assert [t.dtype for t in got] == [torch.float32, torch.float32, torch.int32, torch.int32]
        for g, w in zip(got[:2], want[:2]):
            torch.testing.assert_close(g.cpu(), w, atol=1e-6, rtol=1e-5)
        # Random points: no near-ties, so the expansion's rounding picks the same neighbours.
        for g, w in zip(got[2:], want[2:]):
            assert torch.equal(g.cpu(), w)


def test_dist_chamfer_is_exact_where_the_expansion_cancels():
    # Far from the origin the original's |a|^2 + |b|^2 - 2 a.b loses the small distance.
    x = torch.tensor([[[1e4, 1e4, 1e4]]], dtype=torch.float32)
    y = x + torch.tensor([1e-3, 0.0, 0.0])
    d1, _, _, _ = distChamfer(x, y)
    torch.testing.assert_close(d1, ((y - x) ** 2).sum(-1).double().float(), rtol=1e-3, atol=0)


def test_fscore_matches_fscore_py(gen):
    for B, N, M in ((3, 40, 25), (1, 7, 50)):
        d1 = torch.rand(B, N, generator=gen, dtype=torch.float64) * 0.004
        d2 = torch.rand(B, M, generator=gen, dtype=torch.float64) * 0.004
        d1[0, 0] = 0.001  # exactly the threshold: not counted (strict <)
        for threshold in (0.001, 0.002, 1e-9, 0.0, 1, torch.tensor(0.003)):
            got, want = fscore(d1, d2, threshold), reference_fscore(d1, d2, threshold)
            for g, w in zip(got, want):
                assert g.dtype == torch.float32 and g.shape == (B,)
                torch.testing.assert_close(g, w)


def test_fscore_thresholds_squared_distances():
    # Points 0.02 apart: squared 0.0004 < 0.001, counted, although 0.02 > 0.001.
    x = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]])
    y = torch.tensor([[[0.02, 0.0, 0.0], [1.0, 0.5, 0.0]]])
    d1, d2, _, _ = chamfer_3DDist()(x, y)
    f, p1, p2 = fscore(d1, d2)
    assert p1.tolist() == [0.5] and p2.tolist() == [0.5] and f.tolist() == [0.5]
    f, p1, p2 = fscore(d1, d2, threshold=0.0001)
    assert p1.tolist() == [0.0] and f.tolist() == [0.0]  # 2 * 0 * 0 / 0 = NaN, replaced by 0
    # pm.fscore takes the Euclidean threshold.
    ours = pm.fscore(x, y, 0.001**0.5)
    assert ours.precision.item() == 0.5 and ours.recall.item() == 0.5


def test_fscore_of_an_empty_cloud():
    f, p1, p2 = fscore(torch.zeros(2, 0), torch.rand(2, 3) * 1e-4)
    want = reference_fscore(torch.zeros(2, 0), torch.rand(2, 3) * 1e-4)
    assert torch.isnan(p1).all() and torch.isnan(want[1]).all()
    assert f.tolist() == want[0].tolist() == [0.0, 0.0]
    assert p2.tolist() == [1.0, 1.0]


@pytest.mark.parametrize("threshold, error", [(None, TypeError), ("0.1", TypeError), (True, TypeError),
                                              (math.nan, TypeError)])
def test_fscore_bad_threshold(threshold, error):
    with pytest.raises(error, match="threshold"):
        fscore(torch.rand(1, 3), torch.rand(1, 3), threshold)


def test_fscore_bad_distances():
    with pytest.raises(ValueError, match="dist1"):
        fscore(torch.rand(3), torch.rand(1, 3))
    with pytest.raises(ValueError, match="batch sizes"):
        fscore(torch.rand(2, 3), torch.rand(1, 3))
    with pytest.raises(TypeError, match="dist2"):
        fscore(torch.rand(1, 3), [0.1])


def test_empty_other_cloud_gives_zero_and_index_zero(device, gen):
    x = torch.rand(2, 4, 3, generator=gen).to(device)
    y = torch.zeros(2, 0, 3, device=device)
    got = chamfer_3DDist()(x, y)
    assert_outputs_equal(got, reference_dist(x.cpu().double(), y.cpu().double()))
    assert torch.equal(got[2].cpu(), torch.zeros(2, 4, dtype=torch.int32))
    # distChamfer too (the original's torch.min raises on the empty dimension instead).
    d1, d2, i1, i2 = distChamfer(x, y)
    assert d1.tolist() == [[0.0] * 4] * 2 and i1.tolist() == [[0] * 4] * 2 and d2.shape == i2.shape == (2, 0)


def test_gradcheck_both_inputs(device, gen):
    x = torch.rand(2, 3, 3, generator=gen, dtype=torch.float64).to(device).requires_grad_(True)
    y = torch.rand(2, 4, 3, generator=gen, dtype=torch.float64).to(device).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: chamfer_3DDist()(a, b)[:2], (x, y))
    assert torch.autograd.gradgradcheck(lambda a, b: chamfer_3DDist()(a, b)[:2], (x, y), fast_mode=True)
    # distChamfer returns float32 (the original's .float()): its gradient is chamfer_3DDist's, cast.
    g_ref = torch.autograd.grad(chamfer_3DDist()(x, y)[0].sum() + chamfer_3DDist()(x, y)[1].sum(), (x, y))
    g_dc = torch.autograd.grad(distChamfer(x, y)[0].sum() + distChamfer(x, y)[1].sum(), (x, y))
    for g, w in zip(g_dc, g_ref):
        assert g.dtype == torch.float64
        torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-6)
    gx, gy = torch.autograd.grad(chamfer_3DDist()(x, y)[0].sum(), (x, y))
    assert gx.abs().sum() > 0 and gy.abs().sum() > 0  # dist1 alone reaches both clouds


def test_gradients_match_the_kernels_backward(gen):
    # chamfer3D.cu NmDistanceGradKernel (lines 170-191): g = 2 grad_dist1; grad_xyz1 += g (x1 - x2),
    # grad_xyz2[j2] -= g (x1 - x2); the same for dist2 with the roles swapped.
    x = torch.rand(2, 7, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, 5, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    g1, g2 = torch.rand(2, 7, generator=gen, dtype=torch.float64), torch.rand(2, 5, generator=gen, dtype=torch.float64)
    d1, d2, i1, i2 = chamfer_3DDist()(x, y)
    gx, gy = torch.autograd.grad((d1 * g1).sum() + (d2 * g2).sum(), (x, y))
    wx, wy = torch.zeros_like(x), torch.zeros_like(y)
    for p, q, idx, g, gp, gq in ((x, y, i1, g1, wx, wy), (y, x, i2, g2, wy, wx)):
        for b in range(p.shape[0]):
            for j in range(p.shape[1]):
                diff = 2 * g[b, j] * (p[b, j] - q[b, idx[b, j]]).detach()
                gp[b, j] += diff
                gq[b, idx[b, j]] -= diff
    torch.testing.assert_close(gx, wx)
    torch.testing.assert_close(gy, wy)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_inputs_give_float32(device, gen, dtype):
    x = torch.rand(2, 30, 3, generator=gen).to(device, dtype).requires_grad_(True)
    y = torch.rand(2, 20, 3, generator=gen).to(device, dtype).requires_grad_(True)
    got = chamfer_3DDist()(x, y)
    assert got[0].dtype == got[1].dtype == torch.float32
    want = reference_dist(x.detach().cpu().double(), y.detach().cpu().double())
    for g, w in zip(got[:2], want[:2]):
        torch.testing.assert_close(g.detach().cpu().double(), w, rtol=1e-5, atol=1e-7)
    # The same rounded points in float64 have the same neighbours unless two are within rounding.
    assert (got[2].cpu() == want[2]).float().mean() > 0.9
    (got[0].sum() + got[1].sum()).backward()
    assert x.grad.dtype == dtype and y.grad.dtype == dtype


def test_non_contiguous_inputs(device, gen):
    x = torch.rand(2, 3, 21, generator=gen, dtype=torch.float64).to(device).transpose(1, 2)
    y = torch.rand(2, 14, 6, generator=gen, dtype=torch.float64).to(device)[:, :, 1::2]
    assert not x.is_contiguous() and not y.is_contiguous()
    assert_outputs_equal(chamfer_3DDist()(x, y), reference_dist(x.cpu(), y.cpu()))


@pytest.mark.parametrize(
    "x, y, error, name",
    [
        (torch.rand(2, 5, 2), torch.rand(2, 5, 3), ValueError, "input1 must have 3 coordinates"),
        (torch.rand(2, 5, 3), torch.rand(2, 5, 5), ValueError, "input2 must have 3 coordinates"),
        (torch.rand(5, 3), torch.rand(2, 5, 3), ValueError, "input1"),
        (torch.rand(2, 5, 3), [torch.rand(5, 3)], TypeError, "input2"),
        (torch.rand(2, 5, 3), torch.rand(3, 5, 3), ValueError, "batch sizes"),
        (torch.rand(2, 5, 3), torch.full((2, 4, 3), float("inf")), ValueError, "input2"),
        (torch.randint(0, 3, (2, 5, 3)), torch.rand(2, 5, 3), TypeError, "input1"),
    ],
)
def test_bad_input_names_the_argument(x, y, error, name):
    with pytest.raises(error, match=name):
        chamfer_3DDist()(x, y)
