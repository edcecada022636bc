"""Face index dtypes, degenerate faces and device-correct surface sampling (issue 13)."""

from __future__ import annotations

import pytest
import torch

import pointmetrics as pm
from pointmetrics import mesh as mesh_module

INTEGER_DTYPES = [torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.uint16, torch.uint32,
                  torch.uint64]


def tetrahedron(dtype=torch.float64, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    verts = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1.0]], dtype=dtype, device=device)
    faces = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], device=device)
    return verts, faces


def cameras_on(cameras, device):
    return pm.Cameras(cameras.view.to(device), cameras.projection.to(device))


@pytest.mark.parametrize("index_dtype", INTEGER_DTYPES)
def test_every_integer_face_dtype_gives_the_int64_result(device, index_dtype):
    verts, faces = tetrahedron(device=device)
    small = faces.to(index_dtype)
    want = pm.sample_points_on_mesh(verts, faces, 500, generator=torch.Generator().manual_seed(0))
    got = pm.sample_points_on_mesh(verts, small, 500, generator=torch.Generator().manual_seed(0))
    for g, w in zip(got, want):
        assert torch.equal(g, w)
    assert torch.equal(pm.sample_mesh_lattice(verts, small, 0.1), pm.sample_mesh_lattice(verts, faces, 0.1))
    areas, _ = pm.mesh.face_areas_normals(verts, small)
    assert torch.equal(areas, pm.mesh.face_areas_normals(verts, faces)[0])
    meshes = pm.mesh.as_meshes(verts, small)
    assert meshes.faces.dtype == torch.int64 and torch.equal(meshes.faces[0], faces)
    batched = pm.mesh.as_meshes(verts[None], small[None])
    assert batched.faces.dtype == torch.int64 and torch.equal(batched.faces[0], faces)
    listed = pm.mesh.as_meshes([verts], [small])
    assert torch.equal(listed.faces[0], faces)
    cameras = cameras_on(pm.Cameras.orthographic(pm.rotation_y([30])), device)
    assert torch.equal(pm.rasterize(verts, small, cameras, 16).face, pm.rasterize(verts, faces, cameras, 16).face)
    assert torch.equal(pm.vertex_normals(verts, small), pm.vertex_normals(verts, faces))
    points = torch.rand(20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).to(device)
    torch.testing.assert_close(pm.point_to_surface_distance(points, verts, small),
                               pm.point_to_surface_distance(points, verts, faces))
    torch.testing.assert_close(pm.ddm_m2p(verts, small, points, generator=torch.Generator().manual_seed(3)),
                               pm.ddm_m2p(verts, faces, points, generator=torch.Generator().manual_seed(3)))


def test_packed_faces_of_a_small_dtype_are_localised_without_wrapping(device):
    verts, faces = tetrahedron(device=device)
    packed_v = torch.cat([verts, verts + 2])
    packed_f = torch.cat([faces, faces + 4]).to(torch.uint8)
    v, f, lengths = pm.mesh.meshes_from_packed(packed_v, packed_f, [4, 4], [4, 4])
    assert f.dtype == torch.int64 and torch.equal(f[1], faces) and lengths.tolist() == [4, 4]


def test_bool_faces_are_a_type_error_naming_faces():
    verts, faces = tetrahedron()
    with pytest.raises(TypeError, match="faces"):
        pm.sample_points_on_mesh(verts, faces.bool(), 10)
    with pytest.raises(TypeError, match="faces"):
        pm.rasterize(verts, faces.bool(), pm.Cameras.orthographic(pm.rotation_y([0])), 8)
    with pytest.raises(TypeError, match="faces"):
        pm.mesh.as_meshes(verts[None], faces[None].bool())


def test_faces_out_of_range_in_any_dtype_name_faces(device):
    verts, faces = tetrahedron()
    verts = verts.to(device)
    with pytest.raises(ValueError, match="faces must index vertices in \\[0, 3\\]"):
        pm.sample_points_on_mesh(verts, (faces + 1).to(torch.uint8).to(device), 10)
    with pytest.raises(ValueError, match="faces contains negative"):
        pm.sample_points_on_mesh(verts, (faces - 1).to(torch.int8).to(device), 10)
    huge = faces.to(torch.uint64)
    huge[0, 0] = torch.tensor(-1).to(torch.uint64)  # 2^64 - 1, which wraps to -1 in int64: out of range
    with pytest.raises(ValueError, match="faces must index vertices"):
        pm.sample_points_on_mesh(verts, huge.to(device), 10)


# ------------------------------------------------------------------------------------------------
# Degenerate faces


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_degenerate_faces_have_exactly_zero_area_and_normal(gen, device, dtype):
    verts = torch.tensor([[0.1, 0.2, 0.3], [0.7, 0.11, 0.5], [0.3, 0.9, 0.2],
                          [0.7, 0.11, 0.5],  # a copy of vertex 1
                          [0.2, 0.4, 0.6], [0.4, 0.8, 1.2],  # collinear with each other and the origin
                          [0.0, 0.0, 0.0]], dtype=dtype)
    faces = torch.tensor([
        [0, 1, 2],  # the only real triangle
        [0, 1, 1], [1, 0, 1], [1, 1, 0], [2, 2, 2],  # repeated vertex indices
        [0, 1, 3], [3, 2, 1],  # identical coordinates, distinct indices
        [6, 4, 5], [4, 6, 5], [5, 4, 6],  # exactly collinear corners (0, a, 2a)
    ])
    verts, faces = verts.to(device), faces.to(device)
    areas, normals = pm.mesh.face_areas_normals(verts, faces)
    assert float(areas[0]) > 0 and torch.all(areas[1:] == 0), areas
    assert torch.all(normals[1:] == 0)
    torch.testing.assert_close(normals[0].norm().double().cpu(), torch.tensor(1.0, dtype=torch.float64),
                               rtol=0, atol=torch.finfo(dtype).eps)
    s = pm.sample_points_on_mesh(verts, faces, 5000, generator=gen)
    assert torch.all(s.face_idx == 0)
    assert torch.all(s.normals == normals[0])
    cameras = cameras_on(pm.Cameras.orthographic(pm.rotation_y([0])), device)
    flat = pm.render_normals(verts, faces, cameras, 16, shading="flat")
    assert torch.isfinite(flat.normals).all()


def test_zero_area_faces_are_never_drawn_by_the_inverse_cdf(gen, monkeypatch, device):
    # the inverse-cdf path (meshes beyond torch.multinomial's 2^24 faces), forced on a small mesh
    monkeypatch.setattr(mesh_module, "_MULTINOMIAL_LIMIT", 1)
    verts, faces = tetrahedron()
    faces = torch.cat([faces[:1], torch.tensor([[1, 1, 2]]), faces[1:], torch.tensor([[0, 0, 0], [3, 3, 1]])])
    verts, faces = verts.to(device), faces.to(device)
    s = pm.sample_points_on_mesh(verts, faces, 40_000, generator=gen)
    counts = torch.bincount(s.face_idx, minlength=len(faces))
    assert counts[1] == 0 and counts[-1] == 0 and counts[-2] == 0
    areas, _ = pm.mesh.face_areas_normals(verts, faces)
    expected = 40_000 * areas / areas.sum()
    assert torch.all((counts - expected).abs() <= 5 * expected.sqrt() + 1)
    # a uniform number that rounds up to the total lands on the last face of positive area (the CPU
    # path of the internal draw_faces: the patched torch.rand below ignores `device`)
    weights = torch.tensor([1.0, 2.0, 0.0, 0.0], dtype=torch.float64)
    monkeypatch.setattr(torch, "rand", lambda n, **kw: torch.full((n,), 1 - 2**-60, dtype=torch.float64))
    assert mesh_module.draw_faces(weights, 3, None).tolist() == [1, 1, 1]


def test_a_mesh_of_only_degenerate_faces_cannot_be_sampled(device):
    verts, _ = tetrahedron(device=device)
    with pytest.raises(ValueError, match="no face with positive area"):
        pm.sample_points_on_mesh(verts, torch.tensor([[0, 1, 1], [2, 2, 3]], device=device), 10)


# ------------------------------------------------------------------------------------------------
# Devices


def test_lattice_sampler_creates_every_tensor_on_the_mesh_device(gen):
    # Under torch.device("meta") every factory call without an explicit device makes a meta
    # tensor, which cannot mix with the CPU mesh: this fails wherever a tensor would land on the
    # default device instead of the mesh's (a CUDA mesh would then mix with CPU tensors).
    verts = torch.rand(30, 3, generator=gen, dtype=torch.float64)
    faces = torch.randint(0, 30, (40, 3), generator=gen)
    want = pm.sample_mesh_lattice(verts, faces, 0.05, chunk=50)
    with torch.device("meta"):
        got = pm.sample_mesh_lattice(verts, faces, 0.05, chunk=50)
        s = pm.sample_points_on_mesh(verts, faces, 100, generator=torch.Generator().manual_seed(0))
    assert got.device.type == "cpu" and torch.equal(got, want)
    assert s.points.device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_meshes_sample_with_a_cpu_generator():
    verts, faces = tetrahedron()
    want = pm.sample_points_on_mesh(verts, faces, 1000, generator=torch.Generator().manual_seed(0))
    got = pm.sample_points_on_mesh(verts.cuda(), faces.cuda(), 1000, generator=torch.Generator().manual_seed(0))
    assert got.points.device.type == "cuda"
    assert torch.equal(got.face_idx.cpu(), want.face_idx)
    torch.testing.assert_close(got.points.cpu(), want.points)
    lattice = pm.sample_mesh_lattice(verts.cuda(), faces.cuda(), 0.05)
    assert torch.equal(lattice.cpu(), pm.sample_mesh_lattice(verts, faces, 0.05))


# ------------------------------------------------------------------------------------------------
# Regressions from the property tests: every caller's error names its own argument


def test_a_mesh_without_area_is_an_error_naming_the_callers_argument(device):
    verts, faces = tetrahedron(device=device)
    zero = verts * 0
    with pytest.raises(ValueError, match=r"^verts: the mesh has no face with positive area"):
        pm.sample_points_on_mesh(zero, faces, 1)
    with pytest.raises(ValueError, match=r"^faces is empty"):
        pm.sample_points_on_mesh(verts, faces[:0], 1)
    # float16 at scale 1e-8 underflows to a single point: degenerate, and the error names verts
    tiny = ((verts - 0.4) * 1e-8).half()
    assert (tiny == 0).all()
    with pytest.raises(ValueError, match=r"^verts:"):
        pm.sample_points_on_mesh(tiny, faces, 1)
    with pytest.raises(ValueError, match=r"^verts:"):
        pm.point_mesh_distance(torch.rand(3, 3).to(device), zero, faces, samples=5)
    points = torch.rand(2, 3, 3).to(device)
    with pytest.raises(ValueError, match=r"^verts\[1\]:"):
        pm.point_mesh_distance(points, torch.stack([verts, zero]), faces.expand(2, 4, 3), samples=5)
    with pytest.raises(ValueError, match=r"^tgt_verts:"):
        pm.ddm_m2m(verts, faces, zero, faces, num_queries=4)
    with pytest.raises(ValueError, match=r"^pred_verts:"):
        pm.mesh_normal_consistency(zero, faces, torch.rand(3, 3).to(device), torch.rand(3, 3).to(device), samples=4)
    gt_points, gt_normals = torch.rand(3, 3).to(device), torch.rand(3, 3).to(device)
    with pytest.raises(ValueError, match=r"^pred_faces is empty"):
        pm.mesh_normal_consistency(verts, faces[:0], gt_points, gt_normals, samples=4)


def test_a_tiny_but_representable_float16_mesh_is_sampled(device):
    # areas are computed in float64: a float16 tetrahedron of size 1e-4, whose face areas (5e-9)
    # would underflow to 0 in float16, is not degenerate
    verts, faces = tetrahedron(torch.float16)
    verts = verts * 1e-4
    assert (torch.linalg.cross(verts[1] - verts[0], verts[2] - verts[0]) == 0).all()  # in float16
    verts, faces = verts.to(device), faces.to(device)
    s = pm.sample_points_on_mesh(verts, faces, 10, generator=torch.Generator().manual_seed(0))
    assert s.points.dtype == torch.float16 and torch.isfinite(s.points).all()
