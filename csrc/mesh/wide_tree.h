// The CPU search of mesh_tree.h's hierarchy, four boxes per step.
//
// The binary tree is read as a 4-ary one. Its "wide" nodes are the leaves and the binary nodes
// two, four, ... levels above them; the children of wide node i are its four grandchildren
// 4i..4i+3. Their boxes are stored side by side (kBox4 in mesh_tree.h), so one SIMD step gives
// all four lower bounds; each leaf's eight triangle boxes are stored the same way, as two groups
// of four. Compared with the binary search this halves the levels of the warm-start climb and
// turns most per-box branches into vector arithmetic.
//
// What it buys: the change that brought it (commit 67a0b48) took scripts/bench_mesh.py's bunny
// scans (362,272 points against 69,451 faces, BVH build included) from 0.169 s to 0.090 s and 1e6
// uniform points from 1.63 s to 1.06 s (bench/results/mesh_cpu.md at that commit), but together
// with the warm start across chunks, the prefetch of scattered queries and a parallel radix sort.
// The wide search's own share (this comment used to say "about 1.8x on scan points") was not
// recorded separately. Its price: a second closest-triangle search beside mesh_tree.h's, which
// only the CUDA kernel runs, so CI without a GPU does not run that one.
//
// The answer is the same as closest_triangle's in mesh_tree.h (which the CUDA kernel runs): the
// exact (distance, face) minimum under triangle.h's arithmetic. Boxes only prune, with
// cannot_beat's slack, so neither the order of the search nor the vector width can change it.
//
// Host only: GCC/Clang vector extensions, which compile to SSE on x86-64 and NEON on ARM.
#pragma once

#include <cstdint>
#include <cstring>

#include "mesh_tree.h"

namespace pm {

template <typename scalar_t>
struct Lanes4;
template <>
struct Lanes4<float> {
  typedef float type __attribute__((vector_size(16)));
};
template <>
struct Lanes4<double> {
  typedef double type __attribute__((vector_size(32)));
};

// Squared distances from q to four boxes stored side by side (lo x[4], y[4], z[4], hi x[4], ...);
// an empty box (+inf minima, -inf maxima) gives +inf. Same terms as box_lower_bound.
template <typename scalar_t>
inline void box4_lower_bound(const scalar_t* boxes, const scalar_t* q, scalar_t* out) {
  typedef typename Lanes4<scalar_t>::type V;
  V acc = {};
  for (int a = 0; a < 3; ++a) {
    V lo, hi;
    std::memcpy(&lo, boxes + 4 * a, sizeof(V));
    std::memcpy(&hi, boxes + 4 * (3 + a), sizeof(V));
    V gap = lo - q[a];
    const V above = q[a] - hi;
    gap = gap > above ? gap : above;
    gap = gap > 0 ? gap : V{};
    acc += gap * gap;
  }
  std::memcpy(out, &acc, sizeof(V));
}

// Bit k (k < 4) set when !cannot_beat(lb[k], thr), in the same double arithmetic as cannot_beat
// (topk.h). Searches walk the set bits instead of branching on each box: a box's pruning is close
// to a coin flip, and the mispredicted branches were the largest cost of a warm query. Thresholds
// only fall during a search, so a box pruned against an earlier threshold stays pruned, and callers
// re-check the current threshold before searching what a bit names: the boxes searched, and their
// order, are the same as with one test per box.
template <typename scalar_t>
inline unsigned may_beat4(const scalar_t* lb, double thr) {
  typedef double D4 __attribute__((vector_size(32)));
  typedef int64_t I4 __attribute__((vector_size(32)));
  const D4 v = {static_cast<double>(lb[0]), static_cast<double>(lb[1]), static_cast<double>(lb[2]),
                static_cast<double>(lb[3])};
  const I4 pruned = v * (1 - 1e-5) > thr + 1e-35;  // cannot_beat, lane by lane (-1 where true)
  return static_cast<unsigned>((~pruned[0] & 1) | (~pruned[1] & 2) | (~pruned[2] & 4) | (~pruned[3] & 8));
}

template <typename scalar_t>
struct WideTreeView {
  TriangleTreeView<scalar_t> tree;  // with frames and slot_boxes
  const scalar_t* quads;            // (P / 2, kBox4): row i holds the boxes of nodes 4i..4i+3
  int depth;                        // log2(P)
};

// Scans a leaf's triangles, each unless its box is too far. nearest_first (for the warm start's
// leaf, scanned before anything is known): the triangle with the nearest box goes first, so that
// the others are pruned against its distance rather than against the first one's.
template <typename scalar_t>
inline void wide_scan_leaf(const WideTreeView<scalar_t>& w, int64_t leaf, Vec3 p, const scalar_t* q,
                           ClosestTriangle& best, bool nearest_first = false) {
  const TriangleTreeView<scalar_t>& t = w.tree;
  const int64_t begin = leaf * kLeafSize;
  const int64_t count = begin + kLeafSize < t.n ? kLeafSize : t.n - begin;
  scalar_t lb[kLeafSize];
  static_assert(kLeafSize == 8, "a leaf is two groups of four boxes");
  box4_lower_bound(t.slot_boxes + 2 * kBox4 * leaf, q, lb);
  box4_lower_bound(t.slot_boxes + 2 * kBox4 * leaf + kBox4, q, lb + 4);
  unsigned todo = count > 0 ? (1u << count) - 1 : 0;  // slots of the leaf still to consider
  if (nearest_first && count > 0) {
    int first = 0;
    for (int k = 1; k < count; ++k) first = lb[k] < lb[first] ? k : first;
    best.consider(closest_on_frame(p, t.frames[begin + first]), t.face[begin + first], begin + first);
    todo &= ~(1u << first);
  }
  const double thr = best.threshold();
  todo &= may_beat4(lb, thr) | may_beat4(lb + 4, thr) << 4;
  while (todo != 0) {
    const int k = __builtin_ctz(todo);
    todo &= todo - 1;
    if (cannot_beat(static_cast<double>(lb[k]), best.threshold())) continue;
    best.consider(closest_on_frame(p, t.frames[begin + k]), t.face[begin + k], begin + k);
  }
}

// Top-down search under wide node `root` (whose lower bound is root_lb), nearest children first.
template <typename scalar_t>
inline void wide_search(const WideTreeView<scalar_t>& w, int64_t root, scalar_t root_lb, Vec3 p, const scalar_t* q,
                        ClosestTriangle& best) {
  constexpr int kStack = 3 * (kMaxDepth / 2 + 1) + 1;  // each wide level leaves at most 3 behind
  int64_t node_stack[kStack];
  scalar_t lb_stack[kStack];
  int sp = 0;
  node_stack[sp] = root;
  lb_stack[sp++] = root_lb;
  const int64_t P = w.tree.leaves;
  while (sp > 0) {
    --sp;
    const int64_t node = node_stack[sp];
    const double thr = best.threshold();
    if (cannot_beat(static_cast<double>(lb_stack[sp]), thr)) continue;
    if (node >= P) {
      wide_scan_leaf(w, node - P, p, q, best);
      continue;
    }
    scalar_t lb[4];
    box4_lower_bound(w.quads + kBox4 * node, q, lb);
    int near[4];  // children that may hold a closer triangle, farthest first
    int m = 0;
    for (unsigned todo = may_beat4(lb, thr); todo != 0; todo &= todo - 1) {
      const int k = __builtin_ctz(todo);
      int j = m++;
      for (; j > 0 && lb[near[j - 1]] < lb[k]; --j) near[j] = near[j - 1];
      near[j] = k;
    }
    for (int j = 0; j < m; ++j) {  // the nearest is pushed last and popped first
      node_stack[sp] = 4 * node + near[j];
      lb_stack[sp++] = lb[near[j]];
    }
  }
}

// Exact closest point of the mesh to p. With a start leaf (typically the previous query's
// answer's), that leaf is scanned first and the search climbs from it, one wide level at a time,
// searching the three other children of each ancestor unless they are too far; every triangle is
// in the start leaf or under one of them, so nothing is missed. Without one (start_leaf < 0) the
// search runs top-down.
template <typename scalar_t>
inline void wide_closest_triangle(const WideTreeView<scalar_t>& w, Vec3 p, ClosestTriangle& best,
                                  int64_t start_leaf) {
  const TriangleTreeView<scalar_t>& t = w.tree;
  if (t.n <= 0) return;
  const scalar_t q[3] = {static_cast<scalar_t>(p.x), static_cast<scalar_t>(p.y), static_cast<scalar_t>(p.z)};
  int64_t node;  // the wide node searched so far
  int depth;     // its binary depth
  if (start_leaf >= 0 && start_leaf < t.leaves) {
    wide_scan_leaf(w, start_leaf, p, q, best, /*nearest_first=*/true);
    node = t.leaves + start_leaf;
    depth = w.depth;
  } else {
    node = w.depth % 2 == 0 ? 1 : 2;  // with an odd depth, nodes 2 and 3 are the top wide nodes
    depth = w.depth % 2;
    wide_search(w, node, node_distance2(t, node, q), p, q, best);
  }
  for (; depth >= 2; depth -= 2) {
    const int64_t parent = node / 4;
    scalar_t lb[4];
    box4_lower_bound(w.quads + kBox4 * parent, q, lb);
    unsigned todo = may_beat4(lb, best.threshold()) & ~(1u << (node - 4 * parent));  // not the one searched
    while (todo != 0) {
      const int k = __builtin_ctz(todo);
      todo &= todo - 1;
      if (!cannot_beat(static_cast<double>(lb[k]), best.threshold())) wide_search(w, 4 * parent + k, lb[k], p, q, best);
    }
    node = parent;
  }
  if (depth == 1) {
    const scalar_t lb = node_distance2(t, node ^ 1, q);
    if (!cannot_beat(static_cast<double>(lb), best.threshold())) wide_search(w, node ^ 1, lb, p, q, best);
  }
}

}  // namespace pm
