"""Times the Python paths of the public API (validation, cores, recomputation) in one checkout, so
that two checkouts can be compared on the same day: run it from each checkout's root, alternately.

    python scripts/bench_layout_ab.py            # prints one JSON line: call -> best seconds

Used for bench/results/layout_ab.md (the architecture reorganisation, before and after).
"""

import json
import os
import sys
import time

sys.path.insert(0, os.getcwd())  # the checkout this runs in, not an installed pointmetrics

import torch  # noqa: E402

import pointmetrics as pm  # noqa: E402
from pointmetrics import io  # noqa: E402


def best(fn, repeat: int = 7) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    torch.manual_seed(0)
    mesh = io.load("examples/data/armadillo.ply")
    v, f = mesh.vertices.float(), mesh.faces
    x, y = torch.rand(4, 8192, 3), torch.rand(4, 8192, 3)
    xg, yg = x.clone().requires_grad_(), y.clone().requires_grad_()
    q = (torch.rand(100_000, 3) - 0.5) * 0.3 + v.mean(0)
    samples = torch.Generator().manual_seed(0)
    calls = {
        "chamfer_distance 4x8192 fwd+bwd": (lambda: pm.chamfer_distance(xg, yg)[0].backward(), 7),
        "chamfer_l1 4x8192": (lambda: pm.chamfer_l1(x, y), 7),
        "knn_points K=8 4x8192": (lambda: pm.knn_points(x, y, K=8), 7),
        "MeshBVH build armadillo": (lambda: pm.MeshBVH(v, f), 7),
        "point_to_surface_distance 100k": (lambda: pm.point_to_surface_distance(q, v, f), 7),
        "signed_distance 100k": (lambda: pm.signed_distance(q, v, f), 3),
        "point_mesh_distance 20k/20k": (
            lambda: pm.point_mesh_distance(q[:20000], v, f, samples=20000, generator=samples), 3),
        "emd 2048": (lambda: pm.earth_movers_distance(x[0, :2048], y[0, :2048]), 3),
    }
    print(json.dumps({name: best(fn, repeat) for name, (fn, repeat) in calls.items()}))


if __name__ == "__main__":
    main()
