// Exact k-nearest-neighbour search in an implicit kd-tree, written once for host and device.
//
// Layout: a cloud's points are cut into leaves of kLeafSize consecutive points; a complete binary
// tree over the leaves (padded to a power of two P, heap numbered: root 1, children 2i and 2i+1,
// leaf j is node P + j) splits the points of each node at its middle leaf along the widest axis
// of its points, like a balanced kd-tree. Each node stores the exact bounding box of its points;
// each internal node stores its split plane (points left of it have coordinate <= value, points
// right of it >= value).
//
// Search (bottom-up): descend along the split planes to the query's own leaf, scan it, then climb
// back. At each level the sibling subtree is searched (top-down, nearer child first, pruned by
// boxes) unless its box is farther than the current K-th best, and the climb stops as soon as the
// K-th best distance is shorter than the distance to every split plane above: nothing outside
// the current cell can then be closer. Boxes and planes follow the data, so clusters, outliers
// and thin structures cost about as much as uniform clouds.
//
// Exactness with floating point: boxes and planes are exact point coordinates; lower bounds are
// computed in scalar_t and must exceed the threshold by a relative slack far larger than their
// rounding before anything is pruned (cannot_beat). Ties are broken by the smaller original
// index, so the result is the exact (distance, index)-minimum under the distances this code
// computes, whatever the visiting order, on CPU and CUDA alike.
#pragma once

#include <cstdint>
#include <limits>

#include "core/topk.h"

namespace pm {

constexpr int kLeafSize = 8;  // Python: pointmetrics/_ops.py LEAF_SIZE (tests/test_constants.py)
constexpr int kMaxDepth = 31;  // P <= 2^31 leaves
constexpr int kTreeStack = kMaxDepth + 2;

// One cloud's tree inside a batch (all pointers already offset to this cloud).
template <typename scalar_t>
struct PointTreeView {
  const scalar_t* pts;        // (P * kLeafSize, 3) points in tree order
  const int64_t* idx;         // original index of each point
  const scalar_t* lo;         // (2P, 3) node box minima (+inf for empty nodes)
  const scalar_t* hi;         // (2P, 3) node box maxima (-inf for empty nodes)
  const int8_t* split_axis;   // (P,) split axis of internal node i (entry 0 unused)
  const scalar_t* split_val;  // (P,) split coordinate; +inf when the right child is empty
  int64_t leaves;             // P, a power of two
  int depth;                  // log2(P)
  int64_t n;                  // valid points
};

// Lower bound on the distance from q to any point in a box (+inf for an empty box).
template <typename scalar_t, int NORM>
PM_HD scalar_t box_lower_bound(const scalar_t* lo, const scalar_t* hi, const scalar_t* q) {
  // Branch-free (max instead of if): whether a query lies inside a box along an axis is close
  // to a coin flip, and mispredicted branches cost more than the arithmetic.
  scalar_t acc = 0;
  for (int a = 0; a < 3; ++a) {
    const scalar_t g = max_val(max_val(lo[a] - q[a], q[a] - hi[a]), scalar_t(0));
    acc += gap_term<NORM>(g);
  }
  return acc;
}

template <typename scalar_t, int NORM>
PM_HD scalar_t node_lower_bound(const PointTreeView<scalar_t>& t, int64_t node, const scalar_t* q) {
  return box_lower_bound<scalar_t, NORM>(t.lo + 3 * node, t.hi + 3 * node, q);
}

template <typename scalar_t, int NORM, typename Top>
PM_HOT void scan_leaf(const PointTreeView<scalar_t>& t, int64_t leaf, const scalar_t* q, Top& top) {
  const int64_t begin = leaf * kLeafSize;
  const int64_t end = begin + kLeafSize < t.n ? begin + kLeafSize : t.n;
  for (int64_t s = begin; s < end; ++s) top.consider(point_distance<NORM>(q, t.pts + 3 * s, 3), t.idx[s]);
}

// Top-down search of the subtree under `root`, nearer child first.
template <typename scalar_t, int NORM, typename Top>
PM_HD void search_subtree(const PointTreeView<scalar_t>& t, int64_t root, const scalar_t* q, Top& top) {
  int64_t node_stack[kTreeStack];
  scalar_t lb_stack[kTreeStack];
  int sp = 0;
  node_stack[sp] = root;
  lb_stack[sp++] = node_lower_bound<scalar_t, NORM>(t, root, q);
  while (sp > 0) {
    --sp;
    const int64_t node = node_stack[sp];
    if (cannot_beat(lb_stack[sp], top.threshold())) continue;
    if (node >= t.leaves) {
      scan_leaf<scalar_t, NORM, Top>(t, node - t.leaves, q, top);
      continue;
    }
    const int64_t left = 2 * node, right = left + 1;
    const scalar_t lb_left = node_lower_bound<scalar_t, NORM>(t, left, q);
    const scalar_t lb_right = node_lower_bound<scalar_t, NORM>(t, right, q);
    const bool left_first = !(lb_right < lb_left);
    const scalar_t thr = top.threshold();
    const scalar_t lb_far = left_first ? lb_right : lb_left, lb_near = left_first ? lb_left : lb_right;
    if (!cannot_beat(lb_far, thr)) {  // pushed first, popped last
      node_stack[sp] = left_first ? right : left;
      lb_stack[sp++] = lb_far;
    }
    if (!cannot_beat(lb_near, thr)) {
      node_stack[sp] = left_first ? left : right;
      lb_stack[sp++] = lb_near;
    }
  }
}

// Exact K-nearest search of q (3 coordinates); the results accumulate in `top`.
template <typename scalar_t, int NORM, typename Top>
PM_HD void tree_knn(const PointTreeView<scalar_t>& t, const scalar_t* q, Top& top) {
  if (t.n <= 0) return;
  // Descend to q's leaf. outside[k]: lower bound on the distance from q to any point outside the
  // cell of the depth-k node on the path (the nearest of the split planes above it).
  scalar_t outside[kMaxDepth + 1];
  outside[0] = std::numeric_limits<scalar_t>::infinity();  // nothing lies outside the root
  int64_t node = 1;
  for (int k = 0; k < t.depth; ++k) {
    const int axis = t.split_axis[node];
    const scalar_t split = t.split_val[node];
    const bool right = q[axis] >= split;
    const scalar_t plane = gap_term<NORM>(right ? q[axis] - split : split - q[axis]);
    outside[k + 1] = plane < outside[k] ? plane : outside[k];
    node = 2 * node + (right ? 1 : 0);
  }
  scan_leaf<scalar_t, NORM, Top>(t, node - t.leaves, q, top);
  // Climb: the subtree under `node` (depth k) is done; search its sibling, then go up.
  for (int k = t.depth; k >= 1; --k, node /= 2) {
    if (cannot_beat(outside[k], top.threshold())) return;
    const int64_t sibling = node ^ 1;
    if (!cannot_beat(node_lower_bound<scalar_t, NORM>(t, sibling, q), top.threshold())) {
      search_subtree<scalar_t, NORM, Top>(t, sibling, q, top);
    }
  }
}

}  // namespace pm
