"""Drop-in replacement for ThibaultGROUEIX/ChamferDistancePytorch (``chamfer3D/dist_chamfer_3D.py``,
its 2D/5D/6D siblings, ``chamfer_python.py`` and ``fscore.py``), the Chamfer module that AtlasNet
and many completion repositories add as a git submodule.

Follows ThibaultGROUEIX/ChamferDistancePytorch at commit 364c03c4ec5febc1e21068ffac362eca4a8f61d9:
``chamfer3D/dist_chamfer_3D.py`` (the module), ``chamfer3D/chamfer3D.cu`` (the kernel),
``chamfer_python.py`` and ``fscore.py``.

Import lines, before and after (the calls stay as they are)::

    import chamfer3D.dist_chamfer_3D, fscore               # README
    chamfer3D.dist_chamfer_3D.chamfer_3DDist()(p1, p2); fscore.fscore(d1, d2)

    from pointmetrics.compat import chamfer3d
    chamfer3d.chamfer_3DDist()(p1, p2); chamfer3d.fscore(d1, d2)

    from chamfer3D.dist_chamfer_3D import chamfer_3DDist   ->  from pointmetrics.compat.chamfer3d import chamfer_3DDist
    from fscore import fscore                              ->  from pointmetrics.compat.chamfer3d import fscore
    from chamfer_python import distChamfer                 ->  from pointmetrics.compat.chamfer3d import distChamfer

Conventions of the original, all kept:

- ``chamfer_3DDist()(input1, input2) -> (dist1, dist2, idx1, idx2)``: (B, N) and (B, M) SQUARED
  Euclidean distances to the nearest neighbour in the other cloud ("dist1 and dist2 are squared
  pointcloud euclidean distances", README), and int32 indices of those neighbours. No reduction, no
  halving, no lengths. Ties go to the smaller index (strict ``<`` in the kernel). An empty other
  cloud gives distance 0 and index 0 (the zero-initialised outputs, never written).
- ``chamfer_2DDist``, ``chamfer_5DDist``, ``chamfer_6DDist``: the same for 2, 5 and 6 coordinates
  (6D: the sum of squared differences of all six, e.g. position and normal).
- ``distChamfer(a, b)`` (``chamfer_python.py``): the same four outputs for any dimension, distances as
  float32 and indices as int32 (the original's ``.float()`` and ``.int()``).
- ``fscore(dist1, dist2, threshold=0.001)`` thresholds the SQUARED distances as given (so 0.001 is
  a distance of about 0.0316), strictly: precision_1 = mean over points of (dist1 < threshold) per
  cloud, precision_2 the same for dist2, F = 2 P1 P2 / (P1 + P2) with NaN (P1 = P2 = 0, or an empty
  cloud) replaced by 0. Returns ``(fscore, precision_1, precision_2)``, each (B,) float32.

Differences, on purpose:

- Any floating dtype (the kernels are float32 only), CPU and CUDA (the original: CUDA only),
  non-contiguous inputs. Distances come back in float32 for float16, bfloat16 and float32 inputs, in
  float64 for float64 (the original: always float32); ``distChamfer`` stays float32 as its ``.float()``.
- Gradients reach both inputs, as the original's backward does, and double backward works. Indices
  are not differentiable.
- The nearest neighbour is exact: ``chamfer_python.distChamfer`` computes |a|^2 + |b|^2 - 2 a.b in
  float64, which cancels for nearby points (negative squared distances, wrong neighbours); the 6D
  kernel's unrolled loop (``end_k - (end_k & 6)``) reads up to three entries past the loaded points
  (stale or uninitialised shared memory, so possibly an index beyond the cloud) when a chunk of the
  target cloud has 1 or 3 points modulo 8. Neither is reproduced. ``distChamfer`` of an empty
  cloud gives 0 and index 0 instead of torch.min's error.
- Bad input raises a ValueError/TypeError naming the argument (the original: an AssertionError for
  the wrong dimension, or garbage for batch sizes that differ and for NaN/Inf coordinates).

The native pointmetrics equivalent: ``c = pm.correspondences(p1, p2)`` holds the same numbers
(``c.sq_x_to_y``, ``c.x_to_y_index``, ``c.sq_y_to_x``, ``c.y_to_x_index``, int64 indices);
``dist1.mean(1) + dist2.mean(1)`` is ``pm.chamfer_l2(p1, p2, reduction=None)``. ``fscore`` here
thresholds squared distances, ``pm.fscore`` unsquared ones: ``fscore(d1, d2, t)`` is
``pm.fscore(p1, p2, t ** 0.5)`` (up to rounding at the threshold, and 0 instead of NaN for empty clouds).
"""

from __future__ import annotations

import math
import numbers

import torch

from .chamfer_kernel import kernel_nearest

__all__ = [
    "chamfer_2DDist",
    "chamfer_2DFunction",
    "chamfer_3DDist",
    "chamfer_3DFunction",
    "chamfer_5DDist",
    "chamfer_5DFunction",
    "chamfer_6DDist",
    "chamfer_6DFunction",
    "distChamfer",
    "fscore",
]


def _check_clouds(input1, input2, dim: int | None) -> None:
    """(B, N, D) tensors, D == ``dim`` when given (the CUDA versions each serve one dimension)."""
    for name, points in (("input1", input1), ("input2", input2)):
        if not isinstance(points, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (B, N, D), got {type(points).__name__}")
        if points.ndim != 3:
            raise ValueError(f"{name} must have shape (B, N, D), got {tuple(points.shape)}")
        if dim is not None and points.shape[2] != dim:
            raise ValueError(
                f"{name} must have {dim} coordinates per point, shape (B, N, {dim}), got {tuple(points.shape)}"
            )


def _nearest_both_ways(input1, input2, dim: int | None):
    """(dist1, dist2, idx1, idx2): squared distances and int32 indices, input1 -> input2 and back."""
    _check_clouds(input1, input2, dim)
    return kernel_nearest(input1, input2, ("input1", "input2"))


class _ChamferFunction:
    """``chamfer_<D>DFunction.apply(xyz1, xyz2) -> (dist1, dist2, idx1, idx2)``; gradients of the
    distances reach both inputs through ordinary autograd."""

    dim = 3

    @classmethod
    def apply(cls, xyz1: torch.Tensor, xyz2: torch.Tensor):
        return _nearest_both_ways(xyz1, xyz2, cls.dim)


class chamfer_3DFunction(_ChamferFunction):  # lower case: the original's name
    """The 3D function: (B, N, 3) and (B, M, 3) inputs."""

    dim = 3


class chamfer_2DFunction(_ChamferFunction):
    """The 2D function: (B, N, 2) and (B, M, 2) inputs."""

    dim = 2


class chamfer_5DFunction(_ChamferFunction):
    """The 5D function: (B, N, 5) and (B, M, 5) inputs."""

    dim = 5


class chamfer_6DFunction(_ChamferFunction):
    """The 6D function: (B, N, 6) and (B, M, 6) inputs."""

    dim = 6


class _ChamferDist(torch.nn.Module):
    """Nearest neighbours both ways between two batches of clouds of ``dim`` coordinates.

    ``forward(input1, input2) -> (dist1, dist2, idx1, idx2)``:
      dist1[b, i] = min_j ||input1[b, i] - input2[b, j]||^2   (squared, (B, N))
      idx1[b, i]  = the smallest j attaining it               (int32, (B, N))
    and dist2, idx2 the same from input2 to input1, (B, M). Distances are differentiable with
    respect to both inputs.
    """

    function = _ChamferFunction

    def forward(self, input1: torch.Tensor, input2: torch.Tensor):
        return self.function.apply(input1, input2)


class chamfer_3DDist(_ChamferDist):  # lower case: the original's name
    """ChamferDistancePytorch's 3D module; see :class:`_ChamferDist` for the outputs."""

    function = chamfer_3DFunction


class chamfer_2DDist(_ChamferDist):
    """The 2D module (``chamfer2D/dist_chamfer_2D.py``)."""

    function = chamfer_2DFunction


class chamfer_5DDist(_ChamferDist):
    """The 5D module (``chamfer5D/dist_chamfer_5D.py``)."""

    function = chamfer_5DFunction


class chamfer_6DDist(_ChamferDist):
    """The 6D module (``chamfer6D/dist_chamfer_6D.py``)."""

    function = chamfer_6DFunction


def distChamfer(a: torch.Tensor, b: torch.Tensor):  # camel case: the original's name
    """``chamfer_python.distChamfer``: the four outputs of :class:`chamfer_3DDist` for clouds of any
    dimension D, with float32 distances and int32 indices (the original's ``.float()``/``.int()``).
    Exact, unlike the original's |a|^2 + |b|^2 - 2 a.b; differentiable with respect to both inputs."""
    d1, d2, i1, i2 = _nearest_both_ways(a, b, None)
    return d1.float(), d2.float(), i1, i2


def _threshold_value(threshold) -> float:
    """``threshold`` as a float: a real number or a one-element floating tensor, not NaN."""
    if isinstance(threshold, torch.Tensor) and threshold.numel() == 1 and threshold.is_floating_point():
        threshold = threshold.item()
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or math.isnan(threshold):
        raise TypeError(f"threshold must be a real number (a squared distance), got {threshold!r}")
    return float(threshold)


def _check_dists(dist1, dist2) -> None:
    for name, dist in (("dist1", dist1), ("dist2", dist2)):
        if not isinstance(dist, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (B, N), got {type(dist).__name__}")
        if dist.ndim != 2:
            raise ValueError(f"{name} must have shape (B, N), got {tuple(dist.shape)}")
    if dist1.shape[0] != dist2.shape[0]:
        raise ValueError(f"dist1 and dist2 have different batch sizes ({dist1.shape[0]} and {dist2.shape[0]})")
    if dist1.device != dist2.device:
        raise ValueError(f"dist1 is on {dist1.device} but dist2 is on {dist2.device}")


def fscore(dist1: torch.Tensor, dist2: torch.Tensor, threshold: float = 0.001):
    """ChamferDistancePytorch's F-score on SQUARED nearest-neighbour distances.

    precision_1[b] = |{i : dist1[b, i] < threshold}| / N,  precision_2[b] the same for dist2 over M,
    fscore[b] = 2 precision_1 precision_2 / (precision_1 + precision_2), 0 where that is NaN
    (both precisions 0, or an empty cloud). ``threshold`` compares with the squared distances as
    they are: a Euclidean threshold tau is ``threshold=tau ** 2``.

    Returns ``(fscore, precision_1, precision_2)``, each (B,) float32. Not differentiable.
    """
    _check_dists(dist1, dist2)
    threshold = _threshold_value(threshold)
    precision_1 = _fraction_below(dist1, threshold)
    precision_2 = _fraction_below(dist2, threshold)
    f = 2 * precision_1 * precision_2 / (precision_1 + precision_2)
    return torch.where(torch.isnan(f), torch.zeros_like(f), f), precision_1, precision_2


def _fraction_below(dist: torch.Tensor, threshold: float) -> torch.Tensor:
    """(B,) float32 share of each row below ``threshold``; NaN for an empty row (0 / 0)."""
    hits = (dist.detach() < threshold).sum(1).to(torch.float32)
    return hits / dist.shape[1] if dist.shape[1] else torch.full_like(hits, math.nan)
