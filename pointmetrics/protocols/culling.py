"""Mesh culling to what a camera path saw, as the neural-SLAM evaluations do it.

Three variants, each transcribed from its reference (see :mod:`pointmetrics.protocols.slam` for
the repositories and commits). X = (x, y, z) is a vertex in OpenCV camera coordinates,
X = R^T (p - t) for a camera-to-world pose [R | t]; W x H is the image size.

``"nice-slam"`` (cvg/nice-slam ``src/tools/cull_mesh.py``; iMAP's strategy): a vertex is seen by a
camera when z - 1e-5 >= 0 and 0 < u < W, 0 < v < H (strict), where
u = (fx x + cx z) / (z - 1e-5), v = (fy y + cy z) / (z - 1e-5): the reference's projection
after its OpenGL flips, its 1e-5 included. A face is dropped when none of its three vertices is
seen by any camera, i.e. kept when at least one vertex is.

``"frustum"`` (JingwenWang95/neural_slam_eval ``cull_mesh.py`` without ``--remove_occlusion``):
z' = z + 1e-8, u = (fx x + cx z) / z', v = (fy y + cy z) / z', in the frustum when z' > 0 and
0 <= u <= W - 1, 0 <= v <= H - 1 (inclusive). A face is kept when one of its vertices is in a
frustum (the reference's ``th_obs = 0``).

``"occlusion"`` (the same script with ``--remove_occlusion``; the Neural-RGBD / GO-Surf strategy,
and with virtual cameras Co-SLAM's): in addition a vertex is observed by a camera when it is in
its frustum and z' < D[int(v), int(u)] + eps (eps = 0.03 m), D the camera's depth image (0 where
nothing was hit, so a vertex seen on an empty pixel is not observed). A face is kept when one of
its vertices is in a frustum of a real camera and one (perhaps another) is observed by any camera,
real or virtual: virtual cameras only add observations. D is either given (e.g. the sensor's depth
images) or rendered from the mesh being culled, as the reference does: with our z-buffer
rasteriser (:func:`pointmetrics.rasterize`), the dataset's intrinsics and poses, near 0.01 and far
10 m, and no back-face culling, which is the reference's two-sided render (pyrender renders the
mesh with each winding and keeps the nearer positive depth). Pixel (r, c) samples (u, v) =
(c + 0.5, r + 0.5), as pyrender's IntrinsicsCamera does. One difference: pyrender clips a triangle
that crosses the camera plane, our rasteriser skips it, so a large triangle reaching behind a
camera is missing from that camera's depth image (room meshes of SLAM datasets have small
triangles; the tests use a subdivided room).

Projections are computed in float64 (NICE-SLAM computes in float32 on the GPU, Co-SLAM in float64
with float32 poses), so a vertex within float32 rounding of a frustum boundary may be decided
differently; the tests' room has none. Memory: blocks of 8 cameras, O(V + 8 H W); the per-vertex
masks are accumulated as the references accumulate theirs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..raster import Cameras, rasterize
from .slam_io import CameraIntrinsics, opencv_to_opengl

__all__ = ["CULL_METHODS", "cull_mesh", "render_depth"]

CULL_METHODS = ("none", "nice-slam", "frustum", "occlusion")
NEAR, FAR = 0.01, 10.0  # Co-SLAM's render_depth_maps_doublesided(near=0.01, far=10.0)


def _camera_points(points: torch.Tensor, c2w: np.ndarray) -> torch.Tensor:
    """(V, 3) OpenCV camera coordinates R^T (p - t), float64."""
    c2w_t = torch.as_tensor(c2w, dtype=torch.float64, device=points.device)
    return (points - c2w_t[:3, 3]) @ c2w_t[:3, :3]


def _projection(k: CameraIntrinsics, near: float, far: float) -> torch.Tensor:
    """OpenGL view-to-clip matrix of a pinhole camera (pyrender's IntrinsicsCamera): pixel (r, c) of
    our rasteriser then samples u = c + 0.5, v = r + 0.5 of u = fx x / z + cx, v = fy y / z + cy."""
    p = torch.zeros(4, 4, dtype=torch.float64)
    p[0, 0], p[0, 2] = 2 * k.fx / k.width, 1 - 2 * k.cx / k.width
    p[1, 1], p[1, 2] = 2 * k.fy / k.height, 2 * k.cy / k.height - 1
    p[2, 2], p[2, 3] = (far + near) / (near - far), 2 * far * near / (near - far)
    p[3, 2] = -1.0
    return p


def render_depth(verts: torch.Tensor, faces: torch.Tensor, c2w: np.ndarray, intrinsics: CameraIntrinsics,
                 near: float = NEAR, far: float = FAR) -> torch.Tensor:
    """(C, H, W) float64 depth images (OpenCV z, metres; 0 where nothing is hit) of a mesh seen
    from camera-to-world poses ``c2w`` (C, 4, 4) in the OpenCV convention, two-sided, by
    :func:`pointmetrics.rasterize`. Cameras whose pose is not finite see nothing."""
    c2w = np.asarray(c2w, dtype=np.float64).reshape(-1, 4, 4)
    out = torch.zeros(len(c2w), intrinsics.height, intrinsics.width, dtype=torch.float64, device=verts.device)
    finite = np.isfinite(c2w).all(axis=(1, 2))
    if not finite.any() or len(faces) == 0:
        return out
    view = torch.linalg.inv(torch.as_tensor(opencv_to_opengl(c2w[finite]), dtype=torch.float64))
    cams = Cameras(view, _projection(intrinsics, near, far))
    ndc = rasterize(verts.double(), faces, cams, (intrinsics.height, intrinsics.width)).depth
    # NDC depth back to the view depth: z_ndc = ((f + n) d - 2 f n) / ((f - n) d)
    depth = 2 * far * near / ((far + near) - ndc * (far - near))
    out[torch.as_tensor(finite, device=verts.device)] = torch.where(torch.isfinite(ndc), depth, 0.0)
    return out


def _nice_slam_seen(cam: torch.Tensor, k: CameraIntrinsics) -> torch.Tensor:
    x, y, z = cam.unbind(1)
    denom = z - 1e-5
    u = (k.fx * x + k.cx * z) / denom
    v = (k.fy * y + k.cy * z) / denom
    return (denom >= 0) & (u > 0) & (u < k.width) & (v > 0) & (v < k.height)


def _frustum(cam: torch.Tensor, k: CameraIntrinsics) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    x, y, z = cam.unbind(1)
    pz = z + 1e-8
    u = (k.fx * x + k.cx * z) / pz
    v = (k.fy * y + k.cy * z) / pz
    inside = (u >= 0) & (u <= k.width - 1) & (v >= 0) & (v <= k.height - 1) & (pz > 0)
    return inside, u, v, pz


def _observed(inside, u, v, pz, depth: torch.Tensor, k: CameraIntrinsics, eps: float) -> torch.Tensor:
    # np.clip(...).astype(np.int32): truncation toward zero, the same as floor after the clip
    col = torch.nan_to_num(u, nan=0.0).clamp(0, k.width - 1).long()
    row = torch.nan_to_num(v, nan=0.0).clamp(0, k.height - 1).long()
    return inside & (pz < depth[row, col] + eps)


def cull_mesh(
    verts: torch.Tensor,
    faces: torch.Tensor,
    c2w: np.ndarray,
    intrinsics: CameraIntrinsics,
    method: str = "nice-slam",
    *,
    eps: float = 0.03,
    depth_maps: Sequence | torch.Tensor | None = None,
    virtual_c2w: np.ndarray | None = None,
    progress: Callable[[str], None] | None = None,
) -> torch.Tensor:
    """Boolean (F,) mask of the faces a culling ``method`` keeps (see the module docstring).

    Args:
        verts, faces: the mesh (V, 3), (F, 3) in the poses' world frame (metres).
        c2w: (N, 4, 4) camera-to-world poses, OpenCV convention (as Replica and ScanNet store them);
            poses that are not finite (ScanNet's lost frames) see nothing.
        intrinsics: the cameras' pinhole model and image size.
        method: "nice-slam", "frustum" or "occlusion" ("none" keeps every face).
        eps: "occlusion": the depth-test margin (Co-SLAM's 0.03 m).
        depth_maps: "occlusion": one (H, W) depth image per real camera then per virtual camera,
            metres, 0 for no depth; rendered from this mesh when None.
        virtual_c2w: "occlusion": extra (M, 4, 4) poses that only add observations (Co-SLAM).
        progress: called with a short description per camera block.
    """
    if method not in CULL_METHODS:
        raise ValueError(f"cull method must be one of {', '.join(CULL_METHODS)}, got {method!r}")
    faces = torch.as_tensor(faces).long()
    if method == "none":
        return torch.ones(len(faces), dtype=torch.bool, device=faces.device)
    points = torch.as_tensor(verts).double()
    c2w = np.asarray(c2w, dtype=np.float64).reshape(-1, 4, 4)
    real = len(c2w)
    if virtual_c2w is not None:
        if method != "occlusion":
            raise ValueError(f"virtual cameras only add observations to the 'occlusion' culling, not {method!r}")
        c2w = np.concatenate([c2w, np.asarray(virtual_c2w, dtype=np.float64).reshape(-1, 4, 4)])
    if depth_maps is not None and len(depth_maps) != len(c2w):
        raise ValueError(f"depth_maps: one depth image per camera is needed ({len(c2w)}), got {len(depth_maps)}")
    in_frustum = torch.zeros(len(points), dtype=torch.bool, device=points.device)
    observed = torch.zeros_like(in_frustum)
    block = 8  # cameras rendered together: bounded memory (block x H x W), fewer kernel launches
    for start in range(0, len(c2w), block):
        if progress is not None:
            progress(f"cull: cameras {start + 1}-{min(start + block, len(c2w))} of {len(c2w)}")
        poses = c2w[start:start + block]
        if method == "occlusion":
            if depth_maps is None:
                depths = render_depth(points, faces, poses, intrinsics)
            else:
                depths = [_depth_image(depth_maps[i], intrinsics, i, points.device)
                          for i in range(start, start + len(poses))]
        for j, pose in enumerate(poses):
            if not np.isfinite(pose).all():
                continue
            cam = _camera_points(points, pose)
            if method == "nice-slam":
                in_frustum |= _nice_slam_seen(cam, intrinsics)
                continue
            inside, u, v, pz = _frustum(cam, intrinsics)
            if start + j < real:  # virtual views do not count towards the frustum mask
                in_frustum |= inside
            if method == "occlusion":
                observed |= _observed(inside, u, v, pz, depths[j], intrinsics, eps)
    keep = in_frustum[faces].any(dim=1)
    if method == "occlusion":
        keep &= observed[faces].any(dim=1)
    return keep


def _depth_image(depth, k: CameraIntrinsics, index: int, device) -> torch.Tensor:
    d = torch.as_tensor(np.asarray(depth) if not isinstance(depth, torch.Tensor) else depth).double().to(device)
    if tuple(d.shape) != (k.height, k.width):
        raise ValueError(f"depth_maps[{index}]: shape {tuple(d.shape)} differs from the intrinsics' image size "
                         f"({k.height}, {k.width})")
    return torch.nan_to_num(d, nan=0.0)
