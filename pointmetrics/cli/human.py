"""`pointmetrics human PRED GT`: the CAPE clothed-human protocol (ICON-2022 or ECON)."""

from __future__ import annotations

import argparse
import json
import sys

from .. import io
from ..protocols.human import check_evaluation_frame, check_positive_area, human_eval
from .common import Steps, positive_int, progress_wanted, quiet_option

NAME = "human"
SUMMARY = "CAPE clothed-human Chamfer / P2S / Normal (ICON-2022 or ECON protocol)"
DESCRIPTION = (
    "Both meshes must be in the normalised [-1, 1] evaluation frame of ICON/ECON; a mesh reaching\n"
    "outside the cameras' view volume (e.g. a body in metres) is refused. Distances are reported\n"
    "in \"cm\" (normalised-frame distances x 100). P2S: scan samples to the reconstruction."
)


def add_arguments(h: argparse.ArgumentParser) -> None:
    h.add_argument("pred", help="reconstructed mesh, in the normalised [-1, 1] evaluation frame")
    h.add_argument("gt", help="scan mesh, same frame")
    h.add_argument("--backend", choices=["icon2022", "econ"], default="icon2022", help="protocol generation")
    h.add_argument("--samples", type=positive_int, default=1000, help="surface samples per mesh")
    h.add_argument("--image-size", type=positive_int, default=512, help="normal map size in pixels")
    h.add_argument("--seed", type=int, default=0, help="sampling seed")
    h.add_argument("--png", metavar="DIR", help="write the normal maps and the error image to DIR")
    h.add_argument("--exact", action="store_true",
                   help="econ: exact point-to-triangle distances instead of PyTorch3D's min_triangle_area=5e-3")
    h.add_argument("--allow-clipping", action="store_true",
                   help="render meshes reaching outside the view volume clipped, as the reference renderers do, "
                        "instead of refusing them")
    h.add_argument("--json", action="store_true",
                   help="print JSON instead of a table (with the metric card under \"card\")")
    quiet_option(h)


def _load_human_mesh(path: str, backend: str, allow_clipping: bool) -> io.Geometry:
    """The mesh of ``path``, checked by the protocol's rules with errors naming the file."""
    geometry = io.load(path)
    if not geometry.is_mesh:
        raise ValueError(f"{path}: the human protocol needs a mesh, the file holds a point cloud")
    check_positive_area(geometry.vertices, geometry.faces, path)
    if not allow_clipping:
        check_evaluation_frame(geometry.vertices, geometry.faces, backend, None, path)
    return geometry


def run(args) -> int:
    if args.png:
        io.check_output_dir(args.png)
    pred = _load_human_mesh(args.pred, args.backend, args.allow_clipping)
    gt = _load_human_mesh(args.gt, args.backend, args.allow_clipping)
    steps = Steps(progress_wanted(args), "human")
    try:
        result = human_eval((pred.vertices, pred.faces), (gt.vertices, gt.faces), backend=args.backend,
                            num_samples=args.samples, image_size=args.image_size, seed=args.seed, save_dir=args.png,
                            min_triangle_area=None if args.exact else 5e-3, allow_clipping=args.allow_clipping,
                            progress=steps, inputs={"pred": args.pred, "gt": args.gt})
    finally:
        steps.close()
    if args.json:
        json.dump({"pred": args.pred, "gt": args.gt, **result.as_dict()}, sys.stdout, indent=2)
        print()
        return 0
    print(f"prediction:   {args.pred}\nground truth: {args.gt}")
    print(f"protocol: CAPE, backend {result.backend}; {result.samples[0]} / {result.samples[1]} surface samples; "
          f"normal maps at {result.image_size} px")
    print(f"reference: {result.card.reference}; --json prints the full metric card")
    print(f"\n{'metric':<12}  {'value':>10}  convention")
    print(f"{'Chamfer':<12}  {result.chamfer:>10.4f}  cm: 1/2 (P2S + recon-to-scan), normalised frame x 100")
    print(f"{'P2S':<12}  {result.p2s:>10.4f}  cm: scan samples to reconstruction surface, x 100")
    print(f"{'Normal':<12}  {result.normal:>10.4f}  L2: sum over 4 views of the mean squared RGB difference")
    for path in result.files:
        print(f"wrote {path}")
    return 0


