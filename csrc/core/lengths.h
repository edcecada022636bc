// One policy for per-cloud lengths on every device: a value outside [0, limit] is an error naming
// the op and the argument, never silently clamped. The CPU ops read lengths on the host anyway;
// on CUDA the check costs one synchronisation (the Python layer has already checked them, so it
// only guards direct calls of torch.ops.pointmetrics.*).
#pragma once

#include <ATen/ATen.h>

namespace pm {

inline at::Tensor checked_lengths(const at::Tensor& lengths, int64_t limit, const char* op, const char* name) {
  TORCH_CHECK(lengths.numel() == 0 || lengths.ge(0).logical_and(lengths.le(limit)).all().item<bool>(), op, ": ",
              name, " values must lie in [0, ", limit, "]");
  return lengths.contiguous();
}

}  // namespace pm
