"""Tanks and Temples evaluation, step for step as the official toolbox.

Reference: isl-org/TanksAndTemples python_toolbox/evaluation (run.py, registration.py,
evaluation.py, trajectory_io.py, plot.py, config.py) at commit
3c2c2125e9b16f32790c96a8953611de785d91d6. Its steps (run.py ``run_evaluation``):

1. scene = basename(dataset_dir); dTau = config.scenes_tau_dict[scene] (Barn 0.01, Caterpillar
   0.005, Church 0.025, Courthouse 0.025, Ignatius 0.003, Meetingroom 0.01, Truck 0.005 m).
2. pcd = o3d.io.read_point_cloud(ply_path); gt = read_point_cloud(<scene>.ply). A mesh is read as
   its vertices: the toolbox never samples faces, and neither do we.
3. trajectory_alignment: camera centres (pose[:3, 3]) of <scene>_COLMAP_SfM.log, transformed by
   <scene>_trans.txt; the user's centres (if the log has more than 1600 frames, only the frames
   of <scene>_mapping_reference.txt: sparse[i] = traj[j - 1]); correspondences (i, i) for i in
   range(len(COLMAP log)); registration_ransac_based_on_correspondence(user, colmap, corres, 0.2,
   PointToPoint(with_scaling=True), 6, RANSACConvergenceCriteria(max_iteration=100000,
   max_validation=100000)). (The toolbox multiplies the centres by 1 + 0 * noise: a no-op.)
4. vol = read_selection_polygon_volume(<scene>.json).
5. r2 = registration_vol_ds(pcd, gt, T, vol, voxel=dTau, threshold=80 dTau, max_itr=20);
   r3 = registration_vol_ds(pcd, gt, r2, vol, dTau / 2, 20 dTau, 20);
   r = registration_unif(pcd, gt, r3, vol, threshold=2 dTau, 20). Each: source transformed by
   the current T, both cropped, voxel-downsampled (vol_ds) or, above 4e6 points, uniformly
   downsampled by round(n / 4e6) (unif); registration_icp(s, t, threshold, I,
   PointToPoint(with_scaling=True), ICPConvergenceCriteria(1e-6, max_itr)); T <- T_icp @ T.
6. EvaluateHisto: s = crop(pcd transformed by T) voxel-downsampled at dTau / 2; t = crop(gt)
   voxel-downsampled at dTau / 2; d1 = s -> t and d2 = t -> s nearest distances (unsquared);
   precision = mean(d1 < dTau), recall = mean(d2 < dTau), F = 2 P R / (P + R); cumulative
   histograms on bins arange(0, 5 dTau, dTau / 100), each divided by its own point count.
7. Outputs: <scene>.precision.ply / .recall.ply coloured by distance (hot_r, capped at 3 dTau),
   .precision.txt / .recall.txt (the cumulative histograms), .prf_tau_plotstr.txt and
   PR_<scene>_@d_th_0_<dTau*10000>.png (plot.py).

What is Open3D's and what is ours: reading, cropping, voxel downsampling, RANSAC and ICP are
Open3D's calls (so that the alignment and the evaluated sets are the toolbox's); the distances of
step 6 and P/R/F are this library's exact nearest neighbours (``pm.correspondences``, float64,
strict "<" as the toolbox), in place of Open3D's ``compute_point_cloud_distance``.

The toolbox targets the Open3D of 2018-2020 (``o3d.registration``); the calls map to Open3D >= 0.10 as:
``o3d.registration.*`` -> ``o3d.pipelines.registration.*`` (same arguments, except below);
``RANSACConvergenceCriteria(max_iteration=1e5, max_validation=1e5)`` -> ``(max_iteration=1e5,
confidence=1.0)`` (with no checkers every hypothesis was validated, so the old loop ran all 1e5
iterations; confidence 1.0 disables the new early stop), and the criteria pass by keyword, since
the 7th positional argument is now ``checkers``; ``ICPConvergenceCriteria(1e-6, max_itr)`` is
kept positional as the toolbox writes it, which sets relative_fitness = 1e-6 and relative_rmse =
max_itr (20), leaving max_iteration at its default 30: that is what the toolbox runs, so we run
it too. RANSAC is random: Open3D's generator is seeded with ``seed`` (the toolbox leaves it unseeded).

Differences: with ``trajectory=None`` (TanksAndTemples issue #56: a reconstruction already in
the ground-truth frame) steps 3 and, unless ``icp=True``, 5 are skipped and ``transform``
(default identity) is used as it is. F is 0 when P + R = 0 (the toolbox divides by zero). A
ground truth that the crop volume empties is an error (the toolbox would report 0).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..pointcloud import correspondences
from .card import MetricCard
from .tnt_io import (
    SCENES_TAU,
    open3d,
    read_crop_volume,
    read_mapping,
    read_point_cloud,
    read_trajectory,
    read_transform,
    scene_paths,
)

__all__ = ["TnTResult", "tnt_eval", "trajectory_alignment", "refine_alignment", "evaluate_histogram"]

REFERENCE = "isl-org/TanksAndTemples python_toolbox/evaluation@3c2c2125e9b16f32790c96a8953611de785d91d6"
MAX_POINT_NUMBER = 4e6  # registration.py
PLOT_STRETCH = 5  # run.py


@dataclass
class TnTResult:
    """Precision, recall and F-score at tau, with the alignment used and the cumulative histograms.

    transformation: 4x4, reconstruction frame -> ground-truth frame. cum_source / cum_target:
    fraction of the evaluated reconstruction / ground-truth points within each bin edge
    ``edges_source[1:]`` / ``edges_target[1:]``. The point sets and distances behind the numbers
    are kept (``source_points``, ``precision_distances``, ...) but left out of :meth:`as_dict`."""

    scene: str
    tau: float
    precision: float
    recall: float
    fscore: float
    transformation: np.ndarray
    counts: dict
    edges_source: np.ndarray
    cum_source: np.ndarray
    edges_target: np.ndarray
    cum_target: np.ndarray
    card: MetricCard
    source_points: np.ndarray = field(repr=False, default=None)
    target_points: np.ndarray = field(repr=False, default=None)
    precision_distances: np.ndarray = field(repr=False, default=None)
    recall_distances: np.ndarray = field(repr=False, default=None)
    notes: list = field(default_factory=list)
    files: list = field(default_factory=list)

    def as_dict(self) -> dict:
        """JSON-ready: the numbers, the transformation, counts, histograms, notes, files and the card."""
        return {"scene": self.scene, "tau": self.tau, "precision": self.precision, "recall": self.recall,
                "fscore": self.fscore, "transformation": self.transformation.tolist(), "counts": self.counts,
                "histogram": {"edges": self.edges_source[1:].tolist(), "precision": self.cum_source.tolist(),
                              "recall": self.cum_target.tolist()},
                "notes": self.notes, "files": self.files, "card": self.card.as_dict()}


def _point_cloud(points: np.ndarray):
    o3d = open3d()
    pcd = o3d.geometry.PointCloud()
    pcd.points = o3d.utility.Vector3dVector(np.asarray(points, dtype=np.float64).reshape(-1, 3))
    return pcd


def trajectory_alignment(user_poses: np.ndarray, colmap_poses: np.ndarray, gt_trans: np.ndarray,
                         mapping: np.ndarray | None = None, seed: int | None = 0,
                         source: str = "camera log") -> np.ndarray:
    """Step 3: the similarity (4x4, with scale) taking the user's camera centres onto the COLMAP
    centres in the ground-truth frame, by Open3D's RANSAC on the pairs (i, i). ``mapping``: the
    mapping file's (n, 2) rows, used when the user's log has more than 1600 frames."""
    o3d = open3d()
    reg = o3d.pipelines.registration
    if len(user_poses) > 1600:
        if mapping is None:
            raise ValueError(f"{source}: has {len(user_poses)} frames (> 1600, a full video), which needs the "
                             "mapping file")
        index = mapping[:, 1] - 1
        if index.min() < 0 or index.max() >= len(user_poses):
            raise ValueError(f"{source}: the mapping file refers to frames outside 1..{len(user_poses)}")
        user_poses = user_poses[index]
    if len(user_poses) < len(colmap_poses):
        raise ValueError(f"{source}: has {len(user_poses)} (sampled) cameras, fewer than the {len(colmap_poses)} of "
                         "the COLMAP log; the toolbox pairs camera i with camera i")
    colmap = _point_cloud(colmap_poses[:, :3, 3])
    colmap.transform(gt_trans)
    user = _point_cloud(user_poses[:, :3, 3])
    corres = o3d.utility.Vector2iVector(np.repeat(np.arange(len(colmap_poses), dtype=np.int32)[:, None], 2, 1))
    if seed is not None:
        o3d.utility.random.seed(int(seed))
    result = reg.registration_ransac_based_on_correspondence(
        user, colmap, corres, 0.2, reg.TransformationEstimationPointToPoint(True), 6,
        criteria=reg.RANSACConvergenceCriteria(max_iteration=100000, confidence=1.0))
    return np.asarray(result.transformation)


def _crop_and_downsample(pcd, volume, method: str, voxel_size: float = 0.01, trans: np.ndarray | None = None):
    """registration.py crop_and_downsample: transform a copy, crop, then voxel or uniform downsampling."""
    copy = open3d().geometry.PointCloud(pcd)
    if trans is not None:
        copy.transform(trans)
    cropped = volume.crop_point_cloud(copy)
    if method == "voxel":
        return cropped.voxel_down_sample(voxel_size)
    n_points = len(cropped.points)
    if n_points > MAX_POINT_NUMBER:
        return cropped.uniform_down_sample(int(round(n_points / float(MAX_POINT_NUMBER))))
    return cropped


def _icp(source, target, volume, init: np.ndarray, threshold: float, max_itr: int, voxel_size: float | None):
    reg = open3d().pipelines.registration
    method = "voxel" if voxel_size is not None else "uniform"
    s = _crop_and_downsample(source, volume, method, voxel_size or 0.01, init)
    t = _crop_and_downsample(target, volume, method, voxel_size or 0.01)
    result = reg.registration_icp(s, t, threshold, np.identity(4), reg.TransformationEstimationPointToPoint(True),
                                  reg.ICPConvergenceCriteria(1e-6, max_itr))  # positional, as the toolbox
    return np.matmul(np.asarray(result.transformation), init)


def refine_alignment(source, target, volume, init: np.ndarray, tau: float) -> np.ndarray:
    """Step 5: the toolbox's three ICP refinements (Open3D point clouds in, 4x4 out)."""
    r2 = _icp(source, target, volume, init, tau * 80, 20, voxel_size=tau)
    r3 = _icp(source, target, volume, r2, tau * 20, 20, voxel_size=tau / 2.0)
    return _icp(source, target, volume, r3, 2 * tau, 20, voxel_size=None)


def evaluate_histogram(s_points: np.ndarray, t_points: np.ndarray, tau: float, plot_stretch: int = PLOT_STRETCH,
                       device: str | torch.device = "cpu") -> dict:
    """Step 6 on the evaluated sets: our exact distances both ways, P/R/F at tau (strict "<") and
    the cumulative histograms of get_f1_score_histo2."""
    if len(s_points) == 0 or len(t_points) == 0:  # the toolbox's else branch
        zero = np.array([0.0])
        return {"precision": 0.0, "recall": 0.0, "fscore": 0.0, "edges_source": zero, "cum_source": zero,
                "edges_target": zero, "cum_target": zero, "d1": np.zeros(len(s_points)), "d2": np.zeros(len(t_points))}
    x = torch.from_numpy(np.ascontiguousarray(s_points, dtype=np.float64)).to(device)
    y = torch.from_numpy(np.ascontiguousarray(t_points, dtype=np.float64)).to(device)
    c = correspondences(x, y)
    f = c.fscore(float(tau))
    # the distances fscore thresholds: sqrt of the exact squared distances (unbatched: row 0)
    d1, d2 = (sq[0].sqrt().cpu().numpy() for sq in (c.sq_x_to_y, c.sq_y_to_x))
    bins = np.arange(0, tau * plot_stretch, tau / 100)
    hist, edges_source = np.histogram(d1, bins)
    cum_source = np.cumsum(hist).astype(float) / len(d1)
    hist, edges_target = np.histogram(d2, bins)
    cum_target = np.cumsum(hist).astype(float) / len(d2)
    return {"precision": float(f.precision), "recall": float(f.recall), "fscore": float(f.fscore),
            "edges_source": edges_source, "cum_source": cum_source, "edges_target": edges_target,
            "cum_target": cum_target, "d1": d1, "d2": d2}


def tnt_eval(
    reconstruction: str | os.PathLike,
    dataset_dir: str | os.PathLike,
    trajectory: str | os.PathLike | None = None,
    scene: str | None = None,
    tau: float | None = None,
    transform: str | os.PathLike | np.ndarray | None = None,
    icp: bool | None = None,
    seed: int | None = 0,
    plots_dir: str | os.PathLike | None = None,
    progress: Callable[[str], None] | None = None,
    device: str | torch.device = "cpu",
) -> TnTResult:
    """Precision, recall and F-score of a reconstruction as the Tanks and Temples toolbox computes them.

    Args:
        reconstruction: point cloud (or mesh: its vertices) in any file Open3D reads.
        dataset_dir: the scene folder with <scene>.ply, <scene>.json, <scene>_COLMAP_SfM.log,
            <scene>_trans.txt and (for full-video logs) <scene>_mapping_reference.txt.
        trajectory: the user's camera log; None when the reconstruction is already aligned
            (then only the ground truth and the crop JSON are needed).
        scene: the scene name (default: the folder's name, as run.py).
        tau: the threshold dTau in the scene's units (default: config.py's value for the scene).
        transform: initial 4x4 (array or np.savetxt file) when ``trajectory`` is None; identity by default.
        icp: run the three ICP refinements (default: with a trajectory yes, without no).
        seed: Open3D's RANSAC seed (None: unseeded, as the toolbox).
        plots_dir: write the toolbox's outputs and plots there (needs matplotlib).
        progress: called with the name of each step.
        device: where the nearest-neighbour searches run.
    """
    step = progress or (lambda name: None)
    dataset_dir = os.fspath(dataset_dir)
    if not os.path.isdir(dataset_dir):
        raise FileNotFoundError(f"{dataset_dir}: scene folder not found")
    scene = scene or os.path.basename(os.path.normpath(dataset_dir))
    if tau is None:
        if scene not in SCENES_TAU:
            raise ValueError(f"scene {scene!r} (the folder's name) has no tau in the toolbox's config.py "
                             f"({', '.join(SCENES_TAU)}); pass the scene name or tau")
        tau = SCENES_TAU[scene]
    if not (isinstance(tau, (int, float)) and np.isfinite(tau) and tau > 0):
        raise ValueError(f"tau must be a positive distance, got {tau!r}")
    tau = float(tau)
    paths = scene_paths(dataset_dir, scene)
    icp = trajectory is not None if icp is None else bool(icp)
    inputs = {"reconstruction": os.fspath(reconstruction), "ground_truth": paths["ground_truth"], "crop": paths["crop"]}

    step("read the crop volume")
    volume = read_crop_volume(paths["crop"])
    if trajectory is not None:
        step("read the camera logs")
        user_poses = read_trajectory(trajectory)
        colmap_poses = read_trajectory(paths["colmap_log"])
        gt_trans = read_transform(paths["trans"])
        mapping = read_mapping(paths["mapping"])[2] if len(user_poses) > 1600 else None
        inputs.update(trajectory=os.fspath(trajectory), colmap_log=paths["colmap_log"], trans=paths["trans"])
        if mapping is not None:
            inputs["mapping"] = paths["mapping"]
    elif transform is None:
        init = np.identity(4)
    elif isinstance(transform, (str, os.PathLike)):
        inputs["transform"] = os.fspath(transform)
        init = read_transform(transform, "initial transform")
    else:
        init = np.asarray(transform, dtype=np.float64)
        if init.shape != (4, 4) or not np.isfinite(init).all():
            raise ValueError(f"transform must be a finite 4x4 matrix, got shape {init.shape}")
    step("read the point clouds")
    pcd = read_point_cloud(reconstruction, "reconstruction")
    gt = read_point_cloud(paths["ground_truth"], "ground truth")
    notes = []
    if trajectory is not None:
        step("trajectory alignment (RANSAC)")
        init = trajectory_alignment(user_poses, colmap_poses, gt_trans, mapping, seed, os.fspath(trajectory))
    if icp:
        step("ICP refinement (3 passes)")
        transformation = refine_alignment(pcd, gt, volume, init, tau)
    else:
        transformation = init

    step("crop and voxel downsampling")
    s = _crop_and_downsample(pcd, volume, "voxel", tau / 2.0, transformation)
    t = _crop_and_downsample(gt, volume, "voxel", tau / 2.0)
    if len(t.points) == 0:
        raise ValueError(f"{paths['crop']}: the crop volume contains no ground-truth point of {paths['ground_truth']}")
    if len(s.points) == 0:
        notes.append("no reconstruction point lies in the crop volume after alignment: precision, recall and "
                     "F-score are 0 (the toolbox's convention); check the alignment")
    step("distances")
    s_points, t_points = np.asarray(s.points), np.asarray(t.points)
    h = evaluate_histogram(s_points, t_points, tau, PLOT_STRETCH, device)
    card = _card(scene, tau, icp, trajectory is not None, seed, inputs)
    result = TnTResult(scene, tau, h["precision"], h["recall"], h["fscore"], transformation,
                       {"reconstruction": len(pcd.points), "ground_truth": len(gt.points),
                        "reconstruction_evaluated": len(s_points), "ground_truth_evaluated": len(t_points)},
                       h["edges_source"], h["cum_source"], h["edges_target"], h["cum_target"], card,
                       s_points, t_points, h["d1"], h["d2"], notes)
    if plots_dir is not None:
        step("writing outputs and plots")
        from .tnt_io import write_outputs

        result.files = write_outputs(os.fspath(plots_dir), scene, tau, PLOT_STRETCH, result)
    return result


def _card(scene: str, tau: float, icp: bool, aligned_by_log: bool, seed, inputs: dict) -> MetricCard:
    o3d = open3d()
    return MetricCard(
        protocol="Tanks and Temples (python_toolbox/evaluation)",
        reference=REFERENCE,
        units="the ground truth's units (metres for the official scenes)",
        metrics={
            "precision": "fraction of reconstruction points (aligned, cropped, voxel-downsampled at tau/2) whose "
                         "unsquared distance to the nearest ground-truth point is < tau",
            "recall": "fraction of ground-truth points (cropped, voxel-downsampled at tau/2) whose unsquared "
                      "distance to the nearest reconstruction point is < tau",
            "fscore": "2 P R / (P + R), 0 when P + R = 0",
        },
        parameters={"scene": scene, "tau": tau, "voxel_size": tau / 2.0, "plot_stretch": PLOT_STRETCH,
                    "histogram_bins": f"arange(0, {PLOT_STRETCH} tau, tau / 100)",
                    "alignment": "camera-log RANSAC (Open3D)" if aligned_by_log else "given transform (no camera log)",
                    "icp": "3 passes: voxel tau / 80 tau, voxel tau/2 / 20 tau, uniform / 2 tau" if icp else "none",
                    "ransac_seed": seed if aligned_by_log else None, "open3d": o3d.__version__,
                    "distances": "pointmetrics exact nearest neighbours, float64"},
        inputs=inputs,
    ).hash_inputs()
