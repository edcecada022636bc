"""The three LPIPS backbones (AlexNet, VGG16, SqueezeNet 1.1), without torchvision.

Each backbone is torchvision's ``features`` block rebuilt layer for layer, with torchvision's
module indices, so that torchvision's checkpoints (``alexnet-owt-7be5be79.pth``,
``vgg16-397923af.pth``, ``squeezenet1_1-b8a52dc0.pth``: keys ``features.<i>.weight`` /
``features.<i>.bias``, and for SqueezeNet's Fire modules ``features.<i>.squeeze.weight``,
``expand1x1``, ``expand3x3``) load directly; their ``classifier.*`` keys are ignored.

The feature taps are those of richzhang/PerceptualSimilarity ``lpips/pretrained_networks.py``
(commit 082bb24f84c091ea94de2867d34c4544f68e0963, the lpips 0.1.4 package): the output after
each slice ``features[a:b]`` for the slice bounds in :data:`SLICES`, i.e. after the ReLU that
ends the slice:

    alex:    [0,2) [2,5) [5,8) [8,10) [10,12)           channels 64, 192, 384, 256, 256
    vgg:     [0,4) [4,9) [9,16) [16,23) [23,30)         relu1_2 ... relu5_3: 64, 128, 256, 512, 512
    squeeze: [0,2) [2,5) [5,8) [8,10) [10,11) [11,12) [12,13)   64, 128, 256, 384, 384, 512, 512

torchvision's ReLUs are in place; here they are not (the values are the same, and the taps stay
intact for autograd).
"""

from __future__ import annotations

import torch
from torch import nn

NETS = ("alex", "vgg", "squeeze")

SLICES: dict[str, tuple[int, ...]] = {
    "alex": (0, 2, 5, 8, 10, 12),
    "vgg": (0, 4, 9, 16, 23, 30),
    "squeeze": (0, 2, 5, 8, 10, 11, 12, 13),
}
CHANNELS: dict[str, tuple[int, ...]] = {
    "alex": (64, 192, 384, 256, 256),
    "vgg": (64, 128, 256, 512, 512),
    "squeeze": (64, 128, 256, 384, 384, 512, 512),
}
# torchvision's ImageNet checkpoints (file name, URL); the name's hex part is its SHA-256 prefix.
BACKBONE_FILES: dict[str, tuple[str, str]] = {
    "alex": ("alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
    "vgg": ("vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth"),
    "squeeze": ("squeezenet1_1-b8a52dc0.pth", "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth"),
}


class Fire(nn.Module):
    """SqueezeNet's Fire module, torchvision's names: squeeze 1x1, then expand 1x1 and 3x3, concatenated."""

    def __init__(self, inplanes: int, squeeze: int, expand1x1: int, expand3x3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(inplanes, squeeze, kernel_size=1)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, kernel_size=1)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.squeeze(x))
        return torch.cat([torch.relu(self.expand1x1(x)), torch.relu(self.expand3x3(x))], 1)


def _alexnet() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )


def _vgg16() -> nn.Sequential:
    layers: list[nn.Module] = []
    cin = 3
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(cin, int(v), kernel_size=3, padding=1), nn.ReLU()]
            cin = int(v)
    return nn.Sequential(*layers)


def _squeezenet1_1() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=3, stride=2), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
        Fire(64, 16, 64, 64), Fire(128, 16, 64, 64),
        nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
        Fire(128, 32, 128, 128), Fire(256, 32, 128, 128),
        nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
        Fire(256, 48, 192, 192), Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), Fire(512, 64, 256, 256),
    )


_BUILDERS = {"alex": _alexnet, "vgg": _vgg16, "squeeze": _squeezenet1_1}


class Backbone(nn.Module):
    """``features`` of the named torchvision network, cut where LPIPS taps it; frozen."""

    def __init__(self, net: str) -> None:
        super().__init__()
        self.net = net
        self.features = _BUILDERS[net]()
        self.bounds = SLICES[net][:]
        # LPIPS never uses the layers after the last tap (VGG's last pool, AlexNet's last pool).
        self.features = self.features[: self.bounds[-1]]
        for p in self.parameters():
            p.requires_grad_(False)

    def load_torchvision(self, state: dict[str, torch.Tensor], source: str) -> None:
        """Loads a torchvision checkpoint's ``features.*`` tensors; every tap layer must be present."""
        mine = self.state_dict()
        feats = {k: v for k, v in state.items() if k.startswith("features.") and k in mine}
        missing = sorted(set(mine) - set(feats))
        if missing:
            raise ValueError(f"{source}: not a torchvision {self.net} checkpoint: missing {', '.join(missing[:4])}"
                             f"{' ...' if len(missing) > 4 else ''}")
        for k, v in feats.items():
            if tuple(v.shape) != tuple(mine[k].shape):
                raise ValueError(f"{source}: {k} has shape {tuple(v.shape)}, expected {tuple(mine[k].shape)}")
        self.load_state_dict(feats)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for a, b in zip(self.bounds[:-1], self.bounds[1:]):
            for i in range(a, b):
                x = self.features[i](x)
            taps.append(x)
        return taps
