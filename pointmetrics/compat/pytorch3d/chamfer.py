"""PyTorch3D's ``chamfer_distance`` (``pytorch3d/loss/chamfer.py``); see the package docstring."""

from __future__ import annotations

import torch

from ... import _checks, pointcloud


def _handle_pointcloud_input(points, lengths, normals, name: str):
    """PyTorch3D's ``_handle_pointcloud_input``: a Pointclouds-like object gives its padded
    points, its lengths and its padded normals (the arguments are ignored); a tensor must be
    (N, P, D)."""
    if hasattr(points, "points_padded") and hasattr(points, "num_points_per_cloud"):
        X = points.points_padded()
        lengths = points.num_points_per_cloud()
        normals = points.normals_padded() if hasattr(points, "normals_padded") else None
        return X, lengths, normals
    if not torch.is_tensor(points):
        raise ValueError(
            f"{name}: The input pointclouds should be either Pointclouds objects or torch.Tensor of shape "
            f"(minibatch, num_points, 3), got {type(points).__name__}"
        )
    if points.ndim != 3:
        raise ValueError(f"{name}: Expected points to be of shape (N, P, D), got {tuple(points.shape)}")
    bad_lengths = lengths is not None and (not torch.is_tensor(lengths) or lengths.shape != (points.shape[0],))
    if bad_lengths:
        raise ValueError(f"{name}_lengths: Expected lengths to be of shape (N,) with N = {points.shape[0]}")
    if normals is not None and (not torch.is_tensor(normals) or normals.ndim != 3):
        raise ValueError(f"{name}_normals: Expected normals to be of shape (N, P, 3)")
    return points, lengths, normals


def _zero_weight_terms(x, x_lengths, weights):
    """What PyTorch3D's single direction returns when the weights sum to 0:
    ``(x.sum((1, 2)) * weights.view(N, 1)) * 0.0``, an (N, N) zero tensor kept in the graph, for
    the distance AND the normal term (even without normals). The padding is masked first, so that
    a NaN there does not turn the zeros into NaN."""
    N, P = x.shape[:2]
    valid = torch.arange(P, device=x.device)[None, :, None] < x_lengths.view(N, 1, 1)
    total = torch.where(valid, x, torch.zeros((), dtype=x.dtype, device=x.device)).sum((1, 2))
    zeros = (total * weights.view(N, 1)) * 0.0
    return zeros, zeros


def chamfer_distance(
    x,
    y,
    x_lengths=None,
    y_lengths=None,
    x_normals=None,
    y_normals=None,
    weights=None,
    batch_reduction: str | None = "mean",
    point_reduction: str | None = "mean",
    norm: int = 2,
    single_directional: bool = False,
    abs_cosine: bool = True,
):
    """``pytorch3d.loss.chamfer_distance``: (loss, loss_normals).

    ``x``, ``y``: (N, P, D) tensors (with optional ``x_lengths``/``y_lengths`` and normals) or
    Pointclouds-like objects (their ``points_padded()``, ``num_points_per_cloud()`` and
    ``normals_padded()`` replace the lengths and normals arguments).

    Per point d_i = ||x_i - NN_y(x_i)||^2 (norm=2, SQUARED) or ||.||_1 (norm=1), and with both
    normals n_i = 1 - |cos(n_x_i, n_NN)| (``abs_cosine``; else 1 - cos); both times the cloud's
    weight. point_reduction "mean" (over x_lengths, clamped to 1), "sum", "max" (no normals) or
    None (per point); batch_reduction "mean" (divided by N, or by the weights' sum), "sum" or None.
    The two directions are added ("max": their maximum; point_reduction None: returned as a pair)
    unless ``single_directional``. An empty cloud contributes 0 to the distance term and, where
    the other cloud is empty, 1 to the normal term.

    Reproduced corner case (PyTorch3D's test_incorrect_weights checks it): when the weights sum
    to 0, both terms are zeros of shape (N, N) before the batch reduction, so loss_normals is 0,
    not None, even without normals. Gradients reach both clouds and both normals. The native
    equivalent is ``pointmetrics.chamfer_distance`` (tensors, same semantics).
    """
    if batch_reduction is not None and batch_reduction not in ("mean", "sum"):
        raise ValueError(f'batch_reduction must be one of ["mean", "sum"] or None, got {batch_reduction!r}')
    if point_reduction is not None and point_reduction not in ("mean", "sum", "max"):
        raise ValueError(f'point_reduction must be one of ["mean", "sum", "max"] or None, got {point_reduction!r}')
    if point_reduction is None and batch_reduction is not None:
        raise ValueError("Batch reduction must be None if point_reduction is None")
    if not (norm == 1 or norm == 2):
        raise ValueError(f"Support for 1 or 2 norm. (norm={norm!r})")
    if point_reduction == "max" and (x_normals is not None or y_normals is not None):
        raise ValueError('Normals must be None if point_reduction is "max"')
    x, x_lengths, x_normals = _handle_pointcloud_input(x, x_lengths, x_normals, "x")
    y, y_lengths, y_normals = _handle_pointcloud_input(y, y_lengths, y_normals, "y")
    if weights is not None:
        _checks.check_float_tensor(weights, "weights")
        if weights.ndim != 1 or weights.shape[0] != x.shape[0]:
            raise ValueError(f"weights must be of shape (N,) with N = {x.shape[0]}, got {tuple(weights.shape)}")
        if weights.device != x.device:
            raise ValueError(f"weights is on {weights.device} but x is on {x.device}")
        if not bool((weights >= 0).all()):
            raise ValueError("weights cannot be negative.")
        if bool(weights.sum() == 0):
            return _zero_weight_result(x, y, x_lengths, y_lengths, weights, batch_reduction, point_reduction,
                                       single_directional)
    return pointcloud.chamfer_distance(x, y, x_lengths, y_lengths, x_normals, y_normals, weights, batch_reduction,
                                      point_reduction, norm, single_directional, abs_cosine)


def _zero_weight_result(x, y, x_lengths, y_lengths, weights, batch_reduction, point_reduction, single_directional):
    """PyTorch3D's result for weights summing to 0 (see :func:`chamfer_distance`)."""
    pair = _checks.validated_pair(x, y, x_lengths, y_lengths)  # the same input checks as any call
    cx, nx = _zero_weight_terms(pair.x, pair.x_lengths, weights)
    if single_directional:
        loss, loss_n = cx, nx
    else:
        cy, ny = _zero_weight_terms(pair.y, pair.y_lengths, weights)
        if point_reduction == "max":
            loss, loss_n = torch.maximum(cx, cy), None
        elif point_reduction is None:
            loss, loss_n = (cx, cy), (nx, ny)
        else:
            loss, loss_n = cx + cy, nx + ny
    if batch_reduction is None:
        return loss, loss_n
    return loss.sum(), None if loss_n is None else loss_n.sum()  # "mean" divides by 1 here
