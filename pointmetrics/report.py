"""Pictures and tables of a score: coloured error clouds (PLY), a distance histogram (PNG), CSV."""

from __future__ import annotations

import csv
import io as _io
import os

import numpy as np

from . import io
from .scoring import Scored

# Error colour ramp: blue (0) -> yellow (half the scale) -> red (the scale and beyond).
_RAMP = np.array([[0.19, 0.36, 0.85], [0.98, 0.86, 0.22], [0.84, 0.10, 0.11]])


def error_colours(distance: np.ndarray, scale: float) -> np.ndarray:
    """(N, 3) uint8 colours for distances, saturating at ``scale``."""
    t = np.clip(np.asarray(distance, dtype=np.float64) / scale, 0.0, 1.0) * (len(_RAMP) - 1)
    low = np.minimum(t.astype(int), len(_RAMP) - 2)
    frac = (t - low)[:, None]
    return np.round(255 * ((1 - frac) * _RAMP[low] + frac * _RAMP[low + 1])).astype(np.uint8)


def write_visuals(scored: Scored, directory: str) -> list[str]:
    """Writes pred_error.ply, gt_error.ply (points coloured by their distance to the other set, with
    a ``distance`` property) and distance_histogram.png. Colours saturate at the largest F-score
    threshold. Returns the paths written."""
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
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise RuntimeError("--vis needs matplotlib for the histogram: pip install matplotlib") from error
    acc = scored.accuracy.detach().double().numpy()
    comp = scored.completeness.detach().double().numpy()
    top = float(np.quantile(np.concatenate([acc, comp]), 0.99))
    bins = np.linspace(0.0, top if top > 0 else 1.0, 60)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax.hist(np.minimum(acc, top), bins=bins, alpha=0.6, label="accuracy: prediction to ground truth")
    ax.hist(np.minimum(comp, top), bins=bins, alpha=0.6, label="completeness: ground truth to prediction")
    for tau in scored.taus:
        ax.axvline(tau, color="k", linestyle=":", linewidth=1)
    ax.set_xlabel("distance (file units; the last bin holds everything beyond the 99th percentile)")
    ax.set_ylabel("points")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def as_csv(scored: Scored) -> str:
    out = _io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["metric", "value", "convention"])
    for row in scored.rows:
        writer.writerow([row.name, repr(row.value), row.convention])
    return out.getvalue()
