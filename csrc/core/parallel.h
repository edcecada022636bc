// Host-side parallel loops shared by the builders.
#pragma once

#include <ATen/Parallel.h>

#include <cstdint>

namespace pm {

// Runs fn(b) for every cloud: in parallel over clouds when there are enough of them, else one
// cloud at a time so that fn's own parallel loops get the threads (nested at::parallel_for runs
// inline, so a parallel loop over a single cloud would serialise everything inside it).
template <typename Fn>
void for_each_cloud(int64_t B, const Fn& fn) {
  if (B < at::get_num_threads()) {
    for (int64_t b = 0; b < B; ++b) fn(b);
    return;
  }
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) fn(b);
  });
}

}  // namespace pm
