"""point-cloud-utils' Chamfer and Hausdorff distances (``pcu.chamfer_distance``,
``pcu.hausdorff_distance``, ``pcu.one_sided_hausdorff_distance``) on pointmetrics' exact searches:
numpy arrays in, numpy values out.

Replace ``import point_cloud_utils as pcu`` by ``from pointmetrics.compat import pcu`` for these
three functions; the calls stay as they are.

Read from fwilliams/point-cloud-utils at commit c5d392576554b50de5b27fd3b041ffdf300675dc:
``point_cloud_utils/__init__.py`` (chamfer_distance, hausdorff_distance) and
``src/point_cloud_distance.cpp`` (k_nearest_neighbors and one_sided_hausdorff_distance: a nanoflann
kd-tree, ``metric_L2_Simple``; indices are ``Eigen::Index``, i.e. int64). The released wheel 0.34.0
has the same ``__init__.py``.

pcu's conventions:

- Nearest neighbours are always Euclidean. ``chamfer_distance``'s ``p_norm`` does not change the
  search: it is the norm in which the difference to the Euclidean nearest neighbour is measured,
  ``CD = mean_j ||x[nn_X(y_j)] - y_j||_p + mean_i ||y[nn_Y(x_i)] - x_i||_p`` (unsquared, a sum of the
  two means, not halved), for any ``ord`` that ``np.linalg.norm`` takes on vectors (a real p,
  ``inf``, ``-inf``, 0). It returns a numpy scalar of the input dtype and, with ``return_index``,
  the (N,) and (M,) int64 nearest-neighbour indices x -> y and y -> x.
- ``one_sided_hausdorff_distance(x, y)`` is ``max_i d(x_i, Y)`` (Euclidean, or squared with
  ``squared_distances``) as a Python float, and by default (``return_index=True`` in pcu's C++)
  also the realising pair (i into x, j into y) as Python ints; the first maximum wins.
- ``hausdorff_distance`` is the larger one-sided distance; with ``return_index`` the pair (i into
  x, j into y) comes from the x -> y direction only when it is strictly larger, else from y -> x.
- pcu refuses empty clouds with a ValueError, as this module does.

What changes here: float16 inputs (measured in float32) and mixed float dtypes (promoted) are
accepted, where pcu raises; so are non-contiguous arrays (pcu refuses column-major and strided
ones) and torch tensors (CPU or CUDA, measured on their device, results still numpy). Points may
have any dimension D >= 1 (pcu: 3 only). Equidistant nearest neighbours go to the smaller index;
nanoflann returns whichever its tree visits first, so indices can differ on exact ties (the
distances cannot). ``max_points_per_leaf`` tunes pcu's kd-tree; it is checked and has no effect.
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np
import torch

from .. import _checks
from .._reduce import compute_dtype
from ..knn import nearest_core
from ..pointcloud import correspondences_core

__all__ = ["chamfer_distance", "hausdorff_distance", "one_sided_hausdorff_distance"]


def _as_points(a, name: str) -> torch.Tensor:
    """An (N, D) numpy array (or array-like, or torch tensor) as a float tensor, shared with numpy
    where possible; N >= 1, as pcu requires."""
    if isinstance(a, torch.Tensor):
        t = a.detach()
    else:
        arr = np.asarray(a)
        if arr.dtype.kind != "f":
            raise TypeError(f"{name} must be a float16, float32 or float64 array, got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point array, got dtype {t.dtype}")
    if t.ndim != 2:
        raise ValueError(f"{name} must have shape (n, 3), got {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} has no points (shape {tuple(t.shape)}); pcu requires at least one")
    return t


def _pair(x, y) -> tuple[_checks.Pair, np.dtype]:
    """The validated pair and the numpy dtype of results: float64 if an input is float64, else
    float32 (pcu returns the input dtype; float16 is measured and returned in float32)."""
    xt, yt = _as_points(x, "x"), _as_points(y, "y")
    pair = _checks.validated_pair(xt, yt, names=("x", "y"))
    wide = torch.float64 in (xt.dtype, yt.dtype)
    return pair, np.dtype(np.float64 if wide else np.float32)


def _check_leaf(max_points_per_leaf) -> None:
    if isinstance(max_points_per_leaf, bool) or not isinstance(max_points_per_leaf, (int, np.integer)):
        raise TypeError(f"max_points_per_leaf must be an int, got {type(max_points_per_leaf).__name__}")
    if max_points_per_leaf < 1:
        raise ValueError(f"max_points_per_leaf must be >= 1, got {max_points_per_leaf}")


def _check_p_norm(p_norm) -> float:
    """``p_norm`` as the float ``ord`` of a vector norm (None is 2, as in np.linalg.norm)."""
    if p_norm is None:
        return 2.0
    if isinstance(p_norm, bool) or not isinstance(p_norm, Real) or math.isnan(p_norm):
        raise ValueError(f"p_norm must be a real number, inf or -inf (np.linalg.norm's vector ord), got {p_norm!r}")
    return float(p_norm)


def _mean_norm(points: torch.Tensor, targets: torch.Tensor, index: torch.Tensor, ord: float) -> torch.Tensor:
    """mean_i || targets[index_i] - points_i ||_ord over the (N, D) points of one cloud."""
    return torch.linalg.vector_norm(targets[index] - points, ord=ord, dim=-1).mean()


def chamfer_distance(x, y, return_index: bool = False, p_norm=2, max_points_per_leaf: int = 10):
    """pcu's ``chamfer_distance``:

        CD = 1/M sum_j ||x[nn_X(y_j)] - y_j||_p + 1/N sum_i ||y[nn_Y(x_i)] - x_i||_p,

    nn the EUCLIDEAN nearest neighbour whatever ``p_norm`` is, ||.||_p unsquared; the two means are
    added, not halved. For ``p_norm=2`` this is ``2 * pm.chamfer_l1(x, y)``.

    Args:
        x: (N, 3) array, y: (M, 3) array (float32 or float64; also float16 and torch tensors).
        return_index: also return the nearest-neighbour indices.
        p_norm: the norm of the differences: any real p, ``np.inf``, ``-np.inf`` or 0, as
            ``np.linalg.norm``'s vector ``ord`` (None: 2).
        max_points_per_leaf: pcu's kd-tree leaf size; checked, no effect.

    Returns:
        The distance as a numpy scalar (float32, or float64 if an input is float64); with
        ``return_index`` the tuple (distance, corrs_x_to_y, corrs_y_to_x), where corrs_x_to_y is
        the (N,) int64 index into y of each x point's nearest neighbour and corrs_y_to_x the (M,)
        int64 index into x of each y point's.
    """
    ord = _check_p_norm(p_norm)
    _check_leaf(max_points_per_leaf)
    pair, out_dtype = _pair(x, y)
    c = correspondences_core(pair)
    dtype = compute_dtype(pair.x.dtype)  # half inputs: the norms and the means in float32
    xb, yb = pair.x[0].to(dtype), pair.y[0].to(dtype)
    ix, iy = c.x_to_y_index[0], c.y_to_x_index[0]
    distance = _mean_norm(yb, xb, iy, ord) + _mean_norm(xb, yb, ix, ord)
    value = np.asarray(distance.item(), dtype=out_dtype)[()]
    if return_index:
        return value, ix.cpu().numpy(), iy.cpu().numpy()
    return value


def _farthest(x, y, xl, yl, squared: bool, out_dtype: np.dtype) -> tuple[float, int, int]:
    """(max_i d(x_i, Y), i, j): the one-sided Hausdorff distance from validated (1, N, D) x to y,
    d measured as pcu returns it (rounded to the output dtype, squared or not), the first maximum."""
    sq, index = nearest_core(x, y, xl, yl)
    d = sq[0] if squared else sq[0].sqrt()
    d = d.to(torch.float64 if out_dtype == np.float64 else torch.float32)
    i = int(d.argmax())  # the first maximum, as Eigen's maxCoeff
    return float(d[i]), i, int(index[0, i])


def one_sided_hausdorff_distance(
    x, y, return_index: bool = True, squared_distances: bool = False, max_points_per_leaf: int = 10
):
    """pcu's ``one_sided_hausdorff_distance``: ``max_i min_j ||x_i - y_j||`` (squared with
    ``squared_distances``).

    Note pcu's default ``return_index=True`` (its C++ binding's default): the call with two
    arguments returns the tuple (d, i, j), d a Python float, i the index into x of the farthest
    point and j the index into y of its nearest neighbour (Python ints); with
    ``return_index=False`` the float d alone. Ties go to the first i.
    """
    _check_leaf(max_points_per_leaf)
    pair, out_dtype = _pair(x, y)
    d, i, j = _farthest(pair.x, pair.y, pair.x_lengths, pair.y_lengths, squared_distances, out_dtype)
    return (d, i, j) if return_index else d


def hausdorff_distance(
    x, y, return_index: bool = False, squared_distances: bool = False, max_points_per_leaf: int = 10
):
    """pcu's ``hausdorff_distance``: ``max(h(x, y), h(y, x))`` with h the one-sided distance
    (Euclidean, or squared with ``squared_distances``), a Python float (``pm.hausdorff_distance``
    gives the same Euclidean number).

    With ``return_index`` returns (d, i, j): i into x and j into y, the pair that realises d, from
    the x -> y direction only when it is strictly the larger one (on a tie, from y -> x, as pcu).
    """
    _check_leaf(max_points_per_leaf)
    pair, out_dtype = _pair(x, y)
    x_b, xl, y_b, yl, _ = pair
    d_xy, i_x, j_y = _farthest(x_b, y_b, xl, yl, squared_distances, out_dtype)
    d_yx, i_y, j_x = _farthest(y_b, x_b, yl, xl, squared_distances, out_dtype)
    d = max(d_xy, d_yx)
    if not return_index:
        return d
    return (d, i_x, j_y) if d_xy > d_yx else (d, j_x, i_y)
