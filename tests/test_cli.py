"""The command line end to end on the bundled example pair."""

import json
import subprocess
import sys

from conftest import DATA

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
    assert set(out) == {"inputs", "metrics", "conventions"}
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
