"""Rasteriser benchmark: the 4 ICON views (orthographic, 512 x 512) of real meshes, our CPU (and
CUDA, when present) rasteriser and full normal-map render beside trimesh's ray-cast renderer of the
same views, in one run.

    python scripts/bench_raster.py [--shared ../shared/data] [--trimesh-size 128] [--out bench/results/raster_cpu.md]

Meshes: the Stanford bunny (69,451 faces), the armadillo subdivided once (116,680 faces: the
"100k-face" target) and the bunny subdivided twice (1,111,216 faces). trimesh (without embree it
casts rays through an r-tree) is timed at --trimesh-size pixels per side: its r-tree builds count
once, its ray time is scaled by the pixel count to 512 x 512 (the cost per ray is constant, and a
full run would take minutes per mesh). The table says so.
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
import trimesh

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_timing import THREADS, best_time, gpu_time  # noqa: E402

import pointmetrics as pm  # noqa: E402
from pointmetrics.io import load  # noqa: E402

SIZE = 512
VIEWS = pm.human.ICON_VIEWS


def normalised(vertices: torch.Tensor) -> torch.Tensor:
    v = vertices - (vertices.max(0).values + vertices.min(0).values) / 2
    return (v / v.abs().max() * 0.95).float()


def meshes(shared: str):
    bunny = load(os.path.join(shared, "stanford_bunny", "reconstruction", "bun_zipper.ply"))
    armadillo = load(os.path.join(shared, "stanford_armadillo", "armadillo.obj"))
    arm = trimesh.Trimesh(armadillo.vertices.numpy(), armadillo.faces.numpy(), process=False).subdivide()
    big = trimesh.Trimesh(bunny.vertices.numpy(), bunny.faces.numpy(), process=False).subdivide().subdivide()
    return [
        ("bunny", normalised(bunny.vertices), bunny.faces),
        ("armadillo x4", normalised(torch.tensor(arm.vertices)), torch.tensor(arm.faces)),
        ("bunny x16", normalised(torch.tensor(big.vertices)), torch.tensor(big.faces)),
    ]


def trimesh_views(verts: torch.Tensor, faces: torch.Tensor, size: int) -> tuple[np.ndarray, float, float]:
    """Front face id per pixel in the 4 ICON views by ray casting (the model turned, rays down -z),
    with the seconds spent building the r-trees and casting the rays."""
    centres = (2 * np.arange(size) + 1) / size - 1
    X, Y = np.meshgrid(centres, -centres)
    origins = np.stack([X.ravel(), Y.ravel(), np.full(X.size, 10.0)], 1)
    directions = np.tile([0.0, 0.0, -1.0], (X.size, 1))
    out, build, cast = [], 0.0, 0.0
    for rotation in pm.rotation_y(VIEWS)[:, :3, :3].numpy():
        mesh = trimesh.Trimesh(verts.double().numpy() @ rotation.T, faces.numpy(), process=False)
        start = time.perf_counter()
        mesh.triangles_tree  # noqa: B018 (built and cached on first use)
        build += time.perf_counter() - start
        start = time.perf_counter()
        out.append(trimesh.ray.ray_triangle.RayMeshIntersector(mesh).intersects_first(origins, directions))
        cast += time.perf_counter() - start
    return np.stack(out).reshape(len(VIEWS), size, size), build, cast


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", default=os.path.join("..", "shared", "data"))
    parser.add_argument("--trimesh-size", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", help="also write the table (markdown) here")
    args = parser.parse_args()
    cams = pm.human_cameras("icon2022")
    cuda = torch.cuda.is_available()
    rows = []
    for name, v, f in meshes(args.shared):
        raster = best_time(lambda v=v, f=f: pm.rasterize(v, f, cams, SIZE), args.repeat)
        render = best_time(lambda v=v, f=f: pm.normal_images(v, f, "icon2022", image_size=SIZE), args.repeat)
        ray_faces, build, cast = trimesh_views(v, f, args.trimesh_size)
        ray = build + cast * (SIZE / args.trimesh_size) ** 2
        ours = pm.rasterize(v, f, cams, args.trimesh_size).face.numpy()
        agree = float((ours == ray_faces).mean())
        row = {"mesh": name, "faces": f.shape[0], "raster": raster, "render": render, "trimesh": ray, "agree": agree}
        if cuda:
            vc, fc = v.cuda(), f.cuda()
            row["gpu_raster"] = gpu_time(lambda vc=vc, fc=fc: pm.rasterize(vc, fc, cams, SIZE), args.repeat)
            row["gpu_render"] = gpu_time(
                lambda vc=vc, fc=fc: pm.normal_images(vc, fc, "icon2022", image_size=SIZE), args.repeat
            )
            gpu = pm.rasterize(vc, fc, cams, SIZE)
            cpu = pm.rasterize(v, f, cams, SIZE)
            row["gpu_equal"] = bool(torch.equal(gpu.face.cpu(), cpu.face))
        rows.append(row)
        print(row, flush=True)

    header = (
        f"# Rasteriser: 4 ICON views at {SIZE} x {SIZE}\n\n"
        f"{datetime.date.today()}, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{THREADS} CPU threads{', GPU ' + torch.cuda.get_device_name() if cuda else ''}. Best of {args.repeat}. "
        f"raster: `rasterize` (face ids, barycentrics, depth); render: `normal_images` (raster + vertex normals + "
        f"interpolation, ICON colours). trimesh: ray casting (r-tree, no embree): its r-tree builds plus its "
        f"ray time at {args.trimesh_size}^2 scaled by pixel count to {SIZE}^2; 'same face' compares both at "
        f"{args.trimesh_size}^2 (differences sit on triangle edges and duplicate faces).\n\n"
    )
    cols = "| mesh | faces | raster CPU | render CPU | trimesh (scaled) | trimesh / raster | same face |"
    sep = "|---|---|---|---|---|---|---|"
    if cuda:
        cols += " raster GPU | render GPU | GPU = CPU |"
        sep += "---|---|---|"
    lines = [header + cols, sep]
    for r in rows:
        line = (f"| {r['mesh']} | {r['faces']:,} | {r['raster'] * 1e3:.1f} ms | {r['render'] * 1e3:.1f} ms | "
                f"{r['trimesh']:.1f} s | {r['trimesh'] / r['raster']:.0f}x | {100 * r['agree']:.2f}% |")
        if cuda:
            line += f" {r['gpu_raster'] * 1e3:.2f} ms | {r['gpu_render'] * 1e3:.2f} ms | {r['gpu_equal']} |"
        lines.append(line)
    table = "\n".join(lines) + "\n"
    print("\n" + table)
    if args.out:
        with open(args.out, "w") as out:
            out.write(table)


if __name__ == "__main__":
    main()
