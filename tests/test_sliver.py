"""Closest points on slivers (long, thin triangles) against exact rational arithmetic (issue 13).

The oracle works in fractions.Fraction on the exact float64 inputs: projection onto the plane, the
inside test, else the nearest of the three segment projections. MeshBVH's answer is exact for a
triangle and query moved by a few ulps of their coordinates, so distances must agree within
DIST_ULPS ulps of the largest coordinate magnitude M. Closest points agree within that too near
the plane; off the plane a sliver's plane is only known to eps * length / height, so a point may
move by up to about sqrt(eps * M * distance) (the projection onto nearby convex sets).
"""

import math
from fractions import Fraction

import pytest
import torch

import pointmetrics as pm

EPS = 2.0**-52
DIST_ULPS = 16  # the bound the README states: |d - exact| <= 16 eps max|coordinate|


def _sub(u, v):
    return [x - y for x, y in zip(u, v)]


def _dot(u, v):
    return sum(x * y for x, y in zip(u, v))


def _cross(u, v):
    return [u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0]]


def _on_segment(p, u, v):
    e = _sub(v, u)
    len2 = _dot(e, e)
    t = Fraction(0) if len2 == 0 else min(max(_dot(_sub(p, u), e) / len2, Fraction(0)), Fraction(1))
    return [x + t * y for x, y in zip(u, e)]


def exact_closest(p, a, b, c):
    """Exact closest point of triangle (a, b, c) to p, and the exact squared distance (Fractions)."""
    p, a, b, c = ([Fraction(x) for x in map(float, t)] for t in (p, a, b, c))
    n = _cross(_sub(b, a), _sub(c, a))
    n2 = _dot(n, n)
    if n2 != 0:
        h = _dot(_sub(p, a), n) / n2
        q = [x - h * y for x, y in zip(p, n)]
        if all(_dot(_cross(_sub(v, u), _sub(q, u)), n) >= 0 for u, v in ((a, b), (b, c), (c, a))):
            return q, h * h * n2
    best = None
    for u, v in ((a, b), (b, c), (c, a)):
        q = _on_segment(p, u, v)
        d2 = _dot(_sub(p, q), _sub(p, q))
        if best is None or d2 < best[1]:
            best = (q, d2)
    return best


def random_rotation(gen):
    return torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))[0]


def sliver_queries(gen, tri, thickness):
    """Queries near a triangle: its centroid, its corners, points on its plane (float barycentric
    combinations), points just off its edges (in the plane and off it) and above its face."""
    a, b, c = tri
    length = max((a - b).norm(), (b - c).norm(), (c - a).norm())
    normal = torch.linalg.cross(b - a, c - a)
    normal = normal / normal.norm() if normal.norm() > 0 else torch.zeros(3, dtype=torch.float64)
    w = torch.rand(6, 3, generator=gen, dtype=torch.float64)
    on_plane = (w / w.sum(1, keepdim=True)) @ tri
    t = torch.rand(6, 1, generator=gen, dtype=torch.float64)
    edges = torch.cat([a + t[:2] * (b - a), b + t[2:4] * (c - b), c + t[4:] * (a - c)])
    centroid = tri.mean(0, keepdim=True)
    off = (10.0 ** -torch.randint(0, 4, (6, 1), generator=gen)) * thickness * length
    jitter = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    out = [
        centroid,
        tri,
        on_plane,
        edges,
        edges + off * jitter / jitter.norm(dim=1, keepdim=True),  # just off an edge, any direction
        on_plane + off * normal,  # above the face
        centroid + 1e-3 * length * torch.randn(2, 3, generator=gen, dtype=torch.float64),
        a + 0.01 * length * (a - b) / length,  # beyond a corner
    ]
    return torch.cat([x.reshape(-1, 3) for x in out])


def random_slivers(gen, count):
    """Long thin triangles: lengths 1e-3 to 1e4, offsets up to 1e4 lengths, heights 1e-3 to 1e-9 of
    the length, the third corner anywhere over the base (caps) or near an end (needles), random
    orientation; plus near-collinear (height 1e-13 to 1e-16) and exactly collinear ones."""

    def uniform(lo, hi):
        return float(torch.empty(()).uniform_(lo, hi, generator=gen))

    tris, thick = [], []
    for i in range(count):
        length = 10.0 ** uniform(-3, 4)
        offset = length * 10.0 ** uniform(0, 4)
        kind = i % 8
        ratio = 10.0 ** (uniform(-16, -13) if kind == 6 else uniform(-9, -3))
        foot = uniform(0, 1) if kind % 2 == 0 else 1 - 10.0 ** -uniform(1, 6)  # a cap, or a needle
        if kind == 7:  # exactly collinear: a, a + 3d, a + 7d with d and a on a coarse binary grid
            step = 2.0 ** math.floor(math.log2(length / 8))
            a = torch.randint(-1000, 1000, (3,), generator=gen).double() * step * 2**8
            d = torch.randint(-8, 9, (3,), generator=gen).double() * step
            d[0] = d[0] if d[0] != 0 else step
            tri = torch.stack([a, a + 7 * d, a + 3 * d])
        else:
            local = torch.tensor([[0, 0, 0], [length, 0, 0], [foot * length, ratio * length, 0]], dtype=torch.float64)
            shift = offset * torch.randn(3, generator=gen, dtype=torch.float64)
            tri = local @ random_rotation(gen).T + shift
        tris.append(tri[torch.randperm(3, generator=gen)])
        thick.append(max(ratio, 1e-9))
    return tris, thick


def check(tri, q, result, what):
    """Distances and points of `result` for queries q on the single triangle tri, against exact."""
    for i in range(len(q)):
        point, d2 = exact_closest(q[i].tolist(), *tri.tolist())
        scale = max(tri.abs().max().item(), q[i].abs().max().item())
        d_exact = math.sqrt(d2)
        got = result.distance[i].item()
        assert abs(got - d_exact) <= DIST_ULPS * EPS * scale, (what, i, got, d_exact, tri.tolist(), q[i].tolist())
        tol = DIST_ULPS * EPS * scale + 4 * math.sqrt(EPS * scale * d_exact)
        err = max(abs(float(x) - y) for x, y in zip(point, result.points[i].tolist()))
        assert err <= tol, (what, i, err, tol, tri.tolist(), q[i].tolist())


def test_issue_examples():
    v = torch.tensor([[10, 10, 10], [10010, 10, 10], [5010, 10.00001, 10]], dtype=torch.float64)
    f = torch.tensor([[0, 1, 2]])
    q = torch.tensor([[3335.175265381077, 10.000003373351708, 10.000000007024703]], dtype=torch.float64)
    q = torch.cat([q, v.mean(0, keepdim=True), v])
    bvh = pm.MeshBVH(v, f)
    r = bvh.closest_points(q)
    assert abs(r.distance[0].item() - 7.024702597391297e-09) < 1e-11
    assert r.distance[1].item() < 1e-11  # the centroid lies on the triangle
    assert torch.equal(r.distance[2:], torch.zeros(3, dtype=torch.float64))  # corners: exactly 0
    assert (r.bary[:2] != 0).all()  # both inside the face
    check(v, q, r, "kernel")
    check(v, q, bvh.closest_points(q.clone().requires_grad_()), "torch")


def test_random_slivers_against_exact(gen):
    tris, thick = random_slivers(gen, 48)
    qs = [sliver_queries(gen, tri, t) for tri, t in zip(tris, thick)]
    v = torch.stack(tris)  # a batch of one-triangle meshes
    f = torch.tensor([[[0, 1, 2]]]).expand(len(tris), 1, 3)
    q = torch.stack(qs)
    bvh = pm.MeshBVH(v, f)
    kernel = bvh.closest_points(q)
    q_grad = q.clone().requires_grad_()
    recomputed = bvh.closest_points(q_grad)
    recomputed.distance.sum().backward()
    assert torch.isfinite(q_grad.grad).all()
    for b, tri in enumerate(tris):
        check(tri, q[b], type(kernel)(*(t[b] for t in kernel)), f"kernel, sliver {b}")
        check(tri, q[b], type(recomputed)(*(t[b].detach() for t in recomputed)), f"torch, sliver {b}")
        assert torch.equal(kernel.distance[b, 1:4], torch.zeros(3, dtype=torch.float64))  # the corners


def test_sliver_in_a_mesh_and_every_corner_order(gen):
    # a sliver among ordinary triangles, its corners in every order: the same bits every time
    tris, thick = random_slivers(gen, 8)
    tri = tris[2]
    q = sliver_queries(gen, tri, thick[2])
    other = tri.mean(0) + (tri - tri.mean(0)).abs().max() * torch.randn(30, 3, generator=gen, dtype=torch.float64)
    v = torch.cat([tri, other])
    base = None
    for perm in ([0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 2, 1], [2, 1, 0], [1, 0, 2]):
        f = torch.cat([torch.tensor([perm]), torch.arange(3, 33).view(10, 3)])
        r = pm.closest_points_on_mesh(q, v, f)
        if base is None:
            base = r
        assert torch.equal(r.sq_distance, base.sq_distance)
        on_sliver = r.face == 0
        assert on_sliver.sum() >= len(q) // 2
        sub = type(r)(*(t[on_sliver] for t in r))
        check(tri, q[on_sliver], sub, f"order {perm}")


@pytest.mark.parametrize("ratio", [1e-3, 1e-6, 1e-9])
def test_reference_oracle_is_exact_on_slivers(gen, ratio):
    from pointmetrics import reference

    tri = torch.tensor([[0, 0, 0], [1, 0, 0], [0.4, ratio, 0]], dtype=torch.float64) * 1e3
    tri = tri @ random_rotation(gen).T + 5e3
    q = sliver_queries(gen, tri, ratio)
    want_d, _ = reference.closest_points_on_mesh(q, tri, torch.tensor([[0, 1, 2]]))
    scale = max(tri.abs().max().item(), q.abs().max().item())
    for i in range(len(q)):
        d_exact = math.sqrt(exact_closest(q[i].tolist(), *tri.tolist())[1])
        assert abs(math.sqrt(want_d[i].item()) - d_exact) <= DIST_ULPS * EPS * scale
