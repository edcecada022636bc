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

// Two lengths tensors of one op checked with a single synchronisation.
inline void check_lengths_pair(const at::Tensor& a, int64_t a_limit, const char* a_name, const at::Tensor& b,
                               int64_t b_limit, const char* b_name, const char* op) {
  const at::Tensor ok = at::stack({a.ge(0).logical_and(a.le(a_limit)).all(), b.ge(0).logical_and(b.le(b_limit)).all()});
  const at::Tensor host = ok.cpu();
  TORCH_CHECK(host[0].item<bool>(), op, ": ", a_name, " values must lie in [0, ", a_limit, "]");
  TORCH_CHECK(host[1].item<bool>(), op, ": ", b_name, " values must lie in [0, ", b_limit, "]");
}

// The lengths (int64, any device), checked, copied to the host.
inline std::vector<int64_t> host_lengths(const at::Tensor& lengths, int64_t limit, const char* op, const char* name) {
  const at::Tensor l = lengths.cpu().contiguous();
  std::vector<int64_t> out(l.data_ptr<int64_t>(), l.data_ptr<int64_t>() + l.numel());
  for (int64_t v : out) TORCH_CHECK(v >= 0 && v <= limit, op, ": ", name, " values must lie in [0, ", limit, "]");
  return out;
}

}  // namespace pm
