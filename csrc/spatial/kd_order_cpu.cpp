// CPU kd_order: the CPU point-tree builder's slot order.
#include <torch/library.h>

#include <vector>

#include "core/lengths.h"
#include "kd_order.h"
#include "point_tree_build.h"

namespace pm {

at::Tensor kd_order_cpu(const at::Tensor& points, const at::Tensor& lengths) {
  check_kd_order_args(points, lengths);
  const std::vector<int64_t> n = host_lengths(lengths, points.size(1), "kd_order", "lengths");
  return kd_slot_order_cpu(points.contiguous(), n);
}

TORCH_LIBRARY_IMPL(pointmetrics, CPU, m) { m.impl("kd_order", &kd_order_cpu); }

}  // namespace pm
