// The knn op: argument checks, planning rules and the CUDA plan, shared by the CPU and CUDA
// backends (knn_cpu.cpp, knn_cuda.cu) and testing.cpp; the interface of the CPU search engine.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <limits>
#include <tuple>
#include <vector>

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

// The CUDA backend's choice for D <= 3: brute force (one thread per query scanning every target)
// or the grid plan. Brute force wins on few pairs, but only when its blocks can fill the GPU or
// each thread's scan is short: one block runs 256 queries, so 256 queries against 1e6 points
// (under the pair limit) would leave every multiprocessor but one idle for the whole scan, while
// the grid plan builds in parallel over all targets and answers each query from a few cells.
constexpr int64_t kBruteMaxPairs = int64_t(1) << 28;  // per cloud; beyond it the grid always wins
constexpr int64_t kBruteShortScan = 4096;             // targets a lone block scans quickly
constexpr int64_t kBruteQueriesPerBlock = 256;        // knn_cuda.cu's kThreads
inline bool brute_force_wins(int64_t B, int64_t N, int64_t M, int64_t multiprocessors) {
  if (N * M > kBruteMaxPairs) return false;
  const int64_t blocks = B * ((N + kBruteQueriesPerBlock - 1) / kBruteQueriesPerBlock);
  return M <= kBruteShortScan || blocks >= multiprocessors;
}

// True when a cloud's grid holds so many points per cell that its kd-tree searches faster.
inline bool grid_is_crowded(const GridParams& p, int64_t K) {
  // A grid search scans about this many points per query; past it the kd-tree is faster.
  return p.crowding > 8.0 * target_occupancy(K) + 8.0;
}

// True when `deferred` far queries (those the grid answers only by its slow fallback) into clouds
// of `points` points in all are worth building a kd-tree for.
inline bool deferred_needs_tree(int64_t deferred, int64_t points) { return deferred > 64 && deferred * 256 > points; }

// The op's outputs before the search: dists 0 and idx -1 everywhere (the padding values).
inline std::tuple<at::Tensor, at::Tensor> empty_knn_result(const at::Tensor& x, int64_t K) {
  return {at::zeros({x.size(0), x.size(1), K}, x.options()),
          at::full({x.size(0), x.size(1), K}, -1, x.options().dtype(at::kLong))};
}

// The CUDA backend's plan for D <= 3, one decision for the whole batch: grids from the ATen
// builder; if any cloud's grid is crowded, kd-trees for every cloud answer all queries;
// otherwise the grids answer, deferring the queries far from the data (those the grid answers
// only by its slow fallback), which then go to kd-trees when there are many of them, or to the
// grid's fallback. Queries run in the order of the structure they search (grid cells, or the
// tree's Morton order). Two passes are enough: `search` runs one of them,
//   search.grid(grid, order, fallback) -> the deferred queries of `order` (none with fallback),
//   search.tree(tree, order),
// with `order` the flat indices b * N + i of the queries as a 1-D int64 tensor. knn_cuda.cu's
// passes launch kernels; testing.cpp's run the CPU search engine below, so that CI without a GPU
// runs this plan (torch.ops.pointmetrics_testing.knn_portable).
//
// On CUDA every readback waits for the device, so the plan reads it at most three times on the
// grid path: the lengths of both clouds (checked here, the op's one policy) with the targets'
// bounds; each grid the builder tries (one, unless the points crowd a few cells); the deferred
// queries. The lengths are not checked before: a bad length only shapes masks until then.
template <typename Search>
void run_device_plan(const at::Tensor& xq, const at::Tensor& yq, const at::Tensor& xl, const at::Tensor& yl, int64_t K,
                     Search& search) {
  const at::Tensor rows = at::cat({cloud_bounds_rows(yq, yl), xl.to(at::kDouble).unsqueeze(1)}, 1).cpu();
  const CloudBounds bounds = cloud_bounds_from(rows.narrow(1, 0, 7), yq.size(1), "knn", "y_lengths");
  int64_t queries = 0;
  for (int64_t b = 0; b < rows.size(0); ++b) {
    const double n = rows[b][7].item<double>();
    TORCH_CHECK(n >= 0 && n <= static_cast<double>(xq.size(1)), "knn: x_lengths values must lie in [0, ", xq.size(1),
                "]");
    queries += static_cast<int64_t>(n);
  }
  const BatchGrid grid = build_grid_aten(yq, yl, bounds, K);
  bool crowded = false;
  for (const GridParams& p : grid.params) crowded |= grid_is_crowded(p, K);
  if (crowded) {
    const BatchTree tree = build_point_tree_aten(yq, yl);
    search.tree(tree, order_queries_aten(xq, xl, tree).contiguous());
    return;
  }
  const at::Tensor far = search.grid(grid, order_queries_aten(xq, xl, grid, queries).contiguous(), /*fallback=*/false);
  if (far.numel() == 0) return;
  int64_t points = 0;
  for (const GridParams& p : grid.params) points += p.num_points;
  if (deferred_needs_tree(far.numel(), points)) {
    search.tree(build_point_tree_aten(yq, yl), far);
  } else {
    search.grid(grid, far, /*fallback=*/true);
  }
}

// The CPU search engine (knn_cpu.cpp). Target structures: every cloud has a grid; the clouds
// with a slot >= 0 also have a kd-tree, which answers all their queries.
struct Targets {
  BatchGrid grid;
  BatchTree tree;             // over the clouds whose slot is >= 0
  std::vector<int64_t> slot;  // per cloud: its index in `tree`, or -1
};

// Searches the queries `order` (flat indices b * N + i into xq, (B, N, 3) in the compute dtype)
// in parallel, writing their rows of dists and idx (B, N, K). y (B, M, D) are the targets before
// padding, for warm starts. A grid query that needs the fallback is returned unanswered when
// `defer` is set (deferred queries, in the order of `order`), else the fallback answers it.
std::vector<int64_t> search_cpu(const Targets& t, const at::Tensor& xq, const at::Tensor& y,
                                const std::vector<int64_t>& yl, int64_t K, int64_t norm,
                                const std::vector<int64_t>& order, bool defer, at::Tensor& dists, at::Tensor& idx);

// A plan for D <= 3 on the CPU search engine: xq (B, N, 3) and yq (B, M, 3) in the compute dtype,
// y the targets as given (for warm starts), lengths on the host; writes dists and idx.
using CpuPlan = void (*)(const at::Tensor& xq, const at::Tensor& yq, const at::Tensor& y,
                         const std::vector<int64_t>& xl, const std::vector<int64_t>& yl, int64_t K, int64_t norm,
                         at::Tensor& dists, at::Tensor& idx);

// The knn op on the CPU with `plan` for D <= 3 and brute force for D > 3: the checks, compute
// dtype, host lengths and outputs that the CPU op (knn_cpu.cpp: the per-cloud CPU plan) and
// testing.cpp's knn_portable (run_device_plan on the CPU engine) share.
std::tuple<at::Tensor, at::Tensor> knn_on_cpu(CpuPlan plan, const at::Tensor& x, const at::Tensor& y,
                                              const at::Tensor& x_lengths, const at::Tensor& y_lengths, int64_t K,
                                              int64_t norm);

}  // namespace pm
