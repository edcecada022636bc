"""Indoor RGB-D SLAM reconstruction: accuracy, completion and completion ratio of a room mesh.

Reproduces NICE-SLAM's 3D metric (cvg/nice-slam ``src/tools/eval_recon.py``, ``calc_3d_metric``,
at commit 7af15cc33729aa5a8ca052908d96f495e34ab34c; unchanged in Co-SLAM's
JingwenWang95/neural_slam_eval ``eval_recon.py`` at commit 9f07a513f647291d5523b8202ac07e9471803d78),
after culling the reconstruction to what the cameras saw (NICE-SLAM ``src/tools/cull_mesh.py``,
same commit, or neural_slam_eval ``cull_mesh.py``: see :mod:`pointmetrics.protocols.culling`).
Meshes and poses are in metres. The reference's steps:

1. (cull_mesh.py) cull the reconstruction with the dataset's poses and intrinsics; the ground
   truth is used already culled (NICE-SLAM ships ``cull_replica_mesh/<scene>.ply``, Co-SLAM
   ``gt_mesh_cull_virt_cams.ply``), or culled here with the same method (``cull_gt=True``);
2. (``align=True``) ICP: Open3D ``registration_icp`` of the reconstruction's vertices to the
   ground truth's, point to point, max correspondence distance 0.1, identity start, Open3D's
   default criteria (30 iterations, relative fitness and RMSE 1e-6); the reconstruction is moved
   by the result;
3. ``trimesh.sample.sample_surface(mesh, 200000)`` on each mesh (area-weighted, unseeded);
4. accuracy = mean over reconstruction samples of the distance to the nearest ground-truth sample
   (scipy cKDTree), completion = mean over ground-truth samples of the distance to the nearest
   reconstruction sample, completion ratio = fraction of ground-truth samples with that distance
   < 0.05 (strict);
5. accuracy and completion x 100 (cm), completion ratio x 100 (%).

Also reported, from the same two searches (not in the reference's output, but defined by the
same distances and threshold, as later SLAM papers report them): Chamfer-L1 =
(accuracy + completion) / 2 (cm), precision = fraction of reconstruction samples within < 0.05 of
the ground truth, and F-score = 2 P R / (P + R) at 5 cm with R the completion ratio (%). Normal
consistency is not part of the reference and is not reported.

Differences: our samples are drawn by :func:`pointmetrics.sample_points_on_mesh` with a seed (the
reference draws unseeded with numpy's global state: its numbers vary from run to run by sampling
noise and no random stream of ours can equal it); nearest neighbours are our exact search
(cKDTree is exact as well). ICP correspondences use the vertices of the kept faces (Co-SLAM
removes unreferenced vertices after culling; NICE-SLAM's culled file keeps every vertex).
The 2D metric (depth L1 over 1000 random views of Open3D renders) is not reproduced.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import io
from ..knn import knn_points
from ..mesh import sample_points_on_mesh
from ..pointcloud import correspondences
from .card import MetricCard
from .culling import CULL_METHODS, cull_mesh
from .slam_io import CameraIntrinsics

__all__ = ["SlamResult", "icp_point_to_point", "slam_card", "slam_mesh_eval", "slam_metrics"]

REFERENCE = ("cvg/nice-slam src/tools/eval_recon.py@7af15cc33729aa5a8ca052908d96f495e34ab34c; "
             "cvg/nice-slam src/tools/cull_mesh.py@7af15cc33729aa5a8ca052908d96f495e34ab34c; "
             "JingwenWang95/neural_slam_eval cull_mesh.py@9f07a513f647291d5523b8202ac07e9471803d78")
SAMPLES = 200_000  # trimesh.sample.sample_surface(mesh, 200000) on each mesh
THRESHOLD = 0.05  # completion_ratio(dist_th=0.05), metres
ICP_DISTANCE, ICP_ITERATIONS, ICP_RELATIVE = 0.1, 30, 1e-6  # get_align_transformation, Open3D defaults
METRICS = {
    "accuracy": "mean over reconstruction samples of the distance to the nearest ground-truth sample, unsquared, "
                "x 100 (cm)",
    "completion": "mean over ground-truth samples of the distance to the nearest reconstruction sample, unsquared, "
                  "x 100 (cm)",
    "completion_ratio": "percentage of ground-truth samples within < threshold of a reconstruction sample (strict)",
    "chamfer_l1": "(accuracy + completion) / 2, cm (not printed by the reference)",
    "precision": "percentage of reconstruction samples within < threshold of a ground-truth sample (strict)",
    "fscore": "2 P R / (P + R) at the threshold, R = completion_ratio, % (not printed by the reference)",
}
UNITS = {"accuracy": "cm", "completion": "cm", "completion_ratio": "%", "chamfer_l1": "cm", "precision": "%",
         "fscore": "%"}


@dataclass
class SlamResult:
    """accuracy, completion, chamfer_l1 in cm; completion_ratio, precision, fscore in %.
    counts: faces before and after culling and samples per mesh; transform: the ICP alignment
    applied to the reconstruction (4 x 4 list) or None; card: how the numbers were computed."""

    accuracy: float
    completion: float
    completion_ratio: float
    chamfer_l1: float
    precision: float
    fscore: float
    counts: dict = field(default_factory=dict)
    transform: list | None = None
    card: MetricCard | None = None

    def metrics(self) -> dict:
        return {name: getattr(self, name) for name in METRICS}

    def as_dict(self) -> dict:
        return {"metrics": self.metrics(), "units": UNITS, "counts": self.counts, "transform": self.transform,
                "card": None if self.card is None else self.card.as_dict()}


def slam_metrics(rec_points: torch.Tensor, gt_points: torch.Tensor, threshold: float = THRESHOLD) -> dict:
    """The metrics of step 4-5 from two sample sets (N, 3) and (M, 3) in metres, one search each way."""
    c = correspondences(rec_points.double(), gt_points.double())
    f = c.fscore(float(threshold))
    accuracy, completion = float(c.x_to_y.mean()), float(c.y_to_x.mean())
    return {"accuracy": accuracy * 100, "completion": completion * 100,
            "completion_ratio": float(f.recall) * 100,
            "chamfer_l1": float(c.chamfer(squared=False, halve=True)) * 100,
            "precision": float(f.precision) * 100, "fscore": float(f.fscore) * 100}


def _kabsch(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Eigen::umeyama(src, dst, with_scaling=false): the rigid 4 x 4 map of src onto dst (least squares)."""
    ms, md = src.mean(0), dst.mean(0)
    sigma = (dst - md).T @ (src - ms) / len(src)
    u, _, vt = torch.linalg.svd(sigma)
    s = torch.ones(3, dtype=src.dtype)
    if torch.linalg.det(u) * torch.linalg.det(vt) < 0:
        s[2] = -1
    m = torch.eye(4, dtype=src.dtype)
    m[:3, :3] = u @ torch.diag(s) @ vt
    m[:3, 3] = md - m[:3, :3] @ ms
    return m


def icp_point_to_point(source: torch.Tensor, target: torch.Tensor, max_distance: float = ICP_DISTANCE,
                       max_iteration: int = ICP_ITERATIONS, relative: float = ICP_RELATIVE) -> np.ndarray:
    """Open3D's ``registration_icp`` with ``TransformationEstimationPointToPoint`` from the identity:
    4 x 4 float64 transform of ``source`` (N, 3) onto ``target`` (M, 3).

    Each round pairs every source point with its nearest target point when closer than
    ``max_distance`` (strict), solves the rigid least-squares map of the pairs (Umeyama, no scale),
    moves the points; it stops after ``max_iteration`` rounds or when both the fitness (paired
    fraction) and the inlier RMSE change by less than ``relative``."""
    points, target = source.double().cpu(), target.double().cpu()
    transform = torch.eye(4, dtype=torch.float64)

    def pairs(p):
        knn = knn_points(p, target, K=1)
        d2, idx = knn.dists[:, 0], knn.idx[:, 0]
        close = d2 < max_distance**2
        n = int(close.sum())
        rmse = math.sqrt(float(d2[close].sum()) / n) if n else 0.0
        return close, idx, n / len(p), rmse

    close, idx, fitness, rmse = pairs(points)
    for _ in range(max_iteration):
        update = _kabsch(points[close], target[idx[close]]) if bool(close.any()) else torch.eye(4, dtype=torch.float64)
        transform = update @ transform
        points = points @ update[:3, :3].T + update[:3, 3]
        previous = (fitness, rmse)
        close, idx, fitness, rmse = pairs(points)
        if abs(previous[0] - fitness) < relative and abs(previous[1] - rmse) < relative:
            break
    return transform.numpy()


def _mesh(data, role: str) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(data, (str, os.PathLike)):
        geometry = io.load(data)
        if not geometry.is_mesh:
            raise ValueError(f"{os.fspath(data)}: the SLAM protocol needs a mesh ({role}), the file holds a point "
                             "cloud")
        return geometry.vertices.double(), geometry.faces.long()
    if isinstance(data, (tuple, list)) and len(data) == 2:
        verts, faces = (torch.as_tensor(t) for t in data)
        if verts.ndim != 2 or verts.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
            raise ValueError(f"{role}: a mesh needs (V, 3) vertices and (F, 3) faces, F > 0")
        return verts.double(), faces.long()
    raise TypeError(f"{role} must be a mesh file path or a (verts, faces) pair")


def slam_card(cull: str, samples: int, seed: int, threshold: float, align: bool, cull_gt: bool, eps: float,
              intrinsics: CameraIntrinsics | None, cameras: int, virtual: int, depth: str,
              inputs: dict | None) -> MetricCard:
    """The metric card of one SLAM mesh evaluation; ``inputs`` ({role: path}) are hashed."""
    parameters = {
        "samples": samples, "seed": seed, "sampler": "pointmetrics.sample_points_on_mesh (area-weighted, seeded); "
        "the reference uses trimesh.sample.sample_surface unseeded, so the random streams differ",
        "threshold_m": threshold, "threshold_rule": "d < threshold", "cull": cull, "cull_gt": cull_gt,
        "align": "ICP point-to-point, 0.1 m, 30 iterations, relative 1e-6 (Open3D defaults)" if align else "none",
        "cameras": cameras, "virtual_cameras": virtual,
        "intrinsics": None if intrinsics is None else {k: getattr(intrinsics, k) for k in
                                                       ("fx", "fy", "cx", "cy", "height", "width")},
        "pose_convention": "camera-to-world, OpenCV (x right, y down, z forward), as Replica and ScanNet store them",
    }
    if cull == "occlusion":
        parameters.update(eps_m=eps, depth=depth)
    card = MetricCard("Indoor RGB-D SLAM mesh reconstruction (NICE-SLAM 3D metric)", REFERENCE,
                      "cm (distances), % (ratios); meshes in metres", dict(METRICS), parameters,
                      {k: os.fspath(v) for k, v in (inputs or {}).items() if v})
    return card.hash_inputs()


def slam_mesh_eval(
    rec,
    gt,
    c2w: np.ndarray | None = None,
    intrinsics: CameraIntrinsics | None = None,
    *,
    cull: str = "nice-slam",
    cull_gt: bool = False,
    eps: float = 0.03,
    depth_maps=None,
    virtual_c2w: np.ndarray | None = None,
    samples: int = SAMPLES,
    seed: int = 0,
    threshold: float = THRESHOLD,
    align: bool = False,
    device: str | torch.device = "cpu",
    progress: Callable[[str], None] | None = None,
    inputs: dict | None = None,
) -> SlamResult:
    """NICE-SLAM's accuracy / completion / completion ratio of a room mesh (see the module docstring).

    Args:
        rec, gt: the reconstruction and the ground truth: mesh files or (verts, faces), metres.
        c2w, intrinsics: the camera path (N, 4, 4), OpenCV camera-to-world (see
            :mod:`~pointmetrics.protocols.slam_io` for Replica and ScanNet), and its pinhole model;
            needed unless ``cull="none"``.
        cull: "nice-slam", "frustum", "occlusion" or "none" (:mod:`~pointmetrics.protocols.culling`).
        cull_gt: cull the ground truth the same way (for a ground truth that is not culled yet).
        eps, depth_maps, virtual_c2w: the "occlusion" culling's depth margin, depth images (rendered
            from the mesh being culled when None; used for the reconstruction only) and virtual views.
        samples, seed: surface samples per mesh (the reference's 200000) and the sampling seed.
        threshold: the completion-ratio / F-score distance in metres (strict "<").
        align: ICP-align the reconstruction to the ground truth first (the reference's default in
            ``calc_3d_metric``; off here, since a reconstruction from ground-truth poses is in frame).
        device: where culling, sampling and searches run.
        progress: called with the name of each step; inputs: {role: path} for the card's SHA-256.

    Raises ValueError when culling leaves no face (the mesh and poses disagree on frame or units).
    """
    step = progress or (lambda name: None)
    if cull not in CULL_METHODS:
        raise ValueError(f"cull must be one of {', '.join(CULL_METHODS)}, got {cull!r}")
    if not (isinstance(samples, int) and samples >= 1):
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    if not (threshold > 0 and math.isfinite(threshold)):
        raise ValueError(f"threshold must be a positive distance, got {threshold!r}")
    if cull != "none" and (c2w is None or intrinsics is None):
        raise ValueError(f"cull={cull!r} needs the camera poses (c2w) and intrinsics")
    device = torch.device(device)
    step("read meshes")
    meshes = {"rec": _mesh(rec, "rec"), "gt": _mesh(gt, "gt")}
    counts = {}
    for role in ("rec", "gt"):
        verts, faces = (t.to(device) for t in meshes[role])
        counts[f"{role}_faces"] = len(faces)
        if role == "rec" or cull_gt:
            step(f"cull {role}")
            keep = cull_mesh(verts, faces, c2w, intrinsics, cull, eps=eps, virtual_c2w=virtual_c2w,
                             depth_maps=depth_maps if role == "rec" else None, progress=step)
            faces = faces[keep]
        if len(faces) == 0:
            name = (inputs or {}).get(role) or role
            raise ValueError(f"{name}: culling ({cull}) keeps no face: no vertex is in front of a camera within the "
                             "image; are the mesh and the poses in the same frame and units (metres)?")
        counts[f"{role}_faces_kept"] = len(faces)
        meshes[role] = (verts, faces)
    transform = None
    if align:
        step("ICP alignment")
        (rv, rf), (gv, gf) = meshes["rec"], meshes["gt"]
        t = icp_point_to_point(rv[torch.unique(rf)], gv[torch.unique(gf)])
        transform = t.tolist()
        tt = torch.as_tensor(t, device=device)
        meshes["rec"] = (rv @ tt[:3, :3].T + tt[:3, 3], rf)
    step("sample surfaces")
    generator = torch.Generator().manual_seed(seed)
    points = {role: sample_points_on_mesh(v, f, samples, generator=generator, names=(f"{role} verts", f"{role} faces"))
              .points for role, (v, f) in meshes.items()}
    counts.update(rec_samples=samples, gt_samples=samples)
    step("nearest neighbours")
    values = slam_metrics(points["rec"], points["gt"], threshold)
    cameras = 0 if c2w is None else len(np.asarray(c2w).reshape(-1, 4, 4))
    virtual = 0 if virtual_c2w is None else len(np.asarray(virtual_c2w).reshape(-1, 4, 4))
    card = slam_card(cull, samples, seed, threshold, align, cull_gt, eps, intrinsics, cameras, virtual,
                     "rendered (pointmetrics.rasterize)" if depth_maps is None else "given depth images", inputs)
    return SlamResult(**values, counts=counts, transform=transform, card=card)
