"""The command line end to end on the bundled example pair."""

import json
import subprocess
import sys

from conftest import DATA, simple_dtu_layout

from pointmetrics import cli


def run(*args):
    return subprocess.run([sys.executable, "-m", "pointmetrics.cli", *args], capture_output=True, text=True)


def test_score_prints_a_table():
    r = run("score", str(DATA / "bunny_res3.ply"), str(DATA / "bunny_scans_20k.ply"), "--samples", "20000")
    assert r.returncode == 0, r.stderr
    assert "CD-L1" in r.stdout and "F-score@" in r.stdout and "Hausdorff" in r.stdout


def test_score_json_schema(capsys):
    code = cli.main(
        [
            "score",
            str(DATA / "bunny_res3.ply"),
            str(DATA / "bunny_scans_20k.ply"),
            "--samples",
            "5000",
            "--tau",
            "0.001",
            "0.002",
            "--json",
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"inputs", "metrics", "noise_floor", "units", "conventions", "notes", "files", "card"}
    assert out["noise_floor"] == {}  # the ground truth is a point cloud: no second sample to draw
    metrics = out["metrics"]
    for key in ("CD-L1", "CD-L2", "Hausdorff", "F-score@0.001", "precision@0.002", "recall@0.002"):
        assert key in metrics
    assert 0 < metrics["CD-L1"] < 0.01 and 0 <= metrics["F-score@0.001"] <= 1
    assert metrics["F-score@0.001"] <= metrics["F-score@0.002"]


def test_score_is_reproducible(capsys):
    args = ["score", str(DATA / "bunny_res3.ply"), str(DATA / "bunny_scans_20k.ply"), "--samples", "3000", "--json"]
    cli.main(args)
    first = capsys.readouterr().out
    cli.main(args)
    assert capsys.readouterr().out == first


def test_unreadable_files_give_one_line_errors(tmp_path):
    r = run("score", str(tmp_path / "missing.ply"), str(DATA / "bunny_scans_20k.ply"))
    assert r.returncode == 2 and "missing.ply: no such file" in r.stderr
    bad = tmp_path / "garbage.ply"
    bad.write_bytes(b"not a ply file at all")
    r = run("score", str(bad), str(DATA / "bunny_scans_20k.ply"))
    assert r.returncode == 2 and "garbage.ply" in r.stderr and "Traceback" not in r.stderr
    nan = tmp_path / "nan.xyz"
    nan.write_text("0 0 0\nnan 1 2\n")
    r = run("score", str(nan), str(DATA / "bunny_scans_20k.ply"))
    assert r.returncode == 2 and "NaN" in r.stderr
    r = run("score", str(DATA / "bunny_res3.ply"), str(DATA / "bunny_scans_20k.ply"), "--samples", "0")
    assert r.returncode == 2


def test_score_csv_vis_and_extra_metrics(tmp_path, capsys):
    mesh = str(DATA / "bunny_res3.ply")
    code = cli.main(["score", mesh, mesh, "--samples", "4000", "--emd", "500", "--json", "--vis", str(tmp_path)])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    metrics = out["metrics"]
    assert "P2S" in metrics and "pred_to_gt_surface" in metrics and "normal consistency" in metrics
    assert "EMD" in metrics and set(out["noise_floor"]) == set(metrics)
    assert "F-score@1% diag" in metrics and metrics["normal consistency"] > 0.9
    assert "volumetric IoU" not in metrics  # the bunny has holes: not watertight
    names = sorted(p.rsplit("/", 1)[-1] for p in out["files"])
    assert names == ["distance_histogram.png", "gt_error.ply", "pred_error.ply"]
    assert (tmp_path / "distance_histogram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from pointmetrics import io

    cloud = io.load(tmp_path / "pred_error.ply")
    assert len(cloud.vertices) == 4000
    assert cli.main(["score", mesh, str(DATA / "bunny_scans_20k.ply"), "--samples", "2000", "--csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "metric,value,noise_floor,unit,convention,pred,gt,pred_input,gt_input,thresholds"
    assert lines[1].startswith("CD-L1,")


def test_volumetric_iou_for_watertight_meshes(tmp_path, capsys):
    trimesh = __import__("pytest").importorskip("trimesh")
    trimesh.creation.icosphere(subdivisions=3).export(tmp_path / "a.ply")
    trimesh.creation.icosphere(subdivisions=2).export(tmp_path / "b.ply")
    assert cli.main(["score", str(tmp_path / "a.ply"), str(tmp_path / "b.ply"), "--samples", "2000", "--json"]) == 0
    iou = json.loads(capsys.readouterr().out)["metrics"]["volumetric IoU"]
    assert 0.9 < iou < 1.0


def test_batch_resumes_and_reports_bad_pairs(tmp_path):
    manifest = tmp_path / "pairs.csv"
    rows = ["id,pred,gt"]
    for k in range(4):
        rows.append(f"p{k},{DATA / 'bunny_res3.ply'},{DATA / 'bunny_scans_20k.ply'}")
    rows.append(f"bad,{tmp_path / 'missing.ply'},{DATA / 'bunny_scans_20k.ply'}")
    manifest.write_text("\n".join(rows) + "\n")
    out = tmp_path / "results.jsonl"
    from pointmetrics.cli.batch import run_batch

    options = {"samples": 2000, "seed": 0, "taus": [0.002], "emd_points": 0}
    first = run_batch(str(manifest), str(out), options, progress=False, stop_after=2)  # interrupted
    assert [r["id"] for r in first] == ["p0", "p1"]
    r = run("batch", str(manifest), "--out", str(out), "--samples", "2000", "--tau", "0.002", "--quiet")
    assert r.returncode == 1  # one pair failed
    assert "2 of 5 pairs already scored" in r.stderr and "skipped bad" in r.stderr
    assert "4 pairs scored, 1 failed" in r.stdout and "CD-L1" in r.stdout
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [rec["id"] for rec in records] == ["p0", "p1", "p2", "p3", "bad"]  # p0, p1 not scored again
    assert records[0]["metrics"] == records[3]["metrics"]  # same pair, same seed, same numbers
    assert "missing.ply" in records[-1]["error"]


def free_port() -> int:
    import socket

    with socket.socket() as s:  # the OS picks a port nobody uses; a fixed one collides under load
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_batch_under_torchrun_equals_one_process(tmp_path):
    manifest = tmp_path / "pairs.csv"
    meshes = ["bunny_res3.ply", "bunny_res4.ply", "armadillo.ply"]
    lines = ["pred,gt"] + [f"{DATA / m},{DATA / 'bunny_scans_20k.ply'}" for m in meshes]
    manifest.write_text("\n".join(lines) + "\n")
    common = ["--samples", "2000", "--tau", "0.002", "--quiet"]
    single = run("batch", str(manifest), "--out", str(tmp_path / "one.jsonl"), *common)
    assert single.returncode == 0, single.stderr
    multi = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
         "-m", "pointmetrics", "batch", str(manifest), "--out", str(tmp_path / "two.jsonl"), *common],
        capture_output=True, text=True, timeout=300,
    )
    assert multi.returncode == 0, multi.stderr
    assert "terminate called" not in multi.stderr and "Traceback" not in multi.stderr
    one = {r["id"]: r["metrics"] for r in map(json.loads, (tmp_path / "one.jsonl").read_text().splitlines())}
    two = {r["id"]: r["metrics"] for r in map(json.loads, (tmp_path / "two.jsonl").read_text().splitlines())}
    assert one == two and len(one) == 3
    assert single.stdout.splitlines()[1:] == multi.stdout.splitlines()[1:]  # the same summary table
    assert not list(tmp_path.glob("two.jsonl.rank*"))


def test_dtu_command(tmp_path, capsys):
    from pointmetrics import io

    simple_dtu_layout(tmp_path)
    mesh = io.load(DATA / "bunny_res3.ply")
    io.save_ply(tmp_path / "mesh.ply", mesh.vertices.numpy() * 1000, faces=mesh.faces.numpy())
    code = cli.main(["dtu", str(tmp_path / "mesh.ply"), "--scan", "1", "--dataset-dir", str(tmp_path),
                     "--vis", str(tmp_path / "vis"), "--json", "--quiet"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert 0 < out["accuracy"] < 2 and 0 < out["completeness"] < 2
    assert (tmp_path / "vis" / "vis_001_d2s.ply").exists() and (tmp_path / "vis" / "vis_001_s2d.ply").exists()
    r = run("dtu", str(tmp_path / "mesh.ply"), "--scan", "2", "--dataset-dir", str(tmp_path), "--quiet")
    assert r.returncode == 2 and "stl002_total.ply: DTU file not found" in r.stderr
