"""Pictures and tables of a score: coloured error clouds (PLY), a distance histogram (PNG), CSV."""

from __future__ import annotations

import csv
import io as _io
import os
import struct
import zlib

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


def write_png(path: str, image: np.ndarray) -> str:
    """Writes an (H, W, 3) uint8 RGB image as an 8-bit PNG (no dependency beyond zlib)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"write_png: image must be (H, W, 3), got {image.shape}")
    height, width = image.shape[:2]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = np.concatenate([np.zeros((height, 1), np.uint8), image.reshape(height, width * 3)], axis=1)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)
    return path


def save_normal_pngs(directory, pred_images, gt_images, error_images) -> list[str]:
    """Writes normals_pred.png and normals_gt.png ((C, H, W, 3) images in [0, 1], views side by
    side) and normal_error.png (per-pixel squared RGB error, blue 0 to red >= 1). Returns the paths."""
    os.makedirs(directory, exist_ok=True)

    def strip(images) -> np.ndarray:  # (C, H, W, k) -> (H, C * W, k)
        a = images.detach().double().cpu().numpy()
        return np.concatenate(list(a), axis=1)

    paths = []
    for name, images in (("normals_pred.png", pred_images), ("normals_gt.png", gt_images)):
        rgb = np.round(np.clip(strip(images), 0.0, 1.0) * 255).astype(np.uint8)
        paths.append(write_png(os.path.join(directory, name), rgb))
    error = strip(error_images[..., None])[..., 0]
    colours = error_colours(error.reshape(-1), 1.0).reshape(*error.shape, 3)
    paths.append(write_png(os.path.join(directory, "normal_error.png"), colours))
    return paths
