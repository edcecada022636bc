"""Queries of a triangle hierarchy (built by mesh_tree.py): closest points, winding numbers, signed
distance.

The kernels search (which triangle is closest; the winding number sum); torch recomputes the
closest point on the found triangle, in float64, so distances and closest points are
differentiable with respect to both the query points and the mesh vertices.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import torch

from . import _checks
from ._ops import ops
from ._reduce import safe_sqrt
from .mesh import Meshes, as_meshes
from .mesh_tree import MeshTree, build_tree, closest_search_data, winding_moments


class MeshProjection(NamedTuple):
    """Closest points of a mesh to query points.

    points: (B, N, 3) closest points on the surface, in the promoted dtype of the queries and the
        vertices (a float16 query on a float32 mesh gets float32 points); differentiable.
    sq_distance: (B, N) squared distances; differentiable.
    distance: (B, N) Euclidean distances, with a gradient that is finite at 0; differentiable.
    face: (B, N) int64 index of the triangle holding each closest point (-1: padding or empty mesh).
    bary: (B, N, 3) barycentric weights of the closest point in that triangle (not differentiable).
    """

    points: torch.Tensor
    sq_distance: torch.Tensor
    distance: torch.Tensor
    face: torch.Tensor
    bary: torch.Tensor


def plane_frame(a, b, c):
    """Origin o, unit vectors u, v spanning the plane of triangles (a, b, c) (..., 3), well
    conditioned however thin the triangle: o and o + |ab'| u span its longest edge and v is the
    height of the third corner over it, orthogonalised twice (as in csrc/mesh/triangle.h). The
    normal cross(b - a, c - a) of a sliver is off by about eps * length / height, which tilts a
    projection onto its plane by that much at the far end. v is 0 for a collinear
    triangle, u too for a point. Differentiable."""
    corners = torch.stack([a, b, c], dim=-2)
    edges = corners.roll(-1, dims=-2) - corners  # edge k runs from corner k to corner k + 1
    k = (edges * edges).sum(-1).argmax(-1, keepdim=True)  # the longest edge, ties to the first
    idx = (k + torch.arange(3, device=k.device)) % 3
    o, e, f = corners.gather(-2, idx[..., None].expand(*idx.shape, 3)).unbind(-2)
    e, f = e - o, f - o

    def unit(x):
        n2 = (x * x).sum(-1, keepdim=True)
        return x / torch.where(n2 > 0, n2, torch.ones_like(n2)).sqrt()

    u = unit(e)
    h = f - u * (f * u).sum(-1, keepdim=True)
    h = h - u * (h * u).sum(-1, keepdim=True)  # once leaves eps * |f| along u: large against a small height
    return o, u, unit(h)


def closest_point_in_region(p, a, b, c, w):
    """Closest point q on triangle (a, b, c) to p, and the offset p - q, as differentiable functions
    of all four, in the region (face, edge or vertex) that the kernel's barycentric weights w
    identify. The offset is taken from a corner of the region's feature, not as p - q, so that it
    keeps its precision where q's coordinates are large against the distance."""
    zero = torch.zeros((), dtype=p.dtype, device=p.device)

    def on_segment(u, v):
        e = v - u
        len2 = (e * e).sum(-1, keepdim=True)
        t = ((p - u) * e).sum(-1, keepdim=True) / torch.where(len2 > 0, len2, torch.ones_like(len2))
        t = t.clamp(0, 1)
        return u + t * e, (p - u) - t * e

    o, u, v = plane_frame(a, b, c)
    op = p - o
    in_plane = u * (op * u).sum(-1, keepdim=True) + v * (op * v).sum(-1, keepdim=True)
    on_face, face_offset = o + in_plane, op - in_plane
    corners = torch.stack([a, b, c], dim=-2)
    vertex = corners.gather(-2, w.argmax(-1, keepdim=True).unsqueeze(-1).expand(*w.shape[:-1], 1, 3)).squeeze(-2)
    nonzero = (w != 0).sum(-1, keepdim=True)
    (ab, ab_off), (bc, bc_off), (ca, ca_off) = on_segment(a, b), on_segment(b, c), on_segment(c, a)
    edge = torch.where(w[..., 2:3] == 0, ab, torch.where(w[..., 0:1] == 0, bc, ca))
    edge_offset = torch.where(w[..., 2:3] == 0, ab_off, torch.where(w[..., 0:1] == 0, bc_off, ca_off))
    point = torch.where(nonzero == 3, on_face, torch.where(nonzero == 2, edge, vertex))
    offset = torch.where(nonzero == 3, face_offset, torch.where(nonzero == 2, edge_offset, p - vertex))
    return torch.where(nonzero > 0, point, zero), torch.where(nonzero > 0, offset, zero)


class MeshBVH:
    """Bounding-volume hierarchy over a batch of triangle meshes. Build it once, query it many times.

    Args:
        verts: (V, 3) or (B, V, 3) vertices, or a list of (V_i, 3).
        faces: (F, 3) or (B, F, 3) integer vertex indices, or a list of (F_i, 3).
        face_lengths: optional (B,) number of valid faces per padded mesh.

    The hierarchy is a balanced kd-tree over triangle centroids with leaves of 8 triangles and the
    exact box of every node (:func:`pointmetrics.mesh_tree.build_tree`); it is built on the
    vertices' device (CPU or CUDA). The first closest-point query also prepares every triangle for
    the search (FRAME_BYTES = 128 bytes per face, kept), so later queries pay only for the search. Queries keep
    gradients to ``verts``: after the vertices change, build a new hierarchy.
    """

    def __init__(self, verts, faces, face_lengths=None):
        self._init(as_meshes(verts, faces, face_lengths))

    @classmethod
    def from_meshes(cls, meshes: Meshes) -> MeshBVH:
        """The hierarchy of meshes already validated by :func:`pointmetrics.mesh.as_meshes`."""
        bvh = cls.__new__(cls)
        bvh._init(meshes)
        return bvh

    def _init(self, meshes: Meshes) -> None:
        self.meshes = meshes
        self.tree: MeshTree = build_tree(meshes)
        self.dtype = self.tree.dtype
        self._search_data = None
        self._moments = None

    def search_data(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:func:`~pointmetrics.mesh_tree.closest_search_data` of the tree, prepared once and kept."""
        if self._search_data is None:
            self._search_data = closest_search_data(self.tree)
        return self._search_data

    def moments(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """:func:`~pointmetrics.mesh_tree.winding_moments` of the tree, computed once and kept."""
        if self._moments is None:
            self._moments = winding_moments(self.tree)
        return self._moments

    def queries(self, points, lengths=None, name: str = "points") -> _checks.Clouds:
        """``points`` validated as queries of these meshes: (B, N, 3) on the meshes' device, one
        cloud per mesh; ``unbatched`` when both the points and the meshes were single."""
        pts, pl, unbatched = _checks.clouds(points, lengths, name)
        B = self.tree.tris.shape[0]
        if pts.shape[2] != 3:
            raise ValueError(f"{name} must be 3D points, got dimension {pts.shape[2]}")
        if pts.device != self.tree.tris.device:
            raise ValueError(f"{name} is on {pts.device} but the mesh is on {self.tree.tris.device}")
        if pts.shape[0] != B:
            if pts.shape[0] == 1 and not self.meshes.unbatched:
                raise ValueError(f"{name} has 1 cloud but there are {B} meshes")
            raise ValueError(f"{name} has {pts.shape[0]} clouds but there are {B} meshes")
        return _checks.Clouds(pts, pl, unbatched and self.meshes.unbatched)

    def closest_points(self, points, lengths=None) -> MeshProjection:
        """Closest point of each mesh to each query point (exact, float64 search): distances within
        16 ulps of the largest coordinate magnitude of the exact ones, slivers included (README).

        ``points``: (N, 3), (B, N, 3) with optional ``lengths``, or a list; batch b is queried
        against mesh b. Empty meshes give NaN distances (warning) and face -1.
        """
        return self.closest_core(self.queries(points, lengths))

    def winding_number(self, points, lengths=None, beta: float = 2.0) -> torch.Tensor:
        """Generalised winding number of each mesh at each point: 1 inside and 0 outside a closed,
        outward-oriented mesh, fractional near holes. Exact solid angles near the point and a
        second-order far-field expansion for groups of triangles farther than ``beta`` times their
        radius (Barill et al. 2018); larger beta is more exact and slower. Not differentiable."""
        _check_beta(beta)
        return self.winding_core(self.queries(points, lengths), beta)

    def occupancy(self, points, lengths=None, beta: float = 2.0) -> torch.Tensor:
        """True where the winding number is at least 0.5 (inside). Works on open and non-manifold
        meshes, where inside/outside degrades gracefully instead of flipping."""
        return self.winding_number(points, lengths, beta) >= 0.5

    def signed_distance(self, points, lengths=None, beta: float = 2.0) -> torch.Tensor:
        """Distance to the surface, negative inside (winding number >= 0.5); differentiable in its
        magnitude."""
        _check_beta(beta)
        queries = self.queries(points, lengths)
        distance = self.closest_core(queries).distance
        return torch.where(self.winding_core(queries, beta) >= 0.5, -distance, distance)

    # Cores: validated queries (see `queries`) in, no further checks.

    def closest_core(self, queries: _checks.Clouds) -> MeshProjection:
        """:meth:`closest_points` of validated queries."""
        pts, pl, unbatched = queries
        _warn_if_no_faces(self.meshes, "closest_points")
        d2, face, bary, kernel_closest = ops.closest_triangle(*self._search_args(pts, pl), *self.search_data())
        # a point on the mesh: rounding it to a narrower query dtype would move it off the surface
        out_dtype = torch.promote_types(pts.dtype, self.meshes.verts.dtype)
        if torch.is_grad_enabled() and (pts.requires_grad or self.meshes.verts.requires_grad):
            closest, sq = _recomputed(self.meshes, pts, face, bary)
            closest, sq = closest.to(out_dtype), sq.to(self.dtype)
        else:
            closest, sq = kernel_closest.to(out_dtype), d2
        empty = (self.meshes.face_lengths == 0)[:, None] & torch.ones_like(face, dtype=torch.bool)
        nan = torch.tensor(float("nan"), dtype=sq.dtype, device=sq.device)
        sq = torch.where(empty, nan, sq)
        distance = safe_sqrt(torch.where(empty, 0.0, sq)).where(~empty, nan)
        out = MeshProjection(closest, sq, distance, face, bary)
        return MeshProjection(*(t[0] for t in out)) if unbatched else out

    def winding_core(self, queries: _checks.Clouds, beta: float) -> torch.Tensor:
        """:meth:`winding_number` of validated queries."""
        pts, pl, unbatched = queries
        w = ops.winding_number(*self._search_args(pts, pl), *self.moments(), float(beta))
        return w[0] if unbatched else w

    def _search_args(self, pts, pl):
        """The leading arguments of both search ops: the points in the tree's dtype, their
        lengths, and the tree (triangles, face order, node boxes, face lengths)."""
        t = self.tree
        return pts.detach().to(self.dtype).contiguous(), pl, t.tris, t.face, t.lo, t.hi, self.meshes.face_lengths


def _check_beta(beta) -> None:
    if not beta > 0:
        raise ValueError(f"beta must be positive, got {beta!r}")


def _warn_if_no_faces(meshes: Meshes, what: str) -> None:
    if bool((meshes.face_lengths == 0).any()):
        warnings.warn(f"{what}: a mesh has no faces; its results are NaN", RuntimeWarning, stacklevel=4)


def _recomputed(meshes: Meshes, pts, face, bary) -> tuple[torch.Tensor, torch.Tensor]:
    """The closest points and squared distances, recomputed in float64 by torch on the triangles
    and regions the kernel found, so that they are differentiable with respect to the points and
    the vertices.

    Queries without a face (padding past the lengths, which may hold NaN, or queries of an empty
    mesh) are replaced by 0 with torch.where BEFORE any arithmetic, and so are their stand-in
    corners: a NaN times a zero gradient is still NaN, and would reach the vertices (and the
    queries) in the backward pass.
    """
    found = face >= 0
    if meshes.faces.shape[1] == 0:  # no mesh has a face
        corners = torch.zeros(*face.shape, 3, 3, dtype=torch.float64, device=face.device)
    else:
        corners = meshes.corners(torch.where(found, face, 0)).double()  # (B, N, 3, 3)
        corners = torch.where(found[..., None, None], corners, 0.0)
    p = torch.where(found[..., None], pts.double(), 0.0)
    q, diff = closest_point_in_region(p, corners[..., 0, :], corners[..., 1, :], corners[..., 2, :], bary.double())
    q = torch.where(found[..., None], q, 0.0)
    diff = torch.where(found[..., None], diff, 0.0)
    return q, diff.square().sum(-1)
