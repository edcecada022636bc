"""Arithmetic shared by the metrics: the dtype sums run in, distances from squared distances, and
the reductions over points and over the batch (with the one rule for empty clouds: NaN and a
warning).

Every function here takes validated tensors (see _checks.py) and never synchronises with the
device, except :func:`warn_if_empty`, which reads one flag to decide whether to warn.
"""

from __future__ import annotations

import warnings

import torch


def compute_dtype(*dtypes: torch.dtype) -> torch.dtype:
    """The dtype sums and squares run in: float64 if any input is float64, else float32.

    float16/bfloat16 inputs are accumulated in float32: in float16 a sum over a few thousand points
    overflows at 65504, its resolution near 2048 is 2, and blur(x^2) - mu^2 cancels to noise.
    """
    return torch.float64 if torch.float64 in dtypes else torch.float32


class _SafeSqrt(torch.autograd.Function):
    """sqrt(d2) whose derivative is 0.5 / sqrt(d2 + 1e-12), so it stays finite at d2 = 0."""

    @staticmethod
    def forward(ctx, d2):
        ctx.save_for_backward(d2)
        return d2.sqrt()

    @staticmethod
    def backward(ctx, grad):
        (d2,) = ctx.saved_tensors
        return grad * 0.5 * torch.rsqrt(d2 + 1e-12)


def safe_sqrt(d2: torch.Tensor) -> torch.Tensor:
    """Euclidean distance from a squared one, with a gradient that is finite at zero."""
    return _SafeSqrt.apply(d2)


def valid_mask(lengths: torch.Tensor, n: int) -> torch.Tensor:
    """(B, n) True for the first lengths[b] entries of row b."""
    return torch.arange(n, device=lengths.device)[None, :] < lengths[:, None]


def warn_if_empty(what: str, *lengths: torch.Tensor, result: str = "its result is NaN") -> bool:
    """Warns (RuntimeWarning, pointing at the caller of the public function) when a cloud is
    empty; returns whether one is. One device sync."""
    empty = bool(torch.stack([(n == 0).any() for n in lengths]).any())
    if empty:
        warnings.warn(f"{what}: a point cloud is empty; {result}", RuntimeWarning, stacklevel=3)
    return empty


def mean_over_points(values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B,) mean of the first lengths[b] entries of each row of (B, N) ``values``; NaN for an empty row.

    The padding is replaced (not multiplied) by 0 and the division uses lengths clamped to 1, with
    NaN selected afterwards: a 0 / 0 or a NaN times 0 in the graph would send NaN gradients into
    the padding even where the NaN result is not used.
    """
    zero = torch.zeros((), dtype=values.dtype, device=values.device)
    total = torch.where(valid_mask(lengths, values.shape[1]), values, zero).sum(1)
    return torch.where(lengths == 0, torch.nan, total / lengths.clamp(min=1).to(values.dtype))


def reduce_batch(per_cloud: torch.Tensor, reduction: str | None, unbatched: bool = False) -> torch.Tensor:
    """``reduction`` of (B,) per-cloud values: "mean" or "sum" over the batch, or None for the
    values themselves (the single value when the inputs were single clouds)."""
    if reduction == "mean":
        return per_cloud.mean()
    if reduction == "sum":
        return per_cloud.sum()
    return per_cloud[0] if unbatched else per_cloud
