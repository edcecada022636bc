"""Reading and writing meshes and point clouds, in one place.

Meshes and clouds in ply/obj/off/stl/glb load through trimesh; pcd (ASCII or binary), xyz/txt
(whitespace separated columns) and npy (an (N, 3+) array) are read here. Errors name the file and
the reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

MESH_SUFFIXES = (".ply", ".obj", ".off", ".stl", ".glb", ".gltf")
POINT_SUFFIXES = (".pcd", ".xyz", ".txt", ".npy", ".pts")


class GeometryFileError(ValueError):
    """A file that cannot be read as a mesh or point cloud; the message names the file."""


@dataclass
class Geometry:
    """Vertices (N, 3) float64, faces (F, 3) int64 or None for a point cloud, optional normals (N, 3)."""

    vertices: torch.Tensor
    faces: torch.Tensor | None = None
    normals: torch.Tensor | None = None

    @property
    def is_mesh(self) -> bool:
        return self.faces is not None and self.faces.shape[0] > 0


def _fail(path: str, reason: str) -> GeometryFileError:
    return GeometryFileError(f"{path}: {reason}")


def _read_pcd(path: str) -> np.ndarray:
    with open(path, "rb") as f:
        header: dict[str, list[str]] = {}
        while True:
            line = f.readline()
            if not line:
                raise _fail(path, "PCD header ended before DATA")
            words = line.decode("ascii", errors="replace").split()
            if not words or words[0].startswith("#"):
                continue
            header[words[0].upper()] = words[1:]
            if words[0].upper() == "DATA":
                break
        fields = header.get("FIELDS", [])
        if not {"x", "y", "z"} <= set(fields):
            raise _fail(path, f"PCD has no x, y, z fields (fields: {fields})")
        count = int(header.get("POINTS", header.get("WIDTH", ["0"]))[0])
        mode = header["DATA"][0].lower()
        if mode == "ascii":
            data = np.loadtxt(f, dtype=np.float64, ndmin=2)
        elif mode == "binary":
            sizes = [int(s) for s in header["SIZE"]]
            types = header["TYPE"]
            counts = [int(c) for c in header.get("COUNT", ["1"] * len(fields))]
            dtype = np.dtype(
                [
                    (name, {"F": "f", "I": "i", "U": "u"}[t] + str(s), (c,) if c > 1 else ())
                    for name, s, t, c in zip(fields, sizes, types, counts)
                ]
            )
            raw = np.frombuffer(f.read(count * dtype.itemsize), dtype=dtype, count=count)
            return np.stack([raw["x"], raw["y"], raw["z"]], axis=1).astype(np.float64)
        else:
            raise _fail(path, f"PCD DATA {mode} is not supported (ascii and binary are)")
    cols = [fields.index(c) for c in ("x", "y", "z")]
    return data[:, cols]


def load(path: str | os.PathLike) -> Geometry:
    """Reads a mesh or a point cloud. Raises GeometryFileError naming the file and the problem."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise _fail(path, "no such file")
    suffix = os.path.splitext(path)[1].lower()
    try:
        if suffix == ".npy":
            array = np.load(path)
            if array.ndim != 2 or array.shape[1] < 3:
                raise _fail(path, f"expected an (N, 3) array, got shape {array.shape}")
            return _checked(path, Geometry(torch.as_tensor(array[:, :3], dtype=torch.float64)))
        if suffix == ".pcd":
            return _checked(path, Geometry(torch.as_tensor(_read_pcd(path))))
        if suffix in (".xyz", ".txt", ".pts"):
            array = np.loadtxt(path, dtype=np.float64, ndmin=2)
            if array.shape[1] < 3:
                raise _fail(path, f"expected at least 3 columns, got {array.shape[1]}")
            normals = torch.as_tensor(array[:, 3:6]) if array.shape[1] >= 6 else None
            return _checked(path, Geometry(torch.as_tensor(array[:, :3]), normals=normals))
        if suffix not in MESH_SUFFIXES:
            raise _fail(path, f"unknown format {suffix!r}; expected one of {MESH_SUFFIXES + POINT_SUFFIXES}")
        import trimesh

        loaded = trimesh.load(path, process=False)
        if isinstance(loaded, trimesh.Scene):
            loaded = loaded.to_geometry() if hasattr(loaded, "to_geometry") else loaded.dump(concatenate=True)
        vertices = torch.as_tensor(np.asarray(loaded.vertices, dtype=np.float64))
        faces = getattr(loaded, "faces", None)
        faces = None if faces is None or len(faces) == 0 else torch.as_tensor(np.asarray(faces, dtype=np.int64))
        return _checked(path, Geometry(vertices, faces))
    except GeometryFileError:
        raise
    except Exception as error:  # noqa: BLE001 - any parser failure becomes one clear message
        raise _fail(path, f"cannot be read ({type(error).__name__}: {error})") from error


def _checked(path: str, g: Geometry) -> Geometry:
    if g.vertices.ndim != 2 or g.vertices.shape[0] == 0:
        raise _fail(path, "contains no points")
    if not torch.isfinite(g.vertices).all():
        raise _fail(path, "contains NaN or Inf coordinates")
    if g.faces is not None and g.faces.numel() > 0:
        if int(g.faces.min()) < 0 or int(g.faces.max()) >= g.vertices.shape[0]:
            raise _fail(path, "has faces that index missing vertices")
    return g


def save_ply(path: str | os.PathLike, points, colors=None, faces=None, scalars: dict | None = None) -> None:
    """Writes a binary little-endian PLY: float32 x, y, z, optional uint8 RGB colours (N, 3) in
    [0, 255], optional float32 per-vertex scalar properties, optional int32 triangle faces."""
    points = np.asarray(points, dtype=np.float32)
    columns = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colors is not None:
        columns += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    for name in scalars or {}:
        columns.append((name, "<f4"))
    vertex = np.empty(len(points), dtype=columns)
    vertex["x"], vertex["y"], vertex["z"] = points[:, 0], points[:, 1], points[:, 2]
    if colors is not None:
        colors = np.asarray(colors, dtype=np.uint8)
        vertex["red"], vertex["green"], vertex["blue"] = colors[:, 0], colors[:, 1], colors[:, 2]
    for name, values in (scalars or {}).items():
        vertex[name] = np.asarray(values, dtype=np.float32)
    names = {"<f4": "float", "u1": "uchar"}
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(points)}"]
    header += [f"property {names[t]} {n}" for n, t in columns]
    if faces is not None:
        faces = np.asarray(faces, dtype=np.int32)
        header += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
    header.append("end_header")
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(vertex.tobytes())
        if faces is not None:
            record = np.empty(len(faces), dtype=[("n", "u1"), ("v", "<i4", (3,))])
            record["n"] = 3
            record["v"] = faces
            f.write(record.tobytes())
