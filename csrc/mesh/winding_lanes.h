// The CPU winding number, kLanes queries at a time.
//
// Queries arrive in Morton order, so neighbouring queries open almost the same nodes. Here a group
// of kLanes of them walks mesh_tree.h's traversal together: each stack entry carries the lanes
// that opened it, a node's far-field test and expansion are computed for all lanes in one loop
// (which the compiler turns into vector instructions), and each lane adds only the terms its own
// traversal would. Every lane therefore adds the same terms in the same order as winding_number
// in mesh_tree.h, which the CUDA kernel runs: the same bits, for a third of the time (measured on
// 1e6 uniform points against the armadillo, scripts/bench_mesh.py).
//
// Host only.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/simd.h"
#include "mesh_tree.h"

namespace pm {

constexpr int kLanes = 8;  // 4 and 16 were slower (scripts/bench_mesh.py, 2 cores)

// kLanes doubles in one GCC/Clang vector (SSE/AVX on x86-64, NEON on ARM). Element-wise IEEE
// arithmetic, not contracted (-ffp-contract=off): each lane rounds as the scalar code does.
typedef double Lanes __attribute__((vector_size(8 * kLanes)));

struct LaneQueries {
  Lanes x, y, z;
};

// node_is_far for every lane (bit l set: far for lane l).
PM_HOT unsigned far_lanes(const WindingMoments& m, int64_t node, const LaneQueries& p, double beta) {
  const double* c = m.centre + 3 * node;
  const Lanes yx = c[0] - p.x, yy = c[1] - p.y, yz = c[2] - p.z;
  const Lanes d2 = yx * yx + yy * yy + yz * yz;
  const double reach = (beta * beta) * (m.radius[node] * m.radius[node]);
  unsigned far = 0;
  for (int l = 0; l < kLanes; ++l) far |= d2[l] > reach ? 1u << l : 0u;
  return far;
}

// far_field_winding for every lane, operation for operation.
PM_HOT void far_field_lanes(const WindingMoments& m, int64_t node, const LaneQueries& p, Lanes& out) {
  const double* c = m.centre + 3 * node;
  const double* N = m.normal_sum + 3 * node;
  const double* M = m.moment + 9 * node;
  const Lanes y[3] = {c[0] - p.x, c[1] - p.y, c[2] - p.z};
  const Lanes r2 = y[0] * y[0] + y[1] * y[1] + y[2] * y[2];
  Lanes r;
  for (int l = 0; l < kLanes; ++l) r[l] = std::sqrt(r2[l]);
  const Lanes r5 = (r2 * r2) * r;
  Lanes yMy = {};
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) yMy = yMy + (y[i] * M[3 * i + j]) * y[j];
  }
  const double trace = (M[0] + M[4]) + M[8];
  const Lanes numer = r2 * (N[0] * y[0] + N[1] * y[1] + N[2] * y[2]) - (3.0 * yMy - r2 * trace);
  out = numer / ((2.0 * kTwoPi) * r5);
}

// leaf_winding for the lanes in `near` (others untouched), with each triangle's dipole data
// computed once for all lanes.
template <typename scalar_t>
inline void leaf_winding_lanes(const TriangleTreeView<scalar_t>& t, int64_t leaf, const Vec3* p, const LaneQueries& q,
                               unsigned near, double beta, double* w) {
  const int64_t begin = leaf * kLeafSize;
  const int64_t end = begin + kLeafSize < t.n ? begin + kLeafSize : t.n;
  Lanes sum = {};
  for (int64_t s = begin; s < end; ++s) {
    const scalar_t* v = t.tris + 9 * s;
    const Vec3 a = vec3(v), b = vec3(v + 3), c = vec3(v + 6);
    const TriangleDipole d = triangle_dipole(a, b, c);
    const Lanes yx = d.centroid.x - q.x, yy = d.centroid.y - q.y, yz = d.centroid.z - q.z;
    const Lanes r2 = yx * yx + yy * yy + yz * yz;
    const double reach = (beta * beta) * d.radius2;
    Lanes root;
    for (int l = 0; l < kLanes; ++l) root[l] = std::sqrt(r2[l]);
    const Vec3 n = d.area_normal;
    const Lanes dipole = (n.x * yx + n.y * yy + n.z * yz) / (r2 * root) / (2.0 * kTwoPi);
    for (int l = 0; l < kLanes; ++l) {
      if (!(near >> l & 1u)) continue;
      sum[l] = add(sum[l], r2[l] > reach ? dipole[l] : triangle_winding(p[l], a, b, c));
    }
  }
  for (int l = 0; l < kLanes; ++l) w[l] = near >> l & 1u ? add(w[l], sum[l]) : w[l];
}

struct LaneEntry {
  int64_t node;
  unsigned open;  // bit l: lane l's traversal opens the node
};

// winding_visit for the lanes in `open`.
template <typename scalar_t>
PM_HOT void winding_visit_lanes(const TriangleTreeView<scalar_t>& t, const WindingMoments& m, const Vec3* p,
                                const LaneQueries& q, double beta, int64_t node, unsigned open, double* w,
                                LaneEntry* stack, int& sp) {
  if (t.lo[3 * node] > t.hi[3 * node]) return;  // empty node
  const unsigned far = far_lanes(m, node, q, beta) & open, near = open & ~far;
  if (far != 0) {  // evaluated for every lane, kept by the lanes that take it
    Lanes term;
    far_field_lanes(m, node, q, term);
    for (int l = 0; l < kLanes; ++l) w[l] = far >> l & 1u ? add(w[l], term[l]) : w[l];
  }
  if (near == 0) return;
  if (node >= t.leaves) {
    leaf_winding_lanes(t, node - t.leaves, p, q, near, beta, w);
  } else {
    stack[sp++] = LaneEntry{node, near};
  }
}

// PM_WIDE_CLONES (core/simd.h): an AVX2 build of the traversal, four doubles per instruction.
template <typename scalar_t>
PM_WIDE_CLONES void winding_number_lanes(const TriangleTreeView<scalar_t>& t, const WindingMoments& m, const Vec3* p,
                                 int lanes, double beta, double* w) {
  for (int l = 0; l < kLanes; ++l) w[l] = 0.0;
  if (t.n <= 0) return;
  LaneQueries q;
  for (int l = 0; l < kLanes; ++l) {
    q.x[l] = p[l].x;
    q.y[l] = p[l].y;
    q.z[l] = p[l].z;
  }
  LaneEntry stack[kTreeStack];
  int sp = 0;
  winding_visit_lanes(t, m, p, q, beta, 1, (1u << lanes) - 1, w, stack, sp);
  while (sp > 0) {
    const LaneEntry e = stack[--sp];
    winding_visit_lanes(t, m, p, q, beta, 2 * e.node, e.open, w, stack, sp);
    winding_visit_lanes(t, m, p, q, beta, 2 * e.node + 1, e.open, w, stack, sp);
  }
}

}  // namespace pm
