// Building batch grids (host code). Two builders produce the same layout:
//   build_grid_cpu  - counting sort in plain C++, parallel over clouds (the CPU fast path);
//   build_grid_aten - ATen tensor ops only, so it runs on any device (the CUDA path). The test-only
//                     CPU op knn_portable (testing.cpp) runs it, so tests check it without a GPU.
// With the same input both produce identical tensors (both sorts are stable).
//
// What two builders buy. The ATen one is the only builder CUDA has (no kernel of its own to
// maintain) and runs on the CPU for the tests; on the CPU the counting sort is faster. No table in
// bench/results times the grid builders alone. A one-off timing on the project's 2-core CPU (torch
// 2.13 CPU build, 2 threads, K = 1, uniform clouds, best of 5, two runs) had the CPU knn op 1.6x-2.1x
// faster at 1e5 points each way and 1.3x-1.6x at 1e6 than knn_portable, the same search engine
// planned as on CUDA: ATen-built grids, ATen query order, one decision per batch (knn/knn.h).
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "core/parallel.h"
#include "grid.h"

namespace pm {

// All clouds of a batch in one set of flat arrays; GridParams locate each cloud inside them.
struct BatchGrid {
  at::Tensor pts;         // (T, 3) points sorted by (cloud, cell), compute dtype
  at::Tensor idx;         // (T,) int64 index of each sorted point within its cloud
  at::Tensor cell_start;  // (C + 1,) int32 positions into pts
  at::Tensor sat;         // (S,) int32 summed-volume tables of cell counts
  std::vector<GridParams> params;  // one per cloud, on the host
  at::Tensor params_bytes;         // the same params as raw bytes, on the grid's device

  template <typename scalar_t>
  GridView<scalar_t> view(int64_t b) const {
    const GridParams& p = params[b];
    return GridView<scalar_t>{p, pts.data_ptr<scalar_t>(), idx.data_ptr<int64_t>(),
                              cell_start.data_ptr<int32_t>() + p.cell_offset, sat.data_ptr<int32_t>() + p.sat_offset};
  }
};

// Points per cell the grid aims at for a K-nearest search.
double target_occupancy(int64_t K);
// Most cells a grid over n points may have (memory stays O(n)).
int64_t max_cells(int64_t n);

// Grid over n points with bounding box [lo, hi] and about n / occupancy cells.
GridParams choose_grid(const double lo[3], const double hi[3], int64_t n, double occupancy);
// After counting `nonempty` occupied cells: a finer grid if the points crowd into few cells
// (surfaces and curves fill far fewer cells than a volume). Returns false if `p` is kept.
bool refine_grid(GridParams& p, const double lo[3], const double hi[3], int64_t n, int64_t nonempty, double occupancy);

// `points`: (B, M, 3) contiguous, float or double. Lengths give the valid prefix of each cloud.
BatchGrid build_grid_cpu(const at::Tensor& points, const std::vector<int64_t>& lengths, int64_t K);

// What the ATen builder needs on the host besides the points: each cloud's valid count and the box
// of its valid points (+inf / -inf when empty), (B * 3) each.
struct CloudBounds {
  std::vector<int64_t> n;
  std::vector<double> lo, hi;
};
// (B, 7) double rows lo, hi, length of (B, M, 3) points on their device: read back with whatever
// else the caller needs in the same synchronisation, then handed to cloud_bounds_from, which
// checks the lengths against `limit` (an error naming op and argument, as host_lengths gives).
at::Tensor cloud_bounds_rows(const at::Tensor& points, const at::Tensor& lengths);
CloudBounds cloud_bounds_from(const at::Tensor& rows, int64_t limit, const char* op, const char* name);

// The ATen builder, with the bounds read back already, or reading them itself (one more
// synchronisation). `lengths` stays on the points' device.
BatchGrid build_grid_aten(const at::Tensor& points, const at::Tensor& lengths, const CloudBounds& bounds, int64_t K);
BatchGrid build_grid_aten(const at::Tensor& points, const at::Tensor& lengths, int64_t K);

// Flat indices b * N + i of the valid queries, sorted by the cell of the target grid they fall in,
// so that consecutive queries touch the same cells. (B, N, 3) queries, (B,) lengths; `total` the
// number of valid queries if the caller knows it (else it is read back).
at::Tensor order_queries_aten(const at::Tensor& queries, const at::Tensor& lengths, const BatchGrid& grid,
                              int64_t total = -1);
std::vector<int64_t> order_queries_cpu(const at::Tensor& queries, const std::vector<int64_t>& lengths,
                                       const BatchGrid& grid);

}  // namespace pm
