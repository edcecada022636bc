"""`pointmetrics slam REC GT`: indoor RGB-D SLAM room meshes (NICE-SLAM's 3D metric, with culling)."""

from __future__ import annotations

import argparse
import csv
import io as _io
import os

import numpy as np

from .. import io
from ..protocols import slam_io
from ..protocols.card import card_path_beside
from ..protocols.culling import CULL_METHODS
from ..protocols.slam import METRICS, SAMPLES, THRESHOLD, UNITS, SlamResult, slam_mesh_eval
from .common import Steps, emit, note, positive_float, positive_int, progress_wanted, quiet_option

NAME = "slam"
SUMMARY = "indoor SLAM room mesh accuracy / completion / completion ratio (NICE-SLAM protocol, with culling)"
DESCRIPTION = (
    "Culls the reconstruction to what the cameras saw (nice-slam: NICE-SLAM's frustum test; frustum and\n"
    "occlusion: Co-SLAM's neural_slam_eval variants, occlusion depth-tested against depth rendered by\n"
    "our rasteriser or the dataset's depth images), samples both meshes, and reports accuracy and\n"
    "completion (cm), completion ratio (%, d < 5 cm), Chamfer-L1 and F-score at 5 cm. Meshes and poses\n"
    "in metres; poses camera-to-world in the OpenCV convention as Replica's traj.txt and ScanNet's\n"
    "pose/*.txt store them. The ground truth is expected culled already (NICE-SLAM's cull_replica_mesh),\n"
    "or --cull-gt culls it the same way.\n"
    "Metric card: inside --json under \"card\"; with --out FILE and a table or --csv, beside FILE."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("rec", help="reconstructed mesh (metres, in the poses' world frame)")
    p.add_argument("gt", help="ground-truth mesh (metres), usually already culled")
    cams = p.add_mutually_exclusive_group()
    cams.add_argument("--replica", metavar="DIR",
                      help="Replica sequence (NICE-SLAM layout): DIR/traj.txt, DIR/results/depth*.png; intrinsics of "
                           "NICE-SLAM's replica.yaml (1200 x 680, f 600, c 599.5 339.5) unless --intrinsics")
    cams.add_argument("--scannet", metavar="DIR",
                      help="ScanNet scene: DIR/pose/<i>.txt, DIR/intrinsic/intrinsic_depth.txt, DIR/depth/<i>.png")
    cams.add_argument("--poses", metavar="PATH",
                      help="a traj.txt (one 4 x 4 per line) or a folder of <i>.txt poses; needs --intrinsics and "
                           "--image-size")
    p.add_argument("--intrinsics", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"), help="pinhole intrinsics")
    p.add_argument("--image-size", type=positive_int, nargs=2, metavar=("H", "W"), help="image height and width")
    p.add_argument("--cull", choices=CULL_METHODS, default="nice-slam",
                   help="nice-slam: NICE-SLAM's cull_mesh.py; frustum / occlusion: neural_slam_eval's cull_mesh.py "
                        "without / with --remove_occlusion; none: no culling")
    p.add_argument("--cull-gt", action="store_true", help="cull the ground truth the same way")
    p.add_argument("--stride", type=positive_int, default=1,
                   help="use every STRIDE-th pose (NICE-SLAM: 1, neural_slam_eval's --skip: 2)")
    p.add_argument("--eps", type=positive_float, default=0.03, help="occlusion: depth-test margin in metres")
    p.add_argument("--depth", choices=["render", "dataset"], default="render",
                   help="occlusion: depth rendered from the reconstruction (the reference) or the dataset's depth "
                        "images (--replica / --scannet)")
    p.add_argument("--virtual-cameras", metavar="DIR",
                   help="occlusion: a folder of <i>.txt OpenCV poses that only add observations (Co-SLAM)")
    p.add_argument("--align", action="store_true",
                   help="ICP-align the reconstruction to the ground truth first (eval_recon.py's align=True)")
    p.add_argument("--samples", type=positive_int, default=SAMPLES, help="surface samples per mesh")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--threshold", type=positive_float, default=THRESHOLD,
                   help="completion-ratio / F-score distance in metres (d < threshold)")
    p.add_argument("--device", default="cpu", help="where culling, sampling and searches run (cpu, cuda)")
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON (with the metric card under \"card\")")
    output.add_argument("--csv", action="store_true", help="print CSV: metric, value, unit, convention and the inputs")
    p.add_argument("--out", metavar="FILE", help="write the output to FILE; for a table or CSV the metric card goes "
                                                 "beside it (results.csv -> results.card.json)")
    quiet_option(p)


def _intrinsics(args, default: slam_io.CameraIntrinsics | None) -> slam_io.CameraIntrinsics:
    if args.intrinsics is None and args.image_size is None and default is not None:
        return default
    if args.intrinsics is None and default is None:
        raise ValueError("--poses needs --intrinsics FX FY CX CY and --image-size H W")
    fx, fy, cx, cy = args.intrinsics if args.intrinsics is not None else (default.fx, default.fy, default.cx,
                                                                          default.cy)
    if args.image_size is not None:
        height, width = args.image_size
    elif default is not None:
        height, width = default.height, default.width
    else:
        raise ValueError("--poses needs --image-size H W with --intrinsics")
    return slam_io.CameraIntrinsics(fx, fy, cx, cy, height, width)


def _sequence(args) -> tuple[slam_io.RgbdSequence | None, dict]:
    """The camera path the options name, and the files it came from (for the card)."""
    if args.replica:
        seq = slam_io.load_replica(args.replica, _intrinsics(args, slam_io.REPLICA_INTRINSICS)
                                   if (args.intrinsics or args.image_size) else None)
        return seq, {"poses": os.path.join(args.replica, "traj.txt")}
    if args.scannet:
        given = _intrinsics(args, None) if args.intrinsics and args.image_size else None
        seq = slam_io.load_scannet(args.scannet, given)  # reads intrinsic_depth.txt unless both are given
        if given is None and (args.intrinsics or args.image_size):
            seq.intrinsics = _intrinsics(args, seq.intrinsics)
        return seq, {"poses": os.path.join(args.scannet, "pose"),
                     "intrinsics": os.path.join(args.scannet, "intrinsic", "intrinsic_depth.txt")}
    if args.poses:
        loader = slam_io.load_pose_folder if os.path.isdir(args.poses) else slam_io.load_trajectory
        c2w = loader(args.poses)
        lost = int((~np.isfinite(c2w).all(axis=(1, 2))).sum())
        return slam_io.RgbdSequence(c2w, _intrinsics(args, None), [], 1.0, lost), {"poses": args.poses}
    if args.cull != "none":
        raise ValueError(f"--cull {args.cull} needs a camera path: --replica DIR, --scannet DIR or --poses PATH "
                         "(or --cull none)")
    return None, {}


def _depth_maps(args, seq: slam_io.RgbdSequence, count: int):
    if args.depth == "render" or args.cull != "occlusion":
        return None
    if seq is None or not seq.depth_files:
        raise ValueError("--depth dataset needs the depth images of --replica DIR (results/depth*.png) or "
                         "--scannet DIR (depth/<i>.png)")
    files = seq.depth_files[::args.stride]
    if len(files) != count:
        raise ValueError(f"--depth dataset: {len(files)} depth images for {count} poses (after --stride)")
    return [slam_io.read_depth_png(f, seq.depth_scale) for f in files]


def _rows(result: SlamResult) -> list[tuple[str, float, str, str]]:
    return [(name, value, UNITS[name], METRICS[name]) for name, value in result.metrics().items()]


def as_csv(result: SlamResult, args) -> str:
    """One row per metric with its unit, convention and the inputs, so that each row stands on its own."""
    out = _io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["metric", "value", "unit", "convention", "rec", "gt", "cull", "cameras", "samples", "seed",
                     "threshold_m"])
    p = result.card.parameters
    for name, value, unit, convention in _rows(result):
        writer.writerow([name, repr(value), unit, convention, args.rec, args.gt, p["cull"], p["cameras"],
                         p["samples"], p["seed"], p["threshold_m"]])
    return out.getvalue()


def print_table(result: SlamResult, args) -> None:
    c, p = result.counts, result.card.parameters
    print(f"reconstruction: {args.rec} ({c['rec_faces_kept']} of {c['rec_faces']} faces kept)")
    print(f"ground truth:   {args.gt} ({c['gt_faces_kept']} of {c['gt_faces']} faces kept)")
    virtual = f" + {p['virtual_cameras']} virtual" if p["virtual_cameras"] else ""
    print(f"protocol: NICE-SLAM 3D metric; culling {p['cull']} over {p['cameras']} cameras{virtual}; "
          f"{p['samples']} samples per mesh, seed {p['seed']}; threshold {p['threshold_m']:g} m (d <); "
          f"alignment: {p['align']}")
    width = max(len(name) for name in METRICS)
    print(f"\n{'metric':<{width}}  {'value':>10}  unit  convention")
    print(f"{'-' * width}  {'-' * 10}  ----  {'-' * 10}")
    for name, value, unit, convention in _rows(result):
        print(f"{name:<{width}}  {value:>10.4f}  {unit:<4}  {convention}")


def run(args) -> int:
    if args.out:  # before the work: a bad output path must not cost the whole computation
        io.check_output_file(args.out)
        if not args.json:
            io.check_output_file(card_path_beside(args.out))
    if args.virtual_cameras and args.cull != "occlusion":
        raise ValueError("--virtual-cameras only adds observations to --cull occlusion")
    seq, files = _sequence(args)
    c2w = intrinsics = virtual = None
    if seq is not None:
        c2w, intrinsics = seq.c2w[::args.stride], seq.intrinsics
        if seq.lost:
            note(f"{seq.lost} of {len(seq.c2w)} poses are not finite (lost tracking); those cameras see nothing")
    if args.virtual_cameras:
        virtual = slam_io.load_pose_folder(args.virtual_cameras)
        files["virtual_cameras"] = args.virtual_cameras
    depth_maps = _depth_maps(args, seq, 0 if c2w is None else len(c2w))
    if depth_maps is not None and virtual is not None:
        raise ValueError("--depth dataset has no depth images for --virtual-cameras; use --depth render")
    steps = Steps(progress_wanted(args), "slam")
    try:
        result = slam_mesh_eval(args.rec, args.gt, c2w, intrinsics, cull=args.cull, cull_gt=args.cull_gt,
                                eps=args.eps, depth_maps=depth_maps, virtual_c2w=virtual, samples=args.samples,
                                seed=args.seed, threshold=args.threshold, align=args.align, device=args.device,
                                progress=steps, inputs={"rec": args.rec, "gt": args.gt, **files})
    finally:
        steps.close()
    emit(args, result.card, lambda: {"rec": args.rec, "gt": args.gt, "conventions": METRICS, **result.as_dict()},
         lambda: as_csv(result, args), lambda: print_table(result, args))
    return 0
