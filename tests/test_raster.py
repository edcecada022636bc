"""Rasteriser and normal maps: brute-force reference, analytic sphere, ray casting, edge rules."""

import math

import numpy as np
import pytest
import torch
import trimesh
from conftest import DATA

import pointmetrics as pm
from pointmetrics import reference
from pointmetrics._ops import ops
from pointmetrics.io import load


def cameras_on(cameras, device):
    return pm.Cameras(cameras.view.to(device), cameras.projection.to(device))


def cpu(result):
    """A result tuple (Fragments, NormalMaps) with its tensors moved to the CPU."""
    return type(result)(*(t.cpu() if isinstance(t, torch.Tensor) else cpu(t) for t in result))


def random_clip(gen, V, perspective):
    clip = torch.rand(V, 4, generator=gen, dtype=torch.float64) * 2.2 - 1.1
    clip[:, 3] = 1.0
    if perspective:
        clip[:, 3] = torch.rand(V, generator=gen, dtype=torch.float64) + 0.5
        clip[:, :3] *= clip[:, 3:]
    return clip


@pytest.mark.parametrize("perspective", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_brute_force_reference(gen, device, perspective, dtype):
    V, F, H, W = 120, 200, 37, 45
    clip = random_clip(gen, V, perspective).to(dtype)
    faces = torch.randint(0, V, (F, 3), generator=gen)
    faces[:10, 2] = faces[:10, 1]  # planted degenerate faces
    args = (clip[None, None].to(device), faces[None].to(device), torch.tensor([F], device=device))
    face, bary, depth = (t.cpu() for t in ops.rasterize_triangles(*args, H, W))
    ref_face, ref_bary, ref_depth = reference.rasterize(clip, faces, H, W)
    assert (ref_face >= 0).any() and (ref_face < 0).any()
    assert torch.equal(face[0, 0], ref_face)
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    torch.testing.assert_close(bary[0, 0].double(), ref_bary, atol=tol, rtol=0)
    hit = ref_face >= 0
    torch.testing.assert_close(depth[0, 0][hit].double(), ref_depth[hit], atol=tol, rtol=0)
    assert torch.isinf(depth[0, 0][~hit]).all() and (bary[0, 0][~hit] == 0).all()


def test_batches_views_and_face_lengths(gen, device):
    V, F = 60, 80
    clips = torch.stack([torch.stack([random_clip(gen, V, False) for _ in range(3)]) for _ in range(2)])
    faces = torch.randint(0, V, (2, F, 3), generator=gen)
    lengths = torch.tensor([F, 31])
    face, _, _ = ops.rasterize_triangles(clips.to(device), faces.to(device), lengths.to(device), 20, 24)
    face = face.cpu()
    for b in range(2):
        for c in range(3):
            expected, _, _ = reference.rasterize(clips[b, c], faces[b, : lengths[b]], 20, 24)
            assert torch.equal(face[b, c], expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_tile_binning_matches_the_cpu_op(gen, dtype):
    """The CUDA backend's pass 1 (tiles of 8 x 8 pixels per triangle, a prefix sum, a binary search
    per unit of work), run on the CPU by its portable driver: the same face, weights and depth
    everywhere, to the bit. Large triangles span many tiles, small ones one; some are degenerate,
    behind the eye or outside the view."""
    V, F, H, W = 90, 150, 53, 61
    clips = torch.stack([torch.stack([random_clip(gen, V, p) for p in (False, True)]) for _ in range(2)]).to(dtype)
    clips[1, 1, :5, 3] = -0.5  # behind the eye
    faces = torch.randint(0, V, (2, F, 3), generator=gen)
    faces[0, :10, 2] = faces[0, :10, 1]  # degenerate
    lengths = torch.tensor([F, 77])
    portable = torch.ops.pointmetrics_testing.rasterize_tiles_portable(clips, faces, lengths, H, W)
    direct = ops.rasterize_triangles(clips, faces, lengths, H, W)
    assert (direct[0] >= 0).any() and (direct[0] < 0).any()
    for a, b in zip(portable, direct):
        assert torch.equal(a, b)


def test_shared_edges_through_pixel_centres_leave_no_gap(device):
    # A square split along its diagonal, corners at pixel centres: every pixel centre inside or on the
    # square is covered, the diagonal's centres by both triangles (equal depth: face 0 wins).
    H = W = 8
    xs = (2 * torch.tensor([1.0, 6.0]) + 1) / W - 1
    ys = 1 - (2 * torch.tensor([1.0, 6.0]) + 1) / H
    corners = [[xs[0], ys[0], 0], [xs[1], ys[0], 0], [xs[1], ys[1], 0], [xs[0], ys[1], 0]]
    verts = torch.tensor(corners, dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    cams = cameras_on(pm.Cameras.orthographic(torch.eye(4)), device)
    face = pm.rasterize(verts.to(device), faces.to(device), cams, (H, W)).face[0].cpu()
    inside = torch.zeros(H, W, dtype=torch.bool)
    inside[1:7, 1:7] = True
    assert torch.equal(face >= 0, inside)
    rows, cols = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    assert (face[inside & (rows == cols)] == 0).all()  # the shared diagonal goes to the smaller index
    assert (face[inside & (rows > cols)] == 1).all() and (face[inside & (rows < cols)] == 0).all()


def test_nearest_face_wins_and_duplicates_go_to_the_smaller_index(device):
    tri = torch.tensor([[-1.0, -1, 0], [3, -1, 0], [-1, 3, 0]], dtype=torch.float64)
    verts = torch.cat([tri + torch.tensor([0, 0, 0.5]), tri - torch.tensor([0, 0, 0.5]), tri]).to(device)
    faces = torch.tensor([[6, 7, 8], [0, 1, 2], [3, 4, 5], [6, 7, 8]], device=device)  # z = 0, 0.5, -0.5, 0 again
    cams = cameras_on(pm.Cameras.orthographic(torch.eye(4)), device)  # looks down -z: z = 0.5 is nearest
    frags = pm.rasterize(verts, faces, cams, 16)
    assert (frags.face[0] == 1).all()
    torch.testing.assert_close(frags.depth[0].cpu(), torch.full((16, 16), -0.5, dtype=torch.float64))
    frags = pm.rasterize(verts, faces[[0, 3]], cams, 16)
    assert (frags.face[0] == 0).all()


def icosphere(radius=0.8, subdivisions=5):
    s = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return torch.tensor(s.vertices), torch.tensor(s.faces)


@pytest.mark.parametrize("projection", ["orthographic", "perspective"])
def test_sphere_normals_are_analytic_inside_the_silhouette(device, projection):
    r, H = 0.8, 96
    verts, faces = icosphere(r)
    if projection == "orthographic":
        cams = pm.Cameras.orthographic(pm.rotation_y([0, 90, 200]))
    else:
        cams = pm.Cameras.perspective(pm.look_at([[0, 0, 3.0], [3.0, 0, 0], [0, 3.0, 0.01]]), fov_y=40)
    maps = cpu(pm.render_normals(verts.to(device), faces.to(device), cameras_on(cams, device), H, space="world"))
    # The true normal at each pixel: where the pixel's ray meets the exact sphere.
    inv = torch.linalg.inv(cams.projection @ cams.view)
    centres = (2 * torch.arange(H, dtype=torch.float64) + 1) / H - 1
    Y, X = torch.meshgrid(-centres, centres, indexing="ij")
    for c in range(len(cams)):
        near = torch.stack([X, Y, -torch.ones_like(X), torch.ones_like(X)], -1) @ inv[c].T
        far = torch.stack([X, Y, torch.ones_like(X), torch.ones_like(X)], -1) @ inv[c].T
        o = near[..., :3] / near[..., 3:]
        d = far[..., :3] / far[..., 3:] - o
        d = d / d.norm(dim=-1, keepdim=True)
        b = (o * d).sum(-1)
        disc = b**2 - ((o * o).sum(-1) - r * r)
        t = -b - disc.clamp(min=0).sqrt()
        analytic = (o + t[..., None] * d) / r
        well_inside = disc > (0.1 * r) ** 2  # away from the silhouette, where the polygon and the sphere differ
        assert maps.mask[c][well_inside].all()
        err = (maps.normals[c] - analytic)[well_inside].norm(dim=-1)
        assert err.max() < 5e-3, err.max()
        assert not maps.mask[c][disc < -((0.05 * r) ** 2)].any()


def test_view_space_normals_face_the_viewer(device):
    verts, faces = icosphere()
    cams = cameras_on(pm.Cameras.orthographic(pm.rotation_y([0, 90, 180, 270])), device)
    maps = pm.render_normals(verts.to(device), faces.to(device), cams, 64)
    assert (maps.normals[..., 2][maps.mask] > 0).all()  # every visible point of a sphere faces the camera
    # Under rotation about y, view-space normal maps of a sphere are the same picture in every view.
    torch.testing.assert_close(maps.normals[1], maps.normals[0], atol=2e-2, rtol=0)


def ray_cast(mesh: trimesh.Trimesh, H: int, W: int):
    """Front face hit by the ray of each pixel centre, for the orthographic identity camera
    (looking down -z from z = +10): the slow reference."""
    xs = (2 * np.arange(W) + 1) / W - 1
    ys = 1 - (2 * np.arange(H) + 1) / H
    X, Y = np.meshgrid(xs, ys)
    origins = np.stack([X.ravel(), Y.ravel(), np.full(X.size, 10.0)], 1)
    directions = np.tile([0.0, 0.0, -1.0], (X.size, 1))
    tri = trimesh.ray.ray_triangle.RayMeshIntersector(mesh)
    face = tri.intersects_first(origins, directions)
    return face.reshape(H, W)


@pytest.mark.parametrize("name", ["bunny_res3.ply", "smpl_body.ply"])
def test_matches_a_ray_cast_renderer_except_at_triangle_edges(device, name):
    g = load(DATA / name)
    v = g.vertices - (g.vertices.max(0).values + g.vertices.min(0).values) / 2
    v = v / v.abs().max() * 0.95
    H = W = 96
    cams = cameras_on(pm.Cameras.orthographic(torch.eye(4)), device)
    frags = cpu(pm.rasterize(v.to(device), g.faces.to(device), cams, H))
    expected = ray_cast(trimesh.Trimesh(v.numpy(), g.faces.numpy(), process=False), H, W)
    ours = frags.face.numpy()
    differ = ours != expected
    # A differing pixel must sit on a triangle edge (one of our barycentric weights is ~0 there) or
    # show two coincident faces (the same corners: a duplicate face, which we break by index).
    near_edge = frags.bary.min(-1).values.numpy() < 1e-6
    both_hit = (ours >= 0) & (expected >= 0)
    corners = np.sort(g.faces.numpy(), axis=1)
    coincident = (corners[np.maximum(ours, 0)] == corners[np.maximum(expected, 0)]).all(-1)
    assert (expected >= 0).sum() > 1000
    assert not (differ & ~near_edge & ~coincident & both_hit).any()
    # Silhouette disagreements (one hits, the other misses) are rare grazing cases; bound them.
    assert (differ & ~both_hit).sum() <= 0.002 * (expected >= 0).sum()


@pytest.mark.parametrize("name", ["smpl_body.ply", "armadillo.ply"])
def test_watertight_meshes_render_without_holes(device, name):
    g = load(DATA / name)
    v = g.vertices - (g.vertices.max(0).values + g.vertices.min(0).values) / 2
    v = v / v.abs().max() * 0.95
    cams = cameras_on(pm.Cameras.orthographic(pm.rotation_y([0, 90, 180, 270])), device)
    frags = cpu(pm.rasterize(v.float().to(device), g.faces.to(device), cams, 512))
    from scipy.ndimage import binary_fill_holes, binary_opening

    for c in range(4):
        mask = frags.face[c].numpy() >= 0
        # A crack between triangles shows as background pixels enclosed by the mesh's silhouette that
        # vanish under a 2-pixel opening of the background; genuine silhouette gaps are wider.
        holes = binary_fill_holes(mask) & ~mask
        cracks = holes & ~binary_opening(holes, structure=np.ones((2, 2)))
        assert cracks.sum() == 0, f"view {c}: {cracks.sum()} crack pixels"
        # Every visible pixel's depth agrees with its face's plane: no pixel shows a back face
        # through a gap in the front.
        assert np.isfinite(frags.depth[c].numpy()[mask]).all()


def test_outside_the_view_volume_and_empty_meshes_render_background(device):
    verts, faces = icosphere()
    verts, faces = verts.to(device), faces.to(device)
    cams = cameras_on(pm.Cameras.orthographic(torch.eye(4)), device)
    assert (pm.rasterize(verts + 5, faces, cams, 32).face == -1).all()
    assert (pm.rasterize(verts, faces[:0], cams, 32).face == -1).all()
    assert (pm.rasterize(verts * 0, faces, cams, 32).face == -1).all()  # every face zero-area


def test_behind_the_eye_is_skipped(device):
    verts, faces = icosphere()
    cams = cameras_on(pm.Cameras.perspective(pm.look_at([[0, 0, 0.0]], at=[[0, 0, -1.0]]), near=0.01), device)
    verts, faces = verts.to(device), faces.to(device)
    frags = pm.rasterize(verts, faces, cams, 32)  # eye at the centre: every face has a vertex behind it
    assert frags.face.shape == (1, 32, 32)


def test_raw_op_skips_face_indices_out_of_range(device):
    clip = torch.tensor([[[[-1.0, -1, 0, 1], [3, -1, 0, 1], [-1, 3, 0, 1]]]], device=device)
    faces = torch.tensor([[[0, 1, 2], [0, 1, 7], [-3, 1, 2]]], device=device)
    face, _, _ = ops.rasterize_triangles(clip, faces, torch.tensor([3], device=device), 4, 4)
    assert (face == 0).all()


def test_bad_input_names_the_argument(device):
    verts, faces = icosphere(subdivisions=1)
    verts, faces = verts.to(device), faces.to(device)
    cams = cameras_on(pm.Cameras.orthographic(torch.eye(4)), device)
    with pytest.raises(ValueError, match="image_size"):
        pm.rasterize(verts, faces, cams, 0)
    with pytest.raises(ValueError, match="image_size"):
        pm.rasterize(verts, faces, cams, (4, 4, 4))
    with pytest.raises(TypeError, match="cameras"):
        pm.rasterize(verts, faces, torch.eye(4, device=device), 8)
    bad = verts.clone()
    bad[faces[0, 0]] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        pm.rasterize(bad, faces, cams, 8)
    with pytest.raises(ValueError, match="faces"):
        pm.rasterize(verts, faces + 1000, cams, 8)
    with pytest.raises(ValueError, match="Cameras"):
        pm.Cameras(torch.eye(3), torch.eye(4))
    with pytest.raises(ValueError, match="perspective"):
        pm.Cameras.perspective(torch.eye(4), near=0)
    with pytest.raises(ValueError, match="space"):
        pm.render_normals(verts, faces, cams, 8, space="camera")


def test_deterministic(device):
    g = load(DATA / "bunny_res3.ply")
    v = (g.vertices - g.vertices.mean(0)) * 8
    v, faces = v.float().to(device), g.faces.to(device)
    cams = cameras_on(pm.Cameras.perspective(pm.look_at([[0, 0, 3.0], [2, 1, 2]])), device)
    a, b = pm.rasterize(v, faces, cams, 128), pm.rasterize(v, faces, cams, 128)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_vertex_normals_match_trimesh_and_pytorch3d_formulas(gen, device):
    g = load(DATA / "bunny_res4.ply")  # duplicate faces included
    mesh = trimesh.Trimesh(g.vertices.numpy(), g.faces.numpy(), process=False)
    dv, df = g.vertices.to(device), g.faces.to(device)
    angle = pm.vertex_normals(dv, df, weighting="angle").cpu()
    used = torch.zeros(len(g.vertices), dtype=torch.bool)
    used[g.faces.unique()] = True
    torch.testing.assert_close(angle[used], torch.tensor(mesh.vertex_normals)[used], atol=1e-10, rtol=0)
    area = pm.vertex_normals(dv, df, weighting="area").cpu()
    tri = g.vertices[g.faces]
    cross = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=1)
    summed = torch.zeros_like(g.vertices).index_add_(0, g.faces[:, 0], cross)
    summed.index_add_(0, g.faces[:, 1], cross).index_add_(0, g.faces[:, 2], cross)
    torch.testing.assert_close(area, torch.nn.functional.normalize(summed, eps=1e-6), atol=1e-12, rtol=0)
    assert (angle[~used] == 0).all()


def test_flat_shading_uses_face_normals(device):
    verts = torch.tensor([[-1.0, -1, 0], [3, -1, 0.5], [-1, 3, 0]], dtype=torch.float64)
    cams = cameras_on(pm.Cameras.orthographic(torch.eye(4)), device)
    maps = cpu(pm.render_normals(verts.to(device), torch.tensor([[0, 1, 2]], device=device), cams, 8,
                                 shading="flat", space="world"))
    n = torch.linalg.cross(verts[1] - verts[0], verts[2] - verts[0])
    torch.testing.assert_close(maps.normals[0][maps.mask[0]], (n / n.norm()).expand(int(maps.mask.sum()), 3))


def test_normals_are_differentiable_wrt_vertices_and_normals(gen, device):
    verts = torch.tensor([[-0.9, -0.8, 0.1], [0.8, -0.7, -0.2], [-0.1, 0.9, 0.3]], dtype=torch.float64)
    verts = verts + 0.01 * torch.rand(3, 3, generator=gen, dtype=torch.float64)
    normals = torch.nn.functional.normalize(torch.rand(3, 3, generator=gen, dtype=torch.float64) + 0.5, dim=1)
    verts, normals = verts.to(device), normals.to(device)
    faces = torch.tensor([[0, 1, 2]], device=device)
    cams = cameras_on(pm.Cameras.perspective(pm.look_at([[0.2, 0.1, 3.0]]), fov_y=50), device)
    mask = pm.rasterize(verts, faces, cams, 16).face[0] >= 0
    # Only pixels well inside the triangle: visibility must not change under gradcheck's steps.
    inner = mask & torch.nn.functional.max_pool2d((~mask).double()[None, None], 3, 1, 1)[0, 0].eq(0)

    def render(v, n):
        return pm.render_normals(v, faces, cams, 16, normals=n, space="view").normals[0][inner]

    assert inner.sum() > 5
    torch.autograd.gradcheck(render, (verts.requires_grad_(), normals.requires_grad_()))
    # the recomputed barycentric weights equal the kernel's
    frags = pm.rasterize(verts.detach(), faces, cams, 16)
    meshes = pm.mesh.as_meshes(verts.detach(), faces)
    bary = pm.raster.differentiable_bary(cams.clip(meshes.verts), meshes, frags.face[None])
    torch.testing.assert_close(bary[0], frags.bary, atol=1e-12, rtol=0)


def test_opcheck(gen, device):
    clip = random_clip(gen, 30, True)[None, None].float().to(device)
    faces = torch.randint(0, 30, (1, 40, 3), generator=gen).to(device)
    torch.library.opcheck(ops.rasterize_triangles, (clip, faces, torch.tensor([40], device=device), 9, 11))


# ------------------------------------------------------------------------------------------------
# Empty meshes (issue 13)


@pytest.mark.parametrize("shading", ["smooth", "flat"])
@pytest.mark.parametrize("space", ["view", "world"])
@pytest.mark.parametrize("n_verts", [0, 4])
def test_meshes_without_faces_render_background_only(device, shading, space, n_verts):
    verts = torch.rand(n_verts, 3, dtype=torch.float64).to(device).requires_grad_()
    faces = torch.zeros(0, 3, dtype=torch.int64, device=device)
    cameras = cameras_on(pm.Cameras.orthographic(pm.rotation_y([0, 90])), device)
    frags = pm.rasterize(verts, faces, cameras, (6, 7))
    assert frags.face.shape == (2, 6, 7) and torch.all(frags.face == -1)
    assert torch.all(frags.bary == 0) and torch.all(torch.isinf(frags.depth))
    maps = pm.render_normals(verts, faces, cameras, (6, 7), space=space, shading=shading)
    assert maps.normals.shape == (2, 6, 7, 3) and not maps.mask.any() and torch.all(maps.normals == 0)
    assert torch.all(maps.fragments.face == -1)
    maps.normals.sum().backward()  # a zero gradient, not an error
    assert verts.grad is None or torch.all(verts.grad == 0)
    assert pm.vertex_normals(verts, faces).shape == (n_verts, 3)
    assert torch.all(pm.vertex_normals(verts, faces, weighting="angle") == 0)


def test_a_batch_with_an_empty_mesh_renders_it_as_background(device):
    verts = torch.tensor([[-0.5, -0.5, 0.0], [0.5, -0.5, 0.0], [0.0, 0.5, 0.0]], dtype=torch.float64, device=device)
    faces = torch.tensor([[0, 1, 2]], device=device)
    cameras = cameras_on(pm.Cameras.orthographic(pm.rotation_y([0])), device)
    maps = pm.render_normals([verts, verts], [faces, faces[:0]], cameras, 8)
    assert maps.mask[0].any() and not maps.mask[1].any()
    single = pm.render_normals(verts, faces, cameras, 8)
    torch.testing.assert_close(maps.normals[0], single.normals)


def test_normal_map_error_of_an_empty_and_of_a_half_mesh(device):
    verts = torch.tensor([[-0.5, -0.4, -0.3], [0.6, -0.3, -0.2], [-0.2, 0.7, -0.1], [0.1, 0.0, 0.65]], device=device)
    faces = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], device=device)
    for backend in ("icon2022", "econ"):
        half_pred = (verts.half(), faces.to(torch.int16))
        same = pm.normal_map_error(half_pred, (verts, faces), backend=backend, image_size=32)
        assert float(same.error) < 1e-3
        with pytest.warns(RuntimeWarning):
            pm.normal_map_error((verts, faces[:0]), (verts, faces), backend=backend, image_size=32)


@pytest.mark.parametrize("shading", ["smooth", "flat"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_meshes_without_faces_and_a_nan_vertex_have_zero_gradients(device, shading, dtype):
    """A mesh without faces renders background; its vertices, used by no face and NaN here, get a
    zero gradient. (Found by test_properties: the zero kept in the graph was values.sum() * 0, NaN.)"""
    v = torch.tensor([[float("nan"), 0.1, 0.2], [0.3, 0.1, 0.0]], dtype=dtype, device=device, requires_grad=True)
    no_faces, cameras = torch.zeros(0, 3, dtype=torch.int64, device=device), pm.human_cameras("icon2022")
    out = pm.render_normals(v, no_faces, cameras_on(cameras, device), image_size=8, shading=shading)
    out.normals.float().sum().backward()
    assert torch.equal(v.grad, torch.zeros_like(v)) and not out.mask.any()


@pytest.mark.parametrize("shading", ["smooth", "flat"])
@pytest.mark.parametrize("weighting", ["area", "angle"])
def test_meshes_without_vertices_but_with_padding_faces(device, shading, weighting):
    """No vertex, one padding face (face_lengths 0): background, and a gradient (found by
    test_properties: the padding face's corners were read from the empty vertex array)."""
    v = torch.zeros(1, 0, 3, dtype=torch.float64, device=device, requires_grad=True)
    padding, cameras = torch.zeros(1, 1, 3, dtype=torch.int64, device=device), pm.human_cameras("icon2022")
    out = pm.render_normals(v, padding, cameras_on(cameras, device), image_size=4, shading=shading,
                            weighting=weighting, face_lengths=torch.tensor([0], device=device))
    out.normals.sum().backward()
    assert not out.mask.any() and v.grad.shape == (1, 0, 3)


def test_angle_weighted_normals_of_a_tiny_face_have_finite_gradients(device):
    """Corners one float32 ulp apart (a tetrahedron at 1e-3 with a tiny face): a corner's sine and
    cosine square to 0 in float32, where atan2's gradient is NaN (found by test_properties)."""
    a, b = -0.00039999998989515007, -0.0003999999025836587
    v = torch.tensor([[a, a, a], [a, b, a], [b, b, b], [a, a, 0.0006000000284984708]], dtype=torch.float32,
                     device=device, requires_grad=True)
    f = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], device=device)
    n = pm.vertex_normals(v, f, weighting="angle")
    n.sum().backward()
    assert torch.isfinite(v.grad).all()
