"""pointmetrics.compat.chamferdist against a transcription of krrish94/chamferdist 1.0.3
(ee753899b583bdc06bd2505dc162fd54ba0c6c5b: chamferdist/chamfer.py, chamferdist/knn_cpu.cpp)."""

import itertools
import warnings

import pytest
import torch

import pointmetrics as pm
from pointmetrics.compat.chamferdist import ChamferDistance


def knn_cpu_k1(p1, p2):
    """knn_cpu.cpp KNearestNeighborIdxCpu (lines 7-54) with K = 1, as a loop: the squared distance
    from each p1 point to its nearest p2 point; 0 (torch::full(..., 0)) when p2 is empty."""
    B, P1, D = p1.shape
    a, b = p1.tolist(), p2.tolist()
    out = [[0.0] * P1 for _ in range(B)]
    for n in range(B):
        for i1 in range(P1):
            best = None
            for i2 in range(p2.shape[1]):
                dist = sum((a[n][i1][d] - b[n][i2][d]) ** 2 for d in range(D))
                if best is None or dist < best:
                    best = dist
            out[n][i1] = 0.0 if best is None else best
    return torch.tensor(out, dtype=torch.float64).reshape(B, P1)


def reference(source_cloud, target_cloud, bidirectional=False, reverse=False, batch_reduction="mean",
              point_reduction="sum"):
    """chamfer.py ChamferDistance.forward, lines 100-143, on float64 copies."""
    source_cloud = source_cloud.detach().cpu().double()
    target_cloud = target_cloud.detach().cpu().double()
    chamfer_forward = knn_cpu_k1(source_cloud, target_cloud)
    chamfer_backward = None
    if reverse or bidirectional:
        chamfer_backward = knn_cpu_k1(target_cloud, source_cloud)
    if point_reduction == "sum":
        chamfer_forward = chamfer_forward.sum(1)
        if reverse or bidirectional:
            chamfer_backward = chamfer_backward.sum(1)
    elif point_reduction == "mean":
        chamfer_forward = chamfer_forward.mean(1)
        if reverse or bidirectional:
            chamfer_backward = chamfer_backward.mean(1)
    if batch_reduction == "sum":
        chamfer_forward = chamfer_forward.sum()
        if reverse or bidirectional:
            chamfer_backward = chamfer_backward.sum()
    elif batch_reduction == "mean":
        chamfer_forward = chamfer_forward.mean()
        if reverse or bidirectional:
            chamfer_backward = chamfer_backward.mean()
    if bidirectional:
        return chamfer_forward + chamfer_backward
    if reverse:
        return chamfer_backward
    return chamfer_forward


REDUCTIONS = ("sum", "mean", None)
DIRECTIONS = [(False, False), (False, True), (True, False), (True, True)]


def call(x, y, bidirectional, reverse, batch_reduction, point_reduction):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ChamferDistance()(x, y, bidirectional, reverse, batch_reduction, point_reduction)


@pytest.mark.parametrize("B,N,M,D", [(3, 19, 11, 3), (2, 1, 7, 2), (1, 9, 9, 5)])
def test_every_option_matches_the_original(device, gen, B, N, M, D):
    x = torch.rand(B, N, D, generator=gen, dtype=torch.float64)
    y = torch.rand(B, M, D, generator=gen, dtype=torch.float64)
    for (bi, rev), br, pr in itertools.product(DIRECTIONS, REDUCTIONS, REDUCTIONS):
        if bi and br is None and pr is None and N != M and 1 not in (N, M):
            continue  # the original's broadcasting error; see test_unreduced_bidirectional_needs_equal_sizes
        got = call(x.to(device), y.to(device), bi, rev, br, pr)
        want = reference(x, y, bi, rev, br, pr)
        assert got.dtype == torch.float64 and got.shape == want.shape, (bi, rev, br, pr)
        torch.testing.assert_close(got.cpu(), want, msg=str((bi, rev, br, pr)))


def test_defaults_are_one_directional_summed_squared(gen):
    x = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 2.0, 0.0]]])
    y = torch.tensor([[[3.0, 0.0, 0.0]]])
    # source -> target only: 9 + 13, summed over points; the reverse direction would give 9.
    assert ChamferDistance()(x, y).item() == 22.0
    assert ChamferDistance()(x, y, reverse=True).item() == 9.0
    assert ChamferDistance()(x, y, bidirectional=True).item() == 31.0
    assert ChamferDistance()(x, y, point_reduction="mean").item() == 11.0
    a = torch.rand(2, 30, 3, generator=gen, dtype=torch.float64)
    b = torch.rand(2, 20, 3, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(
        ChamferDistance()(a, b), pm.chamfer_distance(a, b, point_reduction="sum", single_directional=True)[0]
    )
    torch.testing.assert_close(ChamferDistance()(a, b, bidirectional=True, point_reduction="mean"), pm.chamfer_l2(a, b))


def test_duplicates_and_ties(device, gen):
    x = torch.randint(0, 3, (2, 25, 3), generator=gen).double() / 2
    y = torch.cat([x[:, :10], torch.randint(0, 3, (2, 8, 3), generator=gen).double() / 2, x[:, :5]], 1)
    for (bi, rev), pr in itertools.product(DIRECTIONS, ("sum", "mean")):
        torch.testing.assert_close(call(x.to(device), y.to(device), bi, rev, "sum", pr).cpu(),
                                   reference(x, y, bi, rev, "sum", pr))


def test_both_flags_warn_and_bidirectional_wins(gen):
    x, y = torch.rand(1, 5, 3, generator=gen), torch.rand(1, 6, 3, generator=gen)
    with pytest.warns(UserWarning, match="bidirectional"):
        both = ChamferDistance()(x, y, bidirectional=True, reverse=True)
    torch.testing.assert_close(both, ChamferDistance()(x, y, bidirectional=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ChamferDistance()(x, y, bidirectional=True)
        ChamferDistance()(x, y, reverse=True)


def test_unreduced_bidirectional_needs_equal_sizes(gen):
    x, y = torch.rand(2, 5, 3, generator=gen), torch.rand(2, 6, 3, generator=gen)
    with pytest.raises(ValueError, match="N == M"):
        ChamferDistance()(x, y, bidirectional=True, batch_reduction=None, point_reduction=None)
    # Equal sizes: the per-point terms of unrelated points added elementwise, as the original does.
    y = y[:, :5]
    got = ChamferDistance()(x, y, bidirectional=True, batch_reduction=None, point_reduction=None)
    torch.testing.assert_close(got.double(), reference(x, y, True, False, None, None))


def test_empty_clouds(device):
    x = torch.rand(2, 4, 3, device=device)
    empty = torch.zeros(2, 0, 3, device=device)
    for (bi, rev), br, pr in itertools.product(DIRECTIONS, ("sum", "mean"), ("sum", "mean")):
        for a, b in ((x, empty), (empty, x)):
            got = call(a, b, bi, rev, br, pr)
            want = reference(a, b, bi, rev, br, pr)
            torch.testing.assert_close(got.cpu().double(), want, equal_nan=True, msg=str((bi, rev, br, pr)))
    assert torch.isnan(ChamferDistance()(empty, x, point_reduction="mean"))
    assert ChamferDistance()(x, empty).item() == 0.0


def test_gradcheck_both_clouds(device, gen):
    x = torch.rand(2, 4, 3, generator=gen, dtype=torch.float64).to(device).requires_grad_(True)
    y = torch.rand(2, 3, 3, generator=gen, dtype=torch.float64).to(device).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: ChamferDistance()(a, b, batch_reduction=None, point_reduction=None),
                                    (x, y))
    assert torch.autograd.gradcheck(lambda a, b: ChamferDistance()(a, b, bidirectional=True), (x, y), fast_mode=True)
    assert torch.autograd.gradgradcheck(lambda a, b: ChamferDistance()(a, b, reverse=True), (x, y), fast_mode=True)
    for kwargs in ({}, {"reverse": True}):
        gx, gy = torch.autograd.grad(ChamferDistance()(x, y, **kwargs), (x, y))
        assert gx.abs().sum() > 0 and gy.abs().sum() > 0, kwargs


def test_gradients_match_the_original_backward(gen):
    # knn_cpu.cpp KNearestNeighborBackwardCpu (lines 60-100), K = 1: diff = 2 grad (p1 - p2[idx]),
    # grad_p1 += diff, grad_p2[idx] -= diff. Default call: sum over points, mean over B.
    x = torch.rand(3, 6, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.rand(3, 5, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    gx, gy = torch.autograd.grad(ChamferDistance()(x, y), (x, y))
    wx, wy = torch.zeros_like(x), torch.zeros_like(y)
    for b in range(3):
        for i in range(6):
            j = int(((x[b, i] - y[b]) ** 2).sum(-1).argmin())
            diff = 2 * (1 / 3) * (x[b, i] - y[b, j]).detach()
            wx[b, i] += diff
            wy[b, j] -= diff
    torch.testing.assert_close(gx, wx)
    torch.testing.assert_close(gy, wy)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_inputs_give_float32(device, gen, dtype):
    x = torch.rand(2, 30, 3, generator=gen).to(device, dtype).requires_grad_(True)
    y = torch.rand(2, 20, 3, generator=gen).to(device, dtype).requires_grad_(True)
    for bi, rev in DIRECTIONS[:3]:
        got = ChamferDistance()(x, y, bi, rev)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got.detach().cpu().double(), reference(x, y, bi, rev), rtol=1e-5, atol=1e-6)
    ChamferDistance()(x, y, bidirectional=True).backward()
    assert x.grad.dtype == dtype and torch.isfinite(x.grad.float()).all() and y.grad.abs().sum() > 0


def test_non_contiguous_inputs(device, gen):
    x = torch.rand(2, 3, 17, generator=gen, dtype=torch.float64).to(device).transpose(1, 2)
    y = torch.rand(2, 12, 6, generator=gen, dtype=torch.float64).to(device)[:, :, ::2]
    assert not x.is_contiguous() and not y.is_contiguous()
    for bi, rev in DIRECTIONS[:3]:
        torch.testing.assert_close(ChamferDistance()(x, y, bi, rev).cpu(), reference(x, y, bi, rev))


@pytest.mark.parametrize(
    "x, y, kwargs, error, match",
    [
        (torch.rand(2, 5, 3), torch.rand(2, 5, 3), {"point_reduction": "max"}, ValueError, "point_reduction"),
        (torch.rand(2, 5, 3), torch.rand(2, 5, 3), {"batch_reduction": "avg"}, ValueError, "batch_reduction"),
        ([torch.rand(5, 3)], torch.rand(2, 5, 3), {}, TypeError, "source_cloud"),
        (torch.rand(2, 5, 3), torch.rand(5, 3), {}, ValueError, "target_cloud"),
        (torch.rand(2, 5, 3), torch.rand(3, 5, 3), {}, ValueError, "batch sizes"),
        (torch.rand(2, 5, 3), torch.rand(2, 5, 2), {}, ValueError, "dimension"),
        (torch.full((2, 5, 3), float("nan")), torch.rand(2, 5, 3), {}, ValueError, "source_cloud"),
        (torch.rand(2, 5, 3), torch.randint(0, 2, (2, 5, 3)), {}, TypeError, "target_cloud"),
    ],
)
def test_bad_input_names_the_argument(x, y, kwargs, error, match):
    with pytest.raises(error, match=match):
        ChamferDistance()(x, y, **kwargs)
