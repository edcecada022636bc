// CUDA entry of the auction assignment op. The solve runs on the host: the Gauss-Seidel auction
// of emd_cpu.cpp is sequential by design (that is what keeps collapsed and duplicated point sets
// from taking a round per point), and the earlier one-block-per-problem Jacobi kernel had neither
// its termination guarantee nor any run on a GPU. Copying the points (24 bytes each) and the
// assignment back costs little against the solve, and CUDA returns exactly the CPU's assignment.
// A device auction that reproduces this schedule is future work (see the README's EMD section).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "emd.h"

namespace pm {

AuctionResult auction_assignment_cuda(const at::Tensor& x, const at::Tensor& y, const at::Tensor& x_lengths,
                                      const at::Tensor& y_lengths, int64_t p, double rel_tol, int64_t max_rounds) {
  check_auction_args(x, y, x_lengths, y_lengths, p, rel_tol, max_rounds);
  const c10::cuda::CUDAGuard guard(x.device());
  const auto [assignment, cost, lower_bound, eps, rounds, phases, complete] =
      auction_assignment_cpu(x.cpu(), y.cpu(), x_lengths.cpu(), y_lengths.cpu(), p, rel_tol, max_rounds);
  const at::Device d = x.device();
  return {assignment.to(d), cost.to(d), lower_bound.to(d), eps.to(d), rounds.to(d), phases.to(d), complete.to(d)};
}

TORCH_LIBRARY_IMPL(pointmetrics, CUDA, m) { m.impl("auction_assignment", &auction_assignment_cuda); }

}  // namespace pm
