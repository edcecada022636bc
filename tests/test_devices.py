"""Every public function on every device (the `device` fixture: the CPU, and CUDA and a second GPU
where they exist), against the same call on CPU tensors. On the CPU the two calls coincide, so these
tests check that each function runs with the inputs placed by `to(device)`; on a GPU they check that
CPU and CUDA agree. Search results (indices, faces, kept points, assignments) must be identical,
values within float64 rounding of each other."""

import dataclasses

import numpy as np
import pytest
import torch
from conftest import DATA, simple_dtu_layout

import pointmetrics as pm
from pointmetrics._ops import ops
from pointmetrics.io import load


def on(device, *tensors):
    return tuple(t.to(device) for t in tensors)


def assert_agree(cpu, dev, exact=False):
    """Outputs of the CPU call and of the device call agree: tensors on `dev`'s device moved back,
    integers and booleans identical, floating values to float64 rounding (or identical)."""
    if isinstance(cpu, torch.Tensor):
        dev = dev.cpu()
        assert cpu.shape == dev.shape and cpu.dtype == dev.dtype
        if exact or not cpu.is_floating_point():
            assert torch.equal(cpu, dev)
        else:
            torch.testing.assert_close(dev, cpu, rtol=1e-9, atol=1e-12, equal_nan=True)
    elif isinstance(cpu, tuple):
        assert type(cpu) is type(dev) and len(cpu) == len(dev)
        for a, b in zip(cpu, dev):
            assert_agree(a, b, exact)
    elif dataclasses.is_dataclass(cpu):
        assert type(cpu) is type(dev)
        for field in dataclasses.fields(cpu):
            assert_agree(getattr(cpu, field.name), getattr(dev, field.name), exact)
    elif isinstance(cpu, dict):
        assert cpu.keys() == dev.keys()
        for key in cpu:
            assert_agree(cpu[key], dev[key], exact)
    elif isinstance(cpu, float):
        assert dev == pytest.approx(cpu, rel=1e-9, abs=1e-12, nan_ok=True)
    else:
        assert cpu == dev


def mesh(gen, n=40, f=90):
    v = torch.rand(n, 3, generator=gen, dtype=torch.float64)
    faces = torch.randint(0, n, (f, 3), generator=gen)
    return v, faces


def sphere_mesh(subdivisions=2):
    import trimesh

    s = trimesh.creation.icosphere(subdivisions)
    return torch.tensor(s.vertices), torch.tensor(s.faces)


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


# Nearest neighbours: brute force, grid and tree paths, norm 1 and 2, D < 3, empty clouds.


@pytest.mark.parametrize("n", [300, 30_000])  # brute force, grid
@pytest.mark.parametrize("norm", [1, 2])
@pytest.mark.parametrize("D", [1, 2, 3])
def test_knn_points(gen, device, n, norm, D):
    x = torch.rand(2, n, D, generator=gen, dtype=torch.float64)
    y = torch.rand(2, n + 17, D, generator=gen, dtype=torch.float64)
    xl, yl = torch.tensor([n, n // 3]), torch.tensor([n + 17, 0])  # an empty target cloud
    cpu = pm.knn_points(x, y, K=4, x_lengths=xl, y_lengths=yl, norm=norm)
    dev = pm.knn_points(*on(device, x, y), K=4, x_lengths=xl.to(device), y_lengths=yl.to(device), norm=norm)
    assert_agree(cpu.idx, dev.idx)
    assert_agree(cpu.dists, dev.dists)


@pytest.mark.parametrize("kind", ["clusters", "far", "few_far", "surface"])
def test_knn_fallback_and_tree_paths(gen, device, kind):
    """The CUDA plan's passes (csrc/knn/knn.h run_device_plan): crowded grids (clusters: kd-trees
    for every query), many queries far from the data (deferred to kd-trees), a few of them (the
    grid's fallback pass), and targets on a surface."""
    if kind == "few_far":
        y = torch.rand(1, 40_000, 3, generator=gen)
        x = torch.cat([torch.rand(1, 5000, 3, generator=gen), torch.rand(1, 40, 3, generator=gen) * 50 + 20], 1)
    elif kind == "clusters":
        y = (torch.rand(1, 20, 3, generator=gen) * 10).repeat_interleave(2000, 1)
        y = y + 1e-3 * torch.randn(y.shape, generator=gen)
        x = torch.rand(1, 5000, 3, generator=gen) * 10
    elif kind == "far":
        y = torch.rand(1, 40_000, 3, generator=gen)
        x = torch.rand(1, 3000, 3, generator=gen) * 100 + 50
    else:
        y = torch.randn(1, 40_000, 3, generator=gen)
        y = y / y.norm(dim=-1, keepdim=True)
        x = torch.randn(1, 5000, 3, generator=gen) * 1.5
    for norm in (1, 2):
        cpu = pm.knn_points(x.double(), y.double(), K=3, norm=norm)
        dev = pm.knn_points(*on(device, x.double(), y.double()), K=3, norm=norm)
        assert_agree(cpu.idx, dev.idx)
        assert_agree(cpu.dists, dev.dists)


def test_point_cloud_metrics(gen, device):
    x = torch.rand(3, 700, 3, generator=gen, dtype=torch.float64)
    y = torch.rand(3, 500, 3, generator=gen, dtype=torch.float64)
    xl, yl = torch.tensor([700, 10, 0]), torch.tensor([500, 500, 3])
    xd, yd, xld, yld = on(device, x, y, xl, yl)
    assert_agree(pm.hausdorff_distance(x, y, xl, yl), pm.hausdorff_distance(xd, yd, xld, yld))
    assert_agree(pm.fscore(x, y, [0.01, 0.05], xl, yl), pm.fscore(xd, yd, [0.01, 0.05], xld, yld))
    assert_agree(pm.correspondences(x, y, xl, yl), pm.correspondences(xd, yd, xld, yld))
    cpu, dev = pm.PointCloudMetrics(taus=[0.02]), pm.PointCloudMetrics(taus=[0.02])
    cpu.update(x, y, xl, yl)
    dev.update(xd, yd, xld, yld)
    a, b = cpu.compute(), dev.compute()
    assert a.keys() == b.keys()
    for key in a:
        assert_agree(a[key], b[key])


# Earth Mover's Distance with D != 3 (no price tree: every bid scans the objects).


@pytest.mark.parametrize("D", [1, 2, 5])
def test_emd_any_dimension(gen, device, D):
    x = torch.rand(2, 150, D, generator=gen, dtype=torch.float64)
    y = torch.rand(2, 170, D, generator=gen, dtype=torch.float64)
    xl, yl = torch.tensor([150, 90]), torch.tensor([170, 120])
    cpu = pm.earth_movers_distance(x, y, xl, yl, rel_tol=1e-6)
    dev = pm.earth_movers_distance(*on(device, x, y, xl, yl), rel_tol=1e-6)
    assert_agree(cpu.assignment, dev.assignment)
    assert_agree(cpu.distance, dev.distance)


# Meshes: padded batches, empty meshes, sampling with a CPU generator, the Python metrics.


def test_mesh_queries_on_padded_batches_and_empty_meshes(gen, device):
    (v1, f1), (v2, f2) = mesh(gen), mesh(gen, 25, 40)
    verts = [v1, v2, v2[:0]]
    faces = [f1, f2, f2[:0]]
    q = [torch.rand(n, 3, generator=gen, dtype=torch.float64) * 1.4 - 0.2 for n in (200, 50, 30)]
    d = torch.device(device)
    with pytest.warns(RuntimeWarning, match="no faces"):
        cpu = pm.MeshBVH(verts, faces).closest_points(q)
    with pytest.warns(RuntimeWarning, match="no faces"):
        dev = pm.MeshBVH([t.to(d) for t in verts], [t.to(d) for t in faces]).closest_points([t.to(d) for t in q])
    assert_agree(cpu.face, dev.face)
    assert_agree(cpu.sq_distance, dev.sq_distance)
    bvh_cpu = pm.MeshBVH(verts, faces)
    bvh_dev = pm.MeshBVH([t.to(d) for t in verts], [t.to(d) for t in faces])
    assert_agree(bvh_cpu.winding_number(q), bvh_dev.winding_number([t.to(d) for t in q]), exact=True)


def test_occupancy_and_signed_distance(gen, device):
    v, f = sphere_mesh()
    q = torch.rand(500, 3, generator=gen, dtype=torch.float64) * 2.4 - 1.2
    vd, fd, qd = on(device, v, f, q)
    assert_agree(pm.occupancy(q, v, f), pm.occupancy(qd, vd, fd))
    assert_agree(pm.signed_distance(q, v, f), pm.signed_distance(qd, vd, fd))
    assert_agree(pm.winding_number(q, v, f), pm.winding_number(qd, vd, fd), exact=True)


def test_sampling_with_a_cpu_generator(device):
    v, f = sphere_mesh()
    cpu = pm.sample_points_on_mesh(v, f, 2000, generator=seeded(3))
    dev = pm.sample_points_on_mesh(*on(device, v, f), 2000, generator=seeded(3))
    same = cpu.face_idx == dev.face_idx.cpu()
    assert same.float().mean() > 0.999  # areas computed on the device may move a draw at a boundary
    torch.testing.assert_close(dev.points.cpu()[same], cpu.points[same], rtol=0, atol=1e-12)
    lattice_cpu = pm.sample_mesh_lattice(v * 10, f, density=0.5)
    assert_agree(lattice_cpu, pm.sample_mesh_lattice(*on(device, v * 10, f), density=0.5))


def test_mesh_metrics_with_generators(gen, device):
    v, f = sphere_mesh()
    moved = v * 1.05
    points = torch.rand(300, 3, generator=gen, dtype=torch.float64) * 2 - 1
    vd, fd, md, pd = on(device, v, f, moved, points)
    a = pm.point_mesh_distance(points, v, f, samples=3000, generator=seeded(1))
    b = pm.point_mesh_distance(pd, vd, fd, samples=3000, generator=seeded(1))
    for x, y in zip(a, b):
        torch.testing.assert_close(y.cpu(), x, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(pm.ddm_m2p(vd, fd, pd, generator=seeded(2)).cpu(),
                               pm.ddm_m2p(v, f, points, generator=seeded(2)), rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(pm.ddm_m2m(md, fd, vd, fd, num_queries=3000, generator=seeded(3)).cpu(),
                               pm.ddm_m2m(moved, f, v, f, num_queries=3000, generator=seeded(3)), rtol=1e-6, atol=1e-9)
    iou_cpu = pm.volumetric_iou(moved, f, v, f, n_points=20_000, generator=seeded(4))
    iou_dev = pm.volumetric_iou(md, fd, vd, fd, n_points=20_000, generator=seeded(4))
    assert float(iou_dev.iou) == pytest.approx(float(iou_cpu.iou), abs=1e-3)


def test_render_normals(device):
    v, f = sphere_mesh(3)
    cameras = pm.human_cameras("icon2022")
    cpu = pm.render_normals(v * 0.8, f, cameras, image_size=32)
    dev = pm.render_normals(*on(device, v * 0.8, f), cameras, image_size=32)
    assert cpu.mask.any() and not cpu.mask.all()
    assert_agree(cpu.mask, dev.mask)
    assert_agree(cpu.normals, dev.normals)


def test_human_eval(device):
    g = load(DATA / "smpl_body.ply")
    v = g.vertices.double() - (g.vertices.double().amax(0) + g.vertices.double().amin(0)) / 2
    v, f = v / v.abs().max() * 0.9, g.faces  # the protocol's normalised frame
    pred = v * 1.01
    cpu = pm.human_eval((pred, f), (v, f), num_samples=300, image_size=16)
    dev = pm.human_eval(on(device, pred, f), on(device, v, f), num_samples=300, image_size=16)
    for key in ("chamfer", "p2s", "normal"):
        assert float(getattr(dev, key)) == pytest.approx(float(getattr(cpu, key)), rel=1e-6, abs=1e-9)


def test_dtu_eval_on_the_device(tmp_path, device):
    simple_dtu_layout(tmp_path)
    points = torch.from_numpy(load(DATA / "bunny_scans_20k.ply").vertices.numpy() * 1000)
    points = points + 0.3
    cpu = pm.dtu_eval(points, 1, tmp_path, downsample_density=0.5)
    dev = pm.dtu_eval(points.to(device), 1, tmp_path, downsample_density=0.5, device=device)
    for key in ("accuracy", "completeness", "overall"):
        assert getattr(dev, key) == pytest.approx(getattr(cpu, key), rel=1e-9)


# Training losses.


def test_sdf_and_lcd_losses(gen, device):
    grad = torch.randn(400, 3, generator=gen, dtype=torch.float64)
    sdf = torch.randn(400, generator=gen, dtype=torch.float64)
    opacity = torch.rand(400, generator=gen, dtype=torch.float64)
    mask = torch.rand(400, generator=gen) > 0.5
    gd, sd, od, md = on(device, grad, sdf, opacity, mask)
    assert_agree(pm.eikonal_loss(grad), pm.eikonal_loss(gd))
    assert_agree(pm.sparsity_loss(sdf, scale=10.0), pm.sparsity_loss(sd, scale=10.0))
    assert_agree(pm.sdf_points_loss(sdf), pm.sdf_points_loss(sd))
    assert_agree(pm.opacity_entropy_loss(opacity), pm.opacity_entropy_loss(od))
    assert_agree(pm.mask_bce_loss(opacity, mask.double()), pm.mask_bce_loss(od, md.double()))
    torch.manual_seed(0)
    net = pm.LCDWeightNet().double()
    gt = torch.rand(2, 200, 3, generator=gen, dtype=torch.float64)
    rec = torch.rand(2, 180, 3, generator=gen, dtype=torch.float64)
    assert_agree(pm.lcd_loss(gt, rec, net), pm.lcd_loss(*on(device, gt, rec), net.to(device)))


# opcheck of every raw op on the device.


def test_opcheck_mesh_and_reduction_ops(gen, device):
    v, f = mesh(gen, 30, 50)
    bvh = pm.MeshBVH(v.to(device), f.to(device))
    t = bvh.tree
    q = torch.rand(1, 40, 3, generator=gen, dtype=torch.float64).to(device)
    pl = torch.tensor([40], device=device)
    centroids = t.tris.mean(2).contiguous()
    torch.library.opcheck(ops.kd_order, (centroids, bvh.meshes.face_lengths))
    torch.library.opcheck(ops.triangle_frames, (t.tris, bvh.meshes.face_lengths, f.shape[0]))
    args = (q, pl, t.tris, t.face, t.lo, t.hi, bvh.meshes.face_lengths)
    torch.library.opcheck(ops.closest_triangle, (*args, *bvh.search_data()))
    torch.library.opcheck(ops.winding_number, (*args, *bvh.moments(), 2.0))
    points = torch.rand(500, 3, generator=gen, dtype=torch.float64).to(device)
    torch.library.opcheck(ops.greedy_radius_keep, (points, 0.1))


def test_greedy_downsample_agrees(gen, device):
    pts = torch.rand(20_000, 3, generator=gen, dtype=torch.float64) * 5
    assert_agree(pm.greedy_radius_downsample(pts, 0.2), pm.greedy_radius_downsample(pts.to(device), 0.2))
    half = pts.half()
    assert_agree(pm.greedy_radius_downsample(half, 0.2), pm.greedy_radius_downsample(half.to(device), 0.2))


def test_results_on_the_input_device(gen, device):
    """Outputs live on the inputs' device (a second GPU included), not on the default one."""
    x = torch.rand(1, 300, 3, generator=gen).to(device)
    y = torch.rand(1, 200, 3, generator=gen).to(device)
    assert pm.knn_points(x, y).idx.device == x.device
    assert pm.earth_movers_distance(x, y[:, :200]).distance.device == x.device
    v, f = sphere_mesh()
    assert pm.closest_points_on_mesh(x[0].double(), *on(device, v, f)).distance.device == x.device
    assert np.isfinite(float(pm.chamfer_distance(x, y)[0].cpu()))
