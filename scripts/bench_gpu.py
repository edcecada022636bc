"""GPU benchmark: the main pointmetrics operations on CUDA, timed with CUDA events after a warm-up,
beside torch.cdist + min (and PyTorch3D's knn_points when it is installed), on data made from
examples/data only (no download, no shared/ folder).

    python scripts/bench_gpu.py                       # CUDA, writes bench/results/<gpu>_gpu.md
    python scripts/bench_gpu.py --device cpu --quick  # small sizes on the CPU: checks that it runs

Cases: Chamfer B=32 N=M=2048 (a training batch) and 1e6 vs 1e6; kNN of 256 queries in 1e6 points;
EMD 32 x 2048 and 1 x 8192; MeshBVH build and closest points of 1e6 queries on the bunny
subdivided to ~1M faces; rasterising the 4 ICON views at 512^2 of the armadillo subdivided to
~117k faces; the float64 / float32 arithmetic rate of the GPU (the mesh and auction kernels
compute in float64). --quick shrinks every size so that the whole run takes seconds on a CPU.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import pointmetrics as pm  # noqa: E402
from pointmetrics.io import load  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "data")


def timed(fn, device: torch.device, repeat: int, warmup: int = 1) -> tuple[float, float]:
    """(best, median) seconds of ``fn`` over ``repeat`` runs after ``warmup`` runs: CUDA events
    on a GPU, perf_counter on the CPU."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def count(n: int) -> str:
    return f"{n:.0e}".replace("e+0", "e")


def fmt(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


class Table:
    def __init__(self) -> None:
        self.lines = ["| case | pointmetrics (best / median) | peer | peer time | peer / ours | note |",
                      "|---|---|---|---|---|---|"]
        print("\n".join(self.lines), flush=True)

    def add(self, case, ours, peer="-", peer_time=None, note="") -> None:
        ratio = f"**{peer_time[0] / ours[0]:.1f}x**" if peer_time else "-"
        peer_cell = fmt(peer_time[0]) if peer_time else "-"
        self.lines.append(f"| {case} | {fmt(ours[0])} / {fmt(ours[1])} | {peer} | {peer_cell} | {ratio} | {note} |")
        print(self.lines[-1], flush=True)


def pytorch3d_knn():
    try:
        from pytorch3d.ops import knn_points

        return knn_points
    except ImportError:
        return None


def chamfer_runs(x, y):
    """Our Chamfer loss on (x, y): forward without grad, and forward + backward."""

    def ours():
        with torch.no_grad():
            return pm.chamfer_distance(x, y)[0]

    def ours_fb():
        a, b = x.clone().requires_grad_(), y.clone().requires_grad_()
        pm.chamfer_distance(a, b)[0].backward()

    return ours, ours_fb


def bench_chamfer(table, dev, quick, repeat):
    B, n = (2, 256) if quick else (32, 2048)
    gen = torch.Generator(device=dev).manual_seed(0)
    x, y = torch.rand(B, n, 3, generator=gen, device=dev), torch.rand(B, n, 3, generator=gen, device=dev)

    ours, ours_fb = chamfer_runs(x, y)

    def cdist():
        d = torch.cdist(x, y).square()
        return d.min(2).values.mean() + d.min(1).values.mean()

    agree = torch.allclose(ours(), cdist(), rtol=1e-4, atol=1e-7)
    t_cdist = timed(cdist, dev, repeat)
    table.add(f"chamfer_distance B={B} N=M={n}", timed(ours, dev, repeat), "torch.cdist + min", t_cdist,
              f"same value: {agree}")
    table.add(f"chamfer_distance B={B} N=M={n}, forward+backward", timed(ours_fb, dev, repeat))
    knn = pytorch3d_knn()
    if knn is not None:
        def p3d():
            return knn(x, y, K=1).dists.mean() + knn(y, x, K=1).dists.mean()

        table.add(f"chamfer_distance B={B} N=M={n}", timed(ours, dev, repeat), "PyTorch3D knn_points x2",
                  timed(p3d, dev, repeat))
    return agree


def bench_large_chamfer(table, dev, quick, repeat):
    n = 10**4 if quick else 10**6
    gen = torch.Generator(device=dev).manual_seed(1)
    x, y = torch.rand(1, n, 3, generator=gen, device=dev), torch.rand(1, n, 3, generator=gen, device=dev)

    ours, ours_fb = chamfer_runs(x, y)

    table.add(f"chamfer_distance N=M={count(n)} uniform", timed(ours, dev, repeat), note="N x M does not fit cdist")
    table.add(f"chamfer_distance N=M={count(n)}, forward+backward", timed(ours_fb, dev, repeat))


def bench_knn(table, dev, quick, repeat):
    q, n = (64, 10**4) if quick else (256, 10**6)
    gen = torch.Generator(device=dev).manual_seed(2)
    x, y = torch.rand(1, q, 3, generator=gen, device=dev), torch.rand(1, n, 3, generator=gen, device=dev)
    knn = pytorch3d_knn()
    for K in (1, 16):
        def ours(K=K):
            return pm.knn_points(x, y, K=K)

        def cdist(K=K):
            return torch.cdist(x, y).topk(K, dim=2, largest=False)

        same = torch.equal(ours().idx, cdist().indices) if K == 1 else None
        note = f"same indices: {same}" if same is not None else ""
        table.add(f"knn_points {q} queries in {count(n)} points, K={K}", timed(ours, dev, repeat),
                  "torch.cdist + topk", timed(cdist, dev, repeat), note)
        if knn is not None:
            table.add(f"knn_points {q} in {count(n)}, K={K}", timed(ours, dev, repeat), "PyTorch3D knn_points",
                      timed(lambda K=K: knn(x, y, K=K), dev, repeat))


def bench_emd(table, dev, quick, repeat):
    # The peer is the same op on the host's CPU threads (what CUDA tensors got before the device
    # auction): both return the same assignment, so the ratio is the device auction's gain.
    for B, n in ((2, 256), (1, 512)) if quick else ((32, 2048), (1, 8192)):
        gen = torch.Generator(device=dev).manual_seed(3)
        x, y = torch.rand(B, n, 3, generator=gen, device=dev), torch.rand(B, n, 3, generator=gen, device=dev)
        result = pm.earth_movers_distance(x, y, rel_tol=1e-2)
        t = timed(lambda x=x, y=y: pm.earth_movers_distance(x, y, rel_tol=1e-2), dev, max(1, repeat // 2))
        xc, yc = x.cpu(), y.cpu()
        host = timed(lambda xc=xc, yc=yc: pm.earth_movers_distance(xc, yc, rel_tol=1e-2), torch.device("cpu"), 1)
        same = torch.equal(result.assignment.cpu(), pm.earth_movers_distance(xc, yc, rel_tol=1e-2).assignment)
        table.add(f"earth_movers_distance {B} x {n}, p=1, rel_tol=1e-2", t,
                  f"the same op on the host CPU ({torch.get_num_threads()} threads)", host,
                  note=f"certified gap <= {float(result.gap.max()):.1e}, rounds <= {int(result.rounds.max())}, "
                       f"{'same' if same else 'DIFFERENT'} assignment as the CPU")


def bench_float64_rate(table, dev, quick, repeat):
    # The closest-triangle, winding-number and auction kernels compute in float64, which consumer
    # GPUs run at 1/32 to 1/64 of the float32 rate. A square matrix product in each precision
    # (TF32 off) shows this GPU's ratio; the mesh rows above pay it in full where it is low.
    size = 256 if quick else 4096
    allow = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        times = {}
        for dtype in (torch.float32, torch.float64):
            a = torch.rand(size, size, device=dev, dtype=dtype)
            times[dtype] = timed(lambda a=a: a @ a, dev, repeat)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = allow
    flops = 2 * size**3
    table.add(f"float64 matrix product {size}^2 ({flops / times[torch.float64][0] / 1e12:.1f} TFLOP/s)",
              times[torch.float64], "the same in float32 (TF32 off)", times[torch.float32],
              note="ratio < 1: float64 is that fraction of the float32 rate")


def subdivided(name: str, times: int):
    import trimesh

    mesh = load(os.path.join(DATA, name))
    v, f = mesh.vertices.double().numpy(), mesh.faces.numpy()
    for _ in range(times):
        v, f = trimesh.remesh.subdivide(v, f)
    return torch.tensor(v), torch.tensor(f)


def bench_mesh(table, dev, quick, repeat):
    v, f = subdivided("bunny_res3.ply", 0 if quick else 4)
    nq = 10**4 if quick else 10**6
    v, f = v.float().to(dev), f.to(dev)
    lo, hi = v.amin(0), v.amax(0)
    gen = torch.Generator(device=dev).manual_seed(4)
    q = lo + (hi - lo) * torch.rand(nq, 3, generator=gen, device=dev)
    build = timed(lambda: pm.MeshBVH(v, f), dev, max(1, repeat // 2))
    bvh = pm.MeshBVH(v, f)
    table.add(f"MeshBVH build, bunny {f.shape[0]:,} faces", build)
    table.add(f"MeshBVH.closest_points {count(nq)} uniform queries, {f.shape[0]:,} faces",
              timed(lambda: bvh.closest_points(q), dev, repeat), note="first query excluded (warm-up)")


def bench_raster(table, dev, quick, repeat):
    v, f = subdivided("armadillo.ply", 0 if quick else 1)
    v = v - (v.max(0).values + v.min(0).values) / 2
    v = (v / v.abs().max() * 0.95).float().to(dev)
    f = f.to(dev)
    size = 128 if quick else 512
    cams = pm.human_cameras("icon2022")
    table.add(f"rasterize 4 views {size}^2, armadillo {f.shape[0]:,} faces",
              timed(lambda: pm.rasterize(v, f, cams, size), dev, repeat))


def driver_version() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout.strip()
        return out.splitlines()[0] if out else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="small sizes (a check that the script runs)")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--out", help="markdown file; default bench/results/<gpu>_gpu.md on CUDA, none on CPU")
    args = parser.parse_args()
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_gpu: CUDA is not available to this torch; use --device cpu --quick for a check on the CPU")
    repeat = min(args.repeat, 3) if args.quick else args.repeat
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
        cap = "{}.{}".format(*torch.cuda.get_device_capability(dev))
        device = f"{name} (sm {cap}), driver {driver_version()}, CUDA runtime {torch.version.cuda}"
    else:
        device = f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    try:
        from pointmetrics import _build_info

        built = f"built with torch {_build_info.TORCH_VERSION}, nvcc {_build_info.NVCC}, archs {_build_info.CUDA_ARCHS}"
    except ImportError:
        built = "build info not recorded"
    header = [
        f"# pointmetrics on {'GPU' if dev.type == 'cuda' else 'CPU'} ({datetime.date.today().isoformat()})",
        "",
        f"- Device: {device}",
        f"- torch {torch.__version__}, pointmetrics {pm.__version__} ({built}), Python {platform.python_version()}",
        f"- Best and median of {repeat} runs after one warm-up run, "
        + ("timed with CUDA events." if dev.type == "cuda" else "wall time.")
        + (" Quick sizes (a check that the script runs, not a benchmark)." if args.quick else "")
        + " Uniform points in the unit cube unless stated. pointmetrics is exact; torch.cdist rows compare "
        "against the brute force.",
        "",
    ]
    print("\n".join(header), flush=True)
    table = Table()
    failures = []
    for bench in (bench_chamfer, bench_large_chamfer, bench_knn, bench_emd, bench_mesh, bench_raster,
                  bench_float64_rate):
        try:
            start = time.perf_counter()
            bench(table, dev, args.quick, repeat)
            print(f"  ({bench.__name__}: {time.perf_counter() - start:.1f} s)", flush=True)
        except Exception as error:  # noqa: BLE001 - report and go on with the other cases
            failures.append(f"{bench.__name__}: {type(error).__name__}: {error}")
            print(f"bench_gpu: {failures[-1]}", file=sys.stderr, flush=True)
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    lines = header + table.lines + ([""] + [f"- FAILED {f}" for f in failures] if failures else [])
    out = args.out
    if out is None and dev.type == "cuda":
        slug = re.sub(r"[^a-z0-9]+", "_", torch.cuda.get_device_name(dev).lower()).strip("_")
        out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench", "results", f"{slug}_gpu.md")
    if out:
        with open(out, "w") as f:
            f.write("\n".join(lines) + "\n")
        print(f"bench_gpu: wrote {os.path.normpath(out)}")
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
