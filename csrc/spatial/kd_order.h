// The kd_order op: the slot order of a point tree (point_tree.h) over each cloud, as MeshBVH uses
// it to lay out triangles by their centroids. The CPU backend runs the CPU builder, the CUDA one
// the ATen builder; both build the identical tree, so the order does not depend on the device.
#pragma once

#include <ATen/ATen.h>

namespace pm {

inline void check_kd_order_args(const at::Tensor& points, const at::Tensor& lengths) {
  TORCH_CHECK(points.dim() == 3 && points.size(2) == 3 && at::isFloatingType(points.scalar_type()),
              "kd_order: points must be (B, N, 3) floating point");
  TORCH_CHECK(lengths.sizes() == at::IntArrayRef({points.size(0)}) && lengths.scalar_type() == at::kLong,
              "kd_order: lengths must be (B,) int64");
}

}  // namespace pm
