// Greedy radius reduction (DTUeval-python's downsampling): visiting points in index order, a point
// is kept unless an earlier kept point lies within the radius (distance <= radius, boundary
// inclusive, compared as squared distances). Points are bucketed in a uniform grid of cells one
// radius wide, so each point's candidates are the points of its 27 neighbouring cells.
#pragma once

#include <ATen/ATen.h>

#include "core/common.h"

namespace pm {

// The points' grid, shared by the CPU and CUDA implementations (built with ATen ops).
struct RadiusGrid {
  at::Tensor cell;       // (N, 3) int64 cell coordinates of each point
  at::Tensor order;      // (N,) point indices sorted by cell key, then index
  at::Tensor keys;       // (C,) sorted distinct cell keys
  at::Tensor start;      // (C + 1,) range of each cell in `order`
  int64_t dims[3];       // cells per axis
};

RadiusGrid build_radius_grid(const at::Tensor& points, double radius);

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

template <typename scalar_t>
PM_HD bool within(const scalar_t* a, const scalar_t* b, double r2) {
  double acc = 0.0;
  for (int d = 0; d < 3; ++d) {
    const double diff = sub(static_cast<double>(a[d]), static_cast<double>(b[d]));
    acc = add(acc, mul(diff, diff));
  }
  return acc <= r2;
}

}  // namespace pm
