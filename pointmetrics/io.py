"""Reading and writing meshes and point clouds, in one place.

Meshes and clouds in ply/obj/off/stl/glb load through trimesh; pcd (ASCII or binary), xyz/txt
(whitespace separated columns) and npy (an (N, 3+) array) are read here. Errors name the file and
the reason. A file shorter than its own header says (PLY element counts, OFF counts, binary STL,
PCD POINTS, NPY shape, an OBJ cut mid-line) is an error, never a smaller cloud; xyz/txt files
declare no count, so only a row cut short is detected there.
"""

from __future__ import annotations

import os
import warnings
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
    note: str | None = None  # something the reader should tell the user (e.g. a mesh file with no faces)

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
            data = _loadtxt(path, f)
            if len(data) != count:
                raise _fail(path, f"truncated or corrupt: the header declares {count} points, "
                                  f"the data holds {len(data)}")
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
            payload = f.read(count * dtype.itemsize)
            if len(payload) < count * dtype.itemsize:
                raise _fail(path, f"truncated: the header declares {count} points ({count * dtype.itemsize} bytes), "
                                  f"the data holds {len(payload)} bytes")
            raw = np.frombuffer(payload, dtype=dtype, count=count)
            return np.stack([raw["x"], raw["y"], raw["z"]], axis=1).astype(np.float64)
        else:
            raise _fail(path, f"PCD DATA {mode} is not supported (ascii and binary are)")
    cols = [fields.index(c) for c in ("x", "y", "z")]
    return data[:, cols]


def _loadtxt(path: str, source) -> np.ndarray:
    """Whitespace-separated numbers as an (N, k) array; an empty file is (0, 0), without numpy's warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "input contained no data": reported as "contains no points"
        try:
            return np.loadtxt(source, dtype=np.float64, ndmin=2)
        except ValueError as error:  # a row with a different number of columns, e.g. a last line cut short
            raise _fail(path, f"truncated or malformed text ({error})") from error


def load(path: str | os.PathLike) -> Geometry:
    """Reads a mesh or a point cloud. Raises GeometryFileError naming the file and the problem.

    Files that declare their size (PLY element counts, OFF counts, binary STL, PCD POINTS, NPY
    shapes) are checked against their data, so a truncated file is an error, never a smaller cloud.
    A mesh file that holds no faces is returned as a point cloud with a ``note`` saying so.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise _fail(path, "no such file")
    if os.path.isdir(path):
        raise _fail(path, "is a directory, not a mesh or point-cloud file")
    if os.path.getsize(path) == 0:
        raise _fail(path, "is empty (0 bytes)")
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in MESH_SUFFIXES + POINT_SUFFIXES:
        known = MESH_SUFFIXES + POINT_SUFFIXES
        raise _fail(path, f"unknown format {suffix or '(no suffix)'!r}; expected one of {known}")
    try:
        if suffix in POINT_SUFFIXES:
            return _checked(path, _load_points(path, suffix))
        return _checked(path, _load_mesh(path, suffix))
    except GeometryFileError:
        raise
    except Exception as error:  # noqa: BLE001 - any parser failure becomes one clear message
        raise _fail(path, f"cannot be read ({type(error).__name__}: {error})") from error


def _load_points(path: str, suffix: str) -> Geometry:
    if suffix == ".npy":
        try:
            array = np.load(path)
        except ValueError as error:
            if "Failed to read all data" in str(error):
                raise _fail(path, f"truncated: {error}") from error
            raise
        if array.ndim != 2 or array.shape[1] < 3:
            raise _fail(path, f"expected an (N, 3) array, got shape {array.shape}")
        return Geometry(torch.as_tensor(np.asarray(array[:, :3], dtype=np.float64)))
    if suffix == ".pcd":
        return Geometry(torch.as_tensor(_read_pcd(path)))
    array = _loadtxt(path, path)  # .xyz / .txt / .pts: no declared count; a cut row fails the column count
    if array.size == 0:
        raise _fail(path, "contains no points")
    if array.shape[1] < 3:
        raise _fail(path, f"expected at least 3 columns, got {array.shape[1]}")
    normals = torch.as_tensor(array[:, 3:6]) if array.shape[1] >= 6 else None
    return Geometry(torch.as_tensor(array[:, :3]), normals=normals)


def _load_mesh(path: str, suffix: str) -> Geometry:
    declares_faces = _check_declared_sizes(path, suffix)
    simple = _read_simple_binary_ply(path) if suffix == ".ply" else None
    if simple is not None:
        vertices, faces = simple
    else:
        import trimesh

        loaded = trimesh.load(path, process=False)
        if isinstance(loaded, trimesh.Scene):
            loaded = loaded.to_geometry() if hasattr(loaded, "to_geometry") else loaded.dump(concatenate=True)
        vertices = torch.as_tensor(np.asarray(loaded.vertices, dtype=np.float64))
        faces = getattr(loaded, "faces", None)
    if faces is not None and len(faces) > 0:
        return Geometry(vertices, torch.as_tensor(np.asarray(faces, dtype=np.int64)))
    note = None
    if declares_faces:  # a mesh format without faces: say so rather than silently scoring points
        note = f"{path}: the mesh file holds no faces; it is used as a point cloud of its {len(vertices)} vertices"
    return Geometry(vertices, note=note)


def _read_simple_binary_ply(path: str) -> tuple[torch.Tensor, np.ndarray | None] | None:
    """(vertices, faces or None) of a binary PLY holding a vertex element (x, y, z among scalar
    properties) and at most a face element of triangles, read with numpy: what reconstructions and
    DTU's reference clouds are, read without importing trimesh (0.7 s) and at disk speed. None for
    anything else (ASCII, polygons, other elements), which trimesh reads. Call after _check_ply."""
    with open(path, "rb") as f:
        fmt, elements = _ply_header(path, f)
        if fmt not in ("binary_little_endian", "binary_big_endian"):
            return None
        endian = "<" if fmt == "binary_little_endian" else ">"
        names = [e.name for e in elements]
        if names not in (["vertex"], ["vertex", "face"]) or elements[0].has_lists:
            return None
        columns = [p[0] for p in elements[0].properties]
        if len(set(columns)) != len(columns) or not {"x", "y", "z"} <= set(columns):
            return None
        vertex = np.dtype([(p[0], endian + _PLY_KINDS[p[1]] + str(_PLY_SIZES[p[1]])) for p in elements[0].properties])
        records = np.fromfile(f, dtype=vertex, count=elements[0].count)
        vertices = torch.from_numpy(np.stack([records[c].astype(np.float64) for c in "xyz"], axis=1))
        if len(elements) == 1:
            return vertices, None
        face = elements[1]
        if len(face.properties) != 1 or len(face.properties[0]) != 3:
            return None
        _, count_type, index_type = face.properties[0]
        triangle = np.dtype([("n", endian + _PLY_KINDS[count_type] + str(_PLY_SIZES[count_type])),
                             ("v", endian + _PLY_KINDS[index_type] + str(_PLY_SIZES[index_type]), (3,))])
        faces = np.fromfile(f, dtype=triangle, count=face.count)
        if len(faces) != face.count or not (faces["n"] == 3).all():
            return None  # polygons: trimesh triangulates them
        return vertices, faces["v"].astype(np.int64)


def _check_declared_sizes(path: str, suffix: str) -> bool:
    """Raises GeometryFileError if the data is shorter than the file's own header says (a truncated
    file). Returns whether the format declares faces (PLY with a face element, OBJ, OFF, STL, glTF)."""
    if suffix == ".ply":
        return _check_ply(path)
    if suffix == ".off":
        _check_off(path)
    elif suffix == ".stl":
        _check_stl(path)
    elif suffix == ".obj":
        _check_obj(path)
    return True


# PLY ---------------------------------------------------------------------------------------------

_PLY_SIZES = {"char": 1, "uchar": 1, "int8": 1, "uint8": 1, "short": 2, "ushort": 2, "int16": 2, "uint16": 2,
              "int": 4, "uint": 4, "int32": 4, "uint32": 4, "float": 4, "float32": 4, "double": 8, "float64": 8}
_PLY_KINDS = {"char": "i", "int8": "i", "short": "i", "int16": "i", "int": "i", "int32": "i",
              "uchar": "u", "uint8": "u", "ushort": "u", "uint16": "u", "uint": "u", "uint32": "u",
              "float": "f", "float32": "f", "double": "f", "float64": "f"}


@dataclass
class _PlyElement:
    name: str
    count: int
    properties: list  # (name, type) for scalars, (name, count type, item type) for lists

    @property
    def has_lists(self) -> bool:
        return any(len(p) == 3 for p in self.properties)


def _ply_header(path: str, f) -> tuple[str, list[_PlyElement]]:
    if f.readline().strip() != b"ply":
        raise _fail(path, "not a PLY file (no 'ply' magic line)")
    fmt, elements = "", []
    while True:
        line = f.readline()
        if not line:
            raise _fail(path, "truncated: the PLY header has no end_header")
        words = line.decode("ascii", errors="replace").split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "end_header":
            return fmt, elements
        if words[0] == "format" and len(words) >= 2:
            fmt = words[1]
        elif words[0] == "element" and len(words) == 3:
            elements.append(_PlyElement(words[1], int(words[2]), []))
        elif words[0] == "property" and elements:
            if words[1] == "list" and len(words) == 5:
                elements[-1].properties.append((words[4], words[2], words[3]))
            elif len(words) == 3:
                elements[-1].properties.append((words[2], words[1]))
            else:
                raise _fail(path, f"malformed PLY header line {line.strip()!r}")
        else:
            raise _fail(path, f"malformed PLY header line {line.strip()!r}")


def _check_ply(path: str) -> bool:
    with open(path, "rb") as f:
        fmt, elements = _ply_header(path, f)
        for element in elements:
            for prop in element.properties:
                for t in prop[1:]:
                    if t not in _PLY_SIZES:
                        raise _fail(path, f"unknown PLY property type {t!r}")
        if fmt == "ascii":
            _check_ply_ascii(path, f.read(), elements)
        elif fmt in ("binary_little_endian", "binary_big_endian"):
            _check_ply_binary(path, f, elements, "<" if fmt == "binary_little_endian" else ">")
        else:
            raise _fail(path, f"unknown PLY format {fmt!r}")
    return any(e.name == "face" for e in elements)


def _declared(elements: list[_PlyElement]) -> str:
    return " and ".join(f"{e.count} {e.name}" for e in elements)


def _check_ply_ascii(path: str, data: bytes, elements: list[_PlyElement]) -> None:
    """One record per line (PLY's rule): the data must hold at least as many lines as records, and
    the last record must be complete (a file cut mid-line leaves it short)."""
    text = data.strip()
    lines = text.count(b"\n") + 1 if text else 0
    records = sum(e.count for e in elements)
    if lines < records:
        raise _fail(path, f"truncated: the PLY header declares {_declared(elements)} records, "
                          f"the data holds {lines} lines")
    last = next((e for e in reversed(elements) if e.count), None)
    if last is None or lines > records:  # extra trailing lines: the declared records are all there
        return
    tokens = text.rsplit(b"\n", 1)[-1].split()
    if not _ply_ascii_record_complete(tokens, last):
        raise _fail(path, f"truncated: the last {last.name} record is incomplete ({len(tokens)} values)")


def _ply_ascii_record_complete(tokens: list, element: _PlyElement) -> bool:
    position = 0
    for prop in element.properties:
        if position >= len(tokens):
            return False
        if len(prop) == 3:
            try:
                position += int(float(tokens[position]))
            except ValueError:
                return False
        position += 1
    return position <= len(tokens)


def _check_ply_binary(path: str, f, elements: list[_PlyElement], endian: str) -> None:
    start = f.tell()
    remaining = os.fstat(f.fileno()).st_size - start
    needed = 0
    for element in elements:
        if not element.has_lists:
            needed += element.count * sum(_PLY_SIZES[p[1]] for p in element.properties)
            continue
        f.seek(start + needed)
        size = _ply_list_element_size(f, element, endian)
        if size is None:
            break
        needed += size
    else:
        if needed <= remaining:
            return
    raise _fail(path, f"truncated: the PLY header declares {_declared(elements)} records "
                      f"({needed if needed > remaining else 'more'} bytes), the data holds {remaining} bytes")


def _ply_list_element_size(f, element: _PlyElement, endian: str) -> int | None:
    """Bytes taken by an element with list properties, or None if the data ends first. Fast when
    every record has the first record's list lengths (triangles), record by record otherwise."""
    def dtype_for(lengths: list[int]) -> np.dtype:
        fields, k = [], 0
        for prop in element.properties:
            if len(prop) == 2:
                fields.append((prop[0], endian + _PLY_KINDS[prop[1]] + str(_PLY_SIZES[prop[1]])))
            else:
                fields.append((f"{prop[0]}_n", endian + _PLY_KINDS[prop[1]] + str(_PLY_SIZES[prop[1]])))
                fields.append((prop[0], endian + _PLY_KINDS[prop[2]] + str(_PLY_SIZES[prop[2]]), (lengths[k],)))
                k += 1
        return np.dtype(fields)

    if element.count == 0:
        return 0
    origin = f.tell()
    first = _ply_record_lengths(f, element, endian)
    if first is None:
        return None
    uniform = dtype_for(first)
    f.seek(origin)
    data = f.read(element.count * uniform.itemsize)
    if len(data) == element.count * uniform.itemsize:
        records = np.frombuffer(data, dtype=uniform)
        lists = [p[0] for p in element.properties if len(p) == 3]
        if all((records[f"{name}_n"] == n).all() for name, n in zip(lists, first)):
            return len(data)
    f.seek(origin)
    for _ in range(element.count):  # mixed polygon sizes: walk
        if _ply_record_lengths(f, element, endian) is None:
            return None
    return f.tell() - origin


def _ply_record_lengths(f, element: _PlyElement, endian: str) -> list[int] | None:
    """Reads one record (leaving f after it); its list lengths, or None at the end of the data."""
    lengths = []
    for prop in element.properties:
        if len(prop) == 2:
            skip = _PLY_SIZES[prop[1]]
        else:
            raw = f.read(_PLY_SIZES[prop[1]])
            if len(raw) < _PLY_SIZES[prop[1]]:
                return None
            n = int(np.frombuffer(raw, dtype=endian + _PLY_KINDS[prop[1]] + str(len(raw)))[0])
            lengths.append(n)
            skip = n * _PLY_SIZES[prop[2]]
        if len(f.read(skip)) < skip:
            return None
    return lengths


# OFF, STL, OBJ ----------------------------------------------------------------------------------


def _data_lines(path: str) -> list[list[str]]:
    with open(path, errors="replace") as f:
        return [line.split("#", 1)[0].split() for line in f if line.split("#", 1)[0].strip()]


def _check_off(path: str) -> None:
    lines = _data_lines(path)
    if not lines or not lines[0][0].upper().endswith("OFF"):
        raise _fail(path, "not an OFF file (no OFF magic)")
    counts, body = (lines[0][1:], lines[1:]) if len(lines[0]) > 1 else (lines[1] if len(lines) > 1 else [], lines[2:])
    if len(counts) < 2:
        raise _fail(path, "truncated: the OFF header has no vertex and face counts")
    vertices, faces = int(counts[0]), int(counts[1])
    if len(body) < vertices + faces:
        raise _fail(path, f"truncated: the OFF header declares {vertices} vertices and {faces} faces, "
                          f"the data holds {len(body)} lines")
    last = body[vertices + faces - 1] if vertices + faces else []
    complete = (len(last) >= 1 + int(last[0])) if faces else len(last) >= 3
    if vertices + faces and not complete:
        raise _fail(path, f"truncated: the last OFF record is incomplete ({' '.join(last)!r})")


def _check_stl(path: str) -> None:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(84)
    if len(head) == 84 and size == 84 + 50 * int(np.frombuffer(head[80:84], "<u4")[0]):
        return  # a complete binary STL (whatever its 80-byte header says)
    if head.lstrip().lower().startswith(b"solid"):
        with open(path, "rb") as f:
            f.seek(max(0, size - 1024))
            if b"endsolid" in f.read().lower():
                return
        raise _fail(path, "truncated: the ASCII STL has no endsolid line")
    declared = int(np.frombuffer(head[80:84], "<u4")[0]) if len(head) == 84 else 0
    raise _fail(path, f"truncated: the binary STL declares {declared} triangles ({84 + 50 * declared} bytes), "
                      f"the file has {size} bytes")


def _check_obj(path: str) -> None:
    """OBJ declares no counts; a file cut short shows as an incomplete last v/vn/f line."""
    with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - 4096))
        tail = f.read().decode("utf-8", errors="replace").strip().rsplit("\n", 1)[-1].split("#", 1)[0].split()
    minimum = {"v": 4, "vn": 4, "f": 4, "vt": 2}
    if tail and tail[0] in minimum and len(tail) < minimum[tail[0]]:
        raise _fail(path, f"truncated: the last line is an incomplete {tail[0]!r} record ({' '.join(tail)!r})")


def _checked(path: str, g: Geometry) -> Geometry:
    if g.vertices.ndim != 2 or g.vertices.shape[0] == 0:
        raise _fail(path, "contains no points")
    if g.vertices.shape[1] != 3:
        raise _fail(path, f"has {g.vertices.shape[1]}-dimensional vertices, expected 3 (truncated or malformed?)")
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


def check_output_dir(path) -> None:
    """Raises ValueError naming ``path`` if it cannot be an output directory (it is a file, or a
    parent is a file); called before any work so that a long run does not fail at its end."""
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{path}: exists and is not a directory (an output directory is expected)")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):  # the nearest existing ancestor is where makedirs starts
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"{path}: cannot be created, {existing} is not a directory")
    if not os.access(existing, os.W_OK):
        raise ValueError(f"{path}: cannot be written ({existing} is not writable)")


def check_output_file(path) -> None:
    """Raises ValueError naming ``path`` if it cannot be an output file (a directory, or its folder
    is missing or not writable)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a directory (an output file is expected)")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"{path}: its folder {folder} does not exist")
    if not os.access(path if os.path.exists(path) else folder, os.W_OK):
        raise ValueError(f"{path}: is not writable")
