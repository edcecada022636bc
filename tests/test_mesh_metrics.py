"""Surface sampling, the DTU lattice sampler, P2S, volumetric IoU and normal consistency."""

import numpy as np
import pytest
import torch
from conftest import DATA, dtu_reference_sampler
from scipy.spatial import cKDTree

import pointmetrics as pm
from pointmetrics import io, reference


def load(name):
    g = io.load(DATA / name)
    return g.vertices, g.faces


def box_mesh(lo, hi):
    """Closed, outward-oriented box."""
    import trimesh

    box = trimesh.creation.box(bounds=[lo, hi])
    return torch.tensor(box.vertices), torch.tensor(box.faces)


def test_samples_lie_on_the_surface_uniformly_by_area(gen, device):
    v, f = load("bunny_res4.ply")
    dv, df = v.to(device), f.to(device)
    s = pm.sample_points_on_mesh(dv, df, 40_000, generator=gen)
    d = pm.closest_points_on_mesh(s.points, dv, df).distance
    assert d.max() < 1e-12
    bary, face_idx = s.bary.cpu(), s.face_idx.cpu()
    torch.testing.assert_close((bary[..., None] * v[f[face_idx]]).sum(1), s.points.cpu())
    v, f = dv, df
    areas, normals = pm.mesh.face_areas_normals(v, f)
    torch.testing.assert_close(s.normals, normals[s.face_idx])
    # face counts follow the areas (chi-square over the 50 largest faces)
    counts = torch.bincount(s.face_idx, minlength=f.shape[0]).double()
    expected = 40_000 * areas / areas.sum()
    top = expected.argsort(descending=True)[:50]
    chi2 = (((counts[top] - expected[top]) ** 2) / expected[top]).sum()
    assert chi2 < 100  # 49 degrees of freedom: p < 1e-4 above this
    again = pm.sample_points_on_mesh(v, f, 40_000, generator=torch.Generator().manual_seed(7))
    same = pm.sample_points_on_mesh(v, f, 40_000, generator=torch.Generator().manual_seed(7))
    assert torch.equal(again.points, same.points)


def test_samples_are_differentiable_in_the_vertices(gen, device):
    v, f = load("bunny_res4.ply")
    v = v[:40].clone().to(device).requires_grad_()
    f = f[(f < 40).all(1)][:20].to(device)
    seed = int(torch.randint(0, 2**31, (1,), generator=gen))
    assert torch.autograd.gradcheck(
        lambda w: pm.sample_points_on_mesh(w, f, 30, generator=torch.Generator().manual_seed(seed)).points, (v,)
    )


@pytest.mark.parametrize("name,density", [("bunny_res4.ply", 0.003), ("demosthenes.ply", 0.01)])
def test_dtu_lattice_sampler_is_bit_exact(device, name, density):
    v, f = load(name)
    f = torch.cat([f, torch.tensor([[0, 0, 1], [2, 2, 2]])])  # zero-area faces are dropped
    dv, df = v.to(device), f.to(device)
    got = pm.sample_mesh_lattice(dv, df, density, chunk=5000).cpu()
    want = dtu_reference_sampler(v.numpy(), f.numpy(), density)
    assert got.shape == want.shape and got.shape[0] > 3 * v.shape[0]
    assert np.array_equal(got.numpy(), want)
    referenced = pm.sample_mesh_lattice(torch.cat([dv, dv[:5] + 9]), df, density, remove_unreferenced=True)
    assert np.array_equal(referenced.cpu().numpy(), want)


def test_point_to_surface_distance(gen, device):
    v, f = load("bunny_res3.ply")
    pts = torch.rand(3, 500, 3, generator=gen, dtype=torch.float64) * 0.2 - 0.1 + v.mean(0)
    lengths = torch.tensor([500, 321, 7])
    dpts, dv, df = pts.to(device), v.to(device), f.to(device)
    p2s = pm.point_to_surface_distance(
        dpts, dv[None].expand(3, -1, -1), df[None].expand(3, -1, -1), points_lengths=lengths.to(device),
        reduction=None,
    )
    for b in range(3):
        d, _ = reference.closest_points_on_mesh(pts[b, : lengths[b]], v, f)
        torch.testing.assert_close(p2s[b].cpu(), d.sqrt().mean())
    torch.testing.assert_close(pm.point_to_surface_distance(dpts[0], dv, df), p2s[0])


def test_point_mesh_distance_both_directions(gen, device):
    v, f = load("bunny_res3.ply")
    scans = io.load(DATA / "bunny_scans_20k.ply").vertices
    r = pm.point_mesh_distance(scans.to(device), v.to(device), f.to(device), samples=20_000, generator=gen)
    # scans lie within a few millimetres of the decimated mesh, both ways
    assert r.points_to_mesh.mean() < 2e-3 and r.mesh_to_points.mean() < 2e-3
    d, _ = cKDTree(scans.numpy()).query(r.samples[0].cpu().numpy())
    np.testing.assert_allclose(r.mesh_to_points[0].cpu().numpy(), d, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(r.chamfer[0], 0.5 * (r.points_to_mesh.mean() + r.mesh_to_points.mean()))


def test_volumetric_iou_of_a_mesh_with_itself_is_one(gen, device):
    v, f = load("armadillo.ply")
    v, f = v.to(device), f.to(device)
    r = pm.volumetric_iou(v, f, v, f, n_points=20_000, generator=gen)
    assert r.iou == 1.0 and r.inside_gt.any()
    assert r.points.abs().max() < 10  # points drawn around the mesh, in its own frame


def test_volumetric_iou_of_two_boxes_matches_the_analytic_value(gen, device):
    a = tuple(t.to(device) for t in box_mesh([0, 0, 0], [1, 1, 1]))
    b = tuple(t.to(device) for t in box_mesh([0.5, 0, 0], [1.5, 1, 1]))  # the ground truth
    r = pm.volumetric_iou(*a, *b, n_points=100_000, generator=gen)
    # Points cover only the ground truth's padded box, x in [0.45, 1.55]: the prediction counts
    # from x = 0.45, so the union is 1.05 and the intersection 0.5. Binomial error about 0.003.
    assert abs(float(r.iou) - 0.5 / 1.05) < 0.015
    # the frame follows the ground truth: [-0.55, 0.55]^3 around it, scaled by its longest edge
    lo, hi = r.points.amin(0), r.points.amax(0)
    assert torch.allclose(lo.cpu(), torch.tensor([0.45, -0.05, -0.05], dtype=lo.dtype), atol=0.01)
    assert torch.allclose(hi.cpu(), torch.tensor([1.55, 1.05, 1.05], dtype=lo.dtype), atol=0.01)


def test_volumetric_iou_with_an_empty_prediction_is_zero(gen, device):
    a = tuple(t.to(device) for t in box_mesh([0, 0, 0], [1, 1, 1]))
    empty_f = torch.zeros(0, 3, dtype=torch.int64, device=device)
    assert pm.volumetric_iou(a[0], empty_f, *a, n_points=1000, generator=gen).iou == 0.0
    with pytest.warns(RuntimeWarning, match="empty"):
        r = pm.volumetric_iou(a[0], empty_f, a[0], empty_f, n_points=1000, generator=gen)
    assert torch.isnan(r.iou)


def test_normal_consistency(gen, device):
    v, f = load("bunny_res3.ply")
    v, f = v.to(device), f.to(device)
    s = pm.sample_points_on_mesh(v, f, 5000, generator=gen)
    t = pm.sample_points_on_mesh(v, f, 4000, generator=gen)
    nc = pm.normal_consistency(s.points, s.normals, t.points, -t.normals)  # orientation does not matter

    # ONet's distance_p2p with scipy (on CPU copies)
    def one_way(a, an, b, bn):
        a, an, b, bn = (t.cpu().numpy() for t in (a, an, b, bn))
        _, idx = cKDTree(b).query(a)
        return np.abs((an * bn[idx]).sum(-1)).mean()

    want = 0.5 * (one_way(s.points, s.normals, t.points, t.normals) + one_way(t.points, t.normals, s.points, s.normals))
    assert abs(float(nc) - want) < 1e-12
    assert 0.9 < float(nc) <= 1.0
    mesh_nc = pm.mesh_normal_consistency(v, f, t.points, t.normals, samples=5000, generator=gen)
    assert 0.9 < float(mesh_nc) <= 1.0
    rotated = pm.normal_consistency(s.points, s.normals.roll(1, dims=-1), t.points, t.normals)
    assert float(rotated) < float(nc) - 0.1


def test_sampler_beyond_multinomial_limit_follows_areas(monkeypatch, device):
    # Meshes with more than 2^24 faces sample faces by inverting the cumulative areas.
    from pointmetrics import mesh as mesh_module

    monkeypatch.setattr(mesh_module, "_MULTINOMIAL_LIMIT", 1)
    v = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0], [3, 0, 0], [0, 1, 0]], dtype=torch.float64)
    f = torch.tensor([[0, 1, 2], [0, 0, 1], [3, 4, 5]])  # areas 0.5, 0 and 1.5
    v, f = v.to(device), f.to(device)
    s = pm.sample_points_on_mesh(v, f, 40_000, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(s.face_idx, minlength=3).double()
    assert counts[1] == 0
    assert abs(float(counts[2] / counts.sum()) - 0.75) < 0.01


def test_point_mesh_distance_of_an_empty_cloud_is_nan_with_a_warning(gen, device):
    verts = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1.0]], dtype=torch.float64, device=device)
    faces = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], dtype=torch.int16, device=device)
    empty = torch.zeros(0, 3, dtype=torch.float64, device=device)
    with pytest.warns(RuntimeWarning, match="empty"):
        r = pm.point_mesh_distance(empty, verts, faces, samples=50, generator=gen)
    assert torch.isnan(r.chamfer).all()
    points = torch.rand(2, 30, 3, generator=gen, dtype=torch.float64).to(device)
    lengths = torch.tensor([30, 0], device=device)
    with pytest.warns(RuntimeWarning, match="empty"):
        r = pm.point_mesh_distance(points, verts[None].expand(2, 4, 3), faces[None].expand(2, 4, 3).to(torch.uint8),
                                   samples=50, generator=gen, points_lengths=lengths)
    assert torch.isfinite(r.chamfer[0]) and torch.isnan(r.chamfer[1])


# ------------------------------------------------------------------------------------------------
# Regressions from the property tests (tests/test_properties.py)


def test_volumetric_iou_refuses_a_ground_truth_without_extent_naming_gt_verts(device):
    v = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.float64, device=device)
    f = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], device=device)
    no_faces = torch.zeros(0, 3, dtype=torch.long, device=device)
    # an empty ground truth was an IndexError (amin over no vertices)
    with pytest.raises(ValueError, match=r"^gt_verts is empty"):
        pm.volumetric_iou(v, f, torch.zeros(0, 3, device=device), no_faces, n_points=1)
    with pytest.raises(ValueError, match=r"^gt_verts: the ground-truth mesh has no extent"):
        pm.volumetric_iou(v, f, torch.zeros(1, 3, device=device), no_faces, n_points=1)
    with pytest.raises(ValueError, match=r"^gt_verts: the ground-truth mesh has no extent"):
        pm.volumetric_iou(v, f, v * 0, f, n_points=1)
    # an empty prediction is fine: IoU 0
    assert float(pm.volumetric_iou(torch.zeros(0, 3, device=device), no_faces, v, f, n_points=64).iou) == 0.0
