"""The outputs of the CUDA Chamfer kernel that PoinTr's ``extensions/chamfer_dist`` and
ChamferDistancePytorch's ``chamfer_3DDist`` both descend from, on pointmetrics' exact search:
squared distances and int32 indices of the nearest neighbours, with index 0 (the kernel's
untouched, zero-initialised output) where the other cloud is empty."""

from __future__ import annotations

import torch

from .. import _checks
from ..knn import nearest_core


def kernel_index(idx: torch.Tensor) -> torch.Tensor:
    """pointmetrics' indices as the kernel writes them: int32, and 0 instead of -1 (no neighbour)."""
    return idx.clamp(min=0).to(torch.int32)


def kernel_nearest(x, y, names: tuple[str, str], both: bool = True):
    """(dist1, dist2, idx1, idx2): squared distances and int32 indices of the nearest neighbours,
    x -> y and (if ``both``) y -> x; dist2 and idx2 are None otherwise. Differentiable in the
    distances, with respect to both clouds."""
    xb, xl, yb, yl, _ = _checks.validated_pair(x, y, names=names)
    d1, i1 = nearest_core(xb, yb, xl, yl)
    if not both:
        return d1, None, kernel_index(i1), None
    d2, i2 = nearest_core(yb, xb, yl, xl)
    return d1, d2, kernel_index(i1), kernel_index(i2)
