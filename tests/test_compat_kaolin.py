"""pointmetrics.compat.kaolin against transcriptions of Kaolin's definitions (NVIDIAGameWorks/kaolin
at d52da9f86d460e8abcd99037e21ff0bec57997ed) and the expected values of Kaolin's own tests."""

import math

import pytest
import torch

import pointmetrics as pm
from pointmetrics.compat import kaolin as K

# ---------------------------------------------------------------------------------------------
# Slow references, transcribed from Kaolin


def ref_sided(p1, p2):
    """kaolin/csrc/metrics/sided_distance_cuda.cu: squared distance to the first strict minimum
    (``d < best``), distance and index 0 when p2 is empty (the outputs are at::zeros)."""
    B, N, _ = p1.shape
    dist = torch.zeros(B, N, dtype=torch.float64)
    idx = torch.zeros(B, N, dtype=torch.int64)
    if p2.shape[1] == 0:
        return dist, idx
    d = ((p1.double()[:, :, None] - p2.double()[:, None]) ** 2).sum(-1)
    dist, idx = d.min(-1)  # ties: the first index
    return dist, idx


def ref_chamfer(p1, p2, w1=1.0, w2=1.0, squared=True):
    """kaolin/metrics/pointcloud.py, chamfer_distance (lines 121-134)."""
    sdist1 = ref_sided(p1, p2)[0]
    sdist2 = ref_sided(p2, p1)[0]
    if not squared:
        sdist1, sdist2 = torch.sqrt(sdist1), torch.sqrt(sdist2)
    return w1 * sdist1.mean(dim=-1) + w2 * sdist2.mean(dim=-1)


def ref_f_score(gt_points, pred_points, radius=0.01, eps=1e-8):
    """kaolin/metrics/pointcloud.py, f_score (lines 171-183)."""
    pred_distances = torch.sqrt(ref_sided(gt_points, pred_points)[0])
    gt_distances = torch.sqrt(ref_sided(pred_points, gt_points)[0])
    fn = torch.sum(pred_distances > radius, dim=1).double()
    fp = torch.sum(gt_distances > radius, dim=1).double()
    tp = gt_distances.shape[1] - fp
    precision = tp / (tp + fp)
    recall = tp / (tp + fn)
    return 2 * (precision * recall) / (precision + recall + eps)


def ref_triangle_distance(points, face_vertices):
    """kaolin/csrc/metrics/unbatched_triangle_distance_cuda.cu, the forward kernel (lines 250-315),
    over all faces at once in float64: the region tests in the kernel's order, then the first
    face with the smallest distance. (N, 3) points, (F, 3, 3) faces."""
    p = points.double()[:, None]  # (N, 1, 3)
    v1, v2, v3 = (face_vertices.double()[None, :, k] for k in range(3))  # (1, F, 3)
    e12, e23, e31 = v2 - v1, v3 - v2, v1 - v3
    normal = torch.linalg.cross(v1 - v2, e31)

    def project_edge(vertex, edge):
        return ((p - vertex) * edge).sum(-1) / (edge * edge).sum(-1)

    def not_above(vertex, edge):
        return (torch.linalg.cross(normal, edge) * (p - vertex)).sum(-1) <= 0

    def in_range(u):
        return (u >= 0) & (u <= 1)

    uab, ubc, uca = project_edge(v1, e12), project_edge(v2, e23), project_edge(v3, e31)
    unit = normal / normal.norm(dim=-1, keepdim=True)
    plane = p - unit * ((p - v1) * unit).sum(-1, keepdim=True)
    cases = [  # (condition, region code, closest point), tested in this order
        ((uca > 1) & (uab < 0), 1, v1.expand_as(plane)),
        ((uab > 1) & (ubc < 0), 2, v2.expand_as(plane)),
        ((ubc > 1) & (uca < 0), 3, v3.expand_as(plane)),
        (in_range(uab) & not_above(v1, e12), 4, v1 + e12 * uab[..., None]),
        (in_range(ubc) & not_above(v2, e23), 5, v2 + e23 * ubc[..., None]),
        (in_range(uca) & not_above(v3, e31), 6, v3 + e31 * uca[..., None]),
    ]
    code = torch.zeros(uab.shape, dtype=torch.int32)
    closest = plane
    for cond, c, q in reversed(cases):  # the first true condition wins
        code = torch.where(cond, c, code)
        closest = torch.where(cond[..., None], q, closest)
    dist = ((p - closest) ** 2).sum(-1)
    best, face = dist.min(-1)  # first minimum, as `best_dist > dist`
    return best, face, code.gather(1, face[:, None])[:, 0]


# ---------------------------------------------------------------------------------------------
# Kaolin's own test inputs and expected values (tests/python/kaolin/metrics/test_pointcloud.py)

P1 = [[[8.8977, 4.1709, 1.2839], [8.5640, 7.7767, 9.4214]], [[0.5431, 6.4495, 11.4914], [3.2126, 8.0865, 3.1018]]]
P2 = [[[6.9340, 6.1152, 3.4435], [0.1032, 9.8181, 11.3350]], [[11.4006, 2.2154, 7.9589], [4.2586, 1.4133, 7.2606]]]
PRED = [[[8.8914, 4.1788, 1.2176], [8.5291, 7.5513, 9.5412]], [[0.4010, 6.4602, 11.5183], [3.2977, 8.0325, 3.1180]]]
PRED_EXTRA = [[3.7831, 6.0182, 4.1208], [2.4987, 5.8763, 3.1987]]

TOL = {torch.float16: 1e-3, torch.bfloat16: 1e-2, torch.float32: 1e-5, torch.float64: 1e-6}


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_kaolin_expected_values(device, dtype):
    p1, p2 = (torch.tensor(t, dtype=dtype, device=device) for t in (P1, P2))
    tol = dict(rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)
    dist, idx = K.sided_distance(p1, p2)
    assert dist.dtype == dtype and idx.dtype == torch.int64
    torch.testing.assert_close(dist.double().cpu(), torch.tensor([[12.3003, 41.1528], [57.0679, 62.9213]]).double(),
                               **tol)
    assert idx.tolist() == [[0, 0], [1, 1]]
    for kwargs, expected in [({}, [72.5838, 151.0809]), ({"w1": 1.3, "w2": 0.8}, [71.4303, 150.8620]),
                             ({"squared": False}, [11.1704, 17.1130])]:
        out = K.chamfer_distance(p1, p2, **kwargs)
        assert out.dtype == dtype and out.shape == (2,)
        torch.testing.assert_close(out.double().cpu(), torch.tensor(expected).double(), **tol)

    gt = p1
    pred = torch.tensor(PRED, dtype=dtype, device=device)
    pred3 = torch.cat([pred, torch.tensor(PRED_EXTRA, dtype=dtype, device=device)[:, None]], 1)
    for points, radius, expected in [(pred, 0.2, [0.5, 1]), (pred, 0.12, [0.5, 0.5]),
                                     (pred3, 0.2, [0.4, 0.8]), (pred3, 0.12, [0.4, 0.4])]:
        out = K.f_score(gt, points, radius=radius)
        assert out.dtype == dtype
        torch.testing.assert_close(out.double().cpu(), torch.tensor(expected).double(), **tol)


def test_kaolin_triangle_distance_expected_values(device):
    """tests/python/kaolin/metrics/test_trianglemesh.py, test_unbatched_naive_triangle_distance:
    every region code."""
    points = torch.tensor(
        [[0., -1., -1.], [1., -1., -1.], [-1., -1., -1.], [0., -1., 2.], [1., -1., 2.], [-1, -1., 2.],
         [0., 2., 0.5], [1., 2., 0.5], [-1., 2., 0.5], [0., -1., 0.5], [1., -1., 0.5], [-1., -1., 0.5],
         [0., 1., 1.], [1., 1., 1.], [-1., 1., 1.], [0., 1., 0.], [1., 1., 0.], [-1., 1., 0.],
         [1., 0.5, 0.5], [-1., 0.5, 0.5]], device=device)
    vertices = torch.tensor([[0., 0., 0.], [0., 0., 1.], [0., 1., 0.5], [0.5, 0., 0.], [0.5, 0., 1.],
                             [0.5, 1., 0.5]], device=device)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]], device=device)
    dist, face, code = K.point_to_mesh_distance(points[None], vertices[faces][None])
    expected = [2.0, 2.25, 3.0, 2.0, 2.25, 3.0, 1.0, 1.25, 2.0, 1.0, 1.25, 2.0, 0.2, 0.45, 1.2, 0.2, 0.45, 1.2,
                0.25, 1.0]
    torch.testing.assert_close(dist[0].cpu(), torch.tensor(expected))
    assert face[0].tolist() == [0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 1, 0]
    assert code[0].tolist() == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6, 0, 0]
    assert (dist.dtype, face.dtype, code.dtype) == (torch.float32, torch.int64, torch.int32)


def test_docstring_example_and_the_documented_tie(device):
    """Kaolin's docstring example: distances (0.25, 41), faces 0, codes (5, 5). The first point
    projects exactly onto edge 1-2 (code 5 here too); the second's closest point is vertex 2
    exactly on the boundary of its region, an edge (5) to Kaolin's inclusive test and a vertex (3)
    here, as the module documents."""
    point = torch.tensor([[[0.5, 0.5, 0.5], [3., 4., 5.]]], device=device)
    fv = torch.tensor([[[[0., 0., 0.], [0., 1., 0.], [0., 0., 1.]]]], device=device)
    dist, face, code = K.point_to_mesh_distance(point, fv)
    torch.testing.assert_close(dist.cpu(), torch.tensor([[0.25, 41.0]]))
    assert face.tolist() == [[0, 0]] and code.tolist() == [[5, 3]]


# ---------------------------------------------------------------------------------------------
# Random inputs against the transcriptions


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_point_clouds_match_reference(device, gen, dtype):
    for B, N, M in [(3, 37, 53), (2, 1, 80), (1, 64, 5)]:
        p1 = torch.randn(B, N, 3, generator=gen, dtype=torch.float64)
        p2 = torch.randn(B, M, 3, generator=gen, dtype=torch.float64)
        p2[:, -1] = p2[:, 0]  # a duplicate: ties go to the first index, as Kaolin's kernel
        a, b = p1.to(dtype).to(device), p2.to(dtype).to(device)
        rd, ri = ref_sided(a.cpu(), b.cpu())
        dist, idx = K.sided_distance(a, b)
        tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(dist.cpu().double(), rd, **tol)
        assert dist.dtype == dtype and idx.dtype == torch.int64
        if dtype == torch.float64:
            assert torch.equal(idx.cpu(), ri)
        for w1, w2, squared in [(1.0, 1.0, True), (0.3, 2.0, False), (1, 0.5, True)]:
            out = K.chamfer_distance(a, b, w1, w2, squared)
            torch.testing.assert_close(out.cpu().double(), ref_chamfer(a.cpu(), b.cpu(), w1, w2, squared), **tol)
        # float64 only: in float32 a distance within rounding of the radius may count otherwise
        for radius in [0.05, 0.3, 1.0] if dtype == torch.float64 else []:
            out = K.f_score(a, b, radius=radius)
            torch.testing.assert_close(out.cpu().double(), ref_f_score(a.cpu(), b.cpu(), radius), **tol)


def test_ties_go_to_the_smallest_index(device):
    p2 = torch.tensor([[[1., 0, 0], [-1., 0, 0], [0, 1., 0], [1., 0, 0]]], device=device)
    p1 = torch.zeros(1, 3, 3, device=device)
    dist, idx = K.sided_distance(p1, p2)
    assert idx.tolist() == [[0, 0, 0]] and dist.tolist() == [[1.0, 1.0, 1.0]]


def test_chamfer_is_chamfer_l2(device, gen):
    p1 = torch.rand(2, 40, 3, generator=gen, dtype=torch.float64).to(device)
    p2 = torch.rand(2, 30, 3, generator=gen, dtype=torch.float64).to(device)
    torch.testing.assert_close(K.chamfer_distance(p1, p2), pm.chamfer_l2(p1, p2, reduction=None))
    torch.testing.assert_close(K.chamfer_distance(p1, p2, 0.5, 0.5, squared=False),
                               pm.chamfer_l1(p1, p2, reduction=None))


def test_tensor_weights_broadcast(device, gen):
    p1 = torch.rand(3, 10, 3, generator=gen, dtype=torch.float64).to(device)
    p2 = torch.rand(3, 12, 3, generator=gen, dtype=torch.float64).to(device)
    w = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64, device=device)
    expected = ref_chamfer(p1.cpu(), p2.cpu(), w.cpu(), 1.0)
    torch.testing.assert_close(K.chamfer_distance(p1, p2, w, 1.0).cpu(), expected)


def test_f_score_recall_is_kaolins_not_the_standard_one(device):
    """Two ground-truth points, three predictions all near the first: Kaolin counts tp = 3
    predicted hits and fn = 1 missed gt point, so recall = 3 / 4 and F = 2 * 0.75 / 1.75; the
    standard recall (pm.fscore) is 1 / 2 and F = 2 / 3."""
    gt = torch.tensor([[[0., 0, 0], [5., 0, 0]]], device=device)
    pred = torch.tensor([[[0.001, 0, 0], [0, 0.001, 0], [0, 0, 0.001]]], device=device)
    f = K.f_score(gt, pred, radius=0.01, eps=0.0)
    assert f.item() == pytest.approx(2 * 0.75 / 1.75)
    standard = pm.fscore(pred, gt, 0.01)
    assert standard.recall.item() == pytest.approx(0.5) and standard.fscore.item() == pytest.approx(2 / 3)


def test_f_score_radius_is_inclusive(device):
    gt = torch.zeros(1, 1, 3, device=device)
    pred = torch.tensor([[[0.5, 0, 0]]], device=device)
    assert K.f_score(gt, pred, radius=0.5).item() == pytest.approx(1.0)  # d == radius is a hit
    assert K.f_score(gt, pred, radius=0.4999).item() == 0.0
    assert pm.fscore(pred, gt, 0.5).fscore.item() == 0.0  # the standard one is strict


def test_empty_clouds_follow_kaolins_arithmetic(device):
    p = torch.rand(2, 5, 3, device=device)
    empty = p[:, :0]
    dist, idx = K.sided_distance(p, empty)  # Kaolin's kernel leaves its zeros
    assert dist.tolist() == [[0.0] * 5] * 2 and idx.tolist() == [[0] * 5] * 2
    assert K.sided_distance(empty, p)[0].shape == (2, 0)
    assert torch.isnan(K.chamfer_distance(p, empty)).all()
    assert torch.isnan(K.chamfer_distance(empty, p)).all()
    assert torch.isnan(K.f_score(p, empty)).all()  # no prediction: 0 / 0
    torch.testing.assert_close(K.f_score(empty, p, eps=1e-8).cpu(), torch.full((2,), 2 / (2 + 1e-8)))
    torch.testing.assert_close(K.f_score(empty, p).cpu().double(), ref_f_score(empty.cpu(), p.cpu()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_point_to_mesh_matches_kernel_transcription(device, gen, dtype):
    B, N, F = 2, 60, 25
    points = torch.randn(B, N, 3, generator=gen, dtype=torch.float64)
    fv = torch.randn(B, F, 3, 3, generator=gen, dtype=torch.float64)
    # Points near the faces too, so that the face region (code 0) and small distances occur.
    pick = torch.randint(0, F, (B, N // 2), generator=gen)
    w = torch.rand(B, N // 2, 3, generator=gen, dtype=torch.float64)
    w = w / w.sum(-1, keepdim=True)
    near = (fv.gather(1, pick[..., None, None].expand(-1, -1, 3, 3)) * w[..., None]).sum(-2)
    points[:, : N // 2] = near + 0.01 * torch.randn(B, N // 2, 3, generator=gen, dtype=torch.float64)
    p, f = points.to(dtype), fv.to(dtype)
    dist, face, code = K.point_to_mesh_distance(p.to(device), f.to(device))
    assert (dist.dtype, face.dtype, code.dtype) == (dtype, torch.int64, torch.int32)
    for b in range(B):
        rd, rf, rc = ref_triangle_distance(p[b], f[b])
        tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(dist[b].cpu().double(), rd, **tol)
        assert torch.equal(face[b].cpu(), rf)
        assert torch.equal(code[b].cpu(), rc)
    assert set(code.unique().tolist()) >= {0, 4, 5, 6}  # the test reaches faces and edges


def test_point_to_mesh_degenerate_triangle(device):
    """A zero-area triangle (Kaolin: NaN from a zero normal) is measured as its segment."""
    fv = torch.tensor([[[[0., 0, 0], [1., 0, 0], [2., 0, 0]]]], device=device)
    points = torch.tensor([[[0.5, 1., 0], [3., 0, 0], [-1., 0, 1]]], device=device)
    dist, face, code = K.point_to_mesh_distance(points, fv)
    torch.testing.assert_close(dist.cpu(), torch.tensor([[1.0, 1.0, 2.0]]))
    assert face.tolist() == [[0, 0, 0]]


# ---------------------------------------------------------------------------------------------
# Gradients, dtypes, layouts, errors


def test_gradients(device, gen):
    p1 = torch.randn(2, 7, 3, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    p2 = torch.randn(2, 5, 3, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    # fast_mode: a few random directions instead of every coordinate (each search call costs ms)
    torch.autograd.gradcheck(lambda a, b: K.sided_distance(a, b)[0], (p1, p2), fast_mode=True)
    torch.autograd.gradcheck(lambda a, b: K.chamfer_distance(a, b, 0.7, 1.3), (p1, p2), fast_mode=True)
    torch.autograd.gradcheck(lambda a, b: K.chamfer_distance(a, b, squared=False), (p1, p2), fast_mode=True)
    fv = torch.randn(2, 4, 3, 3, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    torch.autograd.gradcheck(lambda a, b: K.point_to_mesh_distance(a, b)[0], (p1, fv), fast_mode=True)
    # both inputs get a nonzero gradient (Kaolin's backward writes both)
    K.chamfer_distance(p1, p2).sum().backward()
    assert p1.grad.abs().sum() > 0 and p2.grad.abs().sum() > 0


def test_unsquared_chamfer_gradient_is_finite_at_zero(device):
    p = torch.rand(1, 4, 3, device=device, requires_grad=True)
    K.chamfer_distance(p, p.detach().clone(), squared=False).sum().backward()
    assert torch.isfinite(p.grad).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision(device, gen, dtype):
    p1 = torch.rand(2, 50, 3, generator=gen, dtype=torch.float64)
    p2 = torch.rand(2, 40, 3, generator=gen, dtype=torch.float64)
    a, b = p1.to(dtype), p2.to(dtype)  # the reference sees the same rounded points
    tol = dict(rtol=TOL[dtype], atol=TOL[dtype])
    dist, _ = K.sided_distance(a.to(device), b.to(device))
    assert dist.dtype == dtype
    torch.testing.assert_close(dist.cpu().double(), ref_sided(a, b)[0], **tol)
    out = K.chamfer_distance(a.to(device), b.to(device), squared=False)
    assert out.dtype == dtype
    torch.testing.assert_close(out.cpu().double(), ref_chamfer(a, b, squared=False), **tol)
    assert K.f_score(a.to(device), b.to(device), radius=0.1).dtype == dtype
    fv = torch.rand(2, 6, 3, 3, generator=gen).to(dtype)
    d, _, _ = K.point_to_mesh_distance(a.to(device), fv.to(device))
    assert d.dtype == dtype
    ref = torch.stack([ref_triangle_distance(a[i], fv[i])[0] for i in range(2)])
    torch.testing.assert_close(d.cpu().double(), ref, **tol)


def test_mixed_dtypes_are_promoted(device, gen):
    p1 = torch.rand(1, 9, 3, generator=gen, dtype=torch.float64).to(device)
    p2 = torch.rand(1, 8, 3, generator=gen, dtype=torch.float64).to(device)
    out = K.chamfer_distance(p1, p2.float())
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, K.chamfer_distance(p1, p2.float().double()))


def test_non_contiguous_inputs(device, gen):
    p1 = torch.rand(2, 3, 20, generator=gen, dtype=torch.float64).to(device).transpose(1, 2)
    p2 = torch.rand(2, 15, 6, generator=gen, dtype=torch.float64).to(device)[:, :, ::2]
    assert not p1.is_contiguous() and not p2.is_contiguous()
    torch.testing.assert_close(K.sided_distance(p1, p2)[0], K.sided_distance(p1.contiguous(), p2.contiguous())[0])
    torch.testing.assert_close(K.f_score(p1, p2, 0.2), K.f_score(p1.contiguous(), p2.contiguous(), 0.2))
    fv = torch.rand(2, 3, 3, 5, generator=gen, dtype=torch.float64).to(device)[..., 1:4].transpose(2, 3)
    assert not fv.is_contiguous()
    got = K.point_to_mesh_distance(p1, fv)
    want = K.point_to_mesh_distance(p1.contiguous(), fv.contiguous())
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_bad_inputs_name_the_argument(device):
    p = torch.rand(2, 5, 3, device=device)
    with pytest.raises(ValueError, match="p1"):
        K.sided_distance(p[0], p)
    with pytest.raises(TypeError, match="p2"):
        K.chamfer_distance(p, p.tolist())
    with pytest.raises(ValueError, match="p2"):
        K.chamfer_distance(p, torch.full_like(p, float("nan")))
    with pytest.raises(ValueError, match="batch"):
        K.sided_distance(p, p[:1])
    with pytest.raises(ValueError, match="radius"):
        K.f_score(p, p, radius=-1.0)
    with pytest.raises(ValueError, match="eps"):
        K.f_score(p, p, eps=math.nan)
    with pytest.raises(TypeError, match="w1"):
        K.chamfer_distance(p, p, w1="1")
    fv = torch.rand(2, 4, 3, 3, device=device)
    with pytest.raises(ValueError, match="face_vertices"):
        K.point_to_mesh_distance(p, fv[..., :2])
    with pytest.raises(ValueError, match="face_vertices"):
        K.point_to_mesh_distance(p, fv[:, :0])
    with pytest.raises(ValueError, match="face_vertices"):
        K.point_to_mesh_distance(p, fv[:1])
    with pytest.raises(ValueError, match="pointclouds"):
        K.point_to_mesh_distance(p[..., :2], fv)
    with pytest.raises(ValueError, match="face_vertices"):
        K.point_to_mesh_distance(p, torch.where(fv > 0.5, float("inf"), fv))
    with pytest.raises(ValueError, match="pointclouds"):
        K.point_to_mesh_distance(torch.full_like(p, float("nan")), fv)
