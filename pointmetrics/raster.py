"""Cameras, hard z-buffer rasterisation of triangle meshes, and normal maps.

The kernel searches: for every pixel it finds the front-most triangle (and returns that triangle's
barycentric weights and depth). Torch differentiates: ``render_normals`` interpolates vertex or face
normals with barycentric weights recomputed in torch from the projected vertices, so a normal map
is differentiable with respect to the normals and the vertices; which triangle is visible is not.

Conventions are OpenGL's. A camera is a world-to-view matrix (the camera looks down -z of its view
space, +y up) and a view-to-clip projection; NDC x runs left to right and y bottom to top over
[-1, 1], and NDC z from -1 (near) to 1 (far). Pixel (row i, column j) of an H x W image samples
NDC x = -1 + (2j + 1) / W, y = 1 - (2i + 1) / H: row 0 is the top. A pixel is covered when its
centre lies inside or on a triangle and the depth there lies in [-1, 1]; there is no back-face
culling; the nearest triangle wins and exact depth ties go to the smaller face index, so renders
are deterministic and identical on CPU and CUDA.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ._ops import ops
from ._reduce import compute_dtype, valid_mask
from .mesh import Meshes, as_meshes, face_cross

# ----------------------------------------------------------------------------------------------
# Cameras


def rotation_y(degrees) -> torch.Tensor:
    """(C, 4, 4) float64 rotations about +y by each angle (right-handed: +z turns towards +x)."""
    t = torch.as_tensor(degrees, dtype=torch.float64).reshape(-1) * (math.pi / 180.0)
    m = torch.eye(4, dtype=torch.float64).repeat(len(t), 1, 1)
    m[:, 0, 0], m[:, 0, 2] = torch.cos(t), torch.sin(t)
    m[:, 2, 0], m[:, 2, 2] = -torch.sin(t), torch.cos(t)
    return m


def look_at(eye, at=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0)) -> torch.Tensor:
    """(C, 4, 4) float64 world-to-view matrices of cameras at ``eye`` (C, 3) looking at ``at``,
    with ``up`` pointing up in the image (gluLookAt)."""
    eye = torch.as_tensor(eye, dtype=torch.float64).reshape(-1, 3)
    at = torch.as_tensor(at, dtype=torch.float64).reshape(-1, 3).expand_as(eye)
    up = torch.as_tensor(up, dtype=torch.float64).reshape(-1, 3).expand_as(eye)
    forward = at - eye
    if bool((forward.norm(dim=1) == 0).any()):
        raise ValueError("look_at: eye and at must differ")
    forward = forward / forward.norm(dim=1, keepdim=True)
    right = torch.linalg.cross(forward, up, dim=1)
    if bool((right.norm(dim=1) == 0).any()):
        raise ValueError("look_at: up must not be parallel to the viewing direction")
    right = right / right.norm(dim=1, keepdim=True)
    true_up = torch.linalg.cross(right, forward, dim=1)
    m = torch.eye(4, dtype=torch.float64).repeat(len(eye), 1, 1)
    m[:, 0, :3], m[:, 1, :3], m[:, 2, :3] = right, true_up, -forward
    m[:, :3, 3] = -(m[:, :3, :3] @ eye.unsqueeze(2)).squeeze(2)
    return m


@dataclass
class Cameras:
    """C cameras: ``view`` (C, 4, 4) world-to-view and ``projection`` (C, 4, 4) view-to-clip matrices.

    Build them with :meth:`orthographic` or :meth:`perspective`; any matrices following OpenGL's
    conventions work (see the module docstring).
    """

    view: torch.Tensor
    projection: torch.Tensor

    def __post_init__(self):
        self.view = torch.as_tensor(self.view, dtype=torch.float64)
        self.projection = torch.as_tensor(self.projection, dtype=torch.float64)
        if self.view.ndim == 2:
            self.view = self.view[None]
        if self.projection.ndim == 2:
            self.projection = self.projection[None].expand(len(self.view), 4, 4)
        if self.view.shape[1:] != (4, 4) or self.projection.shape != self.view.shape:
            raise ValueError(
                f"Cameras: view and projection must be (C, 4, 4), got {tuple(self.view.shape)} "
                f"and {tuple(self.projection.shape)}"
            )
        if not bool(torch.isfinite(self.view).all() and torch.isfinite(self.projection).all()):
            raise ValueError("Cameras: view and projection must be finite")

    def __len__(self) -> int:
        return len(self.view)

    @staticmethod
    def orthographic(view, left=-1.0, right=1.0, bottom=-1.0, top=1.0, near=-1.0, far=1.0) -> Cameras:
        """Orthographic cameras (glOrtho): the view-space box [left, right] x [bottom, top] x
        [-far, -near] maps to NDC [-1, 1]^3. The defaults map [-1, 1]^3 onto itself with the view
        z axis flipped, as ICON's renderer does."""
        if right == left or top == bottom or far == near:
            raise ValueError("Cameras.orthographic: left/right, bottom/top and near/far must differ")
        p = torch.zeros(4, 4, dtype=torch.float64)
        p[0, 0], p[1, 1], p[2, 2], p[3, 3] = 2 / (right - left), 2 / (top - bottom), -2 / (far - near), 1.0
        p[0, 3] = -(right + left) / (right - left)
        p[1, 3] = -(top + bottom) / (top - bottom)
        p[2, 3] = -(far + near) / (far - near)
        return Cameras(view, p)

    @staticmethod
    def perspective(view, fov_y: float = 60.0, aspect: float = 1.0, near: float = 0.1, far: float = 100.0) -> Cameras:
        """Perspective cameras (gluPerspective): vertical field of view ``fov_y`` in degrees,
        width / height ``aspect``, clipping planes at view depths ``near`` < ``far`` (both > 0)."""
        if not (0 < fov_y < 180) or not aspect > 0 or not (0 < near < far):
            raise ValueError("Cameras.perspective: need 0 < fov_y < 180, aspect > 0 and 0 < near < far")
        f = 1.0 / math.tan(math.radians(fov_y) / 2)
        p = torch.zeros(4, 4, dtype=torch.float64)
        p[0, 0], p[1, 1] = f / aspect, f
        p[2, 2], p[2, 3] = (far + near) / (near - far), 2 * far * near / (near - far)
        p[3, 2] = -1.0
        return Cameras(view, p)

    def clip(self, verts: torch.Tensor) -> torch.Tensor:
        """Clip-space positions (B, C, V, 4) of vertices (B, V, 3) in every view; differentiable.
        Computed and returned in float32 for float16/bfloat16/float32 vertices, float64 for float64."""
        verts = verts.to(compute_dtype(verts.dtype))
        # The matrix is formed on the host in float64; the product is written as separate
        # elementwise multiplies and adds in a fixed order (((m0 x + m1 y) + m2 z) + m3), never a
        # matmul or einsum, so no device may fuse it into FMAs or reorder the sum: CPU and CUDA
        # clip coordinates are bit-identical, and so are the rasterisers' results.
        m = (self.projection.cpu() @ self.view.cpu()).to(device=verts.device, dtype=verts.dtype)  # (C, 4, 4)
        column = [m[:, :, j].reshape(1, -1, 1, 4) for j in range(4)]  # (1, C, 1, 4) each
        coord = [verts[..., j].reshape(verts.shape[0], 1, -1, 1) for j in range(3)]  # (B, 1, V, 1) each
        clip = column[0] * coord[0] + column[1] * coord[1]
        clip = clip + column[2] * coord[2]
        return clip + column[3]


# ----------------------------------------------------------------------------------------------
# Rasterisation


class Fragments(NamedTuple):
    """What each pixel sees, for B meshes in C views (the B axis is dropped for a single mesh).

    face: (B, C, H, W) int64 index of the front-most face, -1 where no face is visible.
    bary: (B, C, H, W, 3) its perspective-correct barycentric weights (0 for background); not
        differentiable (``render_normals`` recomputes them differentiably).
    depth: (B, C, H, W) NDC depth in [-1, 1] of the visible surface, +inf for background.
    """

    face: torch.Tensor
    bary: torch.Tensor
    depth: torch.Tensor


def checked_image_size(image_size) -> tuple[int, int]:
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size):
        raise ValueError(f"image_size must be a positive int or (height, width) of positive ints, got {image_size!r}")
    return size


def _check_cameras(cameras) -> None:
    if not isinstance(cameras, Cameras):
        raise TypeError(f"cameras must be a pointmetrics.Cameras, got {type(cameras).__name__}")


def _in_compute_dtype(meshes: Meshes) -> Meshes:
    compute = compute_dtype(meshes.verts.dtype)
    return Meshes(meshes.verts.to(compute), meshes.faces, meshes.face_lengths, meshes.unbatched)


def _rasterize(meshes: Meshes, cameras: Cameras, size: tuple[int, int]) -> tuple[Fragments, torch.Tensor]:
    clip = cameras.clip(meshes.verts.to(compute_dtype(meshes.verts.dtype)))
    with torch.no_grad():
        face, bary, depth = ops.rasterize_triangles(clip.detach(), meshes.faces, meshes.face_lengths, size[0], size[1])
    return Fragments(face, bary, depth), clip


def _unbatch(meshes: Meshes, fragments: Fragments) -> Fragments:
    return Fragments(*(t[0] for t in fragments)) if meshes.unbatched else fragments


def rasterize(verts, faces, cameras: Cameras, image_size=512, face_lengths=None) -> Fragments:
    """Hard z-buffer rasterisation of meshes in one or more views.

    Args:
        verts, faces: one mesh ((V, 3), (F, 3)), a padded batch ((B, V, 3), (B, F, 3) with optional
            ``face_lengths``) or lists of per-mesh tensors.
        cameras: the C views (:class:`Cameras`); every mesh is rendered in every view.
        image_size: ``H`` for square images or ``(H, W)``.

    Returns :class:`Fragments` with (B, C, H, W) leading dimensions ((C, H, W) for one mesh).
    Triangles are not clipped: a triangle with a vertex behind a perspective camera's eye is
    skipped, and pixels whose depth falls outside the near/far planes show what lies behind (or
    nothing). Meshes outside the view volume give empty images.
    """
    _check_cameras(cameras)
    size = checked_image_size(image_size)
    meshes = as_meshes(verts, faces, face_lengths)
    fragments, _ = _rasterize(meshes, cameras, size)
    return _unbatch(meshes, fragments)


def _graph_zero(values: torch.Tensor) -> torch.Tensor:
    """A scalar 0 in the graph of ``values``: their gradient is zero, not None. The sum of an empty
    slice, not values.sum() * 0, which is NaN (and so is its gradient) when an unused vertex is NaN."""
    return values.reshape(-1)[:0].sum()


def _gather_corners(values: torch.Tensor, meshes: Meshes, face: torch.Tensor) -> torch.Tensor:
    """Per-pixel corner values (B, C, H, W, 3, D) of the visible face, from per-vertex values
    ``values`` (B, V, D) or (B, C, V, D); 0 for background."""
    B, C, H, W = face.shape
    if meshes.faces.shape[1] == 0 or meshes.verts.shape[1] == 0:  # nothing visible: every pixel is background
        D = values.shape[-1]
        return values.new_zeros(B, C, H, W, 3, D) + _graph_zero(values)
    vidx = meshes.faces.gather(1, face.clamp(min=0).reshape(B, -1, 1).expand(-1, -1, 3))  # (B, CHW, 3)
    vidx = vidx.reshape(B, C, H * W * 3)
    if values.ndim == 3:
        values = values.unsqueeze(1).expand(B, C, *values.shape[1:])
    D = values.shape[-1]
    out = values.gather(2, vidx.unsqueeze(-1).expand(B, C, H * W * 3, D)).reshape(B, C, H, W, 3, D)
    return torch.where((face >= 0)[..., None, None], out, 0.0)


def _visible_face_values(per_face: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W, D) value of the visible face at each pixel, from per-face values (B, F, D);
    0 for background."""
    B, C, H, W = face.shape
    D = per_face.shape[-1]
    if per_face.shape[1] == 0:  # no faces: background everywhere (and a zero gradient, as above)
        return per_face.new_zeros(B, C, H, W, D) + _graph_zero(per_face)
    out = per_face.gather(1, face.clamp(min=0).reshape(B, -1, 1).expand(-1, -1, D)).reshape(B, C, H, W, D)
    return torch.where((face >= 0)[..., None], out, 0.0)


def differentiable_bary(clip: torch.Tensor, meshes: Meshes, face: torch.Tensor) -> torch.Tensor:
    """Perspective-correct barycentric weights (B, C, H, W, 3) of each pixel centre in its visible
    face, recomputed in torch from the clip-space vertices (B, C, V, 4): differentiable with respect
    to the vertices and the cameras (the choice of face is not). 0 for background."""
    H, W = face.shape[-2:]
    corners = _gather_corners(clip, meshes, face)  # (B, C, H, W, 3, 4)
    w = torch.where((face >= 0)[..., None], corners[..., 3], 1.0)
    sx = (corners[..., 0] / w + 1) * (W / 2) - 0.5
    sy = (1 - corners[..., 1] / w) * (H / 2) - 0.5
    rows = torch.arange(H, device=face.device, dtype=clip.dtype).view(H, 1, 1)
    cols = torch.arange(W, device=face.device, dtype=clip.dtype).view(1, W, 1)

    def edge(a, b):  # edge function of corners a -> b at the pixel centre
        return (sx[..., b] - sx[..., a]) * (rows[..., 0] - sy[..., a]) - (sy[..., b] - sy[..., a]) * (
            cols[..., 0] - sx[..., a]
        )

    e = torch.stack([edge(1, 2), edge(2, 0), edge(0, 1)], dim=-1)
    area = e.sum(-1, keepdim=True)
    s = e / torch.where(area == 0, 1.0, area) / w
    total = s.sum(-1, keepdim=True)
    bary = s / torch.where(total == 0, 1.0, total)
    return torch.where((face >= 0)[..., None], bary, 0.0)


# ----------------------------------------------------------------------------------------------
# Normals


def _batch_face_cross(meshes: Meshes) -> torch.Tensor:
    """(B, F, 3) cross products (B - A) x (C - A) of every face, in the vertices' dtype, computed by
    :func:`pointmetrics.mesh.face_cross` (float64; exactly zero for degenerate faces and for the
    padding past ``face_lengths``); differentiable."""
    B, V, _ = meshes.verts.shape
    F = meshes.faces.shape[1]
    if V == 0:  # no vertices, so every face is padding (and has no corner to read): all zero
        return meshes.verts.new_zeros(B, F, 3) + _graph_zero(meshes.verts)
    offsets = V * torch.arange(B, device=meshes.faces.device).view(B, 1, 1)
    valid = valid_mask(meshes.face_lengths, F)
    flat_faces = torch.where(valid[..., None], meshes.faces + offsets, offsets).reshape(B * F, 3)
    cross = face_cross(meshes.verts.reshape(B * V, 3), flat_faces)  # padding faces (v, v, v): zero
    return cross.reshape(B, F, 3).to(meshes.verts.dtype)


def face_normals(meshes: Meshes) -> torch.Tensor:
    """(B, F, 3) unit face normals (right-hand rule), zero for degenerate faces; differentiable."""
    n = _batch_face_cross(meshes)
    length = n.norm(dim=-1, keepdim=True)
    return n / length.clamp(min=torch.finfo(n.dtype).tiny)


def vertex_normals(verts, faces, weighting: str = "area", face_lengths=None) -> torch.Tensor:
    """Unit vertex normals, differentiable with respect to the vertices.

    weighting="area": the sum of the adjacent faces' cross products (normals weighted by twice
    their area), normalised with |n| clamped at 1e-6: PyTorch3D's ``Meshes.verts_normals``, as ECON
    renders. weighting="angle": the adjacent unit face normals weighted by the corner angle at the
    vertex (Thürrner & Wüthrich 1998), then unit length: ``trimesh.Trimesh.vertex_normals``, as
    ICON renders (faces with a degenerate normal are left out, and sums of norm <= 1e-13 are left
    as they are, as trimesh does).
    Degenerate faces (repeated or collinear corners) contribute nothing.
    Unreferenced vertices get zero normals. Shape follows ``verts`` ((V, 3) or (B, V, 3)); computed
    in float32 at least (float64 for float64) and returned in the dtype of ``verts``.
    """
    if weighting not in ("area", "angle"):
        raise ValueError(f"weighting must be 'area' or 'angle', got {weighting!r}")
    meshes = as_meshes(verts, faces, face_lengths)
    normals = _vertex_normals(_in_compute_dtype(meshes), weighting).to(meshes.verts.dtype)
    return normals[0] if meshes.unbatched else normals


def _vertex_normals(meshes: Meshes, weighting: str) -> torch.Tensor:
    B, V, _ = meshes.verts.shape
    F = meshes.faces.shape[1]
    if V == 0:  # no vertex to give a normal (and index_add's backward cannot index an empty tensor)
        return meshes.verts.new_zeros(B, 0, 3) + _graph_zero(meshes.verts)
    tri = meshes.triangles()  # (B, F, 3, 3)
    valid = valid_mask(meshes.face_lengths, F).to(tri.dtype)
    cross = _batch_face_cross(meshes)  # exactly zero for degenerate faces, which then contribute nothing
    if weighting == "area":
        per_corner = (cross * valid[..., None]).unsqueeze(2).expand(B, F, 3, 3)
    else:
        length = cross.norm(dim=-1, keepdim=True)
        unit = cross / length.clamp(min=torch.finfo(cross.dtype).tiny)
        ok = valid * (length[..., 0] > 0).to(tri.dtype)
        angles = []
        tri64 = tri.double()  # a tiny face's squared sine and cosine underflow in float32
        for k in range(3):
            u = tri64[..., (k + 1) % 3, :] - tri64[..., k, :]
            v = tri64[..., (k + 2) % 3, :] - tri64[..., k, :]
            sine, cosine = torch.linalg.cross(u, v, dim=-1).norm(dim=-1), (u * v).sum(-1)
            # atan2's gradient divides by sine^2 + cosine^2: where that is 0 (a zero edge) it is NaN,
            # which the zero weight of such a face would not cancel (0 * NaN)
            corner = sine * sine + cosine * cosine > 0
            angle = torch.where(corner, torch.atan2(sine, torch.where(corner, cosine, 1.0)), 0.0)
            angles.append(angle.to(tri.dtype))
        weight = torch.stack(angles, dim=-1) * ok[..., None]  # (B, F, 3)
        per_corner = weight.unsqueeze(-1) * unit.unsqueeze(2)
    summed = torch.zeros(B, V, 3, dtype=tri.dtype, device=tri.device)
    flat = summed.reshape(B * V, 3).index_add(
        0, (meshes.faces + V * torch.arange(B, device=tri.device).view(B, 1, 1)).reshape(-1), per_corner.reshape(-1, 3)
    )
    summed = flat.reshape(B, V, 3)
    length = summed.norm(dim=-1, keepdim=True)
    if weighting == "area":
        return summed / length.clamp(min=1e-6)  # torch.nn.functional.normalize(eps=1e-6), as PyTorch3D
    # trimesh's unitize leaves vectors of norm <= 1e-13 (faces cancelling each other) as they are
    return torch.where(length > 1e-13, summed / length.clamp(min=1e-13), summed)


class NormalMaps(NamedTuple):
    """normals: (B, C, H, W, 3) unit normals of the visible surface, zero where ``mask`` is False;
    differentiable. mask: (B, C, H, W) bool, pixels showing the mesh. fragments: the raster."""

    normals: torch.Tensor
    mask: torch.Tensor
    fragments: Fragments


def render_normals(
    verts,
    faces,
    cameras: Cameras,
    image_size=512,
    normals: torch.Tensor | None = None,
    space: str = "view",
    shading: str = "smooth",
    weighting: str = "area",
    face_lengths=None,
) -> NormalMaps:
    """Normal maps of meshes in every camera view.

    shading="smooth" interpolates vertex normals (``normals`` (V, 3) / (B, V, 3), or computed with
    :func:`vertex_normals` and ``weighting``) with the pixel's barycentric weights and normalises
    the result; shading="flat" uses the visible face's normal. space="world" keeps world
    coordinates; space="view" rotates them into each camera's view frame (x right, y up, z towards
    the viewer), with the inverse transpose of the view matrix's linear part.
    Differentiable with respect to ``verts`` (through the normals and the barycentric weights) and
    ``normals``; the visibility of each face is not.

    Computed and returned in float32 for float16/bfloat16/float32 vertices, in float64 for float64.
    A mesh without faces gives a background-only image (mask False, face -1 everywhere).
    """
    _check_cameras(cameras)
    if space not in ("view", "world"):
        raise ValueError(f"space must be 'view' or 'world', got {space!r}")
    if shading not in ("smooth", "flat"):
        raise ValueError(f"shading must be 'smooth' or 'flat', got {shading!r}")
    size = checked_image_size(image_size)
    meshes = _in_compute_dtype(as_meshes(verts, faces, face_lengths))
    fragments, clip = _rasterize(meshes, cameras, size)
    face = fragments.face
    mask = face >= 0
    if shading == "flat":
        per_face = face_normals(meshes)  # (B, F, 3)
        n = _visible_face_values(per_face, face)
    else:
        if normals is None:
            per_vertex = _vertex_normals(meshes, weighting)
        else:
            per_vertex = normals[None] if meshes.unbatched and normals.ndim == 2 else normals
            if per_vertex.shape != meshes.verts.shape:
                raise ValueError(f"normals must have the shape of verts {tuple(meshes.verts.shape)}")
            per_vertex = per_vertex.to(meshes.verts.dtype)
        needs_grad = torch.is_grad_enabled() and meshes.verts.requires_grad
        bary = differentiable_bary(clip, meshes, face) if needs_grad else fragments.bary.to(per_vertex.dtype)
        n = (bary.unsqueeze(-1) * _gather_corners(per_vertex, meshes, face)).sum(-2)
    if space == "view":  # the inverse in float64 (the cameras' dtype): linalg.inv takes no half
        inverse_transpose = torch.linalg.inv(cameras.view[:, :3, :3]).transpose(1, 2)
        n = torch.einsum("cij,bchwj->bchwi", inverse_transpose.to(device=n.device, dtype=n.dtype), n)
    length = n.norm(dim=-1, keepdim=True)
    n = torch.where(mask[..., None] & (length > 0), n / length.clamp(min=torch.finfo(n.dtype).tiny), 0.0)
    result = NormalMaps(n, mask, fragments)
    if meshes.unbatched:
        return NormalMaps(n[0], mask[0], _unbatch(meshes, fragments))
    return result

