// Greedy radius reduction (DTUeval-python's downsampling): visiting points in index order, a point
// is kept unless an earlier kept point lies within the radius (distance <= radius, boundary
// inclusive, compared as squared distances). Points are bucketed in a uniform grid of cells one
// radius wide, so each point's candidates are the points of its 27 neighbouring cells.
//
// The CPU (greedy_cpu.cpp) makes the decisions one point at a time, in index order. The CUDA
// backend (greedy_cuda.cu) makes them in parallel rounds, each undecided point taking
// greedy_round_step below; torch.ops.pointmetrics_testing.greedy_radius_keep_portable
// (csrc/testing.cpp) runs the same rounds on the CPU.
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>

#include "core/common.h"

namespace pm {

// The points' grid, built with ATen ops on the points' device: the host plan both backends share.
struct RadiusGrid {
  at::Tensor cell;       // (N, 3) int64 cell coordinates of each point
  at::Tensor order;      // (N,) point indices sorted by cell key, then index
  at::Tensor keys;       // (C,) sorted distinct cell keys
  at::Tensor start;      // (C + 1,) range of each cell in `order`
  int64_t dims[3];       // cells per axis
};

// Checks the arguments and buckets the points; cells one radius wide.
inline RadiusGrid build_radius_grid(const at::Tensor& points, double radius) {
  TORCH_CHECK(points.dim() == 2 && points.size(1) == 3 && at::isFloatingType(points.scalar_type()),
              "greedy_radius_keep: points must be (N, 3) floating point");
  TORCH_CHECK(radius > 0.0 && std::isfinite(radius), "greedy_radius_keep: radius must be positive and finite");
  RadiusGrid g;
  const at::Tensor p = points.to(at::kDouble);
  const at::Tensor lo = std::get<0>(p.min(0)), hi = std::get<0>(p.max(0));
  const at::Tensor extent = ((hi - lo) / radius).floor().to(at::kLong).cpu() + 1;
  const int64_t* e = extent.data_ptr<int64_t>();
  const double cells = static_cast<double>(e[0]) * static_cast<double>(e[1]) * static_cast<double>(e[2]);
  TORCH_CHECK(cells < 4e18, "greedy_radius_keep: the radius is too small for the points' extent");
  for (int a = 0; a < 3; ++a) g.dims[a] = e[a];
  g.cell = ((p - lo) / radius).floor().to(at::kLong).clamp_min(0);
  for (int a = 0; a < 3; ++a) g.cell.select(1, a).clamp_max_(g.dims[a] - 1);
  const at::Tensor key = (g.cell.select(1, 0) * g.dims[1] + g.cell.select(1, 1)) * g.dims[2] + g.cell.select(1, 2);
  // Sorted by (key, index): a stable sort keeps the index order within each cell.
  const auto sorted = key.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false);
  g.order = std::get<1>(sorted);
  const auto unique = at::unique_consecutive(std::get<0>(sorted), /*return_inverse=*/false, /*return_counts=*/true);
  g.keys = std::get<0>(unique);
  g.start = at::cat({at::zeros({1}, key.options()), std::get<2>(unique).cumsum(0)});
  return g;
}

// Key of cell (x, y, z); the caller keeps coordinates within dims.
PM_HD int64_t cell_key(int64_t x, int64_t y, int64_t z, const int64_t* dims) { return (x * dims[1] + y) * dims[2] + z; }

// Index of `key` among the sorted distinct keys, or -1.
PM_HD int64_t find_cell(const int64_t* keys, int64_t count, int64_t key) {
  int64_t lo = 0, hi = count;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (keys[mid] < key) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo < count && keys[lo] == key ? lo : -1;
}

// The grid's arrays as raw pointers (on the grid's device), for the per-point step below.
struct RadiusGridView {
  const int64_t* cell;
  const int64_t* order;
  const int64_t* keys;
  const int64_t* start;
  int64_t count;
  int64_t dims[3];
};

inline RadiusGridView grid_view(const RadiusGrid& g) {
  return RadiusGridView{g.cell.data_ptr<int64_t>(), g.order.data_ptr<int64_t>(), g.keys.data_ptr<int64_t>(),
                        g.start.data_ptr<int64_t>(), g.keys.numel(), {g.dims[0], g.dims[1], g.dims[2]}};
}

template <typename scalar_t>
PM_HD bool within(const scalar_t* a, const scalar_t* b, double r2) {
  double acc = 0.0;
  for (int d = 0; d < 3; ++d) {
    const double diff = sub(static_cast<double>(a[d]), static_cast<double>(b[d]));
    acc = add(acc, mul(diff, diff));
  }
  return acc <= r2;
}

// A point's state in the parallel rounds. Kept and removed are final.
constexpr int8_t kUndecided = 0, kKept = 1, kRemoved = 2;

// One round's step for undecided point i, reading the other points' states: removed as soon as an
// earlier point within the radius is kept; still undecided while such a point is undecided; kept
// once every one is removed. The rule is the sequential one read backwards (i is kept exactly when
// no earlier kept point is within the radius), and a decision reads only final states of earlier
// points, so the rounds give the sequential mask whichever states a round happens to see: the
// states written earlier in the same round (CUDA threads, State = volatile int8_t*) or only
// those of the rounds before (the portable driver, State = const int8_t*). Every round decides
// at least the lowest undecided point, whose earlier neighbours are all decided.
template <typename scalar_t, typename State>
PM_HD int8_t greedy_round_step(const scalar_t* p, int64_t i, const RadiusGridView& g, double r2, State state) {
  const int64_t* c = g.cell + 3 * i;
  bool pending = false;
  for (int64_t x = max_val<int64_t>(c[0] - 1, 0); x <= min_val<int64_t>(c[0] + 1, g.dims[0] - 1); ++x) {
    for (int64_t y = max_val<int64_t>(c[1] - 1, 0); y <= min_val<int64_t>(c[1] + 1, g.dims[1] - 1); ++y) {
      for (int64_t z = max_val<int64_t>(c[2] - 1, 0); z <= min_val<int64_t>(c[2] + 1, g.dims[2] - 1); ++z) {
        const int64_t k = find_cell(g.keys, g.count, cell_key(x, y, z, g.dims));
        if (k < 0) continue;
        for (int64_t s = g.start[k]; s < g.start[k + 1]; ++s) {
          const int64_t j = g.order[s];
          if (j >= i || !within(p + 3 * i, p + 3 * j, r2)) continue;
          const int8_t sj = state[j];
          if (sj == kKept) return kRemoved;
          if (sj == kUndecided) pending = true;
        }
      }
    }
  }
  return pending ? kUndecided : kKept;
}

}  // namespace pm
