"""PyTorch3D's ``knn_points`` and ``knn_gather`` (``pytorch3d/ops/knn.py``, kernels
``pytorch3d/csrc/knn/knn_cpu.cpp`` and ``knn.cu``); see the package docstring."""

from __future__ import annotations

from typing import NamedTuple

import torch

from ... import _checks
from ...knn import allocating_results, check_result_size, knn_core


class _KNN(NamedTuple):
    """PyTorch3D's ``_KNN = namedtuple("KNN", "dists idx knn")``.

    dists: (N, P1, K) squared distances (L1 for norm=1), ascending, 0 on padding.
    idx: (N, P1, K) int64 indices into p2, 0 on padding (PyTorch3D's kernels fill with zeros).
    knn: (N, P1, K, D) ``knn_gather(p2, idx, lengths2)`` if return_nn, else None.
    """

    dists: torch.Tensor
    idx: torch.Tensor
    knn: torch.Tensor | None


def _check_batched(points, name: str) -> torch.Tensor:
    """``points`` as a (N, P, D) floating tensor; PyTorch3D takes no other form."""
    _checks.check_float_tensor(points, name)
    if points.ndim != 3:
        raise ValueError(f"{name} must have shape (N, P, D), got {tuple(points.shape)}")
    return points


def _check_lengths(lengths, points: torch.Tensor, name: str, checks: _checks.ValueChecks) -> None:
    """Type, shape and device of optional (N,) lengths; their range [0, P] is queued on checks."""
    if lengths is None:
        return
    if not isinstance(lengths, torch.Tensor) or lengths.is_floating_point() or lengths.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of shape ({points.shape[0]},)")
    if lengths.shape != (points.shape[0],):
        raise ValueError(f"{name} must have shape ({points.shape[0]},), got {tuple(lengths.shape)}")
    if lengths.device != points.device:
        raise ValueError(f"{name} is on {lengths.device} but its points are on {points.device}")
    checks.add(((lengths < 0) | (lengths > points.shape[1])).any(), f"{name} values must lie in [0, {points.shape[1]}]")


def knn_points(
    p1: torch.Tensor,
    p2: torch.Tensor,
    lengths1: torch.Tensor | None = None,
    lengths2: torch.Tensor | None = None,
    norm: int = 2,
    K: int = 1,
    version: int = -1,
    return_nn: bool = False,
    return_sorted: bool = True,
) -> _KNN:
    """``pytorch3d.ops.knn_points``: the K nearest points of p2 to each point of p1, per cloud.

    ``p1`` (N, P1, D), ``p2`` (N, P2, D); ``lengths1``/``lengths2`` optional (N,) valid points.
    dists[n, i, k] = sum_d (p1[n, i, d] - p2[n, j, d])^2 (norm=2, squared) or sum_d |...| (norm=1)
    for the k-th nearest j < lengths2[n], ascending; ties go to the smaller index. Rows
    i >= lengths1[n] and slots k >= lengths2[n] hold dists 0 and idx 0, as PyTorch3D's kernels
    leave them. ``knn`` (if ``return_nn``) is ``knn_gather(p2, idx, lengths2)``: with PyTorch3D's
    rule, rows past lengths1 then hold p2[n, 0] in their slots k < lengths2[n].

    ``version`` selected a CUDA kernel and is ignored; ``return_sorted=False`` allowed an unsorted
    result, and a sorted one is returned. dists are float32 for float16/bfloat16/float32 inputs,
    float64 for float64 (PyTorch3D: float32 only on the CPU). Gradients reach p1 and p2, and double
    backward works (PyTorch3D's backward is once-differentiable). For norm=1 the gradient of
    |p1_d - p2_d| at p1_d == p2_d is 0 (PyTorch3D: -1 to p1, +1 to p2).

    The native equivalent is ``pointmetrics.knn_points(p1, p2, K=K, ...)``, whose padding is -1.
    """
    del version, return_sorted
    _check_batched(p1, "p1")
    _check_batched(p2, "p2")
    if not (norm == 1 or norm == 2):
        raise ValueError(f"Support for 1 or 2 norm. (norm={norm!r})")
    if not isinstance(K, int) or isinstance(K, bool) or K < 1:
        raise ValueError(f"K must be an integer >= 1, got {K!r}")
    checks = _checks.ValueChecks()
    _check_lengths(lengths1, p1, "lengths1", checks)
    _check_lengths(lengths2, p2, "lengths2", checks)
    pair = _checks.cloud_pair(p1, p2, lengths1, lengths2, checks, ("p1", "p2"))
    check_result_size(pair.x.shape[0], pair.x.shape[1], K)
    x, xl, y, yl, _ = _checks.measured_pair(pair, checks)
    dists, idx = allocating_results(x.shape[0], x.shape[1], K, lambda: knn_core(x, y, xl, yl, K, norm))
    idx = idx.clamp(min=0)  # PyTorch3D pads with index 0
    nn = _gather_masked(p2, idx, yl) if return_nn else None
    return _KNN(dists, idx, nn)


def _gather_masked(x: torch.Tensor, idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """x[n, idx[n, l, k]], zero where k >= lengths[n] or idx < 0; trusted int64 inputs."""
    N, L, K = idx.shape
    U = x.shape[2]
    if x.shape[1] == 0:  # nothing to gather from (PyTorch3D's gather would fail): all zeros
        return x.new_zeros((N, L, K, U))
    out = x.gather(1, idx.clamp(min=0).reshape(N, L * K, 1).expand(N, L * K, U)).reshape(N, L, K, U)
    keep = (torch.arange(K, device=idx.device)[None, None, :] < lengths.view(N, 1, 1)) & (idx >= 0)
    return torch.where(keep.unsqueeze(-1), out, torch.zeros((), dtype=out.dtype, device=out.device))


def knn_gather(x: torch.Tensor, idx: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """``pytorch3d.ops.knn_gather``: x_out[n, l, k] = x[n, idx[n, l, k]], (N, L, K, U).

    ``x`` (N, M, U) features, ``idx`` (N, L, K) integer indices in [0, M - 1], ``lengths`` optional
    (N,) in [0, M] (default M). PyTorch3D's mask is by SLOT, not by index: x_out[n, l, k] = 0 where
    k >= lengths[n], whatever idx holds. Differentiable with respect to x. Beyond PyTorch3D, an
    index -1 (pointmetrics' padding) also gives 0, and an empty x (M = 0) gives zeros.
    """
    _checks.check_float_tensor(x, "x")
    if not isinstance(idx, torch.Tensor) or idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool:
        raise TypeError(f"idx must be an integer tensor, got {getattr(idx, 'dtype', type(idx).__name__)}")
    if x.ndim != 3 or idx.ndim != 3:
        raise ValueError(f"x must be (N, M, U) and idx (N, L, K), got {tuple(x.shape)} and {tuple(idx.shape)}")
    if x.shape[0] != idx.shape[0]:
        raise ValueError("x and idx must have same batch dimension.")
    if idx.device != x.device:
        raise ValueError(f"idx is on {idx.device} but x is on {x.device}")
    checks = _checks.ValueChecks()
    M = x.shape[1]
    if idx.numel():
        checks.add(((idx < -1) | (idx >= M)).any(), f"idx values must lie in [0, {M - 1}] (or -1)")
    _check_lengths(lengths, x, "lengths", checks)
    checks.run()
    if lengths is None:
        lengths = torch.full((x.shape[0],), M, dtype=torch.int64, device=x.device)
    return _gather_masked(x, idx.to(torch.int64), lengths.to(torch.int64))
