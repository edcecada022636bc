// The host side of the device auction: a batch's problems laid out in device arrays
// (auction_rounds.h), and emd_cpu.cpp's eps-scaling control run over all problems at once. The
// device steps (start a phase, run rounds, sum costs, sum dual bounds) are virtual: emd_cuda.cu
// implements them as kernels, one block per problem; auction_portable.cpp as plain loops over the
// same steps, so that the tests run the device schedule on the CPU and compare it with the CPU op.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <type_traits>
#include <vector>

#include "auction_rounds.h"
#include "emd.h"
#include "spatial/point_tree_build.h"

namespace pm {

class BatchAuction {
 public:
  // `launch_work`: bids a run_rounds call applies at most before it returns (it may stop inside a
  // round), which bounds each CUDA launch; the result does not depend on it.
  BatchAuction(const at::Tensor& x, const at::Tensor& y, const at::Tensor& x_lengths, const at::Tensor& y_lengths,
               int64_t p, double rel_tol, int64_t max_rounds, int64_t launch_work);
  virtual ~BatchAuction() = default;

  AuctionResult solve();

 protected:
  // The device steps, each over the problems listed in `active` ((K,) int64 on the device).
  virtual void start_phases(const at::Tensor& active) = 0;
  // Rounds of each listed problem's phase (eps: (B,) double), until the phase ends, stops, or
  // the problem has applied launch_work bids in this call (a round can span calls).
  virtual void run_rounds(const at::Tensor& active, const at::Tensor& eps) = 0;
  virtual void costs(const at::Tensor& active) = 0;        // sums[b]: the cost of b's assignment
  virtual void dual_bounds(const at::Tensor& active) = 0;  // sums[b]: the dual bound at b's prices

  // Calls fn(std::integral_constant<int, P>{}, (scalar_t*)nullptr) for this batch's p and dtype.
  template <typename Fn>
  void dispatch(const Fn& fn) const {
    AT_DISPATCH_FLOATING_TYPES(bidders_.scalar_type(), "auction_assignment", [&] {
      if (p_ == 1) {
        fn(std::integral_constant<int, 1>{}, static_cast<scalar_t*>(nullptr));
      } else {
        fn(std::integral_constant<int, 2>{}, static_cast<scalar_t*>(nullptr));
      }
    });
  }

  template <typename scalar_t>
  AuctionArrays<scalar_t> arrays() const {
    const bool has_tree = tree_.pts.defined();
    return AuctionArrays<scalar_t>{bidders_.data_ptr<scalar_t>(),
                                   objects_.data_ptr<scalar_t>(),
                                   n_dev_.data_ptr<int64_t>(),
                                   m_dev_.data_ptr<int64_t>(),
                                   L_,
                                   static_cast<int>(bidders_.size(2)),
                                   has_tree ? tree_.pts.data_ptr<scalar_t>() : nullptr,
                                   has_tree ? tree_.idx.data_ptr<int64_t>() : nullptr,
                                   has_tree ? tree_.lo.data_ptr<scalar_t>() : nullptr,
                                   has_tree ? tree_.hi.data_ptr<scalar_t>() : nullptr,
                                   has_tree ? tree_.leaves : 0,
                                   has_tree ? slot_of_.data_ptr<int64_t>() : nullptr,
                                   has_tree ? min_price_.data_ptr<double>() : nullptr,
                                   prices_.data_ptr<double>(),
                                   owner_.data_ptr<int64_t>(),
                                   assigned_.data_ptr<int64_t>(),
                                   queue_.data_ptr<int64_t>(),
                                   repriced_.data_ptr<int64_t>(),
                                   reinterpret_cast<Bid*>(bids_.data_ptr<uint8_t>()),
                                   terms_.data_ptr<double>(),
                                   reinterpret_cast<RoundCounters*>(counters_.data_ptr<int64_t>())};
  }

  int64_t p_, max_rounds_, launch_work_;
  double rel_tol_;
  int64_t B_ = 0, N_ = 0, L_ = 0;
  std::vector<int64_t> n_, m_;  // bidders and objects per problem (the smaller set bids)
  std::vector<double> largest_;  // an upper bound on every cost of problem b
  at::Tensor swapped_;           // (B,) bool on the device: problem b's bidders are y (x has more points)
  at::Tensor bidders_, objects_, n_dev_, m_dev_;
  BatchTree tree_;  // undefined tensors when D != 3
  at::Tensor slot_of_, min_price_, prices_, owner_, assigned_, queue_, repriced_, bids_, terms_, counters_, sums_;

 private:
  at::Tensor device_list(const std::vector<int64_t>& problems) const;
  std::vector<double> host_sums(const std::vector<int64_t>& problems) const;
  // Runs the listed problems' current phase to its end; returns each one's status.
  std::vector<int64_t> finish_phase(const std::vector<int64_t>& problems, const std::vector<EpsSchedule>& schedule);
  at::Tensor assignment() const;
};

// Test-only (csrc/testing.cpp): BatchAuction with the device steps run as loops on the CPU.
AuctionResult auction_assignment_portable(const at::Tensor& x, const at::Tensor& y, const at::Tensor& x_lengths,
                                          const at::Tensor& y_lengths, int64_t p, double rel_tol, int64_t max_rounds,
                                          int64_t launch_work);

}  // namespace pm
