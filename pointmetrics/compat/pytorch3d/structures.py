"""PyTorch3D's ``Meshes`` / ``Pointclouds`` arguments (the accessors of ``pytorch3d/structures``),
read by duck typing into padded batches; see the package docstring."""

from __future__ import annotations

import torch

from ... import _checks
from ..._reduce import valid_mask


def _as_vertex_tensor(t, name: str) -> torch.Tensor:
    _checks.check_float_tensor(t, name)
    if t.numel() == 0:
        return t.reshape(0, 3)  # PyTorch3D accepts torch.tensor([]) for an empty mesh
    if t.ndim != 2 or t.shape[1] != 3:
        raise ValueError(f"{name} must have shape (V, 3), got {tuple(t.shape)}")
    return t


def _as_face_tensor(t, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or t.is_floating_point() or t.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of shape (F, 3)")
    if t.numel() == 0:
        return t.reshape(0, 3).to(torch.int64)
    if t.ndim != 2 or t.shape[1] != 3:
        raise ValueError(f"{name} must have shape (F, 3), got {tuple(t.shape)}")
    return t.to(torch.int64)


def mesh_lists(meshes, name: str = "meshes") -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-mesh vertices and faces (local indices) of a Meshes-like object."""
    if hasattr(meshes, "verts_list") and hasattr(meshes, "faces_list"):
        verts, faces = list(meshes.verts_list()), list(meshes.faces_list())
    elif all(hasattr(meshes, a) for a in ("verts_packed", "faces_packed", "num_verts_per_mesh", "num_faces_per_mesh")):
        vp, fp = meshes.verts_packed(), meshes.faces_packed()
        nv = [int(n) for n in meshes.num_verts_per_mesh()]
        nf = [int(n) for n in meshes.num_faces_per_mesh()]
        verts = list(torch.split(vp, nv))
        offsets = torch.cumsum(torch.tensor([0] + nv[:-1]), 0).tolist()
        faces = [f - o for f, o in zip(torch.split(fp, nf), offsets)]
    else:
        raise TypeError(
            f"{name} must be a Meshes-like object with verts_list() and faces_list(), or verts_packed(), "
            f"faces_packed(), num_verts_per_mesh() and num_faces_per_mesh(); got {type(meshes).__name__}"
        )
    if len(verts) != len(faces):
        raise ValueError(f"{name}: {len(verts)} vertex tensors but {len(faces)} face tensors")
    verts = [_as_vertex_tensor(v, f"{name}.verts_list()[{i}]") for i, v in enumerate(verts)]
    faces = [_as_face_tensor(f, f"{name}.faces_list()[{i}]") for i, f in enumerate(faces)]
    for i, (v, f) in enumerate(zip(verts, faces)):
        if f.device != v.device or (v.device != verts[0].device):
            raise ValueError(f"{name}: mesh {i} has its vertices and faces on different devices")
        if f.numel() and (int(f.min()) < 0 or int(f.max()) >= v.shape[0]):
            raise ValueError(f"{name}.faces_list()[{i}] must index vertices in [0, {v.shape[0] - 1}]")
    return verts, faces


def _pad_corners(verts: list[torch.Tensor], faces: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, 3, 3) corners of each mesh's faces (differentiable; zero padding) and (B,) counts."""
    B = len(verts)
    dtype = verts[0].dtype
    for v in verts:
        dtype = torch.promote_types(dtype, v.dtype)
    device = verts[0].device
    T = max((f.shape[0] for f in faces), default=0)
    counts = torch.tensor([f.shape[0] for f in faces], dtype=torch.int64, device=device)
    rows = [v.to(dtype)[f] for v, f in zip(verts, faces)]
    padded = [torch.cat([r, r.new_zeros(T - r.shape[0], 3, 3)]) if r.shape[0] < T else r for r in rows]
    return (torch.stack(padded) if B else torch.zeros(0, T, 3, 3, dtype=dtype, device=device)), counts


def _cloud_padded(pcls, name: str = "pcls") -> tuple[torch.Tensor, torch.Tensor]:
    """(N, P, 3) points and (N,) int64 lengths of a Pointclouds-like object."""
    if hasattr(pcls, "points_padded") and hasattr(pcls, "num_points_per_cloud"):
        points, lengths = pcls.points_padded(), pcls.num_points_per_cloud()
    elif hasattr(pcls, "points_list"):
        clouds = list(pcls.points_list())
        if not clouds:
            raise ValueError(f"{name} holds no point cloud")
        clouds = [c.reshape(0, 3) if c.numel() == 0 else c for c in clouds]
        lengths = torch.tensor([c.shape[0] for c in clouds], dtype=torch.int64, device=clouds[0].device)
        P = int(lengths.max())
        points = torch.stack([torch.cat([c, c.new_zeros(P - c.shape[0], c.shape[1])]) for c in clouds])
    else:
        raise TypeError(
            f"{name} must be a Pointclouds-like object with points_padded() and num_points_per_cloud(), "
            f"or points_list(); got {type(pcls).__name__}"
        )
    _checks.check_float_tensor(points, f"{name}.points_padded()")
    if points.ndim != 3 or points.shape[2] != 3:
        raise ValueError(f"{name}: points must have shape (N, P, 3), got {tuple(points.shape)}")
    lengths = torch.as_tensor(lengths, device=points.device).to(torch.int64).reshape(-1)
    if lengths.shape != (points.shape[0],):
        raise ValueError(f"{name}: num_points_per_cloud() must have shape ({points.shape[0]},)")
    return points, lengths


def mesh_cloud_pair(meshes, pcls, edges: bool):
    """Validated (corners, counts, points, lengths) of PyTorch3D's (meshes, pcls) arguments;
    the corners are the faces', or with ``edges`` the unique edges' as (a, b, b)."""
    verts, faces = mesh_lists(meshes)
    points, plen = _cloud_padded(pcls)
    if len(verts) != points.shape[0]:
        raise ValueError(
            f"meshes and pointclouds must be equal sized batches, got {len(verts)} meshes and {points.shape[0]} clouds"
        )
    if len(verts) == 0:
        raise ValueError("meshes and pcls hold no mesh and no point cloud: the batch mean is undefined")
    if any(v.device != points.device for v in verts):
        raise ValueError(f"meshes are on {verts[0].device} but pcls is on {points.device}")
    if edges:
        faces = [_unique_edges(f) for f in faces]
    corners, counts = _pad_corners(verts, faces)
    _check_finite_corners(corners, counts, "meshes")
    return corners, counts, points, plen


def _unique_edges(faces: torch.Tensor) -> torch.Tensor:
    """A mesh's undirected edges, each once, as degenerate faces (i, j, j): PyTorch3D's
    ``Meshes.edges_packed()`` (edges (v1, v2), (v2, v0), (v0, v1) of every face, sorted, deduplicated
    by vertex index; an edge (i, i) of a face with a repeated index counts)."""
    if faces.shape[0] == 0:
        return faces
    e = torch.cat([faces[:, [1, 2]], faces[:, [2, 0]], faces[:, [0, 1]]]).sort(dim=1).values
    e = torch.unique(e, dim=0)
    return torch.stack([e[:, 0], e[:, 1], e[:, 1]], dim=1)


def _check_finite_corners(corners: torch.Tensor, counts: torch.Tensor, name: str) -> None:
    if corners.numel():
        valid = valid_mask(counts, corners.shape[1])
        if not bool(torch.isfinite(corners[valid]).all()):
            raise ValueError(f"{name} contains NaN or Inf coordinates in a face")

