"""Earth Mover's Distance between point sets by the eps-scaling auction algorithm."""

from __future__ import annotations

from typing import NamedTuple

import torch

from . import _checks
from ._ops import ops
from ._reduce import compute_dtype, safe_sqrt, warn_if_empty
from .knn import gather_neighbours


class EMD(NamedTuple):
    """Result of :func:`earth_movers_distance`; per cloud, (B,) or scalars for single clouds.

    distance: mean transport cost per matched pair, differentiable with respect to x and y.
    assignment: (B, N) int64 index into y matched to each x point; -1 for unmatched points (the
        larger set's extras) and padding. A permutation when the sizes are equal.
    lower_bound: a lower bound on the optimal mean cost (auction dual), not differentiable.
    gap: (distance - lower_bound) / distance, the certified relative distance from exact.
    rounds: bidding rounds used.
    """

    distance: torch.Tensor
    assignment: torch.Tensor
    lower_bound: torch.Tensor
    gap: torch.Tensor
    rounds: torch.Tensor


def earth_movers_distance(
    x,
    y,
    x_lengths: torch.Tensor | None = None,
    y_lengths: torch.Tensor | None = None,
    p: int = 1,
    rel_tol: float = 1e-3,
    max_rounds: int = 10_000_000,
) -> EMD:
    """Earth Mover's Distance: the optimal one-to-one matching between two point sets.

    EMD(X, Y) = min over assignments s of (1/n) sum_i |x_i - y_s(i)|^p, with p = 1 (unsquared, the
    PCN/MSN convention) or p = 2 (squared). For equal sizes s is a permutation (a bijection). For
    unequal sizes every point of the smaller set is matched to a distinct point of the larger set
    and the larger set's remaining points are left out; n is the smaller size.

    Solved by the auction algorithm (Bertsekas) with eps-scaling, without N x N matrices: costs are
    recomputed on the fly from the coordinates, and each bid finds the two most valuable objects
    by branch and bound in a kd-tree whose nodes carry their smallest price (points of up to 3
    coordinates; more coordinates scan all objects). The result is certified: the dual lower bound
    is returned, and the run continues until (distance - lower_bound) <= rel_tol * lower_bound, so
    the distance is within rel_tol of the exact optimum. Any coordinate scale, any size, any batch,
    ties broken by index (deterministic). Gradients reach both x and y through the matched pairs
    (the assignment itself is piecewise constant).

    Args:
        x, y: (B, N, D) / (B, M, D) point sets, single (N, D) sets, or lists of (N_i, D) tensors.
        x_lengths, y_lengths: optional (B,) valid points per set.
        p: 1 for Euclidean distances, 2 for squared ones.
        rel_tol: requested relative accuracy (> 0).
        max_rounds: bidding rounds allowed per problem; if they run out before every point is
            matched a RuntimeError is raised (never a silently partial matching).

    Termination: with n = min(N, M) and m = max(N, M) points, the problem is made square by m - n
    dummy bidders to whom every point costs 0 (same optimum), so eps-scaling applies to every size:
    eps starts at C / 5 (C: the largest possible cost, the bounding-box diagonal to the power p) and
    falls 5x per phase to eps_final = max(rel_tol * LB0 / m, 1e-12 * C) (LB0: the nearest-neighbour
    lower bound), so there are at most 1 + log5(C / (5 eps_final)) <= 18 phases. Within a phase
    bidders bid one after another (Gauss-Seidel) against the latest prices, each bid raising a price
    by at least eps; the auction's worst case is O(m^2) bids per phase (Bertsekas), each a kd-tree
    search (O(m) at worst). Collapsed and duplicated points need no more rounds than spread ones.

    Empty sets give NaN with a warning.
    """
    _checks.check_choice(p, (1, 2), "p")
    if not (isinstance(rel_tol, (int, float)) and rel_tol > 0):
        raise ValueError(f"rel_tol must be a positive number, got {rel_tol!r}")
    _checks.check_positive_int(max_rounds, "max_rounds")
    xb, xl, yb, yl, unbatched = _checks.validated_pair(x, y, x_lengths, y_lengths)
    dtype = compute_dtype(xb.dtype)
    xs, ys = xb.detach().to(dtype).contiguous(), yb.detach().to(dtype).contiguous()
    assignment, total, dual, _, rounds, _, complete = ops.auction_assignment(
        xs, ys, xl, yl, p, float(rel_tol), max_rounds
    )
    if not bool(complete.all()):
        raise RuntimeError(f"earth_movers_distance: the auction did not match every point within max_rounds="
                           f"{max_rounds}; raise max_rounds or rel_tol")
    matched = assignment >= 0
    pairs = torch.minimum(xl, yl)
    warn_if_empty("earth_movers_distance", pairs, result="its distance is NaN")
    # Differences in the compute dtype: a bfloat16 difference of nearby points keeps 3 digits.
    partner = gather_neighbours(yb.to(dtype), assignment.unsqueeze(-1))[:, :, 0]  # zeros where unmatched
    zero = torch.zeros((), dtype=dtype, device=xb.device)
    sq = torch.where(matched.unsqueeze(-1), xb.to(dtype) - partner, zero).square().sum(-1)
    cost = sq if p == 2 else safe_sqrt(sq)
    count = pairs.clamp(min=1).to(cost.dtype)
    distance = torch.where(pairs == 0, torch.nan, cost.sum(1) / count)
    total, dual = total.to(cost.dtype), dual.to(cost.dtype)  # the op's sums over matched pairs (float64)
    lower = torch.where(pairs == 0, torch.nan, dual / count)
    gap = torch.where(total > 0, (total - dual) / total.clamp(min=1e-300), 0.0)
    gap = torch.where(pairs == 0, torch.nan, gap)
    if unbatched:
        return EMD(distance[0], assignment[0], lower[0], gap[0], rounds[0])
    return EMD(distance, assignment, lower, gap, rounds)
