"""PyTorch3D's point-to-mesh distances (``pytorch3d/loss/point_mesh_distance.py``, kernels
``pytorch3d/csrc/point_mesh/point_mesh_cpu.cpp`` / ``point_mesh_cuda.cu`` and the distances of
``pytorch3d/csrc/utils/geometry_utils.h``), with their packed functional forms; see the package
docstring."""

from __future__ import annotations

import warnings

import torch

from ... import _checks
from ..._reduce import valid_mask
from ...bvh import MeshBVH, plane_frame
from ...knn import knn_core
from ...mesh import face_areas_normals
from .structures import mesh_cloud_pair

# PyTorch3D's ``_DEFAULT_MIN_TRIANGLE_AREA`` (pytorch3d/loss/point_mesh_distance.py).
DEFAULT_MIN_TRIANGLE_AREA = 5e-3
# The point_mesh kernels start each search at FLT_MAX and keep it when the other side is empty.
FLT_MAX = float(torch.finfo(torch.float32).max)
# The face -> point search evaluates candidate (point, face) pairs in blocks of at most this many
# pairs (about 400 bytes of float64 temporaries each: some 100 MB at a time).
PAIR_BUDGET = 2**18
# Candidates per face in the first round of the face -> point search; x4 per further round.
FIRST_K = 8


def pytorch3d_distance_mesh(verts: torch.Tensor, faces: torch.Tensor, min_triangle_area: float):
    """A mesh whose exact point distance equals PyTorch3D's point-to-face distance with an absolute
    ``min_triangle_area``: PyTorch3D measures a triangle of smaller area (|cross| / 2, float32) by
    its three edges only, never its interior. Such a triangle is replaced here by its three edges as
    degenerate triangles (a, b, b), which the exact closest-triangle search measures as segments."""
    areas, _ = face_areas_normals(verts.float(), faces)
    small = areas < min_triangle_area
    big = faces[~small]
    f = faces[small]
    edges = torch.cat([f[:, [0, 1, 1]], f[:, [1, 2, 2]], f[:, [2, 0, 0]]])
    return verts, torch.cat([big, edges])


def _check_min_area(min_triangle_area) -> float:
    """PyTorch3D's threshold as a float >= 0; None means 0 (exact distances)."""
    if min_triangle_area is None:
        return 0.0
    if isinstance(min_triangle_area, bool) or not isinstance(min_triangle_area, (int, float)) or not (
        min_triangle_area >= 0 and min_triangle_area < float("inf")
    ):
        raise ValueError(f"min_triangle_area must be a finite number >= 0 (0: exact), got {min_triangle_area!r}")
    return float(min_triangle_area)


def _small_triangles(corners: torch.Tensor, min_area: float) -> torch.Tensor:
    """(B, T) True for the triangles PyTorch3D measures by their edges: area < min_area, with the
    area taken from float32 corners as PyTorch3D's float32 kernels see them (float64 arithmetic,
    exactly 0 for degenerate triangles, the same for every rotation of the corners)."""
    B, T = corners.shape[:2]
    if min_area == 0 or B * T == 0:
        return torch.zeros(B, T, dtype=torch.bool, device=corners.device)
    with torch.no_grad():
        flat = corners.detach().reshape(B * T * 3, 3).float()
        areas, _ = face_areas_normals(flat, torch.arange(B * T * 3, device=corners.device).view(B * T, 3))
    return areas.view(B, T) < min_area


def _sq_segment(p: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact squared distance from p to the segment [a, b] (a point if a == b); broadcasts."""
    e = b - a
    len2 = (e * e).sum(-1, keepdim=True)
    t = ((p - a) * e).sum(-1, keepdim=True) / torch.where(len2 > 0, len2, torch.ones_like(len2))
    d = (p - a) - t.clamp(0, 1) * e
    return (d * d).sum(-1)


def _sq_triangle(p: torch.Tensor, tri: torch.Tensor, edges_only: torch.Tensor) -> torch.Tensor:
    """Squared distance from points p (..., K, 3) to their triangle tri (..., 3, 3), PyTorch3D's
    rule: the distance to the plane if the projection of p falls inside a triangle of positive area
    that is not ``edges_only`` (...), else the least distance to its three edges. Exact (up to
    rounding) when nothing is edges_only. Differentiable with respect to p and tri."""
    a, b, c = (tri[..., k, :] for k in range(3))
    o, u, v = (t.unsqueeze(-2) for t in plane_frame(a, b, c))  # well conditioned for slivers too
    a, b, c = a.unsqueeze(-2), b.unsqueeze(-2), c.unsqueeze(-2)
    n = torch.linalg.cross(b - a, c - a, dim=-1)
    # The projection of p is inside iff it lies left of every edge, seen along n.
    inside = (n * n).sum(-1) > 0
    for start, end in ((a, b), (b, c), (c, a)):
        inside = inside & ((torch.linalg.cross(end - start, p - start, dim=-1) * n).sum(-1) >= 0)
    inside = inside & ~edges_only.unsqueeze(-1)
    op = p - o
    off_plane = op - u * (op * u).sum(-1, keepdim=True) - v * (op * v).sum(-1, keepdim=True)
    edges = torch.minimum(torch.minimum(_sq_segment(p, a, b), _sq_segment(p, b, c)), _sq_segment(p, c, a))
    return torch.where(inside, (off_plane * off_plane).sum(-1), edges)


def _compact(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The True columns of each row of (B, T) ``mask`` first, in order: (B, T) column indices
    and (B,) their counts."""
    order = torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices
    return order, mask.sum(1)


def _search_faces(corners: torch.Tensor, obj_len: torch.Tensor, small: torch.Tensor):
    """(verts, faces, face_lengths) of a padded mesh batch whose exact distance is PyTorch3D's
    distance to ``corners`` (B, T, 3, 3): triangle t is faces (3t, 3t+1, 3t+2) of verts =
    corners.reshape(B, 3T, 3), or, if ``small``, its three edges as degenerate triangles."""
    B, T = corners.shape[:2]
    base = 3 * torch.arange(T, device=corners.device)
    whole = torch.stack([base, base + 1, base + 2], -1)
    ab, bc, ca = (torch.stack([base + i, base + j, base + j], -1) for i, j in ((0, 1), (1, 2), (2, 0)))
    first = torch.where(small[..., None], ab, whole)  # (B, T, 3)
    cand = torch.stack([first, bc.expand(B, T, 3), ca.expand(B, T, 3)], dim=2).reshape(B, 3 * T, 3)
    keep = torch.stack([torch.ones_like(small), small, small], -1) & valid_mask(obj_len, T)[..., None]
    order, count = _compact(keep.reshape(B, 3 * T))
    faces = cand.gather(1, order[..., None].expand(B, 3 * T, 3))
    return corners.reshape(B, 3 * T, 3), faces, count


def _out_dtype(*tensors: torch.Tensor) -> torch.dtype:
    dtype = torch.float32
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def _points_to_objects(points, plen, corners, obj_len, small, name: str) -> torch.Tensor:
    """(B, P) squared distance from each point to the nearest triangle (segment: (a, b, b)) of its
    batch element, by the exact closest-triangle search (MeshBVH) on the edges-only substitute of
    the ``small`` triangles. FLT_MAX where the element has no triangle, 0 past ``plen``."""
    B, P = points.shape[:2]
    verts, faces, face_lengths = _search_faces(corners, obj_len, small)
    bvh = MeshBVH(verts, faces, face_lengths)
    queries = bvh.queries(points, plen, name)
    with warnings.catch_warnings():  # an element without triangles: FLT_MAX below, not NaN
        warnings.filterwarnings("ignore", message="closest_points: a mesh has no faces")
        sq = bvh.closest_core(queries._replace(unbatched=False)).sq_distance
    dtype = _out_dtype(points, corners)
    sq = sq.to(dtype)
    valid = valid_mask(plen, P)
    zero = torch.zeros((), dtype=dtype, device=sq.device)
    flt_max = torch.full((), FLT_MAX, dtype=dtype, device=sq.device)
    return torch.where(valid, torch.where((obj_len == 0)[:, None], flt_max, sq), zero)


def _nearest_point_search(c64, obj_len, small, p64, plen) -> torch.Tensor:
    """(B, T) index of the point nearest to each triangle (PyTorch3D's distance), -1 if none.

    Exact, with no T x P matrix: the triangle lies in the ball of centre m (its centroid) and
    radius r (farthest corner), so |p - m| - r <= d(p, T) <= |p - m| + r. The K nearest points to
    m are candidates; if the K-th lies at |p_K - m| with |p_K - m| - r >= the best candidate's
    distance, no other point can be nearer and the triangle is resolved; else K grows x4 (up to
    every point of the element). Candidates are evaluated in blocks of PAIR_BUDGET pairs.
    """
    B, T = c64.shape[:2]
    Pmax = p64.shape[1]
    best = torch.full((B, T), -1, dtype=torch.int64, device=c64.device)
    todo = valid_mask(obj_len, T) & (plen > 0)[:, None]
    if T == 0 or Pmax == 0:
        return best
    centre = c64.mean(2)
    radius = (c64 - centre[:, :, None]).norm(dim=-1).amax(-1)
    K = min(FIRST_K, Pmax)
    while True:
        order, count = _compact(todo)
        n = int(count.max())
        if n == 0:
            return best
        width = max(1, PAIR_BUDGET // max(B * K, 1))
        for s in range(0, n, width):
            sel = order[:, s:min(s + width, n)]
            m = sel.shape[1]
            sel_len = (count - s).clamp(0, m)
            q = centre.gather(1, sel[..., None].expand(B, m, 3))
            d2, idx = knn_core(q, p64, sel_len, plen, K, 2)  # (B, m, K), -1 past plen
            cand = p64.gather(1, idx.clamp(min=0).reshape(B, m * K, 1).expand(B, m * K, 3)).view(B, m, K, 3)
            tri = c64.gather(1, sel[..., None, None].expand(B, m, 3, 3))
            d = _sq_triangle(cand, tri, small.gather(1, sel))
            d = torch.where(idx >= 0, d, torch.full((), float("inf"), dtype=d.dtype, device=d.device))
            dmin, kmin = d.min(-1)
            found = idx.gather(-1, kmin[..., None])[..., 0]
            exhausted = (plen <= K)[:, None]
            bound = d2[..., K - 1].sqrt() - radius.gather(1, sel)
            done = exhausted | (bound >= dmin.sqrt())
            mine = valid_mask(sel_len, m)
            best.scatter_(1, sel, torch.where(mine, found, best.gather(1, sel)))
            todo.scatter_(1, sel, torch.where(mine, ~done, todo.gather(1, sel)))
        if K == Pmax and bool(todo.any()):  # cannot happen: K = Pmax exhausts every element
            raise RuntimeError("face -> point search did not converge")
        K = min(4 * K, Pmax)


def _objects_to_points(corners, obj_len, small, points, plen) -> torch.Tensor:
    """(B, T) squared distance from each triangle (segment: (a, b, b)) to the nearest point of its
    batch element, PyTorch3D's rule for the ``small`` ones; FLT_MAX where the element has no point,
    0 past ``obj_len``. Differentiable with respect to the corners and the points."""
    B, T = corners.shape[:2]
    with torch.no_grad():
        best = _nearest_point_search(corners.detach().double(), obj_len, small, points.detach().double(), plen)
    found = best >= 0
    dtype = _out_dtype(points, corners)
    if points.shape[1] == 0 or T == 0:
        near = points.new_zeros((B, T, 3), dtype=torch.float64)
    else:
        near = points.double().gather(1, best.clamp(min=0)[..., None].expand(B, T, 3))
    zero = torch.zeros((), dtype=torch.float64, device=corners.device)
    tri = torch.where(found[..., None, None], corners.double(), zero)  # padding may hold anything
    near = torch.where(found[..., None], near, zero)
    d = _sq_triangle(near.unsqueeze(-2), tri, small)[..., 0].to(dtype)
    no_point = valid_mask(obj_len, T) & (plen == 0)[:, None]
    flt_max = torch.full((), FLT_MAX, dtype=dtype, device=d.device)
    return torch.where(found, d, torch.where(no_point, flt_max, torch.zeros((), dtype=dtype, device=d.device)))


def _batch_mean(values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """sum_b (sum_{i < lengths[b]} values[b, i] / lengths[b]) / B: PyTorch3D's weighting of each
    point (edge, face) by 1 / (its element's count), summed and divided by the batch size."""
    dtype = values.dtype
    zero = torch.zeros((), dtype=dtype, device=values.device)
    weight = 1.0 / lengths.clamp(min=1).to(dtype)  # before the sum, as PyTorch3D: FLT_MAX terms stay finite
    return torch.where(valid_mask(lengths, values.shape[1]), values * weight[:, None], zero).sum() / values.shape[0]


def point_mesh_face_distance(meshes, pcls, min_triangle_area: float = DEFAULT_MIN_TRIANGLE_AREA) -> torch.Tensor:
    """``pytorch3d.loss.point_mesh_face_distance``: point_face + face_point, a scalar.

    point_face = mean_b mean_{p in cloud b} min_{t in mesh b} d(p, t) and face_point =
    mean_b mean_{t in mesh b} min_{p in cloud b} d(p, t), with d the SQUARED distance from a point
    to a triangle under PyTorch3D's rule: a triangle of area < ``min_triangle_area`` (absolute,
    default 5e-3) is measured by its three edges only (its interior ignored); any other by the exact
    point-to-triangle distance. ``min_triangle_area=0`` (or None) gives exact distances.

    ``meshes``: Meshes-like (``verts_list()``/``faces_list()`` or the packed accessors); ``pcls``:
    Pointclouds-like (``points_padded()``/``num_points_per_cloud()`` or ``points_list()``), one
    cloud per mesh. An empty cloud adds 0 to point_face and gives its mesh's faces FLT_MAX (the
    kernels' sentinel), and a mesh without faces gives its points FLT_MAX, as in PyTorch3D.
    Gradients reach the vertices and the points.

    Differences, all at rounding level or below the size of the triangle concerned: PyTorch3D
    divides the normal by |n| + 1e-8 (n = cross product), which shrinks its plane distances by a
    relative 2e-8 / |n| (2e-6 at the default threshold), and adds 1e-8 to its barycentric
    denominator; here the distance is exact. The area is computed in float64 from the
    float32-rounded corners (PyTorch3D: in float32), so a triangle within rounding of the threshold
    may fall on the other side. PyTorch3D measures triangles with |n| <= 1e-8 by their edges and a
    segment shorter than 1e-4 by its second end; here both exactly. The gradient of a FLT_MAX
    entry is 0 (PyTorch3D's backward differentiates the distance to packed face 0, which may
    belong to another mesh). The native equivalent (exact, unsquared, the mesh side by surface
    samples) is ``pointmetrics.point_mesh_distance``.
    """
    min_area = _check_min_area(min_triangle_area)
    corners, counts, points, plen = mesh_cloud_pair(meshes, pcls, edges=False)
    small = _small_triangles(corners, min_area)
    point_face = _points_to_objects(points, plen, corners, counts, small, "pcls")
    face_point = _objects_to_points(corners, counts, small, points, plen)
    return _batch_mean(point_face, plen) + _batch_mean(face_point, counts)


def point_mesh_edge_distance(meshes, pcls) -> torch.Tensor:
    """``pytorch3d.loss.point_mesh_edge_distance``: point_edge + edge_point, a scalar.

    point_edge = mean_b mean_{p in cloud b} min_{e in mesh b} d(p, e) and edge_point =
    mean_b mean_{e in mesh b} min_{p in cloud b} d(p, e), d the SQUARED point-to-segment distance,
    over each mesh's unique undirected edges (``Meshes.edges_packed()``). The nearest edge is found
    exactly (the edges as degenerate triangles in the closest-triangle search; it need not be an
    edge of the nearest face), the nearest point by the bounded search of the face direction, so
    nothing of size points x edges is ever allocated. Empty clouds / meshes: as
    :func:`point_mesh_face_distance`. Gradients reach the vertices and the points.
    """
    corners, counts, points, plen = mesh_cloud_pair(meshes, pcls, edges=True)
    none = torch.zeros(corners.shape[:2], dtype=torch.bool, device=corners.device)
    point_edge = _points_to_objects(points, plen, corners, counts, none, "pcls")
    edge_point = _objects_to_points(corners, counts, none, points, plen)
    return _batch_mean(point_edge, plen) + _batch_mean(edge_point, counts)


# ---- the functional (packed) forms of pytorch3d.loss.point_mesh_distance ----


def _packed_lengths(first_idx, total: int, name: str, device) -> torch.Tensor:
    """(N,) element sizes from PyTorch3D's (N,) first indices into a packed tensor of ``total``."""
    if not isinstance(first_idx, torch.Tensor) or first_idx.is_floating_point() or first_idx.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of shape (N,)")
    if first_idx.ndim != 1 or first_idx.shape[0] == 0:
        raise ValueError(f"{name} must have shape (N,) with N >= 1, got {tuple(first_idx.shape)}")
    if first_idx.device != device:
        raise ValueError(f"{name} is on {first_idx.device} but its tensor is on {device}")
    first = first_idx.to(torch.int64)
    ends = torch.cat([first[1:], torch.tensor([total], dtype=torch.int64, device=device)])
    lengths = ends - first
    if int(first[0]) != 0 or bool((lengths < 0).any()):
        raise ValueError(f"{name} must start at 0 and be non-decreasing up to {total}")
    return lengths


def _padded_from_packed(packed: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(N, max length, ...) rows of ``packed`` per element (differentiable), zero padding."""
    N = lengths.shape[0]
    width = int(lengths.max()) if N else 0
    first = torch.cumsum(lengths, 0) - lengths
    index = first[:, None] + torch.arange(width, device=packed.device)[None, :]
    valid = valid_mask(lengths, width)
    if packed.shape[0] == 0:
        return packed.new_zeros((N, width, *packed.shape[1:]))
    rows = packed[torch.where(valid, index, 0)]
    mask = valid.view(N, width, *([1] * (packed.ndim - 1)))
    return torch.where(mask, rows, torch.zeros((), dtype=rows.dtype, device=rows.device))


def _packed_args(points, points_first_idx, objects, objects_first_idx, corners: int, oname: str):
    """Validated padded forms of the packed arguments of the functional distances."""
    _checks.check_float_tensor(points, "points")
    _checks.check_float_tensor(objects, oname)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape (P, 3), got {tuple(points.shape)}")
    if objects.ndim != 3 or objects.shape[1:] != (corners, 3):
        raise ValueError(f"{oname} must have shape (T, {corners}, 3), got {tuple(objects.shape)}")
    if objects.device != points.device:
        raise ValueError(f"{oname} is on {objects.device} but points is on {points.device}")
    plen = _packed_lengths(points_first_idx, points.shape[0], "points_first_idx", points.device)
    olen = _packed_lengths(objects_first_idx, objects.shape[0], f"{oname}_first_idx", points.device)
    if plen.shape != olen.shape:
        raise ValueError(f"points_first_idx and {oname}_first_idx must have the same length N")
    if not bool(torch.isfinite(objects).all()):
        raise ValueError(f"{oname} contains NaN or Inf coordinates")
    if not bool(torch.isfinite(points).all()):
        raise ValueError("points contains NaN or Inf coordinates")
    if corners == 2:  # a segment (a, b) as the degenerate triangle (a, b, b)
        objects = objects[:, [0, 1, 1]]
    return _padded_from_packed(points, plen), plen, _padded_from_packed(objects, olen), olen


def _unpad(values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    return values[valid_mask(lengths, values.shape[1])]


def point_face_distance(points, points_first_idx, tris, tris_first_idx, max_points,
                        min_triangle_area: float = DEFAULT_MIN_TRIANGLE_AREA) -> torch.Tensor:
    """``pytorch3d.loss.point_mesh_distance.point_face_distance``: (P,) SQUARED distance from each
    packed point to the nearest triangle of its batch element (PyTorch3D's ``min_triangle_area``
    rule, see :func:`point_mesh_face_distance`; 0 or None: exact).

    ``points`` (P, 3) and ``tris`` (T, 3, 3) packed; ``points_first_idx``/``tris_first_idx`` (N,)
    the first index of each element (starting at 0, non-decreasing). ``max_points`` only sized
    PyTorch3D's CUDA launch and is ignored. FLT_MAX for points whose element has no triangle.
    Elements are those of the CUDA kernel, also where an element is empty (PyTorch3D's CPU
    kernel, which advances one element per object, then measures against the wrong element).
    Gradients reach points and tris.
    """
    del max_points
    min_area = _check_min_area(min_triangle_area)
    pts, plen, corners, tlen = _packed_args(points, points_first_idx, tris, tris_first_idx, 3, "tris")
    small = _small_triangles(corners, min_area)
    return _unpad(_points_to_objects(pts, plen, corners, tlen, small, "points"), plen)


def face_point_distance(points, points_first_idx, tris, tris_first_idx, max_tris,
                        min_triangle_area: float = DEFAULT_MIN_TRIANGLE_AREA) -> torch.Tensor:
    """``pytorch3d.loss.point_mesh_distance.face_point_distance``: (T,) SQUARED distance from each
    packed triangle to the nearest point of its batch element (PyTorch3D's ``min_triangle_area``
    rule; 0 or None: exact). Arguments as :func:`point_face_distance`; ``max_tris`` is ignored.
    FLT_MAX for triangles whose element has no point. Gradients reach points and tris.
    """
    del max_tris
    min_area = _check_min_area(min_triangle_area)
    pts, plen, corners, tlen = _packed_args(points, points_first_idx, tris, tris_first_idx, 3, "tris")
    small = _small_triangles(corners, min_area)
    return _unpad(_objects_to_points(corners, tlen, small, pts, plen), tlen)


def point_edge_distance(points, points_first_idx, segms, segms_first_idx, max_points) -> torch.Tensor:
    """``pytorch3d.loss.point_mesh_distance.point_edge_distance``: (P,) SQUARED distance from each
    packed point to the nearest segment ``segms`` (S, 2, 3) of its batch element; FLT_MAX if the
    element has none. ``max_points`` is ignored. Gradients reach points and segms."""
    del max_points
    pts, plen, corners, slen = _packed_args(points, points_first_idx, segms, segms_first_idx, 2, "segms")
    none = torch.zeros(corners.shape[:2], dtype=torch.bool, device=corners.device)
    return _unpad(_points_to_objects(pts, plen, corners, slen, none, "points"), plen)


def edge_point_distance(points, points_first_idx, segms, segms_first_idx, max_segms) -> torch.Tensor:
    """``pytorch3d.loss.point_mesh_distance.edge_point_distance``: (S,) SQUARED distance from each
    packed segment to the nearest point of its batch element; FLT_MAX if the element has none.
    ``max_segms`` is ignored. Gradients reach points and segms."""
    del max_segms
    pts, plen, corners, slen = _packed_args(points, points_first_idx, segms, segms_first_idx, 2, "segms")
    none = torch.zeros(corners.shape[:2], dtype=torch.bool, device=corners.device)
    return _unpad(_objects_to_points(corners, slen, none, pts, plen), slen)
