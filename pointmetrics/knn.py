"""Exact K nearest neighbours between point clouds."""

from __future__ import annotations

from typing import NamedTuple

import torch

from . import _checks
from ._ops import ops


class KNN(NamedTuple):
    """Result of :func:`knn_points`.

    dists: (B, N, K) distances to the K nearest neighbours, ascending: squared Euclidean for
        ``norm=2`` (as PyTorch3D), L1 for ``norm=1``. 0 where there is no neighbour.
    idx: (B, N, K) int64 indices into ``y``; -1 where there is no neighbour (rows past
        ``x_lengths``, or slots past ``y_lengths`` when a cloud has fewer than K points).
    knn: (B, N, K, D) the neighbours' coordinates in y's dtype (zeros where idx is -1) if
        ``return_nn``, else None.
    """

    dists: torch.Tensor
    idx: torch.Tensor
    knn: torch.Tensor | None


def knn_gather(points: torch.Tensor, idx: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Gathers ``points[b, idx[b, i, k]]`` into a (B, N, K, D) tensor, as PyTorch3D's knn_gather.

    ``points``: (B, M, D) floating point; ``idx``: (B, N, K) integer indices in [-1, M - 1];
    ``lengths``: optional (B,) valid points per cloud. Entries whose index is -1 (or, if ``lengths``
    is given, not below ``lengths[b]``) are zero, whatever the padding of ``points`` holds.
    Differentiable with respect to ``points``.
    """
    _checks.check_float_tensor(points, "points")
    if not isinstance(idx, torch.Tensor) or idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool:
        raise TypeError(f"idx must be an integer tensor, got {getattr(idx, 'dtype', type(idx).__name__)}")
    if points.ndim != 3 or idx.ndim != 3 or idx.shape[0] != points.shape[0]:
        raise ValueError(
            f"points must be (B, M, D) and idx (B, N, K) with the same B, "
            f"got {tuple(points.shape)} and {tuple(idx.shape)}"
        )
    if idx.device != points.device:
        raise ValueError(f"idx is on {idx.device} but points is on {points.device}")
    checks = _checks.ValueChecks()
    M = points.shape[1]
    if idx.numel():
        checks.add(((idx < -1) | (idx >= M)).any(), f"idx values must lie in [-1, {M - 1}] (-1: no neighbour)")
    if lengths is not None:
        if not isinstance(lengths, torch.Tensor) or lengths.is_floating_point() or lengths.dtype == torch.bool:
            raise TypeError("lengths must be an integer tensor of shape (B,)")
        if lengths.shape != (points.shape[0],) or lengths.device != points.device:
            raise ValueError(f"lengths must have shape ({points.shape[0]},) and be on {points.device}")
        checks.add(((lengths < 0) | (lengths > M)).any(), f"lengths values must lie in [0, {M}]")
    checks.run()
    return gather_neighbours(points, idx.to(torch.int64), lengths)


def gather_neighbours(points: torch.Tensor, idx: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """knn_gather on trusted inputs (int64 idx in [-1, M - 1]), with no checks and no sync."""
    B, N, K = idx.shape
    D = points.shape[-1]
    if points.shape[1] == 0:  # no point to gather from: every slot is padding
        return points.new_zeros((B, N, K, D))
    valid = idx >= 0
    if lengths is not None:
        valid &= idx < lengths.view(B, 1, 1)
    flat = torch.where(valid, idx, 0).reshape(B, N * K, 1).expand(B, N * K, D)
    out = points.gather(1, flat).reshape(B, N, K, D)
    return torch.where(valid.unsqueeze(-1), out, torch.zeros((), dtype=out.dtype, device=out.device))


def knn_core(x, y, x_lengths, y_lengths, K: int, norm: int) -> tuple[torch.Tensor, torch.Tensor]:
    """knn_points on validated padded inputs (see :func:`knn_points` for the contract): (dists, idx).

    The kernel searches, detached from the graph; when a gradient is needed the distances are
    recomputed in torch from the gathered neighbours, so they reach both x and y and double
    backward works. This is the only gradient path of the search: the op itself has no autograd.
    """
    with torch.no_grad():
        dists, idx = ops.knn(x.detach(), y.detach(), x_lengths, y_lengths, K, norm)
    if needs_grad(x, y):
        dtype = dists.dtype
        dists = pair_distances(x.to(dtype), gather_neighbours(y.to(dtype), idx), idx >= 0, norm)
    return dists, idx


def nearest_core(x, y, x_lengths, y_lengths, norm: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """The K = 1 case of :func:`knn_core`: (B, N) distance (squared L2 or L1) from each x point to
    its nearest y point, and that point's index; 0 / -1 on padding and when y is empty."""
    dists, idx = knn_core(x, y, x_lengths, y_lengths, 1, norm)
    return dists[..., 0], idx[..., 0]


def pair_distances(x: torch.Tensor, nn: torch.Tensor, valid: torch.Tensor, norm: int) -> torch.Tensor:
    """Differentiable distance between x (B, N, D) and gathered neighbours nn (B, N, K, D):
    squared Euclidean for norm 2, L1 for norm 1; 0 where ``valid`` is False."""
    # Mask before any arithmetic: a NaN in the padding times a zero gradient is still NaN.
    diff = torch.where(valid.unsqueeze(-1), x.unsqueeze(2) - nn, torch.zeros((), dtype=nn.dtype, device=nn.device))
    return diff.square().sum(-1) if norm == 2 else diff.abs().sum(-1)


# K may exceed y's size (the extra slots are padding, as in PyTorch3D), but the (B, N, K) results
# must fit in memory: more than 2^31 slots (24 GB of distances and indices) is refused up front.
MAX_RESULT_SLOTS = 2**31


def check_result_size(B: int, N: int, K: int) -> None:
    """A ValueError naming K when B x N x K neighbour slots reach 2^31 (int32 indexing in the
    kernels; 24 GiB of results)."""
    if K >= MAX_RESULT_SLOTS or B * N * K >= MAX_RESULT_SLOTS:
        raise ValueError(
            f"K={K} asks for {B} x {N} x {K} = {B * N * K:.3g} neighbour slots ({B * N * K * 12 / 2**30:.3g} GiB), "
            f"at least the {MAX_RESULT_SLOTS} allowed; use a smaller K"
        )


def allocating_results(B: int, N: int, K: int, run):
    """run(), with a failure to allocate the B x N x K results reported as a ValueError naming K
    (a RuntimeError from the allocator says nothing about which argument asked for too much)."""
    try:
        return run()
    except RuntimeError as error:  # torch.OutOfMemoryError on CUDA, "can't allocate memory" on the CPU
        if not isinstance(error, torch.OutOfMemoryError) and "allocate" not in str(error):
            raise
        raise ValueError(
            f"K={K}: the {B} x {N} x {K} neighbour slots ({B * N * K * 12 / 2**30:.3g} GiB) do not fit in memory; "
            f"use a smaller K"
        ) from error


def needs_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def knn_points(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    K: int = 1,
    x_lengths: torch.Tensor | None = None,
    y_lengths: torch.Tensor | None = None,
    norm: int = 2,
    return_nn: bool = False,
    return_sorted: bool = True,
) -> KNN:
    """Exact K nearest neighbours in ``y`` of every point of ``x``.

    For each valid ``x[b, i]`` (``i < x_lengths[b]``) returns the K points ``y[b, j]``,
    ``j < y_lengths[b]``, with the smallest distance, sorted by (distance, j): ties go to the
    smaller index, on every device and every run. Mixed dtypes are promoted (float32 with float64
    gives float64); float32 clouds with coordinates beyond 2^60, or all below 2^-40, are measured in
    float64, where their squared distances neither overflow nor go subnormal.

    Args:
        x: (B, N, D) queries, or (N, D) for a single cloud, or a list of (N_i, D) tensors.
        y: (B, M, D) targets, same forms. Any D; D <= 3 uses the grid fast path.
        K: neighbours per query (>= 1). Clouds with fewer than K points pad with idx -1, dist 0.
        x_lengths, y_lengths: optional (B,) int64 numbers of valid points per cloud.
        norm: 2 for squared Euclidean distances d = sum_d (x_d - y_d)^2 (PyTorch3D's convention),
            1 for L1 distances d = sum_d |x_d - y_d|.
        return_nn: also return the neighbours' coordinates.
        return_sorted: accepted for PyTorch3D compatibility; results are always sorted.

    Every argument after ``y`` is keyword-only: PyTorch3D's ``knn_points(p1, p2, lengths1,
    lengths2, norm, K)`` takes them in another order, so a positional call written for it fails
    with a TypeError instead of silently swapping K and the lengths.

    Returns:
        :class:`KNN` (dists, idx, knn). ``dists`` is differentiable with respect to x and y
        (recomputed in torch from the gathered points, so double backward works); it is float32
        for float16/bfloat16/float32 inputs and float64 for float64 inputs.

    Raises:
        TypeError: non-floating points, non-integer lengths.
        ValueError: bad shapes, D or batch mismatch, devices differ, lengths out of range,
            NaN/Inf among the valid points, K < 1 or B*N*K beyond 2^31 slots, norm not in {1, 2}.
    """
    del return_sorted
    if not isinstance(K, int) or isinstance(K, bool) or K < 1:
        raise ValueError(f"K must be an integer >= 1, got {K!r}")
    _checks.check_choice(norm, (1, 2), "norm")
    checks = _checks.ValueChecks()
    pair = _checks.cloud_pair(x, y, x_lengths, y_lengths, checks)
    check_result_size(pair.x.shape[0], pair.x.shape[1], K)
    xb, xl, yb, yl, unbatched = _checks.measured_pair(pair, checks)
    dists, idx = allocating_results(xb.shape[0], xb.shape[1], K, lambda: knn_core(xb, yb, xl, yl, K, norm))
    nn = gather_neighbours(yb, idx) if return_nn else None
    if unbatched:
        return KNN(dists[0], idx[0], None if nn is None else nn[0])
    return KNN(dists, idx, nn)
