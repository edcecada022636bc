"""What every command shares: the help formatter, progress display, option parsers and notes."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from collections.abc import Callable

from ..protocols.card import card_path_beside


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each option's default, except where there is none to show (None, False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False or isinstance(action, argparse._HelpAction):
            return action.help or ""
        return super()._get_help_string(action)


# Progress ----------------------------------------------------------------------------------------


def progress_wanted(args) -> bool:
    """Progress only for a person watching: off with --quiet and when stderr is not a terminal."""
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


class Steps:
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


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive distance, got {text}")
    return value


def quiet_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true",
                   help="no progress display on stderr (it is also off when stderr is not a terminal)")


def score_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--samples", type=positive_int, default=100_000, help="points sampled on each mesh")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--tau", type=positive_float, nargs="+", metavar="T",
                   help="F-score thresholds in the files' units (default: 0.5%%, 1%% and 2%% of the ground truth's "
                        "bounding-box diagonal)")
    p.add_argument("--emd", type=non_negative_int, default=0, metavar="N",
                   help="also compute EMD on N random points of each input (0: off)")
    p.add_argument("--no-noise-floor", action="store_true",
                   help="skip the noise floor (the ground-truth mesh scored against a second sample of itself), "
                        "which doubles the work")
    quiet_option(p)


def score_options(args) -> dict:
    return {"samples": args.samples, "seed": args.seed, "taus": args.tau, "emd_points": args.emd,
            "noise_floor": not args.no_noise_floor}


def note(text: str) -> None:
    print(f"pointmetrics: note: {text}", file=sys.stderr)



def emit(args, card, json_data: Callable[[], dict], csv_text: Callable[[], str], table: Callable[[], None]) -> None:
    """Prints a result as JSON (``--json``), CSV (``--csv``) or a table, to stdout or to ``--out``,
    and keeps its metric card with it: JSON holds the card; a table or CSV written to ``--out FILE``
    gets the card beside it (FILE's stem + ``.card.json``), where a copy of the file finds it."""
    target = getattr(args, "out", None)
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(open(target, "w")) if target else sys.stdout
        with contextlib.redirect_stdout(out):
            if args.json:
                json.dump(json_data(), sys.stdout, indent=2)
                print()
            elif args.csv:
                sys.stdout.write(csv_text())
            else:
                table()
    if target:
        beside = "" if args.json else f" and its metric card {card.write(card_path_beside(target))}"
        print(f"pointmetrics: wrote {target}{beside}", file=sys.stderr)
    elif args.csv:
        note("the metric card (conventions, parameters, inputs' SHA-256) is not in the CSV; "
             "--out FILE writes it beside the CSV")
