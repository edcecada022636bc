"""Derives the small example files in examples/data/ from the shared Stanford bunny data.

    python scripts/prepare_example_data.py ../shared/data

Writes bunny_res3.ply and bunny_res4.ply (exact copies of the decimated reconstructions),
bunny_scans_20k.ply (20,000 points drawn with seed 0 from the ten aligned range scans),
bunny_zipper_vertices.ply (the vertices of the full zippered reconstruction, float32), and
armadillo.ply, demosthenes.ply and smpl_body.ply (the OBJ meshes as binary PLY). Credits and licences:
examples/data/README.md.
"""

import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from pointmetrics import io  # noqa: E402


def main(shared: str) -> None:
    out = os.path.join(os.path.dirname(__file__), "..", "examples", "data")
    os.makedirs(out, exist_ok=True)
    bunny = os.path.join(shared, "stanford_bunny")
    for res in ("res3", "res4"):
        source = os.path.join(bunny, "reconstruction", f"bun_zipper_{res}.ply")
        shutil.copyfile(source, os.path.join(out, f"bunny_{res}.ply"))
    scans = io.load(os.path.join(bunny, "derived", "bun_scans_aligned.ply")).vertices.numpy()
    pick = np.random.default_rng(0).choice(len(scans), 20000, replace=False)
    io.save_ply(os.path.join(out, "bunny_scans_20k.ply"), scans[np.sort(pick)])
    zipper = io.load(os.path.join(bunny, "reconstruction", "bun_zipper.ply")).vertices.numpy()
    io.save_ply(os.path.join(out, "bunny_zipper_vertices.ply"), zipper)
    for source, name in (
        ("stanford_armadillo/armadillo.obj", "armadillo.ply"),
        ("demosthenes_photoscan/demosthenes-low-res.obj", "demosthenes.ply"),
        ("human_smpl/human_man.obj", "smpl_body.ply"),
    ):
        mesh = io.load(os.path.join(shared, source))
        io.save_ply(os.path.join(out, name), mesh.vertices.numpy(), faces=mesh.faces.numpy())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join("..", "shared", "data"))
