// The mesh ops: declarations shared by ops.cpp and the CPU/CUDA implementations.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

namespace pm {

// Argument checks shared by every backend (shapes, dtypes, devices).
void check_mesh_tree_args(const at::Tensor& points, const at::Tensor& point_lengths, const at::Tensor& tris,
                          const at::Tensor& face, const at::Tensor& lo, const at::Tensor& hi,
                          const at::Tensor& face_lengths);
void check_winding_args(const at::Tensor& lo, const at::Tensor& centre, const at::Tensor& normal_sum,
                        const at::Tensor& moment, const at::Tensor& radius, double beta);

}  // namespace pm
