// Morton (Z-order) codes, shared by the CPU builder and mirrored op for op by the ATen builder
// (point_tree_build_aten.cpp), so that both sort points identically.
#pragma once

#include <cmath>
#include <cstdint>

namespace pm {

constexpr int64_t kMortonMax = (int64_t(1) << 21) - 1;  // 21 bits per axis, 63 bits per code

// Spreads the low 21 bits of v so that bit k moves to bit 3k.
inline int64_t spread_bits(int64_t v) {
  v &= 0x1fffff;
  v = (v | (v << 32)) & 0x1f00000000ffffLL;
  v = (v | (v << 16)) & 0x1f0000ff0000ffLL;
  v = (v | (v << 8)) & 0x100f00f00f00f00fLL;
  v = (v | (v << 4)) & 0x10c30c30c30c30c3LL;
  v = (v | (v << 2)) & 0x1249249249249249LL;
  return v;
}

// Quantised coordinate along one axis: floor((v - lo) * scale) clamped to [0, kMortonMax]; NaN -> 0.
inline int64_t morton_cell(double v, double lo, double scale) {
  double t = (v - lo) * scale;
  if (!(t >= 0.0)) t = 0.0;
  if (t > static_cast<double>(kMortonMax)) t = static_cast<double>(kMortonMax);
  // t >= 0 here, so truncation is floor; std::floor is a libm call on baseline x86-64 (no SSE4.1)
  // and was half the time of ordering a million queries.
  return static_cast<int64_t>(t);
}

inline int64_t morton_code(double x, double y, double z, const double lo[3], double scale) {
  return spread_bits(morton_cell(x, lo[0], scale)) | (spread_bits(morton_cell(y, lo[1], scale)) << 1) |
         (spread_bits(morton_cell(z, lo[2], scale)) << 2);
}

// Cells per unit length so that the largest extent spans all 2^21 cells; 0 for a point-like cloud.
inline double morton_scale(const double lo[3], const double hi[3]) {
  double ext = 0.0;
  for (int a = 0; a < 3; ++a) ext = std::fmax(ext, hi[a] - lo[a]);
  return (ext > 0.0 && std::isfinite(ext)) ? static_cast<double>(kMortonMax) / ext : 0.0;
}

}  // namespace pm
