// The auction_assignment op: argument checks and output layout shared by the CPU and CUDA backends
// (emd_cpu.cpp, emd_cuda.cu).
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
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

constexpr const char* kCostsNotFinite =
    "auction_assignment: the points' costs are not finite in double precision "
    "(NaN or Inf coordinates, or coordinates beyond about 1e154)";
constexpr const char* kNoObjectToBid = "auction_assignment: a bidder found no object to bid for (non-finite costs)";

// One problem's eps-scaling schedule (Bertsekas). Both backends take every decision from it, on
// the same numbers, so they run the same phases.
struct EpsSchedule {
  double target;  // the last phase's eps
  double eps;     // the current phase's eps

  // `nearest`: the nearest objects' costs, a lower bound on the optimum; the final eps keeps m * eps
  // within the tolerance of it. The first eps is a fifth of the largest possible cost: starting
  // from local costs invites price wars when some points must travel far.
  EpsSchedule(double rel_tol, double nearest, int64_t m, double largest)
      : target(std::max(rel_tol * nearest / static_cast<double>(m), 1e-12 * largest + 1e-300)),
        eps(std::max(largest / 5.0, target)) {}

  bool last() const { return eps <= target; }
  // eps-complementary slackness gives cost <= OPT + m eps; once that could be within the
  // tolerance, the dual bound is worth computing.
  bool bound_worth_computing(double rel_tol, int64_t m, double cost) const {
    return last() || static_cast<double>(m) * eps <= rel_tol * cost;
  }
  // After the dual bound `lower`: whether the assignment of cost `cost` is good enough.
  bool done(double rel_tol, double cost, double lower) const {
    return last() || cost - lower <= rel_tol * std::max(lower, 0.0);
  }
  void next() { eps = std::max(eps / 5.0, target); }
};

// The CPU solve (emd_cuda.cu runs the same schedule on the device, auction_batch.h).
AuctionResult auction_assignment_cpu(const at::Tensor& x, const at::Tensor& y, const at::Tensor& x_lengths,
                                     const at::Tensor& y_lengths, int64_t p, double rel_tol, int64_t max_rounds);

}  // namespace pm
