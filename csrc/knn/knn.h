// The knn op: argument checks and planning rules shared by the CPU and CUDA backends
// (knn_cpu.cpp, knn_cuda.cu), and their entry points.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <limits>
#include <tuple>

#include "core/host.h"
#include "core/lengths.h"
#include "spatial/grid_build.h"
#include "spatial/point_tree_build.h"

namespace pm {

// Checks the op's arguments (shapes, dtypes, devices, K, norm) and returns the compute dtype:
// double for double inputs, float otherwise.
inline at::ScalarType check_knn_args(const at::Tensor& x, const at::Tensor& y, const at::Tensor& x_lengths,
                                     const at::Tensor& y_lengths, int64_t K, int64_t norm) {
  TORCH_CHECK(x.dim() == 3 && y.dim() == 3, "knn: x and y must be (B, N, D) and (B, M, D)");
  TORCH_CHECK(x.size(0) == y.size(0), "knn: x and y must have the same batch size");
  TORCH_CHECK(x.size(2) == y.size(2), "knn: x and y must have the same point dimension D");
  TORCH_CHECK(x.size(2) >= 1, "knn: points need at least one coordinate");
  TORCH_CHECK(at::isFloatingType(x.scalar_type()) && x.scalar_type() == y.scalar_type(),
              "knn: x and y must be floating point tensors of the same dtype");
  TORCH_CHECK(x_lengths.dim() == 1 && y_lengths.dim() == 1 && x_lengths.size(0) == x.size(0) &&
                  y_lengths.size(0) == x.size(0),
              "knn: x_lengths and y_lengths must be (B,)");
  TORCH_CHECK(x_lengths.scalar_type() == at::kLong && y_lengths.scalar_type() == at::kLong,
              "knn: lengths must be int64");
  TORCH_CHECK(x.device() == y.device() && x.device() == x_lengths.device() && x.device() == y_lengths.device(),
              "knn: all tensors must be on the same device");
  TORCH_CHECK(K >= 1, "knn: K must be at least 1");
  TORCH_CHECK(norm == 1 || norm == 2, "knn: norm must be 1 or 2");
  TORCH_CHECK(y.size(1) < std::numeric_limits<int32_t>::max(), "knn: at most 2^31 - 1 points per cloud");
  return x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

// True when a cloud's grid holds so many points per cell that its kd-tree searches faster.
inline bool grid_is_crowded(const GridParams& p, int64_t K) {
  // A grid search scans about this many points per query; past it the kd-tree is faster.
  return p.crowding > 8.0 * target_occupancy(K) + 8.0;
}

// True when `deferred` far queries (those the grid answers only by its slow fallback) into clouds
// of `points` points in all are worth building a kd-tree for.
inline bool deferred_needs_tree(int64_t deferred, int64_t points) { return deferred > 64 && deferred * 256 > points; }

std::tuple<at::Tensor, at::Tensor> knn_cpu(const at::Tensor& x, const at::Tensor& y, const at::Tensor& x_lengths,
                                           const at::Tensor& y_lengths, int64_t K, int64_t norm);
// CPU op that builds the grid with the ATen builder the CUDA backend uses (for tests).
std::tuple<at::Tensor, at::Tensor> knn_portable_cpu(const at::Tensor& x, const at::Tensor& y,
                                                    const at::Tensor& x_lengths, const at::Tensor& y_lengths,
                                                    int64_t K, int64_t norm);

}  // namespace pm
