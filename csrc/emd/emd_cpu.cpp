// CPU implementation of the auction assignment op: eps-scaling over the problem made square with
// zero-cost dummy bidders, Gauss-Seidel bidding (each bid sees the prices of the bids before it),
// bids speculatively computed in parallel through a kd-tree that keeps the smallest price of every
// subtree. Deterministic: no step depends on thread timing.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <numeric>
#include <vector>

#include "core/host.h"
#include "core/lengths.h"
#include "core/parallel.h"
#include "spatial/point_tree_build.h"
#include "auction.h"
#include "emd.h"

namespace pm {

namespace {

// One problem: `n` bidders against `m` >= n objects, D coordinates each, made square by m - n
// dummy bidders (indices n..m-1) to whom every object costs 0. The square problem has the same
// optimal cost (the dummies take the objects nobody is matched to, for free), and being square it
// keeps eps-complementary slackness through eps-scaling, which the plain n < m auction does not:
// without scaling a collapsed prediction (all x equal) needs ~(largest cost / final eps) rounds.
// With D == 3 the objects sit in a price tree; otherwise every bid scans all objects.
template <int P, typename scalar_t>
struct Problem {
  const scalar_t* bidders;
  const scalar_t* objects;
  int64_t n, m;
  int D;
  PriceTreeView<scalar_t> tree;  // tree.n == 0 when there is none
  std::vector<double> min_price;
  std::vector<int64_t> slot_of;  // object -> slot in tree order

  double cost(int64_t i, int64_t j) const { return pair_cost<P>(bidders + i * D, objects + j * D, D); }

  // An upper bound on every cost: the diagonal of the box around both sets, to the power P.
  double largest_cost() const {
    std::vector<double> lo(D, std::numeric_limits<double>::infinity()), hi(D, -std::numeric_limits<double>::infinity());
    for (int d = 0; d < D; ++d) {
      for (int64_t i = 0; i < n; ++i) widen(static_cast<double>(bidders[i * D + d]), lo[d], hi[d]);
      for (int64_t j = 0; j < m; ++j) widen(static_cast<double>(objects[j * D + d]), lo[d], hi[d]);
    }
    return box_cost_bound<P>(lo.data(), hi.data(), D);
  }

  // Best two objects of bidder i (a dummy for i >= n) at the current prices.
  TopTwo top_two(int64_t i, const std::vector<double>& prices) const {
    return best_objects<P>(tree, i < n ? bidders + i * D : nullptr, objects, D, m, prices.data(), 2);
  }

  // min_j (c_ij + p_j): bidder i's term of the dual bound.
  double cheapest(int64_t i, const std::vector<double>& prices) const {
    return -best_objects<P>(tree, i < n ? bidders + i * D : nullptr, objects, D, m, prices.data(), 1).v1;
  }

  // A raised price: refresh the smallest prices in the tree.
  void raise(int64_t j, const std::vector<double>& prices) {
    if (tree.n > 0) raise_min_price(tree, min_price.data(), slot_of[j], prices.data());
  }

  void reset_prices(std::vector<double>& prices) {
    std::fill(prices.begin(), prices.end(), 0.0);
    if (tree.n == 0) return;
    for (int64_t node = 1; node < 2 * tree.leaves; ++node) {
      min_price[node] = tree.lo[3 * node] <= tree.hi[3 * node] ? 0.0 : std::numeric_limits<double>::infinity();
    }
  }
};

// Runs one eps phase of the Gauss-Seidel auction until every bidder (dummies included) holds an
// object: bidders bid one after another, each against the prices its predecessors left, in a
// fixed order (the queue of unassigned bidders, then the bidders they displaced). Bidding in
// sequence is what makes near-identical bidders spread over distinct objects at once; in
// simultaneous (Jacobi) rounds they all bid for the same object and one wins per round.
// The bids of a round are first computed in parallel at the round's starting prices; a bid whose
// best or second-best object has been repriced earlier in the round is recomputed in sequence,
// so the outcome is exactly the sequential one, whatever the threads do.
// Returns false if the round budget ran out first.
template <int P, typename scalar_t>
bool run_phase(Problem<P, scalar_t>& pr, double eps, std::vector<double>& prices, std::vector<int64_t>& owner,
               std::vector<int64_t>& assigned, int64_t& rounds, int64_t max_rounds) {
  std::fill(owner.begin(), owner.end(), -1);
  std::fill(assigned.begin(), assigned.end(), -1);
  std::vector<int64_t> queue(pr.m), next;
  std::iota(queue.begin(), queue.end(), 0);
  std::vector<Bid> bids;
  std::vector<int64_t> repriced(pr.m, -1);  // the round in which each object's price last rose
  while (!queue.empty()) {
    if (++rounds > max_rounds) return false;
    const int64_t count = static_cast<int64_t>(queue.size());
    bids.resize(count);
    auto bid = [&](int64_t u0, int64_t u1) {
      for (int64_t u = u0; u < u1; ++u) bids[u] = bid_from(pr.top_two(queue[u], prices), prices.data(), eps);
    };
    if (count >= 64) {  // late rounds have few bidders: waking threads would cost more than the bids
      at::parallel_for(0, count, 16, bid);
    } else {
      bid(0, count);
    }
    next.clear();
    for (int64_t u = 0; u < count; ++u) {
      const int64_t i = queue[u];
      Bid b = bids[u];
      const bool stale = (b.object >= 0 && repriced[b.object] == rounds) || (b.second >= 0 && repriced[b.second] == rounds);
      if (stale) b = bid_from(pr.top_two(i, prices), prices.data(), eps);
      const int64_t j = b.object;
      TORCH_CHECK(j >= 0, kNoObjectToBid);
      if (owner[j] >= 0) {  // the previous owner loses the object and bids again next round
        assigned[owner[j]] = -1;
        next.push_back(owner[j]);
      }
      owner[j] = i;
      assigned[i] = j;
      prices[j] = b.price;
      repriced[j] = rounds;
      pr.raise(j, prices);
    }
    queue.swap(next);
  }
  return true;
}

// The dual bound at the given prices (auction.h's dual_bound_sum).
template <int P, typename scalar_t>
double dual_bound(const Problem<P, scalar_t>& pr, const std::vector<double>& prices) {
  std::vector<double> terms(pr.n);
  at::parallel_for(0, pr.n, 64, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) terms[i] = pr.cheapest(i, prices);
  });
  const double dummy_term = pr.m > pr.n ? pr.cheapest(pr.n, prices) : 0.0;
  return dual_bound_sum(terms.data(), pr.n, pr.m, dummy_term, prices.data());
}

// Solves one problem; writes each real bidder's object and the problem's stats.
template <int P, typename scalar_t>
void solve(Problem<P, scalar_t>& pr, double rel_tol, int64_t max_rounds, int64_t* out, AuctionStats& stats) {
  stats = AuctionStats{};
  if (pr.n == 0) return;
  std::vector<double> prices(pr.m, 0.0);
  pr.reset_prices(prices);
  const double nearest = dual_bound(pr, prices);
  const double largest = pr.largest_cost();
  TORCH_CHECK(std::isfinite(largest), kCostsNotFinite);
  EpsSchedule schedule(rel_tol, nearest, pr.m, largest);
  std::vector<int64_t> owner(pr.m), assigned(pr.m);
  int64_t rounds = 0, phases = 0;
  double cost = 0.0, lower = nearest;
  while (true) {
    ++phases;
    if (!run_phase(pr, schedule.eps, prices, owner, assigned, rounds, max_rounds)) {
      stats.complete = false;
      break;
    }
    cost = 0.0;
    for (int64_t i = 0; i < pr.n; ++i) cost = add(cost, pr.cost(i, assigned[i]));
    if (schedule.bound_worth_computing(rel_tol, pr.m, cost)) {
      lower = std::max(lower, dual_bound(pr, prices));
      if (schedule.done(rel_tol, cost, lower)) break;
    }
    schedule.next();
  }
  std::copy(assigned.begin(), assigned.begin() + pr.n, out);
  stats.cost = cost;
  stats.lower_bound = std::min(lower, cost);
  stats.eps = schedule.eps;
  stats.rounds = rounds;
  stats.phases = phases;
}

// Solves problem b with `bidders` bidding for `objects` (n <= m).
template <int P, typename scalar_t>
void solve_with_tree(const at::Tensor& bidders, const at::Tensor& objects, int64_t n, int64_t m, double rel_tol,
                     int64_t max_rounds, int64_t* out, AuctionStats& stats) {
  const int D = static_cast<int>(bidders.size(1));
  Problem<P, scalar_t> pr{bidders.data_ptr<scalar_t>(), objects.data_ptr<scalar_t>(), n, m, D, {}, {}, {}};
  BatchTree tree;
  if (D == 3 && m > 0) {
    tree = build_point_tree_cpu(objects.unsqueeze(0).contiguous(), {m});
    pr.min_price.assign(2 * tree.leaves, 0.0);
    pr.tree = PriceTreeView<scalar_t>{tree.pts.data_ptr<scalar_t>(), tree.idx.data_ptr<int64_t>(),
                                      tree.lo.data_ptr<scalar_t>(),  tree.hi.data_ptr<scalar_t>(),
                                      pr.min_price.data(),           tree.leaves,
                                      m};
    pr.slot_of.assign(m, 0);
    const int64_t* idx = tree.idx.data_ptr<int64_t>();
    for (int64_t s = 0; s < m; ++s) pr.slot_of[idx[s]] = s;
  }
  solve(pr, rel_tol, max_rounds, out, stats);
}

}  // namespace

AuctionResult auction_assignment_cpu(const at::Tensor& x_in, const at::Tensor& y_in, const at::Tensor& x_lengths,
                                     const at::Tensor& y_lengths, int64_t p, double rel_tol, int64_t max_rounds) {
  check_auction_args(x_in, y_in, x_lengths, y_lengths, p, rel_tol, max_rounds);
  // Points with D < 3 are padded with zeros: same costs, and the price tree applies.
  const at::Tensor x = x_in.size(2) < 3 ? as_3d_points(x_in, x_in.scalar_type()) : x_in.contiguous();
  const at::Tensor y = y_in.size(2) < 3 ? as_3d_points(y_in, y_in.scalar_type()) : y_in.contiguous();
  const int64_t B = x.size(0), N = x.size(1), M = y.size(1);
  const std::vector<int64_t> xl = host_lengths(x_lengths, N, "auction_assignment", "x_lengths");
  const std::vector<int64_t> yl = host_lengths(y_lengths, M, "auction_assignment", "y_lengths");
  at::Tensor assignment = at::full({B, N}, -1, x_lengths.options());
  std::vector<AuctionStats> stats(B);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "auction_assignment_cpu", [&] {
    for_each_cloud(B, [&](int64_t b) {
      const int64_t n = xl[b], m = yl[b];
      int64_t* out = assignment.data_ptr<int64_t>() + b * N;
      AuctionStats& st = stats[b];
      const at::Tensor xb = x[b].narrow(0, 0, n), yb = y[b].narrow(0, 0, m);
      if (n <= m) {  // x bids for y
        p == 1 ? solve_with_tree<1, scalar_t>(xb, yb, n, m, rel_tol, max_rounds, out, st)
               : solve_with_tree<2, scalar_t>(xb, yb, n, m, rel_tol, max_rounds, out, st);
      } else {  // y bids for x; invert the assignment
        std::vector<int64_t> y_to_x(m);
        p == 1 ? solve_with_tree<1, scalar_t>(yb, xb, m, n, rel_tol, max_rounds, y_to_x.data(), st)
               : solve_with_tree<2, scalar_t>(yb, xb, m, n, rel_tol, max_rounds, y_to_x.data(), st);
        for (int64_t j = 0; j < m; ++j) {
          if (y_to_x[j] >= 0) out[y_to_x[j]] = j;
        }
      }
    });
  });
  return auction_result(assignment, stats);
}

TORCH_LIBRARY_IMPL(pointmetrics, CPU, m) { m.impl("auction_assignment", &auction_assignment_cpu); }

}  // namespace pm
