// The auction assignment op: declarations shared by ops.cpp and the CPU/CUDA implementations.
#pragma once

#include <ATen/ATen.h>

namespace pm {

// Columns of the op's per-problem statistics (float64).
constexpr int kCost = 0;        // cost of the returned assignment (sum over matched pairs)
constexpr int kLowerBound = 1;  // dual lower bound on the optimal cost
constexpr int kEps = 2;         // eps of the last phase
constexpr int kRounds = 3;      // bidding rounds, all phases
constexpr int kPhases = 4;      // eps-scaling phases
constexpr int kComplete = 5;    // 1 if every bidder holds an object, 0 if max_rounds ran out
constexpr int kStats = 6;

void check_auction_args(const at::Tensor& x, const at::Tensor& y, const at::Tensor& x_lengths,
                        const at::Tensor& y_lengths, int64_t p, double rel_tol, int64_t max_rounds);

}  // namespace pm
