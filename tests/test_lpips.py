"""LPIPS against the lpips package (stored fixture) and against a transcription of its forward."""

from __future__ import annotations

import importlib.util
import json
import pathlib

import pytest
import torch
import torch.nn.functional as F

import pointmetrics as pm
from pointmetrics.lpips import LPIPS, lpips_weight_paths
from pointmetrics.lpips_nets import BACKBONE_FILES, CHANNELS, NETS, SLICES

ROOT = pathlib.Path(__file__).resolve().parent.parent
LPIPS_DATA = ROOT / "tests" / "data" / "lpips"
FIXTURE = LPIPS_DATA / "parity.json"


def _fixture_script():
    spec = importlib.util.spec_from_file_location("make_lpips_fixture", ROOT / "scripts" / "make_lpips_fixture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _heads(net: str) -> dict[str, torch.Tensor]:
    return torch.load(LPIPS_DATA / "v0.1" / f"{net}.pth", map_location="cpu", weights_only=True)


def _random_model(net: str, seed: int, dtype=torch.float64) -> tuple[LPIPS, dict, dict]:
    """An LPIPS with seeded random weights (He-scaled backbone, positive heads like the trained ones)."""
    model = LPIPS(net, pretrained=False)
    shapes = {k: tuple(v.shape) for k, v in model.backbone.state_dict().items()}
    backbone = _fixture_script().random_backbone(shapes, seed)
    g = torch.Generator().manual_seed(seed + 7)
    head = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) * 0.1 for i, c in enumerate(CHANNELS[net])}
    model.load_weights(backbone, head)
    return model.to(dtype), backbone, head


# A transcription of lpips/lpips.py LPIPS.forward and lpips/pretrained_networks.py (082bb24), on F.conv2d.
def _ref_features(net: str, x: torch.Tensor, w: dict) -> list[torch.Tensor]:
    def conv(i, h, stride=1, padding=0):
        return F.conv2d(h, w[f"features.{i}.weight"], w[f"features.{i}.bias"], stride=stride, padding=padding)

    def fire(i, h):
        s = F.relu(F.conv2d(h, w[f"features.{i}.squeeze.weight"], w[f"features.{i}.squeeze.bias"]))
        e1 = F.relu(F.conv2d(s, w[f"features.{i}.expand1x1.weight"], w[f"features.{i}.expand1x1.bias"]))
        e3 = F.relu(F.conv2d(s, w[f"features.{i}.expand3x3.weight"], w[f"features.{i}.expand3x3.bias"], padding=1))
        return torch.cat([e1, e3], 1)

    outs = []
    if net == "alex":
        h = F.relu(conv(0, x, stride=4, padding=2)); outs.append(h)  # noqa: E702
        h = F.relu(conv(3, F.max_pool2d(h, 3, 2), padding=2)); outs.append(h)  # noqa: E702
        h = F.relu(conv(6, F.max_pool2d(h, 3, 2), padding=1)); outs.append(h)  # noqa: E702
        h = F.relu(conv(8, h, padding=1)); outs.append(h)  # noqa: E702
        h = F.relu(conv(10, h, padding=1)); outs.append(h)  # noqa: E702
    elif net == "vgg":
        h, i = x, 0
        for block, n in enumerate((2, 2, 3, 3, 3)):
            if block:
                h, i = F.max_pool2d(h, 2, 2), i + 1
            for _ in range(n):
                h, i = F.relu(conv(i, h, padding=1)), i + 2
            outs.append(h)
    else:
        h = F.relu(conv(0, x, stride=2)); outs.append(h)  # noqa: E702
        h = fire(4, fire(3, F.max_pool2d(h, 3, 2, ceil_mode=True))); outs.append(h)  # noqa: E702
        h = fire(7, fire(6, F.max_pool2d(h, 3, 2, ceil_mode=True))); outs.append(h)  # noqa: E702
        h = fire(9, F.max_pool2d(h, 3, 2, ceil_mode=True)); outs.append(h)  # noqa: E702
        for i in (10, 11, 12):
            h = fire(i, h); outs.append(h)  # noqa: E702
    return outs


def _ref_lpips(net, in0, in1, backbone, head, normalize):
    if normalize:
        in0, in1 = 2 * in0 - 1, 2 * in1 - 1
    # The reference's buffers are float32 (torch.Tensor([...])), also in a model moved to float64.
    shift = torch.Tensor([-0.030, -0.088, -0.188])[None, :, None, None].to(in0.dtype)
    scale = torch.Tensor([0.458, 0.448, 0.450])[None, :, None, None].to(in0.dtype)
    w = {k: v.to(in0.dtype) for k, v in backbone.items()}
    outs0 = _ref_features(net, (in0 - shift) / scale, w)
    outs1 = _ref_features(net, (in1 - shift) / scale, w)
    val = 0
    for kk, (a, b) in enumerate(zip(outs0, outs1)):
        a = a / (torch.sqrt(torch.sum(a**2, dim=1, keepdim=True)) + 1e-10)
        b = b / (torch.sqrt(torch.sum(b**2, dim=1, keepdim=True)) + 1e-10)
        lin = F.conv2d((a - b) ** 2, head[f"lin{kk}.model.1.weight"].to(in0.dtype))
        val = val + lin.mean([2, 3], keepdim=True)
    return val.flatten()


@pytest.mark.parametrize("net", NETS)
def test_matches_transcription_float64(net, gen):
    model, backbone, head = _random_model(net, seed=int(torch.randint(0, 2**31, (1,), generator=gen)))
    x0 = torch.rand(2, 3, 48, 56, generator=gen, dtype=torch.float64)
    x1 = (x0 + 0.3 * torch.randn(x0.shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    for normalize in (True, False):
        got = model(x0, x1, normalize=normalize)
        want = _ref_lpips(net, x0, x1, backbone, head, normalize)
        assert got.dtype == torch.float64 and got.shape == (2,)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)


@pytest.mark.skipif(not FIXTURE.is_file(), reason="tests/data/lpips/parity.json is absent: "
                    "run scripts/make_lpips_fixture.py where the lpips package imports")
@pytest.mark.parametrize("net", NETS)
def test_matches_lpips_package(net):
    """The lpips package's own outputs (lpips 0.1.4 source, torch 2.13, torchvision 0.28) with the
    same seeded backbone and the real v0.1 heads."""
    fixture = json.loads(FIXTURE.read_text())
    script = _fixture_script()
    x0, x1 = script.random_images(fixture["seed"])
    assert script.checksum([x0, x1]) == pytest.approx(fixture["image_checksum"], rel=1e-12)
    model = LPIPS(net, pretrained=False)
    shapes = {k: tuple(v.shape) for k, v in model.backbone.state_dict().items()}
    backbone = script.random_backbone(shapes, fixture["seed"])
    ref = fixture["nets"][net]
    assert script.checksum(backbone.values()) == pytest.approx(ref["backbone_checksum"], rel=1e-12)
    model.load_weights(backbone, _heads(net))
    torch.testing.assert_close(model(x0, x1, normalize=True), torch.tensor(ref["normalize_true"]),
                               rtol=2e-5, atol=1e-7)
    torch.testing.assert_close(model(2 * x0 - 1, 2 * x1 - 1), torch.tensor(ref["normalize_false"]),
                               rtol=2e-5, atol=1e-7)


def test_properties(gen, device):
    model, _, _ = _random_model("alex", seed=3, dtype=torch.float32)
    model = model.to(device)
    x = torch.rand(3, 3, 64, 64, generator=gen).to(device)
    assert torch.equal(model(x, x, normalize=True), torch.zeros(3, device=device))
    y = torch.rand(3, 3, 64, 64, generator=gen).to(device).requires_grad_()
    d = model(x, y, normalize=True)
    assert (d > 0).all()
    d.sum().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0
    # One image (3, H, W) gives a scalar; normalize maps [0, 1] to [-1, 1].
    single = model(x[0], y[0].detach(), normalize=True)
    assert single.shape == () and float(single) == pytest.approx(float(d[0].detach()), rel=1e-5)
    assert float(model(2 * x[0] - 1, 2 * y[0].detach() - 1)) == pytest.approx(float(single), rel=1e-5)


def test_torchvision_checkpoint_and_files(tmp_path, monkeypatch):
    """A torchvision-format checkpoint (with classifier keys) and the real head load from paths and
    from torch.hub's cache; pm.lpips caches the network."""
    model, backbone, _ = _random_model("squeeze", seed=5, dtype=torch.float32)
    full = dict(backbone, **{"classifier.1.weight": torch.zeros(1000, 512, 1, 1)})
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(full, tmp_path / "hub" / "checkpoints" / BACKBONE_FILES["squeeze"][0])
    head_path = LPIPS_DATA / "v0.1" / "squeeze.pth"
    paths = lpips_weight_paths("squeeze", head_weights=head_path, download=False)
    assert paths == (str(tmp_path / "hub" / "checkpoints" / BACKBONE_FILES["squeeze"][0]), str(head_path))
    x = torch.rand(1, 3, 40, 40)
    y = torch.rand(1, 3, 40, 40)
    a = pm.lpips(x, y, net="squeeze", normalize=True, head_weights=head_path, download=False)
    b = pm.lpips(x, y, net="squeeze", normalize=True, head_weights=head_path, download=False)
    model.load_weights(backbone, _heads("squeeze"))
    torch.testing.assert_close(a, model(x, y, normalize=True))
    assert torch.equal(a, b) and a.shape == (1,)


def test_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError, match=r"alexnet-owt-7be5be79\.pth.*download\.pytorch\.org.*checkpoints"):
        LPIPS("alex", download=False)
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        LPIPS("vgg", backbone_weights=tmp_path / "nowhere.pth")
    with pytest.raises(ValueError, match="net"):
        LPIPS("resnet", pretrained=False)
    model = LPIPS("alex", pretrained=False)
    with pytest.raises(ValueError, match="head"):
        model.load_weights(model.backbone.state_dict(), _heads("vgg"))
    with pytest.raises(ValueError, match="torchvision alex checkpoint"):
        model.load_weights({"features.0.weight": torch.zeros(64, 3, 11, 11)}, _heads("alex"))
    with pytest.raises(ValueError, match="RGB"):
        model(torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError, match="same shape"):
        model(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 60))
    with pytest.raises(ValueError, match="too small"):
        model(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))


def test_slices_match_channels():
    for net in NETS:
        assert len(SLICES[net]) - 1 == len(CHANNELS[net])


def test_head_found_in_installed_lpips_package(tmp_path, monkeypatch):
    """An installed lpips package's weights/v0.1 folder is used for the head, without importing lpips."""
    package = tmp_path / "site" / "lpips"
    (package / "weights" / "v0.1").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('lpips must not be imported')\n")
    (package / "weights" / "v0.1" / "vgg.pth").write_bytes((LPIPS_DATA / "v0.1" / "vgg.pth").read_bytes())
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    backbone = tmp_path / "vgg16.pth"
    backbone.write_bytes(b"")  # only its path is resolved here
    paths = lpips_weight_paths("vgg", backbone_weights=backbone, download=False)
    assert paths == (str(backbone), str(package / "weights" / "v0.1" / "vgg.pth"))
