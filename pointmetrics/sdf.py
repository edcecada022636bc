"""Regularisers for neural signed distance fields and NeRF-style training: the eikonal term
(IGR), StEik's directional and Laplacian divergence, sparsity, SDF-at-points, mask and opacity terms.

Each function takes what a training loop already has: query points ``x`` (with
``requires_grad``), SDF values, and gradients ``grad = dSDF/dx`` computed with
``torch.autograd.grad(sdf, x, torch.ones_like(sdf), create_graph=True)`` (see :func:`sdf_gradient`).
The derivative terms (:func:`directional_divergence`, :func:`laplacian_divergence`) take further
derivatives of ``grad`` with respect to ``x`` and say so clearly when that graph is missing.

NaN or Inf in any tensor argument (``x``, ``sdf``, ``grad``, ``opacity``, a float ``mask`` ...)
raises a ValueError naming it, checked with one synchronisation per call. Terms are returned in
the dtype of their input, except that a float16 result beyond float16's range (65504: the eikonal
or directional-divergence loss of large gradients) is returned in float32 instead of inf.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from . import _checks
from ._reduce import compute_dtype

__all__ = [
    "directional_divergence",
    "divergence_weight",
    "eikonal_loss",
    "laplacian_divergence",
    "mask_bce_loss",
    "opacity_entropy_loss",
    "sdf_gradient",
    "sdf_points_loss",
    "sparsity_loss",
]

_CLAMP = 1e-3  # opacities are clamped to [1e-3, 1 - 1e-3] before any log (instant-nsr-pl, NeuS)


def _finite_checks(tensors: dict) -> _checks.ValueChecks:
    """One check per floating-point tensor argument: NaN or Inf is a ValueError naming it (README:
    bad input, NaN/Inf included). Non-floating tensors (boolean masks) and None pass."""
    checks = _checks.ValueChecks()
    for name, t in tensors.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel():
            checks.add(~torch.isfinite(t.detach()).all(), f"{name} contains NaN or Inf values")
    return checks


def _check_finite(**tensors: torch.Tensor | None) -> None:
    """:func:`_finite_checks`, read back in a single synchronisation."""
    _finite_checks(tensors).run()


def _checked_result(value: torch.Tensor, like: torch.Tensor, **tensors: torch.Tensor | None) -> torch.Tensor:
    """``value`` (computed in float32/float64) in the dtype of ``like`` after the finiteness checks
    of ``tensors``, all in one synchronisation. A float16 result that is finite in float32 but
    would overflow float16 (beyond 65504) stays in float32. For terms whose computation cannot
    fail on NaN (no check needed before it)."""
    checks = _finite_checks(tensors)
    cast = value.to(like.dtype)
    if like.dtype == torch.float16:
        checks.add_magnitude("overflow", (torch.isfinite(value) & ~torch.isfinite(cast)).detach())
    checks.run()
    return value if checks.magnitude.get("overflow", 0.0) else cast


def _grad_field(grad, name: str = "grad") -> torch.Tensor:
    grad = _checks.check_float_tensor(grad, name)
    if grad.dim() < 1 or grad.shape[-1] < 1:
        raise ValueError(f"{name} must have shape (..., D), got {tuple(grad.shape)}")
    return grad


def _upcast(t: torch.Tensor) -> torch.Tensor:
    return t.to(compute_dtype(t.dtype))


def _mean(values: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``values`` (in float32 at least, see :func:`._reduce.compute_dtype`) in the dtype of ``like``
    (kept in the compute dtype without ``like``); 0 (not NaN) for an empty tensor: no samples, no
    penalty."""
    mean = _upcast(values).sum() / max(values.numel(), 1)
    return mean if like is None else mean.to(like.dtype)


def _safe_norm(v: torch.Tensor) -> torch.Tensor:
    """|v| over the last dimension whose gradient stays finite at v = 0."""
    return (v.square().sum(-1) + torch.finfo(v.dtype).tiny).sqrt()


def sdf_gradient(sdf: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """dSDF/dx at every point, keeping the graph so that losses on it train the network.

    ``sdf``: (...,) or (..., 1) values computed from ``x`` (..., D), which must require grad.
    """
    _checks.check_float_tensor(sdf, "sdf")
    _require_input(x)
    if not sdf.requires_grad:
        raise ValueError("sdf does not require grad: compute it from x with gradients enabled")
    _check_finite(sdf=sdf, x=x)
    (grad,) = torch.autograd.grad(sdf, x, torch.ones_like(sdf), create_graph=True)
    return grad


def _require_input(x) -> None:
    _checks.check_float_tensor(x, "x")
    if not x.requires_grad:
        raise ValueError(
            "x does not require grad: call x.requires_grad_() before evaluating the network, so that its "
            "derivatives can be taken"
        )


def _require_graph(x: torch.Tensor, grad: torch.Tensor, what: str) -> None:
    _require_input(x)
    if grad.grad_fn is None:
        raise ValueError(
            f"{what} differentiates grad again, but grad has no graph: compute it with "
            "torch.autograd.grad(sdf, x, torch.ones_like(sdf), create_graph=True) (or pm.sdf_gradient)"
        )
    if grad.shape != x.shape:
        raise ValueError(f"grad must have the shape of x {tuple(x.shape)}, got {tuple(grad.shape)}")


def eikonal_loss(grad: torch.Tensor, kind: str = "sq", mask: torch.Tensor | None = None) -> torch.Tensor:
    """Eikonal regulariser: an SDF has unit gradient everywhere.

        kind="sq":  mean (|grad| - 1)^2   (IGR, NeuS, instant-nsr-pl)
        kind="abs": mean ||grad| - 1|     (SIREN, DiGS, StEik)

    ``grad``: (..., D) gradients at the sample points. ``mask``: optional boolean (...,) selecting
    the samples to average (NeuS averages only samples with |p| < 1.2). IGR applies it to the
    off-surface samples only, StEik to surface and off-surface samples together: pass the
    gradients of the samples your convention uses. No samples (or an all-False mask) give 0, as
    for every loss here. Computed in float32 (float64 for float64 ``grad``), returned in the dtype
    of ``grad`` (float32 for a float16 ``grad`` whose loss exceeds float16's 65504).
    """
    grad = _grad_field(grad)
    _checks.check_choice(kind, ("sq", "abs"), "kind")
    if mask is not None:
        mask_weights = _checks.broadcast_mask(mask, grad.shape[:-1], compute_dtype(grad.dtype))
    residual = _safe_norm(_upcast(grad)) - 1.0
    term = residual.square() if kind == "sq" else residual.abs()
    if mask is None:
        value = _mean(term)
    else:
        value = (term * mask_weights).sum() / mask_weights.sum().clamp(min=1)
    return _checked_result(value, grad, grad=grad, mask=mask)  # float32 if float16 overflows


def _norm_kind(norm: str) -> None:
    _checks.check_choice(norm, ("l1", "l2"), "norm")


def directional_divergence(x: torch.Tensor, grad: torch.Tensor, norm: str = "l1") -> torch.Tensor:
    """StEik's directional divergence: the second derivative of the SDF along its own gradient.

        h = D^2 u g = d/dx (|g|^2 / 2)        (Hessian-vector product, one extra backward)
        div = g . h / (|g|^2 + 1e-5)          (= n^T H n for n = g / |g|)
        L = mean |div| (norm="l1", StEik's default) or mean div^2 (norm="l2")

    An exact SDF has div = 0 (it is linear along its gradient). Use it on off-surface samples.
    ``x`` (..., D) must require grad and ``grad`` (..., D) must have been computed from it with
    ``create_graph=True``; no Hessian is formed. The products and the mean are computed in float32
    (float64 for float64 ``grad``) and returned in the dtype of ``grad`` (float32 for a float16
    ``grad`` whose loss exceeds float16's 65504).
    """
    grad = _grad_field(grad)
    _norm_kind(norm)
    _require_graph(x, grad, "directional_divergence")
    g = _upcast(grad)
    squared = g.square().sum(-1, keepdim=True)
    (hvp,) = torch.autograd.grad(0.5 * squared, x, torch.ones_like(squared), create_graph=True)
    div = (g * hvp.to(g.dtype)).sum(-1) / (squared[..., 0] + 1e-5)
    return _checked_result(_mean(div.abs() if norm == "l1" else div.square()), grad, x=x, grad=grad)


def laplacian_divergence(x: torch.Tensor, grad: torch.Tensor, norm: str = "l1") -> torch.Tensor:
    """DiGS' divergence term: the Laplacian of the SDF (the divergence of its gradient field).

        div = sum_d d grad_d / d x_d          (D extra backward passes)
        L = mean clamp(|div|, 0.1, 50) (norm="l1") or mean clamp(div^2, 0.1, 50) (norm="l2")

    NaN divergences count as 0, as in DiGS/StEik (``full_l1`` / ``full_l2``). Same requirements on
    ``x`` and ``grad`` as :func:`directional_divergence`; the sum and the mean are computed in
    float32 (float64 for float64 ``grad``) and returned in the dtype of ``grad``.
    """
    grad = _grad_field(grad)
    _norm_kind(norm)
    _require_graph(x, grad, "laplacian_divergence")
    _check_finite(x=x, grad=grad)
    div = torch.zeros(grad.shape[:-1], dtype=compute_dtype(grad.dtype), device=grad.device)
    for d in range(grad.shape[-1]):
        component = grad[..., d]
        (second,) = torch.autograd.grad(component, x, torch.ones_like(component), create_graph=True)
        div = div + second[..., d].to(div.dtype)
    div = torch.nan_to_num(div, nan=0.0)
    term = div.abs() if norm == "l1" else div.square()
    return _mean(term.clamp(0.1, 50.0), grad)


def divergence_weight(
    iteration: int,
    total: int,
    params: Sequence[float] = (1e2, 0.2, 1e2, 0.4, 0.0, 0.0),
    decay: str = "linear",
) -> float:
    """StEik's annealing schedule for the divergence weight.

    ``params`` = (w_start, [t_i, w_i]*, w_end): weights anchored at fractions 0, t_1, ..., 1 of
    training. Between consecutive anchors (s, w0) and (e, we) the weight moves from w0 to we by

        linear:  w0 + (we - w0) (t - s) / (e - s)
        quintic: w0 + (we - w0) (1 - (1 - (t - s) / (e - s))^5)
        step:    we from s on (the weight jumps at the start of the segment)
        none:    w_start throughout

    with t = iteration / total. The default is StEik's SRB/ShapeNet schedule: 100 until 20% of
    training, linearly to 0 at 40%, then 0. Scenes use (1e1, 0.1, 1e1, 0.3, 0, 0).
    """
    _checks.check_choice(decay, ("linear", "quintic", "step", "none"), "decay")
    _checks.check_positive_int(total, "total")
    if not isinstance(iteration, int) or iteration < 0:
        raise ValueError(f"iteration must be a non-negative integer, got {iteration!r}")
    params = [float(p) for p in params]
    if len(params) < 2 or (len(params) - 2) % 2:
        raise ValueError(f"params must be (w_start, [t_i, w_i]*, w_end), got {params}")
    middle = params[1:-1]
    anchors = list(zip([0.0, *middle[::2], 1.0], [params[0], *middle[1::2], params[-1]]))
    times = [a[0] for a in anchors]
    if any(t1 < t0 for t0, t1 in zip(times, times[1:])) or not all(0 <= t <= 1 for t in times):
        raise ValueError(f"the fractions t_i in params must rise within [0, 1], got {middle[::2]}")
    if decay == "none":
        return params[0]
    t = iteration / total
    s, w0 = max((a for a in anchors if a[0] <= t), key=lambda a: a[0])
    e, we = min((a for a in anchors if a[0] >= t), key=lambda a: a[0])
    if t >= e or e == s:  # at (or past) an anchor: its weight
        return we
    progress = (t - s) / (e - s)
    if decay == "linear":
        return w0 + (we - w0) * progress
    if decay == "quintic":
        return w0 + (we - w0) * (1 - (1 - progress) ** 5)
    return we  # step


def sparsity_loss(sdf: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """instant-nsr-pl's sparsity term: mean exp(-scale |sdf|) over all ray-marching samples.

    Penalises SDF values near zero away from the surface (stray surfaces in empty space). No
    samples give 0. Computed in float32 (float64 for float64), returned in the dtype of ``sdf``.
    """
    sdf = _checks.check_float_tensor(sdf, "sdf")
    _checks.check_positive_number(scale, "scale")
    _check_finite(sdf=sdf)
    return _mean(torch.exp(-scale * _upcast(sdf).abs()), sdf)


def sdf_points_loss(sdf_at_points: torch.Tensor) -> torch.Tensor:
    """Geo-NeuS' SDF loss on sparse points known to lie on the surface: (1/N) sum_i |f(p_i)|.

    ``sdf_at_points``: the network's SDF at the (e.g. SfM) points visible in the current view.
    With no points the reference divides by zero; this returns 0 with a warning. Computed in
    float32 (float64 for float64), returned in the dtype of ``sdf_at_points``.
    """
    sdf_at_points = _checks.check_float_tensor(sdf_at_points, "sdf_at_points")
    _check_finite(sdf_at_points=sdf_at_points)
    if sdf_at_points.numel() == 0:
        warnings.warn("sdf_points_loss: no points; the loss is 0", RuntimeWarning, stacklevel=2)
    return _mean(_upcast(sdf_at_points).abs(), sdf_at_points)


def opacity_entropy_loss(opacity: torch.Tensor) -> torch.Tensor:
    """Binary entropy of the accumulated opacity, pushing each ray to be fully opaque or empty:

        o = clamp(opacity, 1e-3, 1 - 1e-3);  L = -mean[o log o + (1 - o) log(1 - o)]

    (instant-nsr-pl's ``binary_cross_entropy(o, o)``). No rays give 0. Computed in float32 (float64
    for float64), clamp included, and returned in the dtype of ``opacity``.
    """
    opacity = _checks.check_float_tensor(opacity, "opacity")
    _check_finite(opacity=opacity)
    o = _upcast(opacity).clamp(_CLAMP, 1 - _CLAMP)
    return _mean(-(o * o.log() + (1 - o) * (1 - o).log()), opacity)


def mask_bce_loss(opacity: torch.Tensor, mask: torch.Tensor, convention: str = "instant-nsr-pl") -> torch.Tensor:
    """Binary cross-entropy between each ray's accumulated opacity and the foreground mask.

    convention="instant-nsr-pl": BCE(clamp(opacity, 1e-3, 1 - 1e-3), mask), the mask used as a
        soft target;
    convention="neus": BCE(clamp(weight_sum, 1e-3, 1 - 1e-3), mask > 0.5), the mask binarised.

    Mean over rays. ``opacity`` and ``mask`` must have the same number of elements (a trailing
    singleton dimension on either is fine). No rays give 0. Computed in float32 (float64 for
    float64), clamp included, and returned in the dtype of ``opacity``.
    """
    opacity = _checks.check_float_tensor(opacity, "opacity")
    _checks.check_choice(convention, ("instant-nsr-pl", "neus"), "convention")
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
    if mask.numel() != opacity.numel():
        raise ValueError(
            f"mask has {mask.numel()} elements but opacity has {opacity.numel()} "
            f"(shapes {tuple(mask.shape)} and {tuple(opacity.shape)})"
        )
    checks = _checks.ValueChecks()  # one check per argument, one synchronisation
    if opacity.numel():
        checks.add(~torch.isfinite(opacity.detach()).all(), "opacity contains NaN or Inf values")
    if convention == "instant-nsr-pl" and mask.numel():
        # a soft target in [0, 1]: NaN fails the comparison, so this also refuses NaN/Inf
        checks.add(~((mask >= 0) & (mask <= 1)).all(), "mask must lie in [0, 1] for convention='instant-nsr-pl' "
                   "(a soft target; NaN/Inf are refused)")
    elif mask.is_floating_point() and mask.numel():
        checks.add(~torch.isfinite(mask).all(), "mask contains NaN or Inf values")
    checks.run()
    if opacity.numel() == 0:
        return opacity.sum()
    o = _upcast(opacity).reshape(-1).clamp(_CLAMP, 1 - _CLAMP)
    target = mask.reshape(-1).to(o.dtype) if convention == "instant-nsr-pl" else (mask.reshape(-1) > 0.5).to(o.dtype)
    return F.binary_cross_entropy(o, target).to(opacity.dtype)
