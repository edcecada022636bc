"""pointmetrics.compat.pytorch3d against transcriptions of PyTorch3D (facebookresearch/pytorch3d at
9381c4016376345bb795b97c45a6c2de66db354a): its kernels' formulas and its own tests' naive
references and corner cases (tests/test_knn.py, test_chamfer.py, test_point_mesh_distance.py,
test_sample_points_from_meshes.py). PyTorch3D itself is not installable here: the ``Meshes`` and
``Pointclouds`` below are minimal stand-ins with the accessors the module reads."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import ragged

import pointmetrics as pm
from pointmetrics.compat import pytorch3d as p3

FLT_MAX = torch.finfo(torch.float32).max

# ----------------------------------------------------------------------------------------------
# Stand-ins for pytorch3d.structures
# ----------------------------------------------------------------------------------------------


def pad(tensors, width=None):
    width = max((t.shape[0] for t in tensors), default=0) if width is None else width
    return torch.stack([torch.cat([t, t.new_zeros(width - t.shape[0], *t.shape[1:])]) for t in tensors])


class Pointclouds:
    """points_list / points_padded / num_points_per_cloud / normals_padded, as PyTorch3D's."""

    def __init__(self, points, normals=None):
        self._points = list(points)
        self._normals = None if normals is None else list(normals)

    def __len__(self):
        return len(self._points)

    def points_list(self):
        return self._points

    def points_padded(self):
        if not self._points:
            return torch.zeros(0, 0, 3)
        return pad(self._points)

    def normals_padded(self):
        return None if self._normals is None else pad(self._normals)

    def num_points_per_cloud(self):
        device = self._points[0].device if self._points else "cpu"
        return torch.tensor([len(p) for p in self._points], dtype=torch.int64, device=device)


class Meshes:
    """verts_list / faces_list (and packed forms, textures), as PyTorch3D's."""

    def __init__(self, verts, faces, textures=None):
        self._verts, self._faces, self.textures = list(verts), list(faces), textures

    def __len__(self):
        return len(self._verts)

    def verts_list(self):
        return self._verts

    def faces_list(self):
        return self._faces

    def num_verts_per_mesh(self):
        return torch.tensor([len(v) for v in self._verts])

    def num_faces_per_mesh(self):
        return torch.tensor([len(f) for f in self._faces])

    def verts_packed(self):
        return torch.cat(self._verts)

    def faces_packed(self):
        offsets = torch.cumsum(self.num_verts_per_mesh(), 0) - self.num_verts_per_mesh()
        return torch.cat([f + int(o) for f, o in zip(self._faces, offsets)])

    def sample_textures(self, fragments):
        # TexturesVertex.sample_textures: interpolate per-vertex colours with the barycentrics
        colours = torch.cat(self.textures)[self.faces_packed()]  # (F, 3 corners, C)
        face = fragments.pix_to_face.clamp(min=0)
        return (fragments.bary_coords[..., None] * colours[face]).sum(-2)


class PackedMeshes:
    """Only the packed accessors."""

    def __init__(self, meshes):
        self.m = meshes

    def __getattr__(self, name):
        if name in ("verts_packed", "faces_packed", "num_verts_per_mesh", "num_faces_per_mesh"):
            return getattr(self.m, name)
        raise AttributeError(name)


# ----------------------------------------------------------------------------------------------
# Transcriptions of PyTorch3D
# ----------------------------------------------------------------------------------------------


def knn_points_naive(p1, p2, lengths1, lengths2, K, norm=2):
    """tests/test_knn.py TestKNN._knn_points_naive, with the sort made stable (ties: smaller index)."""
    N, P1, D = p1.shape
    dists = torch.zeros((N, P1, K), dtype=p1.dtype, device=p1.device)
    idx = torch.zeros((N, P1, K), dtype=torch.int64, device=p1.device)
    for n in range(N):
        num1, num2 = int(lengths1[n]), int(lengths2[n])
        diff = p1[n, :num1].view(num1, 1, D) - p2[n, :num2].view(1, num2, D)
        diff = (diff * diff).sum(2) if norm == 2 else diff.abs().sum(2)
        num2 = min(num2, K)
        for i in range(num1):
            srt_dd, srt_idx = diff[i].sort(stable=True)
            dists[n, i, :num2] = srt_dd[:num2]
            idx[n, i, :num2] = srt_idx[:num2]
    return dists, idx


def knn_gather_p3d(x, idx, lengths=None):
    """pytorch3d/ops/knn.py knn_gather, verbatim."""
    N, M, U = x.shape
    _N, L, K = idx.shape
    if lengths is None:
        lengths = torch.full((x.shape[0],), M, dtype=torch.int64, device=x.device)
    idx_expanded = idx[:, :, :, None].expand(-1, -1, -1, U)
    x_out = x[:, :, None].expand(-1, -1, K, -1).gather(1, idx_expanded)
    if lengths.min() < K:
        mask = lengths[:, None] <= torch.arange(K, device=x.device)[None]
        mask = mask[:, None].expand(-1, L, -1)
        mask = mask[:, :, :, None].expand(-1, -1, -1, U)
        x_out[mask] = 0.0
    return x_out


def chamfer_naive(x, y, xl, yl, xn, yn, norm, abs_cosine):
    """tests/test_chamfer.py chamfer_distance_naive_pointclouds: per-point terms [(N, P1), (N, P2)]."""
    N, P1, _ = x.shape
    P2 = y.shape[1]
    dist = torch.full((N, P1, P2), math.inf, dtype=x.dtype)
    for n in range(N):
        for i1 in range(int(xl[n])):
            for i2 in range(int(yl[n])):
                d = x[n, i1] - y[n, i2]
                dist[n, i1, i2] = (d * d).sum() if norm == 2 else d.abs().sum()
    x_mask = torch.arange(P1)[None] >= xl[:, None]
    y_mask = torch.arange(P2)[None] >= yl[:, None]
    x_dist = dist.min(2)[0] if P2 else torch.zeros(N, P1, dtype=x.dtype)
    y_dist = dist.min(1)[0] if P1 else torch.zeros(N, P2, dtype=x.dtype)
    x_dist = torch.where(x_mask | torch.isinf(x_dist), 0.0, x_dist)  # an empty y: knn pads with 0
    y_dist = torch.where(y_mask | torch.isinf(y_dist), 0.0, y_dist)
    lnorm = None
    if xn is not None:
        # an empty other cloud: knn_gather gives a zero normal, cosine 0
        x_near = torch.where((yl > 0)[:, None, None], yn.gather(1, dist.argmin(2)[..., None].expand(N, P1, 3)), 0.0) \
            if P2 else torch.zeros_like(xn)
        y_near = torch.where((xl > 0)[:, None, None], xn.gather(1, dist.argmin(1)[..., None].expand(N, P2, 3)), 0.0) \
            if P1 else torch.zeros_like(yn)
        c1 = F.cosine_similarity(xn, x_near, dim=2, eps=1e-6)
        c2 = F.cosine_similarity(yn, y_near, dim=2, eps=1e-6)
        l1, l2 = (1 - c1.abs(), 1 - c2.abs()) if abs_cosine else (1 - c1, 1 - c2)
        lnorm = [torch.where(x_mask, 0.0, l1), torch.where(y_mask, 0.0, l2)]
    return [x_dist, y_dist], lnorm


def reduce_like_p3d(terms, lengths, weights, point_reduction, batch_reduction):
    """The reductions of pytorch3d/loss/chamfer.py applied by hand to per-point terms."""
    N = terms[0].shape[0]
    w = torch.ones(N, dtype=terms[0].dtype) if weights is None else weights.to(terms[0].dtype)
    out = 0
    for t, n in zip(terms, lengths):
        t = t * w[:, None]
        if point_reduction == "max":
            r = t.max(1).values if t.shape[1] else torch.zeros(N, dtype=t.dtype)
            out = r if isinstance(out, int) else torch.maximum(out, r)
            continue
        r = t.sum(1)
        if point_reduction == "mean":
            r = r / n.clamp(min=1)
        out = out + r
    if batch_reduction is None:
        return out
    out = out.sum()
    if batch_reduction == "mean":
        out = out / (max(N, 1) if weights is None else weights.sum())
    return out


def dot(a, b):
    return (a * b).sum(-1)


def point_line_p3d(p, v0, v1):
    """csrc/utils/geometry_utils.h:392 PointLine3DistanceForward (branches as torch.where)."""
    v1v0 = v1 - v0
    l2 = dot(v1v0, v1v0)
    t = dot(v1v0, p - v0) / torch.where(l2 <= 1e-8, 1.0, l2)
    p_proj = v0 + t.clamp(0, 1)[..., None] * v1v0
    return torch.where(l2 <= 1e-8, dot(p - v1, p - v1), dot(p - p_proj, p - p_proj))


def point_triangle_p3d(p, v0, v1, v2, min_triangle_area, eps=1e-8):
    """csrc/utils/geometry_utils.h:670 PointTriangle3DistanceForward with IsInsideTriangle (:650),
    BarycentricCoords3Forward (:607) and AreaOfTriangle (:577), kEpsilon = vEpsilon = ``eps``
    (1e-8 in PyTorch3D; 0 removes its only departure from the exact distance, on triangles of
    positive area)."""
    normal = torch.linalg.cross(v2 - v0, v1 - v0, dim=-1)
    norm_normal = normal.norm(dim=-1)
    normal = normal / (norm_normal[..., None] + eps)
    t = dot(v0 - p, normal)
    p0 = p + t[..., None] * normal
    area = torch.linalg.cross(v1 - v0, v2 - v0, dim=-1).norm(dim=-1) / 2.0
    e0, e1, e2 = v1 - v0, v2 - v0, p0 - v0
    d00, d01, d11, d20, d21 = dot(e0, e0), dot(e0, e1), dot(e1, e1), dot(e2, e0), dot(e2, e1)
    denom = d00 * d11 - d01 * d01 + eps
    w1 = (d11 * d20 - d01 * d21) / denom
    w2 = (d00 * d21 - d01 * d20) / denom
    w0 = 1.0 - w1 - w2
    inside = (area >= min_triangle_area)
    for w in (w0, w1, w2):
        inside = inside & (w >= 0) & (w <= 1)
    edges = torch.minimum(torch.minimum(point_line_p3d(p, v0, v1), point_line_p3d(p, v0, v2)),
                          point_line_p3d(p, v1, v2))
    return torch.where(inside & (norm_normal > eps), t * t, edges)


def edges_packed_p3d(faces, V):
    """pytorch3d/structures/meshes.py:1064-1113 _compute_edges_packed, for one mesh."""
    v0, v1, v2 = faces.chunk(3, dim=1)
    edges = torch.cat([torch.cat([v1, v2], 1), torch.cat([v2, v0], 1), torch.cat([v0, v1], 1)], 0)
    edges, _ = edges.sort(dim=1)
    u = torch.unique(V * edges[:, 0] + edges[:, 1])
    return torch.stack([u // V, u % V], dim=1)


def point_mesh_loss_naive(meshes, pcls, min_area, edges=False, eps=1e-8):
    """tests/test_point_mesh_distance.py test_point_mesh_{face,edge}_distance's naive loss."""
    losses = []
    for verts, faces, points in zip(meshes.verts_list(), meshes.faces_list(), pcls.points_list()):
        if edges:
            e = verts[edges_packed_p3d(faces, len(verts))]
            d = point_line_p3d(points[:, None], e[None, :, 0], e[None, :, 1])
        else:
            t = verts[faces]
            d = point_triangle_p3d(points[:, None], t[None, :, 0], t[None, :, 1], t[None, :, 2], min_area, eps)
        losses.append(d.min(1)[0].mean() + d.min(0)[0].mean())
    return torch.stack(losses).mean()


def labelled(key):
    return lambda message: f"{key}: {message}"


def random_meshes(gen, N, V, F, P, scale=1.0, dtype=torch.float64, device="cpu"):
    """init_meshes_clouds of tests/test_point_mesh_distance.py: faces of distinct vertices."""
    verts, faces, points = [], [], []
    for _ in range(N):
        nv = int(torch.randint(6, V, (1,), generator=gen))
        nf = int(torch.randint(2, F, (1,), generator=gen))
        f = torch.cat([torch.randperm(nv, generator=gen)[: nv - nv % 3].view(-1, 3) for _ in range(nf)])[:nf]
        v = scale * torch.rand(nv, 3, generator=gen, dtype=dtype)
        # one triangle far below PyTorch3D's 5e-3 threshold (area ~ 1e-4 scale^2), one far above (~0.1)
        v[f[0, 1:]] = v[f[0, 0]] + scale * torch.tensor([[0.02, 0.0, 0.0], [0.0, 0.02, 0.0]], dtype=dtype)
        v[f[1, 1:]] = v[f[1, 0]] + scale * torch.tensor([[0.5, 0.1, 0.0], [0.0, 0.5, 0.2]], dtype=dtype)
        verts.append(v.to(device).requires_grad_())
        faces.append(f.to(device))
        n = int(torch.randint(1, P, (1,), generator=gen))
        points.append((scale * torch.rand(n, 3, generator=gen, dtype=dtype)).to(device).requires_grad_())
    return Meshes(verts, faces), Pointclouds(points)


def leaves(meshes, pcls):
    return list(meshes.verts_list()) + list(pcls.points_list())


def grads(loss, tensors):
    return torch.autograd.grad(loss, tensors)


# ----------------------------------------------------------------------------------------------
# knn_points / knn_gather
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", [1, 2])
@pytest.mark.parametrize("K", [1, 3, 10])
@pytest.mark.parametrize("D", [3, 5])
def test_knn_matches_pytorch3d_naive(gen, device, norm, K, D):
    x, xl = ragged(gen, 4, 24, D)
    y, yl = ragged(gen, 4, 16, D, low=1)
    x, y, xl, yl = (t.to(device) for t in (x, y, xl, yl))
    got = p3.knn_points(x, y, xl, yl, norm, K)  # PyTorch3D's positional order
    want_d, want_i = knn_points_naive(x, y, xl, yl, K, norm)
    assert got.idx.dtype == torch.int64 and got.dists.dtype == torch.float64 and got.knn is None
    assert torch.equal(got.idx, want_i)  # padding: 0, as PyTorch3D's kernels leave it
    torch.testing.assert_close(got.dists, want_d, rtol=1e-12, atol=1e-14)
    rows_past = torch.arange(24, device=device)[None, :] >= xl[:, None]
    assert (got.idx[rows_past] == 0).all() and (got.dists[rows_past] == 0).all()


def test_knn_ties_go_to_the_smaller_index(gen, device):
    y = torch.randint(0, 3, (2, 40, 3), generator=gen).double().to(device)  # many exact ties
    x = torch.randint(0, 3, (2, 30, 3), generator=gen).double().to(device)
    got = p3.knn_points(x, y, K=6)
    full = torch.full((2,), 40, device=device)
    want_d, want_i = knn_points_naive(x, y, torch.full((2,), 30), full, 6)
    assert torch.equal(got.idx, want_i) and torch.equal(got.dists, want_d)


def test_knn_gradients_match_the_reference_and_gradcheck(gen, device):
    x, xl = ragged(gen, 3, 12, 3)
    y, yl = ragged(gen, 3, 9, 3, low=1)
    x, y, xl, yl = (t.to(device) for t in (x, y, xl, yl))
    for norm in (1, 2):
        a, b = x.clone().requires_grad_(), y.clone().requires_grad_()
        w = torch.rand(3, 12, 4, generator=gen, dtype=torch.float64).to(device)
        got = grads((p3.knn_points(a, b, xl, yl, norm, 4).dists * w).sum(), (a, b))
        want = grads((knn_points_naive(a, b, xl, yl, 4, norm)[0] * w).sum(), (a, b))
        for g, h in zip(got, want):
            torch.testing.assert_close(g, h)
    a, b = x[:1, :4].clone().requires_grad_(), y[:1, :5].clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: p3.knn_points(a, b, K=2).dists, (a, b))
    assert torch.autograd.gradgradcheck(lambda a, b: p3.knn_points(a, b, K=2).dists, (a, b))


def test_knn_return_nn_is_pytorch3d_knn_gather(gen, device):
    # rows past lengths1 have idx 0, so PyTorch3D's knn holds p2[n, 0] there for k < lengths2
    x, xl = ragged(gen, 3, 10, 3, low=0)
    y, yl = ragged(gen, 3, 7, 3, low=1)
    yl[1] = 2  # fewer than K
    x, y, xl, yl = (t.to(device) for t in (x, y, xl, yl))
    r = p3.knn_points(x, y, xl, yl, K=4, return_nn=True)
    assert r.knn.shape == (3, 10, 4, 3)
    torch.testing.assert_close(r.knn, knn_gather_p3d(y, r.idx, yl), rtol=0, atol=0)


def test_knn_gather_masks_by_slot(gen, device):
    x = torch.rand(3, 9, 5, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    idx = torch.randint(0, 9, (3, 6, 4), generator=gen).to(device)
    lengths = torch.tensor([9, 2, 0], device=device)
    got = p3.knn_gather(x, idx, lengths)
    torch.testing.assert_close(got, knn_gather_p3d(x, idx, lengths), rtol=0, atol=0)
    torch.testing.assert_close(p3.knn_gather(x, idx), knn_gather_p3d(x, idx), rtol=0, atol=0)
    g = torch.rand(got.shape, generator=gen, dtype=torch.float64).to(device)
    torch.testing.assert_close(grads((got * g).sum(), x)[0], grads((knn_gather_p3d(x, idx, lengths) * g).sum(), x)[0])
    # beyond PyTorch3D: pointmetrics' padding -1 gives zeros, and so does an empty x
    minus = torch.full((3, 6, 4), -1, device=device)
    assert (p3.knn_gather(x, minus) == 0).all()
    assert (p3.knn_gather(x[:, :0], minus) == 0).all()


def test_knn_half_precision_and_non_contiguous(gen, device):
    x = torch.rand(2, 3, 50, generator=gen).to(device).transpose(1, 2)  # non-contiguous (2, 50, 3)
    y = torch.rand(2, 40, 3, generator=gen).to(device)
    for dtype in (torch.float16, torch.bfloat16):
        xh, yh = x.to(dtype), y.to(dtype)
        got = p3.knn_points(xh, yh, K=3)
        want_d, want_i = knn_points_naive(xh.double(), yh.double(), torch.full((2,), 50), torch.full((2,), 40), 3)
        assert got.dists.dtype == torch.float32
        torch.testing.assert_close(got.dists, want_d.float(), rtol=1e-5, atol=1e-6)
    got = p3.knn_points(x, y, K=3)
    contiguous = p3.knn_points(x.contiguous(), y, K=3)
    assert torch.equal(got.idx, contiguous.idx) and torch.equal(got.dists, contiguous.dists)


def test_knn_errors(gen):
    x, y = torch.rand(2, 5, 3), torch.rand(2, 4, 3)
    for norm in (0, 3):
        with pytest.raises(ValueError, match="Support for 1 or 2 norm."):
            p3.knn_points(x, y, K=2, norm=norm)
    with pytest.raises(ValueError, match="p1 must have shape"):
        p3.knn_points(x[0], y)
    with pytest.raises(ValueError, match="batch"):
        p3.knn_points(x, y[:1])
    with pytest.raises(ValueError, match="lengths1"):
        p3.knn_points(x, y, torch.tensor([6, 1]))
    with pytest.raises(TypeError, match="lengths2"):
        p3.knn_points(x, y, None, torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="K"):
        p3.knn_points(x, y, K=0)
    with pytest.raises(ValueError, match="NaN"):
        p3.knn_points(torch.full((1, 2, 3), math.nan), y[:1])
    with pytest.raises(ValueError, match="idx"):
        p3.knn_gather(y, torch.full((2, 1, 1), 4))
    with pytest.raises(ValueError, match="same batch"):
        p3.knn_gather(y, torch.zeros(1, 1, 1, dtype=torch.int64))


# ----------------------------------------------------------------------------------------------
# chamfer_distance
# ----------------------------------------------------------------------------------------------


def clouds_with_normals(gen, N, P1, P2, device, low=0):
    """TestChamfer.init_pointclouds: lists (leaves), and padded copies (other leaves)."""
    l1 = torch.randint(low, P1, (N,), generator=gen)
    l2 = torch.randint(low, P2, (N,), generator=gen)
    l1[0], l2[0] = P1, P2
    pts1 = [torch.rand(int(n), 3, generator=gen, dtype=torch.float64).to(device) for n in l1]
    pts2 = [torch.rand(int(n), 3, generator=gen, dtype=torch.float64).to(device) for n in l2]
    n1 = [F.normalize(torch.randn(int(n), 3, generator=gen, dtype=torch.float64), dim=1).to(device) for n in l1]
    n2 = [F.normalize(torch.randn(int(n), 3, generator=gen, dtype=torch.float64), dim=1).to(device) for n in l2]
    return pts1, pts2, n1, n2, l1.to(device), l2.to(device)


@pytest.mark.parametrize("point_reduction", ["mean", "sum", "max", None])
@pytest.mark.parametrize("batch_reduction", ["mean", "sum", None])
def test_chamfer_matches_pytorch3d_naive(gen, device, point_reduction, batch_reduction):
    if point_reduction is None and batch_reduction is not None:
        return
    pts1, pts2, n1, n2, l1, l2 = clouds_with_normals(gen, 4, 10, 18, device)
    weights = torch.rand(4, generator=gen, dtype=torch.float64).to(device)
    x, y = pad(pts1), pad(pts2)
    normals = point_reduction != "max"
    for norm in (1, 2):
        for abs_cosine in (True, False):
            for single in (False, True):
                got, got_n = p3.chamfer_distance(
                    Pointclouds(pts1, n1 if normals else None), Pointclouds(pts2, n2 if normals else None),
                    weights=weights, batch_reduction=batch_reduction, point_reduction=point_reduction,
                    norm=norm, single_directional=single, abs_cosine=abs_cosine)
                terms, nterms = chamfer_naive(x.cpu(), y.cpu(), l1.cpu(), l2.cpu(), pad(n1).cpu(), pad(n2).cpu(),
                                              norm, abs_cosine)
                use = slice(0, 1) if single else slice(0, 2)
                if point_reduction is None:
                    want = terms[0] * weights.cpu()[:, None]
                    if single:
                        torch.testing.assert_close(got.cpu(), want)
                    else:
                        torch.testing.assert_close(got[1].cpu(), terms[1] * weights.cpu()[:, None])
                        torch.testing.assert_close(got[0].cpu(), want)
                        torch.testing.assert_close(got_n[1].cpu(), nterms[1] * weights.cpu()[:, None])
                    continue
                want = reduce_like_p3d(terms[use], [l1.cpu(), l2.cpu()][use], weights.cpu(), point_reduction,
                                       batch_reduction)
                torch.testing.assert_close(got.cpu(), want)
                if normals:
                    want_n = reduce_like_p3d(nterms[use], [l1.cpu(), l2.cpu()][use], weights.cpu(), point_reduction,
                                             batch_reduction)
                    torch.testing.assert_close(got_n.cpu(), want_n)
                else:
                    assert got_n is None


def test_chamfer_pointclouds_and_tensors_agree_with_gradients(gen, device):
    """test_chamfer_pointcloud_object_withnormals and _check_grad_by_type: the list leaves get the
    padded tensors' gradients, and the padding gets none."""
    pts1, pts2, n1, n2, l1, l2 = clouds_with_normals(gen, 5, 9, 14, device, low=1)
    leaves_list = [t.clone().requires_grad_() for t in pts1 + pts2 + n1 + n2]
    p1l, p2l, n1l, n2l = (leaves_list[i * 5:(i + 1) * 5] for i in range(4))
    padded = [pad(t).detach().requires_grad_() for t in (pts1, pts2, n1, n2)]
    cloud = p3.chamfer_distance(Pointclouds(p1l, n1l), Pointclouds(p2l, n2l), norm=1)
    tensor = p3.chamfer_distance(padded[0], padded[1], l1, l2, padded[2], padded[3], norm=1)
    torch.testing.assert_close(cloud, tensor)
    (cloud[0] + 2 * cloud[1]).backward()
    (tensor[0] + 2 * tensor[1]).backward()
    for lst, big, lengths in zip((p1l, p2l, n1l, n2l), padded, (l1, l2, l1, l2)):
        for i, leaf in enumerate(lst):
            torch.testing.assert_close(leaf.grad, big.grad[i, : int(lengths[i])])
            assert (big.grad[i, int(lengths[i]):] == 0).all()


def test_chamfer_gradcheck(gen):
    x = torch.rand(1, 4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.rand(1, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    xn = torch.randn(1, 4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    yn = torch.randn(1, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    def loss(a, b, c, d):
        return p3.chamfer_distance(a, b, x_normals=c, y_normals=d)

    assert torch.autograd.gradcheck(loss, (x, y, xn, yn))


def test_chamfer_zero_weights_reproduce_pytorch3d(device):
    """test_chamfer.py test_incorrect_weights: (N, N) zeros, and loss_normals 0 without normals."""
    N = 6
    p1 = torch.rand(N, 8, 3, device=device, requires_grad=True)
    p2 = torch.rand(N, 11, 3, device=device, requires_grad=True)
    weights = torch.zeros(N, device=device)
    loss, loss_norm = p3.chamfer_distance(p1, p2, weights=weights, batch_reduction="mean")
    assert loss.shape == () and loss == 0 and loss.requires_grad
    assert loss_norm.shape == () and loss_norm == 0 and loss_norm.requires_grad
    loss, loss_norm = p3.chamfer_distance(p1, p2, weights=weights, batch_reduction=None)
    assert loss.shape == (N, N) and (loss == 0).all() and loss.requires_grad
    assert loss_norm.shape == (N, N) and (loss_norm == 0).all()
    (cx, cy), (nx, ny) = p3.chamfer_distance(p1, p2, weights=weights, batch_reduction=None, point_reduction=None)
    assert cx.shape == cy.shape == nx.shape == (N, N)
    with pytest.raises(ValueError, match="negative"):
        p3.chamfer_distance(p1, p2, weights=-torch.ones(N, device=device))
    with pytest.raises(ValueError, match="weights must be of shape"):
        p3.chamfer_distance(p1, p2, weights=torch.zeros(N - 1, device=device))


def test_chamfer_empty_clouds():
    """test_chamfer.py test_empty_clouds."""
    points1 = Pointclouds([torch.zeros(0, 3), torch.zeros(10, 3)])
    points2 = Pointclouds(list(torch.ones(2, 40, 3)))
    loss, _ = p3.chamfer_distance(points1, points2, batch_reduction=None)
    torch.testing.assert_close(loss, torch.tensor([0.0, 6.0]))
    loss2, _ = p3.chamfer_distance(Pointclouds([]), Pointclouds([]))
    torch.testing.assert_close(loss2, torch.tensor(0.0))


def test_chamfer_half_and_non_contiguous(gen, device):
    x = torch.rand(2, 3, 30, generator=gen).to(device).transpose(1, 2)
    y = torch.rand(2, 20, 3, generator=gen).to(device)
    want = p3.chamfer_distance(x.half().double(), y.half().double())[0]
    got = p3.chamfer_distance(x.half(), y.half())[0]
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(p3.chamfer_distance(x, y)[0], p3.chamfer_distance(x.contiguous(), y)[0])


def test_chamfer_errors():
    """test_chamfer.py test_incorrect_inputs, test_invalid_norm, the reduction checks."""
    p1, p2 = torch.rand(3, 10, 3), torch.rand(3, 18, 3)
    with pytest.raises(ValueError, match="Expected normals to be of shape"):
        p3.chamfer_distance(p1, p2, x_normals=p1[None])
    with pytest.raises(ValueError, match="Expected points to be of shape"):
        p3.chamfer_distance(p1[None], p2)
    with pytest.raises(ValueError, match="Expected lengths to be of shape"):
        p3.chamfer_distance(p1, p2, x_lengths=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="Pointclouds objects or torch.Tensor"):
        p3.chamfer_distance(x=[1, 1, 1], y=[1, 1, 1])
    for norm in (0, 3):
        with pytest.raises(ValueError, match="Support for 1 or 2 norm."):
            p3.chamfer_distance(p1, p2, norm=norm)
    with pytest.raises(ValueError, match="batch_reduction must be one of"):
        p3.chamfer_distance(p1, p2, batch_reduction="max")
    with pytest.raises(ValueError, match="point_reduction must be one of"):
        p3.chamfer_distance(p1, p2, point_reduction="min")
    with pytest.raises(ValueError, match="Normals must be None"):
        p3.chamfer_distance(p1, p2, x_normals=p1, point_reduction="max")
    with pytest.raises(ValueError, match="x_lengths"):
        p3.chamfer_distance(p1, p2, x_lengths=torch.tensor([1, 2, 11]))


# ----------------------------------------------------------------------------------------------
# Point to mesh
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("min_area", [5e-3, 0.0])
def test_point_mesh_face_distance_matches_pytorch3d_naive(gen, device, min_area):
    # coordinates in [0, 0.4]: random triangles fall on both sides of the 5e-3 threshold
    meshes, pcls = random_meshes(gen, 4, 32, 16, 24, scale=0.4, device=device)
    areas = torch.cat([torch.linalg.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0], dim=-1).norm(dim=-1) / 2
                       for t in (v[f] for v, f in zip(meshes.verts_list(), meshes.faces_list()))])
    assert (areas < 5e-3).any() and (areas > 5e-3).any()
    got = p3.point_mesh_face_distance(meshes, pcls, min_area)
    got_grads = grads(got, leaves(meshes, pcls))
    # PyTorch3D divides the normal by |n| + 1e-8: plane distances shrink by 2e-8 / |n| relative
    want = point_mesh_loss_naive(meshes, pcls, min_area)
    torch.testing.assert_close(got, want, rtol=2e-6, atol=1e-12)
    # its 1e-8 terms move the gradients of points near small triangles and short segments more
    # (relatively 1e-8 / |n| or 1e-8 / |e|^2): a loose check here, the exact one below
    for g, h in zip(got_grads, grads(want, leaves(meshes, pcls))):
        torch.testing.assert_close(g, h, rtol=1e-3, atol=1e-6)
    # ... and that epsilon is the only difference
    want = point_mesh_loss_naive(meshes, pcls, min_area, eps=0.0)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)
    for g, h in zip(got_grads, grads(want, leaves(meshes, pcls))):
        torch.testing.assert_close(g, h, rtol=1e-9, atol=1e-13)


def test_point_mesh_edge_distance_matches_pytorch3d_naive(gen, device):
    meshes, pcls = random_meshes(gen, 4, 32, 16, 24, device=device)
    got = p3.point_mesh_edge_distance(meshes, pcls)
    want = point_mesh_loss_naive(meshes, pcls, None, edges=True)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-14)
    for g, h in zip(grads(got, leaves(meshes, pcls)), grads(want, leaves(meshes, pcls))):
        torch.testing.assert_close(g, h, rtol=1e-8, atol=1e-12)
    # the packed accessors give the same number
    torch.testing.assert_close(p3.point_mesh_edge_distance(PackedMeshes(meshes), pcls), got)


def test_nearest_edge_need_not_bound_the_nearest_face(device):
    # The point lies above a big triangle (distance 0.1 to it), whose edges are all far; the
    # nearest edge belongs to a thin far triangle. PyTorch3D's edge distance is to that edge.
    v = torch.tensor([[-5, -5, 0], [5, -5, 0], [0, 5, 0], [0.5, 0, 0.5], [0.5, 0, 0.6], [0.5, 3, 0.55]],
                     dtype=torch.float64, device=device)
    f = torch.tensor([[0, 1, 2], [3, 4, 5]], device=device)
    p = torch.tensor([[0.0, 0.0, 0.1]], dtype=torch.float64, device=device)
    loss_pe = p3.point_edge_distance(p, torch.tensor([0], device=device), v[edges_packed_p3d(f.cpu(), 6).to(device)],
                                     torch.tensor([0], device=device), 1)
    assert math.isclose(float(loss_pe), 0.5**2 + 0.4**2, rel_tol=1e-12)
    assert math.isclose(float(p3.point_face_distance(p, torch.tensor([0], device=device), v[f],
                                                     torch.tensor([0], device=device), 1)), 0.01, rel_tol=1e-12)


@pytest.mark.parametrize("kind", ["random", "big_triangles", "clusters", "duplicates"])
def test_functional_distances_match_the_kernels(gen, device, kind, monkeypatch):
    """point_face / face_point / point_edge / edge_point on packed inputs, against the per-element
    minima of the transcribed kernels (test_point_mesh_distance.py's naive loops), including an
    element with no points and one with no triangles (FLT_MAX, the kernels' start value)."""
    if kind == "duplicates":  # force many rounds and blocks of the bounded face -> point search
        monkeypatch.setattr(p3.point_mesh, "PAIR_BUDGET", 7)
        monkeypatch.setattr(p3.point_mesh, "FIRST_K", 1)
    sizes_p, sizes_t = [30, 0, 17, 25], [12, 9, 0, 20]
    points, tris = [], []
    for n, t in zip(sizes_p, sizes_t):
        if kind == "clusters":
            pts = torch.randint(0, 3, (n, 1), generator=gen).double() + 0.01 * torch.rand(n, 3, generator=gen)
        elif kind == "duplicates":
            pts = torch.rand(max(n // 3, 1), 3, generator=gen, dtype=torch.float64).repeat(4, 1)[:n]
        else:
            pts = torch.rand(n, 3, generator=gen, dtype=torch.float64)
        scale = 10.0 if kind == "big_triangles" else 1.0  # triangles much larger than the spacing
        tri = scale * (torch.rand(t, 3, 3, generator=gen, dtype=torch.float64) - 0.5) + 0.5
        if t > 3:
            tri[0] = tri[0, [0, 1, 1]]  # a segment
            tri[1] = tri[1, 0]  # a point
            tri[2] = tri[2].mean(0) + 0.01 * (tri[2] - tri[2].mean(0))  # small: edges only
        points.append(pts)
        tris.append(tri)
    P, T = torch.cat(points).to(device), torch.cat(tris).to(device)
    pfirst = (torch.cumsum(torch.tensor(sizes_p), 0) - torch.tensor(sizes_p)).to(device)
    tfirst = (torch.cumsum(torch.tensor(sizes_t), 0) - torch.tensor(sizes_t)).to(device)
    segs = torch.cat([t[:, :2] for t in tris]).to(device)
    pf = p3.point_face_distance(P, pfirst, T, tfirst, max(sizes_p))
    fp = p3.face_point_distance(P, pfirst, T, tfirst, max(sizes_t))
    pe = p3.point_edge_distance(P, pfirst, segs, tfirst, max(sizes_p))
    ep = p3.edge_point_distance(P, pfirst, segs, tfirst, max(sizes_t))
    want = {k: [] for k in ("pf", "fp", "pe", "ep")}
    for pts, tri in zip(points, tris):
        d = point_triangle_p3d(pts[:, None], tri[None, :, 0], tri[None, :, 1], tri[None, :, 2], 5e-3)
        e = point_line_p3d(pts[:, None], tri[None, :, 0], tri[None, :, 1])
        for key, m, dim in (("pf", d, 1), ("fp", d, 0), ("pe", e, 1), ("ep", e, 0)):
            if m.shape[dim] == 0:
                want[key].append(torch.full((m.shape[1 - dim],), FLT_MAX, dtype=torch.float64))
            else:
                want[key].append(m.min(dim)[0])
    for key, got in (("pf", pf), ("fp", fp), ("pe", pe), ("ep", ep)):
        torch.testing.assert_close(got.cpu(), torch.cat(want[key]), rtol=2e-6, atol=1e-12, msg=labelled(key))


def test_exact_mode_is_the_exact_distance(gen, device):
    v = torch.rand(40, 3, generator=gen, dtype=torch.float64).to(device) * 0.2  # mostly small triangles
    f = torch.randint(0, 40, (30, 3), generator=gen).to(device)
    # over the faces' interiors, where an edges-only distance is clearly larger
    pts = v[f[:25]].mean(1) + 0.001 * torch.randn(25, 3, generator=gen, dtype=torch.float64).to(device)
    pts = torch.cat([pts, torch.rand(25, 3, generator=gen, dtype=torch.float64).to(device) * 0.2])
    first = torch.tensor([0], device=device)
    exact = pm.closest_points_on_mesh(pts, v, f).sq_distance
    strided = pts.t().contiguous().t()  # non-contiguous
    for area in (0, None):
        torch.testing.assert_close(p3.point_face_distance(strided, first, v[f], first, 50, area), exact,
                                   rtol=1e-12, atol=1e-15)
    edges_only = p3.point_face_distance(pts, first, v[f], first, 50)  # the default 5e-3: edges
    assert (edges_only >= exact - 1e-15).all() and (edges_only > exact + 1e-8).any()
    # the face -> point direction: the exact distance of each face to its nearest point
    fp = p3.face_point_distance(pts, first, v[f], first, 30, 0)
    brute = torch.stack([pm.closest_points_on_mesh(pts, v, f[i:i + 1]).sq_distance.min() for i in range(30)])
    torch.testing.assert_close(fp, brute, rtol=1e-12, atol=1e-15)


def test_small_faces_case(device):
    """test_point_mesh_distance.py test_small_faces_case: the order of a face's corners does not
    change its distance."""
    v = torch.tensor([[-0.0021, -0.3769, 0.7146], [-0.0161, -0.3771, 0.7146], [-0.0021, -0.3771, 0.7147]],
                     device=device)
    pcd = Pointclouds([torch.tensor([[-0.3623, -0.5340, 0.7727]], device=device)])
    loss1 = p3.point_mesh_face_distance(Meshes([v], [torch.tensor([[0, 2, 1]], device=device)]), pcd)
    loss2 = p3.point_mesh_face_distance(Meshes([v], [torch.tensor([[2, 0, 1]], device=device)]), pcd)
    torch.testing.assert_close(loss1, loss2)
    want = point_mesh_loss_naive(Meshes([v.double()], [torch.tensor([[0, 2, 1]])]),
                                 Pointclouds([pcd.points_list()[0].double()]), 5e-3)
    torch.testing.assert_close(loss1.double(), want, rtol=1e-6, atol=0)


def test_empty_elements_give_flt_max(gen, device):
    v = torch.rand(5, 3, generator=gen, dtype=torch.float64).to(device)
    f = torch.tensor([[0, 1, 2], [1, 2, 3]], device=device)
    empty_f = torch.zeros(0, 3, dtype=torch.int64, device=device)
    pts = torch.rand(4, 3, generator=gen, dtype=torch.float64).to(device)
    no_pts = torch.zeros(0, 3, dtype=torch.float64, device=device)
    # a mesh without faces: its points are at FLT_MAX; a cloud without points adds 0 to point_face
    # and puts its mesh's faces at FLT_MAX, each weighted by 1 / F before the sum
    loss = p3.point_mesh_face_distance(Meshes([v, v], [f, empty_f]), Pointclouds([pts, pts]))
    first = point_mesh_loss_naive(Meshes([v], [f]), Pointclouds([pts]), 5e-3)
    torch.testing.assert_close(loss, (2 * first + FLT_MAX) / 2, rtol=1e-12, atol=0)
    loss = p3.point_mesh_face_distance(Meshes([v, v], [f, f]), Pointclouds([pts, no_pts]))
    torch.testing.assert_close(loss, (2 * first + FLT_MAX) / 2, rtol=1e-12, atol=0)


def test_point_mesh_gradcheck(gen):
    v = (0.4 * torch.rand(6, 3, generator=gen, dtype=torch.float64)).requires_grad_()
    v.data[3:] = v.data[3] + 0.03 * torch.rand(3, 3, generator=gen, dtype=torch.float64)  # a small face: edges
    f = torch.tensor([[0, 1, 2], [3, 4, 5]])
    pts = (0.4 * torch.rand(4, 3, generator=gen, dtype=torch.float64)).requires_grad_()
    for fn in (lambda v, p: p3.point_mesh_face_distance(Meshes([v], [f]), Pointclouds([p])),
               lambda v, p: p3.point_mesh_face_distance(Meshes([v], [f]), Pointclouds([p]), 0),
               lambda v, p: p3.point_mesh_edge_distance(Meshes([v], [f]), Pointclouds([p]))):
        assert torch.autograd.gradcheck(fn, (v, pts))


def test_point_mesh_half_precision(gen, device):
    meshes, pcls = random_meshes(gen, 2, 20, 10, 16, dtype=torch.float32, device=device)
    half_m = Meshes([v.detach().half() for v in meshes.verts_list()], meshes.faces_list())
    half_p = Pointclouds([p.detach().half() for p in pcls.points_list()])
    ref_m = Meshes([v.double() for v in half_m.verts_list()], meshes.faces_list())
    ref_p = Pointclouds([p.double() for p in half_p.points_list()])
    for fn in (p3.point_mesh_face_distance, p3.point_mesh_edge_distance):
        got = fn(half_m, half_p)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got.double(), fn(ref_m, ref_p), rtol=1e-5, atol=1e-8)


def test_point_mesh_errors(gen):
    v, f = torch.rand(4, 3), torch.tensor([[0, 1, 2]])
    with pytest.raises(ValueError, match="equal sized batches"):
        p3.point_mesh_face_distance(Meshes([v, v], [f, f]), Pointclouds([v]))
    with pytest.raises(ValueError, match="min_triangle_area"):
        p3.point_mesh_face_distance(Meshes([v], [f]), Pointclouds([v]), -1.0)
    with pytest.raises(TypeError, match="Meshes-like"):
        p3.point_mesh_face_distance((v, f), Pointclouds([v]))
    with pytest.raises(TypeError, match="Pointclouds-like"):
        p3.point_mesh_edge_distance(Meshes([v], [f]), v)
    with pytest.raises(ValueError, match="index vertices"):
        p3.point_mesh_face_distance(Meshes([v], [f + 2]), Pointclouds([v]))
    with pytest.raises(ValueError, match="NaN"):
        p3.point_mesh_face_distance(Meshes([torch.full((4, 3), math.nan)], [f]), Pointclouds([v]))
    with pytest.raises(ValueError, match="points contains NaN"):
        p3.face_point_distance(torch.full((4, 3), math.nan), torch.tensor([0]), v[f], torch.tensor([0]), 1)
    with pytest.raises(ValueError, match="tris_first_idx"):
        p3.point_face_distance(v, torch.tensor([0]), v[f], torch.tensor([1]), 4)


def test_human_protocol_uses_the_moved_function():
    from pointmetrics.protocols import human

    assert human.pytorch3d_distance_mesh is p3.pytorch3d_distance_mesh


# ----------------------------------------------------------------------------------------------
# sample_points_from_meshes
# ----------------------------------------------------------------------------------------------

PYRAMID_V = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
PYRAMID_F = torch.tensor([[0, 1, 2], [0, 2, 3], [0, 1, 3], [1, 2, 3]])


def test_sampling_output(device):
    """test_sample_points_from_meshes.py test_sampling_output (a cube stands in for the ico sphere:
    its samples lie on the cube's surface)."""
    cube_v = torch.tensor([[x, y, z] for x in (-1.0, 1.0) for y in (-1.0, 1.0) for z in (-1.0, 1.0)])
    cube_f = torch.tensor([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                           [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    empty_v, empty_f = torch.tensor([]), torch.tensor([], dtype=torch.int64)
    meshes = Meshes([t.to(device) for t in (empty_v, cube_v, PYRAMID_V)],
                    [t.to(device) for t in (empty_f, cube_f, PYRAMID_F)])
    samples, normals = p3.sample_points_from_meshes(meshes, num_samples=200, return_normals=True)
    samples, normals = samples.cpu(), normals.cpu()
    assert samples.shape == normals.shape == (3, 200, 3) and samples.dtype == torch.float32
    assert (samples[0] == 0).all() and (normals[0] == 0).all()
    torch.testing.assert_close(samples[1].abs().amax(1), torch.ones(200))  # on the cube's surface
    pv, pn = samples[2], normals[2]
    assert (pv < 1).all() and (pv >= 0).all()
    s3 = 1 / math.sqrt(3)
    for axis, normal in ((2, [0, 0, 1]), (0, [1, 0, 0]), (1, [0, -1, 0])):
        on = pv[:, axis] == 0
        assert on.any() and (pv[on].sum(1) <= 1).all()
        torch.testing.assert_close(pn[on], torch.tensor(normal, dtype=torch.float32).expand(int(on.sum()), 3))
    slanted = pv.gt(0).all(1)
    torch.testing.assert_close(pv[slanted].sum(1), torch.ones(int(slanted.sum())))
    torch.testing.assert_close(pn[slanted], torch.full((int(slanted.sum()), 3), s3))


def test_sampling_is_uniform_by_area(device):
    # faces of areas 1 and 3 (halves of 1x2 and 3x2 rectangles' ... right triangles): 1/4 of the
    # samples on the first; inside a triangle, each quarter (midpoint subdivision) gets 1/4
    v = torch.tensor([[0, 0, 0], [2, 0, 0], [0, 1, 0], [0, 0, 5], [3, 0, 5], [0, 2, 5]], dtype=torch.float64)
    f = torch.tensor([[0, 1, 2], [3, 4, 5]])
    torch.manual_seed(0)
    n = 40000
    s = p3.sample_points_from_meshes(Meshes([v.to(device)], [f.to(device)]), n)[0].double().cpu()
    first = s[:, 2] == 0
    sigma = math.sqrt(0.25 * 0.75 / n)
    assert abs(float(first.double().mean()) - 0.25) < 5 * sigma
    u, w = s[first, 0] / 2, s[first, 1]  # barycentric-like coordinates in the first triangle
    quarter = torch.where(u > 0.5, 0, torch.where(w > 0.5, 1, torch.where(u + w < 0.5, 2, 3)))
    counts = torch.bincount(quarter, minlength=4).double() / len(u)
    sigma = math.sqrt(0.25 * 0.75 / len(u))
    assert ((counts - 0.25).abs() < 5 * sigma).all(), counts


def test_sampling_gradients_and_packed_meshes(device):
    v = PYRAMID_V.double().to(device).requires_grad_()
    torch.manual_seed(1)
    samples = p3.sample_points_from_meshes(Meshes([v], [PYRAMID_F.to(device)]), 500)
    (grad,) = torch.autograd.grad(samples.sum(), v)
    # each sample is a convex combination of its face's corners: the weights sum to 1 per sample
    torch.testing.assert_close(grad.sum(0), torch.full((3,), 500.0, dtype=torch.float64, device=device))
    torch.manual_seed(1)
    packed = p3.sample_points_from_meshes(PackedMeshes(Meshes([v], [PYRAMID_F.to(device)])), 500)
    torch.testing.assert_close(packed, samples)


def test_sampling_textures(gen, device):
    """test_sample_points_from_meshes.py test_texture_sampling: vertex colours interpolated at
    the samples."""
    B = 3
    verts = torch.rand(B, 6, 3, generator=gen)
    verts[:, :3, 2], verts[:, 3:, 2] = 1.0, -1.0
    texts = torch.rand(B, 6, 3, generator=gen)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    empty = (torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.int64), torch.zeros(0, 3))
    vl = [verts[i].to(device) for i in range(B)] + [empty[0].to(device)]
    fl = [faces.to(device)] * B + [empty[1].to(device)]
    tl = [texts[i].to(device) for i in range(B)] + [empty[2].to(device)]
    samples, normals, textures = p3.sample_points_from_meshes(Meshes(vl, fl, tl), 24, True, True)
    assert textures.shape == (B + 1, 24, 3) and (textures[B] == 0).all()
    for n in range(B):
        for i in range(24):
            p = samples[n, i].cpu().double()
            k = 0 if p[2] > 0 else 3
            a, b, c = (verts[n, k + j, :2].double() for j in range(3))
            m = torch.stack([b - a, c - a], 1)
            w1, w2 = torch.linalg.solve(m, p[:2] - a)
            want = (1 - w1 - w2) * texts[n, k] + w1 * texts[n, k + 1] + w2 * texts[n, k + 2]
            torch.testing.assert_close(textures[n, i].cpu(), want.float(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="Meshes do not contain textures."):
        p3.sample_points_from_meshes(Meshes(vl, fl), 10, return_textures=True)
    out = p3.sample_points_from_meshes(Meshes(vl, fl, tl), 10, return_textures=True)
    assert isinstance(out, tuple) and len(out) == 2


def test_sampling_errors(device):
    e_v, e_f = torch.tensor([], device=device), torch.tensor([], dtype=torch.int64, device=device)
    with pytest.raises(ValueError, match="Meshes are empty."):
        p3.sample_points_from_meshes(Meshes([e_v] * 3, [e_f] * 3), num_samples=100, return_normals=True)
    for invalid in ("nan", "inf"):
        v = PYRAMID_V.clone()
        v[3] = float(invalid)  # even an unreferenced vertex, as PyTorch3D checks verts_packed
        with pytest.raises(ValueError, match="Meshes contain nan or inf."):
            p3.sample_points_from_meshes(Meshes([v.to(device)], [PYRAMID_F[:1].to(device)]), 10)
    with pytest.raises(ValueError, match="num_samples"):
        p3.sample_points_from_meshes(Meshes([PYRAMID_V], [PYRAMID_F]), 0)
