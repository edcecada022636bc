"""Point-to-surface distances, inside/outside, volumetric IoU and normal consistency.

Each metric is defined once here, with the formula and the protocol it follows; evaluation
protocols and the command line call these functions.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import torch

from . import _checks
from ._reduce import mean_over_points, reduce_batch, safe_sqrt, warn_if_empty
from .bvh import MeshBVH, MeshProjection
from .knn import nearest_core
from .mesh import as_meshes, sample_points_on_mesh, sample_surface
from .pointcloud import normal_consistency


def closest_points_on_mesh(points, verts, faces, points_lengths=None, face_lengths=None) -> MeshProjection:
    """Closest point on the mesh to every query point: points, (squared) distances, face indices
    and barycentric weights. Batches: mesh b answers cloud b. Differentiable with respect to the
    points and the vertices. To query one mesh many times, build a :class:`MeshBVH` once."""
    return MeshBVH(verts, faces, face_lengths).closest_points(points, points_lengths)


def point_to_surface_distance(
    points, verts, faces, points_lengths=None, face_lengths=None, reduction: str | None = "mean"
) -> torch.Tensor:
    """P2S (one direction, as ICON/CAPE report it): mean_i min_{x in S} ||p_i - x||, the mean
    unsquared distance from the points to the mesh surface, per cloud.

    ``reduction``: "mean" or "sum" over the batch, or None for (B,) values (a scalar for a single
    cloud). Empty clouds or meshes give NaN with a warning.
    """
    _checks.check_choice(reduction, ("mean", "sum", None), "reduction")
    bvh = MeshBVH(verts, faces, face_lengths)
    queries = bvh.queries(points, points_lengths)
    batched = queries._replace(unbatched=False)
    per_cloud = mean_over_points(bvh.closest_core(batched).distance, queries.lengths)
    warn_if_empty("point_to_surface_distance", queries.lengths)
    return reduce_batch(per_cloud, reduction, queries.unbatched)


class PointMeshDistance(NamedTuple):
    """points_to_mesh: (B, N) exact distances from the points to the surface; mesh_to_points:
    (B, S) distances from S area-weighted surface samples to the nearest point; chamfer: (B,)
    1/2 (mean points_to_mesh + mean mesh_to_points); samples: (B, S, 3) the surface samples."""

    points_to_mesh: torch.Tensor
    mesh_to_points: torch.Tensor
    chamfer: torch.Tensor
    samples: torch.Tensor


def point_mesh_distance(
    points,
    verts,
    faces,
    samples: int = 100_000,
    generator: torch.Generator | None = None,
    points_lengths=None,
    face_lengths=None,
) -> PointMeshDistance:
    """Distances in both directions between point clouds and meshes (mesh b against cloud b):
    points to surface exactly, surface to points through ``samples`` area-weighted samples per mesh
    (seedable with ``generator``). All distances are unsquared and differentiable. Distances of
    float16/bfloat16 inputs are float32. An empty point cloud gives a NaN chamfer with a warning.
    ``faces`` may have any integer dtype. A mesh without a face of positive area cannot be sampled:
    ValueError naming ``verts`` (or ``faces`` when it has no faces)."""
    _checks.check_positive_int(samples, "samples")
    meshes = as_meshes(verts, faces, face_lengths)
    bvh = MeshBVH.from_meshes(meshes)
    queries = bvh.queries(points, points_lengths)._replace(unbatched=False)
    pts, pl, _ = queries
    to_mesh = bvh.closest_core(queries).distance
    draws = []
    for b in range(meshes.verts.shape[0]):
        f = meshes.faces[b, : int(meshes.face_lengths[b])]
        names = ("verts", "faces") if meshes.unbatched else (f"verts[{b}]", f"faces[{b}]")
        draws.append(sample_surface(meshes.verts[b], f, samples, generator, names).points)
    drawn = torch.stack(draws)
    # the samples are new points: checked (and measured in their working precision) against the cloud
    pair = _checks.validated_pair(drawn, pts, None, pl, ("samples", "points"))
    sq_to_points, _ = nearest_core(pair.x, pair.y, pair.x_lengths, pair.y_lengths)
    to_points = safe_sqrt(sq_to_points)
    chamfer = 0.5 * (mean_over_points(to_mesh, pl) + to_points.mean(1))
    warn_if_empty("point_mesh_distance", pl, result="its chamfer is NaN")
    return PointMeshDistance(to_mesh, to_points, chamfer, drawn)


def winding_number(points, verts, faces, points_lengths=None, face_lengths=None, beta: float = 2.0):
    """Generalised winding number of the mesh at the points; see :meth:`MeshBVH.winding_number`."""
    return MeshBVH(verts, faces, face_lengths).winding_number(points, points_lengths, beta)


def occupancy(points, verts, faces, points_lengths=None, face_lengths=None, beta: float = 2.0):
    """Inside test by generalised winding number (>= 0.5); robust on open and non-manifold meshes."""
    return MeshBVH(verts, faces, face_lengths).occupancy(points, points_lengths, beta)


def signed_distance(points, verts, faces, points_lengths=None, face_lengths=None, beta: float = 2.0):
    """Distance to the surface, negative inside (winding number >= 0.5)."""
    return MeshBVH(verts, faces, face_lengths).signed_distance(points, points_lengths, beta)


class VolumetricIoU(NamedTuple):
    """iou: intersection over union of the two occupancies; points: the (n, 3) query points
    (in the input frame); inside_pred, inside_gt: their occupancies."""

    iou: torch.Tensor
    points: torch.Tensor
    inside_pred: torch.Tensor
    inside_gt: torch.Tensor


def volumetric_iou(
    pred_verts,
    pred_faces,
    gt_verts,
    gt_faces,
    n_points: int = 100_000,
    padding: float = 0.1,
    generator: torch.Generator | None = None,
    beta: float = 2.0,
) -> VolumetricIoU:
    """Volumetric IoU with the Occupancy Networks protocol (Mescheder et al. 2019,
    scripts/sample_mesh.py and im2mesh/eval.py): the ground truth is centred on its bounding box
    and scaled so that its longest edge is 1; ``n_points`` points are drawn uniformly in the cube
    [-(1 + padding) / 2, (1 + padding) / 2]^3 of that frame; a point is inside a mesh when its
    winding number is >= 0.5; IoU = |pred AND gt| / |pred OR gt|.

    A mesh without faces is empty (IoU 0 against a non-empty one); an empty union gives NaN with a
    warning. The ground truth defines the frame, so it needs an extent: a ground truth without
    vertices (or whose used vertices all coincide) raises a ValueError naming ``gt_verts``, not a
    NaN (there is no frame to draw the points in, unlike an empty cloud of a metric).
    """
    if not isinstance(n_points, int) or n_points < 1:
        raise ValueError(f"n_points must be a positive integer, got {n_points!r}")
    if not padding >= 0:
        raise ValueError(f"padding must be non-negative, got {padding!r}")
    gt = as_meshes(gt_verts, gt_faces, names=("gt_verts", "gt_faces"))
    pred = as_meshes(pred_verts, pred_faces, names=("pred_verts", "pred_faces"))
    if not (gt.unbatched and pred.unbatched):
        raise ValueError("volumetric_iou compares one predicted mesh with one ground-truth mesh")
    used = gt.verts[0][gt.faces[0].unique()] if gt.faces.shape[1] else gt.verts[0]
    if used.shape[0] == 0:
        raise ValueError(
            "gt_verts is empty (and gt_faces has no faces): the ground-truth mesh defines the evaluation frame"
        )
    lo, hi = used.amin(0).double(), used.amax(0).double()
    centre, scale = (lo + hi) / 2, float((hi - lo).max())
    if not scale > 0:
        raise ValueError(
            "gt_verts: the ground-truth mesh has no extent (the bounding box of its used vertices is a point "
            f"or not finite: extent {scale!r}), so it defines no evaluation frame"
        )
    device = gt.verts.device
    unit = torch.rand(
        n_points,
        3,
        generator=generator,
        dtype=torch.float64,
        device=generator.device if generator is not None else device,
    ).to(device)
    points = ((1 + padding) * (unit - 0.5)) * scale + centre
    inside_gt = _inside(gt, points, beta)
    inside_pred = _inside(pred, points, beta)
    union = (inside_gt | inside_pred).sum()
    if int(union) == 0:
        warnings.warn(
            "volumetric_iou: both meshes are empty at the sample points; IoU is NaN", RuntimeWarning, stacklevel=2
        )
    iou = (inside_gt & inside_pred).sum().double() / union.double()
    return VolumetricIoU(iou, points.to(gt.verts.dtype), inside_pred, inside_gt)


def _inside(meshes, points, beta):
    if meshes.faces.shape[1] == 0 or int(meshes.face_lengths[0]) == 0:
        return torch.zeros(points.shape[0], dtype=torch.bool, device=points.device)
    bvh = MeshBVH.from_meshes(meshes)
    return bvh.occupancy(points.to(bvh.dtype), beta=beta)


def mesh_normal_consistency(
    pred_verts, pred_faces, gt_points, gt_normals, samples: int = 100_000, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Normal consistency of a predicted mesh against a ground-truth cloud with normals, as
    Occupancy Networks evaluates it: ``samples`` area-weighted points on the prediction with
    their face normals against the ground truth; see :meth:`Correspondences.normal_consistency`.
    A prediction without a face of positive area raises a ValueError naming ``pred_verts`` (or
    ``pred_faces`` when it has no faces)."""
    _checks.check_positive_int(samples, "samples")
    s = sample_points_on_mesh(pred_verts, pred_faces, samples, generator=generator, names=("pred_verts", "pred_faces"))
    return normal_consistency(s.points, s.normals, gt_points, gt_normals)
