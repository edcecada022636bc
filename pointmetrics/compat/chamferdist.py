"""Drop-in replacement for the ``chamferdist`` package (krrish94/chamferdist, PyTorch3D's KNN
repackaged as ``chamferdist.ChamferDistance``).

Follows krrish94/chamferdist at commit ee753899b583bdc06bd2505dc162fd54ba0c6c5b (version 1.0.3, the
current PyPI sdist): ``chamferdist/chamfer.py`` (the module) over ``knn_cpu.cpp`` / ``knn.cu``
(PyTorch3D's KNN kernels, squared distances).

Change ``from chamferdist import ChamferDistance`` into
``from pointmetrics.compat.chamferdist import ChamferDistance`` and keep the calls.

``ChamferDistance()(source_cloud, target_cloud, bidirectional=False, reverse=False,
batch_reduction="mean", point_reduction="sum")``, as the original computes it:

- d_fwd[b, i] = min_j ||source[b, i] - target[b, j]||^2, SQUARED, (B, N): source -> target.
  d_bwd[b, j] = min_i ||target[b, j] - source[b, i]||^2, (B, M): target -> source.
- By DEFAULT ONLY THE FORWARD DIRECTION (source -> target) is used, summed over points (not
  averaged) and averaged over the batch: mean_b sum_i d_fwd[b, i]. Not symmetric, not halved.
- ``reverse=True``: the backward direction (target -> source) alone, reduced the same way.
- ``bidirectional=True``: reduced forward + reduced backward; it takes precedence over ``reverse``
  (a UserWarning when both are set).
- ``point_reduction``: "sum" or "mean" over each cloud's points (dim 1), or None to keep them.
  ``batch_reduction``: "sum" or "mean" of what is left, or None. With ``point_reduction=None`` a
  batch reduction runs over ALL B x N values (``tensor.mean()``), and with both None and
  ``bidirectional`` the (B, N) and (B, M) per-point terms are added elementwise, which pairs
  unrelated points and needs N == M (or one of them 1): a ValueError otherwise, where the original
  fails in torch's broadcasting.
- An unknown reduction raises ValueError. No lengths, no padding. An empty target cloud gives
  distances 0 (PyTorch3D's padding); an empty source gives 0 for "sum" and NaN for "mean".

Differences, on purpose:

- Any floating dtype, CPU and CUDA, non-contiguous inputs. Distances are in float32 for float16,
  bfloat16 and float32 inputs and in float64 for float64 (the original's backward casts to float32,
  so float64 gradients had float32 precision); double backward works.
- Gradients reach both clouds, as the original's.
- Non-tensor inputs raise a TypeError naming the argument (the original's message refers to an
  undefined name ``pts`` and raises NameError); clouds that are not (B, N, D), NaN/Inf coordinates,
  batch sizes, dimensions or devices that differ raise a ValueError naming the argument.

The native pointmetrics equivalents: the default is
``pm.chamfer_distance(source, target, point_reduction="sum", single_directional=True)[0]``;
``bidirectional=True, point_reduction="mean"`` is ``pm.chamfer_distance(source, target)[0]``, which
is ``pm.chamfer_l2(source, target)``.
"""

from __future__ import annotations

import warnings

import torch

from .. import _checks
from ..knn import nearest_core

__all__ = ["ChamferDistance"]

_REDUCTIONS = ("sum", "mean", None)


def _check_clouds(source_cloud, target_cloud) -> None:
    for name, cloud in (("source_cloud", source_cloud), ("target_cloud", target_cloud)):
        if not isinstance(cloud, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (B, N, D), got {type(cloud).__name__}")
        if cloud.ndim != 3:
            raise ValueError(f"{name} must have shape (B, N, D), got {tuple(cloud.shape)}")


def _reduce(d: torch.Tensor, point_reduction: str | None, batch_reduction: str | None) -> torch.Tensor:
    """The original's reductions of (B, N) per-point distances: over points (dim 1), then over what
    is left (the batch, or every value when points were kept)."""
    if point_reduction == "sum":
        d = d.sum(1)
    elif point_reduction == "mean":
        d = d.mean(1)
    if batch_reduction == "sum":
        d = d.sum()
    elif batch_reduction == "mean":
        d = d.mean()
    return d


class ChamferDistance(torch.nn.Module):
    """chamferdist's one-directional, summed, squared Chamfer distance (see the module docstring).

    forward(source_cloud (B, N, D), target_cloud (B, M, D), bidirectional=False, reverse=False,
            batch_reduction="mean", point_reduction="sum")

      default:          mean_b  sum_i  min_j ||s_bi - t_bj||^2
      reverse:          mean_b  sum_j  min_i ||t_bj - s_bi||^2
      bidirectional:    the sum of both
    """

    def forward(
        self,
        source_cloud: torch.Tensor,
        target_cloud: torch.Tensor,
        bidirectional: bool | None = False,
        reverse: bool | None = False,
        batch_reduction: str | None = "mean",
        point_reduction: str | None = "sum",
    ) -> torch.Tensor:
        _check_clouds(source_cloud, target_cloud)
        _checks.check_choice(point_reduction, _REDUCTIONS, "point_reduction")
        _checks.check_choice(batch_reduction, _REDUCTIONS, "batch_reduction")
        if bidirectional and reverse:
            warnings.warn(
                "Both bidirectional and reverse set to True: bidirectional takes precedence.", UserWarning, stacklevel=2
            )
        src, src_len, tgt, tgt_len, _ = _checks.validated_pair(
            source_cloud, target_cloud, names=("source_cloud", "target_cloud")
        )
        if bidirectional and point_reduction is None and batch_reduction is None:
            _check_elementwise_sum(src.shape[1], tgt.shape[1])
        backward = None
        if bidirectional or reverse:
            backward = _reduce(nearest_core(tgt, src, tgt_len, src_len)[0], point_reduction, batch_reduction)
            if not bidirectional:
                return backward
        forward = _reduce(nearest_core(src, tgt, src_len, tgt_len)[0], point_reduction, batch_reduction)
        return forward if backward is None else forward + backward


def _check_elementwise_sum(n: int, m: int) -> None:
    """The original adds the unreduced (B, N) and (B, M) terms elementwise: that needs them to broadcast."""
    if n != m and 1 not in (n, m):
        raise ValueError(
            "bidirectional=True with point_reduction=None and batch_reduction=None adds the (B, N) source and "
            f"(B, M) target per-point distances elementwise, as chamferdist does; that needs N == M, got {n} and {m}"
        )
