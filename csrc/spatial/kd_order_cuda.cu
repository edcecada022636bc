// CUDA kd_order: the ATen point-tree builder's slot order, built on the device.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "core/lengths.h"
#include "kd_order.h"
#include "point_tree_build.h"

namespace pm {

at::Tensor kd_order_cuda(const at::Tensor& points, const at::Tensor& lengths) {
  check_kd_order_args(points, lengths);
  const c10::cuda::CUDAGuard guard(points.device());
  return build_point_tree_aten(points.contiguous(), checked_lengths(lengths, points.size(1), "kd_order", "lengths")).idx;
}

TORCH_LIBRARY_IMPL(pointmetrics, CUDA, m) { m.impl("kd_order", &kd_order_cuda); }

}  // namespace pm
