// The device auction's portable driver: BatchAuction (auction_batch.h) with its device steps run as
// plain loops on the CPU, each problem's "block" one thread after another: the per-bidder steps
// for every bidder, then the once-per-round steps. emd_cuda.cu runs the same steps as kernels.
// Test-only: reached through torch.ops.pointmetrics_testing.auction_assignment_portable.
#include "auction_batch.h"

namespace pm {

namespace {

class PortableAuction final : public BatchAuction {
 public:
  using BatchAuction::BatchAuction;

 private:
  // step(problem, b) for every problem b listed in `active`.
  template <typename Step>
  void each_problem(const at::Tensor& active, const Step& step) {
    const at::Tensor list = active.cpu();
    dispatch([&](auto p, auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      const AuctionArrays<T> a = arrays<T>();
      for (int64_t k = 0; k < list.numel(); ++k) {
        const int64_t b = list.data_ptr<int64_t>()[k];
        AuctionProblem<decltype(p)::value, T> problem(a, b);
        step(problem, b);
      }
    });
  }

  void start_phases(const at::Tensor& active) override {
    each_problem(active, [](auto& problem, int64_t) {
      for (int64_t j = 0; j < problem.m; ++j) problem.start_slot(j);
      problem.start_counters();
    });
  }

  void run_rounds(const at::Tensor& active, const at::Tensor& eps) override {
    const at::Tensor e = eps.cpu();
    each_problem(active, [&](auto& problem, int64_t b) {
      const double eps_b = e.data_ptr<double>()[b];
      int64_t work = 0;
      while (work < launch_work_) {
        const int step = problem.next_step(max_rounds_);
        if (step == kNoRound) break;
        if (step == kFreshRound) {
          for (int64_t u = 0; u < problem.c->count; ++u) problem.compute_bid(u, eps_b);
        }
        work += problem.apply_bids(eps_b, launch_work_ - work);
      }
    });
  }

  void costs(const at::Tensor& active) override {
    each_problem(active, [&](auto& problem, int64_t b) {
      for (int64_t i = 0; i < problem.n; ++i) problem.cost_term(i);
      sums_.data_ptr<double>()[b] = problem.cost_sum();
    });
  }

  void dual_bounds(const at::Tensor& active) override {
    each_problem(active, [&](auto& problem, int64_t b) {
      for (int64_t i = 0; i < problem.n; ++i) problem.bound_term(i);
      sums_.data_ptr<double>()[b] = problem.bound_sum();
    });
  }
};

}  // namespace

AuctionResult auction_assignment_portable(const at::Tensor& x, const at::Tensor& y, const at::Tensor& x_lengths,
                                          const at::Tensor& y_lengths, int64_t p, double rel_tol, int64_t max_rounds,
                                          int64_t launch_work) {
  TORCH_CHECK(x.device().is_cpu(), "auction_assignment_portable: runs on CPU tensors");
  return PortableAuction(x, y, x_lengths, y_lengths, p, rel_tol, max_rounds, launch_work).solve();
}

}  // namespace pm
