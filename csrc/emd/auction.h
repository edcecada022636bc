// The pieces of the auction algorithm for the assignment problem (Bertsekas 1979, 1988) that do not
// depend on the schedule of bids: transport costs, a bidder's best two objects, and its bid.
//
// Bidders are points x_i, objects are points y_j, the cost of assigning i to j is
// c_ij = |x_i - y_j| (P == 1) or |x_i - y_j|^2 (P == 2), and a bidder values object j at
// v_ij = -c_ij - p_j. A bid goes to the best object j1 and raises its price to
// p_j1 + (v_1 - v_2) + eps, where v_2 is the second-best value: afterwards the bidder is within eps
// of its best choice (eps-complementary slackness), which bounds the final cost by OPT + n * eps.
// Arithmetic goes through common.h's FMA-free helpers, so every backend rounds the same way.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "core/common.h"
#include "spatial/point_tree.h"

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

// Best and second-best values over objects, ties to the smaller object index. j2 is the object
// that gave v2: a bid computed at earlier prices is still the bid at today's prices when neither
// j1 nor j2 has been repriced since (prices only rise, so every other value can only have fallen).
struct TopTwo {
  double v1, v2;
  int64_t j1, j2;

  PM_HD void consider(double v, int64_t j) {
    if (v > v1 || (v == v1 && j < j1)) {
      v2 = v1;
      j2 = j1;
      v1 = v;
      j1 = j;
    } else if (v > v2 || (v == v2 && j < j2)) {
      v2 = v;
      j2 = j;
    }
  }
};

struct Bid {
  int64_t object;  // -1: no object to bid for
  double price;    // the object's new price
  int64_t second;  // the second-best object (-1 if none): the bid stays valid while j1, j2 keep their prices
};

// The bid of a bidder whose best two objects are `top`: the best object, its price raised until the
// bidder is indifferent between it and the second best, plus eps. A single object is raised by eps.
PM_HD Bid bid_from(const TopTwo& top, const double* prices, double eps) {
  if (top.j1 < 0) return Bid{-1, 0.0, -1};
  const double increment = top.j2 < 0 ? eps : add(sub(top.v1, top.v2), eps);
  return Bid{top.j1, add(prices[top.j1], increment), top.j2};
}

// Best two objects for bidder x_i by scanning all M objects. A null x_i is a dummy bidder (see
// emd_cpu.cpp): every object costs it 0, so only prices matter.
template <int P, typename scalar_t>
PM_HD TopTwo scan_top_two(const scalar_t* xi, const scalar_t* y, int D, int64_t M, const double* prices) {
  const double neg_inf = -std::numeric_limits<double>::infinity();
  TopTwo top{neg_inf, neg_inf, -1, -1};
  for (int64_t j = 0; j < M; ++j) {
    const double c = xi == nullptr ? 0.0 : pair_cost<P>(xi, y + j * D, D);
    top.consider(sub(-c, prices[j]), j);
  }
  return top;
}

// The objects (3D) in a kd-tree (spatial/point_tree.h) whose nodes also hold the smallest price in
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
  TopTwo top{-inf, -inf, -1, -1};  // holds -w, so that larger is better
  int found = 0;
  auto threshold = [&]() { return found < want ? inf : -(want == 1 ? top.v1 : top.v2); };
  auto lower_bound = [&](int64_t node) {
    if (x == nullptr) return t.min_price[node];  // a dummy bidder: every cost is 0
    const double q[3] = {static_cast<double>(x[0]), static_cast<double>(x[1]), static_cast<double>(x[2])};
    double lo[3], hi[3];
    for (int a = 0; a < 3; ++a) {
      lo[a] = static_cast<double>(t.lo[3 * node + a]);
      hi[a] = static_cast<double>(t.hi[3 * node + a]);
    }
    const double d2 = box_lower_bound<double, 2>(lo, hi, q);
    return add(P == 2 ? d2 : std::sqrt(d2), t.min_price[node]);
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
        const double c = x == nullptr ? 0.0 : pair_cost<P>(x, t.pts + 3 * s, 3);
        top.consider(sub(-c, prices[j]), j);
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

// Bidder xi's best two objects (want == 2) or its cheapest one (want == 1) at the given prices:
// through the price tree when there is one (tree.n > 0), else by scanning all m objects.
template <int P, typename scalar_t>
PM_HD TopTwo best_objects(const PriceTreeView<scalar_t>& tree, const scalar_t* xi, const scalar_t* objects, int D,
                          int64_t m, const double* prices, int want) {
  if (tree.n > 0) return cheapest_objects<P>(tree, xi, prices, want);
  return scan_top_two<P>(xi, objects, D, m, prices);
}

// The price of the object in `slot` has risen: refresh the smallest price of its leaf and of the
// leaf's ancestors in min_price (the array tree.min_price points to).
template <typename scalar_t>
PM_HD void raise_min_price(const PriceTreeView<scalar_t>& tree, double* min_price, int64_t slot,
                           const double* prices) {
  int64_t node = tree.leaves + slot / kLeafSize;
  const int64_t begin = (node - tree.leaves) * kLeafSize;
  const int64_t end = begin + kLeafSize < tree.n ? begin + kLeafSize : tree.n;
  double low = std::numeric_limits<double>::infinity();
  for (int64_t s = begin; s < end; ++s) low = prices[tree.idx[s]] < low ? prices[tree.idx[s]] : low;
  min_price[node] = low;
  for (node /= 2; node >= 1; node /= 2) {
    const double left = min_price[2 * node], right = min_price[2 * node + 1];
    const double up = right < left ? right : left;
    if (up == min_price[node]) break;  // prices only rise: nothing above changes either
    min_price[node] = up;
  }
}

// The dual bound LB(p) = sum_i min_j (c_ij + p_j) - sum_j p_j <= optimal cost, for any prices
// p >= 0, from the real bidders' terms (n), the m - n dummies' common term (the smallest price) and
// the m prices; added in this order on every backend, so that the sums agree bit for bit.
PM_HD double dual_bound_sum(const double* terms, int64_t n, int64_t m, double dummy_term, const double* prices) {
  double bound = 0.0;
  for (int64_t i = 0; i < n; ++i) bound = add(bound, terms[i]);
  if (m > n) bound = add(bound, mul(static_cast<double>(m - n), dummy_term));
  for (int64_t j = 0; j < m; ++j) bound = sub(bound, prices[j]);
  return bound;
}

// The smallest and largest coordinate so far along one axis; a NaN coordinate makes both NaN, so
// that the cost bound built from them reports it (std::min and std::max would skip it).
PM_HD void widen(double v, double& lo, double& hi) {
  if (v != v) {
    lo = hi = v;
  } else if (lo == lo) {
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
  }
}

// An upper bound on every cost between points in the box [lo, hi]^D: its diagonal, to the power P.
template <int P>
PM_HD double box_cost_bound(const double* lo, const double* hi, int D) {
  double diagonal2 = 0.0;
  for (int d = 0; d < D; ++d) diagonal2 = add(diagonal2, mul(sub(hi[d], lo[d]), sub(hi[d], lo[d])));
  return P == 2 ? diagonal2 : std::sqrt(diagonal2);
}

}  // namespace pm
