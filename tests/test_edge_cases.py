"""Edge cases of the point-cloud functions: empty clouds with gradients, mixed dtypes, huge K and
extreme coordinate ranges. Each was an internal error or a silently wrong number once."""

import warnings

import pytest
import torch
from scipy.spatial import cKDTree

import pointmetrics as pm


def nearest_distances(x, y):
    return torch.from_numpy(cKDTree(y.double().numpy()).query(x.double().numpy())[0])


@pytest.mark.parametrize("return_nn", [False, True])
def test_empty_target_with_gradients(gen, return_nn, device):
    x = torch.rand(7, 3, generator=gen).to(device).requires_grad_()
    knn = pm.knn_points(x, torch.zeros(0, 3, device=device), K=2, return_nn=return_nn)
    assert torch.equal(knn.idx.cpu(), torch.full((7, 2), -1)) and torch.equal(knn.dists.cpu(), torch.zeros(7, 2))
    if return_nn:
        assert torch.equal(knn.knn.cpu(), torch.zeros(7, 2, 3))
    knn.dists.sum().backward()
    assert torch.equal(x.grad.cpu(), torch.zeros(7, 3))


@pytest.mark.parametrize("empty", ["x", "y", "both"])
def test_empty_clouds_with_gradients(gen, empty, device):
    x = (torch.rand(6, 3, generator=gen) if empty == "y" else torch.zeros(0, 3)).to(device).requires_grad_()
    y = (torch.rand(5, 3, generator=gen) if empty == "x" else torch.zeros(0, 3)).to(device).requires_grad_()
    with pytest.warns(RuntimeWarning, match="empty"):
        assert torch.isnan(pm.chamfer_l1(x, y))
    with pytest.warns(RuntimeWarning, match="empty"):
        assert torch.isnan(pm.hausdorff_distance(x, y).distance)
    for reduction in ("mean", "sum", "max"):  # PyTorch3D's loss: an empty cloud contributes 0
        loss, _ = pm.chamfer_distance(x, y, point_reduction=reduction)
        if empty == "both":
            assert float(loss.detach()) == 0.0
        loss.backward()
        assert all(t.grad is None or bool(torch.isfinite(t.grad).all()) for t in (x, y))


def test_max_reduction_with_an_empty_cloud_in_a_batch(gen, device):
    x = torch.rand(2, 5, 3, generator=gen).to(device)
    y = torch.rand(2, 4, 3, generator=gen).to(device)
    xl = torch.tensor([0, 5], device=device)
    loss, _ = pm.chamfer_distance(x, y, x_lengths=xl, point_reduction="max", batch_reduction=None)
    single, _ = pm.chamfer_distance(x[1:], y[1:], point_reduction="max", batch_reduction=None)
    assert torch.allclose(loss[1], single[0])
    # cloud 0: x is empty (contributes 0), y's points have no neighbour (0 each, as in PyTorch3D)
    assert float(loss[0]) == 0.0


def test_mixed_dtypes_are_promoted(gen, device):
    x = torch.rand(40, 3, generator=gen).to(device)
    y = torch.rand(30, 3, generator=gen).to(device)
    mixed = pm.chamfer_l1(x.double(), y)
    assert mixed.dtype == torch.float64
    assert torch.equal(mixed, pm.chamfer_l1(x.double(), y.double()))
    xd = x.double().requires_grad_()
    yh = y.half().requires_grad_()
    loss, _ = pm.chamfer_distance(xd, yh)
    loss.backward()
    assert xd.grad.dtype == torch.float64 and yh.grad.dtype == torch.float16
    half_mix = pm.knn_points(x.half(), y.bfloat16())  # float16 with bfloat16: float32
    assert half_mix.dists.dtype == torch.float32
    r = pm.earth_movers_distance(x[:30].double(), y)
    assert r.distance.dtype == torch.float64


def test_huge_K_is_a_value_error_naming_K(device):
    x = torch.rand(50, 3).to(device)
    with pytest.raises(ValueError, match="K=1000000000"):
        pm.knn_points(x, x, K=10**9)
    # K beyond the cloud size but affordable: padded as in PyTorch3D
    knn = pm.knn_points(x, x[:3], K=5)
    assert torch.equal(knn.idx[:, 3:].cpu(), torch.full((50, 2), -1))


@pytest.mark.parametrize("scale", [1e19, 3e30, 1e-20, 1e-30])
def test_extreme_float32_ranges_give_accurate_finite_results(gen, scale, device):
    x = torch.rand(200, 3, generator=gen) * scale
    y = torch.rand(150, 3, generator=gen) * scale
    want_x = nearest_distances(x, y)
    want_y = nearest_distances(y, x)
    x, y = x.to(device), y.to(device)
    cd = pm.chamfer_l1(x, y)
    assert torch.isfinite(cd) and cd.dtype == torch.float64
    assert abs(float(cd) - 0.5 * float(want_x.mean() + want_y.mean())) <= 1e-6 * float(cd)
    h = pm.hausdorff_distance(x, y).distance
    assert abs(float(h) - float(torch.maximum(want_x.max(), want_y.max()))) <= 1e-6 * float(h)
    ordered = want_x.sort().values
    tau = float(ordered[99] + ordered[100]) / 2  # between two distances: no rounding-level tie
    f = pm.fscore(x, y, tau)
    assert abs(float(f.precision) - float((want_x < tau).double().mean())) < 1e-12
    l2 = pm.chamfer_l2(x, y)
    want_l2 = float(want_x.square().mean() + want_y.square().mean())
    assert torch.isfinite(l2) and abs(float(l2) - want_l2) <= 1e-6 * float(l2)


def test_ordinary_float32_stays_float32(gen, device):
    x = torch.rand(20, 3, generator=gen).to(device)
    assert pm.chamfer_l1(x, x + 1).dtype == torch.float32
    zeros = torch.zeros(5, 3, device=device)
    assert pm.chamfer_l1(zeros, zeros.clone()).dtype == torch.float32  # zeros are not "tiny"


def test_float64_beyond_its_range_is_refused(device):
    x = (torch.rand(10, 3, dtype=torch.float64) * 1e160).to(device)
    with pytest.raises(ValueError, match="x has coordinates up to"):
        pm.chamfer_l1(x, x)
    with pytest.raises(ValueError, match="y has coordinates up to"):
        pm.knn_points(x / 1e160, x)


def test_padding_beyond_lengths_does_not_decide_the_precision(gen, device):
    x = torch.rand(1, 10, 3, generator=gen)
    x[0, 8:] = 1e30  # padding
    x, lengths = x.to(device), torch.tensor([8], device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = pm.chamfer_l1(x, x, x_lengths=lengths, y_lengths=lengths)
    assert out.dtype == torch.float32 and float(out) == 0.0


@pytest.mark.parametrize(
    "idx,error,match",
    [
        (torch.tensor([[[7]]]), ValueError, r"idx values must lie in \[-1, 3\]"),
        (torch.tensor([[[-5]]]), ValueError, "idx values"),
        (torch.tensor([[[1.0]]]), TypeError, "idx must be an integer"),
        (torch.tensor([[1]]), ValueError, "idx"),
    ],
)
def test_knn_gather_checks_its_indices(idx, error, match, device):
    with pytest.raises(error, match=match):
        pm.knn_gather(torch.rand(1, 4, 1).to(device), idx.to(device))


def test_knn_gather_from_an_empty_cloud_needs_padding_indices(device):
    gathered = pm.knn_gather(torch.zeros(1, 0, 2, device=device), torch.full((1, 3, 2), -1, device=device))
    assert torch.equal(gathered.cpu(), torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="idx values"):
        pm.knn_gather(torch.zeros(1, 0, 1, device=device), torch.tensor([[[3]]], device=device))
    points, idx = torch.rand(1, 4, 1).to(device), torch.tensor([[[0]]], device=device)
    with pytest.raises(ValueError, match=r"lengths values must lie in \[0, 4\]"):
        pm.knn_gather(points, idx, lengths=torch.tensor([5], device=device))


def test_astronomical_K_with_an_empty_query_cloud_is_refused():
    with pytest.raises(ValueError, match="K="):
        pm.knn_points(torch.zeros(2, 0, 2, requires_grad=True), torch.rand(2, 1, 2), K=2**62)


def test_normal_consistency_normals_have_the_points_dimension(gen, device):
    x, y = torch.rand(1, 5, 2, generator=gen).to(device), torch.rand(1, 4, 2, generator=gen).to(device)
    xn = torch.rand(1, 5, 2, generator=gen).to(device)
    nc = pm.normal_consistency(x, xn, y, torch.rand(1, 4, 2, generator=gen).to(device))
    assert torch.isfinite(nc).all()
    with pytest.raises(ValueError, match="x_normals must have the shape of its points"):
        pm.normal_consistency(x, torch.rand(1, 5, 3).to(device), y, torch.rand(1, 4, 2).to(device))


def test_accumulator_errors_name_pred_and_gt():
    metrics = pm.PointCloudMetrics(taus=[0.1])
    with pytest.raises(TypeError, match="gt must be a floating point"):
        metrics.update(torch.rand(4, 3), torch.zeros(4, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="gt_lengths values"):
        metrics.update(torch.rand(1, 4, 3), torch.rand(1, 4, 3), gt_lengths=torch.tensor([9]))
