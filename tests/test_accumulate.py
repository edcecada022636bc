"""The metric accumulator: equal to the per-cloud metrics, and the same across 2 gloo processes."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import pointmetrics as pm
from pointmetrics import reference


def batches(seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(4):
        x, y = torch.rand(3, 200, 3, generator=g, dtype=torch.float64), torch.rand(3, 150, 3, generator=g,
                                                                                  dtype=torch.float64)
        out.append((x, y, torch.tensor([200, 120, 0]), torch.tensor([150, 150, 90])))
    return out


def test_means_over_every_cloud_and_reset():
    metric = pm.PointCloudMetrics(taus=[0.05, 0.1])
    cd1, cd2, hd = [], [], []
    for x, y, xl, yl in batches():
        metric.update(x, y, xl, yl)
        for b in range(2):  # the third cloud of every batch is empty: skipped
            xb, yb = x[b, : xl[b]], y[b, : yl[b]]
            cd1.append(float(reference.chamfer(xb[None], yb[None], squared=False, halve=True)))
            cd2.append(float(reference.chamfer(xb[None], yb[None], squared=True, halve=False)))
            hd.append(float(reference.hausdorff(xb[None], yb[None])[0]))
    out = metric.compute()
    assert out["clouds"] == 8 and out["skipped"] == 4
    assert out["CD-L1"] == pytest.approx(sum(cd1) / 8, rel=1e-12)
    assert out["CD-L2"] == pytest.approx(sum(cd2) / 8, rel=1e-12)
    assert out["Hausdorff"] == pytest.approx(sum(hd) / 8, rel=1e-12)
    assert 0 < out["F-score@0.05"] < out["F-score@0.1"] <= 1
    metric.reset()
    assert metric.compute()["clouds"] == 0


def _worker(rank, world, init_file, queue):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    metric = pm.PointCloudMetrics(taus=[0.05])
    for k, (x, y, xl, yl) in enumerate(batches()):
        if k % world == rank:
            metric.update(x, y, xl, yl)
    queue.put((rank, metric.compute()))
    dist.destroy_process_group()


def test_two_processes_equal_one(tmp_path):
    single = pm.PointCloudMetrics(taus=[0.05])
    for x, y, xl, yl in batches():
        single.update(x, y, xl, yl)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(r, 2, str(tmp_path / "init"), queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    want = single.compute()
    for rank in (0, 1):
        assert results[rank].keys() == want.keys()
        for k, v in want.items():
            assert results[rank][k] == pytest.approx(v, rel=1e-12)


def test_bad_thresholds():
    with pytest.raises(ValueError, match="taus"):
        pm.PointCloudMetrics(taus=[0.0])
    assert os.environ.get("WORLD_SIZE") in (None, "1")


def test_single_empty_clouds_are_skipped():
    metric = pm.PointCloudMetrics()
    metric.update(torch.rand(5, 3), torch.rand(0, 3))
    metric.update(torch.rand(0, 3), torch.rand(4, 3))
    assert metric.compute()["skipped"] == 2
    with pytest.warns(RuntimeWarning, match="empty"):
        assert torch.isnan(pm.hausdorff_distance(torch.rand(0, 3), torch.rand(3, 3)).distance)
