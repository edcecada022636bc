"""LPIPS, the learned perceptual image distance of Zhang et al. (CVPR 2018), version 0.1.

Reproduces richzhang/PerceptualSimilarity ``lpips/lpips.py`` and ``lpips/__init__.py`` at commit
082bb24f84c091ea94de2867d34c4544f68e0963 (the lpips 0.1.4 package), ``LPIPS(net=...,
version='0.1', lpips=True, spatial=False)`` in eval mode, step by step:

1. ``normalize=True``: inputs in [0, 1] are mapped to [-1, 1] by ``2 x - 1``; otherwise inputs
   are taken to be in [-1, 1] already.
2. ScalingLayer: ``(x - shift) / scale`` with shift = (-0.030, -0.088, -0.188) and
   scale = (0.458, 0.448, 0.450) per RGB channel (ImageNet's statistics in [-1, 1] units).
3. Backbone features at each tap l (pointmetrics.lpips_nets: AlexNet 5 taps, VGG16 5, SqueezeNet
   1.1 7), for both images.
4. ``normalize_tensor``: f / (sqrt(sum_c f_c^2) + 1e-10), unit length over channels per pixel.
5. d_l = (f0_l - f1_l)^2, then the linear head ``lin_l``: Dropout (identity in eval mode) and a
   1x1 convolution C_l -> 1 without bias (weights ``lin<l>.model.1.weight`` of ``weights/v0.1``).
6. Spatial average over H_l x W_l, and the sum over taps:

       LPIPS(x0, x1) = sum_l mean_{h,w} sum_c w_{l,c} (f0_{l,c,h,w} - f1_{l,c,h,w})^2.

Weights: the backbone's torchvision ImageNet checkpoint and the v0.1 head. They are looked up in
order at the path given (``backbone_weights=``, ``head_weights=``), in the installed ``lpips``
package's ``weights/v0.1`` folder (heads only; ``lpips`` is located, not imported), and in
torch.hub's checkpoint folder (``torch.hub.get_dir()/checkpoints``, heads as
``lpips_v0.1_<net>.pth``); if absent they are downloaded there (``download=True``), checked
against their SHA-256 prefix. A file that is missing and cannot be downloaded raises a
FileNotFoundError naming the file, its URL and where to put it.

Differences from the reference: torchvision is not needed (the backbones are defined here with
its module names); the images are checked (shape, three channels, same size, size the network
can take) with errors naming the problem; the v0.0 version, ``spatial=True`` maps and
``lpips=False`` (the baseline without heads) are not provided.
"""

from __future__ import annotations

import importlib.util
import os

import torch
from torch import nn

from . import _checks
from .lpips_nets import BACKBONE_FILES, CHANNELS, NETS, Backbone

__all__ = ["LPIPS", "lpips", "lpips_weight_paths"]

REFERENCE = "richzhang/PerceptualSimilarity lpips/lpips.py@082bb24f84c091ea94de2867d34c4544f68e0963"
_HEAD_URL = ("https://raw.githubusercontent.com/richzhang/PerceptualSimilarity/"
             "082bb24f84c091ea94de2867d34c4544f68e0963/lpips/weights/v0.1/{net}.pth")
# SHA-256 of the v0.1 head files at that commit (checked after a download).
_HEAD_SHA256 = {
    "alex": "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
    "vgg": "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
    "squeeze": "4a5350f23600cb79923ce65bb07cbf57dca461329894153e05a1346bd531cf76",
}
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10  # lpips.normalize_tensor's eps, added to the norm (not to its square)


def _hub_checkpoints() -> str:
    return os.path.join(torch.hub.get_dir(), "checkpoints")


def _lpips_package_head(net: str) -> str | None:
    """The installed lpips package's v0.1 head file, found without importing lpips (it imports torchvision)."""
    try:
        spec = importlib.util.find_spec("lpips")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, "weights", "v0.1", f"{net}.pth")
        if os.path.isfile(path):
            return path
    return None


def _resolve(what: str, given: str | os.PathLike | None, candidates: list[str | None], target: str, url: str,
             sha256: str, download: bool) -> str:
    """The first existing file among ``given`` and ``candidates``; else downloads ``url`` to ``target``."""
    if given is not None:
        path = os.fspath(given)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{what} file {path} does not exist (it is {url})")
        return path
    for path in candidates:
        if path and os.path.isfile(path):
            return path
    problem = "downloads are off (download=False)"
    if download:
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            torch.hub.download_url_to_file(url, target, hash_prefix=sha256, progress=False)
            return target
        except Exception as error:  # noqa: BLE001 - offline, proxy, hash mismatch: all end in the same advice
            problem = f"the download failed ({type(error).__name__}: {' '.join(str(error).split())[:200]})"
    raise FileNotFoundError(
        f"{what} {os.path.basename(target)} not found and {problem}: download {url} and put it at {target}, "
        f"or pass its path"
    )


def lpips_weight_paths(net: str = "alex", backbone_weights: str | os.PathLike | None = None,
                       head_weights: str | os.PathLike | None = None, download: bool = True) -> tuple[str, str]:
    """(backbone checkpoint, v0.1 head) paths for ``net``, found or downloaded as the module docstring says."""
    _checks.check_choice(net, NETS, "net")
    name, url = BACKBONE_FILES[net]
    ckpt = _hub_checkpoints()
    prefix = name.rsplit("-", 1)[1].split(".")[0]  # torchvision names end in the SHA-256 prefix
    backbone = _resolve(f"LPIPS {net} backbone (torchvision ImageNet weights)", backbone_weights,
                        [os.path.join(ckpt, name)], os.path.join(ckpt, name), url, prefix, download)
    head_name = f"lpips_v0.1_{net}.pth"
    head = _resolve(f"LPIPS v0.1 {net} head", head_weights, [_lpips_package_head(net), os.path.join(ckpt, head_name)],
                    os.path.join(ckpt, head_name), _HEAD_URL.format(net=net), _HEAD_SHA256[net], download)
    return backbone, head


def _load_state(path: str) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a corrupt or foreign file: say which
        raise ValueError(f"{path}: not a readable torch state dict ({type(error).__name__}: {error})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


class LPIPS(nn.Module):
    """LPIPS v0.1 with the ``net`` backbone ("alex", "vgg" or "squeeze"), frozen, in eval mode.

    ``pretrained=False`` leaves the backbone and heads at PyTorch's random initialisation and reads
    no file (for tests; load weights with :meth:`load_weights`). ``forward(pred, target,
    normalize=False)`` returns one distance per image: (B,) for (B, 3, H, W), a scalar for
    (3, H, W). Differentiable with respect to the images. Computed in the module's dtype
    (float32; call ``.double()`` for float64); the result has that dtype.
    """

    def __init__(self, net: str = "alex", pretrained: bool = True, backbone_weights: str | os.PathLike | None = None,
                 head_weights: str | os.PathLike | None = None, download: bool = True) -> None:
        super().__init__()
        _checks.check_choice(net, NETS, "net")
        self.net_name = net
        self.backbone = Backbone(net)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in CHANNELS[net])
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        for p in self.lins.parameters():
            p.requires_grad_(False)
        self.weight_files: tuple[str, str] | None = None
        if pretrained:
            paths = lpips_weight_paths(net, backbone_weights, head_weights, download)
            self.load_weights(_load_state(paths[0]), _load_state(paths[1]), sources=paths)
            self.weight_files = paths
        self.eval()

    def load_weights(self, backbone: dict[str, torch.Tensor], head: dict[str, torch.Tensor],
                     sources: tuple[str, str] = ("backbone state dict", "head state dict")) -> None:
        """Loads a torchvision-format backbone state dict and an lpips-format head state dict
        (keys ``lin<l>.model.1.weight``, shapes (1, C_l, 1, 1))."""
        self.backbone.load_torchvision(backbone, sources[0])
        for i, lin in enumerate(self.lins):
            key = f"lin{i}.model.1.weight"
            if key not in head:
                raise ValueError(f"{sources[1]}: not an LPIPS v0.1 {self.net_name} head: no {key}")
            w = head[key]
            if tuple(w.shape) != tuple(lin.weight.shape):
                raise ValueError(f"{sources[1]}: {key} has shape {tuple(w.shape)}, expected {tuple(lin.weight.shape)}"
                                 f" (a head of another network?)")
            with torch.no_grad():
                lin.weight.copy_(w)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        x0, x1 = self._check(pred, target)
        single = x0.dim() == 3
        if single:
            x0, x1 = x0[None], x1[None]
        if normalize:  # [0, 1] -> [-1, 1]
            x0, x1 = 2 * x0 - 1, 2 * x1 - 1
        # One pass over both images (the reference runs two; the values are the same).
        x = (torch.cat([x0, x1]) - self.shift) / self.scale
        try:
            taps = self.backbone(x)
        except RuntimeError as error:
            if "size" not in str(error).lower():
                raise
            raise ValueError(f"images of size {tuple(x0.shape[-2:])} are too small for the LPIPS {self.net_name} "
                             f"network ({' '.join(str(error).split())})") from None
        b = x0.shape[0]
        total = x.new_zeros(b)
        for f, lin in zip(taps, self.lins):
            f = f / (f.square().sum(1, keepdim=True).sqrt() + EPS)
            d = (f[:b] - f[b:]).square()
            total = total + lin(d).mean((1, 2, 3))
        return total[0] if single else total

    def _check(self, pred, target) -> tuple[torch.Tensor, torch.Tensor]:
        pred, target = _checks.check_float_tensor(pred, "pred"), _checks.check_float_tensor(target, "target")
        if pred.shape != target.shape:
            raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and "
                             f"{tuple(target.shape)}")
        if pred.dim() not in (3, 4) or pred.shape[-3] != 3:
            raise ValueError(f"LPIPS takes RGB images (B, 3, H, W) or (3, H, W), got shape {tuple(pred.shape)}")
        if pred.device != target.device:
            raise ValueError(f"pred is on {pred.device} but target is on {target.device}")
        dtype, device = self.shift.dtype, self.shift.device
        if pred.device != device:
            raise ValueError(f"the images are on {pred.device} but the LPIPS network is on {device} "
                             f"(move it with .to({str(pred.device)!r}))")
        return pred.to(dtype), target.to(dtype)


_CACHE: dict[tuple, LPIPS] = {}


def lpips(pred: torch.Tensor, target: torch.Tensor, net: str = "alex", normalize: bool = False,
          backbone_weights: str | os.PathLike | None = None, head_weights: str | os.PathLike | None = None,
          download: bool = True) -> torch.Tensor:
    """LPIPS v0.1 distance per image (lower is more similar); see the module docstring for the formula.

    ``pred``/``target``: (B, 3, H, W) or (3, H, W) float images in [-1, 1], or in [0, 1] with
    ``normalize=True`` (nerfstudio's and torchmetrics' ``normalize=True``). Returns (B,) (a scalar
    for one image) in float32, or float64 for float64 images. The network is built once per
    (net, weight files, device, dtype) and cached.
    """
    _checks.check_choice(net, NETS, "net")
    pred = _checks.check_float_tensor(pred, "pred")
    dtype = torch.float64 if pred.dtype == torch.float64 else torch.float32
    paths = lpips_weight_paths(net, backbone_weights, head_weights, download)
    key = (net, paths, pred.device, dtype)
    model = _CACHE.get(key)
    if model is None:
        model = LPIPS(net, backbone_weights=paths[0], head_weights=paths[1]).to(device=pred.device, dtype=dtype)
        _CACHE[key] = model
    return model(pred, target, normalize=normalize)
