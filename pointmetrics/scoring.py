"""Scores one prediction against one ground truth from files: the metrics of ``pointmetrics score``.

Every number comes from the library's metric functions, in the files' units, with its convention
spelled out next to it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch

from . import io
from .emd import earth_movers_distance
from .mesh import sample_points_on_mesh
from .mesh_metrics import point_to_surface_distance, volumetric_iou
from .pointcloud import correspondences


@dataclass
class Row:
    name: str
    value: float
    convention: str


@dataclass
class Scored:
    """Everything a report needs: the metric rows, the inputs' description, and per-point data."""

    rows: list[Row]
    description: dict
    pred_points: torch.Tensor
    gt_points: torch.Tensor
    accuracy: torch.Tensor  # (N,) distance of each prediction point to the ground truth
    completeness: torch.Tensor  # (M,) distance of each ground-truth point to the prediction
    taus: list[float] = field(default_factory=list)

    def metrics(self) -> dict:
        return {r.name: r.value for r in self.rows}


@dataclass
class _Input:
    geometry: io.Geometry
    points: torch.Tensor
    normals: torch.Tensor | None
    description: str


def _prepare(path: str, samples: int, seed: int) -> _Input:
    geometry = io.load(path)
    if geometry.is_mesh:
        generator = torch.Generator().manual_seed(seed)
        s = sample_points_on_mesh(geometry.vertices, geometry.faces, samples, generator=generator)
        description = f"mesh, {geometry.faces.shape[0]} faces, {samples} area-weighted samples (seed {seed})"
        return _Input(geometry, s.points, s.normals, description)
    return _Input(geometry, geometry.vertices, geometry.normals, f"point cloud, {geometry.vertices.shape[0]} points")


def _watertight(geometry: io.Geometry) -> bool:
    import trimesh

    mesh = trimesh.Trimesh(geometry.vertices.numpy(), geometry.faces.numpy(), process=False)
    return bool(mesh.is_watertight)


def score(
    pred_path: str,
    gt_path: str,
    samples: int = 100_000,
    seed: int = 0,
    taus: list[float] | None = None,
    emd_points: int = 0,
) -> Scored:
    """Scores ``pred_path`` against ``gt_path`` (meshes are sampled, point clouds used as they are).

    Always: CD-L1, CD-L2, accuracy, completeness, Hausdorff, distance percentiles, and F-score with
    precision and recall at each threshold (default 0.5%, 1%, 2% of the ground truth's
    bounding-box diagonal). When available: normal consistency (both inputs have normals), P2S
    (the ground truth is a mesh), volumetric IoU (both meshes watertight), and EMD on
    ``emd_points`` random points of each (0: not computed).
    """
    pred, gt = _prepare(pred_path, samples, seed), _prepare(gt_path, samples, seed + 1)
    if taus is None:  # named by their fraction, so that results of different pairs line up
        diagonal = float((gt.points.amax(0) - gt.points.amin(0)).norm())
        fractions = (0.005, 0.01, 0.02)
        taus = [f * diagonal for f in fractions]
        labels = [f"{100 * f:g}% diag" for f in fractions]
        tau_note = "0.5%, 1% and 2% of the ground truth's bounding-box diagonal"
    else:
        labels = [f"{tau:.4g}" for tau in taus]
        tau_note = "given"
    c = correspondences(pred.points, gt.points)
    accuracy, completeness = c.x_to_y[0], c.y_to_x[0]
    rows = [
        Row("CD-L1", float(c.chamfer(squared=False, halve=True)),
            "1/2 (mean_p d(p, G) + mean_g d(g, P)), Euclidean, unsquared (PCN, PoinTr)"),
        Row("CD-L2", float(c.chamfer(squared=True, halve=False)),
            "mean_p d(p, G)^2 + mean_g d(g, P)^2, squared, no 1/2 (PoinTr, GRNet)"),
        Row("accuracy", float(accuracy.mean()), "mean_p d(p, G): prediction to ground truth"),
        Row("completeness", float(completeness.mean()), "mean_g d(g, P): ground truth to prediction"),
        Row("Hausdorff", float(c.hausdorff().distance), "max(max_p d(p, G), max_g d(g, P))"),
    ]
    for label, values in (("accuracy", accuracy), ("completeness", completeness)):
        for q in (50, 90, 95, 99):
            rows.append(Row(f"{label} p{q}", float(torch.quantile(values.double(), q / 100)), f"{q}th percentile"))
    f = c.fscore(taus)
    for k, (tau, label) in enumerate(zip(taus, labels)):
        at = f"tau = {tau:.4g}"
        rows.append(Row(f"F-score@{label}", float(f.fscore[k]), f"2PR / (P + R), d < tau, {at} (Tanks and Temples)"))
        rows.append(Row(f"precision@{label}", float(f.precision[k]), f"fraction of prediction within tau, {at}"))
        rows.append(Row(f"recall@{label}", float(f.recall[k]), f"fraction of ground truth within tau, {at}"))
    if pred.normals is not None and gt.normals is not None:
        rows.append(Row("normal consistency", float(c.normal_consistency(pred.normals, gt.normals)),
                        "1/2 (mean |n_p . n_NN(p)| + mean |n_g . n_NN(g)|) (Occupancy Networks)"))
    if gt.geometry.is_mesh:
        p2s = point_to_surface_distance(pred.points, gt.geometry.vertices, gt.geometry.faces)
        rows.append(Row("P2S", float(p2s), "mean distance from prediction points to the ground-truth surface (ICON)"))
    if pred.geometry.is_mesh and gt.geometry.is_mesh and _watertight(pred.geometry) and _watertight(gt.geometry):
        generator = torch.Generator().manual_seed(seed)
        iou = volumetric_iou(pred.geometry.vertices, pred.geometry.faces, gt.geometry.vertices, gt.geometry.faces,
                             generator=generator)
        rows.append(Row("volumetric IoU", float(iou.iou), "|A n B| / |A u B|, winding-number inside test (ONet)"))
    if emd_points:
        generator = torch.Generator().manual_seed(seed + 2)
        x = pred.points[torch.randperm(len(pred.points), generator=generator)[:emd_points]]
        y = gt.points[torch.randperm(len(gt.points), generator=generator)[:emd_points]]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            emd = earth_movers_distance(x, y, rel_tol=1e-3)
        rows.append(Row("EMD", float(emd.distance),
                        f"mean |x - y_s(x)| over an optimal matching of {min(len(x), len(y))} random points each "
                        "(within 0.1%)"))
    description = {
        "pred": pred_path, "pred_input": pred.description, "gt": gt_path, "gt_input": gt.description,
        "thresholds": tau_note, "units": "the files' units (distances unsquared unless marked squared)",
    }
    return Scored(rows, description, pred.points, gt.points, accuracy, completeness, list(taus))
