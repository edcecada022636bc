// BatchAuction (auction_batch.h): the problems laid out in device arrays, and emd_cpu.cpp's
// eps-scaling control (its `solve`) run over every problem of the batch at once. Each decision is
// the CPU's, made from the same sums in the same order, so the device returns the CPU's assignment.
#include "auction_batch.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/host.h"
#include "core/lengths.h"

namespace pm {

namespace {

// Pads dimension 1 of (B, n, D) points to `L` rows of zeros.
at::Tensor pad_rows(const at::Tensor& points, int64_t L) {
  return at::constant_pad_nd(points, {0, 0, 0, L - points.size(1)}, 0).contiguous();
}

}  // namespace

BatchAuction::BatchAuction(const at::Tensor& x_in, const at::Tensor& y_in, const at::Tensor& x_lengths,
                           const at::Tensor& y_lengths, int64_t p, double rel_tol, int64_t max_rounds,
                           int64_t launch_work)
    : p_(p), max_rounds_(max_rounds), launch_work_(launch_work), rel_tol_(rel_tol) {
  check_auction_args(x_in, y_in, x_lengths, y_lengths, p, rel_tol, max_rounds);
  TORCH_CHECK(launch_work >= 1, "auction_assignment: launch_work must be at least 1");
  // Points with D < 3 are padded with zeros, as on the CPU: same costs, and the price tree applies.
  const at::Tensor x = x_in.size(2) < 3 ? as_3d_points(x_in, x_in.scalar_type()) : x_in.contiguous();
  const at::Tensor y = y_in.size(2) < 3 ? as_3d_points(y_in, y_in.scalar_type()) : y_in.contiguous();
  B_ = x.size(0);
  N_ = x.size(1);
  const int64_t M = y.size(1), D = x.size(2);
  L_ = std::max(N_, M);
  const std::vector<int64_t> xl = host_lengths(x_lengths, N_, "auction_assignment", "x_lengths");
  const std::vector<int64_t> yl = host_lengths(y_lengths, M, "auction_assignment", "y_lengths");
  std::vector<int64_t> swap(B_);
  n_.resize(B_);
  m_.resize(B_);
  for (int64_t b = 0; b < B_; ++b) {  // the smaller set bids, x on a tie (as emd_cpu.cpp)
    swap[b] = xl[b] > yl[b];
    n_[b] = std::min(xl[b], yl[b]);
    m_[b] = std::max(xl[b], yl[b]);
  }
  const at::Device device = x.device();
  const auto i64 = x_lengths.options().dtype(at::kLong), f64 = x.options().dtype(at::kDouble);
  swapped_ = at::tensor(swap, at::kLong).to(device).to(at::kBool);
  const at::Tensor xs = pad_rows(x, L_), ys = pad_rows(y, L_);
  bidders_ = at::where(swapped_.view({B_, 1, 1}), ys, xs).contiguous();
  objects_ = at::where(swapped_.view({B_, 1, 1}), xs, ys).contiguous();
  n_dev_ = at::tensor(n_, at::kLong).to(device);
  m_dev_ = at::tensor(m_, at::kLong).to(device);

  // The box around both sets of each problem (NaN if a coordinate is), read in one copy. With no
  // slots at all (L == 0) every problem is empty and needs no bound (amin refuses an empty dim).
  const double inf = std::numeric_limits<double>::infinity();
  largest_.assign(B_, 0.0);
  const at::Tensor slots = at::arange(L_, i64).unsqueeze(0);
  const at::Tensor real = (slots < n_dev_.unsqueeze(1)).unsqueeze(2);  // (B, L, 1) valid bidders
  const at::Tensor held = (slots < m_dev_.unsqueeze(1)).unsqueeze(2);  // valid objects
  const at::Tensor bd = bidders_.to(at::kDouble), od = objects_.to(at::kDouble);
  at::Tensor lo = at::empty({B_, D}, f64), hi = at::empty({B_, D}, f64);
  if (L_ > 0) {
    lo = at::minimum(at::where(real, bd, inf).amin(1), at::where(held, od, inf).amin(1));
    hi = at::maximum(at::where(real, bd, -inf).amax(1), at::where(held, od, -inf).amax(1));
  }
  const at::Tensor box = at::stack({lo, hi}).cpu().contiguous();  // (2, B, D)
  for (int64_t b = 0; b < B_ && L_ > 0; ++b) {
    const double* lo_b = box.data_ptr<double>() + b * D;
    const double* hi_b = lo_b + B_ * D;
    const int d = static_cast<int>(D);
    largest_[b] = p == 1 ? box_cost_bound<1>(lo_b, hi_b, d) : box_cost_bound<2>(lo_b, hi_b, d);
  }

  if (D == 3 && L_ > 0) {  // the price tree over each problem's objects, and each object's slot in it
    tree_ = build_point_tree_aten(objects_, m_dev_);
    const int64_t S = tree_.idx.size(1);
    const at::Tensor target = at::where(tree_.idx >= 0, tree_.idx, L_);  // empty slots write a spare column
    slot_of_ = at::zeros({B_, L_ + 1}, i64)
                   .scatter_(1, target, at::arange(S, i64).unsqueeze(0).expand({B_, S}).contiguous())
                   .narrow(1, 0, L_)
                   .contiguous();
    const at::Tensor occupied = tree_.lo.select(2, 0) <= tree_.hi.select(2, 0);  // empty nodes: lo > hi
    min_price_ = at::where(occupied, at::zeros({}, f64), at::full({}, inf, f64)).contiguous();
  }
  prices_ = at::zeros({B_, L_}, f64);
  owner_ = at::full({B_, L_}, -1, i64);
  assigned_ = at::full({B_, L_}, -1, i64);
  queue_ = at::zeros({B_, 2, L_}, i64);
  repriced_ = at::full({B_, L_}, -1, i64);
  bids_ = at::empty({B_ * L_ * static_cast<int64_t>(sizeof(Bid))}, x.options().dtype(at::kByte));
  terms_ = at::zeros({B_, L_}, f64);
  counters_ = at::zeros({B_, kCounterFields}, i64);
  sums_ = at::zeros({B_}, f64);
}

at::Tensor BatchAuction::device_list(const std::vector<int64_t>& problems) const {
  return at::tensor(problems, at::kLong).to(n_dev_.device());
}

std::vector<double> BatchAuction::host_sums(const std::vector<int64_t>& problems) const {
  const at::Tensor sums = sums_.cpu();
  std::vector<double> out;
  for (int64_t b : problems) out.push_back(sums.data_ptr<double>()[b]);
  return out;
}

std::vector<int64_t> BatchAuction::finish_phase(const std::vector<int64_t>& problems,
                                                const std::vector<EpsSchedule>& schedule) {
  std::vector<double> eps(B_);
  for (int64_t b = 0; b < B_; ++b) eps[b] = schedule[b].eps;
  const at::Tensor eps_dev = at::tensor(eps, at::kDouble).to(n_dev_.device());
  start_phases(device_list(problems));
  std::vector<int64_t> pending = problems, status(B_, kRunning);
  while (!pending.empty()) {
    run_rounds(device_list(pending), eps_dev);
    const at::Tensor counters = counters_.cpu();  // one readback per launch
    const auto* c = reinterpret_cast<const RoundCounters*>(counters.data_ptr<int64_t>());
    std::vector<int64_t> still;
    for (int64_t b : pending) {
      status[b] = c[b].status;
      if (c[b].status == kRunning && c[b].count > 0) still.push_back(b);
    }
    pending.swap(still);
  }
  return status;
}

AuctionResult BatchAuction::solve() {
  std::vector<AuctionStats> stats(B_);
  std::vector<int64_t> live;  // problems with at least one bidder
  for (int64_t b = 0; b < B_; ++b) {
    if (n_[b] > 0) live.push_back(b);
  }
  std::vector<EpsSchedule> schedule(B_, EpsSchedule(1.0, 0.0, 1, 0.0));  // replaced for every live problem
  std::vector<double> cost(B_, 0.0), lower(B_, 0.0);
  if (!live.empty()) {  // the nearest objects' costs: the dual bound at zero prices
    dual_bounds(device_list(live));
    const std::vector<double> nearest = host_sums(live);
    for (size_t k = 0; k < live.size(); ++k) {
      const int64_t b = live[k];
      TORCH_CHECK(std::isfinite(largest_[b]), kCostsNotFinite);
      schedule[b] = EpsSchedule(rel_tol_, nearest[k], m_[b], largest_[b]);
      lower[b] = nearest[k];
    }
  }
  std::vector<int64_t> running = live;
  while (!running.empty()) {
    for (int64_t b : running) ++stats[b].phases;
    const std::vector<int64_t> status = finish_phase(running, schedule);
    std::vector<int64_t> ended;  // phases that matched every bidder
    for (int64_t b : running) {
      TORCH_CHECK(status[b] != kNoObject, kNoObjectToBid);
      if (status[b] == kOutOfRounds) {
        stats[b].complete = false;
      } else {
        ended.push_back(b);
      }
    }
    if (ended.empty()) break;
    costs(device_list(ended));
    const std::vector<double> phase_cost = host_sums(ended);
    std::vector<int64_t> near;  // the problems whose dual bound is worth computing
    for (size_t k = 0; k < ended.size(); ++k) {
      const int64_t b = ended[k];
      cost[b] = phase_cost[k];
      if (schedule[b].bound_worth_computing(rel_tol_, m_[b], cost[b])) near.push_back(b);
    }
    std::vector<bool> finished(B_, false);
    if (!near.empty()) {
      dual_bounds(device_list(near));
      const std::vector<double> bound = host_sums(near);
      for (size_t k = 0; k < near.size(); ++k) {
        const int64_t b = near[k];
        lower[b] = std::max(lower[b], bound[k]);
        finished[b] = schedule[b].done(rel_tol_, cost[b], lower[b]);
      }
    }
    running.clear();
    for (int64_t b : ended) {
      if (finished[b]) continue;
      schedule[b].next();
      running.push_back(b);
    }
  }
  const at::Tensor counters = counters_.cpu();
  for (int64_t b : live) {
    stats[b].cost = cost[b];
    stats[b].lower_bound = std::min(lower[b], cost[b]);
    stats[b].eps = schedule[b].eps;
    stats[b].rounds = reinterpret_cast<const RoundCounters*>(counters.data_ptr<int64_t>())[b].rounds;
  }
  const auto [a, total, bound, last_eps, rounds, phases, complete] = auction_result(at::Tensor(), stats);
  const at::Device d = n_dev_.device();
  return {assignment(), total.to(d), bound.to(d), last_eps.to(d), rounds.to(d), phases.to(d), complete.to(d)};
}

// Each x point's partner in y (-1 if none): the bidders' objects, or their inverse where y bid.
at::Tensor BatchAuction::assignment() const {
  const auto i64 = n_dev_.options();
  const at::Tensor swap_dev = swapped_.unsqueeze(1);
  const at::Tensor slots = at::arange(L_, i64).unsqueeze(0);
  const at::Tensor real = slots < n_dev_.unsqueeze(1);
  const at::Tensor direct = at::where(real, assigned_, -1).narrow(1, 0, N_);
  // Where y bid, y point j holds x point assigned[j]; unmatched and unswapped slots write a spare column.
  const at::Tensor column = at::where(real & (assigned_ >= 0) & swap_dev, assigned_, N_);
  const at::Tensor inverse =
      at::full({B_, N_ + 1}, -1, i64).scatter_(1, column, slots.expand({B_, L_}).contiguous()).narrow(1, 0, N_);
  return at::where(swap_dev, inverse, direct).contiguous();
}

}  // namespace pm
