// Pieces shared by every nearest-neighbour search: the running top-K list and the pruning test.
#pragma once

#include <cstdint>

#include "common.h"

namespace pm {

// The K best (distance, index) pairs seen so far, sorted ascending, stored in caller memory.
// Ties go to the smaller index, so the result does not depend on the order candidates arrive in.
// While fewer than K are held, only candidates within `bound` are accepted: a caller that knows
// K points within `bound` (a warm start) passes it to prune earlier.
template <typename scalar_t>
struct TopK {
  scalar_t* d;
  int64_t* i;
  int K;
  int count;
  scalar_t bound;

  PM_HOT scalar_t threshold() const { return count < K ? bound : d[K - 1]; }
  PM_HOT bool full() const { return count == K; }

  PM_HOT void consider(scalar_t dist, int64_t index) {
    int pos;
    if (count < K) {
      if (!(dist <= bound)) return;  // rejects NaN too
      pos = count++;
    } else {
      if (!(dist < d[K - 1] || (dist == d[K - 1] && index < i[K - 1]))) return;
      pos = K - 1;
    }
    while (pos > 0 && (dist < d[pos - 1] || (dist == d[pos - 1] && index < i[pos - 1]))) {
      d[pos] = d[pos - 1];
      i[pos] = i[pos - 1];
      --pos;
    }
    d[pos] = dist;
    i[pos] = index;
  }
};

// The same contract for K = 1, held in plain members so that it lives in registers.
template <typename scalar_t>
struct Top1 {
  scalar_t d;
  int64_t i;
  int count;
  scalar_t bound;

  PM_HOT scalar_t threshold() const { return count == 0 ? bound : d; }
  PM_HOT bool full() const { return count == 1; }

  PM_HOT void consider(scalar_t dist, int64_t index) {
    if (count == 0) {
      if (!(dist <= bound)) return;  // rejects NaN too
      count = 1;
    } else if (!(dist < d || (dist == d && index < i))) {
      return;
    }
    d = dist;
    i = index;
  }
};

// True when nothing at lower bound `lb` can beat `threshold`. Lower bounds come from box and
// plane geometry; the relative slack (1e-5) dwarfs their rounding and that of point distances
// computed in float, and the absolute one covers underflow. So pruning never drops a point
// whose computed distance could win.
template <typename T>
PM_HOT bool cannot_beat(T lb, T threshold) {
  return lb * T(1 - 1e-5) > threshold + T(1e-35);
}

// One axis' contribution to a lower bound: squared gap for NORM == 2, the gap itself for L1.
template <int NORM, typename T>
PM_HD T gap_term(T g) {
  return NORM == 2 ? g * g : g;
}

}  // namespace pm
