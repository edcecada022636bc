"""Point-cloud losses and metrics built on the nearest-neighbour search: Chamfer (PyTorch3D's loss
and the CD-L1 / CD-L2 benchmark conventions), Hausdorff and F-score.

Every metric here is defined once, as a method of :class:`Correspondences` (one search in each
direction serves all of them); the module-level functions are thin wrappers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Union

import torch
import torch.nn.functional as F

from . import _checks
from ._reduce import mean_over_points, reduce_batch, safe_sqrt, valid_mask, warn_if_empty
from .knn import gather_neighbours, nearest_core

Thresholds = Union[float, Sequence[float], torch.Tensor]


def _at_least_one_column(sq: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pads (B, 0) per-point results of empty clouds with one invalid column (0, -1), so that
    reductions over points are defined."""
    if sq.shape[1] > 0:
        return sq, index
    return sq.new_zeros(sq.shape[0], 1), index.new_full((index.shape[0], 1), -1)


class Hausdorff(NamedTuple):
    """distance: (B,) Euclidean Hausdorff distance. x_index, y_index: (B,) the pair of points that
    realises it (x[b, x_index[b]] and y[b, y_index[b]]); -1 when a cloud is empty."""

    distance: torch.Tensor
    x_index: torch.Tensor
    y_index: torch.Tensor


class FScore(NamedTuple):
    """fscore, precision, recall: (B, T) for T thresholds ((B,) for a single float threshold)."""

    fscore: torch.Tensor
    precision: torch.Tensor
    recall: torch.Tensor
    thresholds: torch.Tensor


@dataclass
class Correspondences:
    """Nearest neighbours in both directions between clouds ``x`` (B, N, D) and ``y`` (B, M, D).

    Attributes:
        sq_x_to_y: (B, N) squared Euclidean distance from each x point to its nearest y point.
        x_to_y_index: (B, N) index into y of that point.
        sq_y_to_x, y_to_x_index: (B, M) the same from y to x.
        x_lengths, y_lengths: (B,) valid points per cloud. Padding has distance 0 and index -1.
        unbatched: the inputs were single (N, D) clouds; per-cloud results of the methods then drop
            the batch dimension. The per-point attributes above are always batched.
        dim: D, the points' dimension (normals have the points' shape).

    Distances are differentiable with respect to x and y.
    """

    sq_x_to_y: torch.Tensor
    x_to_y_index: torch.Tensor
    sq_y_to_x: torch.Tensor
    y_to_x_index: torch.Tensor
    x_lengths: torch.Tensor
    y_lengths: torch.Tensor
    unbatched: bool = False
    dim: int = 3

    @property
    def x_to_y(self) -> torch.Tensor:
        """(B, N) Euclidean (unsquared) distance from each x point to y."""
        return safe_sqrt(self.sq_x_to_y)

    @property
    def y_to_x(self) -> torch.Tensor:
        """(B, M) Euclidean (unsquared) distance from each y point to x."""
        return safe_sqrt(self.sq_y_to_x)

    def _per_cloud(self, value: torch.Tensor) -> torch.Tensor:
        return value[0] if self.unbatched else value

    def chamfer(self, *, squared: bool, halve: bool, reduction: str | None = "mean") -> torch.Tensor:
        """Chamfer distance  CD = s * (mean_i d(x_i, Y)^p + mean_j d(y_j, X)^p).

        d is the Euclidean distance, p = 2 if ``squared`` else 1, s = 1/2 if ``halve`` else 1:
          - CD-L1 of PCN and PoinTr: squared=False, halve=True;
          - CD-L2 of PoinTr and GRNet: squared=True, halve=False;
          - CD-L2 of Occupancy Networks: squared=True, halve=True.
        ``reduction``: "mean" or "sum" over the batch, or None for (B,) values. An empty cloud
        gives NaN (with a warning).
        """
        _checks.check_choice(reduction, ("mean", "sum", None), "reduction")
        warn_if_empty("chamfer", self.x_lengths, self.y_lengths)
        dx = self.sq_x_to_y if squared else self.x_to_y
        dy = self.sq_y_to_x if squared else self.y_to_x
        per_cloud = mean_over_points(dx, self.x_lengths) + mean_over_points(dy, self.y_lengths)
        if halve:
            per_cloud = 0.5 * per_cloud
        return reduce_batch(per_cloud, reduction, self.unbatched)

    def hausdorff(self, direction: str = "symmetric") -> Hausdorff:
        """Hausdorff distance  H = max(max_i d(x_i, Y), max_j d(y_j, X))  (Euclidean, unsquared).

        ``direction``: "symmetric", "x_to_y" (max_i d(x_i, Y) only) or "y_to_x". Returns the
        distance per cloud and the realising pair of indices. Empty cloud: NaN and -1 (warning).
        """
        _checks.check_choice(direction, ("symmetric", "x_to_y", "y_to_x"), "direction")
        warn_if_empty("hausdorff_distance", self.x_lengths, self.y_lengths)
        sq_x, index_x = _at_least_one_column(self.sq_x_to_y, self.x_to_y_index)
        sq_y, index_y = _at_least_one_column(self.sq_y_to_x, self.y_to_x_index)
        valid_x = valid_mask(self.x_lengths, sq_x.shape[1])
        valid_y = valid_mask(self.y_lengths, sq_y.shape[1])
        # argmax on squared distances (monotone), sqrt taken on the winner only.
        sx, ix = sq_x.masked_fill(~valid_x, -1.0).max(1, keepdim=True)
        sy, iy = sq_y.masked_fill(~valid_y, -1.0).max(1, keepdim=True)
        pair_x = (ix[:, 0], index_x.gather(1, ix)[:, 0])
        pair_y = (index_y.gather(1, iy)[:, 0], iy[:, 0])
        if direction == "x_to_y":
            use_x = torch.ones_like(sx[:, 0], dtype=torch.bool)
        elif direction == "y_to_x":
            use_x = torch.zeros_like(sx[:, 0], dtype=torch.bool)
        else:
            use_x = sx[:, 0] >= sy[:, 0]
        sq = torch.where(use_x, sq_x.gather(1, ix)[:, 0], sq_y.gather(1, iy)[:, 0])
        empty = (self.x_lengths == 0) | (self.y_lengths == 0)
        distance = torch.where(empty, torch.nan, safe_sqrt(sq.clamp(min=0)))
        xi = torch.where(empty, -1, torch.where(use_x, pair_x[0], pair_y[0]))
        yi = torch.where(empty, -1, torch.where(use_x, pair_x[1], pair_y[1]))
        return Hausdorff(self._per_cloud(distance), self._per_cloud(xi), self._per_cloud(yi))

    def fscore(self, thresholds: Thresholds) -> FScore:
        """F-score at distance thresholds tau, with x the prediction and y the ground truth.

        precision(tau) = |{i : d(x_i, Y) < tau}| / |X|,  recall(tau) = |{j : d(y_j, X) < tau}| / |Y|,
        F = 2 P R / (P + R), and F = 0 when P + R = 0 (Tanks and Temples; strict "<"). Not
        differentiable. Empty cloud: NaN (warning).
        """
        scalar = isinstance(thresholds, (int, float))
        tau = torch.as_tensor(thresholds, dtype=self.sq_x_to_y.dtype, device=self.sq_x_to_y.device).reshape(-1)
        if tau.numel() == 0 or bool((tau <= 0).any()) or not bool(torch.isfinite(tau).all()):
            raise ValueError(f"thresholds must be positive finite distances, got {thresholds!r}")
        warn_if_empty("fscore", self.x_lengths, self.y_lengths)
        with torch.no_grad():
            valid_x = valid_mask(self.x_lengths, self.sq_x_to_y.shape[1])
            valid_y = valid_mask(self.y_lengths, self.sq_y_to_x.shape[1])
            hit_x = (self.sq_x_to_y.sqrt().unsqueeze(-1) < tau) & valid_x.unsqueeze(-1)
            hit_y = (self.sq_y_to_x.sqrt().unsqueeze(-1) < tau) & valid_y.unsqueeze(-1)
            precision = hit_x.sum(1).to(tau.dtype) / self.x_lengths.unsqueeze(-1)
            recall = hit_y.sum(1).to(tau.dtype) / self.y_lengths.unsqueeze(-1)
            denom = precision + recall
            f = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-30), 0.0)
            empty = ((self.x_lengths == 0) | (self.y_lengths == 0)).unsqueeze(-1)
            f, precision, recall = (torch.where(empty, torch.nan, t) for t in (f, precision, recall))
        if scalar:
            f, precision, recall = f[:, 0], precision[:, 0], recall[:, 0]
        return FScore(self._per_cloud(f), self._per_cloud(precision), self._per_cloud(recall), tau)

    def normal_consistency(self, x_normals: torch.Tensor, y_normals: torch.Tensor) -> torch.Tensor:
        """Normal consistency of Occupancy Networks (im2mesh/eval.py, distance_p2p):
        NC = 1/2 (mean_i |n(x_i) . n(NN_Y(x_i))| + mean_j |n(y_j) . n(NN_X(y_j))|), normals normalised
        first (a zero normal counts as 0). ``x_normals``/``y_normals`` have the points' shapes.
        Per cloud; NaN (warning) for an empty cloud. Differentiable with respect to the normals.
        """
        xn = _checks.check_normals(x_normals, (*self.x_to_y_index.shape, self.dim), self.sq_x_to_y.device, "x_normals")
        yn = _checks.check_normals(y_normals, (*self.y_to_x_index.shape, self.dim), self.sq_y_to_x.device, "y_normals")
        warn_if_empty("normal_consistency", self.x_lengths, self.y_lengths)
        ax = mean_over_points(_normal_agreement(xn, yn, self.x_to_y_index), self.x_lengths)
        ay = mean_over_points(_normal_agreement(yn, xn, self.y_to_x_index), self.y_lengths)
        return self._per_cloud(0.5 * (ax + ay))


def _normal_agreement(normals, other, index):
    """|cos| between each normal and the normal of its nearest point in the other cloud."""
    # In float32 at least: eps=1e-12 underflows to 0 in half precision, so a zero normal gave 0/0.
    dtype = torch.promote_types(torch.promote_types(normals.dtype, other.dtype), torch.float32)
    near = gather_neighbours(other.to(dtype), index.unsqueeze(-1))[:, :, 0]
    return (F.normalize(normals.to(dtype), dim=-1, eps=1e-12) * F.normalize(near, dim=-1, eps=1e-12)).sum(-1).abs()


def correspondences(
    x: _checks.PointsLike,
    y: _checks.PointsLike,
    x_lengths: torch.Tensor | None = None,
    y_lengths: torch.Tensor | None = None,
) -> Correspondences:
    """Nearest neighbour of every point in the other cloud, both directions, in one call.

    ``x`` and ``y``: (B, N, D) / (B, M, D) tensors with optional lengths, single (N, D) clouds, or
    lists of (N_i, D) tensors. Use the result to compute several metrics from one search.
    """
    return correspondences_core(_checks.validated_pair(x, y, x_lengths, y_lengths))


def correspondences_core(pair: _checks.Pair) -> Correspondences:
    """:func:`correspondences` of a validated pair: one nearest-neighbour search each way."""
    xb, xl, yb, yl, unbatched = pair
    dx, ix = nearest_core(xb, yb, xl, yl)
    dy, iy = nearest_core(yb, xb, yl, xl)
    return Correspondences(dx, ix, dy, iy, xl, yl, unbatched, xb.shape[2])


def chamfer(x, y, *, squared: bool, halve: bool, x_lengths=None, y_lengths=None, reduction: str | None = "mean"):
    """Chamfer distance with an explicit convention; see :meth:`Correspondences.chamfer`."""
    return correspondences(x, y, x_lengths, y_lengths).chamfer(squared=squared, halve=halve, reduction=reduction)


def chamfer_l1(x, y, x_lengths=None, y_lengths=None, reduction: str | None = "mean") -> torch.Tensor:
    """CD-L1 of PCN / PoinTr:  1/2 (mean_i ||x_i - NN_Y(x_i)|| + mean_j ||y_j - NN_X(y_j)||), unsquared."""
    return chamfer(x, y, squared=False, halve=True, x_lengths=x_lengths, y_lengths=y_lengths, reduction=reduction)


def chamfer_l2(x, y, x_lengths=None, y_lengths=None, reduction: str | None = "mean") -> torch.Tensor:
    """CD-L2 of PoinTr / GRNet:  mean_i ||x_i - NN_Y(x_i)||^2 + mean_j ||y_j - NN_X(y_j)||^2 (no 1/2)."""
    return chamfer(x, y, squared=True, halve=False, x_lengths=x_lengths, y_lengths=y_lengths, reduction=reduction)


def hausdorff_distance(x, y, x_lengths=None, y_lengths=None, direction: str = "symmetric") -> Hausdorff:
    """Hausdorff distance and the realising pair; see :meth:`Correspondences.hausdorff`."""
    return correspondences(x, y, x_lengths, y_lengths).hausdorff(direction)


def fscore(x, y, thresholds: Thresholds, x_lengths=None, y_lengths=None) -> FScore:
    """Precision, recall and F-score of prediction ``x`` against ground truth ``y`` at each
    threshold; see :meth:`Correspondences.fscore`."""
    return correspondences(x, y, x_lengths, y_lengths).fscore(thresholds)


def normal_consistency(x, x_normals, y, y_normals, x_lengths=None, y_lengths=None) -> torch.Tensor:
    """Normal consistency (Occupancy Networks); see :meth:`Correspondences.normal_consistency`."""
    return correspondences(x, y, x_lengths, y_lengths).normal_consistency(x_normals, y_normals)


def _chamfer_one_direction(x, y, xl, yl, xn, yn, weights, point_reduction, norm, abs_cosine):
    """PyTorch3D's single-direction Chamfer terms (distances and normal terms) for x -> y."""
    d, idx = nearest_core(x, y, xl, yl, norm)
    valid = valid_mask(xl, x.shape[1])
    scale = 1.0 if weights is None else weights.to(d.dtype)[:, None]
    zero = torch.zeros((), dtype=d.dtype, device=d.device)
    d = torch.where(valid, d * scale, zero)  # where, not a product: padding may hold NaN
    dn = None
    if xn is not None:
        # Normal terms in the distances' dtype (float32 at least): half-precision norms and eps underflow.
        near = gather_neighbours(yn.to(d.dtype), idx.unsqueeze(-1))[:, :, 0]
        own = torch.where(valid.unsqueeze(-1), xn.to(d.dtype), torch.zeros((), dtype=d.dtype, device=xn.device))
        cos = F.cosine_similarity(own, near, dim=2, eps=1e-6)
        dn = torch.where(valid, (1 - (cos.abs() if abs_cosine else cos)).to(d.dtype) * scale, zero)
    if point_reduction == "max":  # an empty x contributes 0, as an empty sum or mean does
        return (d.max(1).values if d.shape[1] > 0 else d.sum(1)), None  # sum: zeros that keep the graph
    if point_reduction is None:
        return d, dn
    d = d.sum(1)
    dn = None if dn is None else dn.sum(1)
    if point_reduction == "mean":
        count = xl.clamp(min=1).to(d.dtype)
        d = d / count
        dn = None if dn is None else dn / count
    return d, dn


def chamfer_distance(
    x,
    y,
    x_lengths: torch.Tensor | None = None,
    y_lengths: torch.Tensor | None = None,
    x_normals: torch.Tensor | None = None,
    y_normals: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    batch_reduction: str | None = "mean",
    point_reduction: str | None = "mean",
    norm: int = 2,
    single_directional: bool = False,
    abs_cosine: bool = True,
):
    """Chamfer loss with PyTorch3D's arguments and semantics (``pytorch3d.loss.chamfer_distance``).

    Per point, d_i = ||x_i - NN_Y(x_i)||_2^2 for ``norm=2`` (squared) or ||x_i - NN_Y(x_i)||_1 for
    ``norm=1``; with normals, n_i = 1 - |cos(n_x_i, n_NN)| (``abs_cosine``) or 1 - cos. Points are
    reduced per cloud by ``point_reduction`` ("mean" over x_lengths, "sum", "max", or None for
    per-point values), weighted per cloud by ``weights``, reduced over the batch by
    ``batch_reduction`` ("mean" divides by the sum of weights, or B; "sum"; None), and the two
    directions are added ("max": their maximum; None: returned as a pair).
    Set ``single_directional`` for the x -> y term only.

    For the benchmark conventions (unsquared CD-L1, CD-L2 without the 1/2) use :func:`chamfer_l1`,
    :func:`chamfer_l2` or :func:`chamfer`.

    Returns:
        (loss, loss_normals); loss_normals is None without normals. With ``point_reduction=None``
        each is a pair of (B, N) and (B, M) tensors (or a single (B, N) tensor if single_directional).
        As in PyTorch3D, a point whose other cloud is empty contributes 0 to the distance term and
        1 to the normal term (its normal is compared with a zero vector).
    """
    if batch_reduction is not None:
        _checks.check_choice(batch_reduction, ("mean", "sum"), "batch_reduction")
    _checks.check_choice(point_reduction, ("mean", "sum", "max", None), "point_reduction")
    if point_reduction is None and batch_reduction is not None:
        raise ValueError("batch_reduction must be None when point_reduction is None")
    _checks.check_choice(norm, (1, 2), "norm")
    if point_reduction == "max" and (x_normals is not None or y_normals is not None):
        raise ValueError('x_normals and y_normals must be None when point_reduction is "max"')
    checks = _checks.ValueChecks()
    pair = _checks.cloud_pair(x, y, x_lengths, y_lengths, checks)
    xb, yb = pair.x, pair.y
    xn = _checks.check_normals(x_normals, xb.shape, xb.device, "x_normals")
    yn = _checks.check_normals(y_normals, yb.shape, yb.device, "y_normals")
    if (xn is None) != (yn is None):
        xn = yn = None  # PyTorch3D ignores normals unless both are given
    if weights is not None:
        if not isinstance(weights, torch.Tensor) or not weights.is_floating_point():
            raise TypeError("weights must be a floating point tensor of shape (B,)")
        if weights.shape != (xb.shape[0],):
            raise ValueError(f"weights must have shape ({xb.shape[0]},), got {tuple(weights.shape)}")
        if weights.device != xb.device:
            raise ValueError(f"weights is on {weights.device} but x is on {xb.device}")
        checks.add((weights < 0).any() | ~torch.isfinite(weights).all(), "weights must be finite and non-negative")
    xb, xl, yb, yl, _ = _checks.measured_pair(pair, checks)

    args = (weights, point_reduction, norm, abs_cosine)
    cx, nx = _chamfer_one_direction(xb, yb, xl, yl, xn, yn, *args)
    if single_directional:
        loss, loss_n = cx, nx
    else:
        cy, ny = _chamfer_one_direction(yb, xb, yl, xl, yn, xn, *args)
        if point_reduction == "max":
            loss, loss_n = torch.maximum(cx, cy), None
        elif point_reduction is None:
            return (cx, cy), (None if nx is None else (nx, ny))
        else:
            loss, loss_n = cx + cy, None if nx is None else nx + ny
    if point_reduction is None:
        return loss, loss_n
    if batch_reduction is not None:
        loss = loss.sum()
        loss_n = None if loss_n is None else loss_n.sum()
        if batch_reduction == "mean":
            if weights is None:
                div = torch.tensor(float(max(xb.shape[0], 1)), dtype=loss.dtype, device=loss.device)
            else:
                wsum = weights.sum().to(loss.dtype)
                div = torch.where(wsum == 0, torch.ones_like(wsum), wsum)
            loss = loss / div
            loss_n = None if loss_n is None else loss_n / div
    return loss, loss_n
