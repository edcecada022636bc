"""Metric cards: how a protocol's numbers were computed, carried with the numbers.

A card names the protocol and the reference it reproduces (repository, path, commit), the units,
thresholds, sample counts and seeds, the direction and squaring convention of every number, the
pointmetrics version, and the SHA-256 of every input file, so that a number can be traced to how
it was computed and compared only with numbers computed the same way. The command line prints it
under "card" with ``--json`` and writes it beside CSV output as ``<name>.card.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field

CARD_VERSION = 1  # the card's own format; raise it when a field changes meaning


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, read in chunks (bounded memory for multi-GB scans)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _version() -> str:
    from .. import __version__

    return __version__


@dataclass
class MetricCard:
    """How a set of numbers was computed.

    protocol: the protocol's name, e.g. "DTU MVS (DTUeval-python)".
    reference: where the reproduced steps come from, "owner/repo path@commit" (one or more, "; ").
    units: the unit of the numbers, e.g. "mm" or "the files' units".
    metrics: per reported number, its definition with direction and squaring, e.g.
        {"accuracy": "mean_p d(p, GT), unsquared, prediction to ground truth"}.
    parameters: thresholds, sample counts, seeds, backends: everything a number depends on.
    inputs: {role: path}; their SHA-256 are added by :meth:`hash_inputs`.
    """

    protocol: str
    reference: str
    units: str
    metrics: dict[str, str]
    parameters: dict = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)
    input_sha256: dict[str, str] = field(default_factory=dict)
    pointmetrics_version: str = field(default_factory=_version)
    card_version: int = CARD_VERSION

    def hash_inputs(self) -> MetricCard:
        """Fills ``input_sha256`` for every input that is a file (folders are listed, not hashed)."""
        for role, path in self.inputs.items():
            if path and os.path.isfile(path):
                self.input_sha256[role] = file_sha256(path)
        return self

    def as_dict(self) -> dict:
        return asdict(self)

    def write(self, path: str | os.PathLike) -> str:
        """Writes the card as JSON to ``path``; returns the path."""
        with open(path, "w") as f:
            json.dump(self.as_dict(), f, indent=2)
            f.write("\n")
        return os.fspath(path)


def card_path_beside(output: str | os.PathLike) -> str:
    """Where the card of an output file goes: ``results.csv`` -> ``results.card.json``."""
    root, _ = os.path.splitext(os.fspath(output))
    return root + ".card.json"
