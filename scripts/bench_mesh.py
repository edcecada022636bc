"""Point-to-mesh benchmark: pointmetrics beside Open3D (RaycastingScene), point-cloud-utils and
trimesh, in one run, with a ratio table.

    python scripts/bench_mesh.py [--shared ../shared/data] [--repeat 3] [--out FILE]

Cases (every method builds its acceleration structure inside the timing):
  scans   - the 362,272 aligned Stanford bunny scan points against bun_zipper.ply (69,451 faces);
  uniform - 1e6 points uniform in that mesh's bounding box;
  winding - pointmetrics' winding number (inside test) for the uniform points, for reference.
With CUDA, a GPU section times 1e6 queries against a 1.1M-face subdivision of the bunny.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from bench_timing import THREADS, best_time, gpu_time  # noqa: E402

import pointmetrics as pm  # noqa: E402
from pointmetrics import io  # noqa: E402


def methods(v: np.ndarray, f: np.ndarray, q: np.ndarray) -> dict:
    tv, tf, tq = torch.from_numpy(v), torch.from_numpy(f), torch.from_numpy(q)
    out = {"pointmetrics": lambda: pm.MeshBVH(tv, tf).closest_points(tq).distance}
    try:
        import open3d as o3d

        def open3d():
            scene = o3d.t.geometry.RaycastingScene()
            scene.add_triangles(o3d.core.Tensor(v), o3d.core.Tensor(f.astype(np.uint32)))
            return scene.compute_distance(o3d.core.Tensor(q)).numpy()

        out["Open3D"] = open3d
    except (ImportError, OSError):
        pass
    try:
        import point_cloud_utils as pcu

        out["point-cloud-utils"] = lambda: pcu.closest_points_on_mesh(q, v, f)
    except ImportError:
        pass
    try:
        import rtree  # noqa: F401
        import trimesh

        if len(q) <= 400_000:  # trimesh refines candidates in Python: too slow beyond
            out["trimesh"] = lambda: trimesh.proximity.closest_point(trimesh.Trimesh(v, f, process=False), q)
    except ImportError:
        pass
    return out


def cpu_cases(shared: str, repeat: int) -> list[str]:
    bunny = os.path.join(shared, "stanford_bunny")
    mesh = io.load(os.path.join(bunny, "reconstruction", "bun_zipper.ply"))
    v, f = mesh.vertices.float().numpy(), mesh.faces.numpy().astype(np.int64)
    scans = io.load(os.path.join(bunny, "derived", "bun_scans_aligned.ply")).vertices.float().numpy()
    rng = np.random.default_rng(0)
    lo, hi = v.min(0), v.max(0)
    uniform = (lo + (hi - lo) * rng.random((10**6, 3))).astype(np.float32)
    lines = ["| queries | faces | pointmetrics | fastest peer | peer time | speed-up | others |", "|---" * 7 + "|"]
    for name, q in (("bunny scans (362,272)", scans), ("uniform in the box (1e6)", uniform)):
        times = {
            k: best_time(fn, repeat if k == "pointmetrics" else max(1, repeat - 1))
            for k, fn in methods(v, f, q).items()
        }
        ours = times.pop("pointmetrics")
        fastest = min(times, key=times.get)
        others = ", ".join(f"{k} {t:.3f}s" for k, t in sorted(times.items(), key=lambda kv: kv[1]) if k != fastest)
        lines.append(
            f"| {name} | {len(f)} | {ours:.3f}s | {fastest} | {times[fastest]:.3f}s | "
            f"**{times[fastest] / ours:.1f}x** | {others} |"
        )
        print(lines[-1], flush=True)
    tv, tf, tq = torch.from_numpy(v), torch.from_numpy(f), torch.from_numpy(uniform)
    t_wind = best_time(lambda: pm.MeshBVH(tv, tf).winding_number(tq), repeat)
    lines.append(f"| winding number, uniform (1e6) | {len(f)} | {t_wind:.3f}s | - | - | - | |")
    print(lines[-1], flush=True)
    return lines


def gpu_case(shared: str, repeat: int) -> list[str]:
    import trimesh

    mesh = io.load(os.path.join(shared, "stanford_bunny", "reconstruction", "bun_zipper.ply"))
    v, f = trimesh.remesh.subdivide(mesh.vertices.numpy(), mesh.faces.numpy())
    v, f = trimesh.remesh.subdivide(v, f)
    v, f = trimesh.remesh.subdivide(v, f)
    dev = torch.device("cuda")
    tv, tf = torch.tensor(v, dtype=torch.float32, device=dev), torch.tensor(f, device=dev)
    lo, hi = tv.amin(0), tv.amax(0)
    q = lo + (hi - lo) * torch.rand(10**6, 3, device=dev)
    torch.cuda.synchronize()
    start = time.perf_counter()
    bvh = pm.MeshBVH(tv, tf)
    torch.cuda.synchronize()
    build = time.perf_counter() - start
    best = gpu_time(lambda: bvh.closest_points(q), max(repeat, 10))
    line = f"| 1e6 uniform queries | {len(f)} | build {build * 1e3:.1f} ms | query {best * 1e3:.2f} ms |"
    print(line, flush=True)
    return ["| queries | faces | BVH build | closest points |", "|---|---|---|---|", line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out")
    args = parser.parse_args()
    if not os.path.isdir(os.path.join(args.shared, "stanford_bunny")):
        sys.exit(f"bench_mesh: the Stanford bunny data is not under {args.shared} (see --shared)")
    header = [
        f"# Point-to-mesh benchmark ({datetime.date.today().isoformat()})",
        "",
        f"- CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch.get_num_threads() = {THREADS} (set before each method)",
        f"- torch {torch.__version__}, pointmetrics {pm.__version__}",
        "- Unsigned distance from every query point to the mesh, acceleration structure built inside the timing; "
        f"best of {args.repeat} runs (peers {max(1, args.repeat - 1)}). Speed-up = fastest peer / pointmetrics.",
        "",
    ]
    print("\n".join(header), flush=True)
    lines = header + ["## CPU", ""] + cpu_cases(args.shared, args.repeat)
    if torch.cuda.is_available():
        lines += ["", f"## GPU: {torch.cuda.get_device_name()}", ""] + gpu_case(args.shared, args.repeat)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
