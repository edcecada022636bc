// Point-triangle geometry for host and device, in double precision without FMA contraction, so
// CPU and CUDA agree to the bit: the closest point of a triangle to a query and the signed solid
// angle a triangle subtends.
#pragma once

#include <cmath>

#include "core/common.h"

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

// Closest point of a triangle to p, as barycentric coordinates (weights of its corners).
// The region of the closest point is encoded by which weights are exactly zero: none (inside the
// face), one (on an edge) or two (a vertex); torch relies on that to recompute the point.
struct TrianglePoint {
  double dist2;  // squared distance from p
  double w[3];   // barycentric weights, summing to 1
};

// A triangle prepared once for many closest-point queries, in a frame that keeps slivers (long,
// thin triangles) well conditioned. Its corners a, b, c are ordered so that ab is the longest edge
// (frame_corners); then c lies over ab (its foot falls between a and b), and the triangle is, in
// the plane, (0, 0), (|ab|, 0), (cu, cv) with cv >= 0 the height of c over ab. A query is read in
// that plane as x along ab and y along the unit vector v, and every region test is written on
// coordinate differences (x - cu, y - cv, ...) rather than on differences of large dot products:
// Ericson's signed areas (d1 d4 - d3 d2 ...) cancel catastrophically for slivers, by a factor of
// |ab| / height, and chose the wrong region on slivers. The result is the exact closest point of a
// triangle and query perturbed by a few ulps of their coordinates. v comes from Gram-Schmidt done
// twice: once leaves a component along ab of order eps |ab|, large against a small height. A
// collinear triangle (or a point) has v = 0 and cv = 0, and the same tests then pick its longest
// edge, so no degenerate case is special. Edges are kept as ab and ac, so a query at a corner is
// at distance exactly 0.
struct TriangleFrame {
  double a[3], ab[3], ac[3];
  double v[3];  // unit vector in the plane, orthogonal to ab, towards c; 0 for a collinear triangle
  double aa;    // ab.ab
  double abac;  // ab.ac = cu |ab|
  double cv;    // height of c over the line ab
  // Frame corner k is the face's corner order[k] (frame_corners): kept here so that writing an
  // answer's weights costs a load, not a second sort of the corners (7% of a warm query's time).
  // It also pads the frame to 128 bytes, so that no frame straddles three cache lines.
  int8_t order[3];
  int8_t unused[5];
};
constexpr int64_t kFrameBytes = 128;  // frames travel as uint8; Python: _ops.FRAME_BYTES (tests/test_constants.py)
static_assert(sizeof(TriangleFrame) == kFrameBytes, "TriangleFrame must keep its size");

PM_HD bool coordinates_less(Vec3 u, Vec3 v) {
  if (u.x != v.x) return u.x < v.x;
  if (u.y != v.y) return u.y < v.y;
  return u.z < v.z;
}

// The corners of a frame: first put in a canonical order (lexicographic by coordinates), so that
// every ordering of the same three corners, and every duplicate of a face, gives bit-identical
// distances; then rotated so that the first two span the longest edge (ties to the earlier edge).
// Frame corner k is the face's corner order[k], kept in the frame.
PM_HD void frame_corners(Vec3 p0, Vec3 p1, Vec3 p2, Vec3 c[3], int32_t order[3]) {
  Vec3 s[3] = {p0, p1, p2};
  int32_t o[3] = {0, 1, 2};
  for (int i = 1; i < 3; ++i) {  // insertion sort of three corners, stable
    for (int j = i; j > 0 && coordinates_less(s[j], s[j - 1]); --j) {
      const Vec3 t = s[j];
      s[j] = s[j - 1];
      s[j - 1] = t;
      const int32_t k = o[j];
      o[j] = o[j - 1];
      o[j - 1] = k;
    }
  }
  const Vec3 e01 = s[1] - s[0], e02 = s[2] - s[0], e12 = s[2] - s[1];
  const double l01 = dot(e01, e01), l02 = dot(e02, e02), l12 = dot(e12, e12);
  const int first = l01 >= l02 && l01 >= l12 ? 0 : (l02 >= l12 ? 0 : 1);
  const int second = l01 >= l02 && l01 >= l12 ? 1 : 2;
  const int third = 3 - first - second;
  c[0] = s[first];
  c[1] = s[second];
  c[2] = s[third];
  order[0] = o[first];
  order[1] = o[second];
  order[2] = o[third];
}

PM_HD TriangleFrame make_frame(Vec3 p0, Vec3 p1, Vec3 p2) {
  Vec3 c[3];
  int32_t order[3];
  frame_corners(p0, p1, p2, c, order);
  const Vec3 a = c[0], ab = c[1] - a, ac = c[2] - a;
  const double aa = dot(ab, ab);
  Vec3 v{0.0, 0.0, 0.0};
  double cv = 0.0;
  if (aa > 0.0) {
    const double len = std::sqrt(aa);
    const Vec3 u{ab.x / len, ab.y / len, ab.z / len};
    Vec3 h = ac - u * dot(ac, u);
    h = h - u * dot(h, u);
    const double hl = norm(h);
    if (hl > 0.0) {
      v = Vec3{h.x / hl, h.y / hl, h.z / hl};
      cv = hl;
    }
  }
  TriangleFrame f{{a.x, a.y, a.z}, {ab.x, ab.y, ab.z}, {ac.x, ac.y, ac.z}, {v.x, v.y, v.z}, aa, dot(ab, ac), cv,
                  {0, 0, 0}, {0, 0, 0, 0, 0}};
  for (int k = 0; k < 3; ++k) f.order[k] = static_cast<int8_t>(order[k]);
  return f;
}

PM_HD bool same_point(Vec3 u, Vec3 v) { return u.x == v.x && u.y == v.y && u.z == v.z; }
PM_HD double clamp01(double t) { return t < 0.0 ? 0.0 : (t > 1.0 ? 1.0 : t); }

// Closest point of a prepared triangle to p; weights of the frame's corners a, b, c (frame_corners
// maps them to the face's). In-plane coordinates are kept scaled by |ab| (X = x |ab|, abac =
// cu |ab|) and the tests multiplied by |ab|^2, so a query costs two dot products and no division
// unless it lands on an edge or the face. The point is a + wb ab + wc ac, from the edges themselves.
PM_HD TrianglePoint closest_on_frame(Vec3 p, const TriangleFrame& f) {
  const Vec3 a{f.a[0], f.a[1], f.a[2]}, ab{f.ab[0], f.ab[1], f.ab[2]}, ac{f.ac[0], f.ac[1], f.ac[2]};
  const Vec3 ap = p - a;
  const double X = dot(ab, ap), y = dot(Vec3{f.v[0], f.v[1], f.v[2]}, ap);
  const double aa = f.aa, cu = f.abac, cv = f.cv, hv = mul(cv, aa);
  // (p - a).(c - a) |ab|^2, from the coordinates of p and c relative to a
  const double pa_c = add(mul(X, cu), mul(y, hv));
  TrianglePoint r{0.0, {0.0, 0.0, 0.0}};
  double wb = 0.0, wc = 0.0;
  if (X <= 0.0 && pa_c <= 0.0) {  // vertex a
    r.w[0] = 1.0;
  } else {
    const double xb = sub(X, aa), cub = sub(cu, aa);     // x - |ab| and cu - |ab|, times |ab|
    const double pb_c = add(mul(xb, cub), mul(y, hv));   // (p - b).(c - b) |ab|^2
    const double xc = sub(X, cu), yc = sub(y, cv);       // p - c
    const double pc_a = add(mul(xc, cu), mul(yc, hv));   // (p - c).(c - a) |ab|^2
    const double pc_b = add(mul(xc, cub), mul(yc, hv));  // (p - c).(c - b) |ab|^2
    // A query at b or c itself is that vertex: its y is v.ab (or v.ac - cv), which rounding leaves a
    // few ulps from 0, and the tests alone could call it a nearby edge or the face.
    if (xb >= 0.0 && (pb_c <= 0.0 || same_point(ap, ab))) {  // vertex b
      wb = 1.0;
      r.w[1] = 1.0;
    } else if ((pc_a >= 0.0 && pc_b >= 0.0) || (xc == 0.0 && same_point(ap, ac))) {  // vertex c
      wc = 1.0;
      r.w[2] = 1.0;
    } else if (y <= 0.0 && X >= 0.0 && xb <= 0.0) {  // edge ab
      wb = X / aa;
      r.w[0] = sub(1.0, wb);
      r.w[1] = wb;
    } else if (sub(mul(cv, X), mul(cu, y)) <= 0.0 && pa_c >= 0.0 && pc_a <= 0.0) {  // edge ac
      wc = clamp01(pa_c / add(mul(cu, cu), mul(cv, hv)));
      r.w[0] = sub(1.0, wc);
      r.w[2] = wc;
    } else if (sub(mul(cub, y), mul(cv, xb)) <= 0.0 && pb_c >= 0.0 && pc_b <= 0.0) {  // edge bc
      wc = clamp01(pb_c / add(mul(cub, cub), mul(cv, hv)));
      wb = sub(1.0, wc);
      r.w[1] = wb;
      r.w[2] = wc;
    } else {  // inside the face (cv > 0 here: a collinear frame always meets a test above)
      wc = y / cv;
      wb = sub(X, mul(cu, wc)) / aa;
      r.w[0] = sub(sub(1.0, wb), wc);
      r.w[1] = wb;
      r.w[2] = wc;
    }
  }
  const Vec3 d = ap - (ab * wb + ac * wc);
  r.dist2 = dot(d, d);
  return r;
}

// Closest point on triangle (a, b, c) to p, weights in the order a, b, c.
PM_HD TrianglePoint closest_on_triangle(Vec3 p, Vec3 a, Vec3 b, Vec3 c) {
  const TriangleFrame f = make_frame(a, b, c);
  const TrianglePoint t = closest_on_frame(p, f);
  TrianglePoint r{t.dist2, {0.0, 0.0, 0.0}};
  for (int k = 0; k < 3; ++k) r.w[f.order[k]] = t.w[k];
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
