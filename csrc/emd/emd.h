// The auction_assignment op: argument checks and output layout shared by the CPU and CUDA backends
// (emd_cpu.cpp, emd_cuda.cu).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <tuple>
#include <vector>

namespace pm {

// One problem's outcome, besides its assignment.
struct AuctionStats {
  double cost = 0.0;         // cost of the returned assignment (sum over matched pairs)
  double lower_bound = 0.0;  // dual lower bound on the optimal cost
  double eps = 0.0;          // eps of the last phase
  int64_t rounds = 0;        // bidding rounds, all phases
  int64_t phases = 0;        // eps-scaling phases
  bool complete = true;      // every bidder holds an object (false: max_rounds ran out)
};

// The op's outputs, in the schema's order (ops.cpp): assignment (B, N) int64, cost, lower_bound,
// eps (B,) float64, rounds, phases (B,) int64, complete (B,) bool.
using AuctionResult = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// The outputs on the host from per-problem stats; the caller moves them to its device.
inline AuctionResult auction_result(const at::Tensor& assignment, const std::vector<AuctionStats>& stats) {
  const int64_t B = static_cast<int64_t>(stats.size());
  const auto f64 = at::TensorOptions().dtype(at::kDouble), i64 = at::TensorOptions().dtype(at::kLong);
  at::Tensor cost = at::empty({B}, f64), lower = at::empty({B}, f64), eps = at::empty({B}, f64);
  at::Tensor rounds = at::empty({B}, i64), phases = at::empty({B}, i64);
  at::Tensor complete = at::empty({B}, at::TensorOptions().dtype(at::kBool));
  for (int64_t b = 0; b < B; ++b) {
    cost.data_ptr<double>()[b] = stats[b].cost;
    lower.data_ptr<double>()[b] = stats[b].lower_bound;
    eps.data_ptr<double>()[b] = stats[b].eps;
    rounds.data_ptr<int64_t>()[b] = stats[b].rounds;
    phases.data_ptr<int64_t>()[b] = stats[b].phases;
    complete.data_ptr<bool>()[b] = stats[b].complete;
  }
  return {assignment, cost, lower, eps, rounds, phases, complete};
}

// Shapes, dtypes, devices and the scalar arguments; lengths are checked where they are read.
inline void check_auction_args(const at::Tensor& x, const at::Tensor& y, const at::Tensor& x_lengths,
                               const at::Tensor& y_lengths, int64_t p, double rel_tol, int64_t max_rounds) {
  TORCH_CHECK(x.dim() == 3 && y.dim() == 3 && x.size(0) == y.size(0) && x.size(2) == y.size(2) && x.size(2) >= 1,
              "auction_assignment: x and y must be (B, N, D) and (B, M, D)");
  TORCH_CHECK(at::isFloatingType(x.scalar_type()) && x.scalar_type() == y.scalar_type(),
              "auction_assignment: x and y must share a floating dtype");
  const int64_t B = x.size(0);
  TORCH_CHECK(x_lengths.sizes() == at::IntArrayRef({B}) && y_lengths.sizes() == at::IntArrayRef({B}) &&
                  x_lengths.scalar_type() == at::kLong && y_lengths.scalar_type() == at::kLong,
              "auction_assignment: lengths must be (B,) int64");
  for (const at::Tensor* t : {&y, &x_lengths, &y_lengths}) {
    TORCH_CHECK(t->device() == x.device(), "auction_assignment: all tensors must be on one device");
  }
  TORCH_CHECK(p == 1 || p == 2, "auction_assignment: p must be 1 or 2");
  TORCH_CHECK(rel_tol > 0.0, "auction_assignment: rel_tol must be positive");
  TORCH_CHECK(max_rounds >= 1, "auction_assignment: max_rounds must be at least 1");
}

// The CPU solve (emd_cuda.cu runs the same schedule on the device, auction_batch.h).
AuctionResult auction_assignment_cpu(const at::Tensor& x, const at::Tensor& y, const at::Tensor& x_lengths,
                                     const at::Tensor& y_lengths, int64_t p, double rel_tol, int64_t max_rounds);

}  // namespace pm
