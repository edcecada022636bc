"""Chamfer / nearest-neighbour benchmark: pointmetrics beside scipy, pykdtree, Open3D,
point-cloud-utils and torch.cdist, in one run, with a ratio table.

    python scripts/bench_nn.py [--sizes 1000 10000 100000 1000000] [--repeat 3] [--out FILE]

Every method computes both directions of a Chamfer distance (nearest neighbour of each x point in
y and of each y point in x), trees and grids included in the time. "fwd+bwd" is our loss with
gradients for both clouds. The thread count is set before timing each method (point-cloud-utils
resets it through a shared libgomp) and printed in the header. On a machine with CUDA, a GPU
section times 1e6 points and a B=32, N=M=2048 training batch against torch.cdist + min.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from bench_timing import THREADS, best_time, gpu_time  # noqa: E402

import pointmetrics as pm  # noqa: E402
from pointmetrics import io  # noqa: E402
from pointmetrics.mesh import sample_points_on_mesh  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "..", "examples", "data")


def clouds(kind: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        return rng.random((n, 3), dtype=np.float32), rng.random((n, 3), dtype=np.float32)
    # surface: two independent area-weighted samplings of the bunny mesh
    mesh = io.load(os.path.join(DATA, "bunny_res3.ply"))
    g = torch.Generator().manual_seed(seed)
    a = sample_points_on_mesh(mesh.vertices.float(), mesh.faces, n, generator=g).points
    b = sample_points_on_mesh(mesh.vertices.float(), mesh.faces, n, generator=g).points
    return a.numpy(), b.numpy()


def peers(x: np.ndarray, y: np.ndarray) -> dict:
    """Callables computing both nearest-neighbour directions with each peer library."""
    methods = {}
    try:
        from scipy.spatial import cKDTree

        methods["scipy cKDTree"] = lambda: (cKDTree(y).query(x, workers=-1), cKDTree(x).query(y, workers=-1))
    except ImportError:
        pass
    try:
        from pykdtree.kdtree import KDTree

        methods["pykdtree"] = lambda: (KDTree(y).query(x), KDTree(x).query(y))
    except ImportError:
        pass
    try:
        import open3d as o3d

        px = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(x.astype(np.float64)))
        py = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(y.astype(np.float64)))
        methods["Open3D"] = lambda: (px.compute_point_cloud_distance(py), py.compute_point_cloud_distance(px))
    except (ImportError, OSError):
        pass
    try:
        import point_cloud_utils as pcu

        methods["point-cloud-utils"] = lambda: pcu.chamfer_distance(x, y)
    except ImportError:
        pass
    if len(x) * len(y) <= 10**8:  # torch.cdist holds the N x M matrix
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)

        def cdist():
            d = torch.cdist(tx, ty)
            return d.min(1).values, d.min(0).values

        methods["torch.cdist+min"] = cdist
    return methods


def ours(x: np.ndarray, y: np.ndarray):
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def forward():
        with torch.no_grad():
            return pm.chamfer_distance(tx, ty)

    def forward_backward():
        a, b = tx.clone().requires_grad_(), ty.clone().requires_grad_()
        pm.chamfer_distance(a, b)[0].backward()

    return forward, forward_backward


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure_memory(kind: str, n: int) -> None:
    """Prints the resident memory (MB) that one forward+backward Chamfer call adds at its peak,
    sampled every 0.2 ms from a thread. Run in a fresh process by peak_memory_mb."""
    import threading

    x, y = clouds(kind, n, seed=0)
    a, b = torch.from_numpy(x).requires_grad_(), torch.from_numpy(y).requires_grad_()
    pm.chamfer_distance(a[:100], b[:100])[0].backward()  # load everything once
    base, peak, running = _rss(), [0], [True]

    def sample():
        while running[0]:
            peak[0] = max(peak[0], _rss())
            time.sleep(0.0002)

    thread = threading.Thread(target=sample)
    thread.start()
    pm.chamfer_distance(a, b)[0].backward()
    running[0] = False
    thread.join()
    print((max(peak[0], _rss()) - base) / 1e6)


def peak_memory_mb(kind: str, n: int) -> float:
    out = subprocess.run([sys.executable, __file__, "--measure-memory", kind, str(n)], capture_output=True, text=True)
    try:
        return float(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return float("nan")


def cpu_table(sizes, repeat) -> list[str]:
    lines = []
    header = "| cloud | N = M | pointmetrics fwd | fwd+bwd | bwd/fwd | fastest peer | peer time | speed-up | "
    header += "others | peak MB |"
    lines += [header, "|" + "---|" * 10]
    for kind in ("uniform", "surface"):
        for n in sizes:
            x, y = clouds(kind, n, seed=n)
            forward, forward_backward = ours(x, y)
            forward()  # warm-up
            # alternate the two so that both see the same machine noise
            t_fwd, t_fb = float("inf"), float("inf")
            for _ in range(repeat):
                t_fwd = min(t_fwd, best_time(forward, 1))
                t_fb = min(t_fb, best_time(forward_backward, 1))
            times = {name: best_time(fn, max(1, repeat - 2)) for name, fn in peers(x, y).items()}
            fastest = min(times, key=times.get)
            others = ", ".join(f"{k} {v:.4f}s" for k, v in sorted(times.items(), key=lambda kv: kv[1]) if k != fastest)
            mem = peak_memory_mb(kind, n)
            lines.append(
                f"| {kind} | {n:.0e} | {t_fwd:.4f}s | {t_fb:.4f}s | {t_fb / t_fwd:.2f} | {fastest} | "
                f"{times[fastest]:.4f}s | **{times[fastest] / t_fwd:.1f}x** | {others} | {mem:.0f} |"
            )
            print(lines[-1], flush=True)
    return lines


def hard_clouds(case: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Distributions that defeat a plain uniform grid."""

    def sphere(m):
        v = rng.standard_normal((m, 3)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    if case == "five tight clusters":

        def clusters():
            return (0.01 * rng.standard_normal((n, 3)) + rng.integers(0, 5, (n, 1))).astype(np.float32)

        return clusters(), clusters()
    if case == "1% of queries 50 units away":
        x = sphere(n)
        x[: n // 100] = rng.uniform(-50, 50, (n // 100, 3))
        return x, sphere(n)
    if case == "points on a line":

        def line():
            return (rng.random((n, 1)) * np.array([[1.0, 2.0, 3.0]])).astype(np.float32)

        return line(), line()
    if case == "cube queries, sphere targets":
        return rng.uniform(-1, 1, (n, 3)).astype(np.float32), sphere(n)
    if case == "1000 copies of every point":
        return (
            np.tile(rng.random((n // 1000, 3)), (1000, 1)).astype(np.float32),
            np.tile(rng.random((n // 1000, 3)), (1000, 1)).astype(np.float32),
        )
    raise ValueError(case)


def hard_table(n: int) -> list[str]:
    lines = [f"| case (N = M = {n:.0e}) | pointmetrics | pykdtree | speed-up |", "|---|---|---|---|"]
    try:
        from pykdtree.kdtree import KDTree
    except ImportError:
        return lines + ["| pykdtree is not installed | | | |"]
    rng = np.random.default_rng(0)
    for case in (
        "five tight clusters",
        "1% of queries 50 units away",
        "points on a line",
        "cube queries, sphere targets",
        "1000 copies of every point",
    ):
        x, y = hard_clouds(case, n, rng)
        forward, _ = ours(x, y)
        t_ours = best_time(forward, 2)
        t_peer = best_time(lambda x=x, y=y: (KDTree(y).query(x), KDTree(x).query(y)), 2)
        lines.append(f"| {case} | {t_ours:.3f}s | {t_peer:.3f}s | **{t_peer / t_ours:.1f}x** |")
        print(lines[-1], flush=True)
    return lines


def copy_bandwidth() -> float:
    """Bytes per second that a parallel copy of 256 MB reads plus writes (best of 5)."""
    src = torch.ones(64 * 2**20)
    dst = torch.empty_like(src)
    return 2 * src.numel() * 4 / best_time(lambda: dst.copy_(src), 5)


def distance_rate() -> float:
    """Exact squared distances per second on all threads (pointmetrics_testing.brute_nearest: the
    arithmetic a search runs per candidate, without any search around it)."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2000, 3, generator=g), torch.rand(200_000, 3, generator=g)
    brute = torch.ops.pointmetrics_testing.brute_nearest
    brute(x[:16], y)
    return len(x) * len(y) / best_time(lambda: brute(x, y), 3)


def unavoidable_candidates(x: np.ndarray, y: np.ndarray, nn: np.ndarray, sample: int = 20_000) -> float:
    """Mean number of y points a grid search must compare with a query x: the points in the grid
    cells that meet the ball around x reaching its nearest neighbour (any of them could be nearer,
    so no correct grid search skips them), for the best cell size (several are tried)."""
    rng = np.random.default_rng(0)
    pick = rng.choice(len(x), min(sample, len(x)), replace=False)
    q, r = x[pick].astype(np.float64), nn[pick].astype(np.float64)
    lo = y.min(0).astype(np.float64)
    extent = float((y.max(0) - lo).max())
    best = float("inf")
    for per_cell in (0.5, 1.0, 2.0, 4.0, 8.0):
        side = extent * (per_cell / len(y)) ** (1 / 3)
        cell = np.floor((y - lo) / side).astype(np.int64)
        dims = cell.max(0) + 1
        counts = np.bincount(np.ravel_multi_index(cell.T, dims))
        total = 0
        first = np.floor((q - r[:, None] - lo) / side).astype(np.int64).clip(0, dims - 1)
        last = np.floor((q + r[:, None] - lo) / side).astype(np.int64).clip(0, dims - 1)
        for k in range(len(q)):
            ranges = [np.arange(first[k, a], last[k, a] + 1) for a in range(3)]
            cells = np.stack(np.meshgrid(*ranges, indexing="ij"), -1).reshape(-1, 3)
            gap = np.maximum(0, np.maximum(lo + cells * side - q[k], q[k] - (lo + (cells + 1) * side)))
            meets = (gap * gap).sum(1) <= r[k] * r[k]
            flat = np.ravel_multi_index(cells[meets].T, dims)
            total += counts[flat[flat < len(counts)]].sum()
        best = min(best, total / len(q))
    return best


def limit_table(n: int) -> list[str]:
    """How far our Chamfer forward is from this machine's limit for it: the larger of the time to
    read both clouds and write the four outputs once (at the measured copy bandwidth) and the time
    to evaluate the unavoidable candidates (at the measured distance rate)."""
    bandwidth, rate = copy_bandwidth(), distance_rate()
    lines = [f"Copy bandwidth {bandwidth / 1e9:.1f} GB/s (read + write); exact distance evaluations "
             f"{rate / 1e9:.2f} G/s on {THREADS} threads.", "",
             "| cloud (N = M) | pointmetrics fwd | read inputs, write outputs | unavoidable candidates per query "
             "| their distances | limit | pointmetrics / limit |", "|---" * 7 + "|"]
    for kind in ("uniform", "surface"):
        x, y = clouds(kind, n, seed=n)
        forward, _ = ours(x, y)
        forward()
        t_ours = best_time(forward, 3)
        moved = (2 * 2 * n * 12) + 2 * n * (4 + 8)  # each direction reads both clouds; dists + int64 indices
        t_io = moved / bandwidth
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        d_xy = pm.knn_points(tx, ty, K=1).dists[:, 0].sqrt().numpy()
        d_yx = pm.knn_points(ty, tx, K=1).dists[:, 0].sqrt().numpy()
        candidates = (unavoidable_candidates(x, y, d_xy) + unavoidable_candidates(y, x, d_yx)) / 2
        t_dist = 2 * n * candidates / rate
        limit = max(t_io, t_dist)
        lines.append(f"| {kind} ({n:.0e}) | {t_ours:.4f}s | {t_io:.4f}s | {candidates:.1f} | {t_dist:.4f}s | "
                     f"{limit:.4f}s | **{t_ours / limit:.1f}x** |")
        print(lines[-1], flush=True)
    return lines


def gpu_table(repeat) -> list[str]:
    dev = torch.device("cuda")

    lines = ["| case | pointmetrics fwd | fwd+bwd | torch.cdist+min | speed-up |", "|---|---|---|---|---|"]
    for kind, B, n in (("uniform", 1, 10**6), ("surface", 1, 10**6), ("uniform", 32, 2048)):
        x, y = clouds(kind, B * n, seed=1)
        tx = torch.from_numpy(x).view(B, n, 3).to(dev)
        ty = torch.from_numpy(y).view(B, n, 3).to(dev)

        def forward(tx=tx, ty=ty):
            with torch.no_grad():
                pm.chamfer_distance(tx, ty)

        def forward_backward(tx=tx, ty=ty):
            a, b = tx.clone().requires_grad_(), ty.clone().requires_grad_()
            pm.chamfer_distance(a, b)[0].backward()

        t_fwd, t_fb = gpu_time(forward, repeat), gpu_time(forward_backward, repeat)
        if B * n * n <= 2**31:

            def cdist(tx=tx, ty=ty):
                d = torch.cdist(tx, ty)
                return d.min(2).values.mean() + d.min(1).values.mean()

            t_cd = gpu_time(cdist, repeat)
            cd = f"{t_cd * 1e3:.2f} ms | **{t_cd / t_fwd:.1f}x**"
        else:
            cd = "N x M does not fit | -"
        lines.append(f"| {kind} B={B} N=M={n} | {t_fwd * 1e3:.2f} ms | {t_fb * 1e3:.2f} ms | {cd} |")
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10**3, 10**4, 10**5, 10**6])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", help="write the markdown table to this file")
    parser.add_argument("--no-cpu", action="store_true", help="GPU section only")
    parser.add_argument("--no-hard", action="store_true", help="skip the hard-distribution table")
    parser.add_argument("--measure-memory", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_memory:
        measure_memory(args.measure_memory[0], int(args.measure_memory[1]))
        return
    cpu_name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu_name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    header = [
        f"# Chamfer / nearest-neighbour benchmark ({datetime.date.today().isoformat()})",
        "",
        f"- CPU: {cpu_name}, {os.cpu_count()} cores, torch.get_num_threads() = {THREADS} (set before each method)",
        f"- torch {torch.__version__}, pointmetrics {pm.__version__}, Python {platform.python_version()}",
        "- Both directions of a Chamfer distance per method, structures built inside the timing; best of "
        f"{args.repeat} runs (peers {max(1, args.repeat - 2)}). Speed-up = fastest peer / pointmetrics forward.",
        "- Clouds: `uniform` = N uniform points in the unit cube each; `surface` = N area-weighted samples of the "
        "bunny mesh each. Peak MB: resident memory added at the peak of one forward+backward call (inputs "
        "and their gradients included: 24 bytes per point of each cloud).",
        "",
    ]
    print("\n".join(header), flush=True)
    lines = list(header)
    if not args.no_cpu:
        lines += ["## CPU", ""] + cpu_table(args.sizes, args.repeat)
        if not args.no_hard:
            lines += ["", "### Distributions that defeat a plain grid", ""] + hard_table(max(args.sizes))
        lines += ["", "### Distance to this machine's limit", ""] + limit_table(max(args.sizes))
    if torch.cuda.is_available():
        lines += ["", f"## GPU: {torch.cuda.get_device_name()}", ""] + gpu_table(max(args.repeat, 10))
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
