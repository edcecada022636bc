// Greedy radius reduction (DTUeval-python's downsampling): visiting points in index order, a point
// is kept unless an earlier kept point lies within the radius (distance <= radius, boundary
// inclusive, compared as squared distances). Points are bucketed in a uniform grid of cells one
// radius wide, so each point's candidates are the points of its 27 neighbouring cells.
//
// Both backends decide in rounds (greedy_round_step below), walking the points in cell order, so
// that a point's candidates lie next to it in memory. The CPU (greedy_cpu.cpp) runs rounds on all
// cores while they make progress and finishes the rest in index order; the CUDA backend
// (greedy_cuda.cu) runs rounds until none is left; torch.ops.pointmetrics_testing.
// greedy_radius_keep_portable (csrc/testing.cpp) runs the CUDA schedule on the CPU.
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>

#include "core/common.h"

namespace pm {

// The points bucketed by cell, built with ATen ops on the points' device. A slot is a position in
// cell order: slots are sorted by (cell key, point index), so a cell's slots are contiguous and in
// index order, and the cells of one grid row (x, y fixed, z consecutive) have consecutive keys.
struct RadiusGrid {
  at::Tensor points;    // (N, 3) the points in slot order, in the input dtype
  at::Tensor index;     // (N,) int64 point index of each slot
  at::Tensor slot_key;  // (N,) int64 cell key of each slot
  at::Tensor keys;      // (C,) sorted distinct cell keys
  at::Tensor start;     // (C + 1,) slot range of each cell
  int64_t dims[3];      // cells per axis
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
  at::Tensor cell = ((p - lo) / radius).floor().to(at::kLong).clamp_min_(0);
  for (int a = 0; a < 3; ++a) cell.select(1, a).clamp_max_(g.dims[a] - 1);
  const at::Tensor key = (cell.select(1, 0) * g.dims[1] + cell.select(1, 1)) * g.dims[2] + cell.select(1, 2);
  // Sorted by (key, index): a stable sort keeps the index order within each cell.
  const auto sorted = key.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false);
  g.slot_key = std::get<0>(sorted);
  g.index = std::get<1>(sorted);
  const auto unique = at::unique_consecutive(g.slot_key, /*return_inverse=*/false, /*return_counts=*/true);
  g.keys = std::get<0>(unique);
  g.start = at::cat({at::zeros({1}, key.options()), std::get<2>(unique).cumsum(0)});
  g.points = points.index_select(0, g.index);
  return g;
}

// First position in the sorted `keys` whose key is >= `key` (count if none).
PM_HD int64_t first_key_at_least(const int64_t* keys, int64_t count, int64_t key) {
  int64_t lo = 0, hi = count;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (keys[mid] < key) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

// The grid's arrays as raw pointers (on the grid's device), for the per-slot step below.
template <typename scalar_t>
struct RadiusGridView {
  const scalar_t* points;
  const int64_t* index;
  const int64_t* slot_key;
  const int64_t* keys;
  const int64_t* start;
  int64_t count;
  int64_t dims[3];
};

template <typename scalar_t>
RadiusGridView<scalar_t> grid_view(const RadiusGrid& g) {
  return RadiusGridView<scalar_t>{g.points.data_ptr<scalar_t>(), g.index.data_ptr<int64_t>(),
                                  g.slot_key.data_ptr<int64_t>(), g.keys.data_ptr<int64_t>(),
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

// A point's state in the rounds, stored by slot. Kept and removed are final.
constexpr int8_t kUndecided = 0, kKept = 1, kRemoved = 2;

// Finds each grid row's first cell by binary search (CUDA threads, the portable driver).
struct SearchRows {
  PM_HD int64_t operator()(const int64_t* keys, int64_t count, int /*row*/, int64_t key) const {
    return first_key_at_least(keys, count, key);
  }
};

// One round's step for the undecided point in slot s, reading the other slots' states: removed as
// soon as an earlier point within the radius is kept; still undecided while such a point is
// undecided; kept once every one is removed. The rule is the sequential one read backwards (a
// point is kept exactly when no earlier kept point is within the radius), and a decision reads
// only final states of earlier points, so the rounds give the sequential mask whichever states a
// round happens to see: states written earlier in the same round (CUDA threads, CPU threads) or
// only those of the rounds before (the portable driver). Every round decides at least the lowest
// undecided point, whose earlier neighbours are all decided. A step that reads only final states
// (every earlier point decided) never returns kUndecided.
//
// The 27 neighbouring cells are read as 9 grid rows: cells (x + dx, y + dy, z - 1 .. z + 1) have
// consecutive keys, and find_first(keys, count, row, key) gives the first cell of row 0..8 whose
// key is >= key (SearchRows, or the CPU's cursors, which exploit that the keys asked for a row only
// grow as slots are visited in cell order).
template <typename scalar_t, typename State, typename FindFirst>
PM_HD int8_t greedy_round_step(const RadiusGridView<scalar_t>& g, int64_t s, double r2, State state,
                               FindFirst&& find_first) {
  const int64_t i = g.index[s];
  const scalar_t* q = g.points + 3 * s;
  const int64_t key = g.slot_key[s];
  const int64_t z = key % g.dims[2], y = (key / g.dims[2]) % g.dims[1], x = key / g.dims[2] / g.dims[1];
  const int64_t below = z > 0 ? 1 : 0, above = z + 1 < g.dims[2] ? 1 : 0;
  bool pending = false;
  for (int dx = -1; dx <= 1; ++dx) {
    if (x + dx < 0 || x + dx >= g.dims[0]) continue;
    for (int dy = -1; dy <= 1; ++dy) {
      if (y + dy < 0 || y + dy >= g.dims[1]) continue;
      const int64_t middle = key + (dx * g.dims[1] + dy) * g.dims[2];
      const int row = 3 * (dx + 1) + dy + 1;
      for (int64_t c = find_first(g.keys, g.count, row, middle - below); c < g.count && g.keys[c] <= middle + above;
           ++c) {
        for (int64_t t = g.start[c]; t < g.start[c + 1] && g.index[t] < i; ++t) {
          if (!within(q, g.points + 3 * t, r2)) continue;
          const int8_t other = state[t];
          if (other == kKept) return kRemoved;
          if (other == kUndecided) pending = true;
        }
      }
    }
  }
  return pending ? kUndecided : kKept;
}

}  // namespace pm
