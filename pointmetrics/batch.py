"""``pointmetrics batch``: score many (pred, gt) pairs from a CSV manifest, resumably, on one or many
processes.

The manifest has a header with ``pred`` and ``gt`` columns (paths relative to the manifest's
folder or absolute) and an optional ``id`` column (default: the row number). Each finished pair is
appended at once, as one JSON line, to the results file, so an interrupted run resumes where it
stopped: pairs already there are skipped. A pair that fails (unreadable file, NaN, ...) is
recorded with its error and skipped; it never loses the results already computed.

Under ``torchrun`` (WORLD_SIZE > 1) each rank scores every WORLD_SIZE-th pending pair and appends
to its own ``RESULTS.rank{r}`` file; at the end rank 0 gathers the new records (torch.distributed,
gloo), appends them to RESULTS and prints the summary, so the results equal a one-process run.
"""

from __future__ import annotations

import csv
import glob
import json
import math
import os
import sys
from collections.abc import Callable

import torch

from .scoring import score


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


def _read_records(paths: list[str]) -> list[dict]:
    records = []
    for path in paths:
        if not os.path.exists(path):
            continue
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut short by an interruption: score it again
                    continue
    return records


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size()


def score_pair(row: dict, options: dict) -> dict:
    """One manifest row scored; errors become a record with an ``error`` field."""
    try:
        scored = score(row["pred"], row["gt"], **options)
        return {"id": row["id"], "pred": row["pred"], "gt": row["gt"], "metrics": scored.metrics()}
    except Exception as error:  # noqa: BLE001 - one bad pair is reported and skipped, never fatal
        return {"id": row["id"], "pred": row["pred"], "gt": row["gt"], "error": f"{type(error).__name__}: {error}"}


def run_batch(manifest: str, results: str, options: dict, progress: bool = True,
              stop_after: int | None = None, log: Callable[[str], None] | None = None) -> list[dict]:
    """Scores the manifest's pending pairs; returns every record (old and new) in manifest order on
    rank 0 and this rank's new records elsewhere. ``stop_after`` ends this process after that many
    new pairs (for testing an interruption)."""
    log = log or (lambda text: print(text, file=sys.stderr))
    rows = read_manifest(manifest)
    rank, world = _distributed()
    done = {r["id"] for r in _read_records([results] + sorted(glob.glob(glob.escape(results) + ".rank*")))
            if "metrics" in r}
    pending = [r for r in rows if r["id"] not in done]
    mine = pending[rank::world]
    own_file = results if world == 1 else f"{results}.rank{rank}"
    if rank == 0 and done:
        log(f"pointmetrics batch: {len(done)} of {len(rows)} pairs already scored; resuming")
    bar = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=len(mine), file=sys.stderr, desc=f"rank {rank}" if world > 1 else "pairs")
        except ImportError:
            bar = None
    new = []
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
    if bar is not None:
        bar.close()
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


def summary(records: list[dict]) -> tuple[dict, int, int]:
    """Mean of every metric over the pairs that scored; (means, scored pairs, failed pairs)."""
    scored = [r["metrics"] for r in records if "metrics" in r]
    names = [n for n in (scored[0] if scored else {}) if all(n in m for m in scored)]
    means = {n: math.fsum(m[n] for m in scored) / len(scored) for n in names}
    return means, len(scored), len(records) - len(scored)


def is_main_process() -> bool:
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) or \
        torch.distributed.get_rank() == 0
