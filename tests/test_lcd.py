"""Learnable Chamfer Distance: the weighted Chamfer formula, the adversarial step, batches."""

import copy

import pytest
import torch

import pointmetrics as pm
from pointmetrics import reference


def net(seed=0, device="cpu"):
    torch.manual_seed(seed)
    return pm.LCDWeightNet().double().to(device)


def brute_force_lcd(gt, rec, w_gt, w_rec):
    d = torch.cdist(gt, rec)
    return 0.5 * ((w_gt * d.min(1).values).sum() + (w_rec * d.min(0).values).sum())


def test_layers_follow_the_reference():
    n = net()
    linear = [m for m in n.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [
        (3, 64), (64, 128),           # global encoder (1ad)
        (3, 64), (64, 64),            # F's per-point features
        (323, 64), (64, 16), (16, 1),  # F's head on [xyz, c_X, G]
    ]
    assert all(torch.count_nonzero(m.bias) == 0 for m in linear)  # zero bias at init
    frozen = {id(p) for p in n.global_encoder.parameters()}
    assert all(not p.requires_grad for p in n.global_encoder.parameters())
    assert not frozen & {id(p) for p in n.trainable_parameters()}


def test_uniform_weights_give_the_chamfer_l1(gen, device):
    n = net(device=device)
    torch.nn.init.zeros_(n.head[-1].weight)  # F = 0: every weight (sigma + 1) / sum = 1 / N
    gt = torch.rand(3, 300, 3, generator=gen, dtype=torch.float64)
    rec = torch.rand(3, 250, 3, generator=gen, dtype=torch.float64)
    want = reference.chamfer(gt, rec, squared=False, halve=True).mean()
    torch.testing.assert_close(pm.lcd_loss(gt.to(device), rec.to(device), n).cpu(), want)


def test_weighted_formula_against_brute_force(gen, device):
    n = net(1, device)
    gt = torch.rand(2, 200, 3, generator=gen, dtype=torch.float64)
    rec = torch.rand(2, 170, 3, generator=gen, dtype=torch.float64)
    gv, rv = torch.ones(2, 200, dtype=torch.bool), torch.ones(2, 170, dtype=torch.bool)
    w_gt, w_rec = n(gt.to(device), rec.to(device), gv.to(device), rv.to(device))
    w_gt, w_rec = w_gt.cpu(), w_rec.cpu()
    torch.testing.assert_close(w_gt.sum(1), torch.ones(2, dtype=torch.float64))
    assert w_gt.detach().std() > 0  # not uniform
    want = torch.stack([brute_force_lcd(gt[b], rec[b], w_gt[b], w_rec[b]) for b in range(2)])
    torch.testing.assert_close(pm.lcd_loss(gt.to(device), rec.to(device), n, reduction=None).cpu(), want)


def test_adversarial_step_increases_the_loss(gen, device):
    n = net(2, device)
    opt = n.optimizer()
    gt = torch.rand(4, 256, 3, generator=gen, dtype=torch.float64)
    rec = (gt + 0.05 * torch.randn(4, 256, 3, generator=gen, dtype=torch.float64)).to(device).requires_grad_()
    gt = gt.to(device)
    frozen = [p.clone() for p in n.global_encoder.parameters()]
    untouched = copy.deepcopy(n)
    before = pm.lcd_adversarial_step(gt, rec, n, opt)
    assert rec.grad is None  # the reconstruction is not touched
    torch.testing.assert_close(before, pm.lcd_loss(gt, rec, untouched).detach())  # the loss before the step
    for _ in range(5):
        pm.lcd_adversarial_step(gt, rec, n, opt)
    after = pm.lcd_loss(gt, rec, n).detach()
    assert after > before
    assert all(torch.equal(a, b) for a, b in zip(frozen, n.global_encoder.parameters()))


def test_gradients_reach_the_reconstruction_and_are_finite_at_zero(gen, device):
    n = net(3, device)
    gt = torch.rand(100, 3, generator=gen, dtype=torch.float64).to(device)
    rec = gt.clone().requires_grad_()  # every distance is 0
    loss = pm.lcd_loss(gt, rec, n)
    assert loss.detach() == 0.0
    loss.backward()
    assert torch.isfinite(rec.grad).all()
    rec2 = (gt + 0.01).requires_grad_()
    pm.lcd_loss(gt, rec2, n).backward()
    assert rec2.grad.abs().sum() > 0


def test_lengths_and_lists_equal_separate_clouds(gen, device):
    n = net(4, device)
    gt = torch.rand(3, 120, 3, generator=gen, dtype=torch.float64)
    rec = torch.rand(3, 90, 3, generator=gen, dtype=torch.float64)
    gl, rl = torch.tensor([120, 60, 7]), torch.tensor([90, 90, 33])
    gt[1, 60:] = float("nan")  # padding may hold anything
    gt, rec, gl, rl = (t.to(device) for t in (gt, rec, gl, rl))
    batched = pm.lcd_loss(gt, rec, n, gl, rl, reduction=None)
    single = torch.stack([pm.lcd_loss(gt[b, : gl[b]], rec[b, : rl[b]], n) for b in range(3)])
    torch.testing.assert_close(batched, single)
    as_list = pm.lcd_loss([gt[b, : gl[b]] for b in range(3)], [rec[b, : rl[b]] for b in range(3)], n, reduction=None)
    torch.testing.assert_close(as_list, single)


def test_bad_input(gen, device):
    n = net(device=device)
    x = torch.rand(10, 3, dtype=torch.float64).to(device)
    with pytest.warns(RuntimeWarning, match="empty"):
        assert torch.isnan(pm.lcd_loss(x, x[:0], n))
    with pytest.raises(TypeError, match="weight_net"):
        pm.lcd_loss(x, x, torch.nn.Linear(3, 1))
    with pytest.raises(ValueError, match="3D"):
        pm.lcd_loss(torch.rand(10, 2).to(device), torch.rand(10, 2).to(device), n)
    with pytest.raises(ValueError, match="NaN"):
        pm.lcd_loss(x, x.clone().fill_(float("nan")), n)
    with pytest.raises(TypeError, match="optimizer"):
        pm.lcd_adversarial_step(x, x, n, None)


# ------------------------------------------------------------------------------------------------
# Regressions from the property tests (tests/test_properties.py)


def test_adversarial_step_takes_lists_of_clouds(gen, device):
    # 'list' object has no attribute 'detach': lists were detached before being validated
    n = net(device=device)
    gt, rec = torch.rand(4, 3, generator=gen).to(device), torch.rand(1, 4, 3, generator=gen).to(device)
    value = pm.lcd_adversarial_step([gt], rec, n, n.optimizer())
    torch.testing.assert_close(value, pm.lcd_loss(gt[None], rec, net(device=device)))
    rec_list = [torch.rand(5, 3, generator=gen).to(device).requires_grad_(), torch.rand(2, 3, generator=gen).to(device)]
    gt_list = [torch.rand(3, 3, generator=gen).to(device), torch.rand(6, 3, generator=gen).to(device)]
    assert torch.isfinite(pm.lcd_adversarial_step(gt_list, rec_list, n, n.optimizer()))
    assert rec_list[0].grad is None  # rec is detached


def test_nan_padding_reaches_no_gradient(device):
    # the padding went through the weight network: finite loss, NaN gradient everywhere
    n = net(device=device)
    rec = torch.rand(1, 3, 3)
    rec[:, 2] = float("nan")
    rec = rec.to(device).requires_grad_()
    gt = torch.rand(1, 4, 3).to(device).requires_grad_()
    loss = pm.lcd_loss(gt, rec, n, rec_lengths=torch.tensor([2], device=device))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(rec.grad).all() and torch.isfinite(gt.grad).all()
    assert (rec.grad[0, 2] == 0).all() and rec.grad[0, :2].abs().sum() > 0
    assert all(torch.isfinite(p.grad).all() for p in n.trainable_parameters())
    torch.testing.assert_close(loss, pm.lcd_loss(gt, rec[:, :2], n))
    # an empty gt and only padding in rec: NaN per pair (with a warning), finite gradients
    rec2 = torch.rand(2, 3, 3)
    rec2[:, 1:] = float("nan")
    rec2 = rec2.to(device).requires_grad_()
    empty, rec2_lengths = torch.rand(2, 0, 3).to(device), torch.tensor([0, 0], device=device)
    with pytest.warns(RuntimeWarning, match="empty"):
        per_pair = pm.lcd_loss(empty, rec2, n, rec_lengths=rec2_lengths, reduction=None)
    assert torch.isnan(per_pair).all()
    (grad,) = torch.autograd.grad(torch.where(torch.isnan(per_pair), 0.0, per_pair).sum(), rec2, allow_unused=True)
    assert grad is None or (grad == 0).all()


def test_adversarial_step_names_the_empty_cloud(device):
    n = net(device=device)
    x = torch.rand(2, 4, 3).to(device)
    with pytest.raises(ValueError, match=r"gt has an empty cloud .*gt_lengths"):
        pm.lcd_adversarial_step(x, x, n, n.optimizer(), gt_lengths=torch.tensor([4, 0], device=device))
    with pytest.raises(ValueError, match=r"rec has an empty cloud .*rec_lengths"):
        pm.lcd_adversarial_step(x, x, n, n.optimizer(), rec_lengths=torch.tensor([0, 4], device=device))
    with pytest.raises(ValueError, match=r"rec has an empty cloud"):
        pm.lcd_adversarial_step([x[0]], [x[0, :0]], n, n.optimizer())


def test_float64_points_keep_their_precision_against_a_float32_network(gen, device):
    """Distances are taken in the points' precision: float32 and float64 copies of the same points
    (1e-8 apart after rounding) are not at distance 0 (found by test_properties)."""
    torch.manual_seed(0)
    net = pm.LCDWeightNet().to(device)
    rec = torch.rand(1, 5, 3, generator=gen, dtype=torch.float64) * 1e-8
    gt = rec.float()
    got = pm.lcd_loss(gt.to(device), rec.to(device), net, reduction=None).cpu()
    d = (gt.double()[0, :, None] - rec[0, None]).norm(dim=-1)
    valid = torch.ones(1, 5, dtype=torch.bool, device=device)
    w_gt, w_rec = net(gt.to(device), rec.float().to(device), valid, valid)
    w_gt, w_rec = w_gt.cpu(), w_rec.cpu()
    want = 0.5 * ((w_gt[0].double() * d.min(1).values).sum() + (w_rec[0].double() * d.min(0).values).sum())
    assert float(want) > 0
    torch.testing.assert_close(got[0].double(), want, rtol=1e-5, atol=0)
