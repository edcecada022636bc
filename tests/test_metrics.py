"""Hausdorff distance and F-score."""

import numpy as np
import pytest
import torch
from conftest import ragged
from scipy.spatial import cKDTree

import pointmetrics as pm
from pointmetrics import reference


def on(device, *tensors):
    return tuple(t.to(device) for t in tensors)


def cpu(result):
    """A result tuple (Hausdorff, FScore) with its tensors moved to the CPU."""
    return type(result)(*(t.cpu() for t in result))


def test_hausdorff_matches_reference_and_scipy(gen, device):
    x, xl = ragged(gen, 3, 60, 3, low=1)
    y, yl = ragged(gen, 3, 50, 3, low=1)
    h = cpu(pm.hausdorff_distance(*on(device, x, y, xl, yl)))
    torch.testing.assert_close(h.distance, reference.hausdorff(x, y, xl, yl))
    for b in range(3):
        a, c = x[b, : xl[b]].numpy(), y[b, : yl[b]].numpy()
        want = max(cKDTree(c).query(a)[0].max(), cKDTree(a).query(c)[0].max())
        assert abs(h.distance[b].item() - want) < 1e-12
        # the pair realises the distance
        pair = (x[b, h.x_index[b]] - y[b, h.y_index[b]]).norm()
        torch.testing.assert_close(pair, h.distance[b])


def test_one_sided_hausdorff(gen, device):
    x = torch.rand(40, 3, generator=gen, dtype=torch.float64)
    y = torch.rand(30, 3, generator=gen, dtype=torch.float64)
    forward = cpu(pm.hausdorff_distance(*on(device, x, y), direction="x_to_y"))
    backward = cpu(pm.hausdorff_distance(*on(device, x, y), direction="y_to_x"))
    d_xy = torch.cdist(x, y).min(1).values
    d_yx = torch.cdist(y, x).min(1).values
    torch.testing.assert_close(forward.distance, d_xy.max())
    torch.testing.assert_close(backward.distance, d_yx.max())
    assert forward.x_index == d_xy.argmax() and backward.y_index == d_yx.argmax()
    both = pm.hausdorff_distance(*on(device, x, y)).distance.cpu()
    torch.testing.assert_close(both, torch.maximum(d_xy.max(), d_yx.max()))


def test_hausdorff_is_differentiable(gen, device):
    x = torch.rand(1, 15, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.rand(1, 11, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    x, y = (t.detach().to(device).requires_grad_() for t in (x, y))
    assert torch.autograd.gradcheck(lambda a, b: pm.hausdorff_distance(a, b).distance, (x, y))


def test_fscore_matches_reference(gen, device):
    x, xl = ragged(gen, 3, 80, 3, low=1)
    y, yl = ragged(gen, 3, 70, 3, low=1)
    taus = [0.02, 0.05, 0.1, 0.3]
    dx, dy, dxl, dyl = on(device, x, y, xl, yl)
    f = pm.fscore(dx, dy, taus, dxl, dyl)
    want = reference.fscore(x, y, taus, xl, yl)
    for got, w in zip((f.fscore, f.precision, f.recall), want):
        torch.testing.assert_close(got.cpu(), w)
    assert f.fscore.shape == (3, 4)
    single = pm.fscore(dx, dy, 0.05, dxl, dyl)
    torch.testing.assert_close(single.fscore, f.fscore[:, 1])


def test_fscore_threshold_is_strict_and_zero_when_nothing_matches(device):
    x = torch.tensor([[0.0, 0, 0], [1, 0, 0]], dtype=torch.float64, device=device)
    y = torch.tensor([[0.0, 0, 0.5], [1, 0, 3]], dtype=torch.float64, device=device)
    f = pm.fscore(x, y, [0.5, 0.5001, 0.1])
    assert f.precision.tolist() == [0.0, 0.5, 0.0]  # d = 0.5 is not < 0.5
    assert f.recall.tolist() == [0.0, 0.5, 0.0]
    assert f.fscore[2].item() == 0.0


def test_fscore_and_hausdorff_of_empty_cloud_are_nan(device):
    x, y = torch.rand(2, 5, 3).to(device), torch.rand(2, 5, 3).to(device)
    with pytest.warns(RuntimeWarning, match="empty"):
        f = pm.fscore(x, y, 0.1, y_lengths=torch.tensor([5, 0], device=device))
    assert torch.isfinite(f.fscore[0]) and torch.isnan(f.fscore[1])
    with pytest.warns(RuntimeWarning, match="empty"):
        h = pm.hausdorff_distance(x, y, x_lengths=torch.tensor([0, 5], device=device))
    assert torch.isnan(h.distance[0]) and h.x_index[0] == -1 and torch.isfinite(h.distance[1])


def test_correspondences_give_all_metrics_from_one_search(gen, device):
    x = torch.rand(200, 3, generator=gen, dtype=torch.float64)
    y = torch.rand(150, 3, generator=gen, dtype=torch.float64)
    c = pm.correspondences(*on(device, x, y))
    d = torch.cdist(x, y)
    # per-point attributes are always batched; per-cloud results follow the input's form
    torch.testing.assert_close(c.x_to_y[0].cpu(), d.min(1).values)
    torch.testing.assert_close(c.y_to_x[0].cpu(), d.min(0).values)
    assert torch.equal(c.x_to_y_index[0].cpu(), d.argmin(1))
    assert c.hausdorff().distance.shape == ()
    x, y = on(device, x, y)
    torch.testing.assert_close(c.chamfer(squared=False, halve=True), pm.chamfer_l1(x, y))
    assert np.isclose(c.fscore(0.1).fscore.item(), pm.fscore(x, y, 0.1).fscore.item())
