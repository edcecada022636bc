"""Metric cards on the protocol results and in the command line's JSON and CSV output."""

import hashlib
import json

import pytest
import torch
import trimesh
from conftest import DATA, simple_dtu_layout

import pointmetrics as pm
from pointmetrics import cli
from pointmetrics.protocols.card import card_path_beside

MESH, CLOUD = str(DATA / "bunny_res3.ply"), str(DATA / "bunny_scans_20k.ply")
FAST = ["--samples", "400", "--no-noise-floor", "--quiet"]


def sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_score_json_carries_a_card_with_every_metric_and_the_inputs_hashes(capsys):
    assert cli.main(["score", MESH, CLOUD, *FAST, "--seed", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    card = out["card"]
    assert card["protocol"] == "pointmetrics score" and "Tanks and Temples" in card["reference"]
    assert set(card["metrics"]) == set(out["metrics"])
    assert "unsquared" in card["metrics"]["CD-L1"] and "squared distances" in card["metrics"]["CD-L2"]
    assert card["metrics"]["F-score@1% diag"].endswith("higher is better")
    assert "prediction to ground truth" in card["metrics"]["accuracy p90"]
    assert card["parameters"]["seeds"]["pred"] == 3 and card["parameters"]["points"] == {"pred": 400, "gt": 20000}
    assert len(card["parameters"]["taus"]) == 3
    assert card["input_sha256"] == {"pred": sha(MESH), "gt": sha(CLOUD)}
    assert card["pointmetrics_version"] == pm.__version__


def test_score_csv_out_writes_the_card_beside_the_csv(tmp_path, capsys):
    target = tmp_path / "result.csv"
    assert cli.main(["score", MESH, CLOUD, *FAST, "--csv", "--out", str(target)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "result.card.json" in captured.err
    assert target.read_text().startswith("metric,value,noise_floor,unit,convention")
    card = json.loads(open(card_path_beside(target)).read())
    assert card["input_sha256"]["pred"] == sha(MESH)
    assert cli.main(["score", MESH, CLOUD, *FAST, "--json", "--out", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["card"] == card  # same run, same card
    assert not (tmp_path / "r.card.json").exists()  # JSON holds its card
    assert cli.main(["score", MESH, CLOUD, *FAST, "--csv"]) == 0  # to stdout: told how to keep the card
    assert "--out FILE" in capsys.readouterr().err
    assert cli.main(["score", MESH, CLOUD, *FAST, "--out", str(tmp_path / "missing" / "r.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_dtu_result_and_json_carry_the_reference_commit_and_hashes(tmp_path, capsys):
    simple_dtu_layout(tmp_path)
    points = pm.io.load(DATA / "bunny_scans_20k.ply").vertices[::10] * 1000  # a point cloud: no lattice to sample
    data = tmp_path / "points.ply"
    pm.io.save_ply(data, points.numpy())
    assert cli.main(["dtu", str(data), "--scan", "1", "--dataset-dir", str(tmp_path), "--json", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    card = out["card"]
    assert card["reference"] == "jzhangbs/DTUeval-python eval.py@45b4fecbe02e8333f6653c6b655c3160eb8404a4"
    assert card["units"] == "mm" and set(card["metrics"]) == {"accuracy", "completeness", "overall"}
    assert card["parameters"]["downsample_density_mm"] == 0.2 and card["parameters"]["counts"] == out["counts"]
    stl = tmp_path / "Points" / "stl" / "stl001_total.ply"
    assert card["input_sha256"]["data"] == sha(data) and card["input_sha256"]["stl"] == sha(stl)
    assert set(card["input_sha256"]) == {"data", "stl", "obs_mask", "plane"}
    result = pm.dtu_eval(points, 1, tmp_path)  # a tensor: no data file to hash
    assert "data" not in result.card.input_sha256 and result.as_dict()["card"] == result.card.as_dict()


@pytest.mark.parametrize("backend", ["icon2022", "econ"])
def test_human_result_and_json_carry_the_backend_reference(tmp_path, capsys, backend):
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.8)  # small and inside the [-1, 1] frame
    v, f = torch.from_numpy(sphere.vertices), torch.from_numpy(sphere.faces)
    pred, gt = tmp_path / "pred.ply", tmp_path / "gt.ply"
    pm.io.save_ply(pred, (v * 1.01).numpy(), faces=f.numpy())
    pm.io.save_ply(gt, v.numpy(), faces=f.numpy())
    args = ["human", str(pred), str(gt), "--backend", backend, "--samples", "200", "--image-size", "16", "--quiet"]
    assert cli.main([*args, "--json"]) == 0
    card = json.loads(capsys.readouterr().out)["card"]
    commit = {"icon2022": "YuliangXiu/ICON lib/dataset/Evaluator.py@cf46a6b6",
              "econ": "YuliangXiu/ECON lib/dataset/Evaluator.py@d8f4e8b7"}[backend]
    assert card["reference"].startswith(commit) and set(card["metrics"]) == {"chamfer_cm", "p2s_cm", "normal"}
    assert card["input_sha256"] == {"pred": sha(pred), "gt": sha(gt)}
    assert card["parameters"]["image_size"] == 16 and card["parameters"]["seed"] == 0
    assert ("min_triangle_area" in card["parameters"]["distance"]) == (backend == "econ")
    assert cli.main(args) == 0 and "reference: YuliangXiu/" in capsys.readouterr().out
    result = pm.human_eval((v, f), (v, f), backend=backend, num_samples=50, image_size=8)
    assert result.card.input_sha256 == {} and result.as_dict()["card"]["parameters"]["samples"][1] <= 50


def test_batch_records_carry_their_card(tmp_path):
    manifest = tmp_path / "pairs.csv"
    manifest.write_text(f"pred,gt\n{MESH},{CLOUD}\n")
    assert cli.main(["batch", str(manifest), *FAST]) == 0
    (record,) = map(json.loads, (tmp_path / "pairs.results.jsonl").read_text().splitlines())
    assert record["card"]["input_sha256"] == {"pred": sha(MESH), "gt": sha(CLOUD)}
    assert set(record["card"]["metrics"]) == set(record["metrics"])
