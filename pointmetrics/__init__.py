"""pointmetrics: exact, differentiable and fast 3D losses and metrics for PyTorch."""

from .bvh import MeshBVH, MeshProjection
from .emd import EMD, earth_movers_distance
from .knn import KNN, knn_gather, knn_points
from .mesh import Meshes, MeshSamples, as_meshes, meshes_from_packed, sample_mesh_lattice, sample_points_on_mesh
from .mesh_metrics import (
    PointMeshDistance,
    VolumetricIoU,
    closest_points_on_mesh,
    mesh_normal_consistency,
    occupancy,
    point_mesh_distance,
    point_to_surface_distance,
    signed_distance,
    volumetric_iou,
    winding_number,
)
from .pointcloud import (
    Correspondences,
    FScore,
    Hausdorff,
    chamfer,
    chamfer_distance,
    chamfer_l1,
    chamfer_l2,
    correspondences,
    fscore,
    hausdorff_distance,
    normal_consistency,
)

__version__ = "0.1.0"

__all__ = [
    "EMD",
    "KNN",
    "MeshBVH",
    "MeshProjection",
    "MeshSamples",
    "Meshes",
    "as_meshes",
    "PointMeshDistance",
    "VolumetricIoU",
    "closest_points_on_mesh",
    "mesh_normal_consistency",
    "meshes_from_packed",
    "normal_consistency",
    "occupancy",
    "point_mesh_distance",
    "point_to_surface_distance",
    "sample_mesh_lattice",
    "sample_points_on_mesh",
    "signed_distance",
    "volumetric_iou",
    "winding_number",
    "Correspondences",
    "FScore",
    "Hausdorff",
    "chamfer",
    "chamfer_distance",
    "chamfer_l1",
    "chamfer_l2",
    "correspondences",
    "earth_movers_distance",
    "fscore",
    "hausdorff_distance",
    "knn_gather",
    "knn_points",
]
