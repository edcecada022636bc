"""Camera paths and intrinsics of indoor RGB-D datasets, as NICE-SLAM and Co-SLAM read them.

Replica (NICE-SLAM's copy, ``Datasets/Replica/<scene>``): ``traj.txt``, one camera-to-world
4 x 4 matrix per line (16 numbers, row-major); depth ``results/depth%06d.png`` (uint16, metres x
6553.5). The intrinsics are not in the data but in NICE-SLAM's ``configs/Replica/replica.yaml``:
H 680, W 1200, fx = fy = 600, cx 599.5, cy 339.5 (:data:`REPLICA_INTRINSICS`).

ScanNet (``scans/<scene>`` as exported by the ScanNet reader): ``pose/<i>.txt``, one 4 x 4
camera-to-world matrix per file (4 rows of 4 numbers), sorted by the integer ``i``;
``intrinsic/intrinsic_depth.txt``, a 4 x 4 matrix whose upper-left 3 x 3 is K; depth
``depth/<i>.png`` (uint16, millimetres). The depth images are 640 x 480. Frames the ScanNet
tracker lost have poses of ``-inf``: they are kept in place (the count is reported) and see
nothing, as in the references, where every comparison with NaN is false.

Convention: both datasets store OpenCV camera-to-world poses (camera x right, y down, z
forward). NICE-SLAM's and Co-SLAM's loaders flip the y and z columns (``c2w[:3, 1] *= -1;
c2w[:3, 2] *= -1``) to OpenGL's (y up, z backward), and their culling code flips them back (Co-SLAM)
or negates x and the depth (NICE-SLAM), so that the projection is OpenCV's pinhole
``u = fx X / Z + cx, v = fy Y / Z + cy`` in the stored frame. Poses here stay in the stored
OpenCV convention; :func:`opencv_to_opengl` applies the loaders' flip where a caller has OpenGL
poses.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass

import numpy as np

__all__ = ["CameraIntrinsics", "REPLICA_INTRINSICS", "SCANNET_INTRINSICS", "RgbdSequence", "load_replica",
           "load_scannet", "load_pose_folder", "load_trajectory", "opencv_to_opengl", "read_depth_png"]


@dataclass(frozen=True)
class CameraIntrinsics:
    """A pinhole camera: focal lengths and principal point in pixels, image height and width.

    A pixel (row r, column c) covers u in [c, c + 1), v in [r, r + 1): its centre is (c + 0.5,
    r + 0.5), as in pyrender's IntrinsicsCamera, which Co-SLAM renders with.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    height: int
    width: int

    def __post_init__(self):
        for name in ("fx", "fy", "cx", "cy"):
            value = getattr(self, name)
            if not np.isfinite(value):
                raise ValueError(f"intrinsics: {name} must be finite, got {value}")
        if not (self.fx > 0 and self.fy > 0):
            raise ValueError(f"intrinsics: fx and fy must be positive, got {self.fx}, {self.fy}")
        if not (int(self.height) >= 1 and int(self.width) >= 1):
            raise ValueError(f"intrinsics: image size must be positive, got {self.height} x {self.width}")

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


# NICE-SLAM configs/Replica/replica.yaml and configs/ScanNet/scannet.yaml (cam:), also Co-SLAM's.
REPLICA_INTRINSICS = CameraIntrinsics(600.0, 600.0, 599.5, 339.5, 680, 1200)
SCANNET_INTRINSICS = CameraIntrinsics(577.590698, 578.729797, 318.905426, 242.683609, 480, 640)
REPLICA_DEPTH_SCALE = 6553.5
SCANNET_DEPTH_SCALE = 1000.0


@dataclass
class RgbdSequence:
    """Camera-to-world poses ``c2w`` (N, 4, 4) float64, OpenCV convention, the intrinsics, the
    depth image files (one per pose, or empty) with their scale (stored value / scale = metres),
    and ``lost``: the number of poses that are not finite (tracking failures)."""

    c2w: np.ndarray
    intrinsics: CameraIntrinsics
    depth_files: list
    depth_scale: float
    lost: int = 0


def opencv_to_opengl(c2w: np.ndarray) -> np.ndarray:
    """The loaders' flip ``c2w[:3, 1] *= -1; c2w[:3, 2] *= -1`` (its own inverse)."""
    out = np.array(c2w, dtype=np.float64, copy=True)
    out[..., :3, 1] *= -1
    out[..., :3, 2] *= -1
    return out


def _matrix(values: list[str], where: str) -> np.ndarray:
    if len(values) != 16:
        raise ValueError(f"{where}: a pose needs 16 numbers (a 4 x 4 matrix), found {len(values)}")
    try:
        m = np.array([float(v) for v in values], dtype=np.float64).reshape(4, 4)
    except ValueError as error:
        raise ValueError(f"{where}: a pose holds a value that is not a number ({error})") from None
    if np.isfinite(m).all() and not np.allclose(m[3], [0, 0, 0, 1], atol=1e-6):
        raise ValueError(f"{where}: the last row of a pose must be 0 0 0 1, got {' '.join(map(str, m[3]))}")
    if np.isnan(m).any() and not np.isinf(m).any():
        raise ValueError(f"{where}: a pose holds NaN")
    return m


def _count_lost(c2w: np.ndarray) -> int:
    return int((~np.isfinite(c2w).all(axis=(1, 2))).sum()) if len(c2w) else 0


def load_trajectory(path: str | os.PathLike) -> np.ndarray:
    """Poses of a Replica ``traj.txt``: (N, 4, 4) float64, one row-major matrix per non-empty line."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: trajectory file not found")
    poses = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                poses.append(_matrix(line.split(), f"{path} line {number}"))
    if not poses:
        raise ValueError(f"{path}: the trajectory holds no pose")
    return np.stack(poses)


def _numbered(folder: str, pattern: str, what: str) -> list[str]:
    paths = glob.glob(os.path.join(folder, pattern))
    try:  # the references sort by the integer file name, not lexically (10.txt after 9.txt)
        return sorted(paths, key=lambda p: int(os.path.splitext(os.path.basename(p))[0]))
    except ValueError:
        bad = next(p for p in paths if not os.path.splitext(os.path.basename(p))[0].isdigit())
        raise ValueError(f"{bad}: {what} files must be named by their frame number (0.txt, 1.txt, ...)") from None


def load_pose_folder(folder: str | os.PathLike) -> np.ndarray:
    """Poses of a folder of ``<i>.txt`` 4 x 4 matrices (ScanNet ``pose/``, Co-SLAM's
    ``virtual_cameras/``), sorted by ``i``: (N, 4, 4) float64, OpenCV convention."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: pose folder not found")
    paths = _numbered(folder, "*.txt", "pose")
    if not paths:
        raise ValueError(f"{folder}: holds no pose file (<frame>.txt)")
    poses = []
    for path in paths:
        with open(path) as f:
            poses.append(_matrix(f.read().split(), path))
    return np.stack(poses)


def _scannet_intrinsics(path: str, height: int, width: int) -> CameraIntrinsics:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: ScanNet intrinsics file not found")
    with open(path) as f:
        values = f.read().split()
    try:
        m = np.array([float(v) for v in values], dtype=np.float64)
    except ValueError:
        raise ValueError(f"{path}: the intrinsics must be numbers") from None
    if m.size != 16:
        raise ValueError(f"{path}: the intrinsics must be a 4 x 4 matrix, found {m.size} numbers")
    m = m.reshape(4, 4)
    return CameraIntrinsics(m[0, 0], m[1, 1], m[0, 2], m[1, 2], height, width)


def read_depth_png(path: str | os.PathLike, scale: float) -> np.ndarray:
    """A uint16 depth PNG in metres (value / scale; 0 stays 0, no depth), float64 (H, W)."""
    from PIL import Image

    path = os.fspath(path)
    try:
        with Image.open(path) as image:
            depth = np.asarray(image, dtype=np.float64)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: cannot be read as a depth image ({error})") from None
    if depth.ndim != 2:
        raise ValueError(f"{path}: a depth image must have one channel, got shape {depth.shape}")
    return depth / scale


def load_replica(root: str | os.PathLike, intrinsics: CameraIntrinsics | None = None) -> RgbdSequence:
    """A Replica sequence of NICE-SLAM's layout: ``root/traj.txt`` and ``root/results/depth*.png``."""
    root = os.fspath(root)
    c2w = load_trajectory(os.path.join(root, "traj.txt"))
    depth = sorted(glob.glob(os.path.join(root, "results", "depth*.png")))
    return RgbdSequence(c2w, intrinsics or REPLICA_INTRINSICS, depth, REPLICA_DEPTH_SCALE, _count_lost(c2w))


def load_scannet(root: str | os.PathLike, intrinsics: CameraIntrinsics | None = None) -> RgbdSequence:
    """A ScanNet scene: ``root/pose/<i>.txt``, ``root/intrinsic/intrinsic_depth.txt`` and
    ``root/depth/<i>.png`` (640 x 480, or the size of the first depth image)."""
    root = os.fspath(root)
    c2w = load_pose_folder(os.path.join(root, "pose"))
    depth_dir = os.path.join(root, "depth")
    depth = _numbered(depth_dir, "*.png", "depth") if os.path.isdir(depth_dir) else []
    if intrinsics is None:
        height, width = SCANNET_INTRINSICS.height, SCANNET_INTRINSICS.width
        if depth:
            height, width = read_depth_png(depth[0], 1.0).shape
        intrinsics = _scannet_intrinsics(os.path.join(root, "intrinsic", "intrinsic_depth.txt"), height, width)
    return RgbdSequence(c2w, intrinsics, depth, SCANNET_DEPTH_SCALE, _count_lost(c2w))
