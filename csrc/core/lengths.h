// One policy for per-cloud lengths on every device: a value outside [0, limit] is an error naming
// the op and the argument, never silently clamped. The CPU ops read lengths on the host anyway
// (host_lengths); on CUDA the check costs one synchronisation (checked_lengths; the Python layer
// has already checked them, so it only guards direct calls of torch.ops.pointmetrics.*).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace pm {

// The lengths, checked, as a tensor on their own device.
inline at::Tensor checked_lengths(const at::Tensor& lengths, int64_t limit, const char* op, const char* name) {
  TORCH_CHECK(lengths.numel() == 0 || lengths.ge(0).logical_and(lengths.le(limit)).all().item<bool>(), op, ": ",
              name, " values must lie in [0, ", limit, "]");
  return lengths.contiguous();
}

// The lengths (int64, any device), checked, copied to the host.
inline std::vector<int64_t> host_lengths(const at::Tensor& lengths, int64_t limit, const char* op, const char* name) {
  const at::Tensor l = lengths.cpu().contiguous();
  std::vector<int64_t> out(l.data_ptr<int64_t>(), l.data_ptr<int64_t>() + l.numel());
  for (int64_t v : out) TORCH_CHECK(v >= 0 && v <= limit, op, ": ", name, " values must lie in [0, ", limit, "]");
  return out;
}

}  // namespace pm
