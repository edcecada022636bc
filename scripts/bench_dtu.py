"""DTU evaluation beside DTUeval-python, whole command against whole command, on the same files.

    python scripts/bench_dtu.py [--shared ../shared/data] [--cases bunny,scan] [--repeat 1] [--out FILE]

Two synthetic DTU layouts (ObsMask all observed, a ground plane under the object), written to a
temporary directory:

- bunny: bun_zipper.ply (69k faces) in millimetres against the 362,272 aligned bunny scan points;
- scan: the bunny subdivided twice (1.1M faces, about 300 mm across) against 2.5M points sampled
  on it with 0.3 mm noise: a DTU scan's size.

Each side runs as its own process: `pointmetrics dtu MESH --scan 1 --dataset-dir ROOT --vis DIR
--json` and DTUeval-python's eval.py (scripts/reference/, the same code with the shuffle seeded so
that both see the same order; it needs open3d and scikit-learn). The numbers must agree; the
table gives both times, the ratio, our stages, and each side's threads.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
import pointmetrics as pm  # noqa: E402
from pointmetrics import io  # noqa: E402

REFERENCE = os.path.join(ROOT, "scripts", "reference", "dtueval_python_eval.py")


def write_layout(root: str, mesh: tuple[np.ndarray, np.ndarray], stl: np.ndarray) -> str:
    """DTU scan 1 under ``root`` with ``stl`` as the reference points; returns the mesh file."""
    from scipy.io import savemat

    os.makedirs(os.path.join(root, "Points", "stl"))
    os.makedirs(os.path.join(root, "ObsMask"))
    io.save_ply(os.path.join(root, "Points", "stl", "stl001_total.ply"), stl)
    lo, hi = stl.min(0), stl.max(0)
    res = 10.0
    shape = tuple(np.floor((hi - lo) / res).astype(int) + 1)
    savemat(os.path.join(root, "ObsMask", "ObsMask1_10.mat"),
            {"ObsMask": np.ones(shape, dtype=bool), "BB": np.stack([lo, hi]), "Res": np.array([[res]])})
    y0 = lo[1] + 0.05 * (hi[1] - lo[1])
    savemat(os.path.join(root, "ObsMask", "Plane1.mat"), {"P": np.array([[0.0], [1.0], [0.0], [-y0]])})
    path = os.path.join(root, "mesh.ply")
    io.save_ply(path, mesh[0], faces=mesh[1])
    return path


def bunny_case(shared: str, root: str) -> str:
    bunny = os.path.join(shared, "stanford_bunny")
    mesh = io.load(os.path.join(bunny, "reconstruction", "bun_zipper.ply"))
    scans = io.load(os.path.join(bunny, "derived", "bun_scans_aligned.ply")).vertices.double().numpy()
    return write_layout(root, (mesh.vertices.double().numpy() * 1000, mesh.faces.numpy()), scans * 1000)


def scan_case(shared: str, root: str) -> str:
    import trimesh

    mesh = io.load(os.path.join(shared, "stanford_bunny", "reconstruction", "bun_zipper.ply"))
    v, f = mesh.vertices.double().numpy(), mesh.faces.numpy()
    for _ in range(2):
        v, f = trimesh.remesh.subdivide(v, f)
    v = (v - v.mean(0)) * 2000.0  # about 300 mm across
    gen = torch.Generator().manual_seed(0)
    stl = pm.sample_points_on_mesh(torch.from_numpy(v), torch.from_numpy(f), 2_500_000, generator=gen).points
    stl = stl + 0.3 * torch.randn(stl.shape, generator=gen, dtype=stl.dtype)
    return write_layout(root, (v, f), stl.numpy())


def run_timed(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"bench_dtu: {' '.join(command[:3])} failed:\n{done.stderr[-2000:]}")
    return seconds, done.stdout


def ours(mesh: str, root: str, vis: str) -> tuple[float, dict]:
    command = [sys.executable, "-m", "pointmetrics.cli", "dtu", mesh, "--scan", "1", "--dataset-dir", root,
               "--vis", vis, "--json", "--quiet"]
    seconds, out = run_timed(command)
    return seconds, json.loads(out)


def reference(mesh: str, root: str, vis: str) -> tuple[float, list[float]] | None:
    try:
        import open3d  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError:
        return None
    command = [sys.executable, REFERENCE, "--data", mesh, "--scan", "1", "--mode", "mesh", "--dataset_dir", root,
               "--vis_out_dir", vis, "--seed", "0"]
    seconds, out = run_timed(command)
    return seconds, [float(x) for x in out.split()[-3:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", default=os.path.join(ROOT, "..", "shared", "data"))
    parser.add_argument("--cases", default="bunny,scan")
    parser.add_argument("--repeat", type=int, default=1, help="runs per side (best time)")
    parser.add_argument("--out")
    args = parser.parse_args()
    threads = torch.get_num_threads()
    lines = [
        f"# DTU evaluation beside DTUeval-python ({datetime.date.today().isoformat()})",
        "",
        f"- CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        f"- threads: pointmetrics {threads} (torch); DTUeval-python multiprocessing.Pool() ({os.cpu_count()} "
        f"processes) for sampling, scikit-learn n_jobs=-1 for the searches",
        "- whole commands, each in its own process (reading, sampling, shuffle, reduction, masks, both "
        "searches, the visualisation PLYs), best of the runs; the same seeded shuffle on both sides",
        "",
        "| case | faces | STL points | samples | kept | DTUeval-python | pointmetrics | ratio | accuracy | "
        "completeness | overall | largest difference | our stages |",
        "|---" * 13 + "|",
    ]
    for case in args.cases.split(","):
        with tempfile.TemporaryDirectory() as root:
            mesh = {"bunny": bunny_case, "scan": scan_case}[case](args.shared, root)
            faces = len(io.load(mesh).faces)
            vis = os.path.join(root, "vis")
            os.makedirs(vis)
            runs = [ours(mesh, root, vis) for _ in range(args.repeat)]
            ours_time, result = min(runs, key=lambda r: r[0])
            ref_runs = [reference(mesh, root, vis) for _ in range(args.repeat)]
        ref = None if None in ref_runs else min(ref_runs, key=lambda r: r[0])
        numbers = [result["accuracy"], result["completeness"], result["overall"]]
        stages = ", ".join(f"{k} {v:.2f}" for k, v in result["seconds"].items())
        counts = result["counts"]
        if ref is None:
            ref_time, ratio, diff = "not installed", "-", "-"
        else:
            ref_time, ratio = f"{ref[0]:.1f} s", f"**{ref[0] / ours_time:.1f}x**"
            diff = f"{max(abs(a - b) / abs(b) for a, b in zip(numbers, ref[1])):.1e} relative"
        lines.append(
            f"| {case} | {faces:,} | {counts['stl']:,} | {counts['samples']:,} | {counts['downsampled']:,} | "
            f"{ref_time} | {ours_time:.1f} s | {ratio} | {numbers[0]:.4f} | {numbers[1]:.4f} | {numbers[2]:.4f} | "
            f"{diff} | {stages} |")
        print(lines[-1], flush=True)
    print("\n".join(lines))
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
