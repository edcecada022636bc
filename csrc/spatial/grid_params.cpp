// Choosing a grid's resolution (host only, shared by both builders).
#include <algorithm>
#include <cmath>

#include "grid_build.h"

namespace pm {

double target_occupancy(int64_t K) {
  // Measured on uniform and surface clouds: about two points per cell is fastest for K = 1;
  // larger K wants cells that hold roughly the K neighbours in the 3x3x3 block.
  return K <= 1 ? 2.0 : 1.0 + 0.5 * static_cast<double>(K);
}

int64_t max_cells(int64_t n) { return 4 * n + 64; }

namespace {

// Sets dims for cell size h (h grows until the cell count fits). Axes with (near) zero extent get one cell.
void set_resolution(GridParams& p, const double ext[3], double emax, double h, int64_t limit) {
  for (int iter = 0; iter < 200; ++iter) {
    double total = 1.0;
    for (int a = 0; a < 3; ++a) {
      const bool active = ext[a] > emax * 1e-9;
      const double cells = active ? std::ceil(ext[a] / h) : 1.0;
      p.dims[a] = static_cast<int32_t>(std::clamp(cells, 1.0, static_cast<double>(kMaxGridDim)));
      total *= p.dims[a];
    }
    if (total <= static_cast<double>(limit)) break;
    h *= std::max(1.01, std::cbrt(total / static_cast<double>(limit)));
  }
  p.h = h;
  p.inv_h = 1.0 / h;
}

void extents(const double lo[3], const double hi[3], double ext[3], double& emax, double& amax) {
  emax = 0.0;
  amax = 0.0;
  for (int a = 0; a < 3; ++a) {
    ext[a] = hi[a] > lo[a] ? hi[a] - lo[a] : 0.0;
    emax = std::max(emax, ext[a]);
    amax = std::max({amax, std::fabs(lo[a]), std::fabs(hi[a])});
  }
}

}  // namespace

GridParams choose_grid(const double lo[3], const double hi[3], int64_t n, double occupancy) {
  GridParams p{};
  double ext[3], emax, amax;
  extents(lo, hi, ext, emax, amax);
  for (int a = 0; a < 3; ++a) p.origin[a] = std::isfinite(lo[a]) ? lo[a] : 0.0;
  p.num_points = n;
  if (n <= 1 || !(emax > 0.0) || !std::isfinite(emax) || !std::isfinite(amax)) {
    p.dims[0] = p.dims[1] = p.dims[2] = 1;
    p.h = 1.0;
    p.inv_h = 1.0;
    p.gap_slack = 0.0;
    return p;
  }
  // Cell bounds origin + c * h and cell assignment are rounded to about 1e-16 * |coordinate|;
  // shrinking every gap by far more than that keeps box lower bounds valid.
  p.gap_slack = 1e-12 * (amax + emax);
  const double cells = std::clamp(static_cast<double>(n) / occupancy, 1.0, static_cast<double>(max_cells(n)));
  double volume = 1.0;
  int active = 0;
  for (int a = 0; a < 3; ++a) {
    if (ext[a] > emax * 1e-9) {
      volume *= ext[a];
      ++active;
    }
  }
  set_resolution(p, ext, emax, std::pow(volume / cells, 1.0 / active), max_cells(n));
  return p;
}

bool refine_grid(GridParams& p, const double lo[3], const double hi[3], int64_t n, int64_t nonempty, double occupancy) {
  if (nonempty <= 0 || p.h <= 0.0) return false;
  const double occ = static_cast<double>(n) / static_cast<double>(nonempty);
  const int64_t total = static_cast<int64_t>(p.dims[0]) * p.dims[1] * p.dims[2];
  if (occ <= 2.0 * occupancy || total >= max_cells(n)) return false;
  double ext[3], emax, amax;
  extents(lo, hi, ext, emax, amax);
  // Points on a surface fill cells in proportion to 1 / h^2: shrink h by sqrt of the excess.
  GridParams finer = p;
  set_resolution(finer, ext, emax, p.h / std::sqrt(occ / occupancy), max_cells(n));
  if (finer.dims[0] == p.dims[0] && finer.dims[1] == p.dims[1] && finer.dims[2] == p.dims[2]) return false;
  p = finer;
  return true;
}

}  // namespace pm
