"""Issue 13 on the command line: bad input is a one-line error naming the file (exit 2), never a
traceback or a silently wrong number; P2S has one meaning; output states its inputs and noise floor."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import DATA, simple_dtu_layout

import pointmetrics as pm
from pointmetrics import cli, io

BUNNY, SCANS, SMPL = str(DATA / "bunny_res3.ply"), str(DATA / "bunny_scans_20k.ply"), str(DATA / "smpl_body.ply")
FAST = ["--samples", "2000", "--no-noise-floor"]


def run(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "pointmetrics", *args], capture_output=True, text=True, **kwargs)


def assert_one_line_error(r, *needles):
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "Warning" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pointmetrics: error: "), r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def degenerate_mesh(path):
    v = np.array([[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]])
    io.save_ply(path, v, faces=np.array([[0, 1, 2], [1, 2, 3]]))
    return str(path)


# human: the evaluation frame, and one rule for degenerate meshes ------------------------------------


@pytest.mark.parametrize("backend", ["icon2022", "econ"])
def test_human_refuses_a_body_in_metres(backend):
    r = run("human", SMPL, SMPL, "--backend", backend, "--image-size", "16", "--samples", "100")
    assert_one_line_error(r, "smpl_body.ply", "[-1, 1]", "frame")
    assert r.stdout == ""


def test_human_allow_clipping_renders_it_anyway(capsys):
    code = cli.main(["human", SMPL, SMPL, "--image-size", "16", "--samples", "100", "--allow-clipping", "--json"])
    assert code == 0 and json.loads(capsys.readouterr().out)["normal"] == 0


@pytest.mark.parametrize("backend", ["icon2022", "econ"])
def test_human_refuses_a_zero_area_mesh_with_every_backend(tmp_path, backend):
    flat = degenerate_mesh(tmp_path / "flat.ply")
    r = run("human", flat, flat, "--backend", backend, "--image-size", "16")
    assert_one_line_error(r, "flat.ply", "positive area")


# score: P2S is ICON's direction, the other one has its own name ----------------------------------------


def test_p2s_means_ground_truth_points_to_the_predicted_surface(capsys):
    assert cli.main(["score", BUNNY, SCANS, *FAST, "--json"]) == 0  # mesh prediction, point-cloud GT
    metrics = json.loads(capsys.readouterr().out)["metrics"]
    mesh, scans = io.load(BUNNY), io.load(SCANS)
    expected = float(pm.point_to_surface_distance(scans.vertices, mesh.vertices, mesh.faces))
    assert math.isclose(metrics["P2S"], expected, rel_tol=1e-9)
    assert "pred_to_gt_surface" not in metrics  # the ground truth has no surface

    assert cli.main(["score", SCANS, BUNNY, *FAST, "--json"]) == 0  # point-cloud prediction, mesh GT
    metrics = json.loads(capsys.readouterr().out)["metrics"]
    assert math.isclose(metrics["pred_to_gt_surface"], expected, rel_tol=1e-9)
    assert "P2S" not in metrics  # the prediction has no surface


# truncated and malformed files ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bunny_res3.ply", "armadillo.ply"])  # ascii and binary PLY
def test_truncated_ply_is_an_error_naming_the_file(tmp_path, name):
    data = (DATA / name).read_bytes()
    cut = tmp_path / f"cut_{name}"
    cut.write_bytes(data[:300])
    r = run("score", str(cut), SCANS, *FAST)
    assert_one_line_error(r, f"cut_{name}", "truncated")


def test_directory_empty_file_and_degenerate_inputs_are_named(tmp_path):
    assert_one_line_error(run("score", str(tmp_path), SCANS), str(tmp_path), "directory")
    empty = tmp_path / "empty.xyz"
    empty.write_text("")
    assert_one_line_error(run("score", str(empty), SCANS), "empty.xyz")
    blank = tmp_path / "blank.xyz"
    blank.write_text("\n\n")
    assert_one_line_error(run("score", str(blank), SCANS), "blank.xyz", "no points")
    flat = degenerate_mesh(tmp_path / "flat.ply")
    assert_one_line_error(run("score", flat, SCANS, *FAST), "flat.ply", "positive area")
    assert_one_line_error(run("score", BUNNY, flat, *FAST), "flat.ply", "positive area")


def test_one_sample_explains_the_zero_default_thresholds():
    r = run("score", BUNNY, BUNNY, "--samples", "1")
    assert_one_line_error(r, "bunny_res3.ply", "bounding box is degenerate", "--tau")
    assert "[0.0" not in r.stderr


def test_mesh_file_without_faces_is_scored_as_a_point_cloud_with_a_note(tmp_path, capsys):
    verts = io.load(BUNNY).vertices.numpy()
    path = tmp_path / "nofaces.ply"
    io.save_ply(path, verts, faces=np.zeros((0, 3), dtype=np.int64))
    assert cli.main(["score", str(path), SCANS, "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert "nofaces.ply" in captured.err and "point cloud" in captured.err
    assert out["notes"] and out["inputs"]["pred_input"] == f"point cloud, {len(verts)} points"
    capsys.readouterr()
    assert cli.main(["score", SCANS, SCANS, "--json"]) == 0  # a PLY point cloud: nothing to say
    assert capsys.readouterr().err == ""


# tracebacks: output paths are checked before the work; a closed pipe is quiet ----------------------


def test_output_paths_are_checked_before_the_work(tmp_path):
    existing = tmp_path / "a_file"
    existing.write_text("x")
    assert_one_line_error(run("score", BUNNY, SCANS, "--vis", str(existing)), "a_file", "not a directory")
    v, f = (torch.tensor([[0.0, 0, 0], [0.5, 0, 0], [0, 0.5, 0]]), torch.tensor([[0, 1, 2]]))
    io.save_ply(tmp_path / "tri.ply", v.numpy(), faces=f.numpy())
    tri = str(tmp_path / "tri.ply")
    assert_one_line_error(run("human", tri, tri, "--image-size", "16", "--png", str(existing)), "a_file")
    manifest = tmp_path / "pairs.csv"
    manifest.write_text(f"pred,gt\n{BUNNY},{SCANS}\n")
    assert_one_line_error(run("batch", str(manifest), "--out", str(tmp_path), "--samples", "100"),
                          str(tmp_path), "directory")


def test_closed_pipe_is_quiet():
    process = subprocess.Popen([sys.executable, "-m", "pointmetrics", "score", BUNNY, SCANS, *FAST, "--csv"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # the reader is gone before the first line: as `| head -0`
    _, err = process.communicate(timeout=300)
    assert process.returncode == cli.EXIT_BROKEN_PIPE
    assert b"Traceback" not in err and b"BrokenPipe" not in err and err == b""


# dtu in the wrong units -----------------------------------------------------------------------------


def test_dtu_in_metres_is_an_explained_error(tmp_path):
    simple_dtu_layout(tmp_path)
    r = run("dtu", BUNNY, "--scan", "1", "--dataset-dir", str(tmp_path))  # the bunny in metres
    assert_one_line_error(r, "bunny_res3.ply", "millimetres", "in_mask 0")
    assert "nan" not in r.stdout.lower()


# batch: the summary says how many pairs each metric has ----------------------------------------------


def test_batch_summary_counts_pairs_per_metric(tmp_path):
    manifest = tmp_path / "pairs.csv"
    manifest.write_text(f"id,pred,gt\nmesh,{BUNNY},{SCANS}\ncloud,{SCANS},{SCANS}\n")
    r = run("batch", str(manifest), "--out", str(tmp_path / "r.jsonl"), *FAST, "--tau", "0.002")
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines() if line.strip()}
    assert rows["CD-L1"][-1] == "2" and rows["P2S"][-1] == "1"  # P2S needs a mesh prediction
    assert "not defined for every pair" in r.stdout


# progress, help, version, CSV ----------------------------------------------------------------------


def test_progress_only_on_a_terminal_and_not_when_quiet(capsys, monkeypatch):
    args = ["score", BUNNY, SCANS, *FAST]
    assert cli.main(args) == 0
    assert capsys.readouterr().err == ""  # stderr is not a terminal here
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert cli.main(args) == 0
    assert "nearest neighbours" in capsys.readouterr().err
    assert cli.main([*args, "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_help_is_plain_text_with_defaults_and_version():
    for command in ("score", "dtu", "human", "batch"):
        r = run(command, "--help")
        assert r.returncode == 0 and "``" not in r.stdout
        assert "(default: 0)" in r.stdout  # the seed
    dtu_help = run("dtu", "--help").stdout
    assert "--mode" in dtu_help and "(default: auto)" in dtu_help and "print JSON" in dtu_help
    assert "(default: 100000)" in run("score", "--help").stdout
    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"pointmetrics {pm.__version__}"


def test_csv_names_inputs_units_and_noise_floor(capsys):
    assert cli.main(["score", BUNNY, BUNNY, "--samples", "2000", "--csv"]) == 0
    import csv

    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    by_name = {row["metric"]: row for row in rows}
    assert all(row["pred"] == BUNNY and row["gt"] == BUNNY for row in rows)
    assert by_name["CD-L1"]["unit"] == "file units" and by_name["CD-L2"]["unit"] == "squared file units"
    assert by_name["F-score@1% diag"]["unit"].startswith("fraction")
    assert float(by_name["CD-L1"]["noise_floor"]) > 0 and "2000 area-weighted samples" in by_name["CD-L1"]["pred_input"]


# the noise floor -----------------------------------------------------------------------------------


def test_noise_floor_is_what_a_mesh_scores_against_itself(capsys):
    assert cli.main(["score", BUNNY, BUNNY, "--samples", "5000", "--emd", "300", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    metrics, floor = out["metrics"], out["noise_floor"]
    assert set(floor) == set(metrics)
    for name in ("CD-L1", "accuracy", "completeness", "EMD"):
        assert floor[name] > 0 and math.isclose(metrics[name], floor[name], rel_tol=0.3), name
    assert cli.main(["score", BUNNY, BUNNY, "--samples", "2000", "--json", "--no-noise-floor"]) == 0
    assert json.loads(capsys.readouterr().out)["noise_floor"] == {}


def test_public_methods_have_docstrings():
    for method in (pm.PointCloudMetrics.update, pm.PointCloudMetrics.compute, pm.PointCloudMetrics.reset,
                   pm.HumanEvalResult.as_dict, pm.DTUResult.as_dict, pm.LCDWeightNet.trainable_parameters):
        assert method.__doc__ and len(method.__doc__.split()) >= 8, method


def test_normal_error_png_has_a_colour_bar_and_separated_labelled_views(tmp_path):
    from pointmetrics.png import labelled_strip, save_normal_pngs

    images = torch.rand(4, 32, 32, 3, dtype=torch.float64)
    errors = torch.rand(4, 32, 32, dtype=torch.float64)
    paths = save_normal_pngs(tmp_path, images, images, errors, ["A 0", "A 90", "A 180", "A 270"])
    import matplotlib.image

    error_png = matplotlib.image.imread(paths[2])
    strip, offsets = labelled_strip(np.zeros((4, 32, 32, 3), np.uint8), ["A 0", "A 90", "A 180", "A 270"], "T")
    assert error_png.shape[0] > strip.shape[0] + 10  # the colour bar below the views
    columns = [c for _, c in offsets]
    assert all(b - a > 32 for a, b in zip(columns, columns[1:]))  # a gap between views
    assert os.path.basename(paths[2]) == "normal_error.png"
