"""chamfer_distance (PyTorch3D semantics) and the CD-L1 / CD-L2 conventions."""

import itertools
import warnings

import pytest
import torch
from conftest import ragged

import pointmetrics as pm
from pointmetrics import reference


def normals_like(points, gen):
    n = torch.randn(points.shape, generator=gen, dtype=points.dtype)
    return n / n.norm(dim=-1, keepdim=True)


def on(device, *tensors):
    return tuple(None if t is None else t.to(device) for t in tensors)


def assert_same(got, want):
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        for g, w in zip(got, want):
            assert_same(g, w)
    elif want is None:
        assert got is None
    else:
        torch.testing.assert_close(got.cpu(), want, rtol=1e-10, atol=1e-12)


CASES = list(itertools.product(["mean", "sum", None], ["mean", "sum", "max", None], [1, 2], [False, True]))


@pytest.mark.parametrize("batch_reduction,point_reduction,norm,single", CASES)
def test_matches_reference_semantics(gen, device, batch_reduction, point_reduction, norm, single):
    if point_reduction is None and batch_reduction is not None:
        pytest.skip("rejected combination, tested in test_validation")
    x, xl = ragged(gen, 3, 40, 3)
    y, yl = ragged(gen, 3, 30, 3, low=1)
    weights = torch.rand(3, generator=gen, dtype=torch.float64)
    use_normals = point_reduction != "max"
    xn = normals_like(x, gen) if use_normals else None
    yn = normals_like(y, gen) if use_normals else None
    for w, abs_cosine in [(None, True), (weights, False)]:
        options = dict(
            batch_reduction=batch_reduction,
            point_reduction=point_reduction,
            norm=norm,
            single_directional=single,
            abs_cosine=abs_cosine,
        )
        kwargs = dict(x_lengths=xl, y_lengths=yl, x_normals=xn, y_normals=yn, weights=w, **options)
        dx, dy, dxl, dyl, dxn, dyn, dw = on(device, x, y, xl, yl, xn, yn, w)
        dev_kwargs = dict(x_lengths=dxl, y_lengths=dyl, x_normals=dxn, y_normals=dyn, weights=dw, **options)
        assert_same(pm.chamfer_distance(dx, dy, **dev_kwargs), reference.chamfer_distance(x, y, **kwargs))


def test_nan_padding_never_reaches_the_loss(gen, device):
    x = torch.rand(2, 8, 3, generator=gen, dtype=torch.float64)
    y = torch.rand(2, 6, 3, generator=gen, dtype=torch.float64)
    xn, yn = normals_like(x, gen), normals_like(y, gen)
    x[1, 5:] = xn[1, 5:] = float("nan")
    y[0, 4:] = yn[0, 4:] = float("nan")
    xl, yl = torch.tensor([8, 5]), torch.tensor([4, 6])
    want, want_n = reference.chamfer_distance(x, y, xl, yl, xn, yn)
    x, y, xl, yl, xn, yn = on(device, x, y, xl, yl, xn, yn)
    x.requires_grad_()
    loss, loss_n = pm.chamfer_distance(x, y, xl, yl, xn, yn)
    torch.testing.assert_close(loss.cpu(), want)
    torch.testing.assert_close(loss_n.cpu(), want_n)
    (loss + loss_n).backward()
    assert torch.isfinite(x.grad).all()


def test_zero_weights_give_zero_loss(gen, device):
    x, y = torch.rand(2, 10, 3, generator=gen), torch.rand(2, 12, 3, generator=gen)
    loss, _ = pm.chamfer_distance(*on(device, x, y), weights=torch.zeros(2, device=device))
    assert loss.item() == 0.0


def test_empty_clouds_contribute_zero_like_pytorch3d(device):
    x = torch.rand(2, 5, 3, dtype=torch.float64)
    y = torch.rand(2, 6, 3, dtype=torch.float64)
    xl, yl = torch.tensor([0, 5]), torch.tensor([6, 0])
    dx, dy, dxl, dyl = on(device, x, y, xl, yl)
    got = pm.chamfer_distance(dx, dy, x_lengths=dxl, y_lengths=dyl, batch_reduction=None)[0].cpu()
    want = reference.chamfer_distance(x, y, x_lengths=xl, y_lengths=yl, batch_reduction=None)[0]
    torch.testing.assert_close(got, want)
    assert torch.isfinite(got).all()


def test_gradients_reach_points_normals_and_weights(gen, device):
    x = torch.rand(2, 8, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, 6, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    xn = normals_like(x.detach(), gen).requires_grad_()
    yn = normals_like(y.detach(), gen).requires_grad_()
    w = torch.rand(2, generator=gen, dtype=torch.float64, requires_grad=True)
    xl, yl = torch.tensor([8, 5], device=device), torch.tensor([6, 4], device=device)
    x, y, xn, yn, w = (t.detach().to(device).requires_grad_() for t in (x, y, xn, yn, w))

    def f(a, b, an, bn, ww):
        loss, loss_n = pm.chamfer_distance(a, b, xl, yl, an, bn, ww, abs_cosine=False)
        return loss + loss_n

    assert torch.autograd.gradcheck(f, (x, y, xn, yn, w))
    assert torch.autograd.gradgradcheck(lambda a, b: pm.chamfer_distance(a, b, xl, yl)[0], (x, y))


def test_cd_conventions_match_formulas(gen, device):
    x, xl = ragged(gen, 3, 50, 3, low=1)
    y, yl = ragged(gen, 3, 40, 3, low=1)
    dx, dy, dxl, dyl = on(device, x, y, xl, yl)
    for squared, halve in itertools.product([False, True], [False, True]):
        got = pm.chamfer(dx, dy, squared=squared, halve=halve, x_lengths=dxl, y_lengths=dyl, reduction=None)
        torch.testing.assert_close(got.cpu(), reference.chamfer(x, y, squared, halve, xl, yl))
    l1 = pm.chamfer_l1(dx, dy, dxl, dyl, reduction=None)
    l2 = pm.chamfer_l2(dx, dy, dxl, dyl, reduction=None)
    torch.testing.assert_close(l1.cpu(), reference.chamfer(x, y, False, True, xl, yl))
    torch.testing.assert_close(l2.cpu(), reference.chamfer(x, y, True, False, xl, yl))
    # CD-L2 is PyTorch3D's default loss per cloud
    torch.testing.assert_close(l2, pm.chamfer_distance(dx, dy, dxl, dyl, batch_reduction=None)[0])
    torch.testing.assert_close(pm.chamfer_l1(dx, dy, dxl, dyl), l1.mean())
    torch.testing.assert_close(pm.chamfer_l1(dx, dy, dxl, dyl, reduction="sum"), l1.sum())


def test_unsquared_gradient_is_finite_at_zero_distance(gen, device):
    x = torch.rand(1, 20, 3, generator=gen, dtype=torch.float64).to(device)
    y = x.clone()
    x.requires_grad_()
    y.requires_grad_()
    pm.chamfer_l1(x, y).backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()
    assert (x.grad == 0).all()


def test_cd_l1_gradcheck(gen, device):
    x = torch.rand(2, 9, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, 7, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    x, y = (t.detach().to(device).requires_grad_() for t in (x, y))
    assert torch.autograd.gradcheck(lambda a, b: pm.chamfer_l1(a, b), (x, y))
    assert torch.autograd.gradgradcheck(lambda a, b: pm.chamfer_l1(a, b), (x, y))


def test_cd_of_empty_cloud_is_nan_with_warning(device):
    x = torch.rand(2, 5, 3).to(device)
    y = torch.rand(2, 5, 3).to(device)
    with pytest.warns(RuntimeWarning, match="empty"):
        v = pm.chamfer_l1(x, y, x_lengths=torch.tensor([5, 0], device=device), reduction=None)
    assert torch.isfinite(v[0]) and torch.isnan(v[1])


def test_empty_cloud_does_not_poison_gradients(device):
    x = torch.rand(2, 6, 3, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, 5, 3, dtype=torch.float64, requires_grad=True)
    x, y = (t.detach().to(device).requires_grad_() for t in (x, y))
    with pytest.warns(RuntimeWarning, match="empty"):
        per_cloud = pm.chamfer_l1(x, y, x_lengths=torch.tensor([6, 0], device=device), reduction=None)
    per_cloud[0].backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()
    assert (x.grad[1] == 0).all() and (y.grad[1] == 0).all()


def test_translation_gives_known_distance(device):
    x = torch.rand(1, 500, 3, dtype=torch.float64) * torch.tensor([1.0, 1.0, 0.0])  # a plane
    y = x + torch.tensor([0.0, 0.0, 0.25], dtype=torch.float64)
    x, y = on(device, x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.testing.assert_close(pm.chamfer_l1(x, y).cpu(), torch.tensor(0.25, dtype=torch.float64))
        torch.testing.assert_close(pm.chamfer_l2(x, y).cpu(), torch.tensor(2 * 0.0625, dtype=torch.float64))
