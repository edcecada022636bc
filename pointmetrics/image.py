"""Image terms for neural-field training and evaluation: PSNR, SSIM and S3IM (SPEC §8-§9)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import _checks

__all__ = ["psnr", "s3im", "ssim"]


def psnr(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    data_range: float = 1.0,
    dim: int | tuple[int, ...] | None = None,
) -> torch.Tensor:
    """Peak signal-to-noise ratio, 10 log10(data_range^2 / MSE), in dB.

    ``pred``/``target``: any equal shapes. ``mask`` (broadcastable to them) restricts the mean:
    MSE = sum(mask (pred - target)^2) / sum(mask broadcast), which for a (H, W, 1) mask and
    (H, W, 3) images is NeuS' masked PSNR 20 log10(1 / sqrt(sum mask (c - c')^2 / (3 sum mask))).
    ``dim``: dimensions to average over (e.g. (1, 2, 3) for a per-image PSNR of (B, C, H, W)
    images); all of them by default. Identical images give +inf.
    """
    pred, target = _checks.check_float_tensor(pred, "pred"), _checks.check_float_tensor(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range!r}")
    err = (pred - target).square()
    weight = torch.ones_like(err) if mask is None else _checks.broadcast_mask(mask, err.shape, err.dtype)
    dims = tuple(range(err.dim())) if dim is None else dim
    mse = (weight * err).sum(dims) / weight.sum(dims)
    return 10.0 * torch.log10(data_range**2 / mse)


def _gaussian_window(size: int, sigma: float, dtype, device) -> torch.Tensor:
    """Normalised 1D Gaussian with its centre at size // 2 (off-centre for an even size, as in
    pytorch-ssim and S3IM)."""
    offsets = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-offsets.square() / (2 * sigma**2))
    return (g / g.sum()).to(dtype=dtype, device=device)


def _ssim_map(x, y, data_range, kernel_size, sigma, stride, padding):
    """Per-pixel SSIM of (B, C, H, W) images (Wang et al. 2004, population covariance)."""
    C = x.shape[1]
    g = _gaussian_window(kernel_size, sigma, x.dtype, x.device)
    window = (g[:, None] * g[None, :]).expand(C, 1, kernel_size, kernel_size)

    def blur(t):
        return F.conv2d(t, window, stride=stride, padding=padding, groups=C)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x.square()
    var_y = blur(y * y) - mu_y.square()
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2))


def ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    kernel_size: int = 11,
    sigma: float = 1.5,
    padding: str = "valid",
    reduction: str | None = "mean",
) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) with a Gaussian window.

        SSIM = (2 mu_x mu_y + C1)(2 cov_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(var_x + var_y + C2)),
        C1 = (0.01 L)^2, C2 = (0.03 L)^2, L = data_range,

    with local statistics weighted by a normalised kernel_size^2 Gaussian (sigma 1.5) and
    population (not sample) covariance, averaged over pixels and channels.

    ``padding="valid"`` averages only where the window fits inside the image, which equals
    ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=L, channel_axis=...)`` (scikit-image filters with a
    reflected border, then crops it). ``padding="zeros"`` zero-pads by (kernel_size - 1) // 2 and
    averages every pixel, as pytorch-ssim does.

    Images: (B, C, H, W), (C, H, W) or (H, W). ``reduction``: "mean" over the batch, or None for
    one value per image. Differentiable.
    """
    pred, target = _checks.check_float_tensor(pred, "pred"), _checks.check_float_tensor(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    if pred.dim() not in (2, 3, 4):
        raise ValueError(f"images must be (B, C, H, W), (C, H, W) or (H, W), got shape {tuple(pred.shape)}")
    _checks.check_choice(padding, ("valid", "zeros"), "padding")
    _checks.check_choice(reduction, ("mean", None), "reduction")
    _checks.check_positive_int(kernel_size, "kernel_size")
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range!r}")
    batched = pred.dim() == 4
    x = pred.reshape(-1, *pred.shape[-3:]) if pred.dim() >= 3 else pred[None, None]
    y = target.reshape(-1, *target.shape[-3:]) if target.dim() >= 3 else target[None, None]
    if padding == "valid" and min(x.shape[-2:]) < kernel_size:
        size = tuple(x.shape[-2:])
        raise ValueError(f"images of size {size} are smaller than the {kernel_size}x{kernel_size} window")
    pad = 0 if padding == "valid" else (kernel_size - 1) // 2
    per_image = _ssim_map(x, y, data_range, kernel_size, sigma, 1, pad).mean((1, 2, 3))
    if reduction == "mean":
        return per_image.mean()
    return per_image if batched else per_image[0]


def s3im(
    pred: torch.Tensor,
    target: torch.Tensor,
    kernel_size: int = 4,
    stride: int = 4,
    repeat: int = 10,
    patch_height: int = 64,
    patch_width: int = 64,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """S3IM loss (Xie et al., ICCV 2023): 1 - SSIM of randomly assembled "virtual patches" of rays.

    ``pred``/``target``: (R, 3) colours of the R = patch_height * patch_width rays of a training
    batch. The ray order (identity) and ``repeat - 1`` random permutations of it are concatenated,
    laid out row-major as a (1, 3, patch_height, patch_width * repeat) image, and compared by SSIM
    with a kernel_size Gaussian window (sigma 1.5, centred at kernel_size // 2), zero padding
    (kernel_size - 1) // 2, the given stride and C1 = 0.01^2, C2 = 0.03^2 (colours in [0, 1]).
    Defaults are the authors' (kernel 4, stride 4, repeat 10, 64 x 64). Pass a seeded
    ``generator`` for reproducible permutations. Add it to the loss as lambda * s3im (lambda = 1 in
    the authors' configurations).
    """
    pred, target = _checks.check_float_tensor(pred, "pred"), _checks.check_float_tensor(target, "target")
    if pred.shape != target.shape or pred.dim() != 2:
        raise ValueError(f"pred and target must both be (R, C), got {tuple(pred.shape)} and {tuple(target.shape)}")
    for value, name in ((kernel_size, "kernel_size"), (stride, "stride"), (repeat, "repeat"),
                        (patch_height, "patch_height"), (patch_width, "patch_width")):
        _checks.check_positive_int(value, name)
    rays = pred.shape[0]
    if rays != patch_height * patch_width:
        raise ValueError(
            f"s3im needs patch_height * patch_width = {patch_height * patch_width} rays, got {rays}; "
            "set patch_height and patch_width to match the ray batch"
        )
    device = pred.device if generator is None else generator.device
    order = [torch.arange(rays, device=device)]
    order += [torch.randperm(rays, generator=generator, device=device) for _ in range(repeat - 1)]
    index = torch.cat(order).to(pred.device)
    C = pred.shape[1]

    def virtual_patch(colours):
        return colours[index].t().reshape(1, C, patch_height, patch_width * repeat)

    similarity = _ssim_map(virtual_patch(pred), virtual_patch(target), 1.0, kernel_size, 1.5, stride,
                           (kernel_size - 1) // 2).mean()
    return 1 - similarity
