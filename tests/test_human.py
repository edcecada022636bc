"""The CAPE / ICON protocol: normal-map error, PyTorch3D's distance, human_eval and its command."""

import json
import math

import numpy as np
import pytest
import torch
import trimesh
from conftest import DATA

import pointmetrics as pm
from pointmetrics import cli
from pointmetrics.io import load
from pointmetrics.protocols.human import pytorch3d_distance_mesh


def body():
    """The SMPL template in a [-1, 1] frame, as ICON/ECON evaluate."""
    g = load(DATA / "smpl_body.ply")
    v = g.vertices - (g.vertices.max(0).values + g.vertices.min(0).values) / 2
    return v / v.abs().max() * 0.9, g.faces


def big_plane(tilt_degrees=0.0):
    """A square far larger than the view, tilted about x: it fills every pixel of a frontal view."""
    t = math.radians(tilt_degrees)
    corners = torch.tensor([[-3.0, -3, 0], [3, -3, 0], [3, 3, 0], [-3, 3, 0]], dtype=torch.float64)
    rot = torch.tensor([[1, 0, 0], [0, math.cos(t), -math.sin(t)], [0, math.sin(t), math.cos(t)]], dtype=torch.float64)
    return corners @ rot.T * torch.tensor([1, 1, 1.0]), torch.tensor([[0, 1, 2], [0, 2, 3]])


@pytest.mark.parametrize("backend", ["icon2022", "econ"])
def test_a_mesh_against_itself_is_zero(backend):
    v, f = body()
    result = pm.normal_map_error((v, f), (v, f), backend=backend, image_size=128)
    assert result.error == 0
    assert result.per_view.shape == (4,)


@pytest.mark.parametrize("backend", ["icon2022", "econ"])
@pytest.mark.parametrize("tilt", [10.0, 30.0])
def test_a_tilted_plane_gives_the_closed_form(backend, tilt):
    # Colour (n + 1) / 2 on every pixel: per pixel |n1 - n2|^2 / 4 = (1 - cos t) / 2.
    flat, tilted = big_plane(0.0), big_plane(tilt)
    result = pm.normal_map_error(tilted, flat, backend=backend, views=[0.0], image_size=64, allow_clipping=True)
    expected = (1 - math.cos(math.radians(tilt))) / 2
    torch.testing.assert_close(result.error_images, torch.full_like(result.error_images, expected))
    assert math.isclose(float(result.error), expected, rel_tol=1e-12)


def test_a_rotated_body_gives_a_positive_error_that_grows_with_the_angle():
    v, f = body()
    errors = []
    for degrees in (2.0, 10.0):
        t = math.radians(degrees)
        rot = torch.tensor([[math.cos(t), 0, math.sin(t)], [0, 1, 0], [-math.sin(t), 0, math.cos(t)]], dtype=v.dtype)
        errors.append(float(pm.normal_map_error((v @ rot.T, f), (v, f), image_size=128).error))
    assert 0 < errors[0] < errors[1]


def test_silhouette_mismatch_counts_against_the_background():
    # A plane covering the whole frontal view against an empty picture (the plane moved aside, out
    # of the view): every pixel differs by |(n + 1) / 2 - background|^2.
    plane = big_plane(0.0)
    away = (plane[0] + torch.tensor([10.0, 0, 0]), plane[1])
    for backend, background in (("icon2022", 1.0), ("econ", (1 - 1 / math.sqrt(3)) / 2)):
        result = pm.normal_map_error(plane, away, backend=backend, views=[0.0], image_size=16, allow_clipping=True)
        colour = torch.tensor([0.5, 0.5, 1.0], dtype=torch.float64)
        expected = float(((colour - background) ** 2).sum())
        assert math.isclose(float(result.error), expected, rel_tol=1e-12)


def test_normal_map_error_is_differentiable():
    v, f = body()
    pred = v.clone().requires_grad_()
    result = pm.normal_map_error((pred * 1.01, f), (v, f), image_size=64)
    result.error.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_pngs_are_one_argument_away(tmp_path):
    v, f = body()
    result = pm.normal_map_error((v, f), (v * 1.02, f), image_size=32, save_dir=tmp_path)
    assert [p.rsplit("/", 1)[1] for p in result.files] == ["normals_pred.png", "normals_gt.png", "normal_error.png"]
    import matplotlib.image

    from pointmetrics.png import labelled_strip

    image = matplotlib.image.imread(result.files[0])
    labels = ["MODEL TURNED 0 DEG", "MODEL TURNED 180 DEG", "MODEL TURNED 90 DEG", "MODEL TURNED 270 DEG"]
    canvas, offsets = labelled_strip(np.zeros((4, 32, 32, 3), np.uint8), labels, "PREDICTION NORMALS")
    assert image.shape[:2] == canvas.shape[:2]
    for k, (row, column) in enumerate(offsets):  # each view, apart from its neighbours, under its label
        np.testing.assert_allclose(image[row:row + 32, column:column + 32, :3], result.pred_images[k].numpy(),
                                   atol=1 / 255)
    assert all(b - a > 32 for (_, a), (_, b) in zip(offsets, offsets[1:]))


def pytorch3d_point_triangle(p, a, b, c, min_area):
    """PyTorch3D's PointTriangle3DistanceForward (squared) with its min_triangle_area, transcribed."""
    def segment(p, u, w):
        e = w - u
        t = np.clip(np.dot(p - u, e) / max(np.dot(e, e), 1e-30), 0, 1)
        return np.sum((p - (u + t * e)) ** 2)

    n = np.cross(b - a, c - a)
    area = np.linalg.norm(n) / 2
    if area >= min_area:
        n = n / np.linalg.norm(n)
        p0 = p - np.dot(p - a, n) * n
        m = np.stack([b - a, c - a], 1)
        w = np.linalg.lstsq(m, p0 - a, rcond=None)[0]
        if w.min() >= 0 and w.sum() <= 1:
            return float(np.dot(p - a, n) ** 2)
    return min(segment(p, a, b), segment(p, a, c), segment(p, b, c))


def test_pytorch3d_distance_is_reproduced(gen):
    v, f = body()
    keep = torch.randperm(len(f), generator=gen)[:300]
    f = f[keep]
    # scale so that some triangles are above PyTorch3D's 5e-3 and most below
    v = v * 6
    points = v[f[:60]].mean(1) + 0.02 * torch.randn(60, 3, generator=gen, dtype=v.dtype)
    mv, mf = pytorch3d_distance_mesh(v, f, 5e-3)
    ours = pm.closest_points_on_mesh(points, mv, mf).sq_distance
    tri = v[f].numpy()
    expected = [min(pytorch3d_point_triangle(p, *t, 5e-3) for t in tri) for p in points.numpy()]
    areas = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1) / 2
    assert (areas > 5e-3).any() and (areas < 5e-3).any()
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("backend", ["icon2022", "econ"])
def test_human_eval_self_and_shifted(backend):
    v, f = body()
    same = pm.human_eval((v, f), (v, f), backend=backend, image_size=64, min_triangle_area=None)
    assert same.chamfer < 1e-9 and same.p2s < 1e-9 and same.normal == 0
    assert same.samples[0] > 800  # sample_surface_even may return fewer than 1000
    shift = torch.tensor([0.01, 0, 0], dtype=v.dtype)
    moved = pm.human_eval((v + shift, f), (v, f), backend=backend, image_size=64, min_triangle_area=None)
    # The distance to a surface moved by 0.01 is at most 0.01: at most 1 "cm".
    assert 0.1 < moved.p2s <= 1.0 + 1e-9 and 0.1 < moved.chamfer <= 1.0 + 1e-9 and moved.normal > 0


def test_icon2022_distances_match_trimesh():
    v, f = body()
    pred = (v * 1.03, f)
    result = pm.human_eval(pred, (v, f), backend="icon2022", num_samples=300, image_size=32, seed=7)
    gt_mesh = trimesh.Trimesh(v.numpy(), f.numpy(), process=False)
    samples, _ = trimesh.sample.sample_surface_even(gt_mesh, 300, seed=8)
    _, d, _ = trimesh.proximity.closest_point(trimesh.Trimesh(pred[0].numpy(), f.numpy(), process=False), samples)
    # trimesh's closest points carry float error (~1e-6 relative); ours are exact minima
    assert math.isclose(result.p2s, d.mean() * 100, rel_tol=1e-5)


def test_econ_default_reports_pytorch3d_distances():
    v, f = body()
    result = pm.human_eval((v, f), (v, f), backend="econ", image_size=32)
    assert 0 < result.p2s < 1  # edges only: a mesh against itself is not 0 under PyTorch3D's rule


def test_empty_mesh_gives_nan_with_a_warning():
    v, f = body()
    with pytest.warns(RuntimeWarning, match="empty"):
        result = pm.human_eval((v, f[:0]), (v, f), image_size=16)
    assert math.isnan(result.chamfer) and math.isnan(result.p2s) and math.isnan(result.normal)


def test_bad_input():
    v, f = body()
    with pytest.raises(ValueError, match="num_samples"):
        pm.human_eval((v, f), (v, f), num_samples=0)
    with pytest.raises(ValueError, match="backend"):
        pm.human_eval((v, f), (v, f), backend="icon")
    with pytest.raises(TypeError, match="pred"):
        pm.normal_map_error(v, (v, f))
    with pytest.raises(ValueError, match="image_size"):
        pm.normal_map_error((v, f), (v, f), image_size=0)
    bad = v.clone()
    bad[f[0, 0], 1] = math.inf
    with pytest.raises(ValueError, match="gt vertices"):
        pm.human_eval((v, f), (bad, f))
    with pytest.raises(ValueError, match="views"):
        pm.human_cameras("icon2022", views=[])


def test_command_prints_json_and_writes_pngs(tmp_path, capsys):
    v, f = body()
    pred, gt = tmp_path / "pred.ply", tmp_path / "gt.ply"
    pm.io.save_ply(pred, (v * 1.01).numpy(), faces=f.numpy())
    pm.io.save_ply(gt, v.numpy(), faces=f.numpy())
    code = cli.main(["human", str(pred), str(gt), "--image-size", "32", "--json", "--png", str(tmp_path / "png")])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["backend"] == "icon2022" and out["p2s_cm"] > 0 and len(out["files"]) == 3
    assert cli.main(["human", str(pred), str(tmp_path / "missing.ply")]) == 2
    assert "missing.ply" in capsys.readouterr().err
    code = cli.main(["human", str(pred), str(gt), "--image-size", "32", "--backend", "econ"])
    text = capsys.readouterr().out
    assert code == 0 and "Chamfer" in text and "backend econ" in text


def smpl_in_metres():
    g = load(DATA / "smpl_body.ply")
    return g.vertices, g.faces


@pytest.mark.parametrize("backend", ["icon2022", "econ"])
def test_a_mesh_outside_the_normalised_frame_is_refused(backend):
    v, f = smpl_in_metres()  # feet at y = 0, head at 1.79: only the legs would be in view
    assert float(v[:, 1].max()) > 1.5
    with pytest.raises(ValueError, match=r"pred.*\[-1, 1\] evaluation frame"):
        pm.human_eval((v, f), body(), backend=backend, image_size=16, num_samples=100)
    with pytest.raises(ValueError, match=r"gt.*\[-1, 1\] evaluation frame"):
        pm.normal_map_error(body(), (v, f), backend=backend, image_size=16)
    shifted = (body()[0] + torch.tensor([0.0, 0.2, 0.0], dtype=v.dtype), f)  # 0.9 + 0.2: the head leaves the view
    with pytest.raises(ValueError, match="frame"):
        pm.human_eval(shifted, body(), backend=backend, image_size=16, num_samples=100)
    clipped = pm.human_eval((v, f), (v, f), backend=backend, image_size=16, num_samples=100, allow_clipping=True,
                            min_triangle_area=None)
    assert clipped.normal == 0


@pytest.mark.parametrize("backend", ["icon2022", "econ"])
def test_a_zero_area_mesh_is_refused_by_both_backends(backend):
    v = torch.tensor([[0.0, 0, 0], [0.5, 0, 0], [0.9, 0, 0]], dtype=torch.float64)
    f = torch.tensor([[0, 1, 2]])
    with pytest.raises(ValueError, match="pred.*positive area"):
        pm.human_eval((v, f), body(), backend=backend, image_size=16, num_samples=100)


def test_progress_reports_each_step():
    steps = []
    pm.human_eval(body(), body(), image_size=16, num_samples=100, progress=steps.append)
    assert steps == ["sampling the surfaces", "point-to-surface distances", "rendering the normal maps"]


def test_human_png_into_an_existing_file_fails_before_the_work(tmp_path):
    (tmp_path / "taken").write_text("x")
    with pytest.raises(ValueError, match="taken.*not a directory"):
        pm.human_eval(body(), body(), image_size=16, num_samples=100, save_dir=tmp_path / "taken")
