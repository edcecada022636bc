"""``pointmetrics merge MANIFEST SHARDS... [--out RESULTS]``: the per-shard results files of
``batch --shard`` combined into one results file in manifest order, with batch's summary.

Memory stays bounded by the number of pairs, not the size of the records: a first pass reads every
shard file line by line and keeps, per manifest id, only where its chosen record starts (file and
byte offset); a second pass copies those lines in manifest order and feeds the summary.

Which record of a pair is kept: one with metrics over one with an error (a failed pair rescored by
a resumed shard appends a second record); within one file the last scored record (as ``batch``
does); across files the first file given (globs are expanded in sorted order). A pair scored in
more than one file is a duplicate and is reported; a pair in no file is reported missing; records
whose id is not in the manifest are counted and ignored.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

from .. import io
from .batch import Summary, default_results, print_summary, read_manifest

NAME = "merge"
SUMMARY = "combine the per-shard results of `batch --shard` into one results file, in manifest order"
DESCRIPTION = (
    "Each SHARDS argument is a file or a glob (quote it), e.g. 'results.jsonl.shard*of4'. Prints batch's\n"
    "summary and reports pairs missing from every shard and pairs scored in two shards (one is kept).\n"
    "Exit code 1 if a pair is missing or failed."
)


def add_arguments(m: argparse.ArgumentParser) -> None:
    m.add_argument("manifest", help="the manifest the shards were run on")
    m.add_argument("shards", nargs="+", metavar="SHARDS", help="shard results files or globs")
    m.add_argument("--out", help="merged results file (default: MANIFEST.results.jsonl); replaced if it exists")


def shard_files(patterns: list[str]) -> list[str]:
    """The files named by ``patterns`` (files, or globs expanded in sorted order), each once."""
    files = []
    for pattern in patterns:
        found = [pattern] if os.path.isfile(pattern) else sorted(glob.glob(pattern))
        found = [f for f in found if os.path.isfile(f)]
        if not found:
            raise ValueError(f"{pattern}: no such results file (and no file matches it as a glob)")
        files += [f for f in found if f not in files]
    return files


def _scan(path: str):
    """(byte offset, record) of every complete JSON line of ``path``; a line cut short is skipped."""
    with open(path, "rb") as f:
        offset = 0
        for line in iter(f.readline, b""):
            start, offset = offset, offset + len(line)
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(record, dict) and "id" in record:
                yield start, record


def locate(ids: set[str], files: list[str]) -> tuple[dict, dict, int]:
    """({id: (file index, offset)} of the kept records, {id: [files that scored it]}, records of
    unknown ids)."""
    kept: dict[str, tuple[int, int, bool]] = {}  # id -> (file, offset, scored)
    scored_in: dict[str, list[int]] = {}
    unknown = 0
    for number, path in enumerate(files):
        for offset, record in _scan(path):
            key = str(record["id"])
            if key not in ids:
                unknown += 1
                continue
            scored = "metrics" in record
            if scored and number not in scored_in.setdefault(key, []):
                scored_in[key].append(number)
            previous = kept.get(key)
            if previous is None or (scored and (not previous[2] or previous[0] == number)):
                kept[key] = (number, offset, scored)
    duplicates = {k: [files[n] for n in v] for k, v in scored_in.items() if len(v) > 1}
    return {k: (n, o) for k, (n, o, _) in kept.items()}, duplicates, unknown


def merge(manifest: str, files: list[str], out: str) -> tuple[Summary, list[str], dict, int]:
    """Writes the kept record of every manifest pair found to ``out`` in manifest order; returns
    (summary, missing ids, {duplicate id: files that scored it}, records of unknown ids)."""
    rows = read_manifest(manifest)
    out_real = os.path.realpath(out)
    if any(os.path.realpath(f) == out_real for f in files):
        raise ValueError(f"{out}: the merged results file is also one of the shard files; give another --out")
    where, duplicates, unknown = locate({r["id"] for r in rows}, files)
    total, missing = Summary(), []
    handles = [open(f, "rb") for f in files]
    try:
        with open(out, "wb") as target:
            for row in rows:
                if row["id"] not in where:
                    missing.append(row["id"])
                    continue
                number, offset = where[row["id"]]
                handles[number].seek(offset)
                line = handles[number].readline().rstrip(b"\r\n") + b"\n"
                target.write(line)
                total.add(json.loads(line))
    finally:
        for handle in handles:
            handle.close()
    return total, missing, duplicates, unknown


def _listed(ids: list[str], limit: int = 10) -> str:
    more = f", ... ({len(ids) - limit} more)" if len(ids) > limit else ""
    return ", ".join(ids[:limit]) + more


def run(args) -> int:
    out = args.out or default_results(args.manifest)
    io.check_output_file(out)
    files = shard_files(args.shards)
    total, missing, duplicates, unknown = merge(args.manifest, files, out)
    for key, where in duplicates.items():
        print(f"pointmetrics merge: pair {key} was scored in {len(where)} shards ({', '.join(where)}); kept the "
              f"record of {where[0]}", file=sys.stderr)
    if unknown:
        print(f"pointmetrics merge: ignored {unknown} records whose id is not in {args.manifest}", file=sys.stderr)
    stats, ok, failed = total.result()
    print_summary(stats, ok, failed, out)
    print(f"merged {len(files)} files; {len(missing)} pairs missing from every shard, {len(duplicates)} "
          "scored in more than one")
    if missing:
        print(f"missing: {_listed(missing)}")
    return 0 if not missing and failed == 0 else 1
