"""Image terms for neural-field training and evaluation: PSNR, SSIM (Wang et al.
2004) and S3IM (Xie et al. 2023)."""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F

from . import _checks
from ._reduce import compute_dtype

__all__ = ["psnr", "s3im", "ssim"]


def _check_data_range(data_range) -> None:
    if isinstance(data_range, bool) or not isinstance(data_range, (int, float)) or not (
        data_range > 0 and math.isfinite(data_range)
    ):
        raise ValueError(f"data_range must be a positive finite number, got {data_range!r}")


def _image_pair(pred, target) -> tuple[torch.Tensor, torch.Tensor]:
    pred, target = _checks.check_float_tensor(pred, "pred"), _checks.check_float_tensor(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    if pred.device != target.device:
        raise ValueError(f"pred is on {pred.device} but target is on {target.device}")
    # Mixed dtypes are promoted as torch promotes them (float32 with float64: float64), as for clouds.
    dtype = torch.promote_types(pred.dtype, target.dtype)
    return pred.to(dtype), target.to(dtype)


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
    images); all of them by default. Identical images give +inf. A mean over no pixels (an
    all-False mask, or empty images) gives NaN with a RuntimeWarning.

    The MSE is accumulated in float32 (float64 for float64 inputs); the result has the dtype of
    ``pred`` (of the promoted pair for mixed dtypes).
    """
    pred, target = _image_pair(pred, target)
    _check_data_range(data_range)
    compute = compute_dtype(pred.dtype)
    err = (pred.to(compute) - target.to(compute)).square()
    weight = torch.ones_like(err) if mask is None else _checks.broadcast_mask(mask, err.shape, compute)
    dims = tuple(range(err.dim())) if dim is None else dim
    count = weight.sum(dims)
    if bool((count == 0).any()):
        what = "images have no pixels" if mask is None else "mask selects no pixels"
        warnings.warn(f"psnr: the {what} to average over; the PSNR is NaN", RuntimeWarning, stacklevel=2)
    mse = torch.where(count == 0, torch.nan, (weight * err).sum(dims) / count.clamp(min=torch.finfo(compute).tiny))
    return (10.0 * torch.log10(data_range**2 / mse)).to(pred.dtype)


def _gaussian_window(size: int, sigma: float, dtype, device) -> torch.Tensor:
    """Normalised 1D Gaussian with its centre at size // 2 (off-centre for an even size, as in
    pytorch-ssim and S3IM)."""
    offsets = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-offsets.square() / (2 * sigma**2))
    return (g / g.sum()).to(dtype=dtype, device=device)


def _check_window_fits(size: tuple[int, int], kernel_size: int, pad: int, what: str) -> None:
    """The window must fit at least once: H + 2 pad >= kernel_size and the same for W."""
    if min(size) + 2 * pad < kernel_size:
        raise ValueError(
            f"{what} of size {size} are smaller than the {kernel_size}x{kernel_size} window: "
            f"kernel_size={kernel_size} with padding {pad} needs height and width >= {kernel_size - 2 * pad}"
        )


def _ssim_map(x, y, data_range, kernel_size, sigma, stride, padding):
    """Per-pixel SSIM of (B, C, H, W) images (Wang et al. 2004, population covariance).

    Computed in float32 (float64 for float64). Local moments are taken about each image channel's
    mean m (var = blur((x - m)^2) - blur(x - m)^2, equal to blur(x^2) - blur(x)^2 because the
    window sums to 1), which avoids the cancellation of large means against small variances.
    Zero padding is applied before the shift, so it still pads the unshifted image with zeros.
    """
    compute = compute_dtype(x.dtype)
    x, y = x.to(compute), y.to(compute)
    if padding:
        x, y = F.pad(x, (padding,) * 4), F.pad(y, (padding,) * 4)
    C = x.shape[1]
    g = _gaussian_window(kernel_size, sigma, compute, x.device)
    window = (g[:, None] * g[None, :]).expand(C, 1, kernel_size, kernel_size)

    def blur(t):
        return F.conv2d(t, window, stride=stride, groups=C)

    m_x = x.detach().mean((2, 3), keepdim=True)  # any shift gives the same value; detached: no extra graph
    m_y = y.detach().mean((2, 3), keepdim=True)
    xc, yc = x - m_x, y - m_y
    mu_xc, mu_yc = blur(xc), blur(yc)
    var_x = blur(xc * xc) - mu_xc.square()
    var_y = blur(yc * yc) - mu_yc.square()
    cov = blur(xc * yc) - mu_xc * mu_yc
    mu_x, mu_y = mu_xc + m_x, mu_yc + m_y
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
    reflected border, then crops it); images smaller than kernel_size raise a ValueError.
    ``padding="zeros"`` zero-pads by (kernel_size - 1) // 2 and averages every window position, as
    pytorch-ssim does: any image size works for an odd kernel_size, and an even one needs images
    at least 2 pixels high and wide.

    Images: (B, C, H, W), (C, H, W) or (H, W). ``reduction``: "mean" over the batch (NaN with a
    warning for an empty batch), or None for one value per image. Differentiable. Computed in
    float32 (float64 for float64 inputs) and returned in the dtype of ``pred``.
    """
    pred, target = _image_pair(pred, target)
    if pred.dim() not in (2, 3, 4):
        raise ValueError(f"images must be (B, C, H, W), (C, H, W) or (H, W), got shape {tuple(pred.shape)}")
    _checks.check_choice(padding, ("valid", "zeros"), "padding")
    _checks.check_choice(reduction, ("mean", None), "reduction")
    _checks.check_positive_int(kernel_size, "kernel_size")
    _checks.check_positive_number(sigma, "sigma")
    _check_data_range(data_range)
    batched = pred.dim() == 4

    def as_batch(images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W), also when a size is 0
        return images if batched else images[None] if images.dim() == 3 else images[None, None]

    x, y = as_batch(pred), as_batch(target)
    if x.shape[1] == 0:
        raise ValueError(f"pred and target have no channels (shape {tuple(pred.shape)})")
    pad = 0 if padding == "valid" else (kernel_size - 1) // 2
    _check_window_fits(tuple(x.shape[-2:]), kernel_size, pad, f"images (padding={padding!r})")
    if x.shape[0] == 0:
        per_image = x.new_zeros(0, dtype=compute_dtype(x.dtype))
    else:
        per_image = _ssim_map(x, y, data_range, kernel_size, sigma, 1, pad).mean((1, 2, 3))
    if reduction == "mean":
        if per_image.numel() == 0:
            warnings.warn("ssim: the batch has no images; SSIM is NaN", RuntimeWarning, stacklevel=2)
        return per_image.mean().to(pred.dtype)
    return (per_image if batched else per_image[0]).to(pred.dtype)


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
    the authors' configurations). Computed in float32 (float64 for float64 inputs) and returned in
    the dtype of ``pred``.
    """
    pred, target = _image_pair(pred, target)
    if pred.dim() != 2:
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
    if pred.shape[1] == 0:
        raise ValueError(f"pred and target have no colour channels (shape {tuple(pred.shape)})")
    pad = (kernel_size - 1) // 2
    _check_window_fits((patch_height, patch_width * repeat), kernel_size, pad, "virtual patches (patch_height, "
                       "patch_width * repeat)")
    device = pred.device if generator is None else generator.device
    order = [torch.arange(rays, device=device)]
    order += [torch.randperm(rays, generator=generator, device=device) for _ in range(repeat - 1)]
    index = torch.cat(order).to(pred.device)
    C = pred.shape[1]

    def virtual_patch(colours):
        return colours[index].t().reshape(1, C, patch_height, patch_width * repeat)

    similarity = _ssim_map(virtual_patch(pred), virtual_patch(target), 1.0, kernel_size, 1.5, stride, pad).mean()
    return (1 - similarity).to(pred.dtype)
