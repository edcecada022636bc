// Building batches of point trees (host code). Two builders produce equivalent trees:
//   build_point_tree_cpu  - nth_element partitions in plain C++ (the CPU fast path);
//   build_point_tree_aten - ATen ops only (segmented sorts, gathers, amin/amax), so it runs on any
//                           device: the CUDA backend uses it, and the test-only CPU ops
//                           (testing.cpp) run it so that its logic is tested without a GPU.
// Both split every node at the same position, on the same axis, at the same coordinate, order
// points by (coordinate, original index) so that tied points split the same way, and sort each
// leaf by original index: the two build the identical tree (tests/test_tree_builders.py).
//
// What two builders buy. The ATen one is the only builder CUDA has, with no kernel of its own to
// maintain, and it runs on the CPU for the tests. On the CPU the nth_element one is an order of
// magnitude faster. No table in bench/results records this; a one-off timing on the project's
// 2-core CPU (torch 2.13 CPU build, 2 threads, uniform points, best of 5, two runs, through
// pointmetrics_testing.point_tree) built 1e5 points in 14-17 ms against 171-185 ms and 1e6 points
// in 153-159 ms against 1.87-2.10 s (10x-13x). The price: the two must stay identical, which
// tests/test_tree_builders.py checks.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "core/parallel.h"
#include "point_tree.h"

namespace pm {

// Trees of all clouds of a batch, in padded per-cloud slots.
struct BatchTree {
  at::Tensor pts;          // (B, S, 3) points in tree order, S = leaves * kLeafSize; zeros past counts
  at::Tensor idx;          // (B, S) int64 original index of each point; -1 past counts
  at::Tensor lo, hi;       // (B, 2 * leaves, 3) node boxes, heap numbered (node 0 unused)
  at::Tensor split_axis;   // (B, leaves) int8
  at::Tensor split_val;    // (B, leaves) same dtype as pts
  at::Tensor counts;       // (B,) int64 valid points per cloud
  at::Tensor frame_lo;     // (B, 3) double: lower corner of the Morton quantisation (query order)
  at::Tensor frame_scale;  // (B,) double: Morton cells per unit length
  int64_t leaves = 1;      // P, a power of two
  int depth = 0;           // log2(P)

  template <typename scalar_t>
  PointTreeView<scalar_t> view(int64_t b, int64_t n) const {
    const int64_t S = pts.size(1), nodes = lo.size(1);
    return PointTreeView<scalar_t>{pts.data_ptr<scalar_t>() + b * S * 3,
                                   idx.data_ptr<int64_t>() + b * S,
                                   lo.data_ptr<scalar_t>() + b * nodes * 3,
                                   hi.data_ptr<scalar_t>() + b * nodes * 3,
                                   split_axis.data_ptr<int8_t>() + b * leaves,
                                   split_val.data_ptr<scalar_t>() + b * leaves,
                                   leaves,
                                   depth,
                                   n};
  }
};

// Leaves of a tree for clouds of up to m points (a power of two) and its depth.
int64_t tree_leaves(int64_t m);
int tree_depth(int64_t leaves);

// points: (B, M, 3) contiguous float or double; lengths: valid prefix of each cloud.
BatchTree build_point_tree_cpu(const at::Tensor& points, const std::vector<int64_t>& lengths);
// The idx of build_point_tree_cpu alone (the kd_order op), without building the rest of the tree.
at::Tensor kd_slot_order_cpu(const at::Tensor& points, const std::vector<int64_t>& lengths);
BatchTree build_point_tree_aten(const at::Tensor& points, const at::Tensor& lengths);

// Flat indices b * N + i of the valid queries in Morton order of the target tree's frame, so that
// consecutive queries visit the same nodes. queries: (B, N, 3).
std::vector<int64_t> order_queries_cpu(const at::Tensor& queries, const std::vector<int64_t>& lengths,
                                       const BatchTree& tree);
at::Tensor order_queries_aten(const at::Tensor& queries, const at::Tensor& lengths, const BatchTree& tree);

// The same orders for any per-cloud frame: frame_lo (B, 3) and frame_scale (B,), double, as in
// morton.h (host pointers for the CPU version).
at::Tensor morton_order_aten(const at::Tensor& queries, const at::Tensor& lengths, const at::Tensor& frame_lo,
                             const at::Tensor& frame_scale);
std::vector<int64_t> morton_order_cpu(const at::Tensor& queries, const std::vector<int64_t>& lengths,
                                      const double* frame_lo, const double* frame_scale);

// out[i] = offset + the index of the i-th smallest code, ties in index order (a stable argsort by
// parallel LSD radix, 11-bit digits, over the codes' significant bits).
void sort_by_code(const std::vector<int64_t>& codes, int64_t offset, int64_t* out);

}  // namespace pm
