// The pieces of the auction algorithm for the assignment problem (Bertsekas 1979, 1988) that are
// the same on host and device: transport costs, a bidder's bid, and its term of the dual bound.
//
// Bidders are points x_i, objects are points y_j, the cost of assigning i to j is
// c_ij = |x_i - y_j| (P == 1) or |x_i - y_j|^2 (P == 2), and a bidder values object j at
// v_ij = -c_ij - p_j. A bid goes to the best object j1 and raises its price to
// p_j1 + (v_1 - v_2) + eps, where v_2 is the second-best value: afterwards the bidder is within eps
// of its best choice (eps-complementary slackness), which bounds the final cost by OPT + n * eps.
//
// Candidate lists make a bid cheap: each bidder first looks at its K nearest objects only. Any
// other object costs at least the K-th candidate's cost c_K and has a price of at least the
// smallest price p_min (prices never fall), so its value is at most -c_K - p_min. When the best
// candidate beats that bound the bid is exact; using max(v_2, bound) as the second value only
// lowers the increment, which keeps eps-complementary slackness. Otherwise the bidder scans all.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "../common.h"
#include "../nn/point_tree.h"

namespace pm {

template <int P, typename scalar_t>
PM_HD double pair_cost(const scalar_t* a, const scalar_t* b, int D) {
  double acc = 0.0;
  for (int d = 0; d < D; ++d) {
    const double diff = sub(static_cast<double>(a[d]), static_cast<double>(b[d]));
    acc = add(acc, mul(diff, diff));
  }
  return P == 2 ? acc : std::sqrt(acc);
}

struct Bid {
  int64_t object;  // -1: no object to bid for
  double price;    // the object's new price
};

// Best and second-best values over objects, ties to the smaller object index.
struct TopTwo {
  double v1, v2;
  int64_t j1;

  PM_HD void consider(double v, int64_t j) {
    if (v > v1 || (v == v1 && j < j1)) {
      v2 = v1;
      v1 = v;
      j1 = j;
    } else if (v > v2) {
      v2 = v;
    }
  }
};

// Bid of bidder x_i among objects y (M of them, D coordinates each) at the given prices.
// cand: the bidder's K nearest objects; min_price: a lower bound on every price.
template <int P, typename scalar_t>
PM_HD Bid auction_bid(const scalar_t* xi, const scalar_t* y, int D, int64_t M, const int64_t* cand, int K,
                      const double* prices, double min_price, double eps) {
  const double neg_inf = -std::numeric_limits<double>::infinity();
  TopTwo top{neg_inf, neg_inf, -1};
  double farthest = 0.0;
  for (int k = 0; k < K; ++k) {
    const int64_t j = cand[k];
    const double c = pair_cost<P>(xi, y + j * D, D);
    farthest = c > farthest ? c : farthest;
    top.consider(-c - prices[j], j);
  }
  if (K < M) {
    const double outside = -farthest - min_price;  // no other object is worth more
    if (top.v1 >= outside) {
      top.v2 = top.v2 > outside ? top.v2 : outside;
    } else {  // the best object may lie outside the candidates: scan them all
      top = TopTwo{neg_inf, neg_inf, -1};
      for (int64_t j = 0; j < M; ++j) top.consider(-pair_cost<P>(xi, y + j * D, D) - prices[j], j);
    }
  }
  if (top.j1 < 0) return Bid{-1, 0.0};
  const double increment = top.v2 == neg_inf ? eps : (top.v1 - top.v2) + eps;  // a single object: eps
  return Bid{top.j1, prices[top.j1] + increment};
}

// The objects (3D) in a kd-tree (nn/point_tree.h) whose nodes also hold the smallest price in
// their subtree: box distance plus that price bounds c_ij + p_j for every object j below, so the
// objects worth the most to a bidder are found by branch and bound, whatever the prices.
template <typename scalar_t>
struct PriceTreeView {
  const scalar_t* pts;       // (S, 3) objects in tree order
  const int64_t* idx;        // (S,) object index of each slot
  const scalar_t* lo;        // (2P, 3) node boxes
  const scalar_t* hi;
  const double* min_price;   // (2P,) smallest price below each node (+inf for empty nodes)
  int64_t leaves;            // P
  int64_t n;                 // objects
};

// The `want` (1 or 2) smallest values w_j = c_ij + p_j: w1 at object j1, then w2.
template <int P, typename scalar_t>
PM_HD TopTwo cheapest_objects(const PriceTreeView<scalar_t>& t, const scalar_t* x, const double* prices, int want) {
  const double inf = std::numeric_limits<double>::infinity();
  TopTwo top{-inf, -inf, -1};  // holds -w, so that larger is better
  int found = 0;
  auto threshold = [&]() { return found < want ? inf : -(want == 1 ? top.v1 : top.v2); };
  auto lower_bound = [&](int64_t node) {
    const double q[3] = {static_cast<double>(x[0]), static_cast<double>(x[1]), static_cast<double>(x[2])};
    double lo[3], hi[3];
    for (int a = 0; a < 3; ++a) {
      lo[a] = static_cast<double>(t.lo[3 * node + a]);
      hi[a] = static_cast<double>(t.hi[3 * node + a]);
    }
    const double d2 = box_lower_bound<double, 2>(lo, hi, q);
    return (P == 2 ? d2 : std::sqrt(d2)) + t.min_price[node];
  };
  int64_t stack[kTreeStack];
  double bound[kTreeStack];
  int sp = 0;
  stack[sp] = 1;
  bound[sp++] = lower_bound(1);
  while (sp > 0) {
    --sp;
    const int64_t node = stack[sp];
    if (cannot_beat(bound[sp], threshold())) continue;
    if (node >= t.leaves) {
      const int64_t begin = (node - t.leaves) * kLeafSize;
      const int64_t end = begin + kLeafSize < t.n ? begin + kLeafSize : t.n;
      for (int64_t s = begin; s < end; ++s) {
        const int64_t j = t.idx[s];
        top.consider(-(pair_cost<P>(x, t.pts + 3 * s, 3) + prices[j]), j);
        ++found;
      }
      continue;
    }
    const int64_t left = 2 * node, right = left + 1;
    const double lb_left = lower_bound(left), lb_right = lower_bound(right);
    const bool left_first = !(lb_right < lb_left);
    const double thr = threshold();
    const double lb_far = left_first ? lb_right : lb_left, lb_near = left_first ? lb_left : lb_right;
    if (!cannot_beat(lb_far, thr)) {  // pushed first, popped last
      stack[sp] = left_first ? right : left;
      bound[sp++] = lb_far;
    }
    if (!cannot_beat(lb_near, thr)) {
      stack[sp] = left_first ? left : right;
      bound[sp++] = lb_near;
    }
  }
  return top;
}

// The bid of bidder x (3 coordinates) through the price tree; same bid as auction_bid.
template <int P, typename scalar_t>
PM_HD Bid tree_bid(const PriceTreeView<scalar_t>& t, const scalar_t* x, const double* prices, double eps) {
  const TopTwo top = cheapest_objects<P>(t, x, prices, 2);
  if (top.j1 < 0) return Bid{-1, 0.0};
  const double neg_inf = -std::numeric_limits<double>::infinity();
  const double increment = top.v2 == neg_inf ? eps : (top.v1 - top.v2) + eps;
  return Bid{top.j1, prices[top.j1] + increment};
}

// Bidder i's term min_j (c_ij + p_j) of the dual bound
//   LB(p) = sum_i min_j (c_ij + p_j) - sum_j p_j  <=  optimal cost,
// valid for any prices p >= 0, whatever the assignment.
template <int P, typename scalar_t>
PM_HD double dual_term(const scalar_t* xi, const scalar_t* y, int D, int64_t M, const double* prices) {
  double best = std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < M; ++j) {
    const double v = pair_cost<P>(xi, y + j * D, D) + prices[j];
    best = v < best ? v : best;
  }
  return best;
}

}  // namespace pm
