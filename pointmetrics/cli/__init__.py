"""The pointmetrics command line: score meshes and point clouds from files.

    pointmetrics score PRED GT [--samples N] [--seed S] [--tau T ...] [--emd N] [--json | --csv] [--out FILE]
    pointmetrics dtu DATA --scan ID --dataset-dir DIR [--mode auto|mesh|pcd] [--seed S] [--vis DIR] [--json]
    pointmetrics human PRED GT [--backend icon2022|econ] [--samples N] [--image-size S] [--seed S]
                       [--png DIR] [--exact] [--allow-clipping] [--json]
    pointmetrics batch MANIFEST.csv [--out RESULTS.jsonl] [--shard I/N] [score options]   (also under torchrun)
    pointmetrics merge MANIFEST.csv SHARDS... [--out RESULTS.jsonl]
    pointmetrics tnt RECONSTRUCTION SCENE_DIR [--traj LOG] [--tau T] [--json | --csv FILE] [--plots DIR]
    pointmetrics slam PRED GT [--replica DIR | --scannet DIR] [--cull ...] [--json | --csv]
    pointmetrics images PRED_DIR GT_DIR [--mask-dir DIR] [--lpips-net alex|vgg|squeeze|none] [--json | --csv]

Every result carries a metric card (protocol, reference and commit, conventions, parameters, input
hashes): printed with --json, written beside CSV files.

Meshes are sampled uniformly by area (seeded); point clouds are used as they are. Every number is
computed by the library's metric functions, in the files' units, and printed with its convention.
Errors print one line naming the file and the problem, and exit with code 2. Progress goes to
stderr when it is a terminal (--quiet turns it off).

Each command is one module here (NAME, SUMMARY, DESCRIPTION, add_arguments, run) and one entry of
COMMANDS; common.py holds what they share and report.py the tables, CSV and pictures.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable

from .. import io
from . import batch, dtu, human, images, merge, score, slam, tnt
from .common import HelpFormatter

EXIT_ERROR = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader went away

# One entry per command, in the order `pointmetrics --help` lists them.
COMMANDS = (score, dtu, human, batch, merge, tnt, slam, images)


def _version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("pointmetrics")
    except (ImportError, PackageNotFoundError):
        from .. import __version__

        return __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pointmetrics", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"pointmetrics {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        summary = command.SUMMARY
        p = sub.add_parser(command.NAME, help=summary, formatter_class=HelpFormatter,
                           description=f"{summary[0].upper()}{summary[1:]}.\n\n{command.DESCRIPTION}")
        command.add_arguments(p)
        p.set_defaults(run=command.run)
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
