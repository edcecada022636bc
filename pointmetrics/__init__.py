"""pointmetrics: exact, differentiable and fast 3D losses and metrics for PyTorch."""

from .knn import KNN, knn_gather, knn_points
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
)

__version__ = "0.1.0"

__all__ = [
    "KNN",
    "Correspondences",
    "FScore",
    "Hausdorff",
    "chamfer",
    "chamfer_distance",
    "chamfer_l1",
    "chamfer_l2",
    "correspondences",
    "fscore",
    "hausdorff_distance",
    "knn_gather",
    "knn_points",
]
