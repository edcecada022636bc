// CUDA greedy radius reduction. The sequential rule "kept unless an earlier kept point is within
// the radius" is evaluated in parallel rounds: an undecided point becomes removed as soon as an
// earlier neighbour is kept, and kept once every earlier neighbour is removed. Decisions are
// final and each depends only on earlier points' final decisions, so the result is exactly the
// sequential one, whatever the thread timing. Rounds continue until no point is undecided (a
// shuffled order, as DTU's protocol uses, needs few).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "greedy.h"

namespace pm {

namespace {

constexpr int8_t kUndecided = 0, kKept = 1, kRemoved = 2;

struct GridView {
  const int64_t* cell;
  const int64_t* order;
  const int64_t* keys;
  const int64_t* start;
  int64_t count;
  int64_t dims[3];
};

template <typename scalar_t>
__global__ void greedy_round(const scalar_t* __restrict__ p, int64_t n, GridView g, double r2, int8_t* status,
                             int* undecided) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n || status[i] != kUndecided) return;
  volatile int8_t* state = status;  // other threads finalise points while this one reads
  const int64_t* c = g.cell + 3 * i;
  bool pending = false;
  for (int64_t x = max(c[0] - 1, int64_t(0)); x <= min(c[0] + 1, g.dims[0] - 1); ++x) {
    for (int64_t y = max(c[1] - 1, int64_t(0)); y <= min(c[1] + 1, g.dims[1] - 1); ++y) {
      for (int64_t z = max(c[2] - 1, int64_t(0)); z <= min(c[2] + 1, g.dims[2] - 1); ++z) {
        const int64_t k = find_cell(g.keys, g.count, cell_key(x, y, z, g.dims));
        if (k < 0) continue;
        for (int64_t s = g.start[k]; s < g.start[k + 1]; ++s) {
          const int64_t j = g.order[s];
          if (j >= i || !within(p + 3 * i, p + 3 * j, r2)) continue;
          const int8_t sj = state[j];
          if (sj == kKept) {
            state[i] = kRemoved;
            return;
          }
          if (sj == kUndecided) pending = true;
        }
      }
    }
  }
  if (pending) {
    atomicAdd(undecided, 1);
  } else {
    state[i] = kKept;
  }
}

}  // namespace

at::Tensor greedy_radius_keep_cuda(const at::Tensor& points_in, double radius) {
  const c10::cuda::CUDAGuard guard(points_in.device());
  const at::Tensor points = points_in.contiguous();
  const int64_t n = points.size(0);
  if (n == 0) return at::ones({0}, points.options().dtype(at::kBool));
  const RadiusGrid g = build_radius_grid(points, radius);
  GridView view{g.cell.data_ptr<int64_t>(), g.order.data_ptr<int64_t>(), g.keys.data_ptr<int64_t>(),
                g.start.data_ptr<int64_t>(), g.keys.numel(), {g.dims[0], g.dims[1], g.dims[2]}};
  at::Tensor status = at::zeros({n}, points.options().dtype(at::kChar));
  at::Tensor undecided = at::zeros({1}, points.options().dtype(at::kInt));
  const int threads = 256;
  const int64_t blocks = (n + threads - 1) / threads;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "greedy_radius_keep_cuda", [&] {
    while (true) {
      undecided.zero_();
      greedy_round<scalar_t><<<blocks, threads, 0, stream>>>(points.data_ptr<scalar_t>(), n, view, radius * radius,
                                                             status.data_ptr<int8_t>(), undecided.data_ptr<int>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      if (undecided.item<int>() == 0) break;
    }
  });
  return status == kKept;
}

TORCH_LIBRARY_IMPL(pointmetrics, CUDA, m) { m.impl("greedy_radius_keep", &greedy_radius_keep_cuda); }

}  // namespace pm
