// Exact k-nearest-neighbour search in a uniform grid, written once for host and device.
//
// A target cloud is counting-sorted into the cells of a uniform grid over its first three
// coordinates (clouds with D < 3 are padded with zeros). A query scans its own cell and the 26
// around it, skipping cells that cannot hold a closer point; that settles almost every query.
// The rest (queries far from the data, or in sparse regions) fall back to a depth-first search
// over boxes of cells, where a summed-volume table of cell counts skips empty boxes in O(1).
//
// Exactness with floating point: cell assignment and box bounds are computed in double, box
// lower bounds are shrunk by a relative and an absolute slack before pruning, and ties are broken
// by the smaller original index. The result is therefore the exact (distance, index)-minimum
// under the distances this code computes, whatever the visiting order, on CPU and CUDA alike.
#pragma once

#include <cmath>
#include <limits>
#include <cstdint>

#include "core/topk.h"

namespace pm {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Geometry of one cloud's grid. Plain data: it is copied to the device as raw bytes.
struct GridParams {
  double origin[3];     // lower corner of cell (0, 0, 0)
  double h;             // cell edge length
  double inv_h;         // 1 / h
  double gap_slack;     // absolute amount by which box gaps are shrunk (rounding of cell bounds)
  int32_t dims[3];      // cells along x, y, z (x varies fastest in the linear cell index)
  int32_t pad_;
  int64_t cell_offset;  // first cell of this cloud in the batch's concatenated cell_start array
  int64_t sat_offset;   // first entry of this cloud's summed-volume table in the batch array
  int64_t num_points;   // points in this cloud
  double crowding;      // sum of squared cell counts / num_points: points in a point's own cell, on average
};

// Non-owning view of one cloud's grid inside a batch grid.
template <typename scalar_t>
struct GridView {
  GridParams p;
  const scalar_t* pts;        // all sorted points of the batch, 3 coordinates each
  const int64_t* idx;         // original index (within its cloud) of each sorted point
  const int32_t* cell_start;  // this cloud's cells: points of cell c are [cell_start[c], cell_start[c+1])
  const int32_t* sat;         // this cloud's summed-volume table, (dims+1) entries per axis
};

struct CellBox {
  int32_t lo[3];
  int32_t hi[3];  // exclusive
};

PM_HD int32_t cell_coord(const GridParams& p, double v, int a) {
  const double t = mul(sub(v, p.origin[a]), p.inv_h);
  if (!(t >= 0.0)) return 0;  // also catches NaN
  if (t >= static_cast<double>(p.dims[a])) return p.dims[a] - 1;
  const int32_t c = static_cast<int32_t>(t);
  return c < p.dims[a] ? c : p.dims[a] - 1;
}

// Spatial extent of a range of cells along axis a. Boundary cells extend to infinity because
// points outside the grid's box are clamped into them.
PM_HD double cell_lo(const GridParams& p, int a, int32_t c) {
  return c <= 0 ? -kInf : p.origin[a] + c * p.h;
}
PM_HD double cell_hi(const GridParams& p, int a, int32_t c_last) {
  return c_last >= p.dims[a] - 1 ? kInf : p.origin[a] + (c_last + 1) * p.h;
}

// Distance along one axis from coordinate q to the interval [lo, hi], shrunk by the slack.
PM_HD double axis_gap(const GridParams& p, double q, double lo, double hi) {
  double g = 0.0;
  if (q < lo) g = lo - q;
  if (q > hi) g = q - hi;
  g -= p.gap_slack;
  return g > 0.0 ? g : 0.0;
}

// Scans the points of cells first..last (consecutive linear indices, so one run of points).
template <typename scalar_t, int NORM, typename Top>
PM_HOT void scan_cells(const GridView<scalar_t>& g, int64_t first, int64_t last, const scalar_t* q,
                      Top& top) {
  const int32_t end = g.cell_start[last + 1];
  for (int32_t s = g.cell_start[first]; s < end; ++s) {
    top.consider(point_distance<NORM>(q, g.pts + 3 * static_cast<int64_t>(s), 3), g.idx[s]);
  }
}

template <typename scalar_t, int NORM, typename Top>
PM_HOT void scan_cell(const GridView<scalar_t>& g, int64_t cell, const scalar_t* q, Top& top) {
  scan_cells<scalar_t, NORM, Top>(g, cell, cell, q, top);
}

PM_HD int64_t linear_cell(const GridParams& p, int32_t x, int32_t y, int32_t z) {
  return (static_cast<int64_t>(z) * p.dims[1] + y) * p.dims[0] + x;
}

PM_HD int64_t sat_at(const GridParams& p, const int32_t* sat, int32_t x, int32_t y, int32_t z) {
  return sat[(static_cast<int64_t>(z) * (p.dims[1] + 1) + y) * (p.dims[0] + 1) + x];
}

// Number of points in the cells of `b`, by inclusion-exclusion on the summed-volume table.
PM_HD int64_t box_count(const GridParams& p, const int32_t* sat, const CellBox& b) {
  const int32_t x0 = b.lo[0], y0 = b.lo[1], z0 = b.lo[2], x1 = b.hi[0], y1 = b.hi[1], z1 = b.hi[2];
  return sat_at(p, sat, x1, y1, z1) - sat_at(p, sat, x0, y1, z1) - sat_at(p, sat, x1, y0, z1) -
         sat_at(p, sat, x1, y1, z0) + sat_at(p, sat, x0, y0, z1) + sat_at(p, sat, x0, y1, z0) +
         sat_at(p, sat, x1, y0, z0) - sat_at(p, sat, x0, y0, z0);
}

template <int NORM>
PM_HD double cell_box_lower_bound(const GridParams& p, const double q[3], const CellBox& b) {
  double lb = 0.0;
  for (int a = 0; a < 3; ++a) {
    lb += gap_term<NORM>(axis_gap(p, q[a], cell_lo(p, a, b.lo[a]), cell_hi(p, a, b.hi[a] - 1)));
  }
  return lb;
}

PM_HD bool box_inside(const CellBox& inner, const CellBox& outer) {
  for (int a = 0; a < 3; ++a) {
    if (inner.lo[a] < outer.lo[a] || inner.hi[a] > outer.hi[a]) return false;
  }
  return true;
}

constexpr int kMaxGridLog2 = 20;
constexpr int32_t kMaxGridDim = int32_t(1) << kMaxGridLog2;  // cells along one axis (grid_params.cpp)
// Boxes are halved along their longest axis, so a path from the whole grid to one cell takes at
// most 3 * kMaxGridLog2 splits; each split pops one box and pushes two.
constexpr int kFallbackStack = 3 * kMaxGridLog2 + 2;

// Depth-first search over boxes of cells, nearer half first, for the cells not in `done`.
template <typename scalar_t, int NORM, typename Top>
PM_HD void fallback_search(const GridView<scalar_t>& g, const scalar_t* q, const double qd[3],
                           const CellBox& done, Top& top) {
  const GridParams& p = g.p;
  CellBox stack[kFallbackStack];
  int sp = 0;
  stack[sp++] = CellBox{{0, 0, 0}, {p.dims[0], p.dims[1], p.dims[2]}};
  while (sp > 0) {
    const CellBox b = stack[--sp];
    if (box_inside(b, done)) continue;
    if (box_count(p, g.sat, b) == 0) continue;
    if (cannot_beat(cell_box_lower_bound<NORM>(p, qd, b), static_cast<double>(top.threshold()))) continue;
    int axis = 0;
    for (int a = 1; a < 3; ++a) {
      if (b.hi[a] - b.lo[a] > b.hi[axis] - b.lo[axis]) axis = a;
    }
    const int32_t extent = b.hi[axis] - b.lo[axis];
    if (extent == 1) {  // a single cell, not in `done`
      scan_cell<scalar_t, NORM, Top>(g, linear_cell(p, b.lo[0], b.lo[1], b.lo[2]), q, top);
      continue;
    }
    if (sp + 2 > kFallbackStack) {  // cannot happen for dims <= kMaxGridDim; scan exhaustively to stay exact
      for (int32_t z = b.lo[2]; z < b.hi[2]; ++z)
        for (int32_t y = b.lo[1]; y < b.hi[1]; ++y)
          for (int32_t x = b.lo[0]; x < b.hi[0]; ++x) {
            const CellBox c{{x, y, z}, {x + 1, y + 1, z + 1}};
            if (!box_inside(c, done)) scan_cell<scalar_t, NORM, Top>(g, linear_cell(p, x, y, z), q, top);
          }
      continue;
    }
    const int32_t mid = b.lo[axis] + extent / 2;
    CellBox lower = b, upper = b;
    lower.hi[axis] = mid;
    upper.lo[axis] = mid;
    const bool lower_first = qd[axis] < p.origin[axis] + mid * p.h;
    stack[sp++] = lower_first ? upper : lower;  // pushed first, popped last
    stack[sp++] = lower_first ? lower : upper;
  }
}

// Exact K-nearest search of query q (3 coordinates) in one cloud's grid; results go to `top`.
// Returns false, with `top` incomplete, if the query needs the fallback search (it lies far from
// the points) and `fallback` is false: the caller then finishes it some other way.
template <typename scalar_t, int NORM, typename Top>
PM_HD bool grid_knn(const GridView<scalar_t>& g, const scalar_t* q, Top& top, bool fallback = true) {
  const GridParams& p = g.p;
  if (g.p.num_points == 0) return true;
  const double qd[3] = {static_cast<double>(q[0]), static_cast<double>(q[1]), static_cast<double>(q[2])};
  int32_t c[3];
  double gap[3][3];  // gap[a][o]: axis-a gap term to the cell at offset o - 1 from the query's cell
  for (int a = 0; a < 3; ++a) {
    c[a] = cell_coord(p, qd[a], a);
    for (int o = 0; o < 3; ++o) {
      const int32_t cc = c[a] + o - 1;
      gap[a][o] = (cc < 0 || cc >= p.dims[a])
                      ? kInf
                      : gap_term<NORM>(axis_gap(p, qd[a], cell_lo(p, a, cc), cell_hi(p, a, cc)));
    }
  }
  // Own cell first, then the 3x3 rows of three cells along x, nearest rows first. The cells of a
  // row are adjacent in memory, so the cells of a row that can still hold a better point (always
  // a contiguous range containing the middle one) are scanned as one run of points.
  const int64_t own = linear_cell(p, c[0], c[1], c[2]);
  scan_cell<scalar_t, NORM, Top>(g, own, q, top);
  constexpr int kRows[9][2] = {{1, 1}, {0, 1}, {2, 1}, {1, 0}, {1, 2}, {0, 0}, {2, 0}, {0, 2}, {2, 2}};
  for (int r = 0; r < 9; ++r) {
    const int oy = kRows[r][0], oz = kRows[r][1];
    const double row_lb = gap[1][oy] + gap[2][oz];
    const double thr = static_cast<double>(top.threshold());
    if (row_lb >= kInf || cannot_beat(row_lb, thr)) continue;
    bool beatable[3];
    for (int ox = 0; ox < 3; ++ox) beatable[ox] = gap[0][ox] < kInf && !cannot_beat(row_lb + gap[0][ox], thr);
    const int64_t mid = linear_cell(p, c[0], c[1] + oy - 1, c[2] + oz - 1);
    if (r == 0) {  // the own row: its middle cell is done
      if (beatable[0]) scan_cell<scalar_t, NORM, Top>(g, mid - 1, q, top);
      if (beatable[2]) scan_cell<scalar_t, NORM, Top>(g, mid + 1, q, top);
      continue;
    }
    if (!beatable[1]) continue;
    scan_cells<scalar_t, NORM, Top>(g, beatable[0] ? mid - 1 : mid, beatable[2] ? mid + 1 : mid, q, top);
  }
  // Done if nothing outside the scanned 3x3x3 block can beat the K-th best.
  CellBox done;
  double outside = kInf;  // lower bound on the distance to any cell outside the block
  for (int a = 0; a < 3; ++a) {
    done.lo[a] = max_val<int32_t>(c[a] - 1, 0);
    done.hi[a] = min_val<int32_t>(c[a] + 2, p.dims[a]);
    if (done.lo[a] > 0) {  // cells below the block: the half-line (-inf, lower face]
      outside = min_val(outside, gap_term<NORM>(axis_gap(p, qd[a], -kInf, p.origin[a] + done.lo[a] * p.h)));
    }
    if (done.hi[a] < p.dims[a]) {  // cells above the block: [upper face, +inf)
      outside = min_val(outside, gap_term<NORM>(axis_gap(p, qd[a], p.origin[a] + done.hi[a] * p.h, kInf)));
    }
  }
  if (outside >= kInf) return true;  // the block is the whole grid
  if (top.full() && cannot_beat(outside, static_cast<double>(top.threshold()))) return true;
  if (!fallback) return false;
  fallback_search<scalar_t, NORM, Top>(g, q, qd, done, top);
  return true;
}

}  // namespace pm
