"""DTU MVS 2014 evaluation, step for step as DTUeval-python (jzhangbs/DTUeval-python ``eval.py`` at
commit 45b4fecbe02e8333f6653c6b655c3160eb8404a4).

1. mesh -> points by the triangle-lattice sampler (every vertex plus the lattice samples);
2. seeded shuffle (numpy ``default_rng(seed).shuffle``, the reference's call with a seed);
3. greedy reduction: in shuffled order, drop every point within ``downsample_density`` of a kept
   point (boundary inclusive);
4. keep points inside the bounding box BB_min - patch <= p < BB_max + 2 patch;
5. keep those whose ObsMask voxel round((p - BB_min) / Res) is observed;
6. accuracy: mean distance from those points to the STL reference, over distances < max_dist;
7. completeness: mean distance from the STL points above the ground plane to the points of
   step 4 (box-filtered, not mask-filtered), over distances < max_dist;
8. overall = (accuracy + completeness) / 2, in millimetres.

The reduction and both nearest-neighbour searches run on this library's kernels; the filters are
the reference's numpy expressions, so that the same shuffle gives the same sample sets.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import _checks, io
from .._ops import ops
from ..knn import knn_points
from ..mesh import sample_mesh_lattice
from .card import MetricCard

DTU_REFERENCE = "jzhangbs/DTUeval-python eval.py@45b4fecbe02e8333f6653c6b655c3160eb8404a4"

__all__ = ["DTUResult", "dtu_card", "dtu_eval", "dtu_paths", "greedy_radius_downsample"]

# Colours of the visualisation PLYs, as DTUeval-python writes them.
_RED, _GREEN, _BLUE, _WHITE = (np.array([c], dtype=np.float64) for c in ([1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]))


@dataclass
class DTUResult:
    """accuracy (mean_d2s), completeness (mean_s2d), overall: millimetres. counts: the size of
    each intermediate set. files: the visualisation PLYs written, if any. card: how the numbers
    were computed (:class:`~pointmetrics.protocols.card.MetricCard`). seconds: wall time of each
    stage ("read and sample data", "shuffle", "downsample", ...)."""

    scan: int
    accuracy: float
    completeness: float
    overall: float
    counts: dict = field(default_factory=dict)
    files: list = field(default_factory=list)
    card: MetricCard | None = None
    seconds: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """The result as a JSON-ready dict: scan, accuracy, completeness, overall (mm), counts, files,
        card (None when the result was built without one) and seconds."""
        return {"scan": self.scan, "accuracy": self.accuracy, "completeness": self.completeness,
                "overall": self.overall, "counts": self.counts, "files": self.files,
                "card": None if self.card is None else self.card.as_dict(), "seconds": self.seconds}


def dtu_card(scan: int, data, paths: dict, mode: str, seed: int | None, downsample_density: float,
             patch_size: float, max_dist: float, remove_unreferenced: bool) -> MetricCard:
    """The metric card of one DTU evaluation: DTUeval-python's parameters, the three numbers'
    conventions, and the SHA-256 of the data file (when given as a path) and the scan's STL,
    ObsMask and Plane files."""
    inputs = {"data": os.fspath(data)} if isinstance(data, (str, os.PathLike)) else {}
    inputs.update({"stl": paths["stl"], "obs_mask": paths["obs_mask"], "plane": paths["plane"]})
    return MetricCard(
        protocol="DTU MVS 2014 (DTUeval-python)",
        reference=DTU_REFERENCE,
        units="mm",
        metrics={
            "accuracy": "mean_p d(p, STL) over the reduced, box- and mask-filtered data points p with "
                        "d < max_dist; Euclidean, unsquared; data to ground truth (mean_d2s); lower is better",
            "completeness": "mean_s d(s, data) over the STL points s above the ground plane with d < max_dist, "
                            "to the box-filtered data points; Euclidean, unsquared; ground truth to data "
                            "(mean_s2d); lower is better",
            "overall": "(accuracy + completeness) / 2; lower is better",
        },
        parameters={"scan": int(scan), "mode": mode, "seed": seed, "shuffle": "numpy default_rng(seed).shuffle",
                    "downsample_density_mm": downsample_density, "patch_size_mm": patch_size,
                    "max_dist_mm": max_dist, "remove_unreferenced": remove_unreferenced,
                    "sampler": "triangle lattice (every vertex plus the lattice samples)"},
        inputs=inputs,
    ).hash_inputs()


def dtu_paths(scan: int, dataset_dir: str | os.PathLike) -> dict:
    """The reference files of ``scan`` in the official DTU layout."""
    root = os.fspath(dataset_dir)
    return {
        "stl": os.path.join(root, "Points", "stl", f"stl{scan:03}_total.ply"),
        "obs_mask": os.path.join(root, "ObsMask", f"ObsMask{scan}_10.mat"),
        "plane": os.path.join(root, "ObsMask", f"Plane{scan}.mat"),
    }


def greedy_radius_downsample(points: torch.Tensor, radius: float) -> torch.Tensor:
    """Boolean mask of the points DTUeval-python's reduction keeps: in index order, a point is kept
    unless an earlier kept point lies within ``radius`` (distance <= radius). Exact, with a grid
    of radius-wide cells; CPU and CUDA. float16/bfloat16 points are measured in float32."""
    if not isinstance(points, torch.Tensor) or points.dim() != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be an (N, 3) tensor, got {getattr(points, 'shape', type(points))}")
    if not points.is_floating_point():
        raise TypeError(f"points must be floating point, got {points.dtype}")
    _checks.check_positive_number(radius, "radius")
    if points.numel() and not bool(torch.isfinite(points).all()):
        raise ValueError("points contains NaN or Inf coordinates")
    if points.dtype in (torch.float16, torch.bfloat16):  # half coordinates are exact in float32
        points = points.float()
    return ops.greedy_radius_keep(points.detach().contiguous(), float(radius))


class _Stages:
    """One progress bar over the protocol's stages (tqdm when installed and wanted), and each
    stage's wall time in ``seconds`` (stage name -> seconds)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        self.seconds: dict[str, float] = {}
        self.current, self.started = None, time.perf_counter()
        if enabled:
            with contextlib.suppress(ImportError):
                from tqdm import tqdm

                self.bar = tqdm(total=total, file=sys.stderr, leave=False)

    def __call__(self, description: str | None) -> None:
        now = time.perf_counter()
        if self.current is not None:
            self.seconds[self.current] = round(now - self.started, 4)
        self.current, self.started = description, now
        if description is not None and self.bar is not None:
            if self.bar.n or self.bar.desc:
                self.bar.update(1)
            self.bar.set_description(description)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.update(self.bar.total - self.bar.n)
            self.bar.close()


def _load_mat(path: str, keys: list[str]) -> list[np.ndarray]:
    from scipy.io import loadmat

    try:
        content = loadmat(path)
    except Exception as error:  # noqa: BLE001 - any parser failure becomes one clear message
        raise io.GeometryFileError(f"{path}: cannot be read as a .mat file ({error})") from error
    missing = [k for k in keys if k not in content]
    if missing:
        raise io.GeometryFileError(f"{path}: has no variable {', '.join(missing)}")
    return [content[k] for k in keys]


def _input_points(data, mode: str, density: float, remove_unreferenced: bool) -> np.ndarray:
    if isinstance(data, (str, os.PathLike)):
        geometry = io.load(data)
        verts, faces = geometry.vertices, geometry.faces if geometry.is_mesh else None
    elif isinstance(data, torch.Tensor):
        verts, faces = data, None
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        verts, faces = data
    else:
        raise TypeError("data must be a file path, an (N, 3) point tensor or a (verts, faces) pair")
    if mode == "mesh" and faces is None:
        raise ValueError("mode='mesh' needs a mesh with faces; this input is a point cloud")
    if mode == "pcd" or faces is None:  # a mesh without faces counts as a point cloud
        return verts.detach().double().cpu().numpy().copy()
    return sample_mesh_lattice(verts, faces, density, remove_unreferenced=remove_unreferenced).cpu().numpy()


def _nearest_distance(queries: np.ndarray, targets: np.ndarray, device: torch.device) -> np.ndarray:
    """Euclidean distance from each query to its nearest target (float64, our kNN)."""
    if len(queries) == 0:
        return np.zeros(0)
    if len(targets) == 0:
        return np.full(len(queries), np.inf)
    q = torch.from_numpy(queries).to(device)
    t = torch.from_numpy(targets).to(device)
    return knn_points(q, t, K=1).dists[:, 0].sqrt().cpu().numpy()


def _colours(count: int, members: np.ndarray, dist: np.ndarray, vis_threshold: float, max_dist: float) -> np.ndarray:
    colour = np.tile(_BLUE, (count, 1))
    alpha = (dist.clip(max=vis_threshold) / vis_threshold)[:, None]
    colour[members] = _RED * alpha + _WHITE * (1 - alpha)
    colour[members[dist >= max_dist]] = _GREEN
    return colour


def dtu_eval(
    data,
    scan: int,
    dataset_dir: str | os.PathLike,
    mode: str = "auto",
    seed: int | None = 0,
    downsample_density: float = 0.2,
    patch_size: float = 60.0,
    max_dist: float = 20.0,
    visualize_threshold: float = 10.0,
    vis_dir: str | os.PathLike | None = None,
    remove_unreferenced: bool = False,
    progress: bool = False,
    device: str | torch.device = "cpu",
) -> DTUResult:
    """DTU accuracy, completeness and overall (mm) of a reconstruction, as DTUeval-python computes them.

    Args:
        data: a mesh or point-cloud file, an (N, 3) point tensor, or a (verts, faces) pair.
        scan: the DTU scan id (reads ``Points/stl/stl{scan:03}_total.ply``,
            ``ObsMask/ObsMask{scan}_10.mat`` and ``ObsMask/Plane{scan}.mat`` under ``dataset_dir``).
        mode: "mesh" (lattice-sample the mesh), "pcd" (use the points) or "auto" (mesh if it has faces).
        seed: shuffle seed; the reference shuffles unseeded, so its results vary slightly run to
            run (about 0.01%). None skips the shuffle (the input order is used as is).
        downsample_density, patch_size, max_dist: the protocol's 0.2 mm, 60 mm and 20 mm.
        visualize_threshold: distance (mm) at which the visualisation colour saturates to red.
        vis_dir: if given, writes ``vis_{scan:03}_d2s.ply`` (the reduced points: blue outside the
            box or mask, white to red by distance, green beyond max_dist) and
            ``vis_{scan:03}_s2d.ply`` (the STL points: blue below the ground plane).
        remove_unreferenced: drop vertices no face uses before sampling (NeuralWarp/Geo-NeuS copy).
        progress: show a progress bar over the stages (stderr).
        device: where the reduction and nearest-neighbour searches run.

    A term with no points within max_dist is NaN (with a warning).
    """
    if mode not in ("auto", "mesh", "pcd"):
        raise ValueError(f"mode must be 'auto', 'mesh' or 'pcd', got {mode!r}")
    if not isinstance(scan, (int, np.integer)) or scan < 0:
        raise ValueError(f"scan must be a non-negative integer, got {scan!r}")
    for name, value in (("downsample_density", downsample_density), ("patch_size", patch_size),
                        ("max_dist", max_dist), ("visualize_threshold", visualize_threshold)):
        _checks.check_positive_number(value, name)
    paths = dtu_paths(int(scan), dataset_dir)
    for path in paths.values():
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: DTU file not found (is dataset_dir the DTU root?)")
    device = torch.device(device)
    stage = _Stages(8 if vis_dir is None else 9, progress)
    try:
        stage("read and sample data")
        data_pcd = _input_points(data, mode, downsample_density, remove_unreferenced)
        stage("shuffle")
        if seed is not None:
            data_pcd = _shuffled(data_pcd, seed)
        stage("downsample")
        keep = greedy_radius_downsample(torch.from_numpy(data_pcd).to(device), downsample_density).cpu().numpy()
        data_down = data_pcd[keep]

        stage("mask data")
        obs_mask, bb, res = _load_mat(paths["obs_mask"], ["ObsMask", "BB", "Res"])
        bb = bb.astype(np.float32)
        patch = patch_size
        inbound = ((data_down >= bb[:1] - patch) & (data_down < bb[1:] + patch * 2)).sum(axis=-1) == 3
        data_in = data_down[inbound]
        data_grid = np.around((data_in - bb[:1]) / res).astype(np.int32)
        grid_inbound = ((data_grid >= 0) & (data_grid < np.expand_dims(obs_mask.shape, 0))).sum(axis=-1) == 3
        data_grid_in = data_grid[grid_inbound]
        in_obs = obs_mask[data_grid_in[:, 0], data_grid_in[:, 1], data_grid_in[:, 2]].astype(np.bool_)
        data_in_obs = data_in[grid_inbound][in_obs]

        stage("read STL")
        stl = io.load(paths["stl"]).vertices.double().numpy()
        (plane,) = _load_mat(paths["plane"], ["P"])

        stage("data to STL")
        dist_d2s = _nearest_distance(data_in_obs, stl, device)
        stage("STL to data")
        stl_hom = np.concatenate([stl, np.ones_like(stl[:, :1])], -1)
        above = (plane.reshape((1, 4)) * stl_hom).sum(-1) > 0
        dist_s2d = _nearest_distance(stl[above], data_in, device)

        stage("statistics")
        accuracy = _mean_below(dist_d2s, max_dist, "accuracy")
        completeness = _mean_below(dist_s2d, max_dist, "completeness")
        result = DTUResult(
            int(scan), accuracy, completeness, (accuracy + completeness) / 2,
            counts={"samples": len(data_pcd), "downsampled": len(data_down), "in_box": len(data_in),
                    "in_mask": len(data_in_obs), "stl": len(stl), "stl_above_plane": int(above.sum())},
            card=dtu_card(int(scan), data, paths, mode, seed, downsample_density, patch_size, max_dist,
                          remove_unreferenced),
        )
        # The sample counts belong to the card too: they say how much the numbers rest on.
        result.card.parameters["counts"] = result.counts
        if vis_dir is not None:
            stage("write visualisation")
            os.makedirs(vis_dir, exist_ok=True)
            members = np.where(inbound)[0][grid_inbound][in_obs]
            d2s_path = os.path.join(vis_dir, f"vis_{scan:03}_d2s.ply")
            s2d_path = os.path.join(vis_dir, f"vis_{scan:03}_s2d.ply")
            ramp = {"vis_threshold": visualize_threshold, "max_dist": max_dist}
            _save_colours(d2s_path, data_down, _colours(len(data_down), members, dist_d2s, **ramp))
            _save_colours(s2d_path, stl, _colours(len(stl), np.where(above)[0], dist_s2d, **ramp))
            result.files = [d2s_path, s2d_path]
        stage(None)
        result.seconds = stage.seconds
        return result
    finally:
        stage.close()


def _shuffled(points: np.ndarray, seed: int) -> np.ndarray:
    """The rows in the order ``np.random.default_rng(seed).shuffle(points, axis=0)`` leaves them.

    ``permutation(n)`` shuffles ``arange(n)`` with the same draws as the in-place row shuffle (one
    bounded integer per position, from the last down), so gathering by it gives the identical order
    (tested) in a tenth of the time: the in-place shuffle swaps 24-byte rows through a buffer."""
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(points)))
    return torch.from_numpy(points).index_select(0, order).numpy()


def _mean_below(dist: np.ndarray, max_dist: float, name: str) -> float:
    close = dist[dist < max_dist]
    if len(close) == 0:
        # Almost always the wrong units or frame: say so, since a bare NaN explains nothing.
        warnings.warn(f"dtu_eval: no {name} distance below max_dist ({max_dist:g} mm); it is NaN. DTU expects "
                      "millimetres in the DTU world frame: data in metres or a normalised frame lands outside the "
                      "scan's box and observation mask", RuntimeWarning, stacklevel=3)
        return float("nan")
    return float(close.mean())


def _save_colours(path: str, points: np.ndarray, colours: np.ndarray) -> None:
    io.save_ply(path, points, colors=np.round(colours * 255))
