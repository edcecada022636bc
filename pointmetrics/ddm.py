"""DirDist / DDM: directional distance fields compared at random queries (Ren et al., arXiv 2401.09736,
T-PAMI 2025; reference rsy6318/DDM).

The directional distance field of a model X at a query q is DDF_X(q) = [h, f] in R^4, with
h = q - q_hat (q_hat the closest point of X) and f = |h + 1e-10| (the reference's form). For a
mesh q_hat is the exact closest point; for a point cloud h is a K-nearest-neighbour average,

    h = sum_k w_k (q - p_k),  w_k = (1 / (d_k + 1e-8)) / sum_k' (1 / (d_k' + 1e-8))  (detached),

with d_k the squared distances to the K = 5 nearest points. The distance compares the two fields
at queries scattered around the target (and at the source itself); all queries are detached, and
gradients reach the source (and the target, where it requires grad) through h and f.

Every field and mean is computed in float32 (float64 for float64 inputs): float16 has no room for
the 1e-8 and 1e-10 offsets above, nor for sums over thousands of queries. Results have the
promoted dtype of the two inputs (``torch.promote_types``: float16 with bfloat16 gives float32,
float32 with float64 gives float64), with one exception: a float16/bfloat16 result that is finite
in float32 but would overflow the half dtype (float16 beyond 65504) is returned in float32.
"""

from __future__ import annotations

import torch

from . import _checks
from ._reduce import compute_dtype, valid_mask
from .bvh import MeshBVH
from .knn import gather_neighbours, knn_core
from .mesh import check_mesh, sample_points_on_mesh

__all__ = ["ddm_m2m", "ddm_m2p", "ddm_p2p"]


def _result(value: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
    """``value`` (computed in float32/float64) in the promoted dtype of ``inputs``; kept in float32
    when that dtype is float16/bfloat16 and the cast would overflow a finite value."""
    dtype = inputs[0].dtype
    for t in inputs[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    cast = value.to(dtype)
    if dtype in (torch.float16, torch.bfloat16):
        cast_finite, value_finite = torch.stack([torch.isfinite(cast).all(), torch.isfinite(value).all()]).tolist()
        if value_finite and not cast_finite:
            return value
    return cast


def _ddf_points(queries: torch.Tensor, cloud: torch.Tensor, lengths: torch.Tensor, K: int) -> torch.Tensor:
    """(B, Q, 4) DDF of clouds (B, N, 3) at queries (B, Q, 3), every query valid."""
    every = torch.full((queries.shape[0],), queries.shape[1], dtype=torch.int64, device=queries.device)
    dists, idx = knn_core(queries, cloud, every, lengths, K, 2)
    inverse = 1.0 / (dists.detach() + 1e-8)
    weights = inverse / inverse.sum(-1, keepdim=True)
    h = (weights.unsqueeze(-1) * (queries.unsqueeze(2) - gather_neighbours(cloud, idx))).sum(2)
    return torch.cat([h, (h + 1e-10).norm(dim=-1, keepdim=True)], dim=-1)


def _ddf_mesh(queries: torch.Tensor, verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(Q, 4) DDF of a mesh at queries (Q, 3), from exact closest points (differentiable in verts)."""
    closest = MeshBVH(verts, faces).closest_points(queries).points
    h = queries - closest
    return torch.cat([h, (h + 1e-10).norm(dim=-1, keepdim=True)], dim=-1)


def _check_std(std) -> None:
    if not (isinstance(std, (int, float)) and std >= 0):
        raise ValueError(f"std must be a non-negative number, got {std!r}")


def _noise(shape, like: torch.Tensor, std: float, generator: torch.Generator | None) -> torch.Tensor:
    """Gaussian noise of ``like``'s dtype and device, drawn on the generator's device (a CPU
    generator works with CUDA data)."""
    device = like.device if generator is None else generator.device
    return (torch.randn(shape, generator=generator, dtype=like.dtype, device=device) * std).to(like.device)


def ddm_p2p(
    source,
    target,
    source_lengths: torch.Tensor | None = None,
    target_lengths: torch.Tensor | None = None,
    K: int = 5,
    repeat: int = 10,
    std: float = 0.05,
    beta: float = 3.0,
    weighted: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Point-to-point DirDist between ``source`` S and ``target`` T (DDM_P2P).

    Queries: ``repeat`` noisy copies of every target point (Gaussian, std ``std``) plus the source
    points, detached. Per query e = |f_S - f_T| + |h_S - h_T|_1 and weight w = exp(-beta e)
    (detached; w = 1 when ``weighted`` is False). Loss = mean over queries of w e, averaged over
    the batch (the reference's sum / (B |Q|) for equal sizes). Asymmetric: queries come from T.
    The result has the promoted dtype of ``source`` and ``target`` (float32 if a half result would
    overflow; see the module docstring).

    ``source``/``target``: (B, N, 3) / (B, M, 3) with optional lengths, single clouds or lists.
    Each cloud needs at least K points. Pass a seeded ``generator`` for reproducible queries.
    """
    _checks.check_positive_int(K, "K")
    _checks.check_positive_int(repeat, "repeat")
    _check_std(std)
    if not beta >= 0:
        raise ValueError(f"beta must be non-negative, got {beta!r}")
    checks = _checks.ValueChecks()
    pair = _checks.cloud_pair(source, target, source_lengths, target_lengths, checks, ("source", "target"))
    sb, sl, tb, tl, unbatched = pair.x, pair.x_lengths, pair.y, pair.y_lengths, pair.unbatched
    checks.add((torch.minimum(sl, tl) < K).any(), f"every source and target cloud needs at least K={K} points")
    checks.run()
    inputs, compute = (sb, tb), compute_dtype(sb.dtype, tb.dtype)
    sb, tb = sb.to(compute), tb.to(compute)
    B, M, D = tb.shape
    with torch.no_grad():
        around = tb.unsqueeze(2) + _noise((B, M, repeat, D), tb, std, generator)
        queries = torch.cat([around.reshape(B, M * repeat, D), sb.to(tb.dtype)], dim=1)
        target_valid = valid_mask(tl, M).repeat_interleave(repeat, dim=1)
        source_valid = valid_mask(sl, sb.shape[1])
        valid = torch.cat([target_valid, source_valid], dim=1)
        queries = torch.where(valid.unsqueeze(-1), queries, 0.0)  # padding may hold anything
    ddf_s = _ddf_points(queries, sb, sl, K)
    ddf_t = _ddf_points(queries, tb, tl, K)
    error = (ddf_s[..., 3] - ddf_t[..., 3]).abs() + (ddf_s[..., :3] - ddf_t[..., :3]).abs().sum(-1)
    weight = torch.exp(-beta * error.detach()) if weighted else torch.ones_like(error)
    weight = weight * valid
    per_pair = (weight * error).sum(1) / valid.sum(1)
    return _result(per_pair[0] if unbatched else per_pair.mean(), *inputs)


def _single_mesh(verts, faces, vname, fname) -> torch.Tensor:
    """Validates one mesh with faces; returns its faces as int64 (from any integer dtype)."""
    faces = check_mesh(verts, faces, vname, fname)
    if faces.shape[0] == 0:
        raise ValueError(f"{fname} is empty: DirDist needs a mesh with faces")
    return faces


def _centroids(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    return verts.detach()[faces].mean(1)


def ddm_m2p(
    verts: torch.Tensor,
    faces: torch.Tensor,
    points: torch.Tensor,
    K: int = 5,
    repeat: int = 3,
    std: float = 0.05,
    beta: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mesh-to-point DirDist between a source mesh (``verts``, ``faces``) and target ``points`` (DDM_M2P).

    Queries: ``repeat`` noisy copies of every target point plus the source's face centroids,
    detached. DDF of the mesh from exact closest points, of the points by K-NN. Loss = mean over
    queries of w e with e = sum of the 4 absolute differences and w = exp(-beta e) (detached;
    beta = 0 by default). One mesh (V, 3) + (F, 3) and one cloud (N, 3), N >= K.
    """
    faces = _single_mesh(verts, faces, "verts", "faces")
    _checks.check_positive_int(K, "K")
    _checks.check_positive_int(repeat, "repeat")
    _check_std(std)
    pb, pl, unbatched = _checks.clouds(points, None, "points")
    if not unbatched or pb.shape[-1] != 3:
        raise ValueError(f"points must be one (N, 3) cloud, got shape {tuple(pb.shape)}")
    if pb.shape[1] < K:
        raise ValueError(f"points has {pb.shape[1]} points, fewer than K={K}")
    compute = compute_dtype(verts.dtype, pb.dtype)
    mesh_verts, target = verts.to(compute), pb[0].to(compute)
    with torch.no_grad():
        around = target.unsqueeze(1) + _noise((target.shape[0], repeat, 3), target, std, generator)
        queries = torch.cat([around.reshape(-1, 3), _centroids(mesh_verts, faces)])
    ddf_s = _ddf_mesh(queries, mesh_verts, faces).to(compute)
    ddf_t = _ddf_points(queries[None], target[None], pl, K)[0]
    error = (ddf_s - ddf_t).abs().sum(-1)
    return _result((error * torch.exp(-beta * error.detach())).mean(), verts, pb)


def ddm_m2m(
    src_verts: torch.Tensor,
    src_faces: torch.Tensor,
    tgt_verts: torch.Tensor,
    tgt_faces: torch.Tensor,
    num_queries: int = 20_000,
    std: float = 0.05,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mesh-to-mesh DirDist (DDM_M2M).

    Queries: ``num_queries`` area-weighted samples on the target plus Gaussian noise (std ``std``),
    and the source's face centroids, detached. Both DDFs from exact closest points. Loss =
    4 mean |DDF_S - DDF_T| over queries and the 4 components (the reference's scaling). One mesh
    each: (V, 3) + (F, 3).
    """
    src_faces = _single_mesh(src_verts, src_faces, "src_verts", "src_faces")
    tgt_faces = _single_mesh(tgt_verts, tgt_faces, "tgt_verts", "tgt_faces")
    _checks.check_positive_int(num_queries, "num_queries")
    _check_std(std)
    compute = compute_dtype(src_verts.dtype, tgt_verts.dtype)
    src, tgt = src_verts.to(compute), tgt_verts.to(compute)
    with torch.no_grad():
        on_target = sample_points_on_mesh(
            tgt.detach(), tgt_faces, num_queries, generator=generator, names=("tgt_verts", "tgt_faces")
        ).points
        around = on_target + _noise(on_target.shape, on_target, std, generator)
        queries = torch.cat([around, _centroids(src, src_faces)])
    ddf_s = _ddf_mesh(queries, src, src_faces).to(compute)
    ddf_t = _ddf_mesh(queries, tgt, tgt_faces).to(compute)
    return _result(4 * (ddf_s - ddf_t).abs().mean(), src_verts, tgt_verts)
