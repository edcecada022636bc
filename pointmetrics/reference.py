"""Slow, obviously correct pure-torch versions of the public functions.

They form full distance matrices cloud by cloud, so they are only for tests and small inputs.
Use float64 inputs for exact comparisons.
"""

from __future__ import annotations

import torch


def _lengths(points: torch.Tensor, lengths: torch.Tensor | None) -> list[int]:
    if lengths is None:
        return [points.shape[1]] * points.shape[0]
    return [int(v) for v in lengths]


def pairwise(x: torch.Tensor, y: torch.Tensor, norm: int = 2) -> torch.Tensor:
    """(N, M) squared Euclidean (norm 2) or L1 (norm 1) distances between two (N, D), (M, D) clouds."""
    diff = x[:, None, :] - y[None, :, :]
    return diff.square().sum(-1) if norm == 2 else diff.abs().sum(-1)


def knn_points(x, y, K, x_lengths=None, y_lengths=None, norm=2):
    """(dists, idx) of the K nearest y points, sorted by (distance, index); padding 0 / -1."""
    B, N, _ = x.shape
    dists = torch.zeros(B, N, K, dtype=x.dtype)
    idx = torch.full((B, N, K), -1, dtype=torch.int64)
    for b, (n, m) in enumerate(zip(_lengths(x, x_lengths), _lengths(y, y_lengths))):
        if n == 0 or m == 0:
            continue
        d = pairwise(x[b, :n], y[b, :m], norm)
        order = torch.sort(d, dim=1, stable=True)  # stable: ties keep the smaller index first
        k = min(K, m)
        dists[b, :n, :k] = order.values[:, :k]
        idx[b, :n, :k] = order.indices[:, :k]
    return dists, idx


def nearest(x, y, x_lengths=None, y_lengths=None):
    """Per cloud: (squared distance to the nearest y point, its index) for every valid x point."""
    out = []
    for b, (n, m) in enumerate(zip(_lengths(x, x_lengths), _lengths(y, y_lengths))):
        if n == 0 or m == 0:
            out.append((x.new_zeros(n), torch.full((n,), -1, dtype=torch.int64)))
            continue
        d = pairwise(x[b, :n], y[b, :m])
        value, index = d.min(1)
        out.append((value, index))
    return out


def chamfer_distance(
    x,
    y,
    x_lengths=None,
    y_lengths=None,
    x_normals=None,
    y_normals=None,
    weights=None,
    batch_reduction="mean",
    point_reduction="mean",
    norm=2,
    single_directional=False,
    abs_cosine=True,
):
    """PyTorch3D's chamfer_distance, written out cloud by cloud."""
    B = x.shape[0]
    xl, yl = _lengths(x, x_lengths), _lengths(y, y_lengths)
    use_normals = x_normals is not None and y_normals is not None

    def one_way(a, b_, al, bl, an, bn):
        terms, nterms = [], []
        for b in range(B):
            n, m = al[b], bl[b]
            w = 1.0 if weights is None else weights[b]
            if n == 0:
                terms.append(a.new_zeros(0))
                nterms.append(a.new_zeros(0))
                continue
            if m == 0:  # PyTorch3D: distance 0, and the normal is compared with a zero vector (cos 0)
                terms.append(a.new_zeros(n))
                nterms.append(a.new_ones(n) * w)
                continue
            d = pairwise(a[b, :n], b_[b, :m], norm)
            value, index = d.min(1)
            terms.append(value * w)
            if use_normals:
                cos = torch.nn.functional.cosine_similarity(an[b, :n], bn[b, index], dim=1, eps=1e-6)
                nterms.append((1 - (cos.abs() if abs_cosine else cos)) * w)
        return terms, nterms

    def reduce_points(terms, lengths, width):
        if point_reduction is None:
            out = torch.stack([torch.cat([t, t.new_zeros(width - t.shape[0])]) for t in terms])
            return out
        if point_reduction == "max":
            return torch.stack([t.max() if t.numel() else t.new_zeros(()) for t in terms])
        s = torch.stack([t.sum() for t in terms])
        if point_reduction == "mean":
            s = s / torch.tensor([max(v, 1) for v in lengths], dtype=s.dtype)
        return s

    cx, nx = one_way(x, y, xl, yl, x_normals, y_normals)
    rx = reduce_points(cx, xl, x.shape[1])
    rnx = reduce_points(nx, xl, x.shape[1]) if use_normals else None
    if single_directional:
        loss, loss_n = rx, rnx
    else:
        cy, ny = one_way(y, x, yl, xl, y_normals, x_normals)
        ry = reduce_points(cy, yl, y.shape[1])
        rny = reduce_points(ny, yl, y.shape[1]) if use_normals else None
        if point_reduction is None:
            return (rx, ry), ((rnx, rny) if use_normals else None)
        if point_reduction == "max":
            loss, loss_n = torch.maximum(rx, ry), None
        else:
            loss, loss_n = rx + ry, (rnx + rny if use_normals else None)
    if point_reduction is None or batch_reduction is None:
        return loss, loss_n
    loss = loss.sum()
    loss_n = None if loss_n is None else loss_n.sum()
    if batch_reduction == "mean":
        div = float(B) if weights is None else (float(weights.sum()) if float(weights.sum()) != 0 else 1.0)
        loss = loss / div
        loss_n = None if loss_n is None else loss_n / div
    return loss, loss_n


def chamfer(x, y, squared, halve, x_lengths=None, y_lengths=None):
    """(B,) Chamfer distance s * (mean_i d(x_i, Y)^p + mean_j d(y_j, X)^p), NaN for empty clouds."""
    out = []
    for (dx, _), (dy, _) in zip(nearest(x, y, x_lengths, y_lengths), nearest(y, x, y_lengths, x_lengths)):
        if dx.numel() == 0 or dy.numel() == 0:
            out.append(torch.tensor(float("nan"), dtype=x.dtype))
            continue
        if not squared:
            dx, dy = dx.sqrt(), dy.sqrt()
        value = dx.mean() + dy.mean()
        out.append(0.5 * value if halve else value)
    return torch.stack(out)


def hausdorff(x, y, x_lengths=None, y_lengths=None):
    """(B,) symmetric Hausdorff distance max(max_i d(x_i, Y), max_j d(y_j, X)), NaN for empty clouds."""
    out = []
    for (dx, _), (dy, _) in zip(nearest(x, y, x_lengths, y_lengths), nearest(y, x, y_lengths, x_lengths)):
        if dx.numel() == 0 or dy.numel() == 0:
            out.append(torch.tensor(float("nan"), dtype=x.dtype))
        else:
            out.append(torch.maximum(dx.max(), dy.max()).sqrt())
    return torch.stack(out)


def fscore(x, y, thresholds, x_lengths=None, y_lengths=None):
    """(fscore, precision, recall), each (B, T): strict d < tau, F = 0 when P + R = 0."""
    tau = torch.as_tensor(thresholds, dtype=x.dtype).reshape(-1)
    fs, ps, rs = [], [], []
    for (dx, _), (dy, _) in zip(nearest(x, y, x_lengths, y_lengths), nearest(y, x, y_lengths, x_lengths)):
        if dx.numel() == 0 or dy.numel() == 0:
            nan = torch.full_like(tau, float("nan"))
            fs.append(nan)
            ps.append(nan)
            rs.append(nan)
            continue
        p = (dx.sqrt()[:, None] < tau).to(x.dtype).mean(0)
        r = (dy.sqrt()[:, None] < tau).to(x.dtype).mean(0)
        fs.append(torch.where(p + r > 0, 2 * p * r / (p + r).clamp(min=1e-30), torch.zeros_like(p)))
        ps.append(p)
        rs.append(r)
    return torch.stack(fs), torch.stack(ps), torch.stack(rs)


def _segment_parameter(p, u, v):
    """Parameter t in [0, 1] of the closest point u + t (v - u) of segment uv to p (0 if u == v)."""
    e = v - u
    len2 = (e * e).sum(-1)
    return (((p - u) * e).sum(-1) / torch.where(len2 > 0, len2, 1.0)).clamp(0, 1)


def _on_segment(p, u, v):
    return u + _segment_parameter(p, u, v)[..., None] * (v - u)


def _segment_sq_distance(p, u, v):
    return ((p - u - _segment_parameter(p, u, v)[..., None] * (v - u)) ** 2).sum(-1)


def _unit_normal(a, b, c):
    """Unit normal of every face, 0 for a collinear one, computed so that slivers keep it exact to
    a few ulps: from the longest edge e and the height h of the third corner over it, orthogonalised
    twice (cross(b - a, c - a) of a sliver is off by about eps * length / height)."""
    corners = torch.stack([a, b, c], dim=-2)
    edges = corners.roll(-1, dims=-2) - corners
    k = (edges * edges).sum(-1).argmax(-1)
    e = edges.gather(-2, k[..., None, None].expand(*k.shape, 1, 3))[..., 0, :]
    third = corners.gather(-2, ((k + 2) % 3)[..., None, None].expand(*k.shape, 1, 3))[..., 0, :]
    f = third - corners.gather(-2, k[..., None, None].expand(*k.shape, 1, 3))[..., 0, :]

    def unit(x):
        n = x.norm(dim=-1, keepdim=True)
        return x / torch.where(n > 0, n, 1.0)

    u = unit(e)
    h = f - u * (f * u).sum(-1, keepdim=True)
    h = h - u * (h * u).sum(-1, keepdim=True)
    return unit(torch.linalg.cross(u, unit(h), dim=-1))


def _inside_projection(p, a, b, c, n, n2):
    """Plane projection of points p (..., 1, 3) onto every face, whether it falls inside the face
    (never for degenerate faces), and the signed height in units of |n|^2."""
    height = ((p - a) * n).sum(-1) / torch.where(n2 > 0, n2, 1.0)
    proj = p - height[..., None] * n

    def side(u, v):
        return (torch.linalg.cross((v - u).expand_as(proj), proj - u, dim=-1) * n).sum(-1)

    inside = (n2 > 0) & (side(a, b) >= 0) & (side(b, c) >= 0) & (side(c, a) >= 0)
    return inside, proj, height


def closest_points_on_mesh(points, verts, faces, chunk: int = 256):
    """(squared distance, face) from each (N, 3) point to a mesh, by brute force over all faces.

    Independent of the kernel's algorithm: the closest point of a triangle is its plane projection
    when that falls inside the triangle, else the closest point of its three edges. Degenerate
    faces (zero normal) are their edges. Ties go to the smaller face index.
    """
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    n = _unit_normal(a, b, c)
    n2 = (n * n).sum(-1)

    best_d, best_f = [], []
    for i in range(0, points.shape[0], chunk):
        p = points[i : i + chunk, None, :]
        edges = torch.minimum(
            torch.minimum(_segment_sq_distance(p, a, b), _segment_sq_distance(p, b, c)), _segment_sq_distance(p, c, a)
        )
        inside, _, height = _inside_projection(p, a, b, c, n, n2)
        d = torch.where(inside, torch.minimum(edges, height**2 * n2), edges)
        value, index = d.min(1)  # first minimum: the smaller face index
        best_d.append(value)
        best_f.append(index)
    return torch.cat(best_d), torch.cat(best_f)


def winding_number(points, verts, faces, chunk: int = 64):
    """Exact generalised winding number: the sum of the faces' signed solid angles over 4 pi."""
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    out = []
    for i in range(0, points.shape[0], chunk):
        p = points[i : i + chunk, None, :]
        x, y, z = a - p, b - p, c - p
        lx, ly, lz = x.norm(dim=-1), y.norm(dim=-1), z.norm(dim=-1)
        numer = (x * torch.linalg.cross(y, z, dim=-1)).sum(-1)
        denom = lx * ly * lz + (x * y).sum(-1) * lz + (x * z).sum(-1) * ly + (y * z).sum(-1) * lx
        out.append(torch.atan2(numer, denom).sum(-1) / (2 * torch.pi))
    return torch.cat(out)


def closest_point_coordinates(points, verts, faces, chunk: int = 128):
    """(N, 3) closest point of a mesh to each (N, 3) point, by brute force over all faces, with the
    same rule as :func:`closest_points_on_mesh`: the plane projection when it falls inside a face,
    else the closest point of the face's edges; the first face among equal distances."""
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    n = _unit_normal(a, b, c)
    n2 = (n * n).sum(-1)

    out = []
    for i in range(0, points.shape[0], chunk):
        p = points[i : i + chunk, None, :]
        candidates = torch.stack([_on_segment(p, a, b), _on_segment(p, b, c), _on_segment(p, c, a)], dim=2)
        d_edges = ((p.unsqueeze(2) - candidates) ** 2).sum(-1)
        edge_point = candidates.gather(2, d_edges.argmin(2)[..., None, None].expand(-1, -1, 1, 3))[:, :, 0]
        inside, proj, _ = _inside_projection(p, a, b, c, n, n2)
        q = torch.where(inside[..., None], proj, edge_point)
        best = ((p - q) ** 2).sum(-1).argmin(1)
        out.append(q[torch.arange(q.shape[0]), best])
    return torch.cat(out)


def directional_distance_field(queries, verts=None, faces=None, cloud=None, K: int = 5):
    """(Q, 4) DirDist field [h, |h + 1e-10|] at (Q, 3) queries of a mesh (exact closest points) or
    of a point cloud (inverse-squared-distance weighted average of q - p over the K nearest)."""
    if cloud is None:
        h = queries - closest_point_coordinates(queries, verts, faces)
    else:
        d2 = torch.cdist(queries, cloud) ** 2
        dist, idx = d2.topk(K, dim=1, largest=False)
        w = 1.0 / (dist + 1e-8)
        w = w / w.sum(1, keepdim=True)
        h = (w[..., None] * (queries[:, None] - cloud[idx])).sum(1)
    return torch.cat([h, (h + 1e-10).norm(dim=-1, keepdim=True)], dim=-1)


def rasterize(clip: torch.Tensor, faces: torch.Tensor, height: int, width: int):
    """Brute-force z-buffer of one view, in float64: clip (V, 4) clip-space vertices, faces (F, 3).
    Every pixel tests every face (plain edge functions, no canonical order: pixel centres exactly
    on an edge may differ from the kernel). Returns face (H, W) int64 (-1: none), bary (H, W, 3)
    perspective-correct, depth (H, W) NDC z (+inf: none)."""
    clip = clip.double()
    w = clip[:, 3]
    sx = (clip[:, 0] / w + 1) * (width / 2) - 0.5
    sy = (1 - clip[:, 1] / w) * (height / 2) - 0.5
    z = clip[:, 2] / w
    rows, cols = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                                indexing="ij")
    px, py = cols.reshape(-1, 1), rows.reshape(-1, 1)  # (P, 1)
    f = faces.long()
    x, y = sx[f], sy[f]  # (F, 3)

    def edge(a, b):
        return (x[:, b] - x[:, a]) * (py - y[:, a]) - (y[:, b] - y[:, a]) * (px - x[:, a])  # (P, F)

    e = torch.stack([edge(1, 2), edge(2, 0), edge(0, 1)], dim=-1)  # (P, F, 3)
    area = (x[:, 2] - x[:, 1]) * (y[:, 0] - y[:, 1]) - (y[:, 2] - y[:, 1]) * (x[:, 0] - x[:, 1])  # edge (1, 2) at v0
    lam = e / torch.where(area == 0, 1.0, area)[None, :, None]
    depth = (lam * z[f][None]).sum(-1)
    ok = (w[f] > 0).all(1) & (area != 0)
    covered = (lam >= 0).all(-1) & ok[None] & (depth >= -1) & (depth <= 1)
    depth32 = torch.where(covered, depth.float().double(), torch.inf)
    best = depth32.min(1).values
    candidates = covered & (depth32 == best[:, None])
    index = torch.arange(f.shape[0]).expand_as(candidates)
    face = torch.where(candidates, index, f.shape[0]).min(1).values
    face = torch.where(face == f.shape[0], -1, face)
    pick = face.clamp(min=0)
    s = lam[torch.arange(len(pick)), pick] / w[f][pick]
    bary = torch.where((face >= 0)[:, None], s / s.sum(-1, keepdim=True), 0.0)
    d = torch.where(face >= 0, depth[torch.arange(len(pick)), pick], torch.inf)
    return face.view(height, width), bary.view(height, width, 3), d.view(height, width)
