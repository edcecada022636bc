"""Closest points on meshes, winding numbers and the BVH, against brute force and other libraries."""

import numpy as np
import pytest
import torch
from conftest import DATA

import pointmetrics as pm
from pointmetrics import io, reference
from pointmetrics._ops import FRAME_BYTES

ops = torch.ops.pointmetrics


def on(device, *tensors):
    return tuple(t.to(device) for t in tensors)


def cpu(result):
    """A result tuple (MeshProjection) with its tensors moved to the CPU."""
    return type(result)(*(t.cpu() for t in result))


def load(name):
    g = io.load(DATA / name)
    return g.vertices, g.faces


def random_mesh(gen, n_verts=60, n_faces=150, scale=1.0, offset=0.0):
    """Random triangles plus planted degenerate ones: repeated vertices, collinear, zero-area,
    slivers, and tiny triangles."""
    v = torch.rand(n_verts, 3, generator=gen, dtype=torch.float64) * scale + offset
    f = torch.randint(0, n_verts, (n_faces, 3), generator=gen)
    extra_v = [
        v[0],
        v[1],
        (v[0] + v[1]) / 2,
        v[2] + torch.tensor([1e-9, 0, 0], dtype=torch.float64) * scale,
        v[3] + torch.tensor([1e-7, 2e-7, 0], dtype=torch.float64) * scale,
        v[3] + torch.tensor([0, 1e-7, 3e-7], dtype=torch.float64) * scale,
    ]
    v = torch.cat([v, torch.stack(extra_v)])
    n = n_verts
    planted = torch.tensor([[0, 0, 1], [0, 1, n + 2], [5, 5, 5], [2, 3, n + 3], [3, n + 4, n + 5], [0, 1, n]])
    return v, torch.cat([f, planted])


def queries(gen, v, n=400):
    lo, hi = v.amin(0), v.amax(0)
    span = (hi - lo).max()
    return lo - 0.2 * span + (hi - lo + 0.4 * span) * torch.rand(n, 3, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("scale,offset", [(1.0, 0.0), (1e-6, 0.0), (1e3, 0.0), (1.0, 1e4)])
def test_closest_points_match_brute_force(gen, device, scale, offset):
    v, f = random_mesh(gen, scale=scale, offset=offset)
    q = queries(gen, v)
    # queries on the planted degenerate and tiny triangles themselves
    q = torch.cat([q, v[-6:], ((v[0] + v[1]) / 2 + 1e-3 * scale)[None]])
    r = cpu(pm.closest_points_on_mesh(*on(device, q, v, f)))
    want_d, want_f = reference.closest_points_on_mesh(q, v, f)
    # squared distances carry rounding of order |coordinate| * 1e-16 times the distance
    atol = 1e-14 * scale * (scale + offset)
    torch.testing.assert_close(r.sq_distance, want_d, rtol=1e-9, atol=atol)
    # the reported face and point realise the distance
    torch.testing.assert_close(((q - r.points) ** 2).sum(-1), r.sq_distance, rtol=1e-9, atol=atol)
    tri = v[f[r.face]]
    torch.testing.assert_close((r.bary[..., None] * tri).sum(1), r.points, rtol=1e-9, atol=1e-12 * (scale + offset))
    assert torch.allclose(r.bary.sum(-1), torch.ones(len(q), dtype=torch.float64))


@pytest.mark.parametrize("n_faces", [1, 8, 9, 17, 33, 65, 129, 257])
def test_every_tree_depth_matches_brute_force(gen, device, n_faces):
    # 1 to 64 leaves: tree depths 0 to 6, even and odd, so the CPU's four-wide search starts from
    # node 1 or from nodes 2 and 3 and climbs to either. Near-surface queries in a spatially sorted
    # run exercise the warm start from the previous query's leaf; scattered ones the cold start.
    v = torch.rand(3 * n_faces, 3, generator=gen, dtype=torch.float64)
    f = torch.arange(3 * n_faces).view(n_faces, 3)
    on_surface = (v[f] * torch.rand(n_faces, 3, 1, generator=gen, dtype=torch.float64).softmax(1)).sum(1)
    near = on_surface.repeat(4, 1) + 1e-3 * torch.randn(4 * n_faces, 3, generator=gen, dtype=torch.float64)
    q = torch.cat([near[near[:, 0].argsort()], queries(gen, v, 200)])
    for dtype in (torch.float64, torch.float32):
        r = cpu(pm.closest_points_on_mesh(*on(device, q.to(dtype), v.to(dtype), f)))
        want_d, _ = reference.closest_points_on_mesh(q.to(dtype).double(), v.to(dtype).double(), f)
        tol = 1e-12 if dtype == torch.float64 else 1e-6
        torch.testing.assert_close(r.sq_distance.double(), want_d, rtol=tol, atol=tol)
        # the kernel's closest point is the barycentric combination of the reported face
        point = (r.bary.double()[..., None] * v.to(dtype).double()[f[r.face]]).sum(1)
        torch.testing.assert_close(r.points.double(), point, rtol=tol, atol=tol)


def test_search_data_is_prepared_once_and_checked(gen, device):
    v, f = random_mesh(gen)
    bvh = pm.MeshBVH(*on(device, v, f))
    first = bvh.closest_points(queries(gen, v, 50).to(device))
    data = bvh.search_data()
    again = bvh.closest_points(queries(gen, v, 50).to(device))
    assert all(a is b for a, b in zip(data, bvh.search_data()))  # kept, not rebuilt per query
    assert first.face.shape == again.face.shape
    frames, slot_boxes, quads = data
    assert frames.shape == (1, len(f), FRAME_BYTES) and frames.dtype == torch.uint8
    t = bvh.tree
    q5, l5 = queries(gen, v, 5)[None].to(device), torch.tensor([5], device=device)
    args = (q5, l5, t.tris, t.face, t.lo, t.hi, bvh.meshes.face_lengths)
    with pytest.raises(RuntimeError, match="frames must be"):
        ops.closest_triangle(*args, frames[:, :, :100], slot_boxes, quads)
    with pytest.raises(RuntimeError, match="face_lengths values must lie"):
        ops.closest_triangle(*args, frames[:, :10], slot_boxes, quads)  # fewer frames than faces
    with pytest.raises(RuntimeError, match="slot_boxes must be"):
        ops.closest_triangle(*args, frames, slot_boxes[:, 1:], quads)
    with pytest.raises(RuntimeError, match="faces must lie"):
        ops.triangle_frames(bvh.tree.tris, bvh.meshes.face_lengths, bvh.tree.tris.shape[1] + 1)


def test_float32_matches_float64(gen, device):
    v, f = random_mesh(gen)
    q = queries(gen, v)
    r32 = pm.closest_points_on_mesh(*on(device, q.float(), v.float(), f))
    want_d, _ = reference.closest_points_on_mesh(q.float().double(), v.float().double(), f)
    torch.testing.assert_close(r32.sq_distance.cpu().double(), want_d, rtol=1e-5, atol=1e-7)


def test_vertex_order_does_not_change_the_answer(gen, device):
    v, f = random_mesh(gen)
    q = queries(gen, v)
    q, v, f = on(device, q, v, f)
    base = pm.closest_points_on_mesh(q, v, f)
    for perm in ([1, 2, 0], [2, 0, 1], [0, 2, 1], [2, 1, 0]):
        r = pm.closest_points_on_mesh(q, v, f[:, perm])
        assert torch.equal(r.sq_distance, base.sq_distance)  # bit for bit: corners are canonicalised
        assert torch.equal(r.face, base.face)
        torch.testing.assert_close(r.points, base.points, rtol=1e-9, atol=1e-9)


def test_ties_go_to_the_smaller_face_and_runs_agree(gen, device):
    v, f = load("bunny_res4.ply")  # 40 duplicate faces: exact ties
    q = queries(gen, v, 2000)
    first = pm.closest_points_on_mesh(*on(device, q, v, f))
    dup = f.sort(1).values
    face = first.face.cpu()
    # where the reference's face has a duplicate with a smaller index, ours must be the smallest one
    for i in range(0, 2000, 97):
        same = (dup == dup[face[i]]).all(1).nonzero()[:, 0]
        assert face[i] == same.min()
    again = pm.closest_points_on_mesh(*on(device, q, v, f))
    assert torch.equal(first.face, again.face) and torch.equal(first.sq_distance, again.sq_distance)


@pytest.mark.parametrize("name", ["bunny_res3.ply", "armadillo.ply", "demosthenes.ply"])
def test_real_meshes_against_trimesh(gen, device, name):
    trimesh = pytest.importorskip("trimesh")
    pytest.importorskip("rtree")
    v, f = load(name)
    q = queries(gen, v, 1500)
    r = cpu(pm.closest_points_on_mesh(*on(device, q, v, f)))
    mesh = trimesh.Trimesh(v.numpy(), f.numpy(), process=False)
    _, d, _ = trimesh.proximity.closest_point(mesh, q.numpy())
    ours = r.distance.numpy()
    span = float((v.amax(0) - v.amin(0)).max())
    # trimesh's candidate search is not exact: it may miss the closest face, never beat it
    assert (ours <= d + 1e-12 * span).all()
    assert np.mean(np.abs(ours - d) < 1e-9 * span) > 0.99


@pytest.mark.parametrize("name", ["bunny_res3.ply", "armadillo.ply", "demosthenes.ply"])
def test_real_meshes_against_open3d(gen, device, name):
    try:
        import open3d as o3d
    except (ImportError, OSError):
        pytest.skip("Open3D is not available")
    v, f = load(name)
    q = queries(gen, v, 1500)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(v.float().numpy()), o3d.core.Tensor(f.numpy().astype(np.uint32)))
    d = scene.compute_distance(o3d.core.Tensor(q.float().numpy())).numpy()
    span = float((v.amax(0) - v.amin(0)).max())
    ours = pm.closest_points_on_mesh(*on(device, q, v, f)).distance.cpu().numpy()
    np.testing.assert_allclose(ours, d, rtol=1e-4, atol=1e-6 * span)


def test_bunny_quirks_unreferenced_vertices_duplicates_holes(gen, device):
    v, f = load("bunny_res4.ply")
    v = torch.cat([v, torch.rand(50, 3, generator=gen, dtype=torch.float64) + 5])  # unreferenced, far away
    q = queries(gen, v[:453], 300)
    r = pm.closest_points_on_mesh(*on(device, q, v, f))
    want, _ = reference.closest_points_on_mesh(q, v, f)
    torch.testing.assert_close(r.sq_distance.cpu(), want)


def test_gradcheck_points_and_vertices(gen, device):
    v, f = random_mesh(gen, n_verts=12, n_faces=10)
    v, f = v[:12], f[:10]
    q = queries(gen, v, 20)
    q, v, f = on(device, q, v, f)
    q.requires_grad_()
    v.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: pm.closest_points_on_mesh(a, b, f).sq_distance, (q, v))
    assert torch.autograd.gradcheck(lambda a, b: pm.closest_points_on_mesh(a, b, f).points, (q, v))
    assert torch.autograd.gradcheck(lambda a, b: pm.closest_points_on_mesh(a, b, f).distance, (q, v))
    assert torch.autograd.gradgradcheck(lambda a, b: pm.closest_points_on_mesh(a, b, f).sq_distance, (q, v))


def test_distance_gradient_is_finite_on_the_surface(gen, device):
    v, f = on(device, *load("bunny_res4.ply"))
    s = pm.sample_points_on_mesh(v, f, 200, generator=gen).points.requires_grad_()
    pm.point_to_surface_distance(s, v, f).backward()
    assert torch.isfinite(s.grad).all()


def test_batches_and_lists_of_meshes(gen, device):
    v1, f1 = random_mesh(gen)
    v2, f2 = load("bunny_res4.ply")
    q1, q2 = queries(gen, v1, 100), queries(gen, v2, 70)
    v1, f1, v2, f2, q1, q2 = on(device, v1, f1, v2, f2, q1, q2)
    listed = pm.closest_points_on_mesh([q1, q2], [v1, v2], [f1, f2])
    for b, (q, v, f) in enumerate([(q1, v1, f1), (q2, v2, f2)]):
        single = pm.closest_points_on_mesh(q, v, f)
        n = q.shape[0]
        torch.testing.assert_close(listed.sq_distance[b, :n], single.sq_distance)
        assert torch.equal(listed.face[b, :n], single.face)
    assert (listed.face[1, 70:] == -1).all()
    bvh = pm.MeshBVH([v1, v2], [f1, f2])  # built once, queried twice
    torch.testing.assert_close(bvh.closest_points([q1, q2]).sq_distance, listed.sq_distance)
    torch.testing.assert_close(bvh.closest_points([q1 + 0.1, q2]).sq_distance[1, :70], listed.sq_distance[1, :70])


def test_packed_meshes(gen, device):
    v1, f1 = random_mesh(gen)
    v2, f2 = load("bunny_res4.ply")
    q = torch.stack([queries(gen, v1, 50), queries(gen, v2, 50)])
    v1, f1, v2, f2, q = on(device, v1, f1, v2, f2, q)
    verts, faces, lengths = pm.meshes_from_packed(
        torch.cat([v1, v2]), torch.cat([f1, f2 + len(v1)]), [len(v1), len(v2)], [len(f1), len(f2)]
    )
    packed = pm.closest_points_on_mesh(q, verts, faces, face_lengths=lengths)
    listed = pm.closest_points_on_mesh(q, [v1, v2], [f1, f2])
    assert torch.equal(packed.face, listed.face)
    torch.testing.assert_close(packed.sq_distance, listed.sq_distance)


def test_winding_number_closed_mesh(gen, device):
    v, f = load("armadillo.ply")
    q = queries(gen, v, 1500)
    w = pm.winding_number(*on(device, q, v, f)).cpu()
    exact = reference.winding_number(q, v, f)
    assert (w - exact).abs().max() < 0.05
    assert torch.equal(w >= 0.5, exact >= 0.5)
    inside = exact > 0.5
    assert inside.any() and (~inside).any()
    assert ((exact[inside] - 1).abs() < 1e-9).all() and (exact[~inside].abs() < 1e-9).all()
    w3 = pm.winding_number(*on(device, q, v, f), beta=4.0).cpu()
    assert (w3 - exact).abs().max() < (w - exact).abs().max()


def test_winding_number_of_a_cube(device):
    cube_v = torch.tensor([[x, y, z] for x in (0.0, 1.0) for y in (0.0, 1.0) for z in (0.0, 1.0)], dtype=torch.float64)
    import trimesh

    hull = trimesh.Trimesh(cube_v.numpy()).convex_hull
    v, f = torch.tensor(hull.vertices), torch.tensor(hull.faces)
    q = torch.tensor([[0.5, 0.5, 0.5], [0.1, 0.9, 0.2], [2.0, 0.5, 0.5], [-0.1, -0.1, -0.1]], dtype=torch.float64)
    want = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64, device=device)
    q, v, f = on(device, q, v, f)
    # beta large enough that every triangle is summed exactly; the default beta = 2 takes the far
    # field of triangles and nodes twice their radius away (Barill et al.): close, not exact
    torch.testing.assert_close(pm.winding_number(q, v, f, beta=1e6), want)
    torch.testing.assert_close(pm.winding_number(q, v, f), want, atol=5e-3, rtol=0)
    # flipped orientation gives -1 inside; signed distance is negative inside
    torch.testing.assert_close(
        pm.winding_number(q[:1], v, f[:, [0, 2, 1]]), torch.tensor([-1.0], dtype=torch.float64, device=device)
    )
    sd = pm.signed_distance(q, v, f)
    torch.testing.assert_close(sd, torch.tensor([-0.5, -0.1, 1.0, 3**0.5 * 0.1], dtype=torch.float64, device=device))


def test_open_mesh_winding_number_is_fractional_near_the_hole(gen, device):
    v, f = load("demosthenes.ply")
    q = queries(gen, v, 500)
    w = pm.winding_number(*on(device, q, v, f)).cpu()
    exact = reference.winding_number(q, v, f)
    assert (w - exact).abs().max() < 0.05
    assert ((exact > 0.05) & (exact < 0.95)).any()  # open base: not a clean 0/1 field


def test_empty_mesh_gives_nan_with_warning(device):
    v = torch.rand(4, 3, dtype=torch.float64).to(device)
    f = torch.zeros(0, 3, dtype=torch.int64).to(device)
    with pytest.warns(RuntimeWarning, match="no faces"):
        r = pm.closest_points_on_mesh(torch.rand(5, 3, dtype=torch.float64).to(device), v, f)
    assert torch.isnan(r.distance).all() and (r.face == -1).all()
    assert (pm.winding_number(torch.rand(5, 3, dtype=torch.float64).to(device), v, f) == 0).all()


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda v, f: pm.closest_points_on_mesh(torch.rand(3, 3), v, f + 100), ValueError, "faces must index vertices"),
        (lambda v, f: pm.closest_points_on_mesh(torch.rand(3, 3), v, f - 100), ValueError, "negative vertex"),
        (lambda v, f: pm.closest_points_on_mesh(torch.rand(3, 3), v, f.float()), TypeError, "faces must be an integer"),
        (lambda v, f: pm.closest_points_on_mesh(torch.rand(3, 3), v[:, :2], f), ValueError, r"verts must have shape"),
        (
            lambda v, f: pm.closest_points_on_mesh(torch.rand(3, 3), v.index_fill(0, f[0, :1], float("nan")), f),
            ValueError,
            "NaN or Inf",
        ),
        (lambda v, f: pm.closest_points_on_mesh(torch.rand(3, 2), v, f), ValueError, "3D points"),
        (lambda v, f: pm.closest_points_on_mesh(torch.full((3, 3), float("inf")), v, f), ValueError, "points contains"),
        (lambda v, f: pm.closest_points_on_mesh(torch.rand(2, 3, 3), v, f), ValueError, "2 clouds but there are 1"),
        (lambda v, f: pm.winding_number(torch.rand(3, 3), v, f, beta=0), ValueError, "beta must be positive"),
        (lambda v, f: pm.sample_points_on_mesh(v, f, 0), ValueError, "n must be a positive integer"),
    ],
)
def test_bad_mesh_input_is_rejected(call, error, match):
    v, f = load("bunny_res4.ply")
    with pytest.raises(error, match=match):
        call(v.float(), f)


def test_unreferenced_nan_vertices_are_fine(gen, device):
    v, f = load("bunny_res4.ply")
    v = torch.cat([v, torch.full((3, 3), float("nan"), dtype=torch.float64)])
    r = pm.closest_points_on_mesh(*on(device, queries(gen, v[:453], 50), v, f))
    assert torch.isfinite(r.distance).all()


def test_opcheck(gen, device):
    v, f = load("bunny_res4.ply")
    bvh = pm.MeshBVH(*on(device, v.float(), f))
    pts = (torch.rand(1, 40, 3, generator=gen) * 0.1).to(device)
    pl = torch.tensor([33], device=device)
    kd_args = on(device, torch.rand(2, 50, 3, generator=gen), torch.tensor([50, 17]))
    torch.library.opcheck(ops.kd_order, kd_args)
    fl = bvh.meshes.face_lengths
    torch.library.opcheck(ops.triangle_frames, (bvh.tree.tris, fl, len(f)))
    t = bvh.tree
    torch.library.opcheck(ops.closest_triangle, (pts, pl, t.tris, t.face, t.lo, t.hi, fl, *bvh.search_data()))
    torch.library.opcheck(
        ops.winding_number,
        (pts, pl, bvh.tree.tris, bvh.tree.face, bvh.tree.lo, bvh.tree.hi, bvh.meshes.face_lengths, *bvh.moments(), 2.0),
    )


# ------------------------------------------------------------------------------------------------
# Regressions from the property tests (tests/test_properties.py)

TETRA_V = [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]
TETRA_F = [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("what", ["distance", "points", "signed", "p2s"])
def test_nan_in_the_query_padding_gives_finite_vertex_gradients(device, dtype, what):
    # defect 6: NaN queries past the lengths went through the differentiable closest-point
    # recomputation (masked only afterwards): 0 * NaN = NaN reached the vertices
    v = torch.tensor(TETRA_V, dtype=dtype, device=device)[None].requires_grad_()
    f = torch.tensor(TETRA_F, device=device)[None]
    p = torch.full((1, 2, 3), float("nan"), dtype=dtype, device=device)
    p[0, 0] = 0.3
    p.requires_grad_()
    lengths = torch.tensor([1], device=device)
    bvh = pm.MeshBVH(v, f)
    if what == "distance":
        out = bvh.closest_points(p, lengths).distance[:, :1].sum()
    elif what == "points":
        out = bvh.closest_points(p, lengths).points[:, :1].sum()
    elif what == "signed":
        out = bvh.signed_distance(p, lengths)[:, :1].sum()
    else:
        out = pm.point_to_surface_distance(p, v, f, points_lengths=lengths)
    assert torch.isfinite(out)
    gv, gp = torch.autograd.grad(out, [v, p])
    assert torch.isfinite(gv).all() and torch.isfinite(gp).all()
    assert (gp[0, 1] == 0).all()  # the padding gets no gradient
    assert gv.abs().sum() > 0


def test_closest_points_come_back_in_the_promoted_dtype(device):
    # a float16 query at scale 1e-7 on a float32 mesh: the closest point rounded to float16
    # (subnormal spacing 6e-8) landed far off the surface
    v = torch.tensor(TETRA_V, dtype=torch.float32) * 1e-7
    f = torch.tensor(TETRA_F)
    q = torch.tensor([[6e-8, 6e-8, 6e-8]], dtype=torch.float16)  # 5.96e-8: its closest point is 3.3e-8 each
    dq, dv, df = on(device, q, v, f)
    r = pm.closest_points_on_mesh(dq, dv, df)
    assert r.points.dtype == torch.float32
    want_sq, _ = reference.closest_points_on_mesh(q.double(), v.double(), f)
    got_sq = (r.points.cpu().double() - q.double()).square().sum(-1)
    torch.testing.assert_close(got_sq, want_sq, rtol=1e-5, atol=0)
    assert pm.closest_points_on_mesh(dq.float(), dv.double(), df).points.dtype == torch.float64
    assert pm.closest_points_on_mesh(dq, dv.half(), df).points.dtype == torch.float16


@pytest.mark.parametrize("name", ["armadillo.ply", "demosthenes.ply"])
def test_winding_radius_holds_every_corner(device, name):
    """The far-field criterion's radius must bound the distance from a node's centre to each corner of
    its triangles (else the expansion is used too close), and is never looser than the box bound."""
    from pointmetrics.mesh_tree import LEAF_SIZE

    v, f = load(name)
    small = f[(f < 40).all(1)]  # a padded batch: the second mesh is small
    bvh = pm.MeshBVH(list(on(device, v, v[:40])), list(on(device, f, small)))
    centre, _, _, radius = bvh.moments()
    tree = bvh.tree
    P = tree.leaves
    for b in range(2):
        corners = tree.tris[b].double().view(P, LEAF_SIZE * 3, 3)
        real = (tree.face[b] >= 0).view(P, LEAF_SIZE).repeat_interleave(3, 1)
        span = 1
        for level_first in (P >> k for k in range(P.bit_length())):
            nodes = torch.arange(level_first, 2 * level_first, device=device)
            pts = corners.view(level_first, span * LEAF_SIZE * 3, 3)
            ok = real.reshape(level_first, -1)
            far = torch.where(ok, (pts - centre[b, nodes, None]).norm(dim=-1), 0.0).amax(1)
            assert (far <= radius[b, nodes] * (1 + 1e-12)).all()
            box = torch.maximum((tree.hi[b, nodes].double() - centre[b, nodes]).abs(),
                                (tree.lo[b, nodes].double() - centre[b, nodes]).abs())
            box_radius = torch.where(torch.isfinite(box).all(-1), box.norm(dim=-1), 0.0)
            assert (radius[b, nodes] <= box_radius).all()
            span *= 2
