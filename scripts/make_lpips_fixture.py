"""Writes tests/data/lpips/parity.json: the lpips package's outputs on seeded random weights and images.

The backbone weights are not stored: :func:`random_backbone` regenerates them from a seed (He
scaling, so that activations neither vanish nor explode through 13 layers), and the images come
from :func:`random_images`. The heads are the real v0.1 files (tests/data/lpips/v0.1/*.pth, from
richzhang/PerceptualSimilarity at 082bb24). The fixture stores the lpips package's distances
and a checksum of the regenerated tensors, so that a test first checks that it regenerates the
same inputs.

Run it where the lpips package and torchvision import, e.g. (offline, with the local wheels):

    python -m venv --system-site-packages /tmp/lpips-venv
    /tmp/lpips-venv/bin/pip install --no-deps torchvision==0.28.0    # the release paired with torch 2.13
    git -C <PerceptualSimilarity checkout> archive HEAD lpips | tar -x -C /tmp/lpips-src
    PYTHONPATH=/tmp/lpips-src /tmp/lpips-venv/bin/python scripts/make_lpips_fixture.py

(``pip install lpips`` works as well as the source checkout.) Only the pure-Python part of
torchvision is used; if its compiled ops do not load, the script skips its meta registrations.
"""

from __future__ import annotations

import json
import os
import sys
import types

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "data", "lpips", "parity.json")
HEADS = os.path.join(HERE, "..", "tests", "data", "lpips", "v0.1")
SEED = 20260501
SHAPE = (2, 3, 64, 64)


def random_backbone(shapes: dict[str, tuple[int, ...]], seed: int = SEED) -> dict[str, torch.Tensor]:
    """Seeded torchvision-format weights for the given ``features.*`` shapes, in sorted key order."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key in sorted(shapes):
        shape = shapes[key]
        if key.endswith("weight"):
            fan_in = shape[1] * shape[2] * shape[3]
            state[key] = torch.randn(shape, generator=g, dtype=torch.float64) * (2.0 / fan_in) ** 0.5
        else:
            state[key] = torch.randn(shape, generator=g, dtype=torch.float64) * 0.05
    return {k: v.float() for k, v in state.items()}


def random_images(seed: int = SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """Two seeded (2, 3, 64, 64) image batches in [0, 1]: smooth-ish content plus noise."""
    g = torch.Generator().manual_seed(seed + 1)
    a = torch.rand(SHAPE, generator=g, dtype=torch.float64)
    b = (a + 0.2 * torch.randn(SHAPE, generator=g, dtype=torch.float64)).clamp(0, 1)
    return a.float(), b.float()


def checksum(tensors) -> float:
    return float(sum(t.double().abs().sum() for t in tensors))


def main() -> int:
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    import lpips  # noqa: PLC0415 - only in the reference's environment

    x0, x1 = random_images()
    fixture: dict = {"seed": SEED, "shape": list(SHAPE), "image_checksum": checksum([x0, x1]), "nets": {}}
    for net in ("alex", "vgg", "squeeze"):
        ref = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False,
                          model_path=os.path.join(HEADS, f"{net}.pth"))
        # The reference's backbone keys are slice<k>.<i>.<rest>, torchvision's features.<i>.<rest>.
        own = ref.net.state_dict()
        tv_shapes = {"features." + k.split(".", 1)[1]: tuple(v.shape) for k, v in own.items()}
        backbone = random_backbone(tv_shapes)
        ref.net.load_state_dict({k: backbone["features." + k.split(".", 1)[1]] for k in own})
        with torch.no_grad():
            d_unit = ref(x0, x1, normalize=True).flatten()
            d_sym = ref(2 * x0 - 1, 2 * x1 - 1).flatten()
            _, layers = ref(x0, x1, retPerLayer=True, normalize=True)
        fixture["nets"][net] = {
            "backbone_checksum": checksum(backbone.values()),
            "normalize_true": d_unit.tolist(),
            "normalize_false": d_sym.tolist(),
            "per_layer": [r.flatten().tolist() for r in layers],
        }
        print(net, d_unit.tolist())
    fixture["generated_with"] = {"torch": torch.__version__, "lpips": getattr(lpips, "__version__", "0.1.4 (source)")}
    with open(OUT, "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
    print("wrote", os.path.normpath(OUT))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
