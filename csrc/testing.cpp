// Test-only entry points, in their own library namespace (torch.ops.pointmetrics_testing) so that
// the production schema (ops.cpp) holds only what users call. Each runs a device algorithm on the
// CPU, so that CI without a GPU exercises the code the CUDA backend runs and compares it with the
// CPU's own algorithm.
#include <torch/library.h>

#include <vector>

#include "core/lengths.h"
#include "spatial/point_tree_build.h"

namespace pm {
namespace {

// The whole point tree from the CPU builder (portable=false) or from the ATen builder the CUDA
// backend runs (portable=true): idx, pts, lo, hi, split_axis, split_val. Both must be identical.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> point_tree(
    const at::Tensor& points, const at::Tensor& lengths, bool portable) {
  TORCH_CHECK(points.dim() == 3 && points.size(2) == 3 && at::isFloatingType(points.scalar_type()),
              "point_tree: points must be (B, N, 3) floating point");
  TORCH_CHECK(lengths.dim() == 1 && lengths.size(0) == points.size(0) && lengths.scalar_type() == at::kLong,
              "point_tree: lengths must be (B,) int64");
  const at::Tensor pts = points.contiguous();
  BatchTree t;
  if (portable) {
    t = build_point_tree_aten(pts, lengths.contiguous());
  } else {
    t = build_point_tree_cpu(pts, host_lengths(lengths, points.size(1), "point_tree", "lengths"));
  }
  return {t.idx, t.pts, t.lo, t.hi, t.split_axis, t.split_val};
}

}  // namespace

TORCH_LIBRARY(pointmetrics_testing, m) {
  m.def("point_tree(Tensor points, Tensor lengths, bool portable) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(pointmetrics_testing, CPU, m) { m.impl("point_tree", &point_tree); }

}  // namespace pm
