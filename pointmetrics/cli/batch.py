"""``pointmetrics batch``: score many (pred, gt) pairs from a CSV manifest, resumably, on one or many
processes or jobs.

The manifest has a header with ``pred`` and ``gt`` columns (paths relative to the manifest's
folder or absolute) and an optional ``id`` column (default: the row number). Each finished pair is
appended at once, as one JSON line, to the results file, so an interrupted run resumes where it
stopped: pairs already there are skipped. A pair that fails (unreadable file, NaN, ...) is
recorded with its error and skipped; it never loses the results already computed.

Under ``torchrun`` (WORLD_SIZE > 1) each rank scores every WORLD_SIZE-th pending pair and appends
to its own ``RESULTS.rank{r}`` file; at the end rank 0 gathers the new records (torch.distributed,
gloo), appends them to RESULTS and prints the summary, so the results equal a one-process run.

With ``--shard I/N`` (or, without it, a Slurm job array: SLURM_ARRAY_TASK_ID minus
SLURM_ARRAY_TASK_MIN, divided by SLURM_ARRAY_TASK_STEP, of SLURM_ARRAY_TASK_COUNT) independent
jobs without a process group split the manifest: pair k (0-based, manifest order) belongs to shard
k mod N, which appends to its own ``RESULTS.shard{I}of{N}`` and resumes from it alone.
``pointmetrics merge`` combines the shard files into RESULTS in manifest order.

Every scored record carries its metric card under "card" (see pointmetrics/protocols/card.py).
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import math
import os
import sys
from collections.abc import Callable, Iterator

import torch

from .. import io
from ..protocols.scoring import score
from .common import progress_wanted, score_arguments, score_options

NAME = "batch"
SUMMARY = "score many pairs listed in a CSV manifest (pred,gt[,id]); resumable"
DESCRIPTION = (
    "One JSON line per pair is appended to the results file as soon as it is scored; a rerun skips\n"
    "the pairs already there. Under torchrun each rank scores its share. With --shard I/N (or inside\n"
    "a Slurm job array) independent jobs each score pairs k with k mod N = I into OUT.shard{I}of{N};\n"
    "`pointmetrics merge` combines them. Each record carries its metric card. Exit code 1 if a pair failed."
)


def read_manifest(path: str) -> list[dict]:
    """Rows of the manifest as {"id", "pred", "gt"} with paths resolved against its folder."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    base = os.path.dirname(os.path.abspath(path))
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"pred", "gt"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: the manifest needs a header with 'pred' and 'gt' columns")
        rows = []
        for number, row in enumerate(reader, start=1):
            if not row.get("pred") or not row.get("gt"):
                raise ValueError(f"{path}: row {number} lacks a pred or gt path")
            rows.append({
                "id": row.get("id") or str(number),
                "pred": os.path.join(base, row["pred"]),
                "gt": os.path.join(base, row["gt"]),
            })
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: ids must be unique")
    return rows


def _read_records(paths: list[str]) -> Iterator[dict]:
    """The records of the files, one line at a time (a results file with cards can be large)."""
    for path in paths:
        if not os.path.exists(path):
            continue
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:  # a line cut short by an interruption: score it again
                    continue


def _distributed() -> tuple[int, int, bool]:
    """(rank, world size, whether this call initialised the process group and must destroy it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    import torch.distributed as dist

    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size(), True


def score_pair(row: dict, options: dict) -> dict:
    """One manifest row scored; errors become a record with an ``error`` field."""
    try:
        scored = score(row["pred"], row["gt"], **options)
        record = {"id": row["id"], "pred": row["pred"], "gt": row["gt"], "metrics": scored.metrics()}
        if scored.noise_floor:
            record["noise_floor"] = scored.noise_floor
        if scored.notes:
            record["notes"] = scored.notes
        record["card"] = scored.card.as_dict()
        return record
    except Exception as error:  # noqa: BLE001 - one bad pair is reported and skipped, never fatal
        return {"id": row["id"], "pred": row["pred"], "gt": row["gt"], "error": f"{type(error).__name__}: {error}"}


def run_batch(manifest: str, results: str, options: dict, progress: bool = True,
              stop_after: int | None = None, log: Callable[[str], None] | None = None,
              shard: tuple[int, int] | None = None) -> list[dict]:
    """Scores the manifest's pending pairs; returns every record (old and new) in manifest order on
    rank 0 and this rank's new records elsewhere. ``stop_after`` ends this process after that many
    new pairs (for testing an interruption). ``shard`` (I, N): score only the pairs k with
    k mod N == I, into :func:`shard_path` (results, I, N); the records returned are this shard's.
    A process group this call initialises (under torchrun) is destroyed before it returns, so no
    gloo thread outlives it."""
    log = log or (lambda text: print(text, file=sys.stderr))
    io.check_output_file(results)
    rows = read_manifest(manifest)
    if shard is not None:
        index, count = check_shard(*shard)
        rows = rows[index::count]
        results = shard_path(results, index, count)
        io.check_output_file(results)
    rank, world, initialised = _distributed()
    try:
        return _run(rows, results, options, progress, stop_after, log, rank, world)
    finally:
        if initialised:
            import torch.distributed as dist

            dist.destroy_process_group()


def _run(rows: list[dict], results: str, options: dict, progress: bool, stop_after: int | None,
         log: Callable[[str], None], rank: int, world: int) -> list[dict]:
    done = {r["id"] for r in _read_records([results] + sorted(glob.glob(glob.escape(results) + ".rank*")))
            if "metrics" in r}
    pending = [r for r in rows if r["id"] not in done]
    mine = pending[rank::world]
    own_file = results if world == 1 else f"{results}.rank{rank}"
    if rank == 0 and done:
        log(f"pointmetrics batch: {len(done)} of {len(rows)} pairs already scored; resuming")
    new = _score_pairs(mine, own_file, options, progress, stop_after, log, f"rank {rank}" if world > 1 else "pairs")
    if world > 1:
        import torch.distributed as dist

        gathered = [None] * world if rank == 0 else None
        dist.gather_object(new, gathered, dst=0)
        if rank == 0:
            with open(results, "a") as out:
                for part in gathered:
                    for record in part:
                        out.write(json.dumps(record) + "\n")
            for path in glob.glob(glob.escape(results) + ".rank*"):
                os.remove(path)
        dist.barrier()
        if rank != 0:
            return new
    latest = {}
    for record in _read_records([results]):
        if record["id"] not in latest or "metrics" in record:
            latest[record["id"]] = record
    return [latest[r["id"]] for r in rows if r["id"] in latest]


def _score_pairs(mine: list[dict], own_file: str, options: dict, progress: bool, stop_after: int | None,
                 log: Callable[[str], None], description: str) -> list[dict]:
    """Scores this process's pairs, appending each record to ``own_file`` as soon as it exists."""
    bar = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=len(mine), file=sys.stderr, desc=description)
        except ImportError:
            bar = None
    new = []
    try:
        with open(own_file, "a") as out:
            for count, row in enumerate(mine):
                if stop_after is not None and count >= stop_after:
                    break
                record = score_pair(row, options)
                if "error" in record:
                    log(f"pointmetrics batch: skipped {row['id']}: {record['error']}")
                out.write(json.dumps(record) + "\n")
                out.flush()
                new.append(record)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return new


class Summary:
    """The batch summary accumulated one record at a time (``merge`` streams its records through
    it): per metric only the values are kept, never the records."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {}  # in first-seen order
        self.scored = 0
        self.failed = 0

    def add(self, record: dict) -> None:
        if "metrics" not in record:
            self.failed += 1
            return
        self.scored += 1
        for name, value in record["metrics"].items():
            self.values.setdefault(name, []).append(value)

    def result(self) -> tuple[dict, int, int]:
        """({metric: (mean, pairs)}, scored pairs, failed pairs); means by math.fsum (order-free)."""
        stats = {name: (math.fsum(v) / len(v), len(v)) for name, v in self.values.items()}
        return stats, self.scored, self.failed


def summary(records: list[dict]) -> tuple[dict, int, int]:
    """({metric: (mean, pairs)}, scored pairs, failed pairs). Each metric's mean runs over the pairs
    that have it (P2S needs a mesh prediction, IoU two watertight meshes, ...), and its count says
    how many those are, so that no metric is silently dropped or averaged over a different set."""
    total = Summary()
    for record in records:
        total.add(record)
    return total.result()


def print_summary(stats: dict, ok: int, failed: int, out: str) -> None:
    """The table ``batch`` and ``merge`` print: the mean of each metric and how many pairs it covers."""
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


# Shards -------------------------------------------------------------------------------------------


def shard_path(results: str, index: int, count: int) -> str:
    """The results file of shard ``index`` of ``count``: ``RESULTS.shard{I}of{N}``."""
    return f"{results}.shard{index}of{count}"


def check_shard(index: int, count: int, source: str = "shard") -> tuple[int, int]:
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"{source}: shard {index}/{count} does not exist: I/N needs N >= 1 and 0 <= I < N")
    return index, count


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N), 0 <= I < N; anything else is a ValueError naming --shard."""
    parts = text.split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"--shard {text!r}: expected I/N with whole numbers, e.g. 0/4 (shards 0 to 3 of 4)")
    return check_shard(int(parts[0]), int(parts[1]), f"--shard {text}")


def slurm_shard(env: dict | None = None) -> tuple[int, int] | None:
    """(I, N) of a Slurm job array task, or None outside one: I = (SLURM_ARRAY_TASK_ID -
    SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP (MIN 0 and STEP 1 when unset), N =
    SLURM_ARRAY_TASK_COUNT."""
    env = os.environ if env is None else env
    if "SLURM_ARRAY_TASK_ID" not in env or "SLURM_ARRAY_TASK_COUNT" not in env:
        return None
    names = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_STEP")
    try:
        task, count, low, step = (int(env.get(n, default)) for n, default in zip(names, ("", "", "0", "1")))
    except ValueError:
        values = ", ".join(f"{n}={env[n]!r}" for n in names if n in env)
        raise ValueError(f"Slurm array variables are not whole numbers ({values}); give --shard I/N") from None
    source = (f"Slurm array task {task} (SLURM_ARRAY_TASK_MIN {low}, STEP {step}, COUNT {count}); "
              "give --shard I/N for an array with gaps")
    if step < 1 or (task - low) % step:
        raise ValueError(f"{source}: not on the array's step")
    return check_shard((task - low) // step, count, source)


def is_main_process() -> bool:
    """Rank 0 of a process group, or of torchrun's RANK once the group is gone; True for one process."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


# The command --------------------------------------------------------------------------------------


def add_arguments(b: argparse.ArgumentParser) -> None:
    b.add_argument("manifest", help="CSV with pred and gt columns (paths relative to its folder) and an optional id")
    b.add_argument("--out", help="results file, one JSON line per pair (default: MANIFEST.results.jsonl)")
    b.add_argument("--shard", metavar="I/N",
                   help="score only pairs k (0-based, manifest order) with k mod N = I, into OUT.shard{I}ofN "
                        "(default: from a Slurm job array's SLURM_ARRAY_TASK_ID/COUNT/MIN, else no sharding)")
    score_arguments(b)


def default_results(manifest: str) -> str:
    return os.path.splitext(manifest)[0] + ".results.jsonl"


def run(args) -> int:
    results = args.out or default_results(args.manifest)
    io.check_output_file(results)
    shard = parse_shard(args.shard) if args.shard is not None else slurm_shard()  # an explicit --shard wins
    out = results if shard is None else shard_path(results, *shard)
    records = run_batch(args.manifest, results, score_options(args), progress=progress_wanted(args), shard=shard)
    if not is_main_process():
        return 0
    if shard is not None:
        print(f"shard {shard[0]} of {shard[1]} (pairs k with k mod {shard[1]} = {shard[0]}); "
              "`pointmetrics merge` combines the shards")
    stats, ok, failed = summary(records)
    print_summary(stats, ok, failed, out)
    return 0 if failed == 0 else 1

