"""The CAPE / ICON clothed-human protocol: Chamfer, P2S and normal-map error.

Both published generations are implemented, selected by ``backend``; record it with every number:

* ``"icon2022"`` — ICON (CVPR'22, ``YuliangXiu/ICON`` ``lib/dataset/Evaluator.py`` at commit
  cf46a6b6ff5a0073268db9e27a259ae2de41bc59): 1000 samples
  per mesh by ``trimesh.sample.sample_surface_even`` (rejection sampling: may give fewer), exact
  point-to-triangle distances; normals rendered by PIFu's OpenGL renderer: orthographic over
  [-1, 1]^3, 512 x 512, the model turned about +y by 0, 180, 90 and 270 degrees, colour
  (normalize(R n) + 1) / 2 from interpolated trimesh (angle-weighted) vertex normals, white
  background.
* ``"econ"`` — ECON (``YuliangXiu/ECON`` ``lib/dataset/Evaluator.py`` at commit
  d8f4e8b7171e30868acd94a1d1f6fcc1238e3e32, PyTorch3D): 1000
  area-weighted samples per mesh, PyTorch3D's point-to-triangle distance with its absolute
  ``min_triangle_area=5e-3``; normals from four orthographic cameras at (0, 0, 100), (100, 0, 0),
  (0, 0, -100), (-100, 0, 0) looking at the origin, colour (n + 1) / 2 from interpolated world-space
  PyTorch3D (area-weighted) vertex normals, black background, then every pixel mapped to [-1, 1],
  renormalised and mapped back. ECON blends the 30 nearest faces softly (sigma = 1e-4, gamma tiny);
  the hard rasteriser here takes only the front face. The two differ at silhouette and crease
  pixels only, where the soft blend mixes a fraction of a pixel's colours.

Views are orthographic, so as in OpenGL a surface outside the [-1, 1] depth range of ICON's
cameras is clipped. The four views are summed, so the sign convention of the rotation (which of
90 and 270 degrees shows the left side) does not change any number.

Meshes must already be in the evaluation frame: the normalised [-1, 1] space in which ICON and
ECON compare (the scan projected by its calibration with y negated, the reconstruction mapped from
its voxel grid). Distances are multiplied by 100 and reported as "cm", as the papers do. A mesh
reaching outside the cameras' view volume (e.g. a body in metres, 1.8 high with its feet at 0)
would be rendered cropped and give a meaningless Normal number, so it raises ValueError unless
``allow_clipping=True`` asks for the reference renderers' clipping.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from .. import _checks, io
from ..bvh import MeshBVH
from ..compat.pytorch3d import pytorch3d_distance_mesh
from ..mesh import check_mesh, face_areas_normals, sample_points_on_mesh
from ..png import save_normal_pngs
from ..raster import Cameras, checked_image_size, look_at, render_normals, rotation_y
from .card import MetricCard

BACKENDS = ("icon2022", "econ")
ICON_VIEWS = (0.0, 180.0, 90.0, 270.0)  # model rotations about +y, in ICON's order
ECON_VIEWS = (0.0, 90.0, 180.0, 270.0)  # camera positions about +y: eyes at +z, +x, -z, -x
PYTORCH3D_MIN_TRIANGLE_AREA = 5e-3  # the absolute threshold ECON passes to PyTorch3D
# ECON's background: black, mapped to [-1, 1] and renormalised like every pixel, then back to [0, 1].
_ECON_BACKGROUND = (1.0 - 1.0 / math.sqrt(3.0)) / 2.0
REFERENCES = {"icon2022": "YuliangXiu/ICON lib/dataset/Evaluator.py@cf46a6b6ff5a0073268db9e27a259ae2de41bc59",
              "econ": "YuliangXiu/ECON lib/dataset/Evaluator.py@d8f4e8b7171e30868acd94a1d1f6fcc1238e3e32"}


def _as_vf(mesh, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(verts, faces) tensors from a (verts, faces) pair or an object with .vertices and .faces."""
    if isinstance(mesh, (tuple, list)) and len(mesh) == 2:
        verts, faces = mesh
    elif hasattr(mesh, "vertices") and hasattr(mesh, "faces"):
        verts, faces = mesh.vertices, mesh.faces
    else:
        raise TypeError(f"{name} must be a (verts, faces) pair or a mesh with .vertices and .faces")
    if faces is None:
        raise ValueError(f"{name} has no faces: the human protocol needs meshes")
    verts = verts if isinstance(verts, torch.Tensor) else torch.as_tensor(np.asarray(verts, dtype=np.float64))
    faces = faces if isinstance(faces, torch.Tensor) else torch.as_tensor(np.asarray(faces, dtype=np.int64))
    check_mesh(verts, faces, f"{name} vertices", f"{name} faces")
    return verts, faces.long()


def _check_backend(backend: str) -> None:
    _checks.check_choice(backend, BACKENDS, "backend")


def check_evaluation_frame(verts: torch.Tensor, faces: torch.Tensor, backend: str = "icon2022",
                           views: Sequence[float] | None = None, name: str = "mesh") -> None:
    """Raises ValueError naming ``name`` if the mesh reaches outside the view volume of the
    protocol's orthographic cameras, where it would be clipped (cropped normal maps, a wrong
    Normal number): the mesh is then not in the normalised [-1, 1] evaluation frame."""
    if faces.shape[0] == 0:
        return
    used = verts[faces.reshape(-1).unique()].detach().double().cpu()
    clip = human_cameras(backend, views).clip(used[None])[0]  # (C, V, 4); orthographic: w = 1
    ndc = clip[..., :3] / clip[..., 3:]
    if float(ndc.abs().max()) <= 1.0 + 1e-6:
        return
    lo = ", ".join(f"{x:.3g}" for x in used.amin(0).tolist())
    hi = ", ".join(f"{x:.3g}" for x in used.amax(0).tolist())
    raise ValueError(
        f"{name}: the mesh is not in the normalised [-1, 1] evaluation frame: its bounding box ({lo}) to ({hi}) "
        f"reaches outside the view volume of the {backend} orthographic cameras, so its normal maps would be "
        "cropped. The CAPE protocol expects meshes already normalised as ICON/ECON evaluate (a body in metres "
        "must be centred and scaled into [-1, 1]); allow_clipping=True (--allow-clipping) renders it clipped anyway"
    )


def check_positive_area(verts: torch.Tensor, faces: torch.Tensor, name: str = "mesh") -> None:
    """Raises ValueError naming ``name`` if no face has a positive area: there is no surface to
    sample or to render (the same rule for both backends and for ``pointmetrics score``)."""
    if faces.shape[0] and not bool((face_areas_normals(verts.detach().double(), faces)[0] > 0).any()):
        raise ValueError(f"{name}: the mesh has no face with positive area (all {faces.shape[0]} faces are degenerate)")


def human_cameras(backend: str = "icon2022", views: Sequence[float] | None = None) -> Cameras:
    """The protocol's cameras: angles in degrees about +y (defaults: ICON_VIEWS / ECON_VIEWS).

    icon2022 turns the model by each angle and looks down -z with the identity orthographic
    projection (z flipped); econ places the eye at 100 (sin a, 0, cos a) looking at the origin
    with +y up and an orthographic projection of extent [-1, 1]."""
    _check_backend(backend)
    views = list(ICON_VIEWS if backend == "icon2022" else ECON_VIEWS) if views is None else list(views)
    if not views or not all(math.isfinite(float(a)) for a in views):
        raise ValueError(f"views must be a non-empty sequence of finite angles in degrees, got {views!r}")
    if backend == "icon2022":
        return Cameras.orthographic(rotation_y(views))
    a = torch.tensor(views, dtype=torch.float64) * (math.pi / 180.0)
    eyes = 100.0 * torch.stack([torch.sin(a), torch.zeros_like(a), torch.cos(a)], dim=1)
    return Cameras.orthographic(look_at(eyes), near=0.0, far=200.0)


def normal_images(verts, faces, backend: str = "icon2022", views=None, image_size=512) -> torch.Tensor:
    """(C, H, W, 3) normal images in [0, 1] of one mesh, rendered as ``backend`` does (see the
    module docstring); differentiable with respect to ``verts``."""
    _check_backend(backend)
    cameras = human_cameras(backend, views)
    if backend == "icon2022":
        maps = render_normals(verts, faces, cameras, image_size, space="view", weighting="angle")
        return torch.where(maps.mask[..., None], (maps.normals + 1) / 2, 1.0)
    maps = render_normals(verts, faces, cameras, image_size, space="world", weighting="area")
    return torch.where(maps.mask[..., None], (maps.normals + 1) / 2, _ECON_BACKGROUND)


class NormalMapError(NamedTuple):
    """error: the protocol's number, the sum over views of the per-view mean over all pixels of the
    squared RGB difference (0-dim tensor, differentiable w.r.t. the predicted vertices).
    per_view: (C,) the per-view means. pred_images, gt_images: (C, H, W, 3) in [0, 1].
    error_images: (C, H, W) per-pixel squared differences. files: PNGs written."""

    error: torch.Tensor
    per_view: torch.Tensor
    pred_images: torch.Tensor
    gt_images: torch.Tensor
    error_images: torch.Tensor
    files: list


def normal_map_error(
    pred,
    gt,
    backend: str = "icon2022",
    views: Sequence[float] | None = None,
    image_size=512,
    save_dir: str | os.PathLike | None = None,
    allow_clipping: bool = False,
) -> NormalMapError:
    """Normal-map error between two meshes, as ICON-2022 or ECON report "Normal".

    For each view v: E_v = mean over all H x W pixels of sum_rgb (I_pred - I_gt)^2, with no mask
    (a silhouette mismatch counts; background against background is 0). Returns sum_v E_v.
    ``pred`` and ``gt`` are (verts, faces) pairs or trimesh-like meshes in the evaluation frame.
    ``save_dir`` writes normals_pred.png, normals_gt.png (views side by side, labelled) and
    normal_error.png (with a colour bar). An empty mesh gives NaN with a warning. A mesh reaching
    outside the cameras' view volume raises ValueError (see :func:`check_evaluation_frame`) unless
    ``allow_clipping`` is True.
    """
    _check_backend(backend)
    pv, pf = _as_vf(pred, "pred")
    gv, gf = _as_vf(gt, "gt")
    if not allow_clipping:
        check_evaluation_frame(pv, pf, backend, views, "pred")
        check_evaluation_frame(gv, gf, backend, views, "gt")
    if save_dir is not None:
        io.check_output_dir(save_dir)
    pred_img = normal_images(pv, pf, backend, views, image_size)
    gt_img = normal_images(gv.to(device=pv.device, dtype=pv.dtype), gf.to(pv.device), backend, views, image_size)
    per_pixel = ((pred_img - gt_img) ** 2).sum(-1)
    per_view = per_pixel.mean(dim=(-2, -1))
    error = per_view.sum()
    if pf.shape[0] == 0 or gf.shape[0] == 0:
        warnings.warn("normal_map_error: a mesh is empty; the error is NaN", RuntimeWarning, stacklevel=2)
        error = torch.full_like(error, torch.nan)
    files = []
    if save_dir is not None:
        files = save_normal_pngs(save_dir, pred_img.detach(), gt_img.detach(), per_pixel.detach(),
                                 view_labels=_view_labels(backend, views))
    return NormalMapError(error, per_view, pred_img, gt_img, per_pixel, files)


def _view_labels(backend: str, views: Sequence[float] | None) -> list[str]:
    angles = list(ICON_VIEWS if backend == "icon2022" else ECON_VIEWS) if views is None else list(views)
    what = "MODEL TURNED" if backend == "icon2022" else "CAMERA AT"
    return [f"{what} {float(a):g} DEG" for a in angles]


def _sample_icon(verts: torch.Tensor, faces: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    import trimesh

    mesh = trimesh.Trimesh(verts.detach().double().cpu().numpy(), faces.cpu().numpy(), process=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        points, _ = trimesh.sample.sample_surface_even(mesh, n, seed=seed)
    return torch.as_tensor(np.asarray(points), dtype=torch.float64)


def _mean_distance(points: torch.Tensor, verts: torch.Tensor, faces: torch.Tensor) -> float:
    d = MeshBVH(verts.double(), faces).closest_points(points.double()[None]).distance[0]
    return float(torch.nan_to_num(d, nan=0.0).mean())  # ICON sets NaN distances to 0


@dataclass
class HumanEvalResult:
    """Chamfer, P2S (both "cm": normalised-space distances x 100) and Normal (L2) of the CAPE protocol.

    chamfer = 1/2 (P2S + recon-to-scan) x 100; p2s = mean distance of scan samples to the
    reconstruction x 100; normal = :func:`normal_map_error`. samples: how many points were drawn
    on (pred, gt); files: the PNGs written; card: how the numbers were computed."""

    chamfer: float
    p2s: float
    normal: float
    backend: str
    samples: tuple[int, int]
    image_size: int
    files: list = field(default_factory=list)
    card: MetricCard | None = None

    def as_dict(self) -> dict:
        """The result as a JSON-ready dict: backend, chamfer_cm, p2s_cm (scan samples to the
        reconstruction, ICON's P2S), normal, samples [pred, gt], image_size, files and card."""
        return {"backend": self.backend, "chamfer_cm": self.chamfer, "p2s_cm": self.p2s, "normal": self.normal,
                "samples": list(self.samples), "image_size": self.image_size, "files": self.files,
                "card": None if self.card is None else self.card.as_dict()}


def human_card(backend: str, num_samples: int, image_size: int, seed: int, min_triangle_area: float | None,
               allow_clipping: bool, samples: tuple[int, int], inputs: dict | None = None) -> MetricCard:
    """The metric card of one CAPE evaluation; ``inputs`` ({role: path}) are hashed."""
    econ = backend == "econ"
    sampler = ("area-weighted (PyTorch3D sample_points_from_meshes)" if econ
               else "trimesh.sample.sample_surface_even (rejection: may give fewer)")
    distance = (f"PyTorch3D point-to-triangle, min_triangle_area={min_triangle_area}"
                if econ and min_triangle_area is not None else "exact point-to-triangle")
    return MetricCard(
        protocol=f"CAPE clothed humans ({'ECON' if econ else 'ICON-2022'})",
        reference=REFERENCES[backend],
        units='"cm": normalised [-1, 1] frame distances x 100 (Chamfer, P2S); Normal: unitless',
        metrics={
            "chamfer_cm": "1/2 (mean_g d(g, pred surface) + mean_p d(p, gt surface)) x 100; Euclidean, unsquared; "
                          "symmetric; lower is better",
            "p2s_cm": "mean_g d(g, pred surface) x 100 over the scan (gt) samples g; Euclidean, unsquared; "
                      "scan to reconstruction (ICON's P2S); lower is better",
            "normal": "sum over views of the per-view mean over all pixels of sum_rgb (I_pred - I_gt)^2, colours "
                      "in [0, 1]; squared, no mask; lower is better",
        },
        parameters={"backend": backend, "num_samples": num_samples, "samples": list(samples), "seed": seed,
                    "sampler": sampler, "distance": distance, "image_size": image_size,
                    "views_deg": list(ICON_VIEWS if backend == "icon2022" else ECON_VIEWS),
                    "allow_clipping": allow_clipping},
        inputs=dict(inputs or {}),
    ).hash_inputs()


def human_eval(
    pred,
    gt,
    backend: str = "icon2022",
    num_samples: int = 1000,
    image_size: int = 512,
    seed: int = 0,
    save_dir: str | os.PathLike | None = None,
    min_triangle_area: float | None = PYTORCH3D_MIN_TRIANGLE_AREA,
    allow_clipping: bool = False,
    progress: Callable[[str], None] | None = None,
    inputs: dict[str, str] | None = None,
) -> HumanEvalResult:
    """Scores a reconstructed clothed human against its scan with the CAPE protocol of ICON-2022
    or ECON (see the module docstring).

    ``pred`` (the reconstruction) and ``gt`` (the scan) are (verts, faces) pairs or trimesh-like
    meshes in the normalised evaluation frame. ``seed`` makes the surface samples reproducible
    (the papers use unseeded global generators). An empty mesh gives NaN for all three numbers
    with a warning; ``num_samples`` < 1 or a mesh yielding no samples raises ValueError.

    ``min_triangle_area`` (econ only) reproduces PyTorch3D's distance, which measures triangles
    smaller than this absolute area by their edges alone. In the normalised frame nearly every
    triangle of a body mesh is smaller than 5e-3, so ECON's distances are distances to the nearest
    edge: a mesh scored against itself gets a P2S of about 0.2 "cm", not 0. Pass None for exact
    point-to-triangle distances.

    A mesh without a face of positive area raises ValueError (both backends), and so does a mesh
    outside the cameras' view volume unless ``allow_clipping`` (see :func:`check_evaluation_frame`).
    ``progress``, if given, is called with the name of each step as it starts. ``inputs``
    ({"pred": path, "gt": path}) names the files the meshes came from, for the card's SHA-256.
    """
    _check_backend(backend)
    _checks.check_positive_int(num_samples, "num_samples")
    checked_image_size(image_size)
    if min_triangle_area is not None:
        _checks.check_positive_number(min_triangle_area, "min_triangle_area")
    pv, pf = _as_vf(pred, "pred")
    gv, gf = _as_vf(gt, "gt")
    area = min_triangle_area if backend == "econ" else None
    if pf.shape[0] == 0 or gf.shape[0] == 0:
        warnings.warn("human_eval: a mesh is empty; Chamfer, P2S and Normal are NaN", RuntimeWarning, stacklevel=2)
        card = human_card(backend, num_samples, image_size, seed, area, allow_clipping, (0, 0), inputs)
        return HumanEvalResult(math.nan, math.nan, math.nan, backend, (0, 0), image_size, card=card)
    for name, (v, f) in (("pred", (pv, pf)), ("gt", (gv, gf))):
        check_positive_area(v, f, name)
        if not allow_clipping:
            check_evaluation_frame(v, f, backend, None, name)
    if save_dir is not None:  # before the work, not after it
        io.check_output_dir(save_dir)
    step = progress or (lambda name: None)
    with torch.no_grad():
        step("sampling the surfaces")
        if backend == "icon2022":
            pred_samples = _sample_icon(pv, pf, num_samples, seed)
            gt_samples = _sample_icon(gv, gf, num_samples, seed + 1)
            pred_surface, gt_surface = (pv, pf), (gv, gf)
        else:
            generator = torch.Generator().manual_seed(seed)
            gt_samples = sample_points_on_mesh(gv.double().cpu(), gf.cpu(), num_samples, generator).points
            pred_samples = sample_points_on_mesh(pv.double().cpu(), pf.cpu(), num_samples, generator).points
            pred_surface, gt_surface = (pv, pf), (gv, gf)
            if min_triangle_area is not None:
                pred_surface = pytorch3d_distance_mesh(pv, pf, min_triangle_area)
                gt_surface = pytorch3d_distance_mesh(gv, gf, min_triangle_area)
        if len(pred_samples) == 0 or len(gt_samples) == 0:
            raise ValueError("human_eval: no surface samples could be drawn on a mesh (zero area?)")
        device = pv.device
        step("point-to-surface distances")
        p2s_raw = _mean_distance(gt_samples.to(device), *pred_surface)
        back_raw = _mean_distance(pred_samples.to(device), *gt_surface)
        step("rendering the normal maps")
        normal = normal_map_error((pv, pf), (gv, gf), backend, image_size=image_size, save_dir=save_dir,
                                  allow_clipping=allow_clipping)
    return HumanEvalResult(
        chamfer=0.5 * (p2s_raw + back_raw) * 100.0,
        p2s=p2s_raw * 100.0,
        normal=float(normal.error),
        backend=backend,
        samples=(len(pred_samples), len(gt_samples)),
        image_size=image_size,
        files=normal.files,
        card=human_card(backend, num_samples, image_size, seed, area, allow_clipping,
                        (len(pred_samples), len(gt_samples)), inputs),
    )


__all__ = [
    "BACKENDS",
    "HumanEvalResult",
    "NormalMapError",
    "check_evaluation_frame",
    "check_positive_area",
    "human_card",
    "human_cameras",
    "human_eval",
    "normal_images",
    "normal_map_error",
    "pytorch3d_distance_mesh",
]
