"""The closest-triangle search of the CUDA kernel (mesh_tree.h's binary search from the root), run on
the CPU through a test-only op, against the CPU op's own search (wide_tree.h: four boxes per step,
warm-started from the previous query's leaf). Both compute triangle distances with triangle.h's
arithmetic, which both share (no FMA: core/common.h), and break ties to the smaller face; boxes only
prune, and never a box whose triangles' computed distances could still tie with the best (the
threshold exceeds it by triangle.h's error bound: mesh_tree.h's ClosestTriangle). So every output
is bit for bit the same, for any query, including queries one ulp off a vertex, an edge or a face,
where a triangle's computed distance can lie below its own box's lower bound: before that margin,
such queries got different faces from the two searches (and from the CPU op in different batches).

The winding number: the CPU op walks the tree for eight queries at once (winding_lanes.h), the CUDA
kernel one query at a time (mesh_tree.h's winding_number, run here by a test-only op). Each lane
adds the same terms in the same order with the same IEEE operations, so the two agree bit for bit
(on x86-64 the CPU runs an AVX2 build of the lanes when the CPU has AVX2: the same bits again)."""

import pytest
import torch
from conftest import DATA
from test_mesh import random_mesh as planted_mesh

import pointmetrics as pm
from pointmetrics import io, reference

ops = torch.ops.pointmetrics
testing = torch.ops.pointmetrics_testing


def random_mesh(gen, n_verts=60, n_faces=150, scale=1.0, offset=0.0, dtype=torch.float64):
    """tests/test_mesh.py's random triangles with planted degenerate ones (repeated vertices,
    collinear, zero-area, slivers, tiny triangles), plus a duplicated face (an exact tie everywhere)."""
    v, f = planted_mesh(gen, n_verts, n_faces, scale, offset)
    f = torch.cat([f, f[7:8].flip(1)])  # the flipped duplicate of face 7
    return v.to(dtype), f


def mesh_queries(gen, v, f, n=300):
    """Uniform points around the mesh, far away ones, the vertices, points on edges (midpoints and
    random fractions) and inside faces, and points just off the surface."""
    v = v.double()
    lo, hi = v.amin(0), v.amax(0)
    span = (hi - lo).max()
    around = lo - 0.2 * span + (hi - lo + 0.4 * span) * torch.rand(n, 3, generator=gen, dtype=torch.float64)
    far = lo + 1e3 * span * torch.randn(n // 10, 3, generator=gen, dtype=torch.float64)
    tri = v[f]
    t = torch.rand(len(f), 1, generator=gen, dtype=torch.float64)
    edges = torch.cat([(tri[:, 0] + tri[:, 1]) / 2, tri[:, 1] + t * (tri[:, 2] - tri[:, 1])])
    inside = (tri * torch.rand(len(f), 3, 1, generator=gen, dtype=torch.float64).softmax(1)).sum(1)
    off = inside + 1e-3 * span * torch.randn(inside.shape, generator=gen, dtype=torch.float64)
    return torch.cat([around, far, v, edges, inside, off])


def both(bvh, points, lengths=None):
    """The CPU op and the portable device search on the same tree arguments."""
    pts = points.to(bvh.dtype).contiguous()
    pl = torch.full((pts.shape[0],), pts.shape[1]) if lengths is None else lengths
    t = bvh.tree
    args = (pts, pl, t.tris, t.face, t.lo, t.hi, bvh.meshes.face_lengths, *bvh.search_data())
    return ops.closest_triangle(*args), testing.closest_triangle_portable(*args)


def assert_identical(bvh, points, lengths=None):
    """Every output of the two searches bit for bit equal (the module docstring)."""
    cpu, portable = both(bvh, points, lengths)
    for name, a, b in zip(("dist2", "face", "bary", "closest"), cpu, portable):
        assert a.dtype == b.dtype and torch.equal(a, b), name
    return cpu


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("scale,offset", [(1.0, 0.0), (1e-6, 0.0), (1e3, 0.0), (1.0, 1e4)])
def test_device_search_equals_cpu_search(gen, dtype, scale, offset):
    v, f = random_mesh(gen, scale=scale, offset=offset, dtype=dtype)
    bvh = pm.MeshBVH(v, f)
    q = mesh_queries(gen, v, f)
    d2, face, _, _ = assert_identical(bvh, q[None])
    assert (face >= 0).all() and torch.isfinite(d2).all()
    # On a vertex every face touching it is at distance zero: the smallest face index wins (or a
    # smaller face through the vertex, such as a degenerate one along an edge).
    d2, face, _, _ = assert_identical(bvh, v[None])
    for i in f.unique().tolist():
        touching = (v[f] == v[i]).all(-1).any(-1).nonzero()[:, 0]
        assert d2[0, i] == 0 and face[0, i] <= touching.min()


@pytest.mark.parametrize("n_faces", [1, 7, 8, 9, 17, 33, 65, 129, 257, 2000])
def test_every_tree_depth(gen, n_faces):
    """1 to 256 leaves: even and odd depths (the CPU's four-wide search starts from node 1 or from
    nodes 2 and 3); queries sorted along x, so the CPU's warm starts help, and scattered ones."""
    v = torch.rand(3 * n_faces, 3, generator=gen, dtype=torch.float64)
    f = torch.arange(3 * n_faces).view(n_faces, 3)
    q = mesh_queries(gen, v, f, 200)
    q = q[q[:, 0].argsort()]
    for dtype in (torch.float64, torch.float32):
        assert_identical(pm.MeshBVH(v.to(dtype), f), q[None])


def test_portable_search_matches_brute_force(gen):
    """The device search is right, not only equal to the CPU's."""
    v, f = random_mesh(gen)
    q = mesh_queries(gen, v, f, 200)
    d2, face, bary, closest = both(pm.MeshBVH(v, f), q[None])[1]
    want_d, _ = reference.closest_points_on_mesh(q, v, f)
    torch.testing.assert_close(d2[0], want_d, rtol=1e-9, atol=1e-14)
    torch.testing.assert_close(((q - closest[0]) ** 2).sum(-1), d2[0], rtol=1e-9, atol=1e-14)
    torch.testing.assert_close((bary[0, :, :, None] * v[f[face[0]]]).sum(1), closest[0], rtol=1e-9, atol=1e-12)


def test_padded_batch_with_an_empty_mesh(gen):
    """Padded meshes (face_lengths), an empty mesh, padded queries (whatever lies past the lengths)."""
    meshes = [random_mesh(gen, n_faces=n) for n in (150, 20, 400)]
    B, V, F = 4, max(len(v) for v, _ in meshes), max(len(f) for _, f in meshes)
    verts = torch.zeros(B, V, 3, dtype=torch.float64)
    faces = torch.zeros(B, F, 3, dtype=torch.int64)
    face_lengths = torch.tensor([len(meshes[0][1]), len(meshes[1][1]), 0, len(meshes[2][1])])
    for b, (v, f) in zip((0, 1, 3), meshes):
        verts[b, : len(v)] = v
        faces[b, : len(f)] = f
    bvh = pm.MeshBVH(verts, faces, face_lengths)
    qs = [mesh_queries(gen, v, f, 100) for v, f in meshes]
    N = max(len(q) for q in qs)
    points = 1e6 * torch.randn(B, N, 3, generator=gen, dtype=torch.float64)  # padding: far, never searched
    lengths = torch.tensor([len(qs[0]), len(qs[1]), 50, len(qs[2]) - 13])
    for b, q in zip((0, 1, 3), qs):
        points[b, : len(q)] = q
    points[2, :50] = torch.rand(50, 3, generator=gen, dtype=torch.float64)
    d2, face, bary, closest = assert_identical(bvh, points, lengths)
    assert (face[2] == -1).all() and (d2[2] == 0).all()  # the empty mesh
    for b in range(B):
        assert (face[b, lengths[b] :] == -1).all() and (closest[b, lengths[b] :] == 0).all()
        assert (face[b, : lengths[b]] >= 0).all() or b == 2
        assert (face[b, : lengths[b]] < max(face_lengths[b].item(), 1)).all()


def test_no_faces_at_all(gen):
    bvh = pm.MeshBVH(torch.rand(4, 3, dtype=torch.float64), torch.zeros(0, 3, dtype=torch.int64))
    d2, face, _, _ = assert_identical(bvh, torch.rand(1, 5, 3, dtype=torch.float64))
    assert (face == -1).all() and (d2 == 0).all()


def test_real_mesh_with_duplicate_faces(gen):
    """bunny_res4 has 40 duplicate faces (exact ties at any distance): both searches report the smaller."""
    g = io.load(DATA / "bunny_res4.ply")
    v, f = g.vertices, g.faces
    q = mesh_queries(gen, v, f, 2000)
    for dtype in (torch.float64, torch.float32):
        assert_identical(pm.MeshBVH(v.to(dtype), f), q[None])


def test_opcheck(gen):
    v, f = random_mesh(gen)
    bvh = pm.MeshBVH(v.float(), f)
    t = bvh.tree
    pts = torch.rand(1, 40, 3, generator=gen)
    args = (pts, torch.tensor([33]), t.tris, t.face, t.lo, t.hi, bvh.meshes.face_lengths, *bvh.search_data())
    torch.library.opcheck(testing.closest_triangle_portable, args)
    with pytest.raises(RuntimeError, match="slot_boxes must be"):
        testing.closest_triangle_portable(*args[:8], args[8][:, 1:], args[9])


def both_windings(bvh, points, lengths=None, beta=2.0):
    pts = points.to(bvh.dtype).contiguous()
    pl = torch.full((pts.shape[0],), pts.shape[1]) if lengths is None else lengths
    t = bvh.tree
    args = (pts, pl, t.tris, t.face, t.lo, t.hi, bvh.meshes.face_lengths, *bvh.moments(), beta)
    return ops.winding_number(*args), testing.winding_number_portable(*args)


@pytest.mark.parametrize("name", ["armadillo.ply", "demosthenes.ply", "bunny_res3.ply"])
@pytest.mark.parametrize("beta", [0.5, 2.0, 6.0])
def test_winding_lanes_equal_the_device_traversal(gen, name, beta):
    mesh = io.load(DATA / name)
    v, f = mesh.vertices.double(), mesh.faces
    q = mesh_queries(gen, v, f, n=2000)
    q = q[torch.randperm(len(q), generator=gen)]
    cpu, portable = both_windings(pm.MeshBVH(v, f), q[None], beta=beta)
    assert torch.equal(cpu, portable)
    assert torch.isfinite(cpu).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_winding_lanes_on_padded_batches(gen, dtype):
    """Groups of eight never mix batch elements; padding and empty meshes stay 0."""
    meshes = [random_mesh(gen, dtype=dtype) for _ in range(3)]
    bvh = pm.MeshBVH([m[0] for m in meshes] + [torch.zeros(0, 3, dtype=dtype)],
                     [m[1] for m in meshes] + [torch.zeros(0, 3, dtype=torch.int64)])
    q = torch.stack([mesh_queries(gen, *m, n=37)[:200] for m in meshes] + [torch.rand(200, 3, generator=gen)])
    lengths = torch.tensor([200, 13, 0, 200])
    cpu, portable = both_windings(bvh, q.to(dtype), lengths)
    assert torch.equal(cpu, portable)
    assert (cpu[1, 13:] == 0).all() and (cpu[2] == 0).all() and (cpu[3] == 0).all()


def one_ulp_off(points, gen):
    """The points and four copies moved one ulp along each coordinate, up or down at random."""
    moved = [points]
    for _ in range(4):
        sign = torch.randint(0, 2, points.shape, generator=gen).bool()
        away = torch.where(sign, torch.full_like(points, float("inf")), torch.full_like(points, -float("inf")))
        moved.append(torch.nextafter(points, away))
    return torch.cat(moved)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("offset", [0.0, 1e3])
def test_queries_one_ulp_off_the_surface(gen, dtype, offset):
    """Vertices, edge midpoints and face points, each moved by one ulp: computed distances of order
    (eps |x|)^2 or exactly 0 on several triangles at once. Both searches must pick the same face, and
    the CPU op must answer a query the same alone as in a shuffled batch."""
    for _ in range(4):
        v, f = random_mesh(gen, offset=offset, dtype=dtype)
        tri = v.double()[f]
        inside = (tri * torch.rand(len(f), 3, 1, generator=gen, dtype=torch.float64).softmax(1)).sum(1)
        q = one_ulp_off(torch.cat([v.double(), (tri[:, 0] + tri[:, 1]) / 2, inside]).to(dtype), gen)
        q = q[torch.randperm(len(q), generator=gen)]
        bvh = pm.MeshBVH(v, f)
        d2, face, _, _ = assert_identical(bvh, q[None])
        for i in torch.randint(0, len(q), (40,), generator=gen).tolist():
            alone = both(bvh, q[None, i : i + 1])[0]
            assert alone[1][0, 0] == face[0, i] and alone[0][0, 0] == d2[0, i]
