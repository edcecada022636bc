// CUDA greedy radius reduction. The sequential rule "kept unless an earlier kept point is within
// the radius" is evaluated in parallel rounds, one thread per slot (cell order): an undecided point
// becomes removed as soon as an earlier neighbour is kept, and kept once every earlier neighbour is
// removed. Decisions are final and each depends only on earlier points' final decisions, so the
// result is exactly the sequential one, whatever the thread timing. Rounds continue until no point
// is undecided (a shuffled order, as DTU's protocol uses, needs few). The per-slot step is greedy.h's
// greedy_round_step, which the portable driver (csrc/testing.cpp) runs on the CPU.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "greedy.h"

namespace pm {

namespace {

template <typename scalar_t>
__global__ void greedy_round(RadiusGridView<scalar_t> g, int64_t n, double r2, int8_t* status, int* undecided) {
  const int64_t s = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (s >= n || status[s] != kUndecided) return;
  volatile int8_t* state = status;  // other threads finalise points while this one reads
  const int8_t decision = greedy_round_step(g, s, r2, state, SearchRows{});
  if (decision == kUndecided) {
    atomicAdd(undecided, 1);
  } else {
    state[s] = decision;
  }
}

}  // namespace

at::Tensor greedy_radius_keep_cuda(const at::Tensor& points_in, double radius) {
  const c10::cuda::CUDAGuard guard(points_in.device());
  const at::Tensor points = points_in.contiguous();
  const int64_t n = points.size(0);
  if (n == 0) return at::ones({0}, points.options().dtype(at::kBool));
  const RadiusGrid g = build_radius_grid(points, radius);
  at::Tensor status = at::zeros({n}, points.options().dtype(at::kChar));
  at::Tensor undecided = at::zeros({1}, points.options().dtype(at::kInt));
  const int threads = 256;
  const int64_t blocks = (n + threads - 1) / threads;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, points.scalar_type(), "greedy_radius_keep_cuda", [&] {
    const RadiusGridView<scalar_t> view = grid_view<scalar_t>(g);
    while (true) {
      undecided.zero_();
      greedy_round<scalar_t><<<blocks, threads, 0, stream>>>(view, n, radius * radius, status.data_ptr<int8_t>(),
                                                             undecided.data_ptr<int>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      if (undecided.item<int>() == 0) break;
    }
  });
  return at::empty({n}, status.options().dtype(at::kBool)).index_copy_(0, g.index, status == kKept);
}

TORCH_LIBRARY_IMPL(pointmetrics, CUDA, m) { m.impl("greedy_radius_keep", &greedy_radius_keep_cuda); }

}  // namespace pm
