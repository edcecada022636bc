// The mesh ops (triangle_frames, closest_triangle, winding_number): argument checks shared by the
// CPU and CUDA backends (mesh_cpu.cpp, mesh_cuda.cu).
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/lengths.h"
#include "mesh_tree.h"

namespace pm {

// The query points and the triangle tree that closest_triangle and winding_number both read:
// shapes, dtypes and devices.
inline void check_mesh_tree_args(const at::Tensor& points, const at::Tensor& point_lengths, const at::Tensor& tris,
                                 const at::Tensor& face, const at::Tensor& lo, const at::Tensor& hi,
                                 const at::Tensor& face_lengths) {
  TORCH_CHECK(points.dim() == 3 && points.size(2) == 3, "mesh ops: points must be (B, N, 3)");
  TORCH_CHECK(tris.dim() == 4 && tris.size(2) == 3 && tris.size(3) == 3 && tris.size(0) == points.size(0),
              "mesh ops: tris must be (B, S, 3, 3)");
  TORCH_CHECK(tris.size(1) % kLeafSize == 0, "mesh ops: tris must hold whole leaves");
  const int64_t leaves = tris.size(1) / kLeafSize;
  TORCH_CHECK(leaves >= 1 && (leaves & (leaves - 1)) == 0, "mesh ops: the number of leaves must be a power of two");
  TORCH_CHECK(face.sizes() == at::IntArrayRef({tris.size(0), tris.size(1)}) && face.scalar_type() == at::kLong,
              "mesh ops: face must be (B, S) int64");
  TORCH_CHECK(lo.sizes() == at::IntArrayRef({tris.size(0), 2 * leaves, 3}) && hi.sizes() == lo.sizes(),
              "mesh ops: lo and hi must be (B, 2 * leaves, 3)");
  TORCH_CHECK(points.scalar_type() == tris.scalar_type() && lo.scalar_type() == tris.scalar_type() &&
                  hi.scalar_type() == tris.scalar_type() && at::isFloatingType(tris.scalar_type()),
              "mesh ops: points, tris, lo and hi must share one floating dtype");
  TORCH_CHECK(point_lengths.sizes() == at::IntArrayRef({points.size(0)}) &&
                  face_lengths.sizes() == at::IntArrayRef({points.size(0)}) &&
                  point_lengths.scalar_type() == at::kLong && face_lengths.scalar_type() == at::kLong,
              "mesh ops: lengths must be (B,) int64");
  for (const at::Tensor* t : {&point_lengths, &tris, &face, &lo, &hi, &face_lengths}) {
    TORCH_CHECK(t->device() == points.device(), "mesh ops: all tensors must be on one device");
  }
}

// Batch element b's tree, on the host (mesh_cpu.cpp and the portable drivers of ../testing.cpp).
template <typename scalar_t>
TriangleTreeView<scalar_t> tree_view(const at::Tensor& tris, const at::Tensor& face, const at::Tensor& lo,
                                     const at::Tensor& hi, int64_t b, int64_t n) {
  const int64_t S = tris.size(1), leaves = S / kLeafSize;
  return TriangleTreeView<scalar_t>{tris.data_ptr<scalar_t>() + b * S * 9, face.data_ptr<int64_t>() + b * S,
                                    lo.data_ptr<scalar_t>() + b * 2 * leaves * 3,
                                    hi.data_ptr<scalar_t>() + b * 2 * leaves * 3, leaves, n};
}

// triangle_frames: tris (B, S, 3, 3) in tree order, frames for the first `faces` slots.
inline void check_frames_args(const at::Tensor& tris, const at::Tensor& face_lengths, int64_t faces) {
  TORCH_CHECK(tris.dim() == 4 && tris.size(2) == 3 && tris.size(3) == 3 && at::isFloatingType(tris.scalar_type()),
              "triangle_frames: tris must be (B, S, 3, 3) floating point");
  TORCH_CHECK(faces >= 0 && faces <= tris.size(1), "triangle_frames: faces must lie in [0, S]");
  TORCH_CHECK(face_lengths.sizes() == at::IntArrayRef({tris.size(0)}) && face_lengths.scalar_type() == at::kLong &&
                  face_lengths.device() == tris.device(),
              "triangle_frames: face_lengths must be (B,) int64 on the device of tris");
}

// The prepared search data of closest_triangle: frames (B, F, kFrameBytes) uint8 with F at least
// every face length, slot_boxes (B, S / 4, kBox4) and quads (B, max(P / 2, 1), kBox4).
inline void check_closest_args(const at::Tensor& tris, const at::Tensor& frames, const at::Tensor& slot_boxes,
                               const at::Tensor& quads) {
  const int64_t B = tris.size(0), S = tris.size(1), P = S / kLeafSize;
  TORCH_CHECK(frames.dim() == 3 && frames.size(0) == B && frames.size(1) <= S && frames.size(2) == kFrameBytes &&
                  frames.scalar_type() == at::kByte,
              "closest_triangle: frames must be (B, F, ", kFrameBytes, ") uint8 from triangle_frames");
  TORCH_CHECK(slot_boxes.sizes() == at::IntArrayRef({B, S / 4, kBox4}) &&
                  quads.sizes() == at::IntArrayRef({B, std::max<int64_t>(P / 2, 1), kBox4}),
              "closest_triangle: slot_boxes must be (B, S / 4, 24) and quads (B, max(S / 16, 1), 24)");
  for (const at::Tensor* t : {&frames, &slot_boxes, &quads}) {
    TORCH_CHECK(t->device() == tris.device(), "closest_triangle: all tensors must be on one device");
  }
  TORCH_CHECK(slot_boxes.scalar_type() == tris.scalar_type() && quads.scalar_type() == tris.scalar_type(),
              "closest_triangle: slot_boxes and quads must have the dtype of tris");
}

// The node moments of winding_number's far-field expansion and its criterion beta.
inline void check_winding_args(const at::Tensor& lo, const at::Tensor& centre, const at::Tensor& normal_sum,
                               const at::Tensor& moment, const at::Tensor& radius, double beta) {
  const int64_t B = lo.size(0), nodes = lo.size(1);
  TORCH_CHECK(centre.sizes() == at::IntArrayRef({B, nodes, 3}) && normal_sum.sizes() == centre.sizes() &&
                  moment.sizes() == at::IntArrayRef({B, nodes, 9}) && radius.sizes() == at::IntArrayRef({B, nodes}),
              "winding_number: node moments must be (B, nodes, 3), (B, nodes, 3), (B, nodes, 9), (B, nodes)");
  for (const at::Tensor* t : {&centre, &normal_sum, &moment, &radius}) {
    TORCH_CHECK(t->scalar_type() == at::kDouble, "winding_number: node moments must be float64");
    TORCH_CHECK(t->device() == lo.device(), "winding_number: all tensors must be on one device");
  }
  TORCH_CHECK(beta > 0.0, "winding_number: beta must be positive");
}

// The winding_number op's inputs, checked and made contiguous once, with each batch element's tree
// and moments as raw views (made once per call, not per query): what the CPU op (mesh_cpu.cpp) and
// its portable driver (../testing.cpp) both read.
struct WindingInputs {
  at::Tensor points, tris, face, lo, hi, centre, normal_sum, moment, radius;
  std::vector<int64_t> point_lengths, face_lengths;

  std::vector<WindingMoments> moments() const {
    const int64_t nodes = lo.size(1);
    std::vector<WindingMoments> m;
    for (int64_t b = 0; b < points.size(0); ++b) {
      m.push_back(WindingMoments{centre.data_ptr<double>() + b * nodes * 3, normal_sum.data_ptr<double>() + b * nodes * 3,
                                 moment.data_ptr<double>() + b * nodes * 9, radius.data_ptr<double>() + b * nodes});
    }
    return m;
  }

  template <typename scalar_t>
  std::vector<TriangleTreeView<scalar_t>> trees() const {
    std::vector<TriangleTreeView<scalar_t>> t;
    for (int64_t b = 0; b < points.size(0); ++b) t.push_back(tree_view<scalar_t>(tris, face, lo, hi, b, face_lengths[b]));
    return t;
  }
};

inline WindingInputs winding_inputs(const at::Tensor& points, const at::Tensor& point_lengths, const at::Tensor& tris,
                                    const at::Tensor& face, const at::Tensor& lo, const at::Tensor& hi,
                                    const at::Tensor& face_lengths, const at::Tensor& centre,
                                    const at::Tensor& normal_sum, const at::Tensor& moment, const at::Tensor& radius,
                                    double beta) {
  check_mesh_tree_args(points, point_lengths, tris, face, lo, hi, face_lengths);
  check_winding_args(lo, centre, normal_sum, moment, radius, beta);
  WindingInputs in{points.contiguous(), tris.contiguous(), face.contiguous(), lo.contiguous(), hi.contiguous(),
                   centre.contiguous(), normal_sum.contiguous(), moment.contiguous(), radius.contiguous(), {}, {}};
  in.point_lengths = host_lengths(point_lengths, points.size(1), "winding_number", "point_lengths");
  in.face_lengths = host_lengths(face_lengths, tris.size(1), "winding_number", "face_lengths");
  return in;
}

}  // namespace pm
