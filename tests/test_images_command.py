"""`pointmetrics images`: nerfstudio's PSNR / SSIM / LPIPS convention on image folders."""

from __future__ import annotations

import csv
import io as _io
import json
import pathlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import pointmetrics as pm
from pointmetrics import cli
from pointmetrics.lpips import LPIPS
from pointmetrics.protocols.card import file_sha256
from pointmetrics.protocols.images import images_eval

PIL = pytest.importorskip("PIL.Image", reason="the images command reads PNG/JPG with Pillow")
HEADS = pathlib.Path(__file__).resolve().parent / "data" / "lpips" / "v0.1"


def _torchmetrics_ssim(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """torchmetrics.functional.structural_similarity_index_measure with nerfacto's call (all defaults:
    gaussian 11, sigma 1.5, data_range=None, reduction mean), transcribed from its _ssim_update."""
    data_range = max(preds.max() - preds.min(), target.max() - target.min())
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    k, sigma, channel = 11, 1.5, preds.shape[1]
    dist = torch.arange((1 - k) / 2, (1 + k) / 2, 1.0, dtype=preds.dtype)
    gauss = torch.exp(-torch.pow(dist / sigma, 2) / 2)
    g = (gauss / gauss.sum())[None]
    kernel = torch.matmul(g.t(), g).expand(channel, 1, k, k)
    pad = (k - 1) // 2
    preds = F.pad(preds, (pad, pad, pad, pad), mode="reflect")
    target = F.pad(target, (pad, pad, pad, pad), mode="reflect")
    inputs = torch.cat([preds, target, preds * preds, target * target, preds * target])
    out = F.conv2d(inputs, kernel, groups=channel).split(preds.shape[0])
    mu_p_sq, mu_t_sq, mu_pt = out[0].pow(2), out[1].pow(2), out[0] * out[1]
    sigma_p_sq = torch.clamp(out[2] - mu_p_sq, min=0.0)
    sigma_t_sq = torch.clamp(out[3] - mu_t_sq, min=0.0)
    sigma_pt = out[4] - mu_pt
    full = ((2 * mu_pt + c1) * (2 * sigma_pt + c2)) / ((mu_p_sq + mu_t_sq + c1) * (sigma_p_sq + sigma_t_sq + c2))
    return full[..., pad:-pad, pad:-pad].reshape(full.shape[0], -1).mean(-1)


def _save(path, array: np.ndarray) -> str:
    PIL.fromarray(array).save(path)
    return str(path)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A seeded random AlexNet checkpoint in torchvision's format, and the real v0.1 head."""
    folder = tmp_path_factory.mktemp("lpips_weights")
    model = LPIPS("alex", pretrained=False)
    g = torch.Generator().manual_seed(11)
    state = {k: torch.randn(v.shape, generator=g) * (2.0 / max(v[0].numel(), 1)) ** 0.5
             for k, v in model.backbone.state_dict().items()}
    state["classifier.6.bias"] = torch.zeros(1000)  # a full torchvision checkpoint also holds the classifier
    torch.save(state, folder / "alexnet-owt-7be5be79.pth")
    return str(folder / "alexnet-owt-7be5be79.pth"), str(HEADS / "alex.pth")


@pytest.fixture
def folders(tmp_path):
    """pred/ and gt/: a.png (RGB, noisy), b.png against an RGBA ground truth b.png, masks."""
    rng = np.random.default_rng(5)
    pred, gt, masks = tmp_path / "pred", tmp_path / "gt", tmp_path / "masks"
    for d in (pred, gt, masks):
        d.mkdir()
    base = (np.linspace(0, 255, 72)[None, :, None] * np.ones((64, 1, 3))).astype(np.uint8)
    noisy = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    _save(gt / "a.png", base)
    _save(pred / "a.png", noisy)
    alpha = np.zeros((64, 72), np.uint8)
    alpha[16:48, 20:60] = 255
    _save(gt / "b.png", np.dstack([base, alpha]))
    _save(pred / "b.jpg", np.clip(base + rng.normal(0, 5, base.shape), 0, 255).astype(np.uint8))
    for name in ("a", "b"):
        _save(masks / f"{name}.png", alpha)
    return str(pred), str(gt), str(masks)


def _load(path) -> np.ndarray:
    return np.asarray(PIL.open(path)).astype(np.float64) / 255


def _as_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]


def test_nerfstudio_convention(folders, weights, capsys):
    pred, gt, _ = folders
    code = cli.main(["images", pred, gt, "--json", "--lpips-backbone", weights[0], "--lpips-head", weights[1]])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    model = LPIPS("alex", backbone_weights=weights[0], head_weights=weights[1])
    rows = {r["name"]: r for r in out["images"]}
    assert sorted(rows) == ["a.png", "b.jpg"]
    for name, p_file, g_file in (("a.png", "a.png", "a.png"), ("b.jpg", "b.jpg", "b.png")):
        p, g = _load(f"{pred}/{p_file}"), _load(f"{gt}/{g_file}")
        if g.shape[-1] == 4:  # nerfstudio's blend_background, black background by default
            g = g[..., :3] * g[..., 3:] + 0.0 * (1 - g[..., 3:])
        psnr = 10 * np.log10(1 / np.mean((p - g) ** 2))
        assert rows[name]["psnr"] == pytest.approx(psnr, rel=1e-12)
        # nerfacto calls ssim(gt, pred): symmetric, so either order
        ssim = float(_torchmetrics_ssim(_as_tensor(g), _as_tensor(p)))
        assert rows[name]["ssim"] == pytest.approx(ssim, rel=1e-10)
        lp = float(model(_as_tensor(p).float(), _as_tensor(g).float(), normalize=True)[0])
        assert rows[name]["lpips"] == pytest.approx(lp, rel=1e-5)
        assert rows[name]["size"] == [64, 72]
    for key in ("psnr", "ssim", "lpips"):
        assert out["mean"][key] == pytest.approx(np.mean([r[key] for r in rows.values()]), rel=1e-12)
    card = out["card"]
    assert "nerfstudio" in card["reference"] and "50e0e3c" in card["reference"]
    assert card["input_sha256"]["gt/b.png"] == file_sha256(f"{gt}/b.png")
    assert set(card["input_sha256"]) == {"pred/a.png", "pred/b.jpg", "gt/a.png", "gt/b.png"}
    assert card["parameters"]["lpips_net"] == "alex"


def test_background_and_mask(folders):
    pred, gt, masks = folders
    white = images_eval(pred, gt, background=(1, 1, 1), lpips_net=None)
    p, g = _load(f"{pred}/b.jpg"), _load(f"{gt}/b.png")
    g_white = g[..., :3] * g[..., 3:] + (1 - g[..., 3:])
    assert white.images[1].psnr == pytest.approx(10 * np.log10(1 / np.mean((p - g_white) ** 2)), rel=1e-12)
    assert white.images[1].lpips is None and "lpips" not in white.mean
    masked = images_eval(pred, gt, mask_dir=masks, lpips_net=None)
    m = _load(f"{masks}/a.png") > 0.5
    p, g = _load(f"{pred}/a.png"), _load(f"{gt}/a.png")
    # NeuS: 20 log10(1 / sqrt(sum mask (c - c')^2 / (3 sum mask)))
    neus = 20 * np.log10(1 / np.sqrt(((p - g) ** 2 * m[..., None]).sum() / (3 * m.sum())))
    assert masked.images[0].psnr == pytest.approx(neus, rel=1e-12)
    composed = [torch.from_numpy(np.where(m[..., None], x, 0.0).transpose(2, 0, 1))[None] for x in (p, g)]
    assert masked.images[0].ssim == pytest.approx(float(_torchmetrics_ssim(*composed)), rel=1e-10)
    assert "mask/a.png" in masked.card.input_sha256


def test_csv_and_card_beside(folders, tmp_path, capsys):
    pred, gt, _ = folders
    out = tmp_path / "res.csv"
    assert cli.main(["images", pred, gt, "--csv", "--lpips-net", "none", "--out", str(out)]) == 0
    rows = list(csv.reader(_io.StringIO(out.read_text())))
    assert rows[0] == ["image", "width", "height", "psnr", "ssim", "lpips"]
    assert [r[0] for r in rows[1:]] == ["a.png", "b.jpg", "mean"] and rows[1][1:3] == ["72", "64"]
    assert rows[3][5] == ""
    card = json.loads((tmp_path / "res.card.json").read_text())
    assert card["parameters"]["lpips_net"] is None and len(card["input_sha256"]) == 4
    assert cli.main(["images", pred, gt, "--lpips-net", "none"]) == 0
    table = capsys.readouterr().out
    assert "a.png" in table and "mean" in table and "LPIPS: off" in table


def test_identical_images_inf_psnr(folders, capsys):
    _, gt, _ = folders
    assert cli.main(["images", gt, gt, "--json", "--lpips-net", "none"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["mean"]["psnr"] == "inf" and out["images"][0]["ssim"] == pytest.approx(1.0)
    assert "inf" in captured.err


def _error(capsys, argv) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pointmetrics: error: "), err
    return err[0]


def test_errors(folders, tmp_path, capsys):
    pred, gt, masks = folders
    other = tmp_path / "other"
    other.mkdir()
    _save(other / "a.png", np.zeros((64, 72, 3), np.uint8))
    _save(other / "c.png", np.zeros((64, 72, 3), np.uint8))
    line = _error(capsys, ["images", str(other), gt, "--lpips-net", "none"])
    assert "only in" in line and "c.png" in line and "b.png" in line
    small = tmp_path / "small"
    small.mkdir()
    for name in ("a", "b"):
        _save(small / f"{name}.png", np.zeros((32, 40, 3), np.uint8))
    line = _error(capsys, ["images", str(small), gt, "--lpips-net", "none"])
    assert "small/a.png is 40x32" in line and "gt/a.png is 72x64" in line
    assert "not a folder" in _error(capsys, ["images", str(tmp_path / "nope"), gt, "--lpips-net", "none"])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_bytes(b"not a png")
    (tmp_path / "bad" / "b.png").write_bytes(b"not a png")
    assert "bad/a.png: not a readable image" in _error(capsys, ["images", str(tmp_path / "bad"), gt,
                                                                "--lpips-net", "none"])
    line = _error(capsys, ["images", pred, gt, "--lpips-backbone", str(tmp_path / "missing.pth")])
    assert "missing.pth does not exist" in line and "download.pytorch.org" in line
    (tmp_path / "exr").mkdir()
    (tmp_path / "exr" / "a.exr").write_bytes(b"\x76\x2f\x31\x01junk")
    _save(tmp_path / "exr" / "b.png", np.zeros((64, 72, 3), np.uint8))
    assert "a.exr" in _error(capsys, ["images", str(tmp_path / "exr"), gt, "--lpips-net", "none"])
    with pytest.raises(SystemExit):
        cli.main(["images", pred, gt, "--background", "2,0,0"])


def test_lpips_function_is_exported():
    assert pm.lpips is pm.lpips.__globals__["lpips"] and pm.LPIPS is LPIPS


def test_read_image_modes(tmp_path):
    from pointmetrics.protocols.images import read_image

    ramp = np.arange(0, 65536, 16, dtype=np.uint16).reshape(64, 64)
    _save(tmp_path / "deep.png", ramp)  # 16-bit grey: / 65535, repeated over RGB
    rgb, alpha = read_image(str(tmp_path / "deep.png"))
    assert alpha is None and rgb.shape == (64, 64, 3)
    np.testing.assert_allclose(rgb[..., 1], ramp / 65535.0)
    grey_alpha = np.dstack([np.full((8, 8), 51, np.uint8), np.full((8, 8), 255, np.uint8)])
    _save(tmp_path / "la.png", grey_alpha)
    rgb, alpha = read_image(str(tmp_path / "la.png"))
    np.testing.assert_allclose(rgb, 0.2) and np.testing.assert_allclose(alpha, 1.0)
