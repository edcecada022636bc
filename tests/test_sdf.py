"""SDF regularisers against closed forms: the exact SDF of a sphere, a scaled SDF, f = |x|^2 - 1."""

import math

import pytest
import torch

import pointmetrics as pm


def points(gen, n=500, dtype=torch.float64, device="cpu"):
    # Away from the origin, where |x| - 1 is smooth. Drawn on the CPU, then moved to `device`.
    x = torch.randn(n, 3, generator=gen, dtype=dtype)
    x = x / x.norm(dim=1, keepdim=True) * (0.3 + 1.5 * torch.rand(n, 1, generator=gen, dtype=dtype))
    return x.to(device).requires_grad_()


def sphere(x, scale=1.0):
    return scale * (x.norm(dim=-1) - 1)


def test_exact_sphere_sdf_has_zero_eikonal_and_zero_directional_divergence(gen, device):
    x = points(gen, device=device)
    g = pm.sdf_gradient(sphere(x), x)
    assert pm.eikonal_loss(g, "sq").detach() < 1e-20
    assert pm.eikonal_loss(g, "abs").detach() < 1e-10
    assert pm.directional_divergence(x, g).detach() < 1e-10  # linear along the normal
    assert pm.directional_divergence(x, g, norm="l2").detach() < 1e-20


@pytest.mark.parametrize("scale", [0.5, 2.0, 3.0])
def test_scaled_sdf_gives_the_known_eikonal_value(gen, device, scale):
    x = points(gen, device=device)
    g = pm.sdf_gradient(sphere(x, scale), x)
    assert float(pm.eikonal_loss(g, "sq").detach()) == pytest.approx((scale - 1) ** 2, rel=1e-9)
    assert float(pm.eikonal_loss(g, "abs").detach()) == pytest.approx(abs(scale - 1), rel=1e-9)


def test_sphere_laplacian_is_two_over_radius(gen, device):
    x = points(gen, device=device)
    g = pm.sdf_gradient(sphere(x), x)
    r = x.detach().cpu().norm(dim=1)
    want_l1 = (2 / r).clamp(0.1, 50).mean()
    want_l2 = (4 / r**2).clamp(0.1, 50).mean()
    torch.testing.assert_close(pm.laplacian_divergence(x, g).cpu(), want_l1)
    torch.testing.assert_close(pm.laplacian_divergence(x, g, norm="l2").cpu(), want_l2)


def test_quadratic_closed_forms(gen, device):
    # f = |x|^2 - 1: grad 2x, Hessian 2I, so n^T H n = 2 and the Laplacian is 6.
    x = points(gen, device=device)
    g = pm.sdf_gradient(x.square().sum(-1) - 1, x)
    r = x.detach().cpu().norm(dim=1)
    torch.testing.assert_close(pm.eikonal_loss(g, "sq").cpu(), ((2 * r - 1) ** 2).mean())
    sq = 4 * r**2
    torch.testing.assert_close(pm.directional_divergence(x, g).cpu(), (2 * sq / (sq + 1e-5)).mean())
    torch.testing.assert_close(pm.laplacian_divergence(x, g).cpu(), torch.tensor(6.0, dtype=torch.float64))
    torch.testing.assert_close(pm.laplacian_divergence(x, g, norm="l2").cpu(), torch.tensor(36.0, dtype=torch.float64))


def test_losses_train_the_network(gen, device):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.Softplus(beta=10), torch.nn.Linear(32, 1)).double()
    net = net.to(device)
    x = points(gen, 200, device=device)
    g = pm.sdf_gradient(net(x), x)
    loss = pm.eikonal_loss(g) + pm.directional_divergence(x, g) + pm.laplacian_divergence(x, g)
    loss.backward()
    # Every parameter but the last bias (which no derivative of the SDF depends on) gets a gradient.
    assert net[2].bias.grad is None
    grads = [net[0].weight.grad, net[0].bias.grad, net[2].weight.grad]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


def test_eikonal_mask_and_empty(gen, device):
    g = torch.randn(100, 3, generator=gen, dtype=torch.float64).to(device)
    inside = g.norm(dim=1) < 1.2
    torch.testing.assert_close(pm.eikonal_loss(g, mask=inside), pm.eikonal_loss(g[inside]))
    assert float(pm.eikonal_loss(torch.zeros(0, 3, device=device))) == 0.0
    g0 = torch.zeros(4, 3, device=device, requires_grad=True)
    pm.eikonal_loss(g0).backward()
    assert torch.isfinite(g0.grad).all()  # finite at |grad| = 0


def test_derivative_terms_explain_a_missing_graph(gen):
    x = torch.rand(10, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="x does not require grad"):
        pm.directional_divergence(x, x.clone())
    x.requires_grad_()
    detached = pm.sdf_gradient(sphere(x), x).detach()
    with pytest.raises(ValueError, match="create_graph=True"):
        pm.directional_divergence(x, detached)
    with pytest.raises(ValueError, match="create_graph=True"):
        pm.laplacian_divergence(x, detached)
    with pytest.raises(ValueError, match="norm"):
        pm.directional_divergence(x, pm.sdf_gradient(sphere(x), x), norm="l3")
    with pytest.raises(ValueError, match="sdf does not require grad"):
        pm.sdf_gradient(torch.zeros(10, dtype=torch.float64), x)
    with pytest.raises(ValueError, match="kind"):
        pm.eikonal_loss(torch.ones(3, 3), kind="cube")


def test_divergence_weight_schedule_matches_steik():
    total = 10_000
    w = [pm.divergence_weight(i, total) for i in (0, 1999, 2000, 3000, 3999, 4000, 9999)]
    assert w == pytest.approx([100, 100, 100, 50, 100 * (1 - 1999 / 2000), 0, 0])
    scenes = (1e1, 0.1, 1e1, 0.3, 0, 0)
    assert pm.divergence_weight(2000, total, scenes) == pytest.approx(5.0)
    q = pm.divergence_weight(3000, total, decay="quintic")
    assert q == pytest.approx(100 + (0 - 100) * (1 - 0.5**5))
    assert pm.divergence_weight(2500, total, decay="step") == 0  # jumps at the start of the decay
    assert pm.divergence_weight(1000, total, decay="step") == 100
    assert pm.divergence_weight(5000, total, decay="none") == 100
    with pytest.raises(ValueError, match="params"):
        pm.divergence_weight(0, total, (1.0, 0.5, 2.0))
    with pytest.raises(ValueError, match="rise"):
        pm.divergence_weight(0, total, (1.0, 0.5, 2.0, 0.3, 1.0, 0.0))


def test_sparsity_sdf_points_opacity_and_mask_terms(gen, device):
    sdf = torch.randn(1000, generator=gen, dtype=torch.float64)
    dsdf = sdf.to(device)
    torch.testing.assert_close(pm.sparsity_loss(dsdf, scale=2.0).cpu(), torch.exp(-2 * sdf.abs()).mean())
    torch.testing.assert_close(pm.sdf_points_loss(dsdf).cpu(), sdf.abs().mean())
    with pytest.warns(RuntimeWarning, match="no points"):
        assert float(pm.sdf_points_loss(torch.zeros(0, device=device))) == 0.0
    assert float(pm.sparsity_loss(torch.zeros(0, device=device))) == 0.0

    o = torch.rand(500, generator=gen, dtype=torch.float64)
    o[:5] = torch.tensor([0.0, 1.0, 1e-5, 1 - 1e-6, 0.5], dtype=torch.float64)
    c = o.clamp(1e-3, 1 - 1e-3)
    entropy = -(c * c.log() + (1 - c) * (1 - c).log()).mean()
    do = o.to(device)
    torch.testing.assert_close(pm.opacity_entropy_loss(do).cpu(), entropy)
    assert float(pm.opacity_entropy_loss(torch.full((3,), 0.5, device=device))) == pytest.approx(math.log(2))

    mask = torch.rand(500, 1, generator=gen, dtype=torch.float64)
    dmask = mask.to(device)
    soft = -(mask[:, 0] * c.log() + (1 - mask[:, 0]) * (1 - c).log()).mean()
    torch.testing.assert_close(pm.mask_bce_loss(do[:, None], dmask).cpu(), soft)
    hard = (mask[:, 0] > 0.5).double()
    neus = -(hard * c.log() + (1 - hard) * (1 - c).log()).mean()
    torch.testing.assert_close(pm.mask_bce_loss(do, dmask, convention="neus").cpu(), neus)
    with pytest.raises(ValueError, match="mask has 3 elements"):
        pm.mask_bce_loss(do, torch.ones(3, device=device))
    with pytest.raises(ValueError, match="convention"):
        pm.mask_bce_loss(do, dmask, convention="nerf")


def test_fit_sdf_example_runs():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "scripts" / "fit_sdf_bunny.py"
    out = subprocess.run([sys.executable, str(script), "--steps", "3", "--points", "256"], capture_output=True,
                         text=True, timeout=300, check=True).stdout
    assert "step    3" in out and "CD-L1" in out


# ------------------------------------------------------------------------------------------------
# Regressions from the property tests: NaN/Inf inputs are a ValueError naming the argument


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_inputs_name_the_argument(device, bad):
    def tensor(values, **kwargs):
        return torch.tensor(values, device=device, **kwargs)

    # mask_bce_loss raised torch's RuntimeError ("all elements of input should be between 0 and 1")
    with pytest.raises(ValueError, match=r"^opacity contains NaN or Inf"):
        pm.mask_bce_loss(tensor([bad]), tensor([0.5]))
    with pytest.raises(ValueError, match=r"^opacity contains NaN or Inf"):
        pm.mask_bce_loss(tensor([bad]), tensor([0.5]), convention="neus")
    with pytest.raises(ValueError, match=r"^mask must lie in \[0, 1\]"):
        pm.mask_bce_loss(tensor([0.5]), tensor([bad]))
    with pytest.raises(ValueError, match=r"^mask contains NaN or Inf"):
        pm.mask_bce_loss(tensor([0.5]), tensor([bad]), convention="neus")
    with pytest.raises(ValueError, match=r"^opacity contains NaN or Inf"):
        pm.opacity_entropy_loss(tensor([0.5, bad]))
    with pytest.raises(ValueError, match=r"^sdf contains NaN or Inf"):
        pm.sparsity_loss(tensor([0.5, bad]))
    with pytest.raises(ValueError, match=r"^sdf_at_points contains NaN or Inf"):
        pm.sdf_points_loss(tensor([0.5, bad]))
    with pytest.raises(ValueError, match=r"^grad contains NaN or Inf"):
        pm.eikonal_loss(tensor([[0.5, bad]]))
    with pytest.raises(ValueError, match=r"^mask contains NaN or Inf"):
        pm.eikonal_loss(torch.ones(2, 3, device=device), mask=tensor([1.0, bad]))
    x = tensor([[0.5, 0.2], [bad, 0.1]], requires_grad=True)
    with pytest.raises(ValueError, match=r"^sdf contains NaN or Inf"):
        pm.sdf_gradient(x.square().sum(-1), x)
    y = torch.rand(3, 2).to(device).requires_grad_()
    sdf = y.square().sum(-1) * tensor([1.0, bad, 1.0])
    (grad,) = torch.autograd.grad(sdf, y, torch.ones_like(sdf), create_graph=True)
    with pytest.raises(ValueError, match=r"^grad contains NaN or Inf"):
        pm.directional_divergence(y, grad)
    with pytest.raises(ValueError, match=r"^grad contains NaN or Inf"):
        pm.laplacian_divergence(y, grad)


def test_finite_checks_cost_one_synchronisation(monkeypatch, device):
    opacity, mask = torch.rand(10).to(device), torch.rand(10).to(device)
    grad, grad_mask = torch.rand(10, 3, dtype=torch.float16).to(device), torch.rand(10).to(device)
    reads = []
    original = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda t: reads.append(1) or original(t))
    pm.mask_bce_loss(opacity, mask)
    assert len(reads) == 1
    reads.clear()
    pm.eikonal_loss(grad, mask=grad_mask)  # checks and overflow together
    assert len(reads) == 1


def test_a_float16_loss_beyond_65504_comes_back_in_float32(device):
    # eikonal of |grad| ~ 520: (|grad| - 1)^2 = 2.7e5, inf in float16
    grad = torch.full((4, 3), 300.0, dtype=torch.float16, device=device)
    got = pm.eikonal_loss(grad)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), pm.eikonal_loss(grad.double()), rtol=1e-6, atol=0)
    assert pm.eikonal_loss(grad / 100).dtype == torch.float16  # in range: the input's dtype
