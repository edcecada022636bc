"""Metric cards: the hash of every input file, JSON round trip, and where a card goes."""

import hashlib
import json

import pointmetrics as pm
from pointmetrics.protocols.card import MetricCard, card_path_beside, file_sha256


def test_card_hashes_its_input_files_and_round_trips(tmp_path):
    data = tmp_path / "pred.ply"
    data.write_bytes(b"ply\n" + bytes(range(256)) * 5000)  # over one read chunk
    card = MetricCard("test protocol", "owner/repo path@0123abc", "mm", {"accuracy": "mean_p d(p, GT), unsquared"},
                      {"tau": 0.5, "seed": 0}, {"pred": str(data), "folder": str(tmp_path)}).hash_inputs()
    assert card.input_sha256 == {"pred": hashlib.sha256(data.read_bytes()).hexdigest()}  # folders are not hashed
    assert file_sha256(data, chunk=7) == card.input_sha256["pred"]
    written = json.loads(open(card.write(card_path_beside(tmp_path / "out.csv"))).read())
    assert written == card.as_dict() and (tmp_path / "out.card.json").exists()
    assert written["pointmetrics_version"] == pm.__version__ and written["card_version"] == 1
