"""Tanks and Temples parity: the toolbox's steps (isl-org/TanksAndTemples python_toolbox/evaluation
@3c2c212, run.py / registration.py / evaluation.py / trajectory_io.py), transcribed below with
Open3D called as the toolbox calls it (mapped to the current API), against pm.tnt_eval, on a tiny
synthetic scene written in the toolbox's formats around the bunny."""

import json
import os

import numpy as np
import pytest
import torch
from conftest import DATA

import pointmetrics as pm
from pointmetrics import cli, io
from pointmetrics.protocols import tnt_io

o3d = pytest.importorskip("open3d")
reg = o3d.pipelines.registration

SCENE, TAU = "Barn", 0.01
N_CAMERAS = 30


# The toolbox, transcribed ------------------------------------------------------------------------


def ref_read_trajectory(filename):  # trajectory_io.py (poses only)
    traj = []
    with open(filename) as f:
        metastr = f.readline()
        while metastr:
            mat = np.zeros(shape=(4, 4))
            for i in range(4):
                mat[i, :] = np.array(f.readline().split(), dtype=float)
            traj.append(mat)
            metastr = f.readline()
    return traj


def ref_read_mapping(filename):  # registration.py
    with open(filename) as f:
        n_sampled_frames = int(f.readline())
        int(f.readline())
        mapping = np.zeros(shape=(n_sampled_frames, 2))
        metastr = f.readline()
        for k in range(n_sampled_frames):
            mapping[k, :] = list(map(int, metastr.split()))
            metastr = f.readline()
    return mapping


def ref_traj_pcd(traj):  # convert_trajectory_to_pointcloud
    pcd = o3d.geometry.PointCloud()
    for t in traj:
        pcd.points.append(t[:3, 3])
    return pcd


def ref_trajectory_alignment(map_file, traj_to_register, gt_traj_col, gt_trans):
    traj_pcd_col = ref_traj_pcd(gt_traj_col)
    traj_pcd_col.transform(gt_trans)
    corres = o3d.utility.Vector2iVector(np.asarray(list(map(lambda x: [x, x], range(len(gt_traj_col))))))
    rr = reg.RANSACConvergenceCriteria(max_iteration=100000, confidence=1.0)  # old: max_validation=100000
    if len(traj_to_register) > 1600:
        mapping = ref_read_mapping(map_file)
        traj_to_register_pcd = ref_traj_pcd([traj_to_register[int(m[1] - 1)] for m in mapping])
    else:
        traj_to_register_pcd = ref_traj_pcd(traj_to_register)
    o3d.utility.random.seed(0)
    r = reg.registration_ransac_based_on_correspondence(
        traj_to_register_pcd, traj_pcd_col, corres, 0.2, reg.TransformationEstimationPointToPoint(True), 6,
        criteria=rr)
    return r.transformation


def ref_crop_and_downsample(pcd, crop_volume, down_sample_method="voxel", voxel_size=0.01, trans=np.identity(4)):  # noqa: B008 - as the toolbox
    import copy

    pcd_copy = copy.deepcopy(pcd)
    pcd_copy.transform(trans)
    pcd_crop = crop_volume.crop_point_cloud(pcd_copy)
    if down_sample_method == "voxel":
        return pcd_crop.voxel_down_sample(voxel_size)
    elif down_sample_method == "uniform":
        n_points = len(pcd_crop.points)
        if n_points > 4e6:
            return pcd_crop.uniform_down_sample(int(round(n_points / 4e6)))
    return pcd_crop


def ref_registration(source, gt_target, init_trans, crop_volume, threshold, max_itr, voxel_size=None):
    method = "uniform" if voxel_size is None else "voxel"
    s = ref_crop_and_downsample(source, crop_volume, method, voxel_size or 0.01, trans=init_trans)
    t = ref_crop_and_downsample(gt_target, crop_volume, method, voxel_size or 0.01)
    r = reg.registration_icp(s, t, threshold, np.identity(4), reg.TransformationEstimationPointToPoint(True),
                             reg.ICPConvergenceCriteria(1e-6, max_itr))
    return np.matmul(r.transformation, init_trans)


def ref_evaluate_histo(source, target, trans, crop_volume, voxel_size, threshold, plot_stretch=5):
    import copy

    s = copy.deepcopy(source)
    s.transform(trans)
    s = crop_volume.crop_point_cloud(s).voxel_down_sample(voxel_size)
    t = crop_volume.crop_point_cloud(copy.deepcopy(target)).voxel_down_sample(voxel_size)
    distance1 = s.compute_point_cloud_distance(t)
    distance2 = t.compute_point_cloud_distance(s)
    recall = float(sum(d < threshold for d in distance2)) / float(len(distance2))
    precision = float(sum(d < threshold for d in distance1)) / float(len(distance1))
    fscore = 2 * recall * precision / (recall + precision)
    bins = np.arange(0, threshold * plot_stretch, threshold / 100)
    cum_source = np.cumsum(np.histogram(distance1, bins)[0]).astype(float) / len(distance1)
    cum_target = np.cumsum(np.histogram(distance2, bins)[0]).astype(float) / len(distance2)
    return precision, recall, fscore, cum_source, cum_target


def ref_run(dataset_dir, traj_path, ply_path):
    """run.py run_evaluation up to the numbers: returns (transformation, P, R, F, cum_source, cum_target)."""
    d_tau = {"Barn": 0.01}[SCENE]
    pcd = o3d.io.read_point_cloud(ply_path)
    gt_pcd = o3d.io.read_point_cloud(os.path.join(dataset_dir, SCENE + ".ply"))
    gt_trans = np.loadtxt(os.path.join(dataset_dir, SCENE + "_trans.txt"))
    t0 = ref_trajectory_alignment(os.path.join(dataset_dir, SCENE + "_mapping_reference.txt"),
                                  ref_read_trajectory(traj_path),
                                  ref_read_trajectory(os.path.join(dataset_dir, SCENE + "_COLMAP_SfM.log")), gt_trans)
    vol = o3d.visualization.read_selection_polygon_volume(os.path.join(dataset_dir, SCENE + ".json"))
    r2 = ref_registration(pcd, gt_pcd, t0, vol, d_tau * 80, 20, voxel_size=d_tau)
    r3 = ref_registration(pcd, gt_pcd, r2, vol, d_tau * 20, 20, voxel_size=d_tau / 2.0)
    r = ref_registration(pcd, gt_pcd, r3, vol, 2 * d_tau, 20)
    return (r, *ref_evaluate_histo(pcd, gt_pcd, r, vol, d_tau / 2.0, d_tau))


# A synthetic scene in the toolbox's formats ------------------------------------------------------


def similarity(angle, axis, scale, shift):
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = scale * rot, shift
    return m


def apply(m, p):
    return p @ m[:3, :3].T + m[:3, 3]


def write_log(path, centres, rng):
    with open(path, "w") as f:
        for k, c in enumerate(centres):
            pose = np.eye(4)
            pose[:3, :3] = similarity(rng.uniform(0, 6), rng.normal(size=3), 1.0, 0)[:3, :3]
            pose[:3, 3] = c
            f.write(f"{k} {k} 0\n" + "\n".join(" ".join(f"{v:.12f}" for v in row) for row in pose) + "\n")


def write_crop(path, x_range, z_range, y_range):
    (x0, x1), (z0, z1) = x_range, z_range
    polygon = [[x0, 0, z0], [x1, 0, z0], [x1, 0, z1], [x0, 0, z1]]
    with open(path, "w") as f:
        json.dump({"axis_max": y_range[1], "axis_min": y_range[0], "bounding_polygon": polygon,
                   "class_name": "SelectionPolygonVolume", "orthogonal_axis": "Y", "version_major": 1,
                   "version_minor": 0}, f)


COLMAP_TO_GT = similarity(0.7, [1, 2, 3], 2.5, [0.3, -0.2, 0.1])  # <scene>_trans.txt
USER_TO_GT = similarity(-1.1, [0, 1, 1], 0.6, [-0.05, 0.4, 0.2])  # what the alignment should find


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("tnt")
    folder = root / SCENE
    folder.mkdir()
    rng = np.random.default_rng(3)
    g = io.load(DATA / "bunny_res3.ply")
    v, f = g.vertices, g.faces
    gen = torch.Generator().manual_seed(0)
    gt = pm.sample_points_on_mesh(v, f, 12000, generator=gen).points.numpy()
    rec = pm.sample_points_on_mesh(v, f, 9000, generator=gen).points.numpy()
    rec = rec[rec[:, 0] > -0.04] + rng.normal(scale=0.004, size=(int((rec[:, 0] > -0.04).sum()), 3))  # a hole
    rec[:300] += rng.uniform(-0.05, 0.05, size=(300, 3))  # outliers
    io.save_ply(folder / f"{SCENE}.ply", gt)
    user_rec = apply(np.linalg.inv(USER_TO_GT), rec)
    io.save_ply(root / "rec.ply", user_rec)
    io.save_ply(root / "rec_aligned.ply", rec)
    # the crop leaves out the bunny's ears (y > 0.15) and a slab at x < -0.08
    write_crop(folder / f"{SCENE}.json", (-0.08, 0.2), (-0.2, 0.2), (0.0, 0.15))
    centres = np.stack([0.4 * np.cos(np.linspace(0, 6.2, N_CAMERAS)), np.linspace(0.05, 0.3, N_CAMERAS),
                        0.4 * np.sin(np.linspace(0, 6.2, N_CAMERAS))], 1)
    np.savetxt(folder / f"{SCENE}_trans.txt", COLMAP_TO_GT)
    write_log(folder / f"{SCENE}_COLMAP_SfM.log", apply(np.linalg.inv(COLMAP_TO_GT), centres), rng)
    user_centres = apply(np.linalg.inv(USER_TO_GT), centres + rng.normal(scale=0.002, size=centres.shape))
    write_log(root / "user.log", user_centres, rng)
    # a full-video log (> 1600 frames) and the mapping file that picks the sampled frames from it
    frames = np.sort(rng.choice(1700, N_CAMERAS, replace=False)) + 1
    full = rng.normal(size=(1700, 3))
    full[frames - 1] = user_centres
    write_log(root / "user_full.log", full, rng)
    with open(folder / f"{SCENE}_mapping_reference.txt", "w") as fh:
        fh.write(f"{N_CAMERAS}\n1700\n" + "".join(f"{k + 1} {j}\n" for k, j in enumerate(frames)))
    return root


# Parity ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def results(scene):
    ours = pm.tnt_eval(scene / "rec.ply", scene / SCENE, trajectory=scene / "user.log")
    ref = ref_run(str(scene / SCENE), str(scene / "user.log"), str(scene / "rec.ply"))
    return ours, ref


def test_full_pipeline_matches_toolbox(results):
    ours, (t_ref, p, r, f, cum_s, cum_t) = results
    # same Open3D calls with the same seed: the same alignment, near the true one (ICP with scaling
    # shrinks the scale by about 2% on this noisy partial scene, as the toolbox does)
    np.testing.assert_allclose(ours.transformation, t_ref, atol=1e-9)
    np.testing.assert_allclose(ours.transformation, USER_TO_GT, atol=0.03)
    assert abs(ours.precision - p) <= 1e-6 and abs(ours.recall - r) <= 1e-6 and abs(ours.fscore - f) <= 1e-6
    np.testing.assert_allclose(ours.cum_source, cum_s, atol=1e-12)
    np.testing.assert_allclose(ours.cum_target, cum_t, atol=1e-12)
    assert 0.3 < ours.precision < 1 and 0.3 < ours.recall < 1  # a test that could fail: noise and outliers
    assert ours.counts["ground_truth_evaluated"] < ours.counts["ground_truth"]  # the crop and voxel grid act


def test_same_transformation_same_numbers(scene, results):
    """P/R/F on our distances equal the toolbox's (Open3D's distances) for one given transformation."""
    ours, (t_ref, *_) = results
    pcd = o3d.io.read_point_cloud(str(scene / "rec.ply"))
    gt = o3d.io.read_point_cloud(str(scene / SCENE / f"{SCENE}.ply"))
    vol = o3d.visualization.read_selection_polygon_volume(str(scene / SCENE / f"{SCENE}.json"))
    for trans in (t_ref, USER_TO_GT):
        p, r, f, cum_s, cum_t = ref_evaluate_histo(pcd, gt, trans, vol, TAU / 2, TAU)
        mine = pm.tnt_eval(scene / "rec.ply", scene / SCENE, transform=trans)
        assert abs(mine.precision - p) <= 1e-6 and abs(mine.recall - r) <= 1e-6 and abs(mine.fscore - f) <= 1e-6
        np.testing.assert_allclose(mine.cum_target, cum_t, atol=1e-12)


def test_aligned_mode_and_mapping(scene, results):
    """Issue #56: an aligned cloud needs no camera log; a full-video log goes through the mapping file."""
    ours, _ = results
    aligned = pm.tnt_eval(scene / "rec_aligned.ply", scene / SCENE)
    pcd = o3d.io.read_point_cloud(str(scene / "rec_aligned.ply"))
    gt = o3d.io.read_point_cloud(str(scene / SCENE / f"{SCENE}.ply"))
    vol = o3d.visualization.read_selection_polygon_volume(str(scene / SCENE / f"{SCENE}.json"))
    p, r, f, _, _ = ref_evaluate_histo(pcd, gt, np.identity(4), vol, TAU / 2, TAU)
    assert abs(aligned.fscore - f) <= 1e-6 and abs(aligned.precision - p) <= 1e-6
    np.testing.assert_array_equal(aligned.transformation, np.identity(4))
    assert aligned.card.parameters["icp"] == "none" and "trajectory" not in aligned.card.inputs
    full = pm.tnt_eval(scene / "rec.ply", scene / SCENE, trajectory=scene / "user_full.log")
    np.testing.assert_allclose(full.transformation, ours.transformation, atol=1e-9)
    assert "mapping" in full.card.inputs


def test_readers(tmp_path, scene):
    poses = tnt_io.read_trajectory(scene / "user.log")
    assert poses.shape == (N_CAMERAS, 4, 4)
    ref = ref_read_trajectory(scene / "user.log")
    np.testing.assert_array_equal(poses, np.stack(ref))
    n, total, mapping = tnt_io.read_mapping(scene / SCENE / f"{SCENE}_mapping_reference.txt")
    assert (n, total) == (N_CAMERAS, 1700)
    np.testing.assert_array_equal(mapping, ref_read_mapping(scene / SCENE / f"{SCENE}_mapping_reference.txt"))
    bad = tmp_path / "bad.log"
    bad.write_text("0 0 0\n1 0 0 0\n0 1 0\n0 0 1 0\n0 0 0 1\n")
    with pytest.raises(ValueError, match="line 3"):
        tnt_io.read_trajectory(bad)


# Command line ------------------------------------------------------------------------------------


def test_cli_outputs(scene, tmp_path, capsys):
    args = [str(scene / "rec_aligned.ply"), str(scene / SCENE), "--quiet"]
    assert cli.main(["tnt", *args]) == 0
    table = capsys.readouterr().out
    assert "f-score" in table and SCENE in table
    assert cli.main(["tnt", *args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["card"]["reference"].startswith("isl-org/TanksAndTemples") and data["tau"] == TAU
    assert set(data["card"]["input_sha256"]) == {"reconstruction", "ground_truth", "crop"}
    csv_path = tmp_path / "out.csv"
    plots = tmp_path / "plots"
    assert cli.main(["tnt", *args, "--csv", str(csv_path), "--plots", str(plots)]) == 0
    capsys.readouterr()
    rows = csv_path.read_text().splitlines()
    assert rows[0].startswith("metric,value") and any(r.startswith("fscore,") for r in rows)
    card = json.loads((tmp_path / "out.card.json").read_text())
    assert card["parameters"]["tau"] == TAU
    names = sorted(os.listdir(plots))
    assert f"PR_{SCENE}_@d_th_0_0100.png" in names and f"{SCENE}.precision.ply" in names
    assert (plots / f"PR_{SCENE}_@d_th_0_0100.png").read_bytes()[:4] == b"\x89PNG"
    assert cli.main(["tnt", *args, "--csv", "-"]) == 0
    assert capsys.readouterr().out.startswith("metric,value")


def _error(capfd, *args):
    """One line on stderr, nothing on stdout: also Open3D's own C++ messages are kept off the terminal."""
    assert cli.main(["tnt", *args, "--quiet"]) == 2
    out, err = capfd.readouterr()
    err = err.strip().splitlines()
    assert out == "" and len(err) == 1 and err[0].startswith("pointmetrics: error: "), (out, err)
    return err[0]


def test_cli_errors(scene, tmp_path, capfd):
    capsys = capfd
    rec, folder = str(scene / "rec.ply"), str(scene / SCENE)
    assert "missing.ply: reconstruction not found" in _error(capsys, str(tmp_path / "missing.ply"), folder)
    assert "scene folder not found" in _error(capsys, rec, str(tmp_path / "nowhere"))
    (tmp_path / "bad.ply").write_text("garbage\n")
    message = _error(capsys, str(tmp_path / "bad.ply"), folder)
    assert "bad.ply: reconstruction has no points or cannot be read (Open3D: " in message and "\x1b" not in message
    bad = tmp_path / "bad.log"
    bad.write_text("0 0 0\n1 0 0 0\n0 1 0 x\n0 0 1 0\n0 0 0 1\n")
    assert "bad.log: line 3" in _error(capsys, rec, folder, "--traj", str(bad))
    # an unknown scene needs --tau
    other = tmp_path / "Mine"
    other.mkdir()
    assert "no tau" in _error(capsys, rec, str(other))
    # a crop volume away from the scene: the ground truth is cropped to nothing
    empty = tmp_path / SCENE
    empty.mkdir()
    for name in (f"{SCENE}.ply",):
        (empty / name).write_bytes((scene / SCENE / name).read_bytes())
    write_crop(empty / f"{SCENE}.json", (5, 6), (5, 6), (5, 6))
    assert "contains no ground-truth point" in _error(capsys, rec, str(empty))
    (empty / f"{SCENE}.json").write_text("{not json")
    assert "not a JSON file" in _error(capsys, rec, str(empty))
    write_crop(empty / f"{SCENE}.json", (-1, 1), (-1, 1), (-1, 1))
    assert "COLMAP_SfM.log: camera log (.log) not found" in _error(capsys, rec, str(empty), "--traj",
                                                                    str(scene / "user.log"))


def test_distances_on_device(scene, device):
    """evaluate_histogram on each device gives Open3D's nearest distances and the same P/R/F."""
    from pointmetrics.protocols.tnt import evaluate_histogram

    s = o3d.io.read_point_cloud(str(scene / "rec_aligned.ply")).voxel_down_sample(TAU / 2)
    t = o3d.io.read_point_cloud(str(scene / SCENE / f"{SCENE}.ply")).voxel_down_sample(TAU / 2)
    h = evaluate_histogram(np.asarray(s.points), np.asarray(t.points), TAU, device=device)
    np.testing.assert_allclose(h["d1"], np.asarray(s.compute_point_cloud_distance(t)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(h["d2"], np.asarray(t.compute_point_cloud_distance(s)), rtol=0, atol=1e-12)
    assert h["precision"] == float(np.mean(h["d1"] < TAU)) and h["recall"] == float(np.mean(h["d2"] < TAU))
    empty = evaluate_histogram(np.zeros((0, 3)), np.asarray(t.points), TAU, device=device)
    assert (empty["precision"], empty["recall"], empty["fscore"]) == (0.0, 0.0, 0.0)  # the toolbox's else branch
