"""`pointmetrics score PRED GT`: every point and surface metric of a prediction against a ground truth."""

from __future__ import annotations

import argparse

from .. import io
from ..protocols.card import card_path_beside
from ..protocols.scoring import Scored, score
from .common import Steps, emit, note, progress_wanted, score_arguments, score_options
from .report import as_csv, check_visuals_available, write_visuals

NAME = "score"
SUMMARY = "score a predicted mesh or point cloud against a ground truth"
DESCRIPTION = (
    "Meshes are sampled uniformly by area with the seed; point clouds are used as they are. Prints\n"
    "Chamfer (CD-L1, CD-L2), accuracy, completeness, Hausdorff, percentiles and F-score, each with\n"
    "its convention, and the noise floor (what a perfect prediction scores) when GT is a mesh.\n"
    "P2S is ICON's: ground-truth points to the predicted surface (needs a mesh prediction);\n"
    "pred_to_gt_surface is the other direction (needs a mesh ground truth).\n"
    "Metric card (how the numbers were computed, with the inputs' SHA-256): inside --json under\n"
    "\"card\"; with --out FILE and a table or --csv, written beside FILE as FILE's stem + .card.json."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pred", help="prediction: mesh (ply/obj/off/stl/glb) or point cloud (ply/pcd/xyz/npy)")
    p.add_argument("gt", help="ground truth, same formats")
    score_arguments(p)
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true",
                        help="print JSON instead of a table (with the metric card under \"card\")")
    output.add_argument("--csv", action="store_true",
                        help="print CSV: metric, value, noise floor, unit, convention and the inputs on every row")
    p.add_argument("--out", metavar="FILE",
                   help="write the table, JSON or CSV to FILE instead of stdout; for a table or CSV the metric card "
                        "goes beside it (results.csv -> results.card.json)")
    p.add_argument("--vis", metavar="DIR",
                   help="write coloured error clouds (PLY) and a distance histogram (PNG, needs matplotlib) to DIR")


def as_json(scored: Scored, files: list[str]) -> dict:
    """The ``--json`` object: inputs, metrics, noise_floor, units, conventions, notes, files, card."""
    return {"inputs": scored.description, "metrics": scored.metrics(), "noise_floor": scored.noise_floor,
            "units": {r.name: r.unit for r in scored.rows},
            "conventions": {r.name: r.convention for r in scored.rows}, "notes": scored.notes, "files": files,
            "card": scored.card.as_dict()}


def print_table(scored: Scored) -> None:
    d = scored.description
    print(f"prediction:   {d['pred']} ({d['pred_input']})")
    print(f"ground truth: {d['gt']} ({d['gt_input']})")
    print(f"F-score thresholds: {d['thresholds']}; units: {d['units']}")
    floor = scored.noise_floor
    if floor:
        print("noise floor: what a perfect prediction (the ground-truth mesh sampled again, another seed) scores "
              "at these sample counts")
    width = max(len(r.name) for r in scored.rows)
    floor_head = f"  {'noise floor':>12}" if floor else ""
    print(f"\n{'metric':<{width}}  {'value':>12}{floor_head}  convention")
    print(f"{'-' * width}  {'-' * 12}{'  ' + '-' * 12 if floor else ''}  {'-' * 10}")
    for r in scored.rows:
        floor_cell = (f"  {floor[r.name]:>12.6g}" if r.name in floor else f"  {'':>12}") if floor else ""
        print(f"{r.name:<{width}}  {r.value:>12.6g}{floor_cell}  {r.convention}")


def run(args) -> int:
    if args.out:  # before the work: a bad output path must not cost the whole computation
        io.check_output_file(args.out)
        if not args.json:
            io.check_output_file(card_path_beside(args.out))
    if args.vis:
        io.check_output_dir(args.vis)
        check_visuals_available()
    steps = Steps(progress_wanted(args), "score")
    try:
        scored = score(args.pred, args.gt, **score_options(args), progress=steps)
        files = []
        if args.vis:
            steps("writing pictures")
            files = write_visuals(scored, args.vis)
    finally:
        steps.close()
    for text in scored.notes:
        note(text)
    def table() -> None:
        print_table(scored)
        for path in files:
            print(f"wrote {path}")

    emit(args, scored.card, lambda: as_json(scored, files), lambda: as_csv(scored), table)
    return 0
