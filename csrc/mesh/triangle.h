// Point-triangle geometry for host and device, in double precision without FMA contraction, so
// CPU and CUDA agree to the bit: the closest point of a triangle to a query and the signed solid
// angle a triangle subtends.
#pragma once

#include <cmath>

#include "../common.h"

namespace pm {

constexpr double kTwoPi = 6.283185307179586476925286766559;

struct Vec3 {
  double x, y, z;
};

PM_HD Vec3 vec3(const float* p) { return Vec3{p[0], p[1], p[2]}; }
PM_HD Vec3 vec3(const double* p) { return Vec3{p[0], p[1], p[2]}; }
PM_HD Vec3 operator-(Vec3 a, Vec3 b) { return Vec3{sub(a.x, b.x), sub(a.y, b.y), sub(a.z, b.z)}; }
PM_HD Vec3 operator+(Vec3 a, Vec3 b) { return Vec3{add(a.x, b.x), add(a.y, b.y), add(a.z, b.z)}; }
PM_HD Vec3 operator*(Vec3 a, double s) { return Vec3{mul(a.x, s), mul(a.y, s), mul(a.z, s)}; }
PM_HD double dot(Vec3 a, Vec3 b) { return add(add(mul(a.x, b.x), mul(a.y, b.y)), mul(a.z, b.z)); }
PM_HD Vec3 cross(Vec3 a, Vec3 b) {
  return Vec3{sub(mul(a.y, b.z), mul(a.z, b.y)), sub(mul(a.z, b.x), mul(a.x, b.z)), sub(mul(a.x, b.y), mul(a.y, b.x))};
}
PM_HD double norm(Vec3 a) { return std::sqrt(dot(a, a)); }

// Closest point of a triangle to p, as barycentric coordinates (weights of a, b, c).
// The region of the closest point is encoded by which weights are exactly zero: none (inside the
// face), one (on an edge) or two (a vertex); torch relies on that to recompute the point.
struct TrianglePoint {
  double dist2;  // squared distance from p
  double w[3];   // barycentric weights, summing to 1
};

// Closest point on segment a-b; a zero-length segment is its endpoint a.
PM_HD TrianglePoint closest_on_segment(Vec3 p, Vec3 a, Vec3 b, int ia, int ib) {
  const Vec3 ab = b - a;
  const double len2 = dot(ab, ab);
  double t = len2 > 0.0 ? dot(p - a, ab) / len2 : 0.0;
  t = t < 0.0 ? 0.0 : (t > 1.0 ? 1.0 : t);
  TrianglePoint r{0.0, {0.0, 0.0, 0.0}};
  r.w[ia] = sub(1.0, t);  // exactly 0 at t = 1, exactly 1 at t = 0: the region stays readable
  r.w[ib] = t;
  const Vec3 d = p - (a + ab * t);
  r.dist2 = dot(d, d);
  return r;
}

// Closest point on triangle (a, b, c) to p (Ericson, Real-Time Collision Detection, 5.1.5).
// A triangle whose area is negligible against its edges (zero-area, collinear, repeated vertices,
// slivers beyond double precision) is treated as its three edges, whatever its scale: the test is
// relative, so tiny triangles are as exact as large ones.
PM_HD TrianglePoint closest_on_triangle(Vec3 p, Vec3 a, Vec3 b, Vec3 c) {
  const Vec3 ab = b - a, ac = c - a;
  const double cross2 = dot(cross(ab, ac), cross(ab, ac));
  const double scale2 = dot(ab, ab) * dot(ac, ac);
  if (!(cross2 > 1e-24 * scale2) || !(cross2 > 0.0)) {
    TrianglePoint best = closest_on_segment(p, a, b, 0, 1);
    const TrianglePoint e2 = closest_on_segment(p, b, c, 1, 2);
    const TrianglePoint e3 = closest_on_segment(p, c, a, 2, 0);
    if (e2.dist2 < best.dist2) best = e2;
    if (e3.dist2 < best.dist2) best = e3;
    return best;
  }
  TrianglePoint r{0.0, {0.0, 0.0, 0.0}};
  const Vec3 ap = p - a;
  const double d1 = dot(ab, ap), d2 = dot(ac, ap);
  if (d1 <= 0.0 && d2 <= 0.0) {  // vertex a
    r.w[0] = 1.0;
    r.dist2 = dot(ap, ap);
    return r;
  }
  const Vec3 bp = p - b;
  const double d3 = dot(ab, bp), d4 = dot(ac, bp);
  if (d3 >= 0.0 && d4 <= d3) {  // vertex b
    r.w[1] = 1.0;
    r.dist2 = dot(bp, bp);
    return r;
  }
  const Vec3 cp = p - c;
  const double d5 = dot(ab, cp), d6 = dot(ac, cp);
  if (d6 >= 0.0 && d5 <= d6) {  // vertex c
    r.w[2] = 1.0;
    r.dist2 = dot(cp, cp);
    return r;
  }
  const double vc = sub(mul(d1, d4), mul(d3, d2));
  if (vc <= 0.0 && d1 >= 0.0 && d3 <= 0.0) return closest_on_segment(p, a, b, 0, 1);  // edge ab
  const double vb = sub(mul(d5, d2), mul(d1, d6));
  if (vb <= 0.0 && d2 >= 0.0 && d6 <= 0.0) return closest_on_segment(p, a, c, 0, 2);  // edge ac
  const double va = sub(mul(d3, d6), mul(d5, d4));
  if (va <= 0.0 && d4 - d3 >= 0.0 && d5 - d6 >= 0.0) return closest_on_segment(p, b, c, 1, 2);  // edge bc
  // Inside the face: project onto the plane.
  const double denom = add(add(va, vb), vc);
  const double v = vb / denom, w = vc / denom;
  r.w[0] = sub(sub(1.0, v), w);
  r.w[1] = v;
  r.w[2] = w;
  const Vec3 d = p - (a + ab * v + ac * w);
  r.dist2 = dot(d, d);
  return r;
}

// A triangle prepared once for many closest-point queries: corner a, edges ab and ac, their dot
// products, and whether it is degenerate (closest_on_triangle's relative test). The corners are
// put in a canonical order first (lexicographic by coordinates), so that every ordering of the
// same three corners, and every duplicate of a face, gives bit-identical distances; `order` maps
// the canonical corners back to the face's own.
struct TriangleFrame {
  double a[3], ab[3], ac[3];
  double aa, cc, abac;  // ab.ab, ac.ac, ab.ac
  double degenerate;    // 1 or 0
  int32_t order[3];     // canonical corner k is the face's corner order[k]
  int32_t pad_;
};
constexpr int64_t kFrameBytes = 120;  // the triangle_frames fake in pointmetrics/_ops.py: frames travel as uint8
static_assert(sizeof(TriangleFrame) == kFrameBytes, "TriangleFrame must keep its size");

PM_HD bool coordinates_less(Vec3 u, Vec3 v) {
  if (u.x != v.x) return u.x < v.x;
  if (u.y != v.y) return u.y < v.y;
  return u.z < v.z;
}

PM_HD TriangleFrame make_frame(Vec3 p0, Vec3 p1, Vec3 p2) {
  Vec3 c[3] = {p0, p1, p2};
  int32_t order[3] = {0, 1, 2};
  for (int i = 1; i < 3; ++i) {  // insertion sort of three corners, stable
    for (int j = i; j > 0 && coordinates_less(c[j], c[j - 1]); --j) {
      const Vec3 t = c[j];
      c[j] = c[j - 1];
      c[j - 1] = t;
      const int32_t o = order[j];
      order[j] = order[j - 1];
      order[j - 1] = o;
    }
  }
  const Vec3 a = c[0], ab = c[1] - a, ac = c[2] - a;
  const Vec3 n = cross(ab, ac);
  const double cross2 = dot(n, n), aa = dot(ab, ab), cc = dot(ac, ac);
  const bool degenerate = !(cross2 > 1e-24 * (aa * cc)) || !(cross2 > 0.0);
  return TriangleFrame{{a.x, a.y, a.z}, {ab.x, ab.y, ab.z}, {ac.x, ac.y, ac.z}, aa, cc, dot(ab, ac),
                       degenerate ? 1.0 : 0.0, {order[0], order[1], order[2]}, 0};
}

// closest_on_triangle on a prepared frame: d3..d6 of Ericson's algorithm follow from d1, d2 and
// the frame's dot products (d3 = d1 - ab.ab and so on), so a query costs two dot products.
PM_HD TrianglePoint canonical_closest_on_frame(Vec3 p, const TriangleFrame& f);

// Closest point of a prepared triangle, weights in the face's own corner order.
PM_HD TrianglePoint closest_on_frame(Vec3 p, const TriangleFrame& f) {
  const TrianglePoint c = canonical_closest_on_frame(p, f);
  TrianglePoint r{c.dist2, {0.0, 0.0, 0.0}};
  for (int k = 0; k < 3; ++k) r.w[f.order[k]] = c.w[k];
  return r;
}

PM_HD TrianglePoint canonical_closest_on_frame(Vec3 p, const TriangleFrame& f) {
  const Vec3 a{f.a[0], f.a[1], f.a[2]}, ab{f.ab[0], f.ab[1], f.ab[2]}, ac{f.ac[0], f.ac[1], f.ac[2]};
  if (f.degenerate != 0.0) return closest_on_triangle(p, a, a + ab, a + ac);
  const Vec3 ap = p - a;
  const double d1 = dot(ab, ap), d2 = dot(ac, ap);
  TrianglePoint r{0.0, {0.0, 0.0, 0.0}};
  double v = 0.0, w = 0.0;
  if (d1 <= 0.0 && d2 <= 0.0) {  // vertex a
    r.w[0] = 1.0;
  } else {
    const double d3 = sub(d1, f.aa), d4 = sub(d2, f.abac);
    const double d5 = sub(d1, f.abac), d6 = sub(d2, f.cc);
    const double vc = sub(mul(d1, d4), mul(d3, d2));
    const double vb = sub(mul(d5, d2), mul(d1, d6));
    const double va = sub(mul(d3, d6), mul(d5, d4));
    if (d3 >= 0.0 && d4 <= d3) {  // vertex b
      v = 1.0;
      r.w[1] = 1.0;
    } else if (d6 >= 0.0 && d5 <= d6) {  // vertex c
      w = 1.0;
      r.w[2] = 1.0;
    } else if (vc <= 0.0 && d1 >= 0.0 && d3 <= 0.0) {  // edge ab
      v = d1 / f.aa;
      r.w[0] = sub(1.0, v);
      r.w[1] = v;
    } else if (vb <= 0.0 && d2 >= 0.0 && d6 <= 0.0) {  // edge ac
      w = d2 / f.cc;
      r.w[0] = sub(1.0, w);
      r.w[2] = w;
    } else if (va <= 0.0 && d4 - d3 >= 0.0 && d5 - d6 >= 0.0) {  // edge bc
      w = sub(d4, d3) / add(sub(d4, d3), sub(d5, d6));
      v = sub(1.0, w);
      r.w[1] = v;
      r.w[2] = w;
    } else {  // inside the face
      const double denom = add(add(va, vb), vc);
      v = vb / denom;
      w = vc / denom;
      r.w[0] = sub(sub(1.0, v), w);
      r.w[1] = v;
      r.w[2] = w;
    }
  }
  const Vec3 d = ap - (ab * v + ac * w);
  r.dist2 = dot(d, d);
  return r;
}

// Signed solid angle of triangle (a, b, c) seen from p (Van Oosterom and Strackee, 1983),
// positive when p sees the triangle's back (p below the counter-clockwise face), divided by 4 pi:
// summed over a closed, outward-oriented mesh it is 1 inside and 0 outside.
PM_HD double triangle_winding(Vec3 p, Vec3 a, Vec3 b, Vec3 c) {
  const Vec3 x = a - p, y = b - p, z = c - p;
  const double lx = norm(x), ly = norm(y), lz = norm(z);
  const double numer = dot(x, cross(y, z));
  const double denom = add(add(add(mul(mul(lx, ly), lz), mul(dot(x, y), lz)), mul(dot(x, z), ly)), mul(dot(y, z), lx));
  return std::atan2(numer, denom) / kTwoPi;
}

}  // namespace pm
