"""Pictures and tables of a score: coloured error clouds (PLY), a distance histogram (PNG) and CSV.

Only the histogram uses matplotlib, which ``check_visuals_available`` looks for before any work
starts; images without it are written by pointmetrics/png.py.
"""

from __future__ import annotations

import csv
import io as _io
import os

import numpy as np

from .. import io
from ..png import error_colours
from ..protocols.scoring import Scored


def check_visuals_available() -> None:
    """Raises RuntimeError if the histogram cannot be drawn (matplotlib missing)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as error:
        raise RuntimeError("--vis needs matplotlib for the distance histogram: pip install matplotlib") from error


def write_visuals(scored: Scored, directory: str) -> list[str]:
    """Writes pred_error.ply, gt_error.ply (points coloured by their distance to the other set, with
    a ``distance`` property) and distance_histogram.png. Colours saturate at the largest F-score
    threshold. Returns the paths written."""
    io.check_output_dir(directory)
    os.makedirs(directory, exist_ok=True)
    scale = max(scored.taus) if scored.taus else float(scored.accuracy.max())
    paths = []
    for name, points, dist in (("pred_error.ply", scored.pred_points, scored.accuracy),
                               ("gt_error.ply", scored.gt_points, scored.completeness)):
        d = dist.detach().double().numpy()
        path = os.path.join(directory, name)
        io.save_ply(path, points.detach().double().numpy(), colors=error_colours(d, scale), scalars={"distance": d})
        paths.append(path)
    paths.append(_histogram(scored, os.path.join(directory, "distance_histogram.png")))
    return paths


def _histogram(scored: Scored, path: str) -> str:
    """Two distance distributions as fractions of their own point counts (the two sets differ in
    size: 100k samples against a 362k-point scan), with the F-score thresholds in the legend."""
    check_visuals_available()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc = scored.accuracy.detach().double().numpy()
    comp = scored.completeness.detach().double().numpy()
    top = float(np.quantile(np.concatenate([acc, comp]), 0.99))
    bins = np.linspace(0.0, top if top > 0 else 1.0, 60)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    for values, label in ((acc, f"accuracy: prediction to ground truth ({len(acc)} points)"),
                          (comp, f"completeness: ground truth to prediction ({len(comp)} points)")):
        ax.hist(np.minimum(values, top), bins=bins, weights=np.full(len(values), 1.0 / len(values)), alpha=0.55,
                label=label)
    styles = [":", "--", "-.", (0, (1, 4)), (0, (5, 2, 1, 2))]
    labels = scored.tau_labels or [f"{tau:.4g}" for tau in scored.taus]
    for k, (tau, label) in enumerate(zip(scored.taus, labels)):
        ax.axvline(tau, color="k", linestyle=styles[k % len(styles)], linewidth=1.2,
                   label=f"F-score threshold {label} (tau = {tau:.3g})")
    ax.set_xlabel("distance (file units; the last bin holds everything beyond the 99th percentile)")
    ax.set_ylabel("fraction of the set's points per bin")
    ax.set_title(f"{os.path.basename(scored.description['pred'])} vs {os.path.basename(scored.description['gt'])}",
                 fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def as_csv(scored: Scored) -> str:
    """One row per metric: its value, the noise floor (what a perfect prediction scores; empty when
    not computed), unit, convention, and the inputs (files and how they were sampled), so that a CSV
    stands on its own and CSVs of different runs can be concatenated."""
    out = _io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["metric", "value", "noise_floor", "unit", "convention", "pred", "gt", "pred_input", "gt_input",
                     "thresholds"])
    d = scored.description
    for row in scored.rows:
        floor = scored.noise_floor.get(row.name)
        writer.writerow([row.name, repr(row.value), "" if floor is None else repr(floor), row.unit, row.convention,
                         d["pred"], d["gt"], d["pred_input"], d["gt_input"], d["thresholds"]])
    return out.getvalue()

