// The auction_assignment op: argument checks and output layout shared by the CPU and CUDA backends
// (emd_cpu.cpp, emd_cuda.cu).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <tuple>

namespace pm {

// Columns of the op's per-problem statistics (float64).
constexpr int kCost = 0;        // cost of the returned assignment (sum over matched pairs)
constexpr int kLowerBound = 1;  // dual lower bound on the optimal cost
constexpr int kEps = 2;         // eps of the last phase
constexpr int kRounds = 3;      // bidding rounds, all phases
constexpr int kPhases = 4;      // eps-scaling phases
constexpr int kComplete = 5;    // 1 if every bidder holds an object, 0 if max_rounds ran out
constexpr int kStats = 6;

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

// The CPU solve; the CUDA entry copies the points to the host and calls it.
std::tuple<at::Tensor, at::Tensor> auction_assignment_cpu(const at::Tensor& x, const at::Tensor& y,
                                                          const at::Tensor& x_lengths, const at::Tensor& y_lengths,
                                                          int64_t p, double rel_tol, int64_t max_rounds);

}  // namespace pm
