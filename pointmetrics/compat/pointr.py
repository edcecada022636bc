"""Drop-in replacement for PoinTr's ``extensions/chamfer_dist`` (the Chamfer losses of PoinTr,
Point-BERT, Point-MAE, PointGPT and PointMamba, which ship the same folder).

Follows yuxumin/PoinTr at commit 2e53e72367db9dbc3832ca534569f0fed9dd7dc1:
``extensions/chamfer_dist/__init__.py`` (the modules), ``chamfer.cu`` and ``chamfer_cuda.cpp`` (the
kernel). Pang-Yatian/Point-MAE at 7445a68068d707da6d959b66773bfef84c4e3e32 ships the same kernel and
modules, less ``ChamferDistanceL1_PM``.

Change ``from extensions.chamfer_dist import ChamferDistanceL1, ChamferDistanceL2`` into
``from pointmetrics.compat.pointr import ChamferDistanceL1, ChamferDistanceL2`` and keep the calls.

Conventions of the original, all kept:

- ``ChamferFunction.apply(xyz1, xyz2)`` returns ``(dist1, dist2)``: (B, N) and (B, M) SQUARED
  Euclidean distances from each point to its nearest neighbour in the other cloud. The kernel's
  indices (``chamfer.forward`` also returns them) are int32; :func:`chamfer_forward` returns all four.
  Ties go to the smaller index. An empty other cloud gives distance 0 and index 0 (the kernel's
  zero-initialised outputs, never written).
- ``ChamferDistanceL2``:        mean(dist1) + mean(dist2)                (squared, not halved)
- ``ChamferDistanceL2_split``:  (mean(dist1), mean(dist2))
- ``ChamferDistanceL1``:        (mean(sqrt dist1) + mean(sqrt dist2)) / 2  (unsquared, halved)
- ``ChamferDistanceL1_PM``:     mean(sqrt dist1), the xyz1 -> xyz2 direction only ("partial matching")
- Each mean runs over the batch and the points together (all B x N entries); with equal-size
  clouds this is the mean over clouds of the per-cloud means. No lengths, no padding.
- ``ignore_zeros=True`` acts ONLY when ``xyz1`` has batch size 1: it then drops from each cloud every
  point whose coordinates SUM to zero (``xyz.sum(2) != 0`` keeps a point), so (0, 0, 0) but also
  (1, -1, 0) is dropped. With batch size > 1 it is silently ignored. If every point of a cloud is
  dropped, its mean is over nothing: NaN.

Differences, on purpose:

- Any floating dtype (the kernel is float32 only), CPU and CUDA, non-contiguous inputs (the kernel
  reads ``data_ptr`` and assumes contiguity). Distances come back in float32 for float16, bfloat16
  and float32 inputs, in float64 for float64 (the kernel: always float32).
- Gradients reach both inputs, as the original's backward does, and double backward works.
- ``ChamferDistanceL1`` and ``ChamferDistanceL1_PM`` take the square root with a finite derivative at
  0 (:func:`pointmetrics._reduce.safe_sqrt`): the original's ``torch.sqrt`` sends NaN gradients into
  both clouds whenever a point coincides with its nearest neighbour (inf * 0 in the kernel's
  backward). The values are the same.
- Bad input raises a ValueError/TypeError naming the argument: not a (B, N, 3) tensor, batch sizes
  that differ, devices that differ, NaN/Inf coordinates (the kernel silently reads the wrong
  memory for the first three, and returns meaningless neighbours for the last).

The native pointmetrics equivalents: ``ChamferDistanceL2()(x, y) == pm.chamfer_l2(x, y)`` and
``ChamferDistanceL1()(x, y) == pm.chamfer_l1(x, y)`` (equal-size clouds, no ``ignore_zeros``).
"""

from __future__ import annotations

import torch

from .._reduce import safe_sqrt
from .chamfer_kernel import kernel_nearest

__all__ = [
    "ChamferDistanceL1",
    "ChamferDistanceL1_PM",
    "ChamferDistanceL2",
    "ChamferDistanceL2_split",
    "ChamferFunction",
    "chamfer_forward",
]


def _check_clouds(xyz1, xyz2) -> None:
    """Both inputs are (B, N, 3) tensors with the same B (checked before ``ignore_zeros`` reshapes them)."""
    for name, xyz in (("xyz1", xyz1), ("xyz2", xyz2)):
        if not isinstance(xyz, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (B, N, 3), got {type(xyz).__name__}")
        if xyz.ndim != 3 or xyz.shape[2] != 3:
            raise ValueError(f"{name} must have shape (B, N, 3), got {tuple(xyz.shape)}")
    if xyz1.shape[0] != xyz2.shape[0]:
        raise ValueError(f"xyz1 and xyz2 have different batch sizes ({xyz1.shape[0]} and {xyz2.shape[0]})")


def _drop_zero_sum_points(xyz1, xyz2, ignore_zeros: bool):
    """PoinTr's ``ignore_zeros``: for batch size 1 only, keep the points whose coordinate sum is not 0."""
    if xyz1.size(0) == 1 and ignore_zeros:
        xyz1 = xyz1[xyz1.sum(dim=2) != 0].unsqueeze(0)
        xyz2 = xyz2[xyz2.sum(dim=2) != 0].unsqueeze(0)
    return xyz1, xyz2


def chamfer_forward(xyz1: torch.Tensor, xyz2: torch.Tensor):
    """What the compiled ``chamfer.forward(xyz1, xyz2)`` returns: ``(dist1, dist2, idx1, idx2)``.

    dist1[b, i] = min_j ||xyz1[b, i] - xyz2[b, j]||^2 (squared), idx1[b, i] the smallest such j
    (int32); dist2 / idx2 the same from xyz2 to xyz1. Distances are differentiable with respect to
    both inputs. An empty other cloud gives 0 and index 0.
    """
    _check_clouds(xyz1, xyz2)
    return kernel_nearest(xyz1, xyz2, ("xyz1", "xyz2"))


class ChamferFunction:
    """PoinTr's autograd function: ``ChamferFunction.apply(xyz1, xyz2) -> (dist1, dist2)``, the
    (B, N) and (B, M) squared nearest-neighbour distances each way. Gradients reach both inputs
    through ordinary autograd (there is no separate backward to call)."""

    @staticmethod
    def apply(xyz1: torch.Tensor, xyz2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dist1, dist2, _, _ = chamfer_forward(xyz1, xyz2)
        return dist1, dist2


class _PoinTrChamfer(torch.nn.Module):
    """The shared ``ignore_zeros`` argument and input handling of PoinTr's four modules."""

    def __init__(self, ignore_zeros: bool = False) -> None:
        super().__init__()
        self.ignore_zeros = ignore_zeros

    def _distances(self, xyz1, xyz2, both: bool = True):
        _check_clouds(xyz1, xyz2)
        xyz1, xyz2 = _drop_zero_sum_points(xyz1, xyz2, self.ignore_zeros)
        dist1, dist2, _, _ = kernel_nearest(xyz1, xyz2, ("xyz1", "xyz2"), both)
        return dist1, dist2


class ChamferDistanceL2(_PoinTrChamfer):
    """CD-L2 of PoinTr:  mean_{b,i} ||x_bi - NN(x_bi)||^2 + mean_{b,j} ||y_bj - NN(y_bj)||^2.

    Squared, not halved; each mean over all B x N (B x M) points. A 0-dim tensor.
    ``ignore_zeros`` (batch size 1 only): drop points whose coordinates sum to 0 first.
    """

    def forward(self, xyz1: torch.Tensor, xyz2: torch.Tensor) -> torch.Tensor:
        dist1, dist2 = self._distances(xyz1, xyz2)
        return dist1.mean() + dist2.mean()


class ChamferDistanceL2_split(_PoinTrChamfer):  # underscore: the original's name
    """The two terms of :class:`ChamferDistanceL2` apart: ``(mean dist1, mean dist2)``, squared."""

    def forward(self, xyz1: torch.Tensor, xyz2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dist1, dist2 = self._distances(xyz1, xyz2)
        return dist1.mean(), dist2.mean()


class ChamferDistanceL1(_PoinTrChamfer):
    """CD-L1 of PoinTr / PCN:  (mean_{b,i} ||x_bi - NN(x_bi)|| + mean_{b,j} ||y_bj - NN(y_bj)||) / 2.

    Unsquared Euclidean distances, halved; each mean over all B x N (B x M) points. The square root's
    gradient is finite at coincident points (the original's is NaN there).
    """

    def forward(self, xyz1: torch.Tensor, xyz2: torch.Tensor) -> torch.Tensor:
        dist1, dist2 = self._distances(xyz1, xyz2)
        return (safe_sqrt(dist1).mean() + safe_sqrt(dist2).mean()) / 2


class ChamferDistanceL1_PM(_PoinTrChamfer):  # underscore: the original's name
    """One-sided CD-L1 for partial inputs:  mean_{b,i} ||x_bi - NN_Y(x_bi)||, xyz1 -> xyz2 only.

    Unsquared, not halved. Gradients reach xyz1 and, through the matched neighbours, xyz2.
    """

    def forward(self, xyz1: torch.Tensor, xyz2: torch.Tensor) -> torch.Tensor:
        dist1, _ = self._distances(xyz1, xyz2, both=False)
        return safe_sqrt(dist1).mean()
