"""CPU and CUDA agree. Skipped without a GPU, never deleted."""

import pytest
import torch

import pointmetrics as pm

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def sphere(n, gen):
    v = torch.randn(n, 3, generator=gen)
    return v / v.norm(dim=1, keepdim=True)


@pytest.mark.parametrize("n,m", [(500, 700), (20_000, 30_000)])  # brute-force and grid paths
@pytest.mark.parametrize("K", [1, 5, 20])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_knn_cpu_and_cuda_agree(gen, n, m, K, dtype):
    x = torch.rand(2, n, 3, generator=gen).to(dtype)
    y = torch.rand(2, m, 3, generator=gen).to(dtype)
    xl, yl = torch.tensor([n, n // 2]), torch.tensor([m, m - 3])
    cpu = pm.knn_points(x, y, K=K, x_lengths=xl, y_lengths=yl)
    gpu = pm.knn_points(x.cuda(), y.cuda(), K=K, x_lengths=xl.cuda(), y_lengths=yl.cuda())
    assert torch.equal(cpu.idx, gpu.idx.cpu())
    assert torch.equal(cpu.dists, gpu.dists.cpu())


@pytest.mark.parametrize("kind", ["sphere", "clusters", "far"])
def test_knn_paths_agree(gen, kind):
    y = sphere(40_000, gen)
    x = torch.rand(30_000, 3, generator=gen) * 2 - 1
    if kind == "clusters":
        y = y * 1e-3 + torch.randint(0, 4, (40_000, 1), generator=gen).float() * 10
    if kind == "far":
        x[:2000] *= 100
    cpu = pm.knn_points(x, y, K=3)
    gpu = pm.knn_points(x.cuda(), y.cuda(), K=3)
    assert torch.equal(cpu.idx, gpu.idx.cpu())


def test_knn_high_dimension_and_l1(gen):
    x, y = torch.rand(3, 300, 7, generator=gen), torch.rand(3, 200, 7, generator=gen)
    for norm in (1, 2):
        cpu = pm.knn_points(x, y, K=4, norm=norm)
        gpu = pm.knn_points(x.cuda(), y.cuda(), K=4, norm=norm)
        assert torch.equal(cpu.idx, gpu.idx.cpu())


def test_chamfer_and_gradients_agree(gen):
    x = torch.rand(4, 3000, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.rand(4, 2000, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    xc, yc = x.detach().cuda().requires_grad_(), y.detach().cuda().requires_grad_()
    for f in (lambda a, b: pm.chamfer_distance(a, b)[0], pm.chamfer_l1, pm.chamfer_l2):
        loss, loss_c = f(x, y), f(xc, yc)
        gx, gy = torch.autograd.grad(loss, (x, y))
        gxc, gyc = torch.autograd.grad(loss_c, (xc, yc))
        torch.testing.assert_close(loss, loss_c.cpu())
        torch.testing.assert_close(gx, gxc.cpu())
        torch.testing.assert_close(gy, gyc.cpu())


def test_opcheck_cuda(gen):
    x = torch.rand(2, 20, 3, generator=gen, device="cuda")  # a search: no gradient (see test_knn's opcheck)
    y = torch.rand(2, 15, 3, generator=gen, device="cuda")
    lengths = torch.tensor([20, 11], device="cuda"), torch.tensor([15, 2], device="cuda")
    torch.library.opcheck(torch.ops.pointmetrics.knn, (x, y, *lengths, 3, 2))


def mesh(name):
    from conftest import DATA

    from pointmetrics import io

    g = io.load(DATA / name)
    return g.vertices, g.faces


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mesh_ops_cpu_and_cuda_agree(gen, dtype):
    v, f = mesh("armadillo.ply")
    v = v.to(dtype)
    lo, hi = v.amin(0), v.amax(0)
    q = lo + (hi - lo) * torch.rand(20_000, 3, generator=gen, dtype=torch.float64).to(dtype)
    cpu = pm.closest_points_on_mesh(q, v, f)
    gpu = pm.closest_points_on_mesh(q.cuda(), v.cuda(), f.cuda())
    assert torch.equal(cpu.face, gpu.face.cpu())
    assert torch.equal(cpu.sq_distance, gpu.sq_distance.cpu())
    assert torch.equal(pm.MeshBVH(v, f).face, pm.MeshBVH(v.cuda(), f.cuda()).face.cpu())
    w_cpu = pm.winding_number(q, v, f)
    w_gpu = pm.winding_number(q.cuda(), v.cuda(), f.cuda()).cpu()
    torch.testing.assert_close(w_cpu, w_gpu, rtol=0, atol=1e-9)


def test_mesh_gradients_agree(gen):
    v, f = mesh("bunny_res4.ply")
    q = torch.rand(500, 3, generator=gen, dtype=torch.float64) * 0.2 - 0.1 + v.mean(0)
    grads = []
    for device in ("cpu", "cuda"):
        vv, qq = v.to(device).requires_grad_(), q.to(device).requires_grad_()
        pm.point_to_surface_distance(qq, vv, f.to(device)).backward()
        grads.append((vv.grad.cpu(), qq.grad.cpu()))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_emd_cpu_and_cuda_agree(gen, p, dtype):
    # Same bids, same resolution order, same sums: the very same assignment and certificate.
    x = torch.rand(3, 700, 3, generator=gen, dtype=torch.float64).to(dtype)
    y = torch.rand(3, 650, 3, generator=gen, dtype=torch.float64).to(dtype)
    xl, yl = torch.tensor([700, 500, 1]), torch.tensor([650, 500, 40])
    cpu = pm.earth_movers_distance(x, y, xl, yl, p=p, rel_tol=1e-3)
    gpu = pm.earth_movers_distance(x.cuda(), y.cuda(), xl.cuda(), yl.cuda(), p=p, rel_tol=1e-3)
    assert torch.equal(cpu.assignment, gpu.assignment.cpu())
    assert torch.equal(cpu.rounds, gpu.rounds.cpu())
    torch.testing.assert_close(cpu.distance, gpu.distance.cpu())
    torch.testing.assert_close(cpu.lower_bound, gpu.lower_bound.cpu())


def test_emd_cuda_gradients_and_opcheck(gen):
    x = torch.rand(2, 300, 3, generator=gen, dtype=torch.float64)
    y = torch.rand(2, 300, 3, generator=gen, dtype=torch.float64)
    grads = []
    for device in ("cpu", "cuda"):
        xx, yy = x.to(device).requires_grad_(), y.to(device).requires_grad_()
        pm.earth_movers_distance(xx, yy).distance.sum().backward()
        grads.append((xx.grad.cpu(), yy.grad.cpu()))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])
    lengths = torch.tensor([300, 120], device="cuda"), torch.tensor([300, 200], device="cuda")
    torch.library.opcheck(torch.ops.pointmetrics.auction_assignment,
                          (x.cuda(), y.cuda(), *lengths, 1, 1e-3, 1_000_000))


def test_training_losses_agree(gen):
    torch.manual_seed(0)
    net = pm.LCDWeightNet().double()
    gt = torch.rand(2, 300, 3, generator=gen, dtype=torch.float64)
    rec = torch.rand(2, 280, 3, generator=gen, dtype=torch.float64)
    lcd_cpu = pm.lcd_loss(gt, rec, net)
    lcd_gpu = pm.lcd_loss(gt.cuda(), rec.cuda(), net.cuda())
    torch.testing.assert_close(lcd_cpu, lcd_gpu.cpu())
    ddm_cpu = pm.ddm_p2p(gt, rec, generator=torch.Generator().manual_seed(1))
    noise_free = pm.ddm_p2p(gt, rec, std=0.0)
    torch.testing.assert_close(noise_free, pm.ddm_p2p(gt.cuda(), rec.cuda(), std=0.0).cpu())
    assert torch.isfinite(ddm_cpu)
    a, b = torch.rand(2, 3, 32, 32, generator=gen, dtype=torch.float64), torch.rand(2, 3, 32, 32, generator=gen,
                                                                                       dtype=torch.float64)
    torch.testing.assert_close(pm.ssim(a, b), pm.ssim(a.cuda(), b.cuda()).cpu())


def test_greedy_reduction_cpu_and_cuda_agree(gen):
    pts = torch.rand(100_000, 3, generator=gen, dtype=torch.float64) * 10
    keep = pm.greedy_radius_downsample(pts, 0.2)
    assert torch.equal(keep, pm.greedy_radius_downsample(pts.cuda(), 0.2).cpu())
    ordered = pts[pts[:, 0].argsort()]  # a sorted order: long chains of dependent decisions
    assert torch.equal(pm.greedy_radius_downsample(ordered, 0.2),
                       pm.greedy_radius_downsample(ordered.cuda(), 0.2).cpu())


@pytest.mark.parametrize("perspective", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rasterize_cpu_and_cuda_agree(gen, perspective, dtype):
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=5)
    v = torch.tensor(s.vertices, dtype=dtype) * 0.8 + 0.05 * torch.rand(len(s.vertices), 3, generator=gen).to(dtype)
    f = torch.tensor(s.faces)
    f = torch.cat([f, f[:100]])  # duplicate faces: ties go to the smaller index on both devices
    views = pm.look_at([[0, 0, 3.0], [3.0, 0.5, 0], [0, 3.0, 0.2]])
    cams = pm.Cameras.perspective(views, fov_y=45) if perspective else pm.Cameras.orthographic(views, near=0, far=6)
    cpu = pm.rasterize(v, f, cams, (300, 257))
    gpu = pm.rasterize(v.cuda(), f.cuda(), cams, (300, 257))
    assert torch.equal(cpu.face, gpu.face.cpu())
    assert torch.equal(cpu.bary, gpu.bary.cpu())
    assert torch.equal(cpu.depth, gpu.depth.cpu())


def test_rasterize_large_triangles_on_cuda():
    # A few triangles covering the whole image: the tiled CUDA pass splits them across threads.
    v = torch.tensor([[-3.0, -3, 0.2], [3, -3, 0.1], [3, 3, 0.0], [-3, 3, 0.1]])
    f = torch.tensor([[0, 1, 2], [0, 2, 3]])
    cams = pm.Cameras.orthographic(torch.eye(4))
    cpu = pm.rasterize(v, f, cams, 1024)
    gpu = pm.rasterize(v.cuda(), f.cuda(), cams, 1024)
    assert (cpu.face >= 0).all()
    assert torch.equal(cpu.face, gpu.face.cpu()) and torch.equal(cpu.depth, gpu.depth.cpu())


@pytest.mark.parametrize("backend", ["icon2022", "econ"])
def test_normal_map_error_cpu_and_cuda_agree(backend):
    from conftest import DATA

    from pointmetrics.io import load

    g = load(DATA / "smpl_body.ply")
    v = g.vertices - (g.vertices.max(0).values + g.vertices.min(0).values) / 2
    v = v / v.abs().max() * 0.9
    pred = v * 1.02
    cpu = pm.normal_map_error((pred, g.faces), (v, g.faces), backend=backend, image_size=256)
    gpu = pm.normal_map_error((pred.cuda(), g.faces.cuda()), (v.cuda(), g.faces.cuda()), backend=backend,
                              image_size=256)
    torch.testing.assert_close(cpu.error, gpu.error.cpu(), atol=1e-12, rtol=1e-9)


def test_rasterize_opcheck_cuda(gen):
    from pointmetrics._ops import ops

    clip = torch.rand(1, 2, 30, 4, generator=gen).cuda() * 2 - 1
    clip[..., 3] = 1
    faces = torch.randint(0, 30, (1, 40, 3), generator=gen).cuda()
    torch.library.opcheck(ops.rasterize_triangles, (clip, faces, torch.tensor([40]).cuda(), 9, 11))
