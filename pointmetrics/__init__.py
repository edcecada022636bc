"""pointmetrics: exact, differentiable and fast 3D losses and metrics for PyTorch."""

from .accumulate import PointCloudMetrics
from .bvh import MeshBVH, MeshProjection
from .ddm import ddm_m2m, ddm_m2p, ddm_p2p
from .emd import EMD, earth_movers_distance
from .image import psnr, s3im, ssim
from .knn import KNN, knn_gather, knn_points
from .lcd import LCDWeightNet, lcd_adversarial_step, lcd_loss
from .lpips import LPIPS, lpips
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
from .protocols.dtu import DTUResult, dtu_eval, greedy_radius_downsample
from .protocols.human import HumanEvalResult, NormalMapError, human_cameras, human_eval, normal_images, normal_map_error
from .protocols.slam import SlamResult, slam_mesh_eval
from .protocols.tnt import TnTResult, tnt_eval
from .raster import Cameras, Fragments, NormalMaps, look_at, rasterize, render_normals, rotation_y, vertex_normals
from .sdf import (
    directional_divergence,
    divergence_weight,
    eikonal_loss,
    laplacian_divergence,
    mask_bce_loss,
    opacity_entropy_loss,
    sdf_gradient,
    sdf_points_loss,
    sparsity_loss,
)

__version__ = "0.1.0"

__all__ = [
    "SlamResult",
    "slam_mesh_eval",
    "LPIPS",
    "lpips",
    "TnTResult",
    "tnt_eval",
    "PointCloudMetrics",
    "Cameras",
    "Fragments",
    "HumanEvalResult",
    "NormalMapError",
    "NormalMaps",
    "human_cameras",
    "human_eval",
    "look_at",
    "normal_images",
    "normal_map_error",
    "rasterize",
    "render_normals",
    "rotation_y",
    "vertex_normals",
    "DTUResult",
    "dtu_eval",
    "greedy_radius_downsample",
    "Correspondences",
    "EMD",
    "FScore",
    "Hausdorff",
    "KNN",
    "LCDWeightNet",
    "MeshBVH",
    "MeshProjection",
    "MeshSamples",
    "Meshes",
    "PointMeshDistance",
    "VolumetricIoU",
    "as_meshes",
    "chamfer",
    "chamfer_distance",
    "chamfer_l1",
    "chamfer_l2",
    "closest_points_on_mesh",
    "correspondences",
    "ddm_m2m",
    "ddm_m2p",
    "ddm_p2p",
    "directional_divergence",
    "divergence_weight",
    "earth_movers_distance",
    "eikonal_loss",
    "fscore",
    "hausdorff_distance",
    "knn_gather",
    "knn_points",
    "laplacian_divergence",
    "lcd_adversarial_step",
    "lcd_loss",
    "mask_bce_loss",
    "mesh_normal_consistency",
    "meshes_from_packed",
    "normal_consistency",
    "occupancy",
    "opacity_entropy_loss",
    "point_mesh_distance",
    "point_to_surface_distance",
    "psnr",
    "s3im",
    "sample_mesh_lattice",
    "sample_points_on_mesh",
    "sdf_gradient",
    "sdf_points_loss",
    "signed_distance",
    "sparsity_loss",
    "ssim",
    "volumetric_iou",
    "winding_number",
]
