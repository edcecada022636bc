"""Real scans: the Stanford bunny's range scans against its zippered reconstruction."""

import numpy as np
import torch
from conftest import DATA
from scipy.spatial import cKDTree

import pointmetrics as pm
from pointmetrics import io


def test_bunny_scans_against_reconstruction_vertices():
    scans = io.load(DATA / "bunny_scans_20k.ply").vertices.float()
    verts = io.load(DATA / "bunny_zipper_vertices.ply").vertices.float()
    c = pm.correspondences(scans, verts)
    d_sv, i_sv = cKDTree(verts.double().numpy()).query(scans.double().numpy())
    d_vs, _ = cKDTree(scans.double().numpy()).query(verts.double().numpy())
    np.testing.assert_allclose(c.x_to_y[0].numpy(), d_sv, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(c.y_to_x[0].numpy(), d_vs, rtol=1e-5, atol=1e-9)
    assert (c.x_to_y_index[0].numpy() == i_sv).mean() > 0.999
    # Aligned scans lie on the reconstruction: a fraction of a millimetre (vertex spacing ~1 mm).
    assert 1e-4 < float(c.x_to_y.median()) < 1e-3
    f = c.fscore([1e-3, 5e-3])
    assert f.precision[1] > 0.99 and f.recall[0] < f.recall[1]


def test_bunny_chamfer_gradient_on_real_data():
    scans = io.load(DATA / "bunny_scans_20k.ply").vertices.float()
    verts = io.load(DATA / "bunny_zipper_vertices.ply").vertices.float().requires_grad_()
    loss = pm.chamfer_l1(verts, scans)
    loss.backward()
    assert torch.isfinite(verts.grad).all() and verts.grad.abs().sum() > 0
