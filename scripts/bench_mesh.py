"""Point-to-mesh benchmark: pointmetrics beside FCPW, Open3D, libigl, point-cloud-utils and trimesh,
in one run, with a ratio table and each method's thread use.

    python scripts/bench_mesh.py [--shared ../shared/data] [--repeat 3] [--out FILE]

Cases (every method builds its acceleration structure inside the timing):
  closest point - the 362,272 aligned Stanford bunny scan points, and 1e6 points uniform in the
                  box, against bun_zipper.ply (69,451 faces);
  inside test   - 1e6 points uniform in the box of the armadillo (watertight) and of the bunny
                  (open): our winding number beside point-cloud-utils' and libigl's fast winding
                  numbers (all at beta = 2) and Open3D's ray-parity occupancy, with the number of
                  points each classifies differently from us.
With CUDA, a GPU section times 1e6 queries against a 1.1M-face subdivision of the bunny.
"threads" is CPU time over wall time: how many cores a method kept busy.
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
from bench_timing import THREADS, gpu_time  # noqa: E402

import pointmetrics as pm  # noqa: E402
from pointmetrics import io  # noqa: E402


def timed(fn, repeat: int) -> tuple[float, float, object]:
    """Best wall time of ``fn`` over ``repeat`` runs, its CPU time over wall time, and its value.
    torch's thread count is reset before each run (point-cloud-utils changes it on import)."""
    best, threads, value = float("inf"), 0.0, None
    for _ in range(repeat):
        torch.set_num_threads(THREADS)
        wall, cpu = time.perf_counter(), time.process_time()
        value = fn()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if wall < best:
            best, threads = wall, cpu / wall
    return best, threads, value


def closest_methods(v: np.ndarray, f: np.ndarray, q: np.ndarray) -> dict:
    tv, tf, tq = torch.from_numpy(v), torch.from_numpy(f), torch.from_numpy(q)
    out = {"pointmetrics": lambda: pm.MeshBVH(tv, tf).closest_points(tq).distance.numpy()}
    try:
        import fcpw

        def fcpw_closest():  # its SIMD BVH (vectorize=True); distances read back from the interactions
            scene = fcpw.scene_3D()
            scene.set_object_count(1)
            scene.set_object_vertices(np.asfortranarray(v, dtype=np.float32), 0)
            scene.set_object_triangles(np.asfortranarray(f, dtype=np.int32), 0)
            scene.build(fcpw.aggregate_type.bvh_surface_area, True)
            hits = fcpw.interaction_3D_list()
            scene.find_closest_points(np.asfortranarray(q, dtype=np.float32), np.full(len(q), np.inf, np.float32),
                                      hits)
            return hits

        out["FCPW"] = fcpw_closest
    except ImportError:
        pass
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
        import igl

        out["libigl"] = lambda: np.sqrt(igl.point_mesh_squared_distance(q, v, f)[0])
    except ImportError:
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


def inside_methods(v: np.ndarray, f: np.ndarray, q: np.ndarray) -> dict:
    """Each method's inside/outside answer for the queries (bool array)."""
    tv, tf, tq = torch.from_numpy(v), torch.from_numpy(f), torch.from_numpy(q)
    out = {"pointmetrics": lambda: (pm.MeshBVH(tv, tf).winding_number(tq) >= 0.5).numpy()}
    try:
        import point_cloud_utils as pcu

        out["point-cloud-utils"] = lambda: pcu.triangle_soup_fast_winding_number(v, f, q) >= 0.5
    except ImportError:
        pass
    try:
        import igl

        out["libigl"] = lambda: igl.fast_winding_number(v, f, q) >= 0.5
    except ImportError:
        pass
    try:
        import open3d as o3d

        def open3d():
            scene = o3d.t.geometry.RaycastingScene()
            scene.add_triangles(o3d.core.Tensor(v.astype(np.float32)), o3d.core.Tensor(f.astype(np.uint32)))
            return scene.compute_occupancy(o3d.core.Tensor(q.astype(np.float32))).numpy() > 0.5

        out["Open3D (ray parity)"] = open3d
    except (ImportError, OSError):
        pass
    return out


def uniform_in_box(v: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    lo, hi = v.min(0), v.max(0)
    return lo + (hi - lo) * np.random.default_rng(seed).random((n, 3))


def cpu_cases(shared: str, repeat: int) -> list[str]:
    bunny = os.path.join(shared, "stanford_bunny")
    mesh = io.load(os.path.join(bunny, "reconstruction", "bun_zipper.ply"))
    v, f = mesh.vertices.float().numpy(), mesh.faces.numpy().astype(np.int64)  # float32, as the files store them
    scans = io.load(os.path.join(bunny, "derived", "bun_scans_aligned.ply")).vertices.float().numpy()
    lines = ["### Closest point", "",
             "| queries | faces | pointmetrics | fastest peer | peer time | speed-up | others (time, threads) |",
             "|---" * 7 + "|"]
    uniform = uniform_in_box(v, 10**6).astype(np.float32)
    for name, q in (("bunny scans (362,272)", scans), ("uniform in the box (1e6)", uniform)):
        runs = {k: timed(fn, repeat if k == "pointmetrics" else max(1, repeat - 1))
                for k, fn in closest_methods(v, f, q).items()}
        ours, ours_threads, _ = runs.pop("pointmetrics")
        fastest = min(runs, key=lambda k: runs[k][0])
        others = ", ".join(f"{k} {t:.3f}s ({th:.1f})" for k, (t, th, _) in sorted(runs.items(), key=lambda kv: kv[1][0])
                           if k != fastest)
        peer, peer_threads, _ = runs[fastest]
        lines.append(
            f"| {name} | {len(f):,} | {ours:.3f}s ({ours_threads:.1f} threads) | {fastest} | "
            f"{peer:.3f}s ({peer_threads:.1f} threads) | **{peer / ours:.1f}x** | {others} |")
        print(lines[-1], flush=True)
    armadillo = io.load(os.path.join(shared, "stanford_armadillo", "armadillo.obj"))
    lines += ["", "### Inside test (1e6 uniform points in the mesh's box)", "",
              "| mesh | faces | method | time | threads | ratio to us | points classified differently from us |",
              "|---" * 7 + "|"]
    for name, (mv, mf) in (("armadillo (watertight)", (armadillo.vertices.numpy(), armadillo.faces.numpy())),
                           ("bunny (open)", (v.astype(np.float64), f))):
        q = uniform_in_box(mv, 10**6, seed=1)
        runs = {k: timed(fn, repeat if k == "pointmetrics" else max(1, repeat - 1))
                for k, fn in inside_methods(mv, mf.astype(np.int64), q).items()}
        ours = runs["pointmetrics"]
        for k, (t, th, inside) in runs.items():
            ratio = "-" if k == "pointmetrics" else f"**{t / ours[0]:.2f}x**"
            differ = "-" if k == "pointmetrics" else f"{int((inside != ours[2]).sum()):,}"
            lines.append(f"| {name} | {len(mf):,} | {k} | {t:.3f}s | {th:.1f} | {ratio} | {differ} |")
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
        "- Acceleration structures built inside the timing; best of "
        f"{args.repeat} runs (peers {max(1, args.repeat - 1)}). Speed-up = fastest peer / pointmetrics; "
        "threads = CPU time / wall time.",
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
