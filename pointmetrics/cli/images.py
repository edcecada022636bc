"""`pointmetrics images PRED_DIR GT_DIR`: PSNR, SSIM and LPIPS of same-named images (nerfstudio's evaluation)."""

from __future__ import annotations

import argparse
import csv
import io as _io
import math

from .. import io
from ..protocols.card import card_path_beside
from ..protocols.images import ImagesResult, images_eval
from .common import Steps, emit, note, progress_wanted, quiet_option

NAME = "images"
SUMMARY = "PSNR, SSIM and LPIPS of rendered images against ground truth (nerfstudio's evaluation)"
DESCRIPTION = (
    "Images are matched by file name without extension (PNG/JPG; EXR with an imageio EXR plugin) and\n"
    "scored as nerfstudio's nerfacto and ns-eval score them: RGBA composed on the background (black by\n"
    "default), PSNR with data range 1, SSIM with an 11x11 Gaussian window (sigma 1.5, data range of\n"
    "the images as torchmetrics' default), LPIPS v0.1 (AlexNet) on [0, 1] inputs, and means over the\n"
    "images. With --mask-dir, PSNR is NeuS' masked PSNR and SSIM/LPIPS see the images composed on the\n"
    "background outside the mask. LPIPS needs torchvision's ImageNet weights and the v0.1 head in\n"
    "torch.hub's checkpoint folder (downloaded on first use when online; the error says where to put\n"
    "them when offline).\n\n"
    "Metric card (reference commits, parameters, every file's SHA-256): inside --json under \"card\";\n"
    "with --out FILE and a table or --csv, written beside FILE as FILE's stem + .card.json."
)


def _background(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0 <= v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"must be R,G,B with each value in [0, 1], e.g. 1,1,1 for white; got {text}")
    return values  # type: ignore[return-value]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pred_dir", help="folder of rendered (predicted) images")
    p.add_argument("gt_dir", help="folder of ground-truth images with the same names")
    p.add_argument("--mask-dir", metavar="DIR", help="folder of masks with the same names (white: evaluated)")
    p.add_argument("--background", type=_background, default="0,0,0", metavar="R,G,B",
                   help="colour that RGBA images (and masked-out pixels) are composed on, in [0, 1]")
    p.add_argument("--lpips-net", choices=["alex", "vgg", "squeeze", "none"], default="alex",
                   help="LPIPS backbone (nerfstudio: alex); none skips LPIPS")
    p.add_argument("--lpips-backbone", metavar="FILE", help="torchvision checkpoint of the LPIPS backbone")
    p.add_argument("--lpips-head", metavar="FILE", help="LPIPS v0.1 head file (lpips/weights/v0.1/<net>.pth)")
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true",
                        help="print JSON instead of a table (with the metric card under \"card\")")
    output.add_argument("--csv", action="store_true", help="print CSV: one row per image, then the mean")
    p.add_argument("--out", metavar="FILE",
                   help="write the table, JSON or CSV to FILE instead of stdout; for a table or CSV the metric card "
                        "goes beside it (results.csv -> results.card.json)")
    quiet_option(p)


def _cell(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def as_csv(result: ImagesResult) -> str:
    """Columns image, width, height, psnr, ssim, lpips (empty when off); the last row is the mean."""
    out = _io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["image", "width", "height", "psnr", "ssim", "lpips"])
    for m in result.images:
        writer.writerow([m.name, m.size[1], m.size[0], repr(m.psnr), repr(m.ssim),
                         "" if m.lpips is None else repr(m.lpips)])
    mean = result.mean
    writer.writerow(["mean", "", "", repr(mean["psnr"]), repr(mean["ssim"]),
                     repr(mean["lpips"]) if "lpips" in mean else ""])
    return out.getvalue()


def print_table(result: ImagesResult, pred_dir: str, gt_dir: str) -> None:
    lp = "lpips" in result.mean
    print(f"{len(result.images)} images: {pred_dir} against {gt_dir} (nerfstudio's evaluation; "
          f"--json prints the metric card)")
    width = max(len("image"), *(len(m.name) for m in result.images))
    head = f"{'image':<{width}}  {'size':>11}  {'PSNR (dB)':>9}  {'SSIM':>7}" + (f"  {'LPIPS':>7}" if lp else "")
    print(head)
    print("-" * len(head))
    for m in result.images:
        size = f"{m.size[1]}x{m.size[0]}"
        print(f"{m.name:<{width}}  {size:>11}  {m.psnr:>9.4f}  {m.ssim:>7.4f}" + (f"  {m.lpips:>7.4f}" if lp else ""))
    print("-" * len(head))
    mean = result.mean
    print(f"{'mean':<{width}}  {'':>11}  {mean['psnr']:>9.4f}  {mean['ssim']:>7.4f}"
          + (f"  {mean['lpips']:>7.4f}" if lp else ""))
    print(f"LPIPS: {result.card.parameters['lpips_net']} (lower is better)" if lp else "LPIPS: off")


def run(args) -> int:
    if args.out:  # before the work: a bad output path must not cost the whole computation
        io.check_output_file(args.out)
        if not args.json:
            io.check_output_file(card_path_beside(args.out))
    steps = Steps(progress_wanted(args), "images")
    try:
        result = images_eval(args.pred_dir, args.gt_dir, mask_dir=args.mask_dir, background=args.background,
                             lpips_net=None if args.lpips_net == "none" else args.lpips_net, progress=steps,
                             lpips_backbone_weights=args.lpips_backbone, lpips_head_weights=args.lpips_head)
    finally:
        steps.close()
    for text in result.notes:
        note(text)
    emit(args, result.card, lambda: _finite(result.as_dict()), lambda: as_csv(result),
         lambda: print_table(result, args.pred_dir, args.gt_dir))
    return 0


def _finite(value):
    """JSON has no inf: an infinite PSNR (identical images) is written as the string "inf"."""
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
