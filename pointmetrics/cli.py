"""The ``pointmetrics`` command line.

    pointmetrics score PRED GT [--samples N] [--seed S] [--tau T ...] [--json]

Meshes are sampled uniformly by area (seeded); point clouds are used as they are. Every number is
computed by the library's metric functions, in the files' units, and printed with its convention.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass

import torch

from . import io
from .mesh import sample_points_on_mesh
from .pointcloud import correspondences


@dataclass
class Row:
    name: str
    value: float
    convention: str


def _points(path: str, samples: int, seed: int) -> tuple[torch.Tensor, str]:
    geometry = io.load(path)
    if geometry.is_mesh:
        generator = torch.Generator().manual_seed(seed)
        pts = sample_points_on_mesh(geometry.vertices, geometry.faces, samples, generator=generator).points
        return pts, f"mesh, {geometry.faces.shape[0]} faces, {samples} area-weighted samples (seed {seed})"
    return geometry.vertices, f"point cloud, {geometry.vertices.shape[0]} points"


def score(pred_path: str, gt_path: str, samples: int = 100_000, seed: int = 0, taus: list[float] | None = None):
    """Scores a prediction against a ground truth; returns (rows, description dict)."""
    pred, pred_desc = _points(pred_path, samples, seed)
    gt, gt_desc = _points(gt_path, samples, seed + 1)
    if taus is None:
        diagonal = float((gt.amax(0) - gt.amin(0)).norm())
        taus = [f * diagonal for f in (0.005, 0.01, 0.02)]
        tau_note = "0.5%, 1% and 2% of the ground truth's bounding-box diagonal"
    else:
        tau_note = "given"
    c = correspondences(pred, gt)
    accuracy = c.x_to_y
    completeness = c.y_to_x
    hausdorff = c.hausdorff()
    rows = [
        Row(
            "CD-L1",
            float(c.chamfer(squared=False, halve=True)),
            "1/2 (mean_p d(p, G) + mean_g d(g, P)), Euclidean, unsquared (PCN, PoinTr)",
        ),
        Row(
            "CD-L2",
            float(c.chamfer(squared=True, halve=False)),
            "mean_p d(p, G)^2 + mean_g d(g, P)^2, squared, no 1/2 (PoinTr, GRNet)",
        ),
        Row("accuracy", float(accuracy.mean()), "mean_p d(p, G): prediction to ground truth"),
        Row("completeness", float(completeness.mean()), "mean_g d(g, P): ground truth to prediction"),
        Row("Hausdorff", float(hausdorff.distance), "max(max_p d(p, G), max_g d(g, P))"),
    ]
    for q in (50, 90, 95, 99):
        rows.append(Row(f"accuracy p{q}", float(torch.quantile(accuracy[0].double(), q / 100)), f"{q}th percentile"))
    for q in (50, 90, 95, 99):
        rows.append(
            Row(f"completeness p{q}", float(torch.quantile(completeness[0].double(), q / 100)), f"{q}th percentile")
        )
    f = c.fscore(taus)
    for k, tau in enumerate(taus):
        rows.append(Row(f"F-score@{tau:.4g}", float(f.fscore[k]), "2PR / (P + R), d < tau (Tanks and Temples)"))
        rows.append(Row(f"precision@{tau:.4g}", float(f.precision[k]), "fraction of prediction within tau"))
        rows.append(Row(f"recall@{tau:.4g}", float(f.recall[k]), "fraction of ground truth within tau"))
    description = {
        "pred": pred_path,
        "pred_input": pred_desc,
        "gt": gt_path,
        "gt_input": gt_desc,
        "thresholds": tau_note,
        "units": "the files' units (distances unsquared unless marked squared)",
    }
    return rows, description


def _print_table(rows: list[Row], description: dict) -> None:
    print(f"prediction:   {description['pred']} ({description['pred_input']})")
    print(f"ground truth: {description['gt']} ({description['gt_input']})")
    print(f"F-score thresholds: {description['thresholds']}; units: {description['units']}")
    width = max(len(r.name) for r in rows)
    print(f"\n{'metric':<{width}}  {'value':>12}  convention")
    print(f"{'-' * width}  {'-' * 12}  {'-' * 10}")
    for r in rows:
        print(f"{r.name:<{width}}  {r.value:>12.6g}  {r.convention}")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive distance, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pointmetrics", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("score", help="score a predicted mesh or point cloud against a ground truth")
    p.add_argument("pred", help="prediction: mesh (ply/obj/off/stl/glb) or point cloud (ply/pcd/xyz/npy)")
    p.add_argument("gt", help="ground truth, same formats")
    p.add_argument("--samples", type=_positive_int, default=100_000, help="points sampled on each mesh")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--tau", type=_positive_float, nargs="+", help="F-score thresholds (default: from GT size)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    try:
        rows, description = score(args.pred, args.gt, args.samples, args.seed, args.tau)
    except (io.GeometryFileError, ValueError, TypeError) as error:
        print(f"pointmetrics: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        json.dump(
            {
                "inputs": description,
                "metrics": {r.name: r.value for r in rows},
                "conventions": {r.name: r.convention for r in rows},
            },
            sys.stdout,
            indent=2,
        )
        print()
    else:
        _print_table(rows, description)
    return 0


if __name__ == "__main__":
    sys.exit(main())
