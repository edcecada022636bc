"""DirDist / DDM against brute-force directional distance fields."""

import pytest
import torch
from conftest import DATA

import pointmetrics as pm
from pointmetrics import io, reference


def cloud(gen, n, dtype=torch.float64):
    return torch.rand(n, 3, generator=gen, dtype=dtype)


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def brute_p2p(source, target, noise, K=5, beta=3.0, weighted=True):
    queries = torch.cat([(target[:, None] + noise).reshape(-1, 3), source])
    fs = reference.directional_distance_field(queries, cloud=source, K=K)
    ft = reference.directional_distance_field(queries, cloud=target, K=K)
    e = (fs[:, 3] - ft[:, 3]).abs() + (fs[:, :3] - ft[:, :3]).abs().sum(1)
    w = torch.exp(-beta * e) if weighted else torch.ones_like(e)
    return (w * e).mean()


@pytest.mark.parametrize("weighted", [True, False])
def test_p2p_against_brute_force(gen, device, weighted):
    s, t = cloud(gen, 150), cloud(gen, 120)
    got = pm.ddm_p2p(s.to(device), t.to(device), weighted=weighted, generator=seeded(5)).cpu()
    noise = torch.randn(1, 120, 10, 3, generator=seeded(5), dtype=torch.float64)[0] * 0.05
    torch.testing.assert_close(got, brute_p2p(s, t, noise, weighted=weighted))


def test_p2p_itself_is_zero_and_grows_with_translation(gen, device):
    t = cloud(gen, 400).to(device)
    assert float(pm.ddm_p2p(t.clone(), t, generator=seeded())) < 1e-12
    values = [float(pm.ddm_p2p(t + torch.tensor([s, 0, 0], device=device), t, generator=seeded(), weighted=False))
              for s in (0.01, 0.03, 0.1)]
    assert 0 < values[0] < values[1] < values[2]


def test_p2p_gradients_finite_at_zero_distance(gen, device):
    t = cloud(gen, 200).to(device)
    s = t.clone().requires_grad_()
    pm.ddm_p2p(s, t, generator=seeded()).backward()
    assert torch.isfinite(s.grad).all()
    s2 = (t + 0.02).requires_grad_()
    pm.ddm_p2p(s2, t, generator=seeded()).backward()
    assert torch.isfinite(s2.grad).all() and s2.grad.abs().sum() > 0


def test_p2p_batches_with_lengths(gen, device):
    s, t = torch.rand(3, 80, 3, generator=gen, dtype=torch.float64), torch.rand(3, 70, 3, generator=gen,
                                                                                  dtype=torch.float64)
    sl, tl = torch.tensor([80, 40, 12]), torch.tensor([70, 70, 9])
    s[1, 40:] = float("nan")  # padding may hold anything
    g = seeded(2)
    got = pm.ddm_p2p(*(x.to(device) for x in (s, t, sl, tl)), generator=g).cpu()
    noise = torch.randn(3, 70, 10, 3, generator=seeded(2), dtype=torch.float64) * 0.05
    want = torch.stack([brute_p2p(s[b, : sl[b]], t[b, : tl[b]], noise[b, : tl[b]]) for b in range(3)]).mean()
    torch.testing.assert_close(got, want)


def bunny():
    g = io.load(DATA / "bunny_res4.ply")
    return g.vertices.double(), g.faces


def test_m2p_against_brute_force(gen, device):
    v, f = bunny()
    points = v[torch.randperm(len(v), generator=gen)[:150]] + 0.002 * torch.randn(150, 3, generator=gen,
                                                                                  dtype=torch.float64)
    got = pm.ddm_m2p(v.to(device), f.to(device), points.to(device), generator=seeded(1)).cpu()
    noise = torch.randn(150, 3, 3, generator=seeded(1), dtype=torch.float64) * 0.05
    queries = torch.cat([(points[:, None] + noise).reshape(-1, 3), v[f].mean(1)])
    fs = reference.directional_distance_field(queries, v, f)
    ft = reference.directional_distance_field(queries, cloud=points)
    torch.testing.assert_close(got, (fs - ft).abs().sum(1).mean())


def test_m2m_itself_zero_translation_positive_and_brute_force(gen, device):
    v, f = bunny()
    dv, df = v.to(device), f.to(device)
    assert float(pm.ddm_m2m(dv, df, dv, df, num_queries=2000, generator=seeded())) < 1e-12
    moved = (dv + torch.tensor([0.01, 0, 0], dtype=torch.float64, device=device)).requires_grad_()
    loss = pm.ddm_m2m(moved, df, dv, df, num_queries=2000, generator=seeded(4))
    assert float(loss.detach()) > 0
    loss.backward()
    assert torch.isfinite(moved.grad).all() and moved.grad.abs().sum() > 0
    samples = pm.sample_points_on_mesh(v, f, 2000, generator=seeded(4)).points
    g = seeded(4)
    pm.sample_points_on_mesh(v, f, 2000, generator=g)  # advance the generator past the samples
    noise = torch.randn(2000, 3, generator=g, dtype=torch.float64) * 0.05
    moved_cpu = moved.detach().cpu()
    queries = torch.cat([samples + noise, moved_cpu[f].mean(1)])
    want = 4 * (reference.directional_distance_field(queries, moved_cpu, f)
                - reference.directional_distance_field(queries, v, f)).abs().mean()
    torch.testing.assert_close(loss.detach().cpu(), want)


def test_bad_input(gen, device):
    v, f = bunny()
    v, f = v.to(device), f.to(device)
    with pytest.raises(ValueError, match="at least K=5 points"):
        pm.ddm_p2p(cloud(gen, 4).to(device), cloud(gen, 10).to(device))
    with pytest.raises(ValueError, match="fewer than K=5"):
        pm.ddm_m2p(v, f, cloud(gen, 3).to(device))
    with pytest.raises(ValueError, match="faces is empty"):
        pm.ddm_m2p(v, f[:0], cloud(gen, 30).to(device))
    with pytest.raises(ValueError, match="std"):
        pm.ddm_m2m(v, f, v, f, std=-1.0)
    with pytest.raises(ValueError, match="NaN"):
        pm.ddm_p2p(cloud(gen, 10).fill_(float("nan")).to(device), cloud(gen, 10).to(device))


# ------------------------------------------------------------------------------------------------
# Regressions from the property tests (tests/test_properties.py)


def test_result_dtype_is_promoted_and_half_results_do_not_overflow(gen, device):
    # float16 source with a bfloat16 target at 1e8 returned inf in float16 (the source's dtype)
    source = (torch.rand(1, 1, 3, generator=gen) * 1e-8).half().to(device)
    target = (torch.rand(1, 1, 3, generator=gen) * 2e8 - 1e8).bfloat16().to(device)
    got = pm.ddm_p2p(source, target, K=1, repeat=1, weighted=False)
    assert got.dtype == torch.float32 and torch.isfinite(got)  # promote_types(float16, bfloat16)
    want = pm.ddm_p2p(source.double(), target.double(), K=1, repeat=1, weighted=False, std=0.0)
    torch.testing.assert_close(pm.ddm_p2p(source, target, K=1, repeat=1, weighted=False, std=0.0).double(), want,
                               rtol=1e-5, atol=0)
    # float16 on both sides, a result beyond 65504: returned in float32, not as inf
    s = torch.tensor([[[6e4, 6e4, 6e4]]]).half().to(device)
    got = pm.ddm_p2p(s, -s, K=1, repeat=1, weighted=False, std=0.0)
    assert got.dtype == torch.float32 and torch.isfinite(got) and float(got) > 65504
    # a result that fits stays in float16; mixed float32/float64 gives float64
    small = torch.rand(1, 6, 3, generator=gen).to(device)
    assert pm.ddm_p2p(small.half(), small.half().flip(1), K=2).dtype == torch.float16
    assert pm.ddm_p2p(small, small.double(), K=2).dtype == torch.float64
    v = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1.0]], device=device)
    f = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], device=device)
    assert pm.ddm_m2p(v, f, small[0].double(), K=2).dtype == torch.float64
    assert pm.ddm_m2m(v.half(), f, v.bfloat16(), f, num_queries=8).dtype == torch.float32
