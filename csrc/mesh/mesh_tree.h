// Searches over a triangle bounding-volume hierarchy, written once for host and device.
//
// The hierarchy has the implicit layout of spatial/point_tree.h: triangles are ordered by a balanced
// kd-tree over their centroids and cut into leaves of kLeafSize; node i has children 2i and
// 2i+1, leaf j is node P + j, and every node stores the box of its triangles' corners.
//
//   closest_triangle: exact closest point of the mesh to a query. Nearer child first; a node is
//     skipped when its box is farther than the best distance so far (with the pruning slack of
//     cannot_beat). Ties go to the smaller face index, so the answer does not depend on the order
//     of the search, the device or the thread. The CUDA kernel runs this search; the CPU runs
//     the same search four boxes at a time (wide_tree.h), with the same answer.
//   winding_number: generalised winding number (Jacobson et al. 2013), exact solid angles near the
//     query and Barill et al.'s (2018) second-order far-field expansion for nodes (and the dipole
//     for single triangles) farther than beta times their radius.
#pragma once

#include <cstdint>
#include <limits>

#include "spatial/point_tree.h"
#include "triangle.h"

namespace pm {

// Boxes stored four side by side: the x-minima of four boxes, then the y- and z-minima, then the
// maxima, so that a CPU vector step reads four at once (wide_tree.h). Python (MeshBVH prepares them):
// pointmetrics/_ops.py BOX4_FLOATS (tests/test_constants.py).
constexpr int kBox4 = 24;

template <typename scalar_t>
struct TriangleTreeView {
  const scalar_t* tris;  // (S, 3, 3) triangle corners in tree order
  const int64_t* face;   // (S,) original face index of each triangle
  const scalar_t* lo;    // (2P, 3) node box minima (+inf for empty nodes)
  const scalar_t* hi;    // (2P, 3) node box maxima (-inf for empty nodes)
  int64_t leaves;        // P, a power of two
  int64_t n;             // valid triangles
  // For closest_triangle (MeshBVH prepares them once): every slot's TriangleFrame, and every
  // slot's triangle box, side by side in groups of four slots ((S / 4, kBox4), +-inf for padding).
  const TriangleFrame* frames = nullptr;
  const scalar_t* slot_boxes = nullptr;
};

// Squared distance from q to slot s's triangle box (a lower bound on the triangle's distance).
template <typename scalar_t>
PM_HD scalar_t slot_lower_bound(const TriangleTreeView<scalar_t>& t, int64_t s, const scalar_t* q) {
  const scalar_t* row = t.slot_boxes + kBox4 * (s / 4) + s % 4;
  const scalar_t lo[3] = {row[0], row[4], row[8]}, hi[3] = {row[12], row[16], row[20]};
  return box_lower_bound<scalar_t, 2>(lo, hi, q);
}

// Far-field data of every node for the winding number, in double.
struct WindingMoments {
  const double* centre;      // (2P, 3) area-weighted centroid of the node's triangles
  const double* normal_sum;  // (2P, 3) sum of area * unit normal
  const double* moment;      // (2P, 9) sum of area * (centroid - centre) normal^T, row-major
  const double* radius;      // (2P,) distance from centre to the farthest corner of the node's box
};

// The best triangle so far. Boxes are pruned against threshold(), which exceeds the best squared
// distance by the most a computed distance can fall below the exact one (`reach`, closest_reach):
// a box whose triangles' computed distances could still tie with or beat the best is always
// searched. So the answer, the smallest computed (distance, face), never depends on the order of
// the search: the CPU's four-wide warm-started search and the device's binary one agree even for
// queries a few ulps off the surface, where a triangle's computed distance (0, say) can lie below
// its own box's lower bound.
struct ClosestTriangle {
  double dist2;          // squared distance of the best triangle so far
  int64_t face;          // its original face index (-1: none yet)
  int64_t slot;          // its position in tree order
  double w[3];           // barycentric weights of the closest point, of the frame's corners (frame_corners)
  double bound;          // accept only candidates within this squared distance until one is found
  double reach = 0.0;    // how far a computed distance may lie below the exact one
  double prune = 0.0;    // (sqrt(dist2) + reach)^2, once a triangle is found

  PM_HD double threshold() const { return face < 0 ? bound : prune; }

  // Keeps triangle f (tree slot s) if its point tp is closer, or as close with a smaller face.
  PM_HD void consider(const TrianglePoint& tp, int64_t f, int64_t s) {
    const bool better = face < 0 ? tp.dist2 <= bound : (tp.dist2 < dist2 || (tp.dist2 == dist2 && f < face));
    if (!better) return;  // also rejects NaN
    dist2 = tp.dist2;
    face = f;
    slot = s;
    w[0] = tp.w[0];
    w[1] = tp.w[1];
    w[2] = tp.w[2];
    const double margin = add(std::sqrt(dist2), reach);
    prune = mul(margin, margin);
  }
};

// The search state of a query at p: nothing found yet, and `reach` from triangle.h's error bound
// (a computed closest point lies within 16 ulps of M, the largest coordinate magnitude of the
// query and of the mesh's root box, from the exact one), doubled.
template <typename scalar_t>
PM_HD ClosestTriangle start_closest(const TriangleTreeView<scalar_t>& t, Vec3 p) {
  double m = max_val(max_val(abs_val(p.x), abs_val(p.y)), abs_val(p.z));
  for (int a = 0; a < 3; ++a) {
    const double lo = static_cast<double>(t.lo[3 + a]), hi = static_cast<double>(t.hi[3 + a]);
    if (lo <= hi) m = max_val(m, max_val(abs_val(lo), abs_val(hi)));  // node 1; empty: +inf > -inf
  }
  ClosestTriangle best{0.0, -1, -1, {0.0, 0.0, 0.0}, std::numeric_limits<double>::infinity()};
  best.reach = 32.0 * std::numeric_limits<double>::epsilon() * m;
  return best;
}

// Writes query `flat`'s answer, as every device does: squared distance, face, barycentric weights
// (mapped from the frame's corners to the face's) and the closest point (from the slot's corners
// and the weights, in double).
template <typename scalar_t>
PM_HD void write_closest(const TriangleTreeView<scalar_t>& t, const ClosestTriangle& best, int64_t flat,
                         scalar_t* dist2, int64_t* face, scalar_t* bary, scalar_t* closest) {
  dist2[flat] = static_cast<scalar_t>(best.dist2);
  face[flat] = best.face;
  const scalar_t* c = t.tris + 9 * best.slot;
  const int8_t* order = t.frames[best.slot].order;
  double w[3];
  for (int k = 0; k < 3; ++k) w[order[k]] = best.w[k];
  for (int k = 0; k < 3; ++k) bary[3 * flat + k] = static_cast<scalar_t>(w[k]);
  const Vec3 point = vec3(c) * w[0] + vec3(c + 3) * w[1] + vec3(c + 6) * w[2];
  closest[3 * flat] = static_cast<scalar_t>(point.x);
  closest[3 * flat + 1] = static_cast<scalar_t>(point.y);
  closest[3 * flat + 2] = static_cast<scalar_t>(point.z);
}

// Lower bound on the squared distance from q to a node, from its box in the input precision;
// cannot_beat's slack covers the rounding.
template <typename scalar_t>
PM_HD scalar_t node_distance2(const TriangleTreeView<scalar_t>& t, int64_t node, const scalar_t* q) {
  return box_lower_bound<scalar_t, 2>(t.lo + 3 * node, t.hi + 3 * node, q);
}

template <typename scalar_t>
PM_HD void scan_triangles(const TriangleTreeView<scalar_t>& t, int64_t leaf, Vec3 p, const scalar_t* q,
                          ClosestTriangle& best) {
  const int64_t begin = leaf * kLeafSize;
  const int64_t end = begin + kLeafSize < t.n ? begin + kLeafSize : t.n;
  for (int64_t s = begin; s < end; ++s) {
    // The triangle's own box first: most triangles of a leaf are farther than the best so far,
    // and the box test costs a fraction of the exact closest-point computation.
    if (cannot_beat(static_cast<double>(slot_lower_bound(t, s, q)), best.threshold())) continue;
    best.consider(closest_on_frame(p, t.frames[s]), t.face[s], s);
  }
}

// Top-down search of the subtree under `root`, nearer child first.
template <typename scalar_t>
PM_HD void search_subtree(const TriangleTreeView<scalar_t>& t, int64_t root, Vec3 p, const scalar_t* q,
                          ClosestTriangle& best) {
  int64_t node_stack[kTreeStack];
  scalar_t lb_stack[kTreeStack];
  int sp = 0;
  node_stack[sp] = root;
  lb_stack[sp++] = node_distance2(t, root, q);
  while (sp > 0) {
    --sp;
    const int64_t node = node_stack[sp];
    const double thr = best.threshold();
    if (cannot_beat(static_cast<double>(lb_stack[sp]), thr)) continue;
    if (node >= t.leaves) {
      scan_triangles(t, node - t.leaves, p, q, best);
      continue;
    }
    const int64_t left = 2 * node, right = left + 1;
    const scalar_t lb_left = node_distance2(t, left, q), lb_right = node_distance2(t, right, q);
    const bool left_first = !(lb_right < lb_left);
    const scalar_t lb_far = left_first ? lb_right : lb_left, lb_near = left_first ? lb_left : lb_right;
    if (!cannot_beat(static_cast<double>(lb_far), thr)) {  // pushed first, popped last
      node_stack[sp] = left_first ? right : left;
      lb_stack[sp++] = lb_far;
    }
    if (!cannot_beat(static_cast<double>(lb_near), thr)) {
      node_stack[sp] = left_first ? left : right;
      lb_stack[sp++] = lb_near;
    }
  }
}

// Exact closest point of the mesh to p, top-down from the root (the CUDA search; the CPU runs
// the equivalent wide_closest_triangle of wide_tree.h).
template <typename scalar_t>
PM_HD void closest_triangle(const TriangleTreeView<scalar_t>& t, Vec3 p, ClosestTriangle& best) {
  if (t.n <= 0) return;
  const scalar_t q[3] = {static_cast<scalar_t>(p.x), static_cast<scalar_t>(p.y), static_cast<scalar_t>(p.z)};
  search_subtree(t, 1, p, q, best);
}

// Second-order far-field winding number of a node seen from p (Barill et al. 2018, eq. 11):
// with y = centre - p, r = |y|:  (N.y / r^3 - (3 y^T M y - r^2 tr M) / r^5) / (4 pi), computed
// as (r^2 N.y - (3 y^T M y - r^2 tr M)) / (4 pi r^5) with one division.
PM_HD double far_field_winding(const WindingMoments& m, int64_t node, Vec3 p) {
  const double* c = m.centre + 3 * node;
  const double* N = m.normal_sum + 3 * node;
  const double* M = m.moment + 9 * node;
  const Vec3 y = Vec3{c[0], c[1], c[2]} - p;
  const double r2 = dot(y, y), r5 = mul(mul(r2, r2), std::sqrt(r2));
  const double yv[3] = {y.x, y.y, y.z};
  double yMy = 0.0;
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) yMy = add(yMy, mul(mul(yv[i], M[3 * i + j]), yv[j]));
  }
  const double trace = add(add(M[0], M[4]), M[8]);
  const double numer = sub(mul(r2, dot(Vec3{N[0], N[1], N[2]}, y)), sub(mul(3.0, yMy), mul(r2, trace)));
  return numer / mul(2.0 * kTwoPi, r5);
}

// Whether p is far enough from a node for its far-field expansion: |centre - p| > beta radius.
PM_HD bool node_is_far(const WindingMoments& m, int64_t node, Vec3 p, double beta) {
  const double* c = m.centre + 3 * node;
  const Vec3 y = Vec3{c[0], c[1], c[2]} - p;
  return dot(y, y) > mul(mul(beta, beta), mul(m.radius[node], m.radius[node]));
}

// One triangle of an open leaf: its exact solid angle (triangle_winding) when p is within beta
// times the triangle's radius of its centroid, else its far field, the dipole of Barill et al.'s
// triangle-soup model (area normal at the centroid, whose first moment about itself is zero), the
// term the node expansions sum. Most triangles of an open leaf are far (on the armadillo, 30 of a
// uniform query's 30.4 triangle terms), and the dipole costs a fraction of the exact atan2.
struct TriangleDipole {
  Vec3 centroid;
  Vec3 area_normal;  // cross(b - a, c - a) / 2
  double radius2;    // squared distance from the centroid to the farthest corner
};

PM_HD TriangleDipole triangle_dipole(Vec3 a, Vec3 b, Vec3 c) {
  const Vec3 centroid = (a + b + c) * (1.0 / 3.0);
  const Vec3 da = a - centroid, db = b - centroid, dc = c - centroid;
  const double radius2 = max_val(max_val(dot(da, da), dot(db, db)), dot(dc, dc));
  return TriangleDipole{centroid, cross(b - a, c - a) * 0.5, radius2};
}

// The dipole's winding number at distance vector y = centroid - p, r2 = |y|^2.
PM_HD double dipole_winding(Vec3 area_normal, Vec3 y, double r2) {
  return dot(area_normal, y) / mul(r2, std::sqrt(r2)) / (2.0 * kTwoPi);
}

PM_HD double leaf_triangle_winding(Vec3 p, Vec3 a, Vec3 b, Vec3 c, double beta) {
  const TriangleDipole d = triangle_dipole(a, b, c);
  const Vec3 y = d.centroid - p;
  const double r2 = dot(y, y);
  if (!(r2 > mul(mul(beta, beta), d.radius2))) return triangle_winding(p, a, b, c);
  return dipole_winding(d.area_normal, y, r2);
}

template <typename scalar_t>
PM_HD double leaf_winding(const TriangleTreeView<scalar_t>& t, int64_t leaf, Vec3 p, double beta) {
  const int64_t begin = leaf * kLeafSize;
  const int64_t end = begin + kLeafSize < t.n ? begin + kLeafSize : t.n;
  double w = 0.0;
  for (int64_t s = begin; s < end; ++s) {
    const scalar_t* v = t.tris + 9 * s;
    w = add(w, leaf_triangle_winding(p, vec3(v), vec3(v + 3), vec3(v + 6), beta));
  }
  return w;
}

// Adds node's contribution to w when the node is far or a leaf; otherwise pushes it, to be opened.
template <typename scalar_t>
PM_HD double winding_visit(const TriangleTreeView<scalar_t>& t, const WindingMoments& m, Vec3 p, double beta,
                           int64_t node, double w, int64_t* stack, int& sp) {
  if (t.lo[3 * node] > t.hi[3 * node]) return w;  // empty node
  if (node_is_far(m, node, p, beta)) return add(w, far_field_winding(m, node, p));
  if (node >= t.leaves) return add(w, leaf_winding(t, node - t.leaves, p, beta));
  stack[sp++] = node;
  return w;
}

// Depth first; an opened node visits its left child, then its right, and then opens the nodes
// they pushed, the right one first. Every device and the CPU's eight-query version
// (winding_lanes.h) add the same terms in the same order.
template <typename scalar_t>
PM_HD double winding_number(const TriangleTreeView<scalar_t>& t, const WindingMoments& m, Vec3 p, double beta) {
  if (t.n <= 0) return 0.0;
  int64_t stack[kTreeStack];
  int sp = 0;
  double w = winding_visit(t, m, p, beta, 1, 0.0, stack, sp);
  while (sp > 0) {
    const int64_t node = stack[--sp];
    w = winding_visit(t, m, p, beta, 2 * node, w, stack, sp);
    w = winding_visit(t, m, p, beta, 2 * node + 1, w, stack, sp);
  }
  return w;
}

}  // namespace pm
