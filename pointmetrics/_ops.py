"""Loads the compiled library and registers, per op, its fake kernel (shapes for torch.compile
and meta tensors).

No op has an autograd formula: the kernels only search (which point, which triangle, which
partner), and the Python layer detaches their inputs and recomputes every differentiable value
(distances, closest points, transport costs) from what they found, in torch."""

from __future__ import annotations

import os
import re
import warnings

import torch

REBUILD = (
    "Rebuild it against this torch: `pip install --no-build-isolation -e .` in the source tree "
    "(`pip install --no-build-isolation --force-reinstall --no-deps .` for a non-editable install)."
)


def _release(version: str) -> tuple[int, ...]:
    """(major, minor, patch) of a torch version string such as '2.13.0+cu128' or '2.14.0.dev20260101'."""
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])


def _build_mismatch(info: dict, running: str, running_cuda: str | None) -> tuple[str, str] | None:
    """Compares the torch pointmetrics._C was compiled against (``info``, from _build_info.py) with
    the running one. Returns None when they match, ("warn", message) when only the patch release or
    the CUDA minor version differs, ("error", message) when the compiled library cannot work."""
    built, built_cuda = info.get("TORCH_VERSION"), info.get("TORCH_CUDA")
    if not built:
        return None
    names = f"pointmetrics._C was built with torch {built}, but torch {running} is running"
    if _release(built)[:2] != _release(running)[:2]:
        return "error", f"{names}. {REBUILD}"
    if info.get("WITH_CUDA") and running_cuda is None:
        return "error", f"{names}: its CUDA kernels need a CUDA build of torch. {REBUILD}"
    abi = info.get("CXX11_ABI")
    running_abi = getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", abi)
    if abi is not None and abi != running_abi:
        return "error", f"{names}, with a different C++ ABI (_GLIBCXX_USE_CXX11_ABI {abi} vs {running_abi}). {REBUILD}"
    if built_cuda and running_cuda and built_cuda.split(".")[0] != running_cuda.split(".")[0]:
        return "error", f"{names} (CUDA {built_cuda} vs {running_cuda}). {REBUILD}"
    if built != running or (built_cuda and running_cuda and built_cuda != running_cuda):
        cuda = f" (CUDA {built_cuda} vs {running_cuda})" if built_cuda != running_cuda else ""
        if not info.get("WITH_CUDA") and running_cuda:
            cuda += ", and has no CUDA kernels"
        return "warn", f"{names}{cuda}; it may still work. {REBUILD}"
    return None


def _load_extension() -> None:
    try:
        from . import _build_info

        info = {k: getattr(_build_info, k) for k in dir(_build_info) if k.isupper()}
    except ImportError:  # built before _build_info.py existed, or not built at all
        info = {}
    check = os.environ.get("POINTMETRICS_SKIP_VERSION_CHECK", "0") != "1"
    mismatch = _build_mismatch(info, torch.__version__, torch.version.cuda) if check else None
    if mismatch and mismatch[0] == "error":  # before loading: a mismatched library may not even fail cleanly
        raise ImportError(f"pointmetrics: {mismatch[1]} (POINTMETRICS_SKIP_VERSION_CHECK=1 skips this check)")
    if mismatch:
        warnings.warn(f"pointmetrics: {mismatch[1]}", RuntimeWarning, stacklevel=3)
    try:
        from . import _C  # noqa: F401  (importing registers torch.ops.pointmetrics.*)
    except (ImportError, OSError) as error:  # pragma: no cover - depends on how the package was installed
        text = str(error)
        if "undefined symbol" in text or "symbol not found" in text or "cannot open shared object" in text:
            if not info.get("TORCH_VERSION"):
                built = "probably built with another torch"
            elif info["TORCH_VERSION"] == torch.__version__:
                built = "it was built with this torch version, so the build is stale or incomplete"
            else:
                built = f"it was built with torch {info['TORCH_VERSION']} (CUDA {info.get('TORCH_CUDA')})"
            raise ImportError(
                f"pointmetrics: the compiled extension pointmetrics._C does not fit the running torch "
                f"{torch.__version__} (CUDA {torch.version.cuda}); {built}. {REBUILD} Original error: {text}"
            ) from error
        raise ImportError(
            "pointmetrics: the compiled extension pointmetrics._C is missing. If you are running from the "
            "source tree, build it in place with `pip install --no-build-isolation -e .` (or run from another "
            f"directory after `pip install --no-build-isolation .`). Original error: {text}"
        ) from error


_load_extension()

ops = torch.ops.pointmetrics

# Layout constants of the compiled library that Python code needs: their one home on this side.
# tests/test_constants.py checks each against its C++ source (torch.ops.pointmetrics_testing.constant).
LEAF_SIZE = 8  # csrc/spatial/point_tree.h kLeafSize: points (MeshBVH: triangles) per kd-tree leaf
FRAME_BYTES = 128  # csrc/mesh/triangle.h kFrameBytes: one TriangleFrame, a row of triangle_frames' uint8 output
BOX4_FLOATS = 24  # csrc/mesh/mesh_tree.h kBox4: four boxes side by side (x-, y-, z-minima of the four, then maxima)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _knn_fake(x, y, x_lengths, y_lengths, K, norm):
    shape = (x.shape[0], x.shape[1], K)
    return x.new_empty(shape, dtype=_compute_dtype(x.dtype)), x.new_empty(shape, dtype=torch.int64)


torch.library.register_fake("pointmetrics::knn")(_knn_fake)


@torch.library.register_fake("pointmetrics::kd_order")
def _kd_order_fake(points, lengths):
    leaves = 1  # as csrc/spatial/point_tree_build_cpu.cpp tree_leaves: a power of two
    while leaves * LEAF_SIZE < points.shape[1]:
        leaves *= 2
    return points.new_empty((points.shape[0], leaves * LEAF_SIZE), dtype=torch.int64)


@torch.library.register_fake("pointmetrics::triangle_frames")
def _triangle_frames_fake(tris, face_lengths, faces):
    return tris.new_empty((tris.shape[0], faces, FRAME_BYTES), dtype=torch.uint8)


@torch.library.register_fake("pointmetrics::closest_triangle")
def _closest_triangle_fake(points, point_lengths, tris, face, lo, hi, face_lengths, frames, slot_boxes, quads):
    B, N, _ = points.shape
    return (
        points.new_empty((B, N)),
        points.new_empty((B, N), dtype=torch.int64),
        points.new_empty((B, N, 3)),
        points.new_empty((B, N, 3)),
    )


@torch.library.register_fake("pointmetrics::auction_assignment")
def _auction_fake(x, y, x_lengths, y_lengths, p, rel_tol, max_rounds):
    """assignment (B, N); per problem cost, lower_bound, eps (float64), rounds, phases (int64), complete."""
    def per_problem(dtype):
        return x.new_empty(x.shape[:1], dtype=dtype)

    f64, i64 = torch.float64, torch.int64
    return (x.new_empty(x.shape[:2], dtype=i64), per_problem(f64), per_problem(f64), per_problem(f64),
            per_problem(i64), per_problem(i64), per_problem(torch.bool))


@torch.library.register_fake("pointmetrics::greedy_radius_keep")
def _greedy_radius_keep_fake(points, radius):
    return points.new_empty(points.shape[:1], dtype=torch.bool)


@torch.library.register_fake("pointmetrics::winding_number")
def _winding_number_fake(
    points, point_lengths, tris, face, lo, hi, face_lengths, centre, normal_sum, moment, radius, beta
):
    return points.new_empty(points.shape[:2])


@torch.library.register_fake("pointmetrics::rasterize_triangles")
def _rasterize_triangles_fake(clip, faces, face_lengths, height, width):
    B, C = clip.shape[:2]
    return (
        clip.new_empty((B, C, height, width), dtype=torch.int64),
        clip.new_empty((B, C, height, width, 3)),
        clip.new_empty((B, C, height, width)),
    )


torch.library.register_fake("pointmetrics_testing::knn_portable")(_knn_fake)
torch.library.register_fake("pointmetrics_testing::closest_triangle_portable")(_closest_triangle_fake)


@torch.library.register_fake("pointmetrics_testing::greedy_radius_keep_portable")
def _greedy_radius_keep_portable_fake(points, radius):
    return _greedy_radius_keep_fake(points, radius), points.new_empty((), dtype=torch.int64)
