"""PSNR, SSIM (against scikit-image) and S3IM (against SSIM of its virtual patch)."""

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import pointmetrics as pm


def noisy_pair(gen, shape, noise=0.1):
    a = torch.rand(*shape, generator=gen, dtype=torch.float64)
    b = (a + noise * torch.randn(*shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    return a, b


def test_psnr_plain_masked_and_per_image(gen, device):
    a, b = noisy_pair(gen, (4, 3, 16, 16))
    da, db = a.to(device), b.to(device)
    mse = (a - b).square().mean()
    torch.testing.assert_close(pm.psnr(da, db).cpu(), -10 * torch.log10(mse))
    per_image = pm.psnr(da, db, dim=(1, 2, 3)).cpu()
    torch.testing.assert_close(per_image, -10 * torch.log10((a - b).square().mean((1, 2, 3))))
    torch.testing.assert_close(pm.psnr(da * 255, db * 255, data_range=255.0), pm.psnr(da, db))
    # NeuS: 20 log10(1 / sqrt(sum mask (c - c')^2 / (3 sum mask))) for (H, W, 3) colours
    c, d = noisy_pair(gen, (32, 32, 3))
    mask = (torch.rand(32, 32, 1, generator=gen) > 0.5).double()
    neus = 20 * torch.log10(1 / torch.sqrt((mask * (c - d) ** 2).sum() / (3 * mask.sum())))
    dc, dd = c.to(device), d.to(device)
    torch.testing.assert_close(pm.psnr(dc, dd, mask=mask.to(device)).cpu(), neus)
    assert math.isinf(float(pm.psnr(da, da)))
    with pytest.raises(ValueError, match="same shape"):
        pm.psnr(da, db[0])
    with pytest.raises(ValueError, match="does not broadcast"):
        pm.psnr(dc, dd, mask=torch.ones(5, device=device))


@pytest.mark.parametrize("shape", [(3, 40, 50), (64, 48), (2, 3, 24, 30)])
def test_ssim_equals_scikit_image(gen, device, shape):
    skimage_metrics = pytest.importorskip("skimage.metrics")
    a, b = noisy_pair(gen, shape, noise=0.2)
    ours = pm.ssim(a.to(device), b.to(device), reduction=None).cpu()
    images = [(a, b)] if len(shape) < 4 else list(zip(a, b))
    want = []
    for x, y in images:
        kwargs = {"channel_axis": -1} if x.dim() == 3 else {}
        to_np = (lambda t: t.permute(1, 2, 0).numpy()) if x.dim() == 3 else (lambda t: t.numpy())
        want.append(skimage_metrics.structural_similarity(
            to_np(x), to_np(y), gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0,
            **kwargs))
    np.testing.assert_allclose(np.atleast_1d(ours.numpy()), want, rtol=0, atol=1e-5)


def test_ssim_identity_gradient_and_errors(gen, device):
    a, b = noisy_pair(gen, (1, 3, 32, 32))
    a, b = a.to(device), b.to(device)
    assert float(pm.ssim(a, a)) == pytest.approx(1.0, abs=1e-12)
    assert float(pm.ssim(a, b)) < 0.99
    b.requires_grad_()
    pm.ssim(a, b, padding="zeros").backward()
    assert torch.isfinite(b.grad).all() and b.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="smaller than the 11x11 window"):
        pm.ssim(torch.rand(8, 8).to(device), torch.rand(8, 8).to(device))
    with pytest.raises(ValueError, match="padding"):
        pm.ssim(a, a, padding="reflect")
    with pytest.raises(TypeError, match="floating"):
        ints = torch.ones(16, 16, dtype=torch.int64, device=device)
        pm.ssim(ints, ints)


def pytorch_ssim(img1, img2, window_size, stride):
    """pytorch-ssim's formula, written out independently: a Gaussian centred at window_size // 2,
    zero padding (window_size - 1) // 2, the given stride, C1 = 0.01^2, C2 = 0.03^2."""
    xs = np.arange(window_size)
    g = np.exp(-((xs - window_size // 2) ** 2) / (2 * 1.5**2))
    g = torch.tensor(g / g.sum(), dtype=img1.dtype)
    C = img1.shape[1]
    w = torch.outer(g, g).expand(C, 1, window_size, window_size)
    pad = (window_size - 1) // 2

    def conv(t):
        return F.conv2d(t, w, padding=pad, groups=C, stride=stride)

    m1, m2 = conv(img1), conv(img2)
    s1, s2, s12 = conv(img1 * img1) - m1**2, conv(img2 * img2) - m2**2, conv(img1 * img2) - m1 * m2
    c1, c2 = 0.01**2, 0.03**2
    return (((2 * m1 * m2 + c1) * (2 * s12 + c2)) / ((m1**2 + m2**2 + c1) * (s1 + s2 + c2))).mean()


def test_s3im_with_one_repeat_is_ssim_of_the_patch(gen, device):
    rays_a, rays_b = noisy_pair(gen, (64 * 64, 3))
    loss = pm.s3im(rays_a.to(device), rays_b.to(device), repeat=1).cpu()
    patch = lambda r: r.t().reshape(1, 3, 64, 64)  # noqa: E731 - row-major, as the reference lays rays out
    torch.testing.assert_close(loss, 1 - pytorch_ssim(patch(rays_a), patch(rays_b), 4, 4))
    rays_a, rays_b = rays_a.to(device), rays_b.to(device)
    # Kernel and stride 4 over a 64 x 640 virtual image with padding 1: a 16 x 160 map.
    g = torch.Generator().manual_seed(3)
    full = pm.s3im(rays_a, rays_b, generator=g)
    assert 0 < float(full) < 1
    g = torch.Generator().manual_seed(3)
    assert torch.equal(full, pm.s3im(rays_a, rays_b, generator=g))  # seedable
    assert float(pm.s3im(rays_a, rays_a)) == pytest.approx(0.0, abs=1e-12)


def test_s3im_permutations_and_errors(gen, device):
    a, b = noisy_pair(gen, (8 * 8, 3))
    g = torch.Generator().manual_seed(0)
    got = pm.s3im(a.to(device), b.to(device), repeat=3, patch_height=8, patch_width=8, generator=g).cpu()
    g = torch.Generator().manual_seed(0)
    index = torch.cat([torch.arange(64), torch.randperm(64, generator=g), torch.randperm(64, generator=g)])
    virtual = lambda r: r[index].t().reshape(1, 3, 8, 24)  # noqa: E731
    torch.testing.assert_close(got, 1 - pytorch_ssim(virtual(a), virtual(b), 4, 4))
    a, b = a.to(device), b.to(device)
    b.requires_grad_()
    pm.s3im(a, b, patch_height=8, patch_width=8).backward()
    assert torch.isfinite(b.grad).all()
    with pytest.raises(ValueError, match="patch_height \\* patch_width = 4096 rays, got 64"):
        pm.s3im(a, b.detach())
    with pytest.raises(ValueError, match="repeat"):
        pm.s3im(a, b.detach(), repeat=0, patch_height=8, patch_width=8)


# ------------------------------------------------------------------------------------------------
# Any image size, empty masks (issue 13)


@pytest.mark.parametrize("padding", ["valid", "zeros"])
@pytest.mark.parametrize("kernel_size", [1, 2, 3, 4, 7, 11])
@pytest.mark.parametrize("size", [(1, 1), (1, 6), (5, 1), (2, 2), (3, 9), (12, 12)])
def test_ssim_works_or_names_the_size_for_every_image_and_kernel(gen, device, padding, kernel_size, size):
    a, b = noisy_pair(gen, (2, 3, *size))
    da, db = a.to(device), b.to(device)
    pad = 0 if padding == "valid" else (kernel_size - 1) // 2
    if min(size) + 2 * pad < kernel_size:
        with pytest.raises(ValueError, match=re.escape(f"size {tuple(size)}") + f".*kernel_size={kernel_size}"):
            pm.ssim(da, db, kernel_size=kernel_size, padding=padding)
        return
    got = pm.ssim(da, db, kernel_size=kernel_size, padding=padding, reduction=None).cpu()
    assert got.shape == (2,) and torch.isfinite(got).all()
    same = pm.ssim(da, da, kernel_size=kernel_size, padding=padding).cpu()
    assert torch.allclose(same, torch.ones((), dtype=a.dtype))
    if padding == "zeros":  # zero padding as pytorch-ssim (the same formula written out independently)
        torch.testing.assert_close(got[0], pytorch_ssim(a[:1], b[:1], kernel_size, 1))


def test_ssim_one_pixel_high_even_kernel_is_a_value_error():
    with pytest.raises(ValueError, match=r"size \(1, 5\).*kernel_size=2"):
        pm.ssim(torch.rand(1, 5), torch.rand(1, 5), kernel_size=2, padding="zeros")


def test_ssim_and_s3im_argument_errors(gen, device):
    a, b = noisy_pair(gen, (1, 3, 16, 16))
    a, b = a.to(device), b.to(device)
    with pytest.raises(ValueError, match="sigma"):
        pm.ssim(a, b, sigma=0.0)
    with pytest.raises(ValueError, match="data_range"):
        pm.ssim(a, b, data_range=float("inf"))
    with pytest.raises(ValueError, match="channels"):
        pm.ssim(a[:, :0], b[:, :0])
    with pytest.raises(ValueError, match="kernel_size"):
        pm.s3im(a.reshape(-1, 3)[:4], b.reshape(-1, 3)[:4], kernel_size=4, patch_height=1, patch_width=4, repeat=1)
    with pytest.warns(RuntimeWarning, match="no images"):
        assert math.isnan(float(pm.ssim(a[:0], b[:0])))
    assert pm.ssim(a[:0], b[:0], reduction=None).shape == (0,)


def test_psnr_over_no_pixels_is_nan_with_a_warning(gen, device):
    a, b = noisy_pair(gen, (2, 3, 8, 8))
    a, b = a.to(device), b.to(device)
    with pytest.warns(RuntimeWarning, match="mask"):
        assert math.isnan(float(pm.psnr(a, b, mask=torch.zeros(8, 8, dtype=torch.bool, device=device))))
    mask = torch.zeros(2, 1, 8, 8, dtype=torch.bool, device=device)
    mask[0, :, :4] = True
    with pytest.warns(RuntimeWarning, match="mask"):
        per_image = pm.psnr(a, b, mask=mask, dim=(1, 2, 3))
    assert math.isnan(float(per_image[1]))
    torch.testing.assert_close(per_image[0], pm.psnr(a[0, :, :4], b[0, :, :4]))
    with pytest.warns(RuntimeWarning, match="no pixels"):
        assert math.isnan(float(pm.psnr(a[:0], b[:0])))
