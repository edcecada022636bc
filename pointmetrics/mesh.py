"""Triangle meshes: input handling, face areas and normals, surface sampling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from ._reduce import compute_dtype, valid_mask


class MeshSamples(NamedTuple):
    """points (n, 3); face_idx (n,) int64; bary (n, 3) barycentric coordinates of each point in its
    face; normals (n, 3) unit normals of those faces."""

    points: torch.Tensor
    face_idx: torch.Tensor
    bary: torch.Tensor
    normals: torch.Tensor


@dataclass
class Meshes:
    """A padded batch of triangle meshes.

    verts: (B, V, 3) floating; faces: (B, F, 3) int64; face_lengths: (B,) int64 valid faces per
    mesh (faces past it are ignored); unbatched: the input was a single mesh.
    """

    verts: torch.Tensor
    faces: torch.Tensor
    face_lengths: torch.Tensor
    unbatched: bool = False

    def corners(self, face_idx: torch.Tensor) -> torch.Tensor:
        """(B, N, 3, 3) corners of the faces ``face_idx`` (B, N) of each mesh; differentiable."""
        B, N = face_idx.shape
        if self.verts.shape[1] == 0:  # no vertices, so no valid face: padding faces have no corners
            return self.verts.new_zeros(B, N, 3, 3)
        # index_select on flattened batches: several times faster than gather with an expanded index
        F, V = self.faces.shape[1], self.verts.shape[1]
        batch = torch.arange(B, device=face_idx.device)[:, None]
        vidx = self.faces.reshape(B * F, 3).index_select(0, (face_idx + F * batch).reshape(-1))  # (B N, 3)
        flat = (vidx.view(B, N * 3) + V * batch).reshape(-1)
        return self.verts.reshape(B * V, 3).index_select(0, flat).view(B, N, 3, 3)

    def triangles(self) -> torch.Tensor:
        """(B, F, 3, 3) corners of every face (padding faces give the first vertex three times)."""
        B, F, _ = self.faces.shape
        valid = valid_mask(self.face_lengths, F)
        return self.corners(torch.where(valid, torch.arange(F, device=self.faces.device)[None], 0).expand(B, F))


def _mesh_list(verts, faces, vname="verts", fname="faces"):
    if not isinstance(verts, (list, tuple)) or not isinstance(faces, (list, tuple)):
        raise TypeError(f"give {vname} and {fname} both as tensors or both as lists of per-mesh tensors")
    if len(verts) != len(faces) or len(verts) == 0:
        raise ValueError(
            f"{vname} and {fname} must be non-empty lists of equal length, got {len(verts)} and {len(faces)}"
        )
    faces = [check_mesh(v, f, f"{vname}[{i}]", f"{fname}[{i}]") for i, (v, f) in enumerate(zip(verts, faces))]
    device, dtype = verts[0].device, verts[0].dtype
    V, F = max(v.shape[0] for v in verts), max(f.shape[0] for f in faces)
    pv = torch.zeros(len(verts), max(V, 1), 3, dtype=dtype, device=device)
    pf = torch.zeros(len(faces), F, 3, dtype=torch.int64, device=device)
    for i, (v, f) in enumerate(zip(verts, faces)):
        if v.device != device or v.dtype != dtype:
            raise ValueError(f"{vname}[{i}] differs from {vname}[0] in device or dtype")
        pv[i, : v.shape[0]] = v
        pf[i, : f.shape[0]] = f
    lengths = torch.tensor([f.shape[0] for f in faces], dtype=torch.int64, device=device)
    return Meshes(pv, pf, lengths)


_UNSIGNED = (torch.uint8, torch.uint16, torch.uint32, torch.uint64)


def _integer_faces(faces, name: str, shape: str) -> torch.Tensor:
    """``faces`` as int64, from any integer dtype (int8 ... int64, uint8 ... uint64).

    Indexing with anything but int64 is wrong in torch: int8/int16 raise, and uint8 is read as a
    boolean mask. The conversion is exact except for uint64 values >= 2^63, which wrap to negative
    numbers and so fail the range check that follows. Booleans are not indices: TypeError.
    """
    if (
        not isinstance(faces, torch.Tensor)
        or faces.is_floating_point()
        or faces.is_complex()
        or faces.dtype == torch.bool
    ):
        got = faces.dtype if isinstance(faces, torch.Tensor) else type(faces).__name__
        raise TypeError(f"{name} must be an integer tensor of shape {shape}, got {got}")
    return faces.to(torch.int64)


def as_meshes(verts, faces, face_lengths=None, *, names: tuple[str, str] = ("verts", "faces")) -> Meshes:
    """Validates a mesh or a batch of meshes and returns them padded.

    Accepts (V, 3) + (F, 3) for one mesh, (B, V, 3) + (B, F, 3) with optional (B,) face_lengths,
    or lists of per-mesh tensors. Raises TypeError/ValueError naming the argument: wrong shapes or
    dtypes, faces out of range or negative, NaN/Inf in used vertices, mismatched devices.
    Unreferenced vertices, duplicate faces, holes and degenerate faces are all fine. ``names``: the
    names of verts and faces that the errors report, e.g. ``("gt_verts", "gt_faces")``.
    """
    vname, fname = names
    if isinstance(verts, (list, tuple)) or isinstance(faces, (list, tuple)):
        if face_lengths is not None:
            raise ValueError("face_lengths goes with padded tensors, not with lists of meshes")
        return _mesh_list(verts, faces, vname, fname)
    unbatched = isinstance(verts, torch.Tensor) and verts.ndim == 2
    if unbatched:
        faces = check_mesh(verts, faces, vname, fname)
        return Meshes(
            verts[None],
            faces[None],
            torch.tensor([faces.shape[0]], dtype=torch.int64, device=verts.device),
            True,
        )
    if not isinstance(verts, torch.Tensor) or not verts.is_floating_point():
        raise TypeError(f"{vname} must be a floating point tensor of shape (V, 3) or (B, V, 3)")
    if verts.ndim != 3 or verts.shape[2] != 3:
        raise ValueError(f"{vname} must have shape (V, 3) or (B, V, 3), got {tuple(verts.shape)}")
    faces = _integer_faces(faces, fname, "(F, 3) or (B, F, 3)")
    if faces.ndim != 3 or faces.shape[2] != 3 or faces.shape[0] != verts.shape[0]:
        raise ValueError(f"{fname} must have shape ({verts.shape[0]}, F, 3), got {tuple(faces.shape)}")
    if faces.device != verts.device:
        raise ValueError(f"{fname} is on {faces.device} but {vname} is on {verts.device}")
    B, F = faces.shape[:2]
    if face_lengths is None:
        face_lengths = torch.full((B,), F, dtype=torch.int64, device=verts.device)
    else:
        face_lengths = torch.as_tensor(face_lengths, device=verts.device)
        if face_lengths.is_floating_point() or face_lengths.shape != (B,):
            raise ValueError(f"face_lengths must be an integer tensor of shape ({B},)")
        face_lengths = face_lengths.to(torch.int64)
    valid = valid_mask(face_lengths, F)
    checks = [
        ((face_lengths < 0) | (face_lengths > F)).any(),
        ((faces < 0) & valid[..., None]).any(),
        ((faces >= verts.shape[1]) & valid[..., None]).any(),
    ]
    messages = [
        f"face_lengths values must lie in [0, {F}]",
        f"{fname} contains negative vertex indices",
        f"{fname} must index vertices in [0, {verts.shape[1] - 1}]",
    ]
    for bad, message in zip(torch.stack(checks).tolist(), messages):
        if bad:
            raise ValueError(message)
    faces = torch.where(valid[..., None], faces, 0)
    meshes = Meshes(verts, faces, face_lengths)
    if F and not bool(torch.isfinite(meshes.triangles())[valid].all()):
        raise ValueError(f"{vname} contains NaN or Inf coordinates in a face")
    return meshes


def meshes_from_packed(verts_packed: torch.Tensor, faces_packed: torch.Tensor, verts_per_mesh, faces_per_mesh):
    """Packed meshes (PyTorch3D's layout: all vertices concatenated, all faces concatenated with
    indices into the concatenated vertices) as (verts, faces, face_lengths), padded per mesh with
    local indices, for any function here that takes a batch of meshes."""
    faces_packed = _integer_faces(faces_packed, "faces_packed", "(F, 3)")  # before any subtraction wraps
    verts_per_mesh = torch.as_tensor(verts_per_mesh, dtype=torch.int64).cpu()
    faces_per_mesh = torch.as_tensor(faces_per_mesh, dtype=torch.int64).cpu()
    if verts_per_mesh.shape != faces_per_mesh.shape or verts_per_mesh.ndim != 1:
        raise ValueError("verts_per_mesh and faces_per_mesh must be (B,) and of the same length")
    if int(verts_per_mesh.sum()) != verts_packed.shape[0] or int(faces_per_mesh.sum()) != faces_packed.shape[0]:
        raise ValueError("verts_per_mesh and faces_per_mesh must sum to the packed sizes")
    v_start = torch.cumsum(verts_per_mesh, 0) - verts_per_mesh
    f_start = torch.cumsum(faces_per_mesh, 0) - faces_per_mesh
    verts = [verts_packed[int(s) : int(s + n)] for s, n in zip(v_start, verts_per_mesh)]
    faces = [faces_packed[int(s) : int(s + n)] - int(vs) for s, n, vs in zip(f_start, faces_per_mesh, v_start)]
    m = _mesh_list(verts, faces)
    return m.verts, m.faces, m.face_lengths


def check_mesh(verts: torch.Tensor, faces: torch.Tensor, vname: str = "verts", fname: str = "faces") -> torch.Tensor:
    """Validates a single mesh and returns its faces as int64.

    Raises a ValueError/TypeError naming the argument: verts not a floating (V, 3) tensor, faces not
    an integer (F, 3) tensor (any integer dtype; bool is a TypeError), faces on another device,
    indices outside [0, V - 1], NaN/Inf coordinates in a face.
    """
    if not isinstance(verts, torch.Tensor) or not verts.is_floating_point():
        raise TypeError(f"{vname} must be a floating point tensor of shape (V, 3)")
    if verts.ndim != 2 or verts.shape[1] != 3:
        raise ValueError(f"{vname} must have shape (V, 3), got {tuple(verts.shape)}")
    unsigned = isinstance(faces, torch.Tensor) and faces.dtype in _UNSIGNED
    faces = _integer_faces(faces, fname, "(F, 3)")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"{fname} must have shape (F, 3), got {tuple(faces.shape)}")
    if faces.device != verts.device:
        raise ValueError(f"{fname} is on {faces.device} but {vname} is on {verts.device}")
    if faces.numel() == 0:
        return faces
    low, high = torch.aminmax(faces)  # one pass, read back once
    low, high = int(low), int(high)
    if low < 0 and not unsigned:
        raise ValueError(f"{fname} contains negative vertex indices")
    if low < 0 or high >= verts.shape[0]:
        raise ValueError(f"{fname} must index vertices in [0, {verts.shape[0] - 1}]")
    # Only vertices that a face uses must be finite; checking all of them first is cheaper and
    # almost always settles it.
    if not bool(torch.isfinite(verts).all()) and not bool(torch.isfinite(verts[faces]).all()):
        raise ValueError(f"{vname} contains NaN or Inf coordinates in a face")
    return faces


def face_cross(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(F, 3) float64 cross products (B - A) x (C - A) of the faces (A, B, C): twice the area along
    the unit normal, differentiable, and exactly zero for every degenerate face.

    Rounding would otherwise give a degenerate face a tiny area and an arbitrary normal (a face
    (a, b, b) got 3.6e-18 in float32). So, in float64:

    - the product is taken at the corner opposite the longest edge (the same vector at every
      corner in exact arithmetic, and the one with the least cancellation when it is not exact);
    - a face with a repeated vertex index is zero;
    - a product below its rounding-error bound, 8 eps |u| |v| + 4 delta (|u| + |v|) for the two
      edges u, v at that corner (delta = eps max |coordinate| for float64 inputs, whose edges are
      rounded; 0 for narrower inputs, whose edges are exact in float64), is zero: identical or
      collinear corners.
    """
    tri = verts[faces].to(torch.float64)  # (F, 3 corners, 3)
    opposite = torch.stack([tri[:, 2] - tri[:, 1], tri[:, 0] - tri[:, 2], tri[:, 1] - tri[:, 0]], dim=1)
    pivot = opposite.detach().square().sum(-1).argmax(1)  # corner opposite the longest edge
    order = (pivot[:, None] + torch.arange(3, device=faces.device)) % 3  # cyclic: keeps the orientation
    a, b, c = tri.gather(1, order[..., None].expand(-1, -1, 3)).unbind(1)
    u, v = b - a, c - a
    cross = torch.linalg.cross(u, v, dim=1)
    eps = torch.finfo(torch.float64).eps
    with torch.no_grad():
        lu, lv = u.norm(dim=1), v.norm(dim=1)
        delta = eps * tri.abs().amax((1, 2)) if verts.dtype == torch.float64 else torch.zeros_like(lu)
        bound = 8 * eps * lu * lv + 4 * delta * (lu + lv)
        repeated = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 2] == faces[:, 0])
        degenerate = repeated | (cross.norm(dim=1) <= bound)
    return torch.where(degenerate[:, None], torch.zeros((), dtype=cross.dtype, device=cross.device), cross)


def _face_areas_normals64(verts: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 (F,) areas and (F, 3) unit normals; see :func:`face_areas_normals`."""
    cross = face_cross(verts, faces)
    twice_area = cross.norm(dim=1)
    normals = cross / twice_area.clamp(min=torch.finfo(torch.float64).tiny).unsqueeze(1)
    return 0.5 * twice_area, normals


def face_areas_normals(verts: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(F,) triangle areas |(B - A) x (C - A)| / 2 and (F, 3) unit normals, differentiable.

    Computed in float64 and returned in the dtype of ``verts``. A degenerate face (a repeated
    vertex, identical or collinear corners) has area exactly 0 and a zero normal. ``faces``: any
    integer dtype.
    """
    areas, normals = _face_areas_normals64(verts, _integer_faces(faces, "faces", "(F, 3)"))
    return areas.to(verts.dtype), normals.to(verts.dtype)


_MULTINOMIAL_LIMIT = 2**24  # torch.multinomial's largest number of categories


def _random_device(data: torch.Tensor, generator: torch.Generator | None) -> torch.device:
    """Where random numbers are drawn: on the generator's device (a CPU generator with CUDA data
    draws on the CPU, and the numbers are then moved to the data), else on the data's device."""
    return data.device if generator is None else generator.device


def draw_faces(weights: torch.Tensor, n: int, generator: torch.Generator | None) -> torch.Tensor:
    """n face indices drawn with probability weights / sum(weights), on the device of ``weights``.

    Faces of weight 0 are never drawn. The draw happens on the generator's device (the weights go
    there), so a CPU generator works with CUDA meshes.
    """
    device = _random_device(weights, generator)
    w = weights.to(device)
    if len(w) < _MULTINOMIAL_LIMIT:
        face_idx = torch.multinomial(w, n, replacement=True, generator=generator)
    else:  # torch.multinomial takes at most 2^24 categories: invert the cumulative areas instead
        cdf = w.cumsum(0)
        u = torch.rand(n, generator=generator, dtype=torch.float64, device=device)
        last_positive = torch.searchsorted(cdf, cdf[-1:])  # where the cdf reaches the total
        # u < 1, but u * total can round up to the total: clamp to the last face of positive weight
        face_idx = torch.minimum(torch.searchsorted(cdf, u * cdf[-1], right=True), last_positive)
    return face_idx.to(weights.device)


def sample_points_on_mesh(
    verts: torch.Tensor,
    faces: torch.Tensor,
    n: int,
    generator: torch.Generator | None = None,
    *,
    names: tuple[str, str] = ("verts", "faces"),
) -> MeshSamples:
    """Samples n points uniformly by area on a triangle mesh.

    Faces are drawn with probability proportional to their area (float64, see
    :func:`face_areas_normals`; degenerate faces have area exactly 0 and are never drawn), and a
    point in face (A, B, C) is (1 - sqrt(u)) A + sqrt(u)(1 - v) B + sqrt(u) v C for u, v uniform in
    [0, 1): uniform over the triangle. Points (computed in float32 at least) are returned in the
    dtype of ``verts`` and are differentiable with respect to it; ``faces`` may have any integer
    dtype. Pass a seeded ``generator`` for reproducible samples; it may live on the CPU while the
    mesh is on CUDA (the random numbers are then drawn on the CPU and moved).

    A mesh without faces, or whose faces all have area 0 (after rounding to the dtype of
    ``verts``: a float16 mesh smaller than float16's resolution collapses to a point), raises a
    ValueError naming ``faces`` or ``verts`` (or the names given in ``names``, e.g.
    ``("tgt_verts", "tgt_faces")``, for a caller whose arguments are called so).
    """
    faces = check_mesh(verts, faces, *names)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return sample_surface(verts, faces, n, generator, names)


def sample_surface(
    verts: torch.Tensor, faces: torch.Tensor, n: int, generator: torch.Generator | None, names: tuple[str, str]
) -> MeshSamples:
    """:func:`sample_points_on_mesh` of a mesh already checked by :func:`check_mesh` (int64 faces
    indexing finite vertices). Still raises the ValueErrors of a mesh with no area to sample."""
    vname, fname = names
    if faces.shape[0] == 0:
        raise ValueError(f"{fname} is empty: the mesh has no face to sample from")
    areas, normals = _face_areas_normals64(verts, faces)  # float64 whatever the dtype of verts
    if not bool((areas > 0).any()):
        raise ValueError(
            f"{vname}: the mesh has no face with positive area to sample from (every face of {fname} "
            f"has repeated, identical or collinear corners in {verts.dtype})"
        )
    face_idx = draw_faces(areas.detach(), n, generator)
    uv = torch.rand(n, 2, generator=generator, dtype=torch.float64, device=_random_device(verts, generator))
    uv = uv.to(verts.device)
    su = uv[:, 0].sqrt()
    bary = torch.stack([1 - su, su * (1 - uv[:, 1]), su * uv[:, 1]], dim=1)
    compute = compute_dtype(verts.dtype)
    corners = verts[faces[face_idx]].to(compute)  # (n, 3 corners, 3)
    points = (bary.to(compute).unsqueeze(2) * corners).sum(1)
    return MeshSamples(points.to(verts.dtype), face_idx, bary.to(verts.dtype), normals[face_idx].to(verts.dtype))


def _norm3(v: torch.Tensor) -> torch.Tensor:
    # numpy's norm over 3 components, summed left to right: the same bits as DTUeval-python
    return torch.sqrt(v[:, 0] * v[:, 0] + v[:, 1] * v[:, 1] + v[:, 2] * v[:, 2])


def _cross3(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # numpy.cross, component by component
    return torch.stack(
        [
            a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1],
            a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2],
            a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0],
        ],
        dim=1,
    )


def sample_mesh_lattice(
    verts: torch.Tensor,
    faces: torch.Tensor,
    density: float = 0.2,
    remove_unreferenced: bool = False,
    chunk: int = 10_000_000,
) -> torch.Tensor:
    """The DTU evaluation's mesh sampler (DTUeval-python eval.py, from MATLAB MeshSupSamp), bit for bit.

    For each triangle (A, B, C) with non-zero area: v1 = B - A, v2 = C - A, l1 = |v1|, l2 = |v2|,
    a2 = |v1 x v2|, thr = density * sqrt(l1 l2 / a2), n1 = floor(l1 / thr), n2 = floor(l2 / thr);
    for c1 in 0..n1 and c2 in 0..n2, k1 = (c1 + 0.5) / max(n1, 1e-7), k2 = (c2 + 0.5) / max(n2, 1e-7),
    emit A + k1 v1 + k2 v2 when k1 + k2 < 1. Returns (V + samples, 3) float64: every vertex
    (unreferenced ones too, as DTUeval-python; ``remove_unreferenced`` drops them as the
    NeuralWarp/Geo-NeuS copies do), then the samples triangle by triangle, c1-major.
    """
    f = check_mesh(verts, faces)
    if not density > 0:
        raise ValueError(f"density must be positive, got {density!r}")
    v = verts.detach().double()
    device = v.device  # every tensor made here lives on the mesh's device
    head = v[f.unique()] if remove_unreferenced else v
    if f.shape[0] == 0:
        return head.clone()
    tri = v[f]
    v1, v2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    l1, l2, area2 = _norm3(v1), _norm3(v2), _norm3(_cross3(v1, v2))
    keep = area2 > 0
    v1, v2, l1, l2, area2, a = v1[keep], v2[keep], l1[keep], l2[keep], area2[keep], tri[keep, 0]
    thr = density * torch.sqrt(l1 * l2 / area2)
    n1, n2 = torch.floor(l1 / thr), torch.floor(l2 / thr)
    cells = ((n1 + 1) * (n2 + 1)).long()
    pieces = [head]
    start = 0
    while start < len(cells):  # triangles in chunks of about `chunk` lattice cells
        stop = start + max(1, int(torch.searchsorted(cells[start:].cumsum(0), chunk)))
        stop = min(stop, len(cells))
        tri_of = torch.repeat_interleave(torch.arange(start, stop, device=device), cells[start:stop])
        first = torch.cumsum(cells[start:stop], 0) - cells[start:stop]
        local = torch.arange(len(tri_of), device=device) - first.repeat_interleave(cells[start:stop])
        width = (n2[tri_of] + 1).long()
        c1, c2 = (local // width).double(), (local % width).double()
        k1 = (c1 + 0.5) / torch.clamp(n1[tri_of], min=1e-7)
        k2 = (c2 + 0.5) / torch.clamp(n2[tri_of], min=1e-7)
        inside = k1 + k2 < 1
        t, k1, k2 = tri_of[inside], k1[inside, None], k2[inside, None]
        pieces.append(v1[t] * k1 + v2[t] * k2 + a[t])
        start = stop
    return torch.cat(pieces).to(verts.device)
