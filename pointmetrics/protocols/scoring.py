"""Scores one prediction against one ground truth from files: the metrics of ``pointmetrics score``.

Every number comes from the library's metric functions, in the files' units, with its convention
spelled out next to it. "P2S" has one meaning everywhere in this package, ICON's: the mean distance
from ground-truth (scan) points to the predicted (reconstructed) surface. The other direction, from
prediction points to the ground-truth surface, is ``pred_to_gt_surface``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .. import io
from ..emd import earth_movers_distance
from ..mesh import sample_points_on_mesh
from ..mesh_metrics import point_to_surface_distance, volumetric_iou
from ..pointcloud import Correspondences, correspondences
from .card import MetricCard

FILE_UNITS = "file units"
SQUARED_UNITS = "squared file units"
FRACTION = "fraction (0 to 1)"
# `score` reproduces no single repository: it states its conventions, each naming where it is used.
SCORE_REFERENCE = ("pointmetrics score conventions (pointmetrics/protocols/scoring.py): CD-L1 as PCN/PoinTr, "
                   "CD-L2 as PoinTr/GRNet, F-score as Tanks and Temples, normal consistency and volumetric IoU as "
                   "Occupancy Networks, P2S as ICON/CAPE")
_HIGHER_IS_BETTER = ("F-score", "precision", "recall", "normal consistency", "volumetric IoU")


@dataclass
class Row:
    name: str
    value: float
    convention: str
    unit: str = FILE_UNITS


@dataclass
class Scored:
    """Everything a report needs: the metric rows, the inputs' description, and per-point data.

    noise_floor: what a perfect prediction (the ground-truth mesh itself, sampled again with
    another seed at the prediction's point count) scores, per metric name; empty when the ground
    truth is a point cloud. notes: things the user should be told (e.g. a mesh file with no faces).
    card: how the numbers were computed (each metric's convention, unit and direction, the samples,
    seeds and thresholds, the inputs' SHA-256).
    """

    rows: list[Row]
    description: dict
    pred_points: torch.Tensor
    gt_points: torch.Tensor
    accuracy: torch.Tensor  # (N,) distance of each prediction point to the ground truth
    completeness: torch.Tensor  # (M,) distance of each ground-truth point to the prediction
    taus: list[float] = field(default_factory=list)
    tau_labels: list[str] = field(default_factory=list)
    noise_floor: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    card: MetricCard | None = None

    def metrics(self) -> dict:
        """{metric name: value}; the JSON ``metrics`` object."""
        return {r.name: r.value for r in self.rows}


@dataclass
class _Input:
    geometry: io.Geometry
    points: torch.Tensor
    normals: torch.Tensor | None
    description: str


def _sample(path: str, geometry: io.Geometry, samples: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    try:
        return sample_points_on_mesh(geometry.vertices, geometry.faces, samples, generator=generator)
    except ValueError as error:  # e.g. every face degenerate: say which file
        raise io.GeometryFileError(f"{path}: {error}") from error


def _prepare(path: str, samples: int, seed: int) -> _Input:
    geometry = io.load(path)
    if geometry.is_mesh:
        s = _sample(path, geometry, samples, seed)
        description = f"mesh, {geometry.faces.shape[0]} faces, {samples} area-weighted samples (seed {seed})"
        return _Input(geometry, s.points, s.normals, description)
    return _Input(geometry, geometry.vertices, geometry.normals, f"point cloud, {geometry.vertices.shape[0]} points")


def _watertight(geometry: io.Geometry) -> bool:
    import trimesh

    mesh = trimesh.Trimesh(geometry.vertices.numpy(), geometry.faces.numpy(), process=False)
    return bool(mesh.is_watertight)


def _thresholds(gt_path: str, gt: _Input, taus: list[float] | None) -> tuple[list[float], list[str], str]:
    """(taus, their labels, a note on where they come from); defaults are fractions of the ground
    truth's bounding-box diagonal, named by their fraction so that results of different pairs line up."""
    if taus is not None:
        return list(taus), [f"{tau:.4g}" for tau in taus], "given"
    diagonal = float((gt.points.amax(0) - gt.points.amin(0)).norm())
    if not diagonal > 0:
        raise ValueError(
            f"{gt_path}: the ground truth's bounding box is degenerate ({_coincide(len(gt.points))}), so the "
            "default F-score thresholds, fractions of its diagonal, would be 0; use more --samples or give --tau")
    fractions = (0.005, 0.01, 0.02)
    return ([f * diagonal for f in fractions], [f"{100 * f:g}% diag" for f in fractions],
            "0.5%, 1% and 2% of the ground truth's bounding-box diagonal")


def _coincide(count: int) -> str:
    return "a single point" if count == 1 else f"all {count} points coincide"


def _point_rows(pred: _Input, gt: _Input, taus: list[float], labels: list[str]) -> tuple[list[Row], Correspondences]:
    """The metrics of two point sets: Chamfer, accuracy/completeness, Hausdorff, percentiles,
    F-score, and normal consistency when both have normals."""
    c = correspondences(pred.points, gt.points)
    accuracy, completeness = c.x_to_y[0], c.y_to_x[0]
    rows = [
        Row("CD-L1", float(c.chamfer(squared=False, halve=True)),
            "1/2 (mean_p d(p, G) + mean_g d(g, P)), Euclidean, unsquared (PCN, PoinTr)"),
        Row("CD-L2", float(c.chamfer(squared=True, halve=False)),
            "mean_p d(p, G)^2 + mean_g d(g, P)^2, squared, no 1/2 (PoinTr, GRNet)", SQUARED_UNITS),
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
        rows.append(Row(f"F-score@{label}", float(f.fscore[k]), f"2PR / (P + R), d < tau, {at} (Tanks and Temples)",
                        FRACTION))
        rows.append(Row(f"precision@{label}", float(f.precision[k]), f"fraction of prediction within tau, {at}",
                        FRACTION))
        rows.append(Row(f"recall@{label}", float(f.recall[k]), f"fraction of ground truth within tau, {at}", FRACTION))
    if pred.normals is not None and gt.normals is not None:
        rows.append(Row("normal consistency", float(c.normal_consistency(pred.normals, gt.normals)),
                        "1/2 (mean |n_p . n_NN(p)| + mean |n_g . n_NN(g)|) (Occupancy Networks)", FRACTION))
    return rows, c


def _surface_rows(pred: _Input, gt: _Input) -> list[Row]:
    """Exact point-to-mesh distances: to the ground-truth surface when it is a mesh, and ICON's P2S
    (ground-truth points to the predicted surface) when the prediction is a mesh."""
    rows = []
    if gt.geometry.is_mesh:
        d = point_to_surface_distance(pred.points, gt.geometry.vertices, gt.geometry.faces)
        rows.append(Row("pred_to_gt_surface", float(d),
                        "mean distance from prediction points to the ground-truth surface (not ICON's P2S)"))
    if pred.geometry.is_mesh:
        d = point_to_surface_distance(gt.points, pred.geometry.vertices, pred.geometry.faces)
        rows.append(Row("P2S", float(d), "mean distance from ground-truth points to the predicted surface (ICON/CAPE)"))
    return rows


def _emd_row(x: torch.Tensor, y: torch.Tensor, emd_points: int, seed: int) -> Row:
    generator = torch.Generator().manual_seed(seed)
    x = x[torch.randperm(len(x), generator=generator)[:emd_points]]
    y = y[torch.randperm(len(y), generator=generator)[:emd_points]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        emd = earth_movers_distance(x, y, rel_tol=1e-3)
    return Row("EMD", float(emd.distance),
               f"mean |x - y_s(x)| over an optimal matching of {min(len(x), len(y))} random points each (within 0.1%)")


def _noise_floor(pred: _Input, gt: _Input, samples: int, seed: int, taus: list[float], labels: list[str],
                 emd_points: int, names: set[str]) -> dict:
    """The scores of a perfect prediction at these sample counts: the ground-truth mesh sampled
    again (another seed, as many points as the prediction has), scored like the prediction."""
    count = samples if pred.geometry.is_mesh else len(pred.points)
    s = _sample("ground truth", gt.geometry, count, seed + 3)
    perfect_geometry = gt.geometry if pred.geometry.is_mesh else io.Geometry(s.points)
    perfect = _Input(perfect_geometry, s.points, s.normals if pred.normals is not None else None, "noise floor")
    rows = _point_rows(perfect, gt, taus, labels)[0] + _surface_rows(perfect, gt)
    if emd_points:
        rows.append(_emd_row(perfect.points, gt.points, emd_points, seed + 2))
    floor = {r.name: r.value for r in rows if r.name in names}
    if "volumetric IoU" in names:
        floor["volumetric IoU"] = 1.0  # the same mesh: identical inside tests
    return floor


def score(
    pred_path: str,
    gt_path: str,
    samples: int = 100_000,
    seed: int = 0,
    taus: list[float] | None = None,
    emd_points: int = 0,
    noise_floor: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Scored:
    """Scores ``pred_path`` against ``gt_path`` (meshes are sampled, point clouds used as they are).

    Always: CD-L1, CD-L2, accuracy, completeness, Hausdorff, distance percentiles, and F-score with
    precision and recall at each threshold (default 0.5%, 1%, 2% of the ground truth's
    bounding-box diagonal). When available: normal consistency (both inputs have normals),
    ``pred_to_gt_surface`` (the ground truth is a mesh), ``P2S`` in ICON's direction, ground truth
    to the predicted surface (the prediction is a mesh), volumetric IoU (both meshes watertight),
    and EMD on ``emd_points`` random points of each (0: not computed).

    With ``noise_floor`` and a ground-truth mesh, also scores a perfect prediction (the ground
    truth sampled again with another seed) at the same sample counts: the sampling noise below
    which differences mean nothing. ``progress``, if given, is called with each step's name.
    """
    step = progress or (lambda name: None)
    step(f"reading {pred_path}")
    pred = _prepare(pred_path, samples, seed)
    step(f"reading {gt_path}")
    gt = _prepare(gt_path, samples, seed + 1)
    taus, labels, tau_note = _thresholds(gt_path, gt, taus)
    step("nearest neighbours")
    rows, c = _point_rows(pred, gt, taus, labels)
    step("point-to-surface distances")
    rows += _surface_rows(pred, gt)
    if pred.geometry.is_mesh and gt.geometry.is_mesh and _watertight(pred.geometry) and _watertight(gt.geometry):
        step("volumetric IoU")
        generator = torch.Generator().manual_seed(seed)
        iou = volumetric_iou(pred.geometry.vertices, pred.geometry.faces, gt.geometry.vertices, gt.geometry.faces,
                             generator=generator)
        rows.append(Row("volumetric IoU", float(iou.iou), "|A n B| / |A u B|, winding-number inside test (ONet)",
                        FRACTION))
    if emd_points:
        step(f"EMD on {min(emd_points, len(pred.points), len(gt.points))} points")
        rows.append(_emd_row(pred.points, gt.points, emd_points, seed + 2))
    floor = {}
    if noise_floor and gt.geometry.is_mesh:
        step("noise floor: the ground truth against a second sample of itself")
        floor = _noise_floor(pred, gt, samples, seed, taus, labels, emd_points, {r.name for r in rows})
    description = {
        "pred": pred_path, "pred_input": pred.description, "gt": gt_path, "gt_input": gt.description,
        "thresholds": tau_note, "units": "the files' units (distances unsquared unless marked squared)",
    }
    if floor:
        description["noise_floor"] = ("the scores of the ground-truth mesh against a second, independently seeded "
                                      "sample of itself at the prediction's point count: a perfect prediction")
    notes = [g.geometry.note for g in (pred, gt) if g.geometry.note]
    card = score_card(pred_path, gt_path, rows, pred, gt, samples, seed, taus, labels, tau_note, emd_points, floor)
    return Scored(rows, description, pred.points, gt.points, c.x_to_y[0], c.y_to_x[0], list(taus), labels, floor,
                  notes, card)


def score_card(pred_path: str, gt_path: str, rows: list[Row], pred: _Input, gt: _Input, samples: int, seed: int,
               taus: list[float], labels: list[str], tau_note: str, emd_points: int, floor: dict) -> MetricCard:
    """The metric card of one ``score``: per metric its convention, unit and direction; the point
    counts, seeds (pred: seed, gt: seed + 1, EMD subsets: seed + 2, noise floor: seed + 3) and
    F-score thresholds; the inputs' SHA-256."""
    def definition(row: Row) -> str:
        what = row.convention
        if row.name.startswith(("accuracy p", "completeness p")):  # the row says only "50th percentile"
            towards = "prediction to ground truth" if row.name.startswith("accuracy") else "ground truth to prediction"
            what = f"{what} of the {row.name.split()[0]} distances ({towards})"
        squaring = {SQUARED_UNITS: "squared distances", FILE_UNITS: "Euclidean distances, unsquared"}.get(row.unit)
        better = "higher is better" if row.name.startswith(_HIGHER_IS_BETTER) else "lower is better"
        return "; ".join(part for part in (what, squaring, f"unit: {row.unit}", better) if part)

    return MetricCard(
        protocol="pointmetrics score",
        reference=SCORE_REFERENCE,
        units="the files' units (distances unsquared unless the unit says squared)",
        metrics={r.name: definition(r) for r in rows},
        parameters={"samples": samples, "seed": seed, "sampler": "area-weighted, torch.Generator seeded",
                    "pred_input": pred.description, "gt_input": gt.description,
                    "points": {"pred": len(pred.points), "gt": len(gt.points)},
                    "seeds": {"pred": seed, "gt": seed + 1, "emd": seed + 2, "noise_floor": seed + 3},
                    "taus": list(taus), "tau_labels": list(labels), "thresholds": tau_note,
                    "emd_points": emd_points, "noise_floor": bool(floor)},
        inputs={"pred": pred_path, "gt": gt_path},
    ).hash_inputs()
