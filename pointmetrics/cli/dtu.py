"""`pointmetrics dtu DATA --scan ID --dataset-dir DIR`: the DTU MVS protocol (DTUeval-python)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings

from .. import io
from ..protocols.dtu import dtu_eval
from .common import progress_wanted, quiet_option

NAME = "dtu"
SUMMARY = "DTU MVS accuracy / completeness / overall (DTUeval-python protocol)"
DESCRIPTION = (
    "Lattice sampling, seeded shuffle, 0.2 mm reduction, box and observation-mask filters,\n"
    "ground plane; numbers in millimetres. The data must be in millimetres in the DTU frame."
)


def add_arguments(d: argparse.ArgumentParser) -> None:
    d.add_argument("data", help="reconstructed mesh or point cloud (millimetres, DTU frame)")
    d.add_argument("--scan", type=int, required=True, help="DTU scan id")
    d.add_argument("--dataset-dir", required=True, help="DTU root with Points/stl and ObsMask")
    d.add_argument("--mode", choices=["auto", "mesh", "pcd"], default="auto",
                   help="mesh: lattice-sample the faces; pcd: use the points as they are; auto: mesh if it has faces")
    d.add_argument("--seed", type=int, default=0, help="shuffle seed")
    d.add_argument("--vis", metavar="DIR", help="write vis_{scan}_d2s.ply and vis_{scan}_s2d.ply to DIR")
    d.add_argument("--json", action="store_true",
                   help="print JSON instead of text (with the metric card under \"card\")")
    quiet_option(d)


def run(args) -> int:
    if args.vis:
        io.check_output_dir(args.vis)
    with warnings.catch_warnings():  # a NaN term is explained below, not left to a raw warning
        warnings.simplefilter("ignore", RuntimeWarning)
        result = dtu_eval(args.data, args.scan, args.dataset_dir, mode=args.mode, seed=args.seed,
                          vis_dir=args.vis, progress=progress_wanted(args))
    empty = [name for name in ("accuracy", "completeness") if math.isnan(getattr(result, name))]
    if empty:
        counts = ", ".join(f"{k} {v}" for k, v in result.counts.items())
        raise ValueError(
            f"{args.data}: no {' and no '.join(empty)} distance within max_dist (20 mm) of scan {args.scan} "
            f"({counts}), so there is nothing to average. DTU expects millimetres in the DTU world frame; data in "
            "metres or in a normalised frame falls outside the scan's box and observation mask")
    if args.json:
        json.dump(result.as_dict(), sys.stdout, indent=2)
        print()
    else:
        print(f"DTU scan {result.scan}: {args.data} (DTUeval-python protocol, millimetres)")
        print(f"  reference: {result.card.reference}; --json prints the full metric card")
        for name in ("accuracy", "completeness", "overall"):
            print(f"  {name:<13} {getattr(result, name):.6f}")
        print("  " + ", ".join(f"{k} {v}" for k, v in result.counts.items()))
        for path in result.files:
            print(f"wrote {path}")
    return 0


