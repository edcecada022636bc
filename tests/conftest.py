import os
import pathlib

import pytest
import torch

DATA = pathlib.Path(__file__).resolve().parent.parent / "examples" / "data"

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture
def gen(request):
    """A generator with a fresh seed per test run; the seed is printed so a failure can be replayed
    with POINTMETRICS_SEED=<seed>."""
    seed = int(os.environ.get("POINTMETRICS_SEED", int.from_bytes(os.urandom(4), "little")))
    print(f"{request.node.name}: POINTMETRICS_SEED={seed}")
    return torch.Generator().manual_seed(seed)


def ragged(gen, B, N, D, dtype=torch.float64, low=0):
    """(B, N, D) uniform points with random lengths in [low, N], at least one cloud full."""
    x = torch.rand(B, N, D, generator=gen, dtype=dtype)
    lengths = torch.randint(low, N + 1, (B,), generator=gen)
    lengths[0] = N
    return x, lengths
