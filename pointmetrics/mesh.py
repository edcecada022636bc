"""Triangle-mesh utilities: face areas and normals, area-weighted surface sampling."""

from __future__ import annotations

from typing import NamedTuple

import torch


class MeshSamples(NamedTuple):
    """points (n, 3); face_idx (n,) int64; bary (n, 3) barycentric coordinates of each point in its
    face; normals (n, 3) unit normals of those faces."""

    points: torch.Tensor
    face_idx: torch.Tensor
    bary: torch.Tensor
    normals: torch.Tensor


def check_mesh(verts: torch.Tensor, faces: torch.Tensor) -> None:
    """Raises a ValueError/TypeError naming the argument for malformed vertex or face tensors."""
    if not isinstance(verts, torch.Tensor) or not verts.is_floating_point():
        raise TypeError("verts must be a floating point tensor of shape (V, 3)")
    if verts.ndim != 2 or verts.shape[1] != 3:
        raise ValueError(f"verts must have shape (V, 3), got {tuple(verts.shape)}")
    if not isinstance(faces, torch.Tensor) or faces.is_floating_point() or faces.dtype == torch.bool:
        raise TypeError("faces must be an integer tensor of shape (F, 3)")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must have shape (F, 3), got {tuple(faces.shape)}")
    if faces.device != verts.device:
        raise ValueError(f"faces is on {faces.device} but verts is on {verts.device}")
    if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= verts.shape[0]):
        raise ValueError(f"faces must index vertices in [0, {verts.shape[0] - 1}]")
    if not bool(torch.isfinite(verts).all()):
        raise ValueError("verts contains NaN or Inf coordinates")


def face_areas_normals(verts: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(F,) triangle areas and (F, 3) unit normals (zero for degenerate triangles); differentiable."""
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    cross = torch.linalg.cross(b - a, c - a, dim=1)
    twice_area = cross.norm(dim=1)
    normals = cross / twice_area.clamp(min=torch.finfo(verts.dtype).tiny).unsqueeze(1)
    return 0.5 * twice_area, normals


def sample_points_on_mesh(
    verts: torch.Tensor,
    faces: torch.Tensor,
    n: int,
    generator: torch.Generator | None = None,
) -> MeshSamples:
    """Samples n points uniformly by area on a triangle mesh.

    Faces are drawn with probability proportional to their area (zero-area faces never), and a
    point in face (A, B, C) is (1 - sqrt(u)) A + sqrt(u)(1 - v) B + sqrt(u) v C for u, v uniform in
    [0, 1): uniform over the triangle. Points are differentiable with respect to ``verts``; pass a
    seeded ``generator`` for reproducible samples.
    """
    check_mesh(verts, faces)
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    areas, normals = face_areas_normals(verts, faces)
    if faces.shape[0] == 0 or not bool((areas > 0).any()):
        raise ValueError("the mesh has no face with positive area to sample from")
    weights = areas.detach().to(torch.float64)
    face_idx = torch.multinomial(weights, n, replacement=True, generator=generator)
    uv = torch.rand(
        n, 2, generator=generator, dtype=torch.float64, device=verts.device if generator is None else generator.device
    ).to(verts.device)
    su = uv[:, 0].sqrt()
    bary = torch.stack([1 - su, su * (1 - uv[:, 1]), su * uv[:, 1]], dim=1).to(verts.dtype)
    corners = verts[faces[face_idx]]  # (n, 3 corners, 3)
    points = (bary.unsqueeze(2) * corners).sum(1)
    return MeshSamples(points, face_idx, bary, normals[face_idx])
