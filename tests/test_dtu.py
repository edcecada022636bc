"""DTU protocol parity: a transcription of DTUeval-python's eval.py (numpy, with scipy's cKDTree in
place of scikit-learn) on a synthetic DTU layout around the bunny, scaled to millimetres."""

import numpy as np
import pytest
import torch
from conftest import DATA, dtu_reference_sampler

import pointmetrics as pm
from pointmetrics import io
from pointmetrics.protocols import dtu

scipy_io = pytest.importorskip("scipy.io")
cKDTree = pytest.importorskip("scipy.spatial").cKDTree

SCAN = 24


def reference_eval(data_pcd, dataset_dir, thresh, patch, max_dist, seed):
    """eval.py from the shuffle on; returns the sets and the three numbers."""
    data_pcd = data_pcd.copy()
    np.random.default_rng(seed).shuffle(data_pcd, axis=0)
    rnn_idxs = cKDTree(data_pcd).query_ball_point(data_pcd, r=thresh)
    mask = np.ones(data_pcd.shape[0], dtype=np.bool_)
    for curr, idxs in enumerate(rnn_idxs):
        if mask[curr]:
            mask[idxs] = 0
            mask[curr] = 1
    data_down = data_pcd[mask]
    obs_mask_file = scipy_io.loadmat(f"{dataset_dir}/ObsMask/ObsMask{SCAN}_10.mat")
    ObsMask, BB, Res = [obs_mask_file[attr] for attr in ["ObsMask", "BB", "Res"]]
    BB = BB.astype(np.float32)
    inbound = ((data_down >= BB[:1] - patch) & (data_down < BB[1:] + patch * 2)).sum(axis=-1) == 3
    data_in = data_down[inbound]
    data_grid = np.around((data_in - BB[:1]) / Res).astype(np.int32)
    grid_inbound = ((data_grid >= 0) & (data_grid < np.expand_dims(ObsMask.shape, 0))).sum(axis=-1) == 3
    data_grid_in = data_grid[grid_inbound]
    in_obs = ObsMask[data_grid_in[:, 0], data_grid_in[:, 1], data_grid_in[:, 2]].astype(np.bool_)
    data_in_obs = data_in[grid_inbound][in_obs]
    stl = io.load(f"{dataset_dir}/Points/stl/stl{SCAN:03}_total.ply").vertices.numpy()
    dist_d2s, _ = cKDTree(stl).query(data_in_obs, k=1)
    ground_plane = scipy_io.loadmat(f"{dataset_dir}/ObsMask/Plane{SCAN}.mat")["P"]
    stl_hom = np.concatenate([stl, np.ones_like(stl[:, :1])], -1)
    above = (ground_plane.reshape((1, 4)) * stl_hom).sum(-1) > 0
    dist_s2d, _ = cKDTree(data_in).query(stl[above], k=1)
    mean_d2s = dist_d2s[dist_d2s < max_dist].mean()
    mean_s2d = dist_s2d[dist_s2d < max_dist].mean()
    counts = {"samples": len(data_pcd), "downsampled": len(data_down), "in_box": len(data_in),
              "in_mask": len(data_in_obs), "stl": len(stl), "stl_above_plane": int(above.sum())}
    return mean_d2s, mean_s2d, (mean_d2s + mean_s2d) / 2, counts, (data_down, dist_d2s, dist_s2d, inbound)


@pytest.fixture(scope="module")
def dtu_layout(tmp_path_factory):
    """A DTU-shaped directory: the bunny scans (mm) as STL, a random ObsMask, a ground plane."""
    root = tmp_path_factory.mktemp("dtu")
    (root / "Points" / "stl").mkdir(parents=True)
    (root / "ObsMask").mkdir()
    stl = io.load(DATA / "bunny_scans_20k.ply").vertices.numpy() * 1000
    io.save_ply(root / "Points" / "stl" / f"stl{SCAN:03}_total.ply", stl)
    stl = io.load(root / "Points" / "stl" / f"stl{SCAN:03}_total.ply").vertices.numpy()  # float32 as stored
    lo, hi = stl.min(0), stl.max(0)
    res = 4.0
    bb = np.stack([lo + 10, hi - 5])  # points outside the box on every side
    shape = tuple(np.floor((bb[1] - bb[0]) / res).astype(int) + 1)
    obs = np.random.default_rng(1).random(shape) < 0.8
    scipy_io.savemat(root / "ObsMask" / f"ObsMask{SCAN}_10.mat", {"ObsMask": obs, "BB": bb, "Res": np.array([[res]])})
    y0 = lo[1] + 0.15 * (hi[1] - lo[1])
    scipy_io.savemat(root / "ObsMask" / f"Plane{SCAN}.mat", {"P": np.array([[0.0], [1.0], [0.0], [-y0]])})
    mesh = io.load(DATA / "bunny_res3.ply")
    return root, mesh.vertices.numpy() * 1000, mesh.faces.numpy()


@pytest.mark.parametrize("patch", [3.0, 60.0])
def test_equals_dtueval_python(dtu_layout, tmp_path, patch):
    root, verts, faces = dtu_layout
    density, max_dist, seed = 0.5, 20.0, 7
    ours = pm.dtu_eval((torch.from_numpy(verts), torch.from_numpy(faces)), SCAN, root, seed=seed,
                       downsample_density=density, patch_size=patch, max_dist=max_dist, vis_dir=tmp_path)
    samples = dtu_reference_sampler(verts, faces, density)
    np.testing.assert_array_equal(pm.sample_mesh_lattice(torch.from_numpy(verts), torch.from_numpy(faces),
                                                         density).numpy(), samples)
    acc, comp, overall, counts, (data_down, d2s, s2d, inbound) = reference_eval(samples, root, density, patch,
                                                                               max_dist, seed)
    assert ours.counts == counts  # identical sample sets at every stage
    assert {"shuffle", "downsample", "write visualisation"} <= set(ours.seconds) == set(ours.as_dict()["seconds"])
    assert counts["in_box"] < counts["downsampled"] or patch == 60.0
    assert counts["stl_above_plane"] < counts["stl"]
    for got, want in ((ours.accuracy, acc), (ours.completeness, comp), (ours.overall, overall)):
        assert got == pytest.approx(want, rel=1e-6)
    # The visualisation: every reduced point, blue outside the box and mask, green past max_dist.
    vis = io.load(ours.files[0]).vertices.numpy()
    assert len(vis) == len(data_down)
    np.testing.assert_allclose(np.sort(vis, axis=0), np.sort(data_down.astype(np.float32), axis=0))
    assert len(io.load(ours.files[1]).vertices) == counts["stl"]


def test_greedy_reduction_equals_the_reference_loop(gen):
    pts = torch.rand(20_000, 3, generator=gen, dtype=torch.float64) * 5
    pts[100] = pts[50]  # duplicates
    pts[200] = pts[201] + torch.tensor([0.3, 0, 0], dtype=torch.float64)  # exactly one radius apart
    keep = pm.greedy_radius_downsample(pts, 0.3).numpy()
    p = pts.numpy()
    mask = np.ones(len(p), dtype=bool)
    for curr, idxs in enumerate(cKDTree(p).query_ball_point(p, r=0.3)):
        if mask[curr]:
            mask[idxs] = 0
            mask[curr] = 1
    np.testing.assert_array_equal(keep, mask)
    kept = p[keep]
    d, _ = cKDTree(kept).query(kept, k=2)
    assert (d[:, 1] > 0.3).all()  # no two kept points within the radius
    assert pm.greedy_radius_downsample(pts[:0], 0.3).shape == (0,)


def test_pcd_mode_and_errors(dtu_layout, tmp_path):
    root, verts, faces = dtu_layout
    points = torch.from_numpy(verts)
    result = pm.dtu_eval(points, SCAN, root, downsample_density=0.5)
    assert result.counts["samples"] == len(verts)
    with pytest.raises(ValueError, match="mode='mesh' needs a mesh"):
        pm.dtu_eval(points, SCAN, root, mode="mesh")
    with pytest.raises(FileNotFoundError, match="stl025_total.ply"):
        pm.dtu_eval(points, 25, root)
    with pytest.raises(ValueError, match="max_dist"):
        pm.dtu_eval(points, SCAN, root, max_dist=0)
    with pytest.raises(ValueError, match="radius"):
        pm.greedy_radius_downsample(points, -1.0)
    with pytest.raises(ValueError, match="NaN"):
        pm.greedy_radius_downsample(torch.full((3, 3), float("nan")), 1.0)
    far = points + 1e5  # nothing within max_dist: NaN with a warning
    with pytest.warns(RuntimeWarning, match="NaN"):
        assert np.isnan(pm.dtu_eval(far, SCAN, root, downsample_density=0.5).accuracy)


def test_opcheck(gen):
    pts = torch.rand(500, 3, generator=gen, dtype=torch.float64)
    torch.library.opcheck(torch.ops.pointmetrics.greedy_radius_keep, (pts, 0.1))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_greedy_reduction_accepts_half_precision(gen, dtype):
    pts = (torch.rand(3000, 3, generator=gen) * 4).to(dtype)
    keep = pm.greedy_radius_downsample(pts, 0.25)
    assert torch.equal(keep, pm.greedy_radius_downsample(pts.float(), 0.25))


# The CUDA backend's parallel rounds (greedy.h's greedy_round_step), run on the CPU through a
# test-only op, against the CPU's sequential pass. Each portable round reads only the decisions of
# the rounds before it: the slowest schedule the CUDA rounds can take.
def greedy_clouds(gen):
    r = 0.3
    uniform = torch.rand(5000, 3, generator=gen, dtype=torch.float64) * 5
    centres = torch.rand(20, 3, generator=gen, dtype=torch.float64) * 5
    clusters = centres.repeat_interleave(200, 0) + 0.2 * torch.randn(4000, 3, generator=gen, dtype=torch.float64)
    duplicates = (torch.rand(300, 3, generator=gen, dtype=torch.float64) * 3).repeat(5, 1)
    duplicates = duplicates[torch.randperm(len(duplicates), generator=gen)]
    # a chain along x, one radius between neighbours (0.3 * k is not exact in binary: each pair lies
    # just inside or just outside, the same on both paths), in index order and reversed
    chain = torch.zeros(200, 3, dtype=torch.float64)
    chain[:, 0] = r * torch.arange(200, dtype=torch.float64)
    # 0.25 apart with radius 0.3: each point's decision waits for the one before it
    dense_line = torch.zeros(300, 3, dtype=torch.float64)
    dense_line[:, 1] = 0.25 * torch.arange(300, dtype=torch.float64)
    # exactly 0.5 apart (exact in binary) with radius 0.5: every pair of neighbours on the boundary
    exact = torch.zeros(64, 3, dtype=torch.float64)
    exact[:, 2] = 0.5 * torch.arange(64, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(*[torch.arange(8, dtype=torch.float64) * 0.15] * 3, indexing="ij"), -1)
    return {
        "uniform": (uniform, r),
        "clusters": (clusters, r),
        "duplicates": (duplicates, r),
        "chain": (chain, r),
        "chain_reversed": (chain.flip(0), r),
        "dense_line": (dense_line, r),
        "at_radius": (exact, 0.5),
        "grid": (grid.reshape(-1, 3), 0.3),
        "grid_float32": (grid.reshape(-1, 3).float(), 0.3),
        "one": (torch.rand(1, 3, generator=gen), r),
        "empty": (torch.zeros(0, 3), r),
    }


@pytest.mark.parametrize(
    "kind",
    ["uniform", "clusters", "duplicates", "chain", "chain_reversed", "dense_line", "at_radius", "grid",
     "grid_float32", "one", "empty"],
)
def test_parallel_rounds_equal_the_sequential_pass(gen, kind):
    points, radius = greedy_clouds(gen)[kind]
    want = torch.ops.pointmetrics.greedy_radius_keep(points, radius)
    got, rounds = torch.ops.pointmetrics_testing.greedy_radius_keep_portable(points, radius)
    assert got.dtype == torch.bool and torch.equal(got, want)
    assert rounds.dtype == torch.int64 and (rounds.item() > 0) == (len(points) > 0)
    if kind == "at_radius":  # boundary inclusive: every other point is kept
        assert want.tolist() == [k % 2 == 0 for k in range(64)]
    if kind == "dense_line":  # one more round per point
        assert rounds.item() >= 300


def reference_greedy(points: torch.Tensor, radius: float) -> np.ndarray:
    """DTUeval-python's loop (radius neighbours, then index order), with scipy's cKDTree."""
    p = points.double().numpy()
    mask = np.ones(len(p), dtype=bool)
    for curr, idxs in enumerate(cKDTree(p).query_ball_point(p, r=radius) if len(p) else []):
        if mask[curr]:
            mask[idxs] = 0
            mask[curr] = 1
    return mask


@pytest.mark.parametrize(
    "kind",
    ["uniform", "clusters", "duplicates", "chain", "chain_reversed", "dense_line", "at_radius", "grid",
     "grid_float32", "one", "empty"],
)
def test_cpu_rounds_and_index_order_finish_equal_the_reference(gen, kind):
    """The CPU op decides in parallel rounds and finishes slow chains (dense_line, chain) in index
    order: both parts must give the reference loop's mask."""
    points, radius = greedy_clouds(gen)[kind]
    keep = torch.ops.pointmetrics.greedy_radius_keep(points, radius)
    np.testing.assert_array_equal(keep.numpy(), reference_greedy(points, radius))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_greedy_op_takes_half_precision(gen, dtype):
    pts = (torch.rand(4000, 3, generator=gen) * 3).to(dtype)
    want = torch.ops.pointmetrics.greedy_radius_keep(pts.double(), 0.2)
    assert torch.equal(torch.ops.pointmetrics.greedy_radius_keep(pts, 0.2), want)
    got, _ = torch.ops.pointmetrics_testing.greedy_radius_keep_portable(pts, 0.2)
    assert torch.equal(got, want)


@pytest.mark.parametrize("n", [0, 1, 2, 5, 1000, 33_333])
def test_seeded_shuffle_is_numpys_row_shuffle(n):
    """dtu_eval gathers by a permutation instead of shuffling rows in place: the same order."""
    points = np.random.default_rng(n).random((n, 3))
    for seed in (0, 1, 12345):
        want = points.copy()
        np.random.default_rng(seed).shuffle(want, axis=0)
        np.testing.assert_array_equal(dtu._shuffled(points, seed), want)


def test_parallel_rounds_on_shuffled_clouds(gen):
    """DTU's order: shuffled points; larger clouds, float32 and float64."""
    for dtype in (torch.float32, torch.float64):
        pts = (torch.rand(50_000, 3, generator=gen, dtype=torch.float64) * 10).to(dtype)
        pts = torch.cat([pts, pts[:1000]])[torch.randperm(51_000, generator=gen)]  # duplicates too
        want = torch.ops.pointmetrics.greedy_radius_keep(pts, 0.2)
        got, _ = torch.ops.pointmetrics_testing.greedy_radius_keep_portable(pts, 0.2)
        assert torch.equal(got, want)


def test_portable_rounds_opcheck(gen):
    pts = torch.rand(500, 3, generator=gen, dtype=torch.float64)
    torch.library.opcheck(torch.ops.pointmetrics_testing.greedy_radius_keep_portable, (pts, 0.1))
    with pytest.raises(RuntimeError, match="radius must be positive"):
        torch.ops.pointmetrics_testing.greedy_radius_keep_portable(pts, -1.0)
