"""The ``pointmetrics`` command line.

    pointmetrics score PRED GT [--samples N] [--seed S] [--tau T ...] [--emd N] [--json | --csv] [--vis DIR]
    pointmetrics dtu DATA --scan ID --dataset-dir DIR [--mode auto|mesh|pcd] [--seed S] [--vis DIR] [--json]
    pointmetrics human PRED GT [--backend icon2022|econ] [--samples N] [--image-size S] [--seed S]
                       [--png DIR] [--exact] [--json]
    pointmetrics batch MANIFEST.csv [--out RESULTS.jsonl] [score options]   (also under torchrun)

Meshes are sampled uniformly by area (seeded); point clouds are used as they are. Every number is
computed by the library's metric functions, in the files' units, and printed with its convention.
Errors print one line naming the file and the problem, and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

from . import io
from .scoring import Row, score


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


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive distance, got {text}")
    return value


def _score_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--samples", type=_positive_int, default=100_000, help="points sampled on each mesh")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--tau", type=_positive_float, nargs="+", help="F-score thresholds (default: from GT size)")
    p.add_argument("--emd", type=_non_negative_int, default=0, metavar="N",
                   help="also compute EMD on N random points of each input (0: off)")


def _options(args) -> dict:
    return {"samples": args.samples, "seed": args.seed, "taus": args.tau, "emd_points": args.emd}


def _cmd_score(args) -> int:
    scored = score(args.pred, args.gt, **_options(args))
    files = []
    if args.vis:
        from .report import write_visuals

        files = write_visuals(scored, args.vis)
    if args.json:
        json.dump({"inputs": scored.description, "metrics": scored.metrics(),
                   "conventions": {r.name: r.convention for r in scored.rows}, "files": files}, sys.stdout, indent=2)
        print()
    elif args.csv:
        from .report import as_csv

        sys.stdout.write(as_csv(scored))
    else:
        _print_table(scored.rows, scored.description)
        for path in files:
            print(f"wrote {path}")
    return 0


def _cmd_dtu(args) -> int:
    from .dtu import dtu_eval

    result = dtu_eval(args.data, args.scan, args.dataset_dir, mode=args.mode, seed=args.seed,
                      vis_dir=args.vis, progress=not args.quiet)
    if args.json:
        json.dump(result.as_dict(), sys.stdout, indent=2)
        print()
    else:
        print(f"DTU scan {result.scan}: {args.data} (DTUeval-python protocol, millimetres)")
        for name in ("accuracy", "completeness", "overall"):
            print(f"  {name:<13} {getattr(result, name):.6f}")
        print("  " + ", ".join(f"{k} {v}" for k, v in result.counts.items()))
        for path in result.files:
            print(f"wrote {path}")
    return 0


def _cmd_human(args) -> int:
    from .human import human_eval

    pred, gt = io.load(args.pred), io.load(args.gt)
    for path, geometry in ((args.pred, pred), (args.gt, gt)):
        if not geometry.is_mesh:
            raise ValueError(f"{path}: the human protocol needs a mesh, the file holds a point cloud")
    result = human_eval((pred.vertices, pred.faces), (gt.vertices, gt.faces), backend=args.backend,
                        num_samples=args.samples, image_size=args.image_size, seed=args.seed, save_dir=args.png,
                        min_triangle_area=None if args.exact else 5e-3)
    if args.json:
        json.dump({"pred": args.pred, "gt": args.gt, **result.as_dict()}, sys.stdout, indent=2)
        print()
        return 0
    print(f"prediction:   {args.pred}\nground truth: {args.gt}")
    print(f"protocol: CAPE, backend {result.backend}; {result.samples[0]} / {result.samples[1]} surface samples; "
          f"normal maps at {result.image_size} px")
    print(f"\n{'metric':<12}  {'value':>10}  convention")
    print(f"{'Chamfer':<12}  {result.chamfer:>10.4f}  cm: 1/2 (P2S + recon-to-scan), normalised frame x 100")
    print(f"{'P2S':<12}  {result.p2s:>10.4f}  cm: scan samples to reconstruction surface, x 100")
    print(f"{'Normal':<12}  {result.normal:>10.4f}  L2: sum over 4 views of the mean squared RGB difference")
    for path in result.files:
        print(f"wrote {path}")
    return 0


def _cmd_batch(args) -> int:
    from .batch import is_main_process, run_batch, summary

    out = args.out or os.path.splitext(args.manifest)[0] + ".results.jsonl"
    records = run_batch(args.manifest, out, _options(args), progress=not args.quiet)
    if not is_main_process():
        return 0
    means, ok, failed = summary(records)
    print(f"{ok} pairs scored, {failed} failed; results in {out}")
    if means:
        width = max(len(n) for n in means)
        print(f"\n{'metric (mean over pairs)':<{width}}  {'value':>12}")
        for name, value in means.items():
            print(f"{name:<{width}}  {value:>12.6g}")
    return 0 if failed == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pointmetrics", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("score", help="score a predicted mesh or point cloud against a ground truth")
    p.add_argument("pred", help="prediction: mesh (ply/obj/off/stl/glb) or point cloud (ply/pcd/xyz/npy)")
    p.add_argument("gt", help="ground truth, same formats")
    _score_options(p)
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON instead of a table")
    output.add_argument("--csv", action="store_true", help="print CSV (metric, value, convention)")
    p.add_argument("--vis", metavar="DIR", help="write coloured error clouds (PLY) and a histogram (PNG) to DIR")
    p.set_defaults(run=_cmd_score)

    d = sub.add_parser("dtu", help="DTU MVS accuracy / completeness / overall (DTUeval-python protocol)")
    d.add_argument("data", help="reconstructed mesh or point cloud (millimetres, DTU frame)")
    d.add_argument("--scan", type=int, required=True, help="DTU scan id")
    d.add_argument("--dataset-dir", required=True, help="DTU root with Points/stl and ObsMask")
    d.add_argument("--mode", choices=["auto", "mesh", "pcd"], default="auto")
    d.add_argument("--seed", type=int, default=0, help="shuffle seed")
    d.add_argument("--vis", metavar="DIR", help="write vis_{scan}_d2s.ply and vis_{scan}_s2d.ply to DIR")
    d.add_argument("--json", action="store_true")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(run=_cmd_dtu)

    h = sub.add_parser("human", help="CAPE clothed-human Chamfer / P2S / Normal (ICON-2022 or ECON protocol)")
    h.add_argument("pred", help="reconstructed mesh, in the normalised [-1, 1] evaluation frame")
    h.add_argument("gt", help="scan mesh, same frame")
    h.add_argument("--backend", choices=["icon2022", "econ"], default="icon2022", help="protocol generation")
    h.add_argument("--samples", type=_positive_int, default=1000, help="surface samples per mesh")
    h.add_argument("--image-size", type=_positive_int, default=512, help="normal map size in pixels")
    h.add_argument("--seed", type=int, default=0, help="sampling seed")
    h.add_argument("--png", metavar="DIR", help="write the normal maps and the error image to DIR")
    h.add_argument("--exact", action="store_true",
                   help="econ: exact point-to-triangle distances instead of PyTorch3D's min_triangle_area=5e-3")
    h.add_argument("--json", action="store_true")
    h.set_defaults(run=_cmd_human)

    b = sub.add_parser("batch", help="score many pairs listed in a CSV manifest (pred,gt[,id]); resumable")
    b.add_argument("manifest")
    b.add_argument("--out", help="results file, one JSON line per pair (default: MANIFEST.results.jsonl)")
    _score_options(b)
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(run=_cmd_batch)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (io.GeometryFileError, FileNotFoundError, ValueError, TypeError, RuntimeError) as error:
        print(f"pointmetrics: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
