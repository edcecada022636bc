import os
import pathlib

import numpy as np
import pytest
import torch

DATA = pathlib.Path(__file__).resolve().parent.parent / "examples" / "data"

@pytest.fixture(
    params=[
        "cpu",
        pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
        pytest.param("cuda:1", marks=pytest.mark.skipif(torch.cuda.device_count() < 2, reason="no second GPU")),
    ]
)
def device(request):
    """Every test that takes this fixture runs on the CPU and, where GPUs exist, on CUDA and on a
    second GPU (skipped otherwise, never deleted): a kernel must follow its inputs' device rather
    than the current one."""
    return torch.device(request.param)


@pytest.fixture
def gen(request):
    """A generator with a fresh seed per test run; the seed is printed so a failure can be replayed
    with POINTMETRICS_SEED=<seed>."""
    seed = int(os.environ.get("POINTMETRICS_SEED", int.from_bytes(os.urandom(4), "little")))
    print(f"{request.node.name}: POINTMETRICS_SEED={seed}")
    return torch.Generator().manual_seed(seed)


def ragged(gen, B, N, D, dtype=torch.float64, low=0):
    """(B, N, D) uniform points with random lengths in [low, N], at least one cloud full."""
    x = torch.rand(B, N, D, generator=gen, dtype=dtype)
    lengths = torch.randint(low, N + 1, (B,), generator=gen)
    lengths[0] = N
    return x, lengths


def dtu_reference_sampler(vertices, triangles, thresh):
    """DTUeval-python eval.py's sampler, transcribed (single process)."""
    tri_vert = vertices[triangles]
    v1 = tri_vert[:, 1] - tri_vert[:, 0]
    v2 = tri_vert[:, 2] - tri_vert[:, 0]
    l1 = np.linalg.norm(v1, axis=-1, keepdims=True)
    l2 = np.linalg.norm(v2, axis=-1, keepdims=True)
    area2 = np.linalg.norm(np.cross(v1, v2), axis=-1, keepdims=True)
    non_zero_area = (area2 > 0)[:, 0]
    l1, l2, area2, v1, v2, tri_vert = [arr[non_zero_area] for arr in [l1, l2, area2, v1, v2, tri_vert]]
    thr = thresh * np.sqrt(l1 * l2 / area2)
    n1 = np.floor(l1 / thr)
    n2 = np.floor(l2 / thr)
    pts = []
    for i in range(len(n1)):
        c = np.mgrid[: n1[i, 0] + 1, : n2[i, 0] + 1]
        c += 0.5
        c[0] /= max(n1[i, 0], 1e-7)
        c[1] /= max(n2[i, 0], 1e-7)
        c = np.transpose(c, (1, 2, 0))
        k = c[c.sum(axis=-1) < 1]
        pts.append(v1[i : i + 1] * k[:, :1] + v2[i : i + 1] * k[:, 1:] + tri_vert[i : i + 1, 0])
    return np.concatenate([vertices, np.concatenate(pts, axis=0)], axis=0)


def simple_dtu_layout(root: pathlib.Path) -> None:
    """A minimal DTU scan 1 under ``root``: the bunny scans in mm as the STL points, an observation
    mask that is all True over their box (5 mm voxels) and a ground plane just below them."""
    from scipy.io import savemat

    from pointmetrics import io

    (root / "Points" / "stl").mkdir(parents=True)
    (root / "ObsMask").mkdir()
    stl = io.load(DATA / "bunny_scans_20k.ply").vertices.numpy() * 1000
    io.save_ply(root / "Points" / "stl" / "stl001_total.ply", stl)
    lo, hi = stl.min(0), stl.max(0)
    shape = tuple(np.floor((hi - lo) / 5).astype(int) + 1)
    savemat(root / "ObsMask" / "ObsMask1_10.mat",
            {"ObsMask": np.ones(shape, bool), "BB": np.stack([lo, hi]), "Res": np.array([[5.0]])})
    savemat(root / "ObsMask" / "Plane1.mat", {"P": np.array([0.0, 1.0, 0.0, -lo[1] - 5])})
