"""The pointmetrics command line: score meshes and point clouds from files.

    pointmetrics score PRED GT [--samples N] [--seed S] [--tau T ...] [--emd N] [--json | --csv] [--vis DIR]
    pointmetrics dtu DATA --scan ID --dataset-dir DIR [--mode auto|mesh|pcd] [--seed S] [--vis DIR] [--json]
    pointmetrics human PRED GT [--backend icon2022|econ] [--samples N] [--image-size S] [--seed S]
                       [--png DIR] [--exact] [--allow-clipping] [--json]
    pointmetrics batch MANIFEST.csv [--out RESULTS.jsonl] [score options]   (also under torchrun)

Meshes are sampled uniformly by area (seeded); point clouds are used as they are. Every number is
computed by the library's metric functions, in the files' units, and printed with its convention.
Errors print one line naming the file and the problem, and exit with code 2. Progress goes to
stderr when it is a terminal (--quiet turns it off).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from collections.abc import Callable

from . import io
from .scoring import Scored

EXIT_ERROR = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader went away


def _version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("pointmetrics")
    except (ImportError, PackageNotFoundError):
        from . import __version__

        return __version__


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each option's default, except where there is none to show (None, False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False or isinstance(action, argparse._HelpAction):
            return action.help or ""
        return super()._get_help_string(action)


# Progress ----------------------------------------------------------------------------------------


def _progress_wanted(args) -> bool:
    """Progress only for a person watching: off with --quiet and when stderr is not a terminal."""
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


class _Steps:
    """A one-line tqdm display of the step running now and the time spent (stderr), cleared at the end."""

    def __init__(self, enabled: bool, title: str) -> None:
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                return
            self.bar = tqdm(total=None, desc=title, file=sys.stderr, leave=False, bar_format="{desc} [{elapsed}]")
        self.title = title

    def __call__(self, name: str) -> None:
        if self.bar is not None:
            self.bar.set_description_str(f"{self.title}: {name}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# score -------------------------------------------------------------------------------------------


def _print_table(scored: Scored) -> None:
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


def _quiet_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true",
                   help="no progress display on stderr (it is also off when stderr is not a terminal)")


def _score_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--samples", type=_positive_int, default=100_000, help="points sampled on each mesh")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--tau", type=_positive_float, nargs="+", metavar="T",
                   help="F-score thresholds in the files' units (default: 0.5%%, 1%% and 2%% of the ground truth's "
                        "bounding-box diagonal)")
    p.add_argument("--emd", type=_non_negative_int, default=0, metavar="N",
                   help="also compute EMD on N random points of each input (0: off)")
    p.add_argument("--no-noise-floor", action="store_true",
                   help="skip the noise floor (the ground-truth mesh scored against a second sample of itself), "
                        "which doubles the work")
    _quiet_option(p)


def _options(args) -> dict:
    return {"samples": args.samples, "seed": args.seed, "taus": args.tau, "emd_points": args.emd,
            "noise_floor": not args.no_noise_floor}


def _note(text: str) -> None:
    print(f"pointmetrics: note: {text}", file=sys.stderr)


def _cmd_score(args) -> int:
    from .scoring import score

    if args.vis:  # before the work: a bad output path must not cost the whole computation
        from .report import check_output_dir, check_visuals_available

        check_output_dir(args.vis)
        check_visuals_available()
    steps = _Steps(_progress_wanted(args), "score")
    try:
        scored = score(args.pred, args.gt, **_options(args), progress=steps)
        files = []
        if args.vis:
            from .report import write_visuals

            steps("writing pictures")
            files = write_visuals(scored, args.vis)
    finally:
        steps.close()
    for note in scored.notes:
        _note(note)
    if args.json:
        json.dump({"inputs": scored.description, "metrics": scored.metrics(), "noise_floor": scored.noise_floor,
                   "units": {r.name: r.unit for r in scored.rows},
                   "conventions": {r.name: r.convention for r in scored.rows}, "notes": scored.notes,
                   "files": files}, sys.stdout, indent=2)
        print()
    elif args.csv:
        from .report import as_csv

        sys.stdout.write(as_csv(scored))
    else:
        _print_table(scored)
        for path in files:
            print(f"wrote {path}")
    return 0


# dtu ---------------------------------------------------------------------------------------------


def _cmd_dtu(args) -> int:
    from .dtu import dtu_eval

    if args.vis:
        from .report import check_output_dir

        check_output_dir(args.vis)
    with warnings.catch_warnings():  # a NaN term is explained below, not left to a raw warning
        warnings.simplefilter("ignore", RuntimeWarning)
        result = dtu_eval(args.data, args.scan, args.dataset_dir, mode=args.mode, seed=args.seed,
                          vis_dir=args.vis, progress=_progress_wanted(args))
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
        for name in ("accuracy", "completeness", "overall"):
            print(f"  {name:<13} {getattr(result, name):.6f}")
        print("  " + ", ".join(f"{k} {v}" for k, v in result.counts.items()))
        for path in result.files:
            print(f"wrote {path}")
    return 0


# human -------------------------------------------------------------------------------------------


def _load_human_mesh(path: str, backend: str, allow_clipping: bool) -> io.Geometry:
    """The mesh of ``path``, checked by the protocol's rules with errors naming the file."""
    from .human import check_evaluation_frame, check_positive_area

    geometry = io.load(path)
    if not geometry.is_mesh:
        raise ValueError(f"{path}: the human protocol needs a mesh, the file holds a point cloud")
    check_positive_area(geometry.vertices, geometry.faces, path)
    if not allow_clipping:
        check_evaluation_frame(geometry.vertices, geometry.faces, backend, None, path)
    return geometry


def _cmd_human(args) -> int:
    from .human import human_eval

    if args.png:
        from .report import check_output_dir

        check_output_dir(args.png)
    pred = _load_human_mesh(args.pred, args.backend, args.allow_clipping)
    gt = _load_human_mesh(args.gt, args.backend, args.allow_clipping)
    steps = _Steps(_progress_wanted(args), "human")
    try:
        result = human_eval((pred.vertices, pred.faces), (gt.vertices, gt.faces), backend=args.backend,
                            num_samples=args.samples, image_size=args.image_size, seed=args.seed, save_dir=args.png,
                            min_triangle_area=None if args.exact else 5e-3, allow_clipping=args.allow_clipping,
                            progress=steps)
    finally:
        steps.close()
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


# batch -------------------------------------------------------------------------------------------


def _cmd_batch(args) -> int:
    from .batch import is_main_process, run_batch, summary
    from .report import check_output_file

    out = args.out or os.path.splitext(args.manifest)[0] + ".results.jsonl"
    check_output_file(out)
    records = run_batch(args.manifest, out, _options(args), progress=_progress_wanted(args))
    if not is_main_process():
        return 0
    stats, ok, failed = summary(records)
    print(f"{ok} pairs scored, {failed} failed; results in {out}")
    if stats:
        width = max(len(n) for n in stats)
        print(f"\n{'metric (mean over pairs)':<{width}}  {'value':>12}  {'pairs':>5}")
        for name, (value, count) in stats.items():
            print(f"{name:<{width}}  {value:>12.6g}  {count:>5}")
        partial = [name for name, (_, count) in stats.items() if count < ok]
        if partial:
            print(f"\nnote: {len(partial)} metrics are not defined for every pair (e.g. {partial[0]}); each mean "
                  "runs over the pairs counted in its row")
    return 0 if failed == 0 else 1


# main --------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pointmetrics", description=__doc__.split("\n\n")[0],
                                     formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"pointmetrics {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=f"{summary[0].upper()}{summary[1:]}.\n\n{description}",
                              formatter_class=_HelpFormatter)

    p = command("score", "score a predicted mesh or point cloud against a ground truth",
                "Meshes are sampled uniformly by area with the seed; point clouds are used as they are. Prints\n"
                "Chamfer (CD-L1, CD-L2), accuracy, completeness, Hausdorff, percentiles and F-score, each with\n"
                "its convention, and the noise floor (what a perfect prediction scores) when GT is a mesh.\n"
                "P2S is ICON's: ground-truth points to the predicted surface (needs a mesh prediction);\n"
                "pred_to_gt_surface is the other direction (needs a mesh ground truth).")
    p.add_argument("pred", help="prediction: mesh (ply/obj/off/stl/glb) or point cloud (ply/pcd/xyz/npy)")
    p.add_argument("gt", help="ground truth, same formats")
    _score_options(p)
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON instead of a table")
    output.add_argument("--csv", action="store_true",
                        help="print CSV: metric, value, noise floor, unit, convention and the inputs on every row")
    p.add_argument("--vis", metavar="DIR",
                   help="write coloured error clouds (PLY) and a distance histogram (PNG, needs matplotlib) to DIR")
    p.set_defaults(run=_cmd_score)

    d = command("dtu", "DTU MVS accuracy / completeness / overall (DTUeval-python protocol)",
                "Lattice sampling, seeded shuffle, 0.2 mm reduction, box and observation-mask filters,\n"
                "ground plane; numbers in millimetres. The data must be in millimetres in the DTU frame.")
    d.add_argument("data", help="reconstructed mesh or point cloud (millimetres, DTU frame)")
    d.add_argument("--scan", type=int, required=True, help="DTU scan id")
    d.add_argument("--dataset-dir", required=True, help="DTU root with Points/stl and ObsMask")
    d.add_argument("--mode", choices=["auto", "mesh", "pcd"], default="auto",
                   help="mesh: lattice-sample the faces; pcd: use the points as they are; auto: mesh if it has faces")
    d.add_argument("--seed", type=int, default=0, help="shuffle seed")
    d.add_argument("--vis", metavar="DIR", help="write vis_{scan}_d2s.ply and vis_{scan}_s2d.ply to DIR")
    d.add_argument("--json", action="store_true", help="print JSON instead of text")
    _quiet_option(d)
    d.set_defaults(run=_cmd_dtu)

    h = command("human", "CAPE clothed-human Chamfer / P2S / Normal (ICON-2022 or ECON protocol)",
                "Both meshes must be in the normalised [-1, 1] evaluation frame of ICON/ECON; a mesh reaching\n"
                "outside the cameras' view volume (e.g. a body in metres) is refused. Distances are reported\n"
                "in \"cm\" (normalised-frame distances x 100). P2S: scan samples to the reconstruction.")
    h.add_argument("pred", help="reconstructed mesh, in the normalised [-1, 1] evaluation frame")
    h.add_argument("gt", help="scan mesh, same frame")
    h.add_argument("--backend", choices=["icon2022", "econ"], default="icon2022", help="protocol generation")
    h.add_argument("--samples", type=_positive_int, default=1000, help="surface samples per mesh")
    h.add_argument("--image-size", type=_positive_int, default=512, help="normal map size in pixels")
    h.add_argument("--seed", type=int, default=0, help="sampling seed")
    h.add_argument("--png", metavar="DIR", help="write the normal maps and the error image to DIR")
    h.add_argument("--exact", action="store_true",
                   help="econ: exact point-to-triangle distances instead of PyTorch3D's min_triangle_area=5e-3")
    h.add_argument("--allow-clipping", action="store_true",
                   help="render meshes reaching outside the view volume clipped, as the reference renderers do, "
                        "instead of refusing them")
    h.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _quiet_option(h)
    h.set_defaults(run=_cmd_human)

    b = command("batch", "score many pairs listed in a CSV manifest (pred,gt[,id]); resumable",
                "One JSON line per pair is appended to the results file as soon as it is scored; a rerun skips\n"
                "the pairs already there. Under torchrun each rank scores its share. Exit code 1 if a pair failed.")
    b.add_argument("manifest", help="CSV with pred and gt columns (paths relative to its folder) and an optional id")
    b.add_argument("--out", help="results file, one JSON line per pair (default: MANIFEST.results.jsonl)")
    _score_options(b)
    b.set_defaults(run=_cmd_batch)
    return parser


def _one_line_warnings(message, category, filename, lineno, file=None, line=None) -> None:
    """Library warnings as one line each, without the source line Python would print."""
    print(f"pointmetrics: warning: {message}", file=sys.stderr)


def _silence_stdout() -> None:
    """After a closed pipe: point stdout at devnull so that the interpreter's final flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout without a file descriptor (e.g. captured in tests)
        pass


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    run: Callable = args.run
    previous = warnings.showwarning
    warnings.showwarning = _one_line_warnings
    try:
        code = run(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:  # e.g. `pointmetrics score ... | head`: the reader has what it wanted
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print("pointmetrics: interrupted", file=sys.stderr)
        return 130
    except (io.GeometryFileError, OSError, ValueError, TypeError, RuntimeError) as error:
        print(f"pointmetrics: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as error:  # noqa: BLE001 - a command-line user gets one line, never a traceback
        if os.environ.get("POINTMETRICS_DEBUG"):
            raise
        print(f"pointmetrics: internal error: {type(error).__name__}: {_one_line(error)} "
              "(POINTMETRICS_DEBUG=1 shows the traceback)", file=sys.stderr)
        return EXIT_ERROR
    finally:
        warnings.showwarning = previous


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    if isinstance(error, OSError) and error.filename and str(error.filename) not in text:
        text = f"{error.filename}: {text}"
    return text or type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
