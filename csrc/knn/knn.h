// The knn op: declarations shared by ops.cpp and the CPU/CUDA implementations.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

#include "spatial/grid.h"

namespace pm {

// Checks the op's arguments (shapes, dtypes, devices, K, norm) and returns the compute dtype:
// double for double inputs, float otherwise. Used by every backend.
at::ScalarType check_knn_args(const at::Tensor& x, const at::Tensor& y, const at::Tensor& x_lengths,
                              const at::Tensor& y_lengths, int64_t K, int64_t norm);

// True when a cloud's grid holds so many points per cell that its kd-tree searches faster.
bool grid_is_crowded(const GridParams& p, int64_t K);
// True when `deferred` far queries (those the grid answers only by its slow fallback) into clouds
// of `points` points in all are worth building a kd-tree for.
bool deferred_needs_tree(int64_t deferred, int64_t points);

// Points as (B, N, 3) in the compute dtype, D < 3 padded with zeros (grid layout).
at::Tensor as_grid_points(const at::Tensor& points, at::ScalarType dtype);

std::tuple<at::Tensor, at::Tensor> knn_cpu(const at::Tensor& x, const at::Tensor& y, const at::Tensor& x_lengths,
                                           const at::Tensor& y_lengths, int64_t K, int64_t norm);
// CPU op that builds the grid with the ATen builder the CUDA backend uses (for tests).
std::tuple<at::Tensor, at::Tensor> knn_portable_cpu(const at::Tensor& x, const at::Tensor& y,
                                                    const at::Tensor& x_lengths, const at::Tensor& y_lengths,
                                                    int64_t K, int64_t norm);
std::tuple<at::Tensor, at::Tensor> knn_cuda(const at::Tensor& x, const at::Tensor& y, const at::Tensor& x_lengths,
                                            const at::Tensor& y_lengths, int64_t K, int64_t norm);

}  // namespace pm
