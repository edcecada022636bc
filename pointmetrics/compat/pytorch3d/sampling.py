"""PyTorch3D's ``sample_points_from_meshes`` (``pytorch3d/ops/sample_points_from_meshes.py``); see
the package docstring."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ... import _checks
from ...mesh import sample_points_on_mesh
from .structures import mesh_lists


@dataclass
class Fragments:
    """The fields of PyTorch3D's rasterizer ``Fragments`` that ``sample_textures`` reads:
    pix_to_face (N, S, 1, 1) packed face index (-1: none), zbuf and dists (N, S, 1, 1) zeros,
    bary_coords (N, S, 1, 1, 3)."""

    pix_to_face: torch.Tensor
    zbuf: torch.Tensor
    bary_coords: torch.Tensor
    dists: torch.Tensor

    def detach(self) -> Fragments:
        return Fragments(*(t.detach() for t in (self.pix_to_face, self.zbuf, self.bary_coords, self.dists)))


def sample_points_from_meshes(meshes, num_samples: int = 10000, return_normals: bool = False,
                              return_textures: bool = False):
    """``pytorch3d.ops.sample_points_from_meshes``: samples (N, num_samples, 3), and the normals
    and textures if asked, as PyTorch3D orders them: samples, [normals], [textures].

    Each mesh is sampled uniformly by area (faces drawn with probability proportional to their
    area, then uniform barycentric coordinates), with ``pointmetrics.sample_points_on_mesh`` and
    torch's global random generator: the distribution is PyTorch3D's, the draws are not. Normals
    are the unit normals (v1 - v0) x (v2 - v1) of the sampled faces. A mesh without faces gives rows
    of zeros (samples, normals and textures). As in PyTorch3D, the outputs have torch's default
    dtype (float32 normally, whatever the vertices' dtype) and are differentiable with respect to
    the vertices.

    Raises ValueError as PyTorch3D does: "Meshes are empty." (no mesh has a face), "Meshes contain
    nan or inf." (any vertex), "Meshes do not contain textures.". Unlike PyTorch3D, which fails
    there, textures may be asked for a batch that includes empty meshes; a mesh whose faces all
    have zero area raises ValueError (PyTorch3D: a torch.multinomial RuntimeError).
    ``return_textures`` calls ``meshes.sample_textures(fragments)`` with PyTorch3D's fragments
    (pix_to_face the packed face index of each sample, bary_coords its barycentric weights).
    """
    _checks.check_positive_int(num_samples, "num_samples")
    verts, faces = mesh_lists(meshes)
    nonempty = [f.shape[0] > 0 for f in faces]
    if not any(nonempty):
        raise ValueError("Meshes are empty.")
    if not all(bool(torch.isfinite(v).all()) for v in verts):
        raise ValueError("Meshes contain nan or inf.")
    if return_textures and getattr(meshes, "textures", None) is None:
        raise ValueError("Meshes do not contain textures.")
    device, dtype = verts[0].device, torch.get_default_dtype()
    zeros = torch.zeros(num_samples, 3, dtype=dtype, device=device)
    draws = [sample_points_on_mesh(v, f, num_samples) if ok else None for v, f, ok in zip(verts, faces, nonempty)]
    samples = torch.stack([zeros if d is None else d.points.to(dtype) for d in draws])
    out = [samples]
    if return_normals:
        out.append(torch.stack([zeros if d is None else d.normals.to(dtype) for d in draws]))
    if return_textures:
        out.append(_sample_textures(meshes, draws, faces, num_samples, device))
    return out[0] if len(out) == 1 else tuple(out)


def _sample_textures(meshes, draws, faces: Sequence[torch.Tensor], num_samples: int, device) -> torch.Tensor:
    """meshes.sample_textures on fragments holding the samples' packed faces and barycentrics;
    rows of empty meshes are zero."""
    offsets = torch.cumsum(torch.tensor([0] + [f.shape[0] for f in faces[:-1]]), 0).tolist()
    none = torch.full((num_samples,), -1, dtype=torch.int64, device=device)
    pix_to_face = torch.stack([none if d is None else d.face_idx + o for d, o in zip(draws, offsets)])
    bary_dtype = next(d.bary.dtype for d in draws if d is not None)
    no_bary = torch.zeros(num_samples, 3, dtype=bary_dtype, device=device)
    bary = torch.stack([no_bary if d is None else d.bary for d in draws])
    N = len(draws)
    dummy = torch.zeros((N, num_samples, 1, 1), dtype=torch.float32, device=device)
    fragments = Fragments(pix_to_face.view(N, num_samples, 1, 1), dummy, bary.view(N, num_samples, 1, 1, 3), dummy)
    textures = meshes.sample_textures(fragments)[:, :, 0, 0, :]
    empty = torch.tensor([d is None for d in draws], device=textures.device)
    return torch.where(empty[:, None, None], torch.zeros((), dtype=textures.dtype, device=textures.device), textures)
