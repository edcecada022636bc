"""`pointmetrics tnt RECONSTRUCTION SCENE_DIR [--traj LOG]`: the Tanks and Temples toolbox's evaluation."""

from __future__ import annotations

import argparse
import csv
import io as _io
import json
import os
import sys

from .. import io
from ..protocols.card import card_path_beside
from ..protocols.tnt import tnt_eval
from .common import Steps, note, positive_float, progress_wanted, quiet_option

NAME = "tnt"
SUMMARY = "Tanks and Temples precision / recall / F-score (the official python_toolbox/evaluation)"
DESCRIPTION = (
    "SCENE_DIR holds <scene>.ply, <scene>.json (crop), <scene>_COLMAP_SfM.log, <scene>_trans.txt and\n"
    "<scene>_mapping_reference.txt; the scene is the folder's name and sets tau (config.py).\n"
    "With --traj: camera-log RANSAC alignment and three ICP refinements (Open3D, as the toolbox).\n"
    "Without --traj the reconstruction must already be in the ground-truth frame (or give\n"
    "--transform); no registration runs unless --icp. Needs Open3D; --plots needs matplotlib."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("reconstruction", help="point cloud (a mesh file counts as its vertices, as in the toolbox)")
    p.add_argument("scene_dir", help="the scene folder of the toolbox's files")
    p.add_argument("--traj", metavar="LOG", help="your camera log (.log, see the toolbox's convert_to_logfile.py)")
    p.add_argument("--scene", help="scene name (default: the folder's name)")
    p.add_argument("--tau", type=positive_float, help="threshold (default: config.py's value for the scene)")
    p.add_argument("--transform", metavar="TXT", help="without --traj: an initial 4x4 (np.savetxt) instead of identity")
    p.add_argument("--icp", action=argparse.BooleanOptionalAction, default=None,
                   help="run the toolbox's three ICP refinements (default: with --traj only)")
    p.add_argument("--seed", type=int, default=0, help="seed of Open3D's RANSAC")
    p.add_argument("--device", default="cpu", help="device of the distance searches")
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON (numbers, transformation, histograms, card)")
    output.add_argument("--csv", metavar="FILE",
                        help="write CSV to FILE and the metric card beside it (FILE.card.json); '-' prints the CSV "
                             "and no card (use --json for it)")
    p.add_argument("--plots", metavar="DIR",
                   help="write the toolbox's outputs to DIR: PR/F plots (PNG), coloured precision/recall PLYs, "
                        "cumulative histograms (txt)")
    quiet_option(p)


def as_csv(result) -> str:
    """One row per number: metric, value, tau, scene, units, definition."""
    out = _io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["metric", "value", "tau", "scene", "units", "definition"])
    for name in ("precision", "recall", "fscore"):
        writer.writerow([name, repr(getattr(result, name)), repr(result.tau), result.scene, result.card.units,
                         result.card.metrics[name]])
    return out.getvalue()


def run(args) -> int:
    if args.plots:  # before the work: a bad output path must not cost the whole computation
        io.check_output_dir(args.plots)
        try:
            import matplotlib  # noqa: F401
        except ImportError as error:
            raise RuntimeError("--plots needs matplotlib: pip install matplotlib") from error
    if args.csv and args.csv != "-":
        io.check_output_file(args.csv)
    if args.transform and args.traj:
        raise ValueError("--transform is for a reconstruction without --traj (the camera log gives the alignment)")
    steps = Steps(progress_wanted(args), "tnt")
    try:
        result = tnt_eval(args.reconstruction, args.scene_dir, trajectory=args.traj, scene=args.scene, tau=args.tau,
                          transform=args.transform, icp=args.icp, seed=args.seed, plots_dir=args.plots,
                          progress=steps, device=args.device)
    finally:
        steps.close()
    for text in result.notes:
        note(text)
    if args.json:
        json.dump(result.as_dict(), sys.stdout, indent=2)
        print()
    elif args.csv:
        text = as_csv(result)
        if args.csv == "-":
            sys.stdout.write(text)
        else:
            with open(args.csv, "w", newline="") as f:
                f.write(text)
            result.card.write(card_path_beside(args.csv))
            print(f"wrote {args.csv} and {card_path_beside(args.csv)}", file=sys.stderr)
    else:
        _print_table(args, result)
    return 0


def _print_table(args, result) -> None:
    how = "camera log + ICP" if args.traj else ("given transform" if args.transform else "already aligned")
    if result.card.parameters["icp"] != "none" and not args.traj:
        how += " + ICP"
    print(f"Tanks and Temples {result.scene}: {args.reconstruction} ({how}; toolbox protocol)")
    print(f"  {'tau':<10} {result.tau:g}")
    for name, label in (("precision", "precision"), ("recall", "recall"), ("fscore", "f-score")):
        print(f"  {label:<10} {getattr(result, name):.4f}")
    print("  " + ", ".join(f"{k} {v}" for k, v in result.counts.items()))
    print("  transformation: " + "; ".join(" ".join(f"{v:.6g}" for v in row) for row in result.transformation))
    for path in result.files:
        print(f"wrote {os.fspath(path)}")
