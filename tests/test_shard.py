"""`batch --shard I/N` (explicit or from a Slurm job array) and `merge`: shards run separately and
merged equal a one-process batch, record for record and in the summary table."""

import json
import shutil

import pytest
from conftest import DATA

from pointmetrics import cli
from pointmetrics.cli.batch import run_batch, slurm_shard

FAST = ["--samples", "300", "--tau", "0.002", "--no-noise-floor", "--quiet"]
SLURM = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_STEP")


@pytest.fixture
def manifest(tmp_path, monkeypatch):
    for name in SLURM:  # the test may itself run inside a Slurm array
        monkeypatch.delenv(name, raising=False)
    meshes = ["bunny_res3.ply", "bunny_res4.ply", "bunny_res3.ply", "bunny_res4.ply", "bunny_res3.ply"]
    lines = ["id,pred,gt"] + [f"pair{k},{DATA / m},{DATA / 'bunny_scans_20k.ply'}" for k, m in enumerate(meshes)]
    path = tmp_path / "pairs.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def table(text: str) -> list[str]:
    """The summary table: every line after "N pairs scored, ...; results in FILE" up to merge's own lines."""
    lines = text.splitlines()
    return [line for line in lines[1:] if not line.startswith(("merged ", "missing:", "shard "))]


def test_three_shards_merged_equal_one_process(manifest, tmp_path, capsys, monkeypatch):
    whole = tmp_path / "one.jsonl"
    assert cli.main(["batch", str(manifest), "--out", str(whole), *FAST]) == 0
    single = capsys.readouterr().out
    out = tmp_path / "r.jsonl"
    # shard 0: from a Slurm array numbered 1-3, interrupted after one pair and resumed
    for name, value in zip(SLURM, ("1", "3", "1", "1")):
        monkeypatch.setenv(name, value)
    options = {"samples": 300, "seed": 0, "taus": [0.002], "emd_points": 0, "noise_floor": False}
    assert [r["id"] for r in run_batch(str(manifest), str(out), options, progress=False, stop_after=1,
                                       shard=slurm_shard())] == ["pair0"]
    assert cli.main(["batch", str(manifest), "--out", str(out), *FAST]) == 0
    assert "1 of 2 pairs already scored" in capsys.readouterr().err
    assert [r["id"] for r in records(tmp_path / "r.jsonl.shard0of3")] == ["pair0", "pair3"]  # k mod 3 == 0
    # shards 1 and 2: an explicit --shard wins over the Slurm variables
    for index in (1, 2):
        assert cli.main(["batch", str(manifest), "--out", str(out), "--shard", f"{index}/3", *FAST]) == 0
    capsys.readouterr()
    assert [r["id"] for r in records(tmp_path / "r.jsonl.shard2of3")] == ["pair2"]
    assert not out.exists()
    assert cli.main(["merge", str(manifest), str(tmp_path / "r.jsonl.shard*of3"), "--out", str(out)]) == 0
    merged = capsys.readouterr().out
    assert records(out) == records(whole) and len(records(out)) == 5
    assert table(merged) == table(single) and "CD-L1" in merged
    assert "5 pairs scored, 0 failed" in merged and "0 pairs missing from every shard, 0 scored in more" in merged


def test_merge_reports_missing_and_duplicate_pairs(manifest, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    assert cli.main(["batch", str(manifest), "--out", str(out), "--shard", "0/2", *FAST]) == 0
    shard = tmp_path / "r.jsonl.shard0of2"
    copy = tmp_path / "copy.jsonl"
    shutil.copy(shard, copy)
    with open(copy, "a") as f:
        f.write('{"id": "pair1", "pred": "x", "gt": "y", "error": "ValueError: broken"}\n{"id": "other"')
    capsys.readouterr()
    assert cli.main(["merge", str(manifest), str(shard), str(copy), "--out", str(tmp_path / "m.jsonl")]) == 1
    captured = capsys.readouterr()
    assert "pair pair0 was scored in 2 shards" in captured.err and f"kept the record of {shard}" in captured.err
    assert "3 pairs scored, 1 failed" in captured.out  # pair1 failed in copy.jsonl
    assert "missing: pair3" in captured.out and "3 scored in more than one" in captured.out
    assert [r["id"] for r in records(tmp_path / "m.jsonl")] == ["pair0", "pair1", "pair2", "pair4"]
    assert cli.main(["merge", str(manifest), str(tmp_path / "nothing*.jsonl")]) == 2
    assert "nothing*.jsonl: no such results file" in capsys.readouterr().err
    assert cli.main(["merge", str(manifest), str(shard), "--out", str(shard)]) == 2
    assert "also one of the shard files" in capsys.readouterr().err


@pytest.mark.parametrize("value, message", [("3/2", "shard 3/2 does not exist"), ("a/b", "expected I/N"),
                                            ("0/0", "shard 0/0 does not exist"), ("1", "expected I/N"),
                                            ("-1/2", "expected I/N")])
def test_bad_shards_are_one_line_errors(manifest, capsys, value, message):
    assert cli.main(["batch", str(manifest), f"--shard={value}", *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pointmetrics: error: --shard") and message in err and len(err.splitlines()) == 1


def test_slurm_array_variables():
    assert slurm_shard({}) is None
    assert slurm_shard({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4"}) == (2, 4)
    assert slurm_shard({"SLURM_ARRAY_TASK_ID": "12", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "10",
                        "SLURM_ARRAY_TASK_STEP": "1"}) == (2, 3)
    assert slurm_shard({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "0",
                        "SLURM_ARRAY_TASK_STEP": "2"}) == (2, 3)
    with pytest.raises(ValueError, match="Slurm array task 7 .*does not exist"):
        slurm_shard({"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "0"})
    with pytest.raises(ValueError, match="not whole numbers"):
        slurm_shard({"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "3"})
