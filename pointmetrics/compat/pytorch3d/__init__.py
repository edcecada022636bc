"""PyTorch3D's point-cloud and point-to-mesh losses, on pointmetrics' exact searches.

Replace ``from pytorch3d.ops import knn_points, knn_gather, sample_points_from_meshes`` and
``from pytorch3d.loss import chamfer_distance, point_mesh_face_distance, point_mesh_edge_distance``
with ``from pointmetrics.compat.pytorch3d import ...`` and keep the calls.

Follows facebookresearch/pytorch3d at commit 9381c4016376345bb795b97c45a6c2de66db354a:
``pytorch3d/ops/knn.py`` with its kernels ``pytorch3d/csrc/knn/knn_cpu.cpp`` and ``knn.cu``;
``pytorch3d/loss/chamfer.py``; ``pytorch3d/loss/point_mesh_distance.py`` with its kernels
``pytorch3d/csrc/point_mesh/point_mesh_cpu.cpp`` / ``point_mesh_cuda.cu`` and the distances of
``pytorch3d/csrc/utils/geometry_utils.h``; ``pytorch3d/ops/sample_points_from_meshes.py``; and
the ``Meshes`` / ``Pointclouds`` accessors of ``pytorch3d/structures``.

Conventions, as PyTorch3D:

- Distances are SQUARED Euclidean (``norm=2``; ``norm=1``: L1), never halved.
- ``knn_points``: int64 ``idx``, padded with 0 (not -1) and ``dists`` with 0, both past
  ``lengths1`` and in slots past ``lengths2``; ``knn_gather`` zeroes the slots k >= lengths[n].
- ``chamfer_distance``: mean over each cloud's points, then mean over the batch (or the weights'
  sum); an empty cloud contributes 0.
- ``point_mesh_*_distance``: each point's (edge's, face's) squared distance is weighted by
  1 / (points, edges, faces in its batch element) and everything summed and divided by N, the
  batch size: the batch mean of the two per-element means. A point whose mesh has no face (a
  face whose cloud has no point) gets the kernels' sentinel FLT_MAX = 3.4028234663852886e38.

No PyTorch3D is needed: the structures are read by duck typing. A ``Pointclouds``-like object has
``points_padded()`` and ``num_points_per_cloud()`` (or ``points_list()``) and, for the Chamfer
normals, ``normals_padded()``; a ``Meshes``-like object has ``verts_list()`` and ``faces_list()``,
or ``verts_packed()``, ``faces_packed()``, ``num_verts_per_mesh()`` and ``num_faces_per_mesh()``.

Beyond PyTorch3D (which computes in float32 only, CUDA float64 for kNN): float16/bfloat16 inputs
(accumulated and returned in float32) and float64 inputs (returned in float64), gradients that
support double backward, exact closest-triangle searches with no N x M memory, and clear errors
naming the argument. The deliberate differences are listed in each function's docstring.
"""

from . import knn
from .chamfer import chamfer_distance
from .knn import knn_gather, knn_points
from .point_mesh import (
    DEFAULT_MIN_TRIANGLE_AREA,
    FIRST_K,
    FLT_MAX,
    PAIR_BUDGET,
    edge_point_distance,
    face_point_distance,
    point_edge_distance,
    point_face_distance,
    point_mesh_edge_distance,
    point_mesh_face_distance,
    pytorch3d_distance_mesh,
)
from .sampling import Fragments, sample_points_from_meshes

# PyTorch3D's own private name (``pytorch3d.ops.knn._KNN``), which its users may reference: re-exported
# by attribute, as the package's layout rule forbids importing another module's underscore names.
_KNN = knn._KNN

__all__ = [
    "DEFAULT_MIN_TRIANGLE_AREA",
    "FIRST_K",
    "FLT_MAX",
    "Fragments",
    "PAIR_BUDGET",
    "_KNN",
    "chamfer_distance",
    "edge_point_distance",
    "face_point_distance",
    "knn_gather",
    "knn_points",
    "point_edge_distance",
    "point_face_distance",
    "point_mesh_edge_distance",
    "point_mesh_face_distance",
    "pytorch3d_distance_mesh",
    "sample_points_from_meshes",
]
