// The mesh ops: declarations shared by ops.cpp and the CPU/CUDA implementations.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

namespace pm {

// Argument checks shared by every backend (shapes, dtypes, devices).
void check_mesh_tree_args(const at::Tensor& points, const at::Tensor& point_lengths, const at::Tensor& tris,
                          const at::Tensor& face, const at::Tensor& lo, const at::Tensor& hi,
                          const at::Tensor& face_lengths);
void check_frames_args(const at::Tensor& tris, const at::Tensor& face_lengths, int64_t faces);
// The prepared search data of closest_triangle: frames (B, F, kFrameBytes) uint8 with F at least
// every face length, slot_boxes (B, S / 4, kBox4) and quads (B, max(P / 2, 1), kBox4).
void check_closest_args(const at::Tensor& tris, const at::Tensor& frames, const at::Tensor& slot_boxes,
                        const at::Tensor& quads);
void check_winding_args(const at::Tensor& lo, const at::Tensor& centre, const at::Tensor& normal_sum,
                        const at::Tensor& moment, const at::Tensor& radius, double beta);

}  // namespace pm
