"""A metric accumulator for validation loops, synchronised across ranks like torchmetrics.

    metric = pm.PointCloudMetrics(taus=[0.01])
    for pred, gt in loader:
        metric.update(pred, gt)           # (B, N, 3) batches, lists or single clouds
    values = metric.compute()             # means over every cloud seen, by every rank
    metric.reset()

Sums and counts are kept in float64 and all-reduced (torch.distributed SUM) in ``compute`` when a
process group is initialised, so a distributed loop gets the same means as one process.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

from . import _checks
from .pointcloud import correspondences_core


class PointCloudMetrics:
    """Running means of CD-L1, CD-L2 (PoinTr convention, no 1/2), Hausdorff and F-score@tau per cloud
    pair. Clouds with an empty side (NaN metrics) are counted in ``skipped``, not in the means."""

    def __init__(self, taus: Sequence[float] = (0.01,)) -> None:
        taus = [float(t) for t in taus]
        if not taus or any(not t > 0 for t in taus):
            raise ValueError(f"taus must be positive thresholds, got {taus}")
        self.taus = taus
        self.names = ["CD-L1", "CD-L2", "Hausdorff"] + [f"F-score@{t:g}" for t in taus]
        self.reset()

    def reset(self) -> None:
        """Forgets every cloud seen so far (on this rank); returns None."""
        self._sums = torch.zeros(len(self.names), dtype=torch.float64)
        self._count = torch.zeros((), dtype=torch.float64)
        self._skipped = torch.zeros((), dtype=torch.float64)

    @torch.no_grad()
    def update(self, pred, gt, pred_lengths=None, gt_lengths=None) -> None:
        """Adds the metrics of each (pred, gt) cloud pair to the running sums; returns None.

        ``pred`` and ``gt`` take any input of :func:`correspondences`: (B, N, 3) batches with optional
        lengths, lists of (N_i, 3) clouds, or single (N, 3) clouds. A pair with an empty side is
        counted in ``skipped`` instead of the means."""
        c = correspondences_core(_checks.validated_pair(pred, gt, pred_lengths, gt_lengths, ("pred", "gt")))
        with warnings.catch_warnings():  # empty clouds are counted in `skipped` instead
            warnings.simplefilter("ignore", RuntimeWarning)
            per_cloud = [c.chamfer(squared=False, halve=True, reduction=None),
                         c.chamfer(squared=True, halve=False, reduction=None),
                         c.hausdorff().distance]
            f = c.fscore(self.taus).fscore
        per_cloud += [f[..., k] for k in range(len(self.taus))]
        values = torch.stack([v.reshape(-1).double().cpu() for v in per_cloud], dim=1)  # (B, metrics)
        valid = torch.isfinite(values).all(1)
        self._sums += values[valid].sum(0)
        self._count += valid.sum()
        self._skipped += (~valid).sum()

    def compute(self) -> dict:
        """The means over every cloud pair seen since the last reset, by every rank when a process
        group is initialised (an all-reduce, so every rank must call it): a dict with one float per
        metric name ("CD-L1", "CD-L2", "Hausdorff", "F-score@tau"; NaN if no pair was counted),
        "clouds" (pairs averaged) and "skipped" (pairs with an empty side)."""
        state = torch.cat([self._sums, self._count[None], self._skipped[None]])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(state, op=torch.distributed.ReduceOp.SUM)
        count = float(state[-2])
        out = {n: float(state[i]) / count if count else float("nan") for i, n in enumerate(self.names)}
        out["clouds"] = int(count)
        out["skipped"] = int(state[-1])
        return out
