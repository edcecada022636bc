"""pointmetrics.compat.pcu against transcriptions of point-cloud-utils' definitions
(fwilliams/point-cloud-utils at c5d392576554b50de5b27fd3b041ffdf300675dc) and, where it is
installed, against point-cloud-utils itself."""

import numpy as np
import pytest
import torch

import pointmetrics as pm
from pointmetrics.compat import pcu as P

# ---------------------------------------------------------------------------------------------
# Slow references, transcribed from point-cloud-utils


def ref_nearest(q, d):
    """k_nearest_neighbors(q, d, k=1) (src/point_cloud_distance.cpp): Euclidean nearest neighbour,
    distance and index; brute force in float64, ties to the first index."""
    sq = ((q.astype(np.float64)[:, None] - d.astype(np.float64)[None]) ** 2).sum(-1)
    idx = sq.argmin(1)
    return np.sqrt(sq[np.arange(len(q)), idx]), idx


def ref_chamfer(x, y, p_norm=2):
    """point_cloud_utils/__init__.py, chamfer_distance (lines 105-115)."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    _, corrs_x_to_y = ref_nearest(x, y)
    _, corrs_y_to_x = ref_nearest(y, x)
    dists_x_to_y = np.linalg.norm(x[corrs_y_to_x] - y, axis=-1, ord=p_norm).mean()
    dists_y_to_x = np.linalg.norm(y[corrs_x_to_y] - x, axis=-1, ord=p_norm).mean()
    return np.mean(dists_x_to_y) + np.mean(dists_y_to_x), corrs_x_to_y, corrs_y_to_x


def ref_one_sided(source, target, squared=False):
    """src/point_cloud_distance.cpp, one_sided_hausdorff_distance (lines 219-228): the first
    maximum of the nearest-neighbour distances (Eigen's maxCoeff)."""
    d, corrs = ref_nearest(source, target)
    d = d**2 if squared else d
    i = int(d.argmax())
    return float(d[i]), i, int(corrs[i])


def ref_hausdorff(x, y, squared=False):
    """point_cloud_utils/__init__.py, hausdorff_distance (lines 69-80)."""
    h_xy, idx_x1, idx_y1 = ref_one_sided(x, y, squared)
    h_yx, idx_y2, idx_x2 = ref_one_sided(y, x, squared)
    h = max(h_xy, h_yx)
    return (h, idx_x1, idx_y1) if h_xy > h_yx else (h, idx_x2, idx_y2)


P_NORMS = [2, 1, np.inf, -np.inf, 0, 0.5, 3, None]


def clouds(rng, n, m, dtype=np.float64, d=3):
    x = rng.standard_normal((n, d)).astype(dtype)
    y = rng.standard_normal((m, d)).astype(dtype)
    return x, y


@pytest.fixture
def rng(gen):
    return np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=gen)))


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p_norm", P_NORMS)
def test_chamfer_matches_reference(rng, p_norm):
    for n, m in [(57, 31), (1, 40), (25, 1), (64, 64)]:
        x, y = clouds(rng, n, m)
        value, ix, iy = P.chamfer_distance(x, y, return_index=True, p_norm=p_norm)
        ref, rx, ry = ref_chamfer(x, y, 2 if p_norm is None else p_norm)
        assert value == pytest.approx(ref, rel=1e-12, abs=1e-14)
        assert np.array_equal(ix, rx) and np.array_equal(iy, ry)


def test_chamfer_is_twice_chamfer_l1(rng):
    x, y = clouds(rng, 40, 30)
    expected = 2 * pm.chamfer_l1(torch.from_numpy(x), torch.from_numpy(y)).item()
    assert P.chamfer_distance(x, y) == pytest.approx(expected, rel=1e-12)


def test_chamfer_search_is_euclidean_whatever_p_norm():
    """x0 = (1, 1, 0) is y's nearest point in L2 (1.414 < 1.5) but not in L1 (2 > 1.5): pcu
    matches y to x0 and measures |x0 - y|_1 = 2, so CD = 2 + (2 + 1.5) / 2 = 3.75 (an L1 search
    would give 1.5 + 1.75 = 3.25)."""
    x = np.array([[1.0, 1, 0], [1.5, 0, 0]])
    y = np.array([[0.0, 0, 0]])
    value, ix, iy = P.chamfer_distance(x, y, return_index=True, p_norm=1)
    assert iy.tolist() == [0] and ix.tolist() == [0, 0]
    assert value == pytest.approx(3.75) and ref_chamfer(x, y, 1)[0] == pytest.approx(3.75)


def test_return_types(rng):
    for dtype in (np.float32, np.float64):
        x, y = clouds(rng, 20, 13, dtype)
        value = P.chamfer_distance(x, y)
        assert isinstance(value, dtype) and value.dtype == dtype
        value, ix, iy = P.chamfer_distance(x, y, return_index=True)
        assert ix.dtype == np.int64 and ix.shape == (20,) and iy.dtype == np.int64 and iy.shape == (13,)
        h = P.hausdorff_distance(x, y)
        assert type(h) is float
        h, i, j = P.hausdorff_distance(x, y, return_index=True)
        assert (type(h), type(i), type(j)) == (float, int, int)
        one = P.one_sided_hausdorff_distance(x, y)  # pcu's default: return_index=True
        assert isinstance(one, tuple) and [type(t) for t in one] == [float, int, int]
        assert type(P.one_sided_hausdorff_distance(x, y, return_index=False)) is float


@pytest.mark.parametrize("squared", [False, True])
def test_hausdorff_matches_reference(rng, squared):
    for n, m in [(50, 33), (1, 7), (9, 1)]:
        x, y = clouds(rng, n, m)
        assert P.hausdorff_distance(x, y, return_index=True, squared_distances=squared) == pytest.approx(
            ref_hausdorff(x, y, squared), rel=1e-12
        )
        assert P.hausdorff_distance(x, y, squared_distances=squared) == pytest.approx(
            ref_hausdorff(x, y, squared)[0], rel=1e-12
        )
        assert P.one_sided_hausdorff_distance(x, y, squared_distances=squared) == pytest.approx(
            ref_one_sided(x, y, squared), rel=1e-12
        )
    x, y = clouds(rng, 30, 20)
    expected = pm.hausdorff_distance(torch.from_numpy(x), torch.from_numpy(y)).distance.item()
    assert P.hausdorff_distance(x, y) == pytest.approx(expected, rel=1e-12)


def test_ties():
    """Equal one-sided distances: pcu returns the y -> x pair. Equidistant neighbours: the first
    index here (nanoflann may return either; the distances agree)."""
    x = np.array([[0.0, 0, 0], [1.0, 0, 0]])
    y = np.array([[0.0, 0, 0], [2.0, 0, 0]])
    # x1 is at 1 from both y0 and y1; y1 is at 1 from x1: h(x, y) = h(y, x) = 1.
    assert P.hausdorff_distance(x, y, return_index=True) == (1.0, 1, 1)
    assert ref_hausdorff(x, y) == (1.0, 1, 1)
    assert P.one_sided_hausdorff_distance(x, y) == (1.0, 1, 0)
    # duplicated farthest points: the first one
    assert P.one_sided_hausdorff_distance(np.array([[0.0, 0, 0], [3.0, 0, 0], [3.0, 0, 0]]), x) == (2.0, 1, 1)
    _, ix, _ = P.chamfer_distance(np.zeros((2, 3)), np.array([[1.0, 0, 0], [-1.0, 0, 0], [1.0, 0, 0]]),
                                  return_index=True)
    assert ix.tolist() == [0, 0]


def test_float32_and_mixed_and_half(rng):
    x, y = clouds(rng, 60, 45)
    ref = ref_chamfer(x.astype(np.float32), y.astype(np.float32))[0]
    out = P.chamfer_distance(x.astype(np.float32), y.astype(np.float32))
    assert out.dtype == np.float32 and out == pytest.approx(ref, rel=1e-5)
    mixed = P.chamfer_distance(x.astype(np.float32), y)  # pcu refuses; promoted here
    assert mixed.dtype == np.float64
    assert mixed == pytest.approx(ref_chamfer(x.astype(np.float32), y)[0], rel=1e-12)
    half = P.chamfer_distance(x.astype(np.float16), y.astype(np.float16))
    assert half.dtype == np.float32
    assert half == pytest.approx(ref_chamfer(x.astype(np.float16), y.astype(np.float16))[0], rel=1e-5)
    h32 = P.hausdorff_distance(x.astype(np.float32), y.astype(np.float32), return_index=True)
    assert h32[0] == pytest.approx(ref_hausdorff(x.astype(np.float32), y.astype(np.float32))[0], rel=1e-6)


def test_non_contiguous_and_other_dimensions(rng):
    x, y = clouds(rng, 40, 6 * 25)
    xf = np.asfortranarray(x)
    ys = y.reshape(25, 18)[:, ::6][:, :3]  # strided view
    assert not xf.flags.c_contiguous and not ys.flags.c_contiguous
    assert P.chamfer_distance(xf, ys) == pytest.approx(ref_chamfer(x, np.ascontiguousarray(ys))[0], rel=1e-12)
    assert P.hausdorff_distance(x[::-1], ys) == pytest.approx(ref_hausdorff(x[::-1], ys)[0], rel=1e-12)
    x2, y2 = clouds(rng, 30, 20, d=2)  # pcu: 3D only
    assert P.chamfer_distance(x2, y2, p_norm=1) == pytest.approx(ref_chamfer(x2, y2, 1)[0], rel=1e-12)


def test_torch_tensors_on_any_device(rng, device):
    x, y = clouds(rng, 33, 21)
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device).requires_grad_()
    value, ix, iy = P.chamfer_distance(xt, yt, return_index=True, p_norm=1)
    ref, rx, ry = ref_chamfer(x, y, 1)
    assert value == pytest.approx(ref, rel=1e-12) and isinstance(ix, np.ndarray)
    assert np.array_equal(ix, rx) and np.array_equal(iy, ry)
    assert P.hausdorff_distance(xt, yt, return_index=True) == pytest.approx(ref_hausdorff(x, y), rel=1e-12)
    assert P.chamfer_distance(xt.bfloat16(), yt.bfloat16()).dtype == np.float32


def test_bad_inputs_name_the_argument(rng):
    x, y = clouds(rng, 5, 4)
    with pytest.raises(ValueError, match="x has no points"):
        P.chamfer_distance(x[:0], y)
    with pytest.raises(ValueError, match="y has no points"):
        P.hausdorff_distance(x, y[:0])
    with pytest.raises(ValueError, match="y has no points"):
        P.one_sided_hausdorff_distance(x, y[:0])
    with pytest.raises(TypeError, match="x"):
        P.chamfer_distance(x.astype(np.int64), y)
    with pytest.raises(ValueError, match="y"):
        P.chamfer_distance(x, y[None])  # pcu takes single clouds, not batches
    with pytest.raises(ValueError, match="dimension"):
        P.chamfer_distance(x, y[:, :2])
    with pytest.raises(ValueError, match="y contains NaN"):
        P.chamfer_distance(x, np.full_like(y, np.nan))
    for bad in ["fro", np.nan, True, [1, 2]]:
        with pytest.raises(ValueError, match="p_norm"):
            P.chamfer_distance(x, y, p_norm=bad)
    with pytest.raises(ValueError, match="max_points_per_leaf"):
        P.hausdorff_distance(x, y, max_points_per_leaf=0)
    with pytest.raises(TypeError, match="max_points_per_leaf"):
        P.chamfer_distance(x, y, max_points_per_leaf=2.5)


# ---------------------------------------------------------------------------------------------
# Against point-cloud-utils itself, where it is installed


def test_against_point_cloud_utils(rng):
    pcu = pytest.importorskip("point_cloud_utils")
    for dtype in (np.float32, np.float64):
        x, y = clouds(rng, 300, 170, dtype)
        for p_norm in P_NORMS[:-1]:
            a, b = pcu.chamfer_distance(x, y, return_index=True, p_norm=p_norm), P.chamfer_distance(
                x, y, return_index=True, p_norm=p_norm
            )
            assert type(a[0]) is type(b[0]) and b[0] == pytest.approx(a[0], rel=1e-5 if dtype == np.float32 else 1e-12)
            assert a[1].dtype == b[1].dtype and a[1].shape == b[1].shape and a[2].shape == b[2].shape
            if dtype == np.float64:  # in float32 a near-tie may resolve otherwise
                assert np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2])
        for squared in (False, True):
            for f in (pcu.hausdorff_distance, pcu.one_sided_hausdorff_distance):
                g = getattr(P, f.__name__)
                for kwargs in ({}, {"return_index": True}, {"return_index": False}):
                    want = f(x, y, squared_distances=squared, **kwargs)
                    got = g(x, y, squared_distances=squared, **kwargs)
                    assert type(got) is type(want)
                    assert got == pytest.approx(want, rel=1e-6 if dtype == np.float32 else 1e-12)
