// CUDA auction assignment: BatchAuction (auction_batch.h) with its device steps as kernels, one
// block per problem. In a round the block's threads compute the queued bidders' bids in parallel
// (each a search of the price tree, on the device), then one thread applies them in queue order,
// recomputing the stale ones: emd_cpu.cpp's schedule step for step (auction_rounds.h), so CUDA
// returns the CPU's assignment. A launch stops once its problem has applied kLaunchWork bids, inside
// a round if need be, and the host launches again, so no launch runs long enough for a display
// watchdog; the host reads the problems' counters once per launch.
//
// Where the time goes: the rounds of a phase depend on each other (each bid sees the prices that
// the bids before it left), and late rounds have a few bidders each, so one problem's solve is a
// chain of short rounds whatever the number of threads; a batch's problems run side by side on
// separate multiprocessors. bench_gpu.py measures it.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "auction_batch.h"

namespace pm {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kLaunchWork = int64_t(1) << 16;  // bids one problem applies per launch, then the host relaunches

template <int P, typename scalar_t>
__global__ void start_phase_kernel(AuctionArrays<scalar_t> a, const int64_t* active) {
  AuctionProblem<P, scalar_t> problem(a, active[blockIdx.x]);
  for (int64_t j = threadIdx.x; j < problem.m; j += blockDim.x) problem.start_slot(j);
  if (threadIdx.x == 0) problem.start_counters();
}

template <int P, typename scalar_t>
__global__ void rounds_kernel(AuctionArrays<scalar_t> a, const int64_t* active, const double* eps_of,
                              int64_t max_rounds, int64_t work_budget) {
  const int64_t b = active[blockIdx.x];
  AuctionProblem<P, scalar_t> problem(a, b);
  const double eps = eps_of[b];
  __shared__ int step_shared;        // problem.next_step's answer; kNoRound ends the launch
  __shared__ int64_t queued_shared;  // the round's queue length
  int64_t work = 0;                  // bids applied in this launch (thread 0's count is the one used)
  while (true) {
    if (threadIdx.x == 0) {
      step_shared = work < work_budget ? problem.next_step(max_rounds) : kNoRound;
      queued_shared = problem.c->count;
    }
    __syncthreads();
    const int step = step_shared;
    if (step == kNoRound) break;
    if (step == kFreshRound) {
      const int64_t queued = queued_shared;
      for (int64_t u = threadIdx.x; u < queued; u += blockDim.x) problem.compute_bid(u, eps);
      __syncthreads();  // every bid is written before any is applied
    }
    if (threadIdx.x == 0) work += problem.apply_bids(eps, work_budget - work);
    __syncthreads();  // the shared answers are read by every thread before thread 0 rewrites them
  }
}

// sums[b]: problem b's assignment cost (BOUND false) or dual bound (BOUND true); the terms in
// parallel, their sum by one thread in index order, as the CPU adds them.
template <int P, typename scalar_t, bool BOUND>
__global__ void sum_kernel(AuctionArrays<scalar_t> a, const int64_t* active, double* sums) {
  const int64_t b = active[blockIdx.x];
  AuctionProblem<P, scalar_t> problem(a, b);
  for (int64_t i = threadIdx.x; i < problem.n; i += blockDim.x) {
    if constexpr (BOUND) {
      problem.bound_term(i);
    } else {
      problem.cost_term(i);
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) sums[b] = BOUND ? problem.bound_sum() : problem.cost_sum();
}

class CudaAuction final : public BatchAuction {
 public:
  using BatchAuction::BatchAuction;

 private:
  void start_phases(const at::Tensor& active) override {
    dispatch([&](auto p, auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      start_phase_kernel<decltype(p)::value, T>
          <<<blocks(active), kThreads, 0, stream()>>>(arrays<T>(), active.data_ptr<int64_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }

  void run_rounds(const at::Tensor& active, const at::Tensor& eps) override {
    dispatch([&](auto p, auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      rounds_kernel<decltype(p)::value, T><<<blocks(active), kThreads, 0, stream()>>>(
          arrays<T>(), active.data_ptr<int64_t>(), eps.data_ptr<double>(), max_rounds_, launch_work_);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }

  void costs(const at::Tensor& active) override { launch_sums<false>(active); }
  void dual_bounds(const at::Tensor& active) override { launch_sums<true>(active); }

  template <bool BOUND>
  void launch_sums(const at::Tensor& active) {
    dispatch([&](auto p, auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      sum_kernel<decltype(p)::value, T, BOUND><<<blocks(active), kThreads, 0, stream()>>>(
          arrays<T>(), active.data_ptr<int64_t>(), sums_.data_ptr<double>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }

  static unsigned blocks(const at::Tensor& active) { return static_cast<unsigned>(active.numel()); }
  static cudaStream_t stream() { return c10::cuda::getCurrentCUDAStream(); }
};

}  // namespace

AuctionResult auction_assignment_cuda(const at::Tensor& x, const at::Tensor& y, const at::Tensor& x_lengths,
                                      const at::Tensor& y_lengths, int64_t p, double rel_tol, int64_t max_rounds) {
  check_auction_args(x, y, x_lengths, y_lengths, p, rel_tol, max_rounds);
  const c10::cuda::CUDAGuard guard(x.device());
  return CudaAuction(x, y, x_lengths, y_lengths, p, rel_tol, max_rounds, kLaunchWork).solve();
}

TORCH_LIBRARY_IMPL(pointmetrics, CUDA, m) { m.impl("auction_assignment", &auction_assignment_cuda); }

}  // namespace pm
