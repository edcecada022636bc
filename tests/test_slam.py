"""The indoor SLAM mesh protocol (NICE-SLAM eval_recon.py / cull_mesh.py, Co-SLAM's culling variants):
parity with the reference's steps transcribed below, on a synthetic room written in Replica's and
ScanNet's formats; dataset readers; bad input on the command line."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import DATA
from scipy.spatial import cKDTree

import pointmetrics as pm
from pointmetrics import cli, io
from pointmetrics.protocols import slam_io
from pointmetrics.protocols.culling import cull_mesh, render_depth
from pointmetrics.protocols.slam import icp_point_to_point, slam_metrics

K = slam_io.CameraIntrinsics(fx=20.0, fy=20.0, cx=15.5, cy=11.5, height=24, width=32)  # tiny images


# A synthetic room ------------------------------------------------------------------------------------


def grid_quad(origin, du, dv, n):
    """An n x n grid of triangles on the parallelogram origin + s du + t dv."""
    s, t = np.meshgrid(np.linspace(0, 1, n + 1), np.linspace(0, 1, n + 1), indexing="ij")
    verts = origin + s.reshape(-1, 1) * du + t.reshape(-1, 1) * dv
    i = np.arange(n)[:, None] * (n + 1) + np.arange(n)[None, :]
    a, b, c, d = i, i + (n + 1), i + (n + 2), i + 1
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return verts, faces


def merge(*meshes):
    verts, faces, offset = [], [], 0
    for v, f in meshes:
        verts.append(v)
        faces.append(f + offset)
        offset += len(v)
    return np.concatenate(verts), np.concatenate(faces)


def box(lo, hi, n):
    """The six sides of an axis-aligned box, each an n x n grid (small triangles, as room scans have)."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    e = np.diag(hi - lo)
    sides = []
    for axis in range(3):
        u, v = e[(axis + 1) % 3], e[(axis + 2) % 3]
        sides.append(grid_quad(lo, u, v, n))
        sides.append(grid_quad(lo + e[axis], u, v, n))
    return merge(*sides)


def bunny():
    g = io.load(DATA / "bunny_res4.ply")
    v = g.vertices.numpy() * 5
    v = np.stack([v[:, 0], -v[:, 2], v[:, 1]], 1)  # y-up bunny, z-up room
    return v - [v[:, 0].mean() - 2.0, v[:, 1].mean() - 1.5, v[:, 2].min()], g.faces.numpy()


def opencv_c2w(eye, forward):
    """Camera-to-world in OpenCV's convention (x right, y down, z forward), world z up."""
    f = np.asarray(forward, float) / np.linalg.norm(forward)
    right = np.cross(f, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, np.cross(f, right), f, eye
    return m


def room():
    """Ground truth (a 4 x 3 x 2.5 m room with a bunny), the reconstruction (the same, with the bunny
    moved 2 cm, a blob behind a wall and a blob behind the cameras), and four cameras."""
    walls = box([0, 0, 0], [4, 3, 2.5], 6)
    b = bunny()
    gt = merge(walls, b)
    outside = box([4.3, 1.2, 0.8], [4.8, 1.8, 1.4], 2)  # behind the +x wall: in a frustum, occluded
    behind = box([0.2, 0.2, 2.0], [0.5, 0.5, 2.3], 2)  # above and behind every camera: no frustum
    rec = merge(walls, (b[0] + [0.02, 0.0, 0.0], b[1]), outside, behind)
    eyes = [[1.0, 1.5, 1.2], [1.2, 1.4, 1.3], [3.0, 1.6, 1.2], [2.0, 2.5, 1.0]]
    forwards = [[1.0, 0.05, -0.2], [1.0, -0.3, -0.1], [-1.0, 0.1, -0.3], [0.1, -1.0, -0.4]]
    c2w = np.stack([opencv_c2w(e, f) for e, f in zip(eyes, forwards)])
    return gt, rec, c2w


# The references' steps, transcribed ----------------------------------------------------------------


def nice_slam_cull(vertices, faces, c2w_opencv, H, W, fx, fy, cx, cy):
    """cvg/nice-slam src/tools/cull_mesh.py (load_poses flips to OpenGL; then its loop), on the CPU."""
    poses = []
    for c2w in c2w_opencv:
        c2w = c2w.copy()
        c2w[:3, 1] *= -1
        c2w[:3, 2] *= -1
        poses.append(torch.from_numpy(c2w).float())
    whole_mask = np.ones(vertices.shape[0]).astype(bool)
    for c2w in poses:
        points = torch.from_numpy(vertices.copy())
        w2c = np.linalg.inv(c2w.numpy())  # the reference's np.linalg.inv(tensor) returned an ndarray then
        w2c = torch.from_numpy(w2c).float()
        K_ = torch.from_numpy(np.array([[fx, .0, cx], [.0, fy, cy], [.0, .0, 1.0]]).reshape(3, 3))
        ones = torch.ones_like(points[:, 0]).reshape(-1, 1)
        homo_points = torch.cat([points, ones], dim=1).reshape(-1, 4, 1).float()
        cam_cord_homo = w2c @ homo_points
        cam_cord = cam_cord_homo[:, :3]
        cam_cord[:, 0] *= -1
        uv = K_.float() @ cam_cord.float()
        z = uv[:, -1:] + 1e-5
        uv = uv[:, :2] / z
        uv = uv.float().squeeze(-1).numpy()
        edge = 0
        mask = (0 <= -z[:, 0, 0].numpy()) & (uv[:, 0] < W - edge) & (uv[:, 0] > edge) & (uv[:, 1] < H - edge) & (
            uv[:, 1] > edge)
        whole_mask &= ~mask
    face_mask = whole_mask[faces].all(axis=1)
    return ~face_mask  # update_faces(~face_mask): the faces kept


def pyrender_projection(fx, fy, cx, cy, W, H, znear, zfar):
    """pyrender IntrinsicsCamera.get_projection_matrix (what Co-SLAM renders its depth with)."""
    P = np.zeros((4, 4))
    P[0][0] = 2.0 * fx / W
    P[1][1] = 2.0 * fy / H
    P[0][2] = 1.0 - 2.0 * cx / W
    P[1][2] = 2.0 * cy / H - 1.0
    P[3][2] = -1.0
    P[2][2] = (zfar + znear) / (znear - zfar)
    P[2][3] = (2 * zfar * znear) / (znear - zfar)
    return P


def coslam_depth(vertices, faces, c2w_gl, K_, H, W, near=0.01, far=10.0):
    """render_depth_maps_doublesided with our rasteriser in pyrender's place: pyrender's camera
    matrix, and its linear depth (0 for background). No culling = the two windings' nearer depth."""
    P = pyrender_projection(K_[0, 0], K_[1, 1], K_[0, 2], K_[1, 2], W, H, near, far)
    cams = pm.Cameras(torch.linalg.inv(torch.as_tensor(np.stack(c2w_gl))), torch.as_tensor(P))
    ndc = pm.rasterize(torch.as_tensor(vertices), torch.as_tensor(faces), cams, (H, W)).depth.numpy()
    with np.errstate(invalid="ignore"):
        d = 2 * far * near / ((far + near) - ndc * (far - near))
    return [np.where(np.isfinite(ndc[i]), d[i], 0.0) for i in range(len(c2w_gl))]


def coslam_cull(vertices, faces, c2w_gl, K_, H, W, remove_occlusion, depths=None, virt_cam_starts=-1, eps=0.03,
                th_obs=0):
    """JingwenWang95/neural_slam_eval cull_mesh.py: cull_from_one_pose, apply_culling_strategy and the
    face rule of cull_one_mesh."""
    in_frustum_mask = np.zeros(vertices.shape[0])
    obs_mask = np.zeros(vertices.shape[0])
    for i, pose in enumerate(c2w_gl):
        c2w = pose.copy()
        c2w[:3, 1] *= -1
        c2w[:3, 2] *= -1
        w2c = np.linalg.inv(c2w)
        rotation, translation = w2c[:3, :3], w2c[:3, 3]
        camera_space = rotation @ vertices.transpose() + translation[:, None]
        uvz = (K_ @ camera_space).transpose()
        pz = uvz[:, 2] + 1e-8
        px = uvz[:, 0] / pz
        py = uvz[:, 1] / pz
        in_frustum = (0 <= px) & (px <= W - 1) & (0 <= py) & (py <= H - 1) & (pz > 0)
        u = np.clip(px, 0, W - 1).astype(np.int32)
        v = np.clip(py, 0, H - 1).astype(np.int32)
        obs = in_frustum
        if remove_occlusion:
            obs = in_frustum & (pz < (depths[i][v, u] + eps))
        obs_mask = obs_mask + obs.astype(np.int32)
        if virt_cam_starts < 0 or i < virt_cam_starts:
            in_frustum_mask = in_frustum_mask + in_frustum.astype(np.int32)
    inf = in_frustum_mask[faces]
    valid = (inf > th_obs).any(axis=1)
    if remove_occlusion:
        valid &= (obs_mask[faces] > th_obs).any(axis=1)
    return valid


def nice_slam_metrics(rec_points, gt_points):
    """cvg/nice-slam src/tools/eval_recon.py: accuracy, completion, completion_ratio and calc_3d_metric's units."""
    acc = np.mean(cKDTree(gt_points).query(rec_points)[0])
    comp_d = cKDTree(rec_points).query(gt_points)[0]
    comp = np.mean(comp_d)
    ratio = np.mean((comp_d < 0.05).astype(np.float64))
    return acc * 100, comp * 100, ratio * 100


# Parity ----------------------------------------------------------------------------------------------


def test_nice_slam_culling_keeps_the_reference_faces():
    gt, rec, c2w = room()
    ref = nice_slam_cull(rec[0], rec[1], c2w, K.height, K.width, K.fx, K.fy, K.cx, K.cy)
    ours = cull_mesh(torch.as_tensor(rec[0]), torch.as_tensor(rec[1]), c2w, K, "nice-slam").numpy()
    assert np.array_equal(ours, ref)
    assert 0 < ref.sum() < len(ref)  # the blob behind the cameras goes, most of the room stays
    behind = slice(len(rec[1]) - 48, len(rec[1]))
    assert not ours[behind].any()


@pytest.mark.parametrize("occlusion", [False, True])
def test_coslam_culling_keeps_the_reference_faces(occlusion):
    gt, rec, c2w = room()
    c2w_gl = [slam_io.opencv_to_opengl(m) for m in c2w]  # what Co-SLAM's dataset loader hands over
    depths = coslam_depth(rec[0], rec[1], c2w_gl, K.K, K.height, K.width) if occlusion else None
    ref = coslam_cull(rec[0], rec[1], c2w_gl, K.K, K.height, K.width, occlusion, depths)
    method = "occlusion" if occlusion else "frustum"
    ours = cull_mesh(torch.as_tensor(rec[0]), torch.as_tensor(rec[1]), c2w, K, method).numpy()
    assert np.array_equal(ours, ref)
    outside = slice(len(rec[1]) - 96, len(rec[1]) - 48)  # the blob behind the +x wall
    assert ours[outside].any() != occlusion  # in a frustum; occluded by the wall


def test_virtual_cameras_only_add_observations():
    gt, rec, c2w = room()
    real, virtual = c2w[:2], c2w[2:]
    c2w_gl = [slam_io.opencv_to_opengl(m) for m in c2w]
    depths = coslam_depth(rec[0], rec[1], c2w_gl, K.K, K.height, K.width)
    ref = coslam_cull(rec[0], rec[1], c2w_gl, K.K, K.height, K.width, True, depths, virt_cam_starts=2)
    v, f = torch.as_tensor(rec[0]), torch.as_tensor(rec[1])
    ours = cull_mesh(v, f, real, K, "occlusion", virtual_c2w=virtual).numpy()
    assert np.array_equal(ours, ref)
    given = cull_mesh(v, f, real, K, "occlusion", virtual_c2w=virtual, depth_maps=depths).numpy()
    assert np.array_equal(given, ref)


def test_rendered_depth_is_the_distance_to_the_wall():
    """Pixel (r, c) samples (c + 0.5, r + 0.5): the depth of the +x wall seen straight on."""
    walls = box([0, 0, 0], [4, 3, 2.5], 6)
    eye = np.array([1.0, 1.5, 1.2])
    depth = render_depth(torch.as_tensor(walls[0]), torch.as_tensor(walls[1]), opencv_c2w(eye, [1, 0, 0])[None], K)[0]
    r, c = np.meshgrid(np.arange(K.height) + 0.5, np.arange(K.width) + 0.5, indexing="ij")
    x, y = (c - K.cx) / K.fx, (r - K.cy) / K.fy  # ray (x, y, 1) in the camera; camera x = -world y, y = -world z
    hits_x_wall = (np.abs(x * 3.0) < 1.5) & (np.abs(1.2 - y * 3.0 - 1.25) < 1.25)
    assert hits_x_wall.sum() > 0.3 * hits_x_wall.size
    np.testing.assert_allclose(depth.numpy()[hits_x_wall], 3.0, rtol=1e-9)


def test_metrics_equal_the_reference_on_the_same_samples():
    gt, rec, c2w = room()
    keep = cull_mesh(torch.as_tensor(rec[0]), torch.as_tensor(rec[1]), c2w, K, "nice-slam")
    g = torch.Generator().manual_seed(3)
    r = pm.sample_points_on_mesh(torch.as_tensor(rec[0]), torch.as_tensor(rec[1])[keep], 20000, generator=g).points
    t = pm.sample_points_on_mesh(torch.as_tensor(gt[0]), torch.as_tensor(gt[1]), 20000, generator=g).points
    ours = slam_metrics(r, t)
    acc, comp, ratio = nice_slam_metrics(r.numpy(), t.numpy())
    np.testing.assert_allclose([ours["accuracy"], ours["completion"], ours["completion_ratio"]], [acc, comp, ratio],
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours["chamfer_l1"], (acc + comp) / 2, rtol=1e-9)
    precision = np.mean(cKDTree(t.numpy()).query(r.numpy())[0] < 0.05) * 100
    np.testing.assert_allclose(ours["fscore"], 2 * precision * ratio / (precision + ratio), rtol=1e-9)


def test_icp_equals_open3d():
    o3d = pytest.importorskip("open3d")
    gt, _, _ = room()
    angle = np.radians(1.5)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    src = gt[0] @ rot.T + [0.03, -0.02, 0.01]
    reg = o3d.pipelines.registration.registration_icp(
        o3d.geometry.PointCloud(o3d.utility.Vector3dVector(src)),
        o3d.geometry.PointCloud(o3d.utility.Vector3dVector(gt[0])), 0.1, np.eye(4),
        o3d.pipelines.registration.TransformationEstimationPointToPoint())
    ours = icp_point_to_point(torch.as_tensor(src), torch.as_tensor(gt[0]))
    np.testing.assert_allclose(ours, reg.transformation, atol=1e-9)
    assert not np.allclose(ours, np.eye(4), atol=1e-2)


def test_align_undoes_a_shift():
    gt, _, _ = room()
    shifted = (gt[0] + [0.03, 0.0, -0.02], gt[1])
    kwargs = dict(cull="none", samples=5000, seed=1)
    same = pm.slam_mesh_eval(gt, gt, **kwargs)
    aligned = pm.slam_mesh_eval(shifted, gt, align=True, **kwargs)
    np.testing.assert_allclose(np.array(aligned.transform)[:3, 3], [-0.03, 0.0, 0.02], atol=1e-9)
    np.testing.assert_allclose(aligned.accuracy, same.accuracy, rtol=1e-7)  # the same samples, moved back
    assert aligned.card.parameters["align"].startswith("ICP")


# Dataset layouts ------------------------------------------------------------------------------------


def write_pose(path, m):
    path.write_text("\n".join(" ".join(f"{x:.17g}" for x in row) for row in m) + "\n")


def write_depth(path, depth, scale):
    from PIL import Image

    Image.fromarray(np.round(depth * scale).astype(np.uint16)).save(path)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """The room as files: meshes, a Replica sequence (traj.txt, results/depth*.png) and a ScanNet scene
    (pose/, intrinsic/intrinsic_depth.txt, depth/), with depth rendered from the ground truth."""
    root = tmp_path_factory.mktemp("slam")
    gt, rec, c2w = room()
    io.save_ply(root / "gt.ply", gt[0], faces=gt[1])
    io.save_ply(root / "rec.ply", rec[0], faces=rec[1])
    depth = render_depth(torch.as_tensor(gt[0]), torch.as_tensor(gt[1]), c2w, K).numpy()
    replica, scannet = root / "replica", root / "scannet"
    (replica / "results").mkdir(parents=True)
    for sub in ("pose", "intrinsic", "depth"):
        (scannet / sub).mkdir(parents=True)
    (replica / "traj.txt").write_text("".join(" ".join(f"{x:.17g}" for x in m.reshape(-1)) + "\n" for m in c2w))
    k4 = np.eye(4)
    k4[:3, :3] = K.K
    write_pose(scannet / "intrinsic" / "intrinsic_depth.txt", k4)
    for i, m in enumerate(c2w):
        write_pose(scannet / "pose" / f"{i}.txt", m)
        write_depth(replica / "results" / f"depth{i:06d}.png", depth[i], slam_io.REPLICA_DEPTH_SCALE)
        write_depth(scannet / "depth" / f"{i}.png", depth[i], slam_io.SCANNET_DEPTH_SCALE)
    return root


def test_replica_and_scannet_layouts_give_the_same_cameras(scene):
    _, _, c2w = room()
    replica = slam_io.load_replica(scene / "replica", K)
    scannet = slam_io.load_scannet(scene / "scannet")
    np.testing.assert_array_equal(replica.c2w, c2w)
    np.testing.assert_array_equal(scannet.c2w, c2w)
    assert scannet.intrinsics == K and scannet.lost == 0 and len(scannet.depth_files) == 4
    assert slam_io.load_replica(scene / "replica").intrinsics == slam_io.REPLICA_INTRINSICS
    d = slam_io.read_depth_png(scannet.depth_files[0], scannet.depth_scale)
    assert d.shape == (K.height, K.width) and 0.5 < d.max() < 5


def slam_json(capsys, *args):
    code = cli.main(["slam", *map(str, args), "--samples", "4000", "--quiet", "--json"])
    assert code == 0
    return json.loads(capsys.readouterr().out)


TINY = ["--intrinsics", K.fx, K.fy, K.cx, K.cy, "--image-size", K.height, K.width]


def test_command_equals_the_reference_steps(scene, capsys):
    """End to end on Replica's layout: NICE-SLAM's culling and metrics, transcribed, on our samples."""
    out = slam_json(capsys, scene / "rec.ply", scene / "gt.ply", "--replica", scene / "replica", *TINY)
    rec, gt = io.load(scene / "rec.ply"), io.load(scene / "gt.ply")
    keep = nice_slam_cull(rec.vertices.numpy(), rec.faces.numpy(), room()[2], K.height, K.width, K.fx, K.fy, K.cx,
                          K.cy)
    g = torch.Generator().manual_seed(0)
    r = pm.sample_points_on_mesh(rec.vertices, rec.faces[torch.as_tensor(keep)], 4000, generator=g).points
    t = pm.sample_points_on_mesh(gt.vertices, gt.faces, 4000, generator=g).points
    acc, comp, ratio = nice_slam_metrics(r.numpy(), t.numpy())
    m = out["metrics"]
    np.testing.assert_allclose([m["accuracy"], m["completion"], m["completion_ratio"]], [acc, comp, ratio],
                               rtol=1e-9)
    assert out["counts"]["rec_faces_kept"] == keep.sum() and out["counts"]["gt_faces_kept"] == len(gt.faces)
    card = out["card"]
    assert card["parameters"]["cull"] == "nice-slam" and set(card["input_sha256"]) == {"rec", "gt", "poses"}
    assert "nice-slam" in card["reference"] and out["units"]["accuracy"] == "cm"


def test_scannet_occlusion_with_the_dataset_depth(scene, capsys):
    out = slam_json(capsys, scene / "rec.ply", scene / "gt.ply", "--scannet", scene / "scannet", "--cull", "occlusion",
                    "--depth", "dataset", "--cull-gt")
    seq = slam_io.load_scannet(scene / "scannet")
    depths = [slam_io.read_depth_png(f, 1000.0) for f in seq.depth_files]
    c2w_gl = [slam_io.opencv_to_opengl(m) for m in seq.c2w]
    rec = io.load(scene / "rec.ply")
    keep = coslam_cull(rec.vertices.numpy(), rec.faces.numpy(), c2w_gl, K.K, K.height, K.width, True, depths)
    assert out["counts"]["rec_faces_kept"] == keep.sum()
    assert out["card"]["parameters"]["depth"] == "given depth images"
    assert out["counts"]["gt_faces_kept"] < out["counts"]["gt_faces"]  # the bunny's hidden side goes


def test_virtual_cameras_from_a_folder(scene, capsys):
    traj = scene / "replica" / "traj.txt"
    args = [scene / "rec.ply", scene / "gt.ply", "--poses", traj, *TINY, "--cull", "occlusion"]
    plain = slam_json(capsys, *args)
    virtual = slam_json(capsys, *args, "--virtual-cameras", scene / "scannet" / "pose")
    assert virtual["counts"]["rec_faces_kept"] == plain["counts"]["rec_faces_kept"]  # the same views add nothing
    assert virtual["card"]["parameters"]["virtual_cameras"] == 4
    strided = slam_json(capsys, *args, "--stride", 2)
    assert strided["card"]["parameters"]["cameras"] == 2


def test_table_and_csv_with_the_card_beside(scene, tmp_path, capsys):
    base = ["slam", str(scene / "rec.ply"), str(scene / "gt.ply"), "--replica", str(scene / "replica"),
            *map(str, TINY), "--samples", "2000", "--quiet"]
    assert cli.main(base) == 0
    table = capsys.readouterr().out
    assert "completion_ratio" in table and "nice-slam" in table and "cm" in table
    out = tmp_path / "r.csv"
    assert cli.main([*base, "--csv", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["metric"] for r in rows] == ["accuracy", "completion", "completion_ratio", "chamfer_l1", "precision",
                                           "fscore"]
    card = json.loads((tmp_path / "r.card.json").read_text())
    assert card["parameters"]["samples"] == 2000 and card["units"].startswith("cm")


def test_lost_scannet_poses_see_nothing(scene, tmp_path):
    import shutil

    lost = tmp_path / "scannet"
    shutil.copytree(scene / "scannet", lost)
    (lost / "pose" / "4.txt").write_text("-inf -inf -inf -inf\n" * 4)
    shutil.copy(lost / "depth" / "0.png", lost / "depth" / "4.png")
    seq = slam_io.load_scannet(lost)
    assert seq.lost == 1 and len(seq.c2w) == 5
    rec = io.load(scene / "rec.ply")
    for method in ("nice-slam", "occlusion"):
        with_lost = cull_mesh(rec.vertices, rec.faces, seq.c2w, K, method)
        np.testing.assert_array_equal(with_lost, cull_mesh(rec.vertices, rec.faces, seq.c2w[:4], K, method))


# Bad input ------------------------------------------------------------------------------------------


def assert_one_line_error(capsys, args, *needles):
    assert cli.main(["slam", *map(str, args), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pointmetrics: error: "), err
    for needle in needles:
        assert needle in err[0], err[0]


def test_bad_camera_files(scene, tmp_path, capsys):
    rec, gt = scene / "rec.ply", scene / "gt.ply"
    assert_one_line_error(capsys, [rec, gt, "--scannet", tmp_path], "pose", "not found")
    bad = tmp_path / "traj.txt"
    bad.write_text("1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1\n1 0 0 0 0 1 0 0 0 0 1 0 0 0 0\n")
    assert_one_line_error(capsys, [rec, gt, "--poses", bad, *TINY], "traj.txt line 2", "16 numbers")
    bad.write_text("1 0 0 0 0 1 0 0 0 0 1 0 0 0 x 1\n")
    assert_one_line_error(capsys, [rec, gt, "--poses", bad, *TINY], "traj.txt line 1", "not a number")
    bad.write_text("1 0 0 0 0 1 0 0 0 0 1 0 0 0 2 1\n")
    assert_one_line_error(capsys, [rec, gt, "--poses", bad, *TINY], "last row")
    (tmp_path / "pose").mkdir()
    (tmp_path / "pose" / "first.txt").write_text("1 0 0 0\n" * 4)
    assert_one_line_error(capsys, [rec, gt, "--poses", tmp_path / "pose", *TINY], "first.txt", "frame number")
    assert_one_line_error(capsys, [rec, gt, "--poses", scene / "replica" / "traj.txt"], "--intrinsics")
    assert_one_line_error(capsys, [rec, gt], "camera path")
    assert_one_line_error(capsys, [rec, gt, "--scannet", scene / "scannet", "--virtual-cameras", tmp_path],
                          "--cull occlusion")


def test_a_mesh_culled_to_nothing(scene, tmp_path, capsys):
    far = tmp_path / "far.ply"
    g = io.load(scene / "rec.ply")
    io.save_ply(far, g.vertices.numpy() + [0, 0, 100.0], faces=g.faces.numpy())  # above every camera
    assert_one_line_error(capsys, [far, scene / "gt.ply", "--replica", scene / "replica", *TINY],
                          "far.ply", "keeps no face", "metres")


def test_errors_print_one_line_without_a_traceback(scene):
    r = subprocess.run([sys.executable, "-m", "pointmetrics", "slam", str(scene / "rec.ply"), str(scene / "gt.ply"),
                        "--scannet", str(scene / "missing")], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("pointmetrics: error: ") and len(r.stderr.strip().splitlines()) == 1
