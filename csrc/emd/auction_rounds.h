// The schedule of emd_cpu.cpp's auction, written as steps over flat batch arrays so that a CUDA
// block (emd_cuda.cu) runs one problem on the device, and the portable driver
// (auction_portable.cpp) runs the same steps on the CPU for the tests.
//
// One eps phase is a sequence of rounds. A round takes the queue of unassigned bidders:
//   1. every queued bidder's bid is computed at the round's starting prices (compute_bid; in
//      parallel: one thread per bidder);
//   2. the bids are applied in queue order (apply_bids; one thread): a bid whose best or
//      second-best object was repriced earlier in the round is recomputed at today's prices, an
//      owner who loses its object joins the next round's queue.
// This is emd_cpu.cpp's run_phase step for step, so both return the same assignment; the arrays
// differ (two queue buffers swapped by parity, counters in memory), and a phase can stop after any
// bid and resume in a later launch, which bounds the work of every CUDA launch.
#pragma once

#include <cstdint>

#include "auction.h"

namespace pm {

// The state of one problem's phase, in memory so that a phase (and a round) can span launches.
struct RoundCounters {
  int64_t count;    // bidders in the current round's queue
  int64_t rounds;   // bidding rounds so far, all phases (a bid is stale if its object's repriced == rounds)
  int64_t parity;   // which of the two queue buffers holds the current queue
  int64_t status;   // kRunning, kOutOfRounds or kNoObject
  int64_t applied;  // bids of the current round applied so far
  int64_t queued;   // bidders already in the next round's queue
};

constexpr int64_t kCounterFields = 6;  // stored as (B, kCounterFields) int64
static_assert(sizeof(RoundCounters) == kCounterFields * sizeof(int64_t), "RoundCounters is plain int64 fields");

constexpr int64_t kRunning = 0;
constexpr int64_t kOutOfRounds = 1;  // max_rounds ran out (the CPU's run_phase returns false)
constexpr int64_t kNoObject = 2;     // a bidder found no object to bid for (the CPU's TORCH_CHECK)

// What a problem does next (AuctionProblem::next_step).
constexpr int kNoRound = 0;     // its phase is over, or has stopped
constexpr int kFreshRound = 1;  // a new round: compute its bids, then apply them
constexpr int kResume = 2;      // the current round has bids left to apply (computed in an earlier launch)

// All problems of a batch: B problems in slots of L points, bidders (the smaller set) and objects
// already oriented. tree_* are null when D != 3 (every bid scans all objects).
template <typename scalar_t>
struct AuctionArrays {
  const scalar_t* bidders;  // (B, L, D)
  const scalar_t* objects;  // (B, L, D)
  const int64_t* n;         // (B,) bidders per problem
  const int64_t* m;         // (B,) objects per problem, m >= n
  int64_t L;
  int D;
  const scalar_t* tree_pts;  // (B, S, 3) price tree over the objects (point_tree_build.h)
  const int64_t* tree_idx;   // (B, S)
  const scalar_t* tree_lo;   // (B, 2 * leaves, 3)
  const scalar_t* tree_hi;
  int64_t leaves;
  const int64_t* slot_of;  // (B, L) object -> slot in tree order
  double* min_price;       // (B, 2 * leaves)
  double* prices;          // (B, L)
  int64_t* owner;          // (B, L) bidder holding each object, -1 if none
  int64_t* assigned;       // (B, L) object held by each bidder (dummies included), -1 if none
  int64_t* queue;          // (B, 2, L) the current and the next round's queue
  int64_t* repriced;       // (B, L) round in which each object's price last rose
  Bid* bids;               // (B, L)
  double* terms;           // (B, L) per-bidder terms of a sum (costs, dual bound)
  RoundCounters* counters;  // (B,)
};

// Problem b of the batch: the pointers offset to its slots, and the steps of the schedule.
template <int P, typename scalar_t>
struct AuctionProblem {
  const scalar_t* bidders;
  const scalar_t* objects;
  int64_t n, m, L;
  int D;
  PriceTreeView<scalar_t> tree;  // tree.n == 0: no tree, bids scan all objects
  double* min_price;
  const int64_t* slot_of;
  double* prices;
  int64_t* owner;
  int64_t* assigned;
  int64_t* queues;  // two buffers of L
  int64_t* repriced;
  Bid* bids;
  double* terms;
  RoundCounters* c;

  PM_HD AuctionProblem(const AuctionArrays<scalar_t>& a, int64_t b)
      : bidders(a.bidders + b * a.L * a.D),
        objects(a.objects + b * a.L * a.D),
        n(a.n[b]),
        m(a.m[b]),
        L(a.L),
        D(a.D),
        tree{nullptr, nullptr, nullptr, nullptr, nullptr, 0, 0},
        min_price(nullptr),
        slot_of(nullptr),
        prices(a.prices + b * a.L),
        owner(a.owner + b * a.L),
        assigned(a.assigned + b * a.L),
        queues(a.queue + b * 2 * a.L),
        repriced(a.repriced + b * a.L),
        bids(a.bids + b * a.L),
        terms(a.terms + b * a.L),
        c(a.counters + b) {
    if (a.tree_pts == nullptr) return;
    const int64_t S = a.leaves * kLeafSize, nodes = 2 * a.leaves;
    min_price = a.min_price + b * nodes;
    slot_of = a.slot_of + b * a.L;
    tree = PriceTreeView<scalar_t>{a.tree_pts + b * S * 3, a.tree_idx + b * S, a.tree_lo + b * nodes * 3,
                                   a.tree_hi + b * nodes * 3, min_price, a.leaves, m};
  }

  PM_HD const scalar_t* bidder(int64_t i) const { return i < n ? bidders + i * D : nullptr; }  // null: a dummy
  PM_HD int64_t* queue(int64_t parity) const { return queues + parity * L; }

  PM_HD TopTwo top_two(int64_t i) const { return best_objects<P>(tree, bidder(i), objects, D, m, prices, 2); }

  // min_j (c_ij + p_j): bidder i's term of the dual bound.
  PM_HD double cheapest(int64_t i) const { return -best_objects<P>(tree, bidder(i), objects, D, m, prices, 1).v1; }

  // --- a phase --------------------------------------------------------------------------------

  // Phase start, for every object slot j < m (in parallel): nobody holds anything, every bidder
  // (dummies included) is queued in index order, no price has risen in this phase.
  PM_HD void start_slot(int64_t j) {
    owner[j] = -1;
    assigned[j] = -1;
    queue(0)[j] = j;
    repriced[j] = -1;
  }

  // Phase start, once (after or alongside start_slot): the counters.
  PM_HD void start_counters() {
    c->count = m;
    c->parity = 0;
    c->status = kRunning;
    c->applied = 0;
    c->queued = 0;
  }

  // Before each step, once: kNoRound when the phase is over (empty queue) or has stopped; kResume
  // when the current round has bids left to apply; otherwise counts a new round (kFreshRound), and
  // stops the phase when that exceeds max_rounds.
  PM_HD int next_step(int64_t max_rounds) {
    if (c->status != kRunning || c->count == 0) return kNoRound;
    if (c->applied > 0) return kResume;
    if (++c->rounds > max_rounds) {
      c->status = kOutOfRounds;
      return kNoRound;
    }
    return kFreshRound;
  }

  // Round step 1, for every u < c->count (in parallel): the u-th queued bidder's bid at the
  // round's starting prices.
  PM_HD void compute_bid(int64_t u, double eps) {
    bids[u] = bid_from(top_two(queue(c->parity)[u]), prices, eps);
  }

  // Round step 2, once: the next (at most `budget`) bids in queue order, each against the prices
  // its predecessors left. Returns how many were applied; the round ends with its last bid.
  PM_HD int64_t apply_bids(double eps, int64_t budget) {
    const int64_t* current = queue(c->parity);
    int64_t* next = queue(1 - c->parity);
    const int64_t round = c->rounds, begin = c->applied;
    const int64_t end = c->count - begin > budget ? begin + budget : c->count;
    int64_t queued = c->queued;
    for (int64_t u = begin; u < end; ++u) {
      const int64_t i = current[u];
      Bid bid = bids[u];
      const bool stale = (bid.object >= 0 && repriced[bid.object] == round) ||
                         (bid.second >= 0 && repriced[bid.second] == round);
      if (stale) bid = bid_from(top_two(i), prices, eps);
      const int64_t j = bid.object;
      if (j < 0) {
        c->status = kNoObject;
        return u - begin;
      }
      if (owner[j] >= 0) {  // the previous owner loses the object and bids again next round
        assigned[owner[j]] = -1;
        next[queued++] = owner[j];
      }
      owner[j] = i;
      assigned[i] = j;
      prices[j] = bid.price;
      repriced[j] = round;
      if (tree.n > 0) raise_min_price(tree, min_price, slot_of[j], prices);
    }
    if (end == c->count) {  // the round is over: the displaced owners make the next one
      c->count = queued;
      c->parity = 1 - c->parity;
      c->applied = 0;
      c->queued = 0;
    } else {
      c->applied = end;
      c->queued = queued;
    }
    return end - begin;
  }

  // --- sums, each term in parallel, the sum once and in index order (as the CPU adds them) ------

  // For every bidder i < n: its matched pair's cost.
  PM_HD void cost_term(int64_t i) { terms[i] = pair_cost<P>(bidders + i * D, objects + assigned[i] * D, D); }

  PM_HD double cost_sum() const {
    double cost = 0.0;
    for (int64_t i = 0; i < n; ++i) cost = add(cost, terms[i]);
    return cost;
  }

  // For every bidder i < n: its term of the dual bound.
  PM_HD void bound_term(int64_t i) { terms[i] = cheapest(i); }

  // The dual bound from the terms (auction.h's dual_bound_sum, as the CPU adds it).
  PM_HD double bound_sum() const { return dual_bound_sum(terms, n, m, m > n ? cheapest(n) : 0.0, prices); }
};

}  // namespace pm
