// Host helpers shared by several op families (ATen, no device code).
#pragma once

#include <ATen/ATen.h>

namespace pm {

// Points (B, N, D), D <= 3, as (B, N, 3) contiguous in `dtype`, missing coordinates zero: the
// layout of the grid, point-tree and price-tree searches. Distances do not change (a zero
// coordinate adds exactly zero), so D < 3 clouds take the 3D paths.
inline at::Tensor as_3d_points(const at::Tensor& points, at::ScalarType dtype) {
  at::Tensor p = points.to(dtype);
  if (p.size(2) < 3) p = at::constant_pad_nd(p, {0, 3 - p.size(2)}, 0);
  return p.contiguous();
}

}  // namespace pm
