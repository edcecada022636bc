"""float16 and bfloat16 inputs against float64 (issue 13).

Every reduction, variance and sum of squares must run in float32 at least. Each test rounds its
inputs to the half dtype once, then compares the half result with the float64 result *of the same
rounded inputs*, so the only allowed difference is the rounding of the output (and float32
arithmetic inside): a few units in the half dtype's last place.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

import pointmetrics as pm

HALF = [torch.float16, torch.bfloat16]


def rounded(t: torch.Tensor, dtype: torch.dtype, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(t in dtype on ``device``, the same values in float64 on the CPU: the reference's inputs)."""
    half = t.to(dtype)
    return half.to(device), half.double()


def cameras_on(cameras, device):
    return pm.Cameras(cameras.view.to(device), cameras.projection.to(device))


def assert_close_to_float64(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype, ulps: float = 4.0) -> None:
    """``got`` (from half inputs, on any device) within ``ulps`` units of the half dtype's precision
    of ``want`` (on the CPU)."""
    got = got.cpu()
    assert torch.isfinite(got).all(), f"got {got}"
    rtol = ulps * torch.finfo(dtype).eps
    torch.testing.assert_close(got.double(), want, rtol=rtol, atol=rtol * 1e-3)


# ------------------------------------------------------------------------------------------------
# Images


@pytest.mark.parametrize("dtype", HALF)
def test_psnr_of_large_half_images_is_finite(gen, device, dtype):
    # 3 x 512 x 512 images: the sum of squared errors is about 2000, the mean 0.0024 (26 dB); a
    # float16 sum of 786k squares used to overflow to inf
    a = torch.rand(3, 512, 512, generator=gen)
    b = (a + 0.05 * torch.randn(a.shape, generator=gen)).clamp(0, 1)
    (a16, a64), (b16, b64) = rounded(a, dtype, device), rounded(b, dtype, device)
    got = pm.psnr(a16, b16)
    assert got.dtype == dtype
    assert_close_to_float64(got, pm.psnr(a64, b64), dtype)
    mask = torch.rand(512, 512, generator=gen) > 0.3
    assert_close_to_float64(pm.psnr(a16, b16, mask=mask.to(device)), pm.psnr(a64, b64, mask=mask), dtype)
    assert_close_to_float64(pm.psnr(a16[None], b16[None], dim=(1, 2, 3)), pm.psnr(a64[None], b64[None], dim=(1, 2, 3)),
                            dtype)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("padding", ["valid", "zeros"])
def test_ssim_of_half_images_on_a_0_255_scale(gen, device, dtype, padding):
    # products of 0-255 intensities reach 65025 and their blurred products overflow float16
    a = 255 * torch.rand(2, 3, 40, 48, generator=gen)
    b = (a + 20 * torch.randn(a.shape, generator=gen)).clamp(0, 255)
    (a16, a64), (b16, b64) = rounded(a, dtype, device), rounded(b, dtype, device)
    got = pm.ssim(a16, b16, data_range=255.0, padding=padding, reduction=None)
    assert got.dtype == dtype
    assert_close_to_float64(got, pm.ssim(a64, b64, data_range=255.0, padding=padding, reduction=None), dtype)


@pytest.mark.parametrize("dtype", HALF)
def test_ssim_of_low_contrast_half_images(gen, device, dtype):
    # a faint texture on a bright background: blur(x^2) - blur(x)^2 cancels almost entirely, and
    # bfloat16 arithmetic used to give 0.147 where float64 gives 0.82
    base = 0.8 + 0.02 * torch.rand(1, 3, 64, 64, generator=gen)
    other = base + 0.01 * torch.randn(base.shape, generator=gen)
    (a16, a64), (b16, b64) = rounded(base, dtype, device), rounded(other, dtype, device)
    want = pm.ssim(a64, b64)
    assert 0.2 < float(want) < 0.99
    assert_close_to_float64(pm.ssim(a16, b16), want, dtype)


@pytest.mark.parametrize("dtype", HALF)
def test_s3im_of_half_rays(gen, device, dtype):
    a = torch.rand(32 * 32, 3, generator=gen)
    b = (a + 0.1 * torch.randn(a.shape, generator=gen)).clamp(0, 1)
    (a16, a64), (b16, b64) = rounded(a, dtype, device), rounded(b, dtype, device)
    got = pm.s3im(a16, b16, patch_height=32, patch_width=32, generator=torch.Generator().manual_seed(1))
    want = pm.s3im(a64, b64, patch_height=32, patch_width=32, generator=torch.Generator().manual_seed(1))
    assert got.dtype == dtype
    assert_close_to_float64(got, want, dtype)


# ------------------------------------------------------------------------------------------------
# SDF regularisers


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("kind", ["sq", "abs"])
def test_eikonal_of_large_half_gradients(gen, device, dtype, kind):
    # 5000 gradients of norm 11: (11 - 1)^2 = 100 each, a float16 sum of 500,000 overflowed to inf
    grad = torch.randn(5000, 3, generator=gen)
    grad = 11 * grad / grad.norm(dim=1, keepdim=True)
    g16, g64 = rounded(grad, dtype, device)
    got = pm.eikonal_loss(g16, kind=kind)
    assert got.dtype == dtype
    assert_close_to_float64(got, pm.eikonal_loss(g64, kind=kind), dtype)
    if kind == "sq":
        assert float(got) == pytest.approx(100, rel=0.02)
    mask = torch.rand(5000, generator=gen) > 0.5
    assert_close_to_float64(pm.eikonal_loss(g16, kind=kind, mask=mask.to(device)),
                            pm.eikonal_loss(g64, kind=kind, mask=mask), dtype)


def _quadratic_sdf_terms(x: torch.Tensor, scale: float):
    """u(x) = scale |x|^2 / 2: grad = scale x, Hessian = scale I, Laplacian = 3 scale."""
    x = x.clone().requires_grad_()
    sdf = (x * (0.5 * scale * x)).sum(-1)
    grad = pm.sdf_gradient(sdf, x)
    return pm.directional_divergence(x, grad), pm.laplacian_divergence(x, grad), pm.laplacian_divergence(
        x, grad, norm="l2")


@pytest.mark.parametrize("dtype", HALF)
def test_divergence_terms_of_half_fields(gen, device, dtype):
    # |grad|^2 = 300^2 overflows float16 in the directional divergence; the Laplacian 60 is clamped
    # at 50 and 5000 of them sum to 250,000, beyond float16
    direction = torch.randn(5000, 3, generator=gen)
    x = 300 * direction / direction.norm(dim=1, keepdim=True)
    x16, x64 = rounded(x, dtype, device)
    got = _quadratic_sdf_terms(x16, 1.0)
    want = _quadratic_sdf_terms(x64, 1.0)
    for g, w in zip(got, want):
        assert g.dtype == dtype
        assert_close_to_float64(g, w, dtype)
    got = _quadratic_sdf_terms(x16 / 300, 20.0)
    want = _quadratic_sdf_terms(x64 / 300, 20.0)
    assert float(want[1]) == 50.0
    for g, w in zip(got, want):
        assert_close_to_float64(g, w, dtype)


@pytest.mark.parametrize("dtype", HALF)
def test_sample_terms_of_many_half_values(gen, device, dtype):
    # 200,000 samples: every sum of per-sample terms of order 1 exceeds float16's 65504
    n = 200_000
    sdf16, sdf64 = rounded(0.1 * torch.randn(n, generator=gen), dtype, device)
    opacity16, opacity64 = rounded(torch.rand(n, generator=gen), dtype, device)
    mask = torch.rand(n, generator=gen)
    dmask = mask.to(device)
    pairs = [
        (pm.sparsity_loss(sdf16, scale=10.0), pm.sparsity_loss(sdf64, scale=10.0)),
        (pm.sdf_points_loss(sdf16), pm.sdf_points_loss(sdf64)),
        (pm.opacity_entropy_loss(opacity16), pm.opacity_entropy_loss(opacity64)),
        (pm.mask_bce_loss(opacity16, dmask), pm.mask_bce_loss(opacity64, mask)),
        (pm.mask_bce_loss(opacity16, dmask, convention="neus"), pm.mask_bce_loss(opacity64, mask, convention="neus")),
    ]
    for got, want in pairs:
        assert got.dtype == dtype
        assert_close_to_float64(got, want, dtype)


def test_empty_sample_sets_give_zero_losses(device):
    # the README: empty sample sets give 0 (losses), only sdf_points_loss warns
    grad = torch.randn(10, 3, dtype=torch.float16).to(device)
    assert float(pm.eikonal_loss(grad, mask=torch.zeros(10, dtype=torch.bool, device=device))) == 0.0
    assert float(pm.eikonal_loss(grad[:0])) == 0.0
    assert float(pm.sparsity_loss(torch.zeros(0, dtype=torch.bfloat16, device=device))) == 0.0
    with pytest.warns(RuntimeWarning, match="no points"):
        assert float(pm.sdf_points_loss(torch.zeros(0, dtype=torch.float16, device=device))) == 0.0


def test_mask_bce_rejects_soft_masks_outside_0_1(device):
    with pytest.raises(ValueError, match="mask must lie in"):
        pm.mask_bce_loss(torch.rand(5).to(device), torch.tensor([0.0, 1.0, 2.0, 0.5, 0.5], device=device))


# ------------------------------------------------------------------------------------------------
# LCD and DDM


@pytest.mark.parametrize("dtype", HALF)
def test_lcd_with_half_clouds(gen, device, dtype):
    torch.manual_seed(0)
    net = pm.LCDWeightNet()
    gt16, gt64 = rounded(torch.rand(2, 700, 3, generator=gen), dtype, device)
    rec16, rec64 = rounded(torch.rand(2, 500, 3, generator=gen), dtype, device)
    got = pm.lcd_loss(gt16, rec16, copy.deepcopy(net).to(device))  # float32 network: the points are cast to float32
    want = pm.lcd_loss(gt64, rec64, net.double())
    torch.testing.assert_close(got.cpu().double(), want, rtol=1e-4, atol=0)
    # a half network: its layers run in half, but weights, distances and sums in float32
    half_net = pm.LCDWeightNet()
    half_net.load_state_dict(net.state_dict())
    half_net = half_net.to(dtype).to(device)
    reference = pm.LCDWeightNet().double()
    reference.load_state_dict(half_net.state_dict())  # the same rounded weights, in float64
    got = pm.lcd_loss(gt16, rec16, half_net)
    assert got.dtype == dtype and torch.isfinite(got)
    torch.testing.assert_close(got.cpu().double(), pm.lcd_loss(gt64, rec64, reference), rtol=0.05, atol=0)


@pytest.mark.parametrize("dtype", HALF)
def test_ddm_with_half_inputs(gen, device, dtype):
    # std=0: the queries are the points themselves, the same in every dtype
    s16, s64 = rounded(torch.rand(2, 400, 3, generator=gen), dtype, device)
    t16, t64 = rounded(torch.rand(2, 300, 3, generator=gen), dtype, device)
    got = pm.ddm_p2p(s16, t16, std=0.0, repeat=2)
    assert got.dtype == dtype
    assert_close_to_float64(got, pm.ddm_p2p(s64, t64, std=0.0, repeat=2), dtype)
    verts = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1.0]])
    faces = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    v16, v64 = rounded(verts * 0.9 + 0.05, dtype, device)
    dfaces = faces.to(device)
    got = pm.ddm_m2p(v16, dfaces, t16[0], std=0.0)
    assert got.dtype == dtype
    assert_close_to_float64(got, pm.ddm_m2p(v64, faces, t64[0], std=0.0), dtype)
    got = pm.ddm_m2m(v16, dfaces, verts.to(dtype).to(device), dfaces, num_queries=500, std=0.0,
                     generator=torch.Generator().manual_seed(2))
    want = pm.ddm_m2m(v64, faces, verts.double(), faces, num_queries=500, std=0.0,
                      generator=torch.Generator().manual_seed(2))
    assert got.dtype == dtype
    assert_close_to_float64(got, want, dtype, ulps=8)


# ------------------------------------------------------------------------------------------------
# Meshes and normal maps


def _tetrahedron() -> tuple[torch.Tensor, torch.Tensor]:
    verts = torch.tensor([[-0.5, -0.4, -0.3], [0.6, -0.3, -0.2], [-0.2, 0.7, -0.1], [0.1, 0.0, 0.65]])
    faces = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    return verts, faces


@pytest.mark.parametrize("dtype", HALF)
def test_mesh_geometry_of_half_vertices(device, dtype):
    verts, faces = _tetrahedron()
    v16, v64 = rounded(verts, dtype, device)
    dfaces = faces.to(device)
    areas, normals = pm.mesh.face_areas_normals(v16, dfaces)
    want_areas, want_normals = pm.mesh.face_areas_normals(v64, faces)
    assert areas.dtype == dtype
    assert_close_to_float64(areas, want_areas, dtype)
    torch.testing.assert_close(normals.cpu().double(), want_normals, rtol=0, atol=2 * torch.finfo(dtype).eps)
    for weighting in ("area", "angle"):
        got = pm.vertex_normals(v16, dfaces, weighting=weighting)
        assert got.dtype == dtype
        torch.testing.assert_close(got.cpu().double(), pm.vertex_normals(v64, faces, weighting=weighting), rtol=0,
                                   atol=2 * torch.finfo(dtype).eps)
    s = pm.sample_points_on_mesh(v16, dfaces, 1000, generator=torch.Generator().manual_seed(0))
    want = pm.sample_points_on_mesh(v64, faces, 1000, generator=torch.Generator().manual_seed(0))
    assert s.points.dtype == dtype and torch.equal(s.face_idx.cpu(), want.face_idx)
    torch.testing.assert_close(s.points.cpu().double(), want.points, rtol=0, atol=torch.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("space", ["view", "world"])
@pytest.mark.parametrize("shading", ["smooth", "flat"])
def test_render_normals_of_half_vertices(device, dtype, space, shading):
    verts, faces = _tetrahedron()
    v16, v64 = rounded(verts, dtype, device)
    cameras = pm.Cameras.orthographic(pm.rotation_y([0, 90, 200]))
    dfaces, dcameras = faces.to(device), cameras_on(cameras, device)
    got = pm.render_normals(v16, dfaces, dcameras, 48, space=space, shading=shading)
    want = pm.render_normals(v64, faces, cameras, 48, space=space, shading=shading)
    assert got.normals.dtype == torch.float32  # documented: float32 for half vertices
    got_mask, got_normals = got.mask.cpu(), got.normals.cpu()
    both = got_mask & want.mask
    assert both.sum() > 0.95 * want.mask.sum()  # the same vertices: at most a few edge pixels differ
    torch.testing.assert_close(got_normals[both].double(), want.normals[both], rtol=0, atol=1e-5)
    v16.requires_grad_()
    pm.render_normals(v16, dfaces, dcameras, 48, space=space, shading=shading).normals.sum().backward()
    assert v16.grad is not None and v16.grad.dtype == dtype


@pytest.mark.parametrize("dtype", HALF)
def test_point_mesh_metrics_of_half_inputs(gen, device, dtype):
    verts, faces = _tetrahedron()
    v16, v64 = rounded(verts, dtype, device)
    p16, p64 = rounded(torch.rand(300, 3, generator=gen) - 0.5, dtype, device)
    got = pm.point_to_surface_distance(p16, v16, faces.to(device))
    assert math.isfinite(float(got))
    torch.testing.assert_close(got.cpu().double(), pm.point_to_surface_distance(p64, v64, faces), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", HALF)
def test_lcd_penalty_and_camera_clip_of_half_inputs(gen, device, dtype):
    net = pm.LCDWeightNet()
    want = net.double().l2_penalty().detach()
    got = net.to(dtype).to(device).l2_penalty().detach()
    assert got.dtype == torch.float32
    reference_net = pm.LCDWeightNet().double()
    reference_net.load_state_dict(net.state_dict())
    torch.testing.assert_close(got.cpu().double(), reference_net.l2_penalty(), rtol=1e-5, atol=0)
    assert abs(float(want) - float(got)) <= 4 * torch.finfo(dtype).eps * float(want)
    cameras = pm.Cameras.perspective(pm.look_at([[0.0, 0.0, 300.0]]), near=1.0, far=1000.0)
    v16, v64 = rounded(200 * torch.rand(1, 50, 3, generator=gen), dtype, device)
    clip = cameras_on(cameras, device).clip(v16)
    assert clip.dtype == torch.float32 and torch.isfinite(clip).all()
    torch.testing.assert_close(clip.cpu().double(), cameras.clip(v64), rtol=1e-5, atol=1e-4)
