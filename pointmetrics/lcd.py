"""Learnable Chamfer Distance (Huang et al., arXiv 2312.16582; reference Tianxinhuang/LCDNet).

A small network assigns every point of the ground truth S and the reconstruction R a weight; the
loss is a weighted Chamfer distance, and the network is trained *adversarially* to maximise it,
so that the weights move to the regions the reconstruction gets most wrong:

    LCD = 1/2 [ mean_b sum_i w_S(i) d_S(i) + mean_b sum_j w_R(j) d_R(j) ],
    w_X = (sigma + exp(-F(X)^2)) / (1e-8 + sum_points (sigma + exp(-F(X)^2))),  sigma = 0.01,

with d_S(i) = |s_i - NN_R(s_i)| from our exact nearest-neighbour search (no N x M matrix).

Training loop, per batch::

    weight_net = pm.LCDWeightNet()
    weight_opt = weight_net.optimizer()                    # Adam, lr 1e-3, on F only
    ...
    rec = model(inputs)
    pm.lcd_adversarial_step(gt, rec, weight_net, weight_opt)  # maximises LCD w.r.t. the weights
    loss = pm.lcd_loss(gt, rec, weight_net)                   # the model minimises it
    loss.backward(); model_opt.step()
"""

from __future__ import annotations

import torch
from torch import nn

from . import _checks
from ._reduce import compute_dtype, reduce_batch, safe_sqrt, valid_mask, warn_if_empty
from .knn import nearest_core

__all__ = ["LCDWeightNet", "lcd_adversarial_step", "lcd_loss"]


def _pointwise(sizes: list[int], activation: nn.Module, last_activation: bool = True) -> nn.Sequential:
    """Per-point layers (the reference's 1x1 convolutions), Xavier-initialised with zero bias."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        linear = nn.Linear(a, b)
        nn.init.xavier_uniform_(linear.weight)
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if last_activation or i < len(sizes) - 2:
            layers.append(activation)
    return nn.Sequential(*layers)


def _masked_max(features: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Max over the valid points of (B, N, C) features; 0 for an empty cloud."""
    masked = features.masked_fill(~valid.unsqueeze(-1), float("-inf"))
    pooled = masked.amax(1) if features.shape[1] > 0 else features.new_full((features.shape[0], features.shape[2]),
                                                                            float("-inf"))
    return torch.where(torch.isfinite(pooled), pooled, torch.zeros((), dtype=pooled.dtype, device=pooled.device))


class LCDWeightNet(nn.Module):
    """The weight network of Learnable Chamfer Distance, layer for layer as LCDNet's ``lcdloss``.

    - global encoder (``1ad``, shared by S and R): per point 3 -> 64 -> 128 (ReLU), max-pooled to
      g_S and g_R; G = [g_S, g_R] (256). Frozen at its random initialisation by default, as in the
      reference (its variables are in neither optimiser).
    - F (``2ad``, shared by S and R): per point 3 -> 64 -> 64 (ReLU), max-pooled to c_X (64); then
      per point [xyz, c_X, G] (323) -> 64 -> 16 (leaky ReLU, slope 0.2) -> 1 (linear).

    ``forward(gt, rec, gt_valid, rec_valid)`` returns the per-point weights (B, N) and (B, M), each
    cloud's weights summing to 1 over its valid points, normalised in float32 for a float16/bfloat16
    network (float32 weights) and in the network's dtype otherwise.
    """

    def __init__(self, sigma: float = 0.01, freeze_global_encoder: bool = True) -> None:
        super().__init__()
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma!r}")
        self.sigma = float(sigma)
        self.global_encoder = _pointwise([3, 64, 128], nn.ReLU())
        self.local_encoder = _pointwise([3, 64, 64], nn.ReLU())
        self.head = _pointwise([3 + 64 + 256, 64, 16, 1], nn.LeakyReLU(0.2), last_activation=False)
        if freeze_global_encoder:
            self.global_encoder.requires_grad_(False)

    def _score(self, points: torch.Tensor, valid: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
        local = _masked_max(self.local_encoder(points), valid)
        n = points.shape[1]
        features = torch.cat([points, local[:, None].expand(-1, n, -1), shared[:, None].expand(-1, n, -1)], dim=-1)
        return self.head(features)[..., 0]

    def _weights(self, score: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        score = score.to(compute_dtype(score.dtype))  # the sum over points: float32 at least
        raw = torch.where(valid, self.sigma + torch.exp(-score.square()), torch.zeros_like(score))
        return raw / (1e-8 + raw.sum(1, keepdim=True))

    def forward(
        self, gt: torch.Tensor, rec: torch.Tensor, gt_valid: torch.Tensor, rec_valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if gt.shape[-1] != 3 or rec.shape[-1] != 3:
            raise ValueError(f"LCDWeightNet takes 3D points, got D = {gt.shape[-1]} and {rec.shape[-1]}")
        shared = torch.cat([_masked_max(self.global_encoder(gt), gt_valid),
                            _masked_max(self.global_encoder(rec), rec_valid)], dim=-1)
        w_gt = self._weights(self._score(gt, gt_valid, shared), gt_valid)
        w_rec = self._weights(self._score(rec, rec_valid, shared), rec_valid)
        return w_gt, w_rec

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters the adversarial step trains (the weight head F; the global encoder stays
        frozen at its random initialisation, as in the reference): a list of nn.Parameter."""
        return [p for p in self.parameters() if p.requires_grad]

    def optimizer(self, lr: float = 1e-3) -> torch.optim.Optimizer:
        """Adam over the trainable weights (F), the reference's adversarial optimiser."""
        return torch.optim.Adam(self.trainable_parameters(), lr=lr)

    def l2_penalty(self) -> torch.Tensor:
        """sum w^2 / 2 over the trainable weight matrices (TensorFlow's l2_loss; biases excluded),
        summed in float32 at least (float32 for a float16/bfloat16 network)."""
        weights = [p for name, p in self.named_parameters() if p.requires_grad and name.endswith("weight")]
        return sum(w.to(compute_dtype(w.dtype)).square().sum() for w in weights) / 2


def _inputs(gt, rec, gt_lengths, rec_lengths, weight_net):
    if not isinstance(weight_net, LCDWeightNet):
        raise TypeError(f"weight_net must be an LCDWeightNet, got {type(weight_net).__name__}")
    checks = _checks.ValueChecks()
    pair = _checks.cloud_pair(gt, rec, gt_lengths, rec_lengths, checks, ("gt", "rec"))
    checks.run()  # no working_precision: the points are cast to the weight network's dtype
    if pair.x.shape[-1] != 3:
        raise ValueError(f"gt and rec must be 3D point clouds, got D = {pair.x.shape[-1]}")
    return pair.x, pair.x_lengths, pair.y, pair.y_lengths, pair.unbatched


def _per_pair(gb, gl, rb, rl, weight_net: LCDWeightNet) -> torch.Tensor:
    """(B,) LCD of validated padded clouds (finite for empty ones too: 0 weights)."""
    param = next(weight_net.parameters())
    gt_valid = valid_mask(gl, gb.shape[1])
    rec_valid = valid_mask(rl, rb.shape[1])
    # The padding past the lengths may hold anything (NaN): replace it by 0 with torch.where
    # before any arithmetic, so that it reaches neither the weight network nor any gradient (a
    # NaN times a zero gradient is still NaN).
    # Distances in the points' own precision (float64 points against a float32 network keep
    # distances far below float32's resolution of their coordinates), the network in its dtype.
    compute = torch.promote_types(compute_dtype(param.dtype), compute_dtype(gb.dtype))
    gb = torch.where(gt_valid[..., None], gb.to(compute), 0.0)
    rb = torch.where(rec_valid[..., None], rb.to(compute), 0.0)
    w_gt, w_rec = weight_net(gb.to(param.dtype), rb.to(param.dtype), gt_valid, rec_valid)
    sq_gt, _ = nearest_core(gb, rb, gl, rl)
    sq_rec, _ = nearest_core(rb, gb, rl, gl)
    weighted_gt = (w_gt.to(compute) * safe_sqrt(sq_gt.to(compute))).sum(1)
    weighted_rec = (w_rec.to(compute) * safe_sqrt(sq_rec.to(compute))).sum(1)
    return (0.5 * (weighted_gt + weighted_rec)).to(param.dtype)


def lcd_loss(
    gt,
    rec,
    weight_net: LCDWeightNet,
    gt_lengths: torch.Tensor | None = None,
    rec_lengths: torch.Tensor | None = None,
    reduction: str | None = "mean",
) -> torch.Tensor:
    """Learnable Chamfer Distance between ground truth ``gt`` (S) and reconstruction ``rec`` (R).

    LCD = 1/2 (sum_i w_S(i) d_S(i) + sum_j w_R(j) d_R(j)) per cloud pair, averaged over the batch
    (``reduction="mean"``) or returned per pair (None). Distances are unsquared, with a gradient
    that stays finite at d = 0. Gradients reach ``rec`` both through the distances and through its
    weights (as in the reference), and ``gt`` and the weight network.

    ``gt``, ``rec``: (B, N, 3) / (B, M, 3) with optional lengths, single clouds, or lists; N != M
    is fine. An empty cloud gives NaN with a warning. The weight network sees the points in its own
    dtype; distances, weights and sums are computed in float32 at least (float64 when the points or
    the network are float64), and the result has the network's dtype.
    """
    _checks.check_choice(reduction, ("mean", None), "reduction")
    gb, gl, rb, rl, unbatched = _inputs(gt, rec, gt_lengths, rec_lengths, weight_net)
    per_pair = _per_pair(gb, gl, rb, rl, weight_net)
    if warn_if_empty("lcd_loss", gl, rl):
        per_pair = torch.where((gl == 0) | (rl == 0), torch.nan, per_pair)
    return reduce_batch(per_pair, reduction, unbatched)


def lcd_adversarial_step(
    gt,
    rec,
    weight_net: LCDWeightNet,
    optimizer: torch.optim.Optimizer,
    gt_lengths: torch.Tensor | None = None,
    rec_lengths: torch.Tensor | None = None,
    sigma_r: float = 1e-3,
    weight_decay: float = 1e-4,
) -> torch.Tensor:
    """One update of the weight network that *maximises* LCD, as in LCDNet's training.

    Minimises -log(LCD(gt, rec) + sigma_r) + weight_decay * sum w^2 / 2 over ``optimizer``'s
    parameters (``weight_net.optimizer()``: Adam, lr 1e-3, on F). ``rec`` is detached, so the
    reconstruction network is not touched. Returns the LCD before the step (detached).

    ``gt``, ``rec``: as for :func:`lcd_loss` (padded tensors with lengths, single clouds or lists).
    An empty cloud leaves nothing to maximise: ValueError naming ``gt``/``gt_lengths`` or
    ``rec``/``rec_lengths`` (where :func:`lcd_loss` gives NaN with a warning).
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if not sigma_r > 0:
        raise ValueError(f"sigma_r must be positive, got {sigma_r!r}")
    gb, gl, rb, rl, _ = _inputs(gt, rec, gt_lengths, rec_lengths, weight_net)  # lists padded, all validated
    gt_empty, rec_empty = torch.stack([(gl == 0).any(), (rl == 0).any()]).tolist()
    for empty, name in ((gt_empty, "gt"), (rec_empty, "rec")):
        if empty:
            raise ValueError(
                f"lcd_adversarial_step: {name} has an empty cloud ({name} has no points or {name}_lengths "
                "is 0), where the LCD is not defined"
            )
    with torch.enable_grad():
        value = _per_pair(gb.detach(), gl, rb.detach(), rl, weight_net).mean()
        if not torch.isfinite(value):
            raise ValueError(
                f"lcd_adversarial_step: the LCD of gt and rec is not finite ({float(value)}): are the "
                "coordinates of gt and rec too large for the weight network's dtype?"
            )
        objective = -torch.log(value + sigma_r) + weight_decay * weight_net.l2_penalty()
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        optimizer.step()
    return value.detach()
