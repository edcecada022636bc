"""Reading files: a file shorter than its own header says is an error naming the file, in every
format that declares a size; a cut at any point, not one lucky offset."""

import os

import numpy as np
import pytest
import trimesh
from conftest import DATA

from pointmetrics import io


def cuts(data: bytes, start: int, end: int, gen, count: int = 6) -> list[int]:
    """Random cut offsets in [start, end), plus both ends."""
    return sorted({start, end - 1, *(int(c) for c in gen.integers(start, end, count))})


@pytest.fixture
def rng():
    seed = int(os.environ.get("POINTMETRICS_SEED", int.from_bytes(os.urandom(4), "little")))
    print(f"POINTMETRICS_SEED={seed}")
    return np.random.default_rng(seed)


def header_end(data: bytes) -> int:
    return data.index(b"end_header\n") + len(b"end_header\n")


def assert_truncated(path, data: bytes, offsets: list[int]) -> None:
    for cut in offsets:
        path.write_bytes(data[:cut])
        with pytest.raises(io.GeometryFileError, match=path.name) as error:
            io.load(path)
        assert "truncated" in str(error.value) or "no points" in str(error.value) or "empty" in str(error.value), cut


@pytest.mark.parametrize("name", ["bunny_res3.ply", "bunny_res4.ply", "armadillo.ply", "bunny_scans_20k.ply",
                                  "smpl_body.ply"])
def test_truncated_ply(tmp_path, rng, name):
    data = (DATA / name).read_bytes()
    is_ascii = b"format ascii" in data[:200]
    # ascii: one record per line; a cut inside the last line's last number cannot be told from a
    # shorter number, so the cuts remove at least one whole line.
    last_lines = data.rstrip().rsplit(b"\n", 2)
    end = len(data) - (len(last_lines[-1]) + 2) if is_ascii else len(data)
    assert_truncated(tmp_path / f"cut_{name}", data, cuts(data, header_end(data), end, rng))
    assert_truncated(tmp_path / f"header_{name}", data, [40])


def test_complete_files_load_unchanged(tmp_path):
    mesh = io.load(DATA / "bunny_res3.ply")
    assert mesh.vertices.shape == (1889, 3) and mesh.faces.shape == (3851, 3) and mesh.note is None
    assert io.load(DATA / "bunny_scans_20k.ply").faces is None


@pytest.mark.parametrize("suffix", ["off", "stl", "obj", "npy", "pcd"])
def test_truncated_other_formats(tmp_path, rng, suffix):
    mesh = trimesh.load(DATA / "bunny_res3.ply", process=False)
    path = tmp_path / f"full.{suffix}"
    if suffix == "npy":
        np.save(path, np.asarray(mesh.vertices))
    elif suffix == "pcd":
        rows = "\n".join(" ".join(f"{x:.6f}" for x in v) for v in mesh.vertices)
        header = (f"VERSION .7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH {len(mesh.vertices)}\n"
                  f"HEIGHT 1\nPOINTS {len(mesh.vertices)}\nDATA ascii\n")
        path.write_text(header + rows + "\n")
    else:
        mesh.export(path)
    full = io.load(path)
    assert len(full.vertices) >= 1887
    data = path.read_bytes()
    cut_path = tmp_path / f"cut.{suffix}"
    if suffix == "obj":  # no declared counts: a cut inside a vertex line's coordinates
        line_start = data.index(b"\nv ", len(data) // 3) + 1
        offsets = [line_start + 3, line_start + data[line_start:].index(b" ", 3) + 2]
    elif suffix == "pcd":  # whole rows removed
        offsets = [data.rindex(b"\n", 0, len(data) // 2) + 1, data.rindex(b"\n", 0, len(data) - 1) + 1]
    elif suffix == "off":  # ascii: cuts that remove at least one whole line
        offsets = cuts(data, 200, len(data) - len(data.rstrip().rsplit(b"\n", 1)[-1]) - 2, rng)
    else:
        offsets = cuts(data, 200, len(data), rng)
    assert_truncated(cut_path, data, offsets)


def test_binary_pcd_truncated(tmp_path):
    points = np.random.default_rng(0).random((100, 3)).astype(np.float32)
    header = (b"VERSION .7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 100\nHEIGHT 1\n"
              b"POINTS 100\nDATA binary\n")
    path = tmp_path / "full.pcd"
    path.write_bytes(header + points.tobytes())
    np.testing.assert_array_equal(io.load(path).vertices.numpy(), points.astype(np.float64))
    assert_truncated(tmp_path / "cut.pcd", header + points.tobytes(), [len(header) + 600, len(header) + 1199])


def test_mesh_formats_without_faces_carry_a_note(tmp_path):
    verts = io.load(DATA / "bunny_res3.ply").vertices.numpy()
    io.save_ply(tmp_path / "nofaces.ply", verts, faces=np.zeros((0, 3), dtype=np.int64))
    (tmp_path / "points.obj").write_text("".join(f"v {x} {y} {z}\n" for x, y, z in verts[:50]))
    for name in ("nofaces.ply", "points.obj"):
        g = io.load(tmp_path / name)
        assert not g.is_mesh and name in g.note and "point cloud" in g.note
    io.save_ply(tmp_path / "cloud.ply", verts)  # no face element: a point-cloud file, nothing to note
    assert io.load(tmp_path / "cloud.ply").note is None


def test_directories_empty_and_blank_files(tmp_path):
    with pytest.raises(io.GeometryFileError, match="directory"):
        io.load(tmp_path)
    (tmp_path / "empty.xyz").write_text("")
    with pytest.raises(io.GeometryFileError, match="empty"):
        io.load(tmp_path / "empty.xyz")
    (tmp_path / "blank.xyz").write_text("  \n\n")
    with _no_warnings():
        with pytest.raises(io.GeometryFileError, match="no points"):
            io.load(tmp_path / "blank.xyz")


def _no_warnings():
    import warnings

    class _Guard:
        def __enter__(self):
            self.cm = warnings.catch_warnings()
            self.cm.__enter__()
            warnings.simplefilter("error")

        def __exit__(self, *exc):
            return self.cm.__exit__(*exc)

    return _Guard()


def write_binary_ply(path, vertex_columns: list, face_type: tuple | None, faces, endian: str = "<") -> None:
    """A binary PLY: vertex_columns is [(name, ply type, numpy kind, values)], faces (F, k)."""
    fmt = "binary_little_endian" if endian == "<" else "binary_big_endian"
    n = len(vertex_columns[0][3])
    header = [f"ply\nformat {fmt} 1.0\nelement vertex {n}\n"]
    header += [f"property {ply} {name}\n" for name, ply, _, _ in vertex_columns]
    vertex = np.empty(n, dtype=[(name, endian + kind) for name, _, kind, _ in vertex_columns])
    for name, _, _, values in vertex_columns:
        vertex[name] = values
    body = vertex.tobytes()
    if face_type is not None:
        count_ply, count_kind, index_ply, index_kind = face_type
        header.append(f"element face {len(faces)}\nproperty list {count_ply} {index_ply} vertex_indices\n")
        face = np.empty(len(faces), dtype=[("n", endian + count_kind), ("v", endian + index_kind, (faces.shape[1],))])
        face["n"], face["v"] = faces.shape[1], faces
        body += face.tobytes()
    path.write_bytes("".join(header).encode() + b"end_header\n" + body)


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("coords", [("float", "f4"), ("double", "f8")])
@pytest.mark.parametrize("face_type", [("uchar", "u1", "int", "i4"), ("uint8", "u1", "uint32", "u4"),
                                       ("int", "i4", "int", "i4"), None])
def test_binary_ply_reads_as_trimesh_does(tmp_path, rng, endian, coords, face_type):
    """Binary PLYs of triangles are read with numpy (no trimesh import); the result must be trimesh's."""
    n, f = int(rng.integers(4, 300)), int(rng.integers(0, 500))
    xyz = rng.normal(size=(n, 3)) * 1000
    columns = [("nx", "float", "f4", rng.normal(size=n)), ("x", *coords, xyz[:, 0]), ("y", *coords, xyz[:, 1]),
               ("red", "uchar", "u1", rng.integers(0, 255, n)), ("z", *coords, xyz[:, 2])]
    faces = rng.integers(0, n, (f, 3))
    path = tmp_path / "mesh.ply"
    write_binary_ply(path, columns, face_type, faces, endian)
    assert io._read_simple_binary_ply(str(path)) is not None  # the fast path, not the fallback
    ours = io.load(path)
    theirs = trimesh.load(path, process=False)
    np.testing.assert_array_equal(ours.vertices.numpy(), np.asarray(theirs.vertices, dtype=np.float64))
    if face_type is None or f == 0:
        assert ours.faces is None
        assert (ours.note is None) == (face_type is None)  # an empty face element is noted
    else:
        np.testing.assert_array_equal(ours.faces.numpy(), np.asarray(theirs.faces))


def test_binary_ply_with_polygons_falls_back_to_trimesh(tmp_path, rng):
    xyz = rng.normal(size=(8, 3))
    columns = [(c, "float", "f4", xyz[:, k]) for k, c in enumerate("xyz")]
    quads = np.array([[0, 1, 2, 3], [4, 5, 6, 7]])
    path = tmp_path / "quads.ply"
    write_binary_ply(path, columns, ("uchar", "u1", "int", "i4"), quads)
    assert io._read_simple_binary_ply(str(path)) is None
    assert io.load(path).faces.shape == (4, 3)  # trimesh splits each quad in two
