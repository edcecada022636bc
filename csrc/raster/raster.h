// Hard z-buffer rasterisation of triangles given in clip space, shared by the CPU and CUDA
// backends so both produce the same bits.
//
// Conventions (OpenGL's): a vertex (x, y, z, w) in clip space lands at NDC (x, y, z) / w; NDC x
// runs left to right and y bottom to top over [-1, 1]; pixel (row i, column j) of an H x W image
// samples NDC x = -1 + (2j + 1) / W, y = 1 - (2i + 1) / H, so row 0 is the top. A pixel is covered
// by a triangle when its centre lies inside or on the triangle's edges (both orientations: no
// back-face culling) and the interpolated NDC depth lies in [-1, 1]. The front-most triangle
// (smallest NDC z, compared in float32) wins; equal depths go to the smaller face index.
//
// Why it is watertight: every edge function is evaluated with its two end points in one canonical
// order (lexicographic in screen x, then y) and negated as needed, so two triangles sharing an
// edge compute exactly opposite values there and a pixel centre on the edge is covered by both.
//
// Triangles with a vertex at w <= 0 (behind a perspective camera's eye) are skipped rather than
// clipped, as are triangles with non-finite corners or a zero screen-space area (seen edge-on).
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "core/common.h"

namespace pm {

// One triangle set up for a view: screen positions (pixel-centre units), NDC depth, 1 / w.
struct ScreenTriangle {
  double x[3], y[3], z[3], inv_w[3];
  double area;              // signed twice-area in screen space, from the canonical edge functions
  int64_t x0, x1, y0, y1;   // inclusive pixel bounding box, clamped to the image; empty if x0 > x1
};

// Edge function of (a, b) at p, antisymmetric bit for bit: E(a, b, p) == -E(b, a, p).
PM_HD double edge_function(double ax, double ay, double bx, double by, double px, double py) {
  const bool swap = bx < ax || (bx == ax && by < ay);
  if (swap) {
    double t = ax;
    ax = bx;
    bx = t;
    t = ay;
    ay = by;
    by = t;
  }
  const double e = sub(mul(sub(bx, ax), sub(py, ay)), mul(sub(by, ay), sub(px, ax)));
  return swap ? -e : e;
}

// The inputs of one rasterisation, as raw pointers: clip (BC, V, 4) vertices of each mesh-view
// pair, faces (B, F, 3) shared by the C views of a mesh, face_lengths (B,).
template <typename scalar_t>
struct RasterInput {
  const scalar_t* clip;
  const int64_t* faces;
  const int64_t* face_lengths;
  int64_t C, V, F, H, W;
};

// Sets up triangle (corners v0, v1, v2, each x, y, z, w in clip space) for an H x W image.
// Returns false when the triangle can cover no pixel.
template <typename scalar_t>
PM_HD bool setup_triangle(const scalar_t* v0, const scalar_t* v1, const scalar_t* v2, int64_t H, int64_t W,
                          ScreenTriangle& t) {
  const scalar_t* v[3] = {v0, v1, v2};
  const double half_w = 0.5 * static_cast<double>(W), half_h = 0.5 * static_cast<double>(H);
  for (int k = 0; k < 3; ++k) {
    const double w = static_cast<double>(v[k][3]);
    if (!(w > 0.0) || !std::isfinite(w)) return false;
    const double nx = static_cast<double>(v[k][0]) / w, ny = static_cast<double>(v[k][1]) / w;
    const double nz = static_cast<double>(v[k][2]) / w;
    if (!std::isfinite(nx) || !std::isfinite(ny) || !std::isfinite(nz)) return false;
    t.x[k] = sub(mul(add(nx, 1.0), half_w), 0.5);
    t.y[k] = sub(mul(sub(1.0, ny), half_h), 0.5);
    t.z[k] = nz;
    t.inv_w[k] = 1.0 / w;
  }
  t.area = edge_function(t.x[1], t.y[1], t.x[2], t.y[2], t.x[0], t.y[0]);
  if (t.area == 0.0 || !std::isfinite(t.area)) return false;
  const double lo_x = min_val(min_val(t.x[0], t.x[1]), t.x[2]), hi_x = max_val(max_val(t.x[0], t.x[1]), t.x[2]);
  const double lo_y = min_val(min_val(t.y[0], t.y[1]), t.y[2]), hi_y = max_val(max_val(t.y[0], t.y[1]), t.y[2]);
  if (hi_x < 0.0 || hi_y < 0.0 || lo_x > static_cast<double>(W - 1) || lo_y > static_cast<double>(H - 1)) return false;
  t.x0 = static_cast<int64_t>(ceil(max_val(lo_x, 0.0)));
  t.x1 = static_cast<int64_t>(floor(min_val(hi_x, static_cast<double>(W - 1))));
  t.y0 = static_cast<int64_t>(ceil(max_val(lo_y, 0.0)));
  t.y1 = static_cast<int64_t>(floor(min_val(hi_y, static_cast<double>(H - 1))));
  return t.x0 <= t.x1 && t.y0 <= t.y1;
}

// Whether pixel (row, col) is covered; if so, its perspective-correct barycentric weights and
// NDC depth.
PM_HD bool cover_pixel(const ScreenTriangle& t, int64_t row, int64_t col, double bary[3], double& depth) {
  const double px = static_cast<double>(col), py = static_cast<double>(row);
  double e[3];
  e[0] = edge_function(t.x[1], t.y[1], t.x[2], t.y[2], px, py);
  e[1] = edge_function(t.x[2], t.y[2], t.x[0], t.y[0], px, py);
  e[2] = edge_function(t.x[0], t.y[0], t.x[1], t.y[1], px, py);
  const bool positive = t.area > 0.0;
  for (int k = 0; k < 3; ++k) {
    if (positive ? e[k] < 0.0 : e[k] > 0.0) return false;
  }
  // Screen-space weights interpolate NDC depth; dividing by w makes them perspective-correct.
  double s[3], sum = 0.0;
  depth = 0.0;
  for (int k = 0; k < 3; ++k) {
    const double l = e[k] / t.area;
    depth = add(depth, mul(l, t.z[k]));
    s[k] = mul(l, t.inv_w[k]);
    sum = add(sum, s[k]);
  }
  if (!(depth >= -1.0 && depth <= 1.0)) return false;
  for (int k = 0; k < 3; ++k) bary[k] = s[k] / sum;
  return true;
}

// The z-buffer word: float32 depth bits made order-preserving as unsigned, then the face index,
// so that the minimum word is the front-most face with ties to the smaller index.
PM_HD uint64_t depth_key(double depth, int64_t face) {
  const float f = static_cast<float>(depth) + 0.0f;  // + 0.0f turns -0 into +0
#if defined(__CUDA_ARCH__)
  uint32_t bits = __float_as_uint(f);
#else
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
#endif
  bits = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return (static_cast<uint64_t>(bits) << 32) | static_cast<uint64_t>(face);
}

// Sets up face f of mesh-view pair bc; false for padding faces, indices out of range and
// triangles that cover no pixel.
template <typename scalar_t>
PM_HD bool setup_face(const RasterInput<scalar_t>& in, int64_t bc, int64_t f, ScreenTriangle& t) {
  const int64_t b = bc / in.C;
  if (f >= in.face_lengths[b]) return false;
  const int64_t* idx = in.faces + (b * in.F + f) * 3;
  for (int k = 0; k < 3; ++k) {
    if (idx[k] < 0 || idx[k] >= in.V) return false;
  }
  const scalar_t* base = in.clip + bc * in.V * 4;
  return setup_triangle(base + 4 * idx[0], base + 4 * idx[1], base + 4 * idx[2], in.H, in.W, t);
}

constexpr uint64_t kEmptyKey = ~uint64_t(0);

// Tile binning of pass 1 as the CUDA backend runs it (raster_cuda.cu, and on the CPU through
// testing.cpp's rasterize_tiles_portable): every triangle's pixel box is cut into tiles of
// kTile x kTile pixels, one unit of work each, so that a few large triangles do not serialise on
// one thread. Item bc * F + f is face f of mesh-view pair bc.
constexpr int64_t kTile = 8;

PM_HD int64_t tiles_x(const ScreenTriangle& t) { return (t.x1 - t.x0) / kTile + 1; }
PM_HD int64_t tiles_y(const ScreenTriangle& t) { return (t.y1 - t.y0) / kTile + 1; }

// The number of tiles of an item (0 when its face draws nothing).
template <typename scalar_t>
PM_HD int64_t item_tiles(const RasterInput<scalar_t>& in, int64_t item) {
  ScreenTriangle t;
  return setup_face(in, item / in.F, item % in.F, t) ? tiles_x(t) * tiles_y(t) : 0;
}

// The item owning unit of work `work`: the first whose running end (inclusive prefix sum of
// item_tiles) exceeds it.
PM_HD int64_t item_of_work(const int64_t* end_of, int64_t items, int64_t work) {
  int64_t lo = 0, hi = items - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (end_of[mid] > work) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return lo;
}

// Unit of work `work`: one tile of one triangle, each covered pixel offered to the z-buffer with
// keep_min(word, key) (atomicMin on the device; the minimum is order-independent).
template <typename scalar_t, typename KeepMin>
PM_HD void draw_tile(const RasterInput<scalar_t>& in, const int64_t* end_of, int64_t items, int64_t work,
                     uint64_t* zbuf, const KeepMin& keep_min) {
  const int64_t item = item_of_work(end_of, items, work), bc = item / in.F, f = item % in.F;
  ScreenTriangle t;
  if (!setup_face(in, bc, f, t)) return;
  const int64_t tile = work - (end_of[item] - tiles_x(t) * tiles_y(t));
  const int64_t row0 = t.y0 + (tile / tiles_x(t)) * kTile, col0 = t.x0 + (tile % tiles_x(t)) * kTile;
  const int64_t row1 = row0 + kTile - 1 < t.y1 ? row0 + kTile - 1 : t.y1;
  const int64_t col1 = col0 + kTile - 1 < t.x1 ? col0 + kTile - 1 : t.x1;
  uint64_t* image = zbuf + bc * in.H * in.W;
  for (int64_t row = row0; row <= row1; ++row) {
    for (int64_t col = col0; col <= col1; ++col) {
      double bary[3], depth;
      if (cover_pixel(t, row, col, bary, depth)) keep_min(image + row * in.W + col, depth_key(depth, f));
    }
  }
}

PM_HD int64_t key_face(uint64_t key) { return static_cast<int64_t>(key & 0xffffffffu); }

// Pass 2 for pixel p (flat index over BC x H x W): the winning face of its z-buffer word, with
// its barycentric weights and depth recomputed by the arithmetic of pass 1; -1, 0 and +inf where
// no face covers the pixel.
template <typename scalar_t>
PM_HD void resolve_pixel(const RasterInput<scalar_t>& in, int64_t p, uint64_t key, int64_t* face, scalar_t* bary,
                         scalar_t* depth) {
  const int64_t pixels = in.H * in.W;
  const int64_t bc = p / pixels, row = (p % pixels) / in.W, col = p % in.W;
  double w[3] = {0.0, 0.0, 0.0}, z = 0.0;
  int64_t f = -1;
  ScreenTriangle t;
  if (key != kEmptyKey && setup_face(in, bc, key_face(key), t) && cover_pixel(t, row, col, w, z)) f = key_face(key);
  face[p] = f;
  for (int k = 0; k < 3; ++k) bary[3 * p + k] = static_cast<scalar_t>(f < 0 ? 0.0 : w[k]);
  depth[p] = static_cast<scalar_t>(f < 0 ? HUGE_VAL : z);
}

// Host side, shared by both backends: argument checks and output allocation.
inline void check_raster_inputs(const at::Tensor& clip, const at::Tensor& faces, const at::Tensor& face_lengths,
                                int64_t height, int64_t width) {
  TORCH_CHECK(clip.dim() == 4 && clip.size(3) == 4 && at::isFloatingType(clip.scalar_type()),
              "rasterize_triangles: clip must be (B, C, V, 4) floating point");
  TORCH_CHECK(faces.dim() == 3 && faces.size(0) == clip.size(0) && faces.size(2) == 3 &&
                  faces.scalar_type() == at::kLong,
              "rasterize_triangles: faces must be (B, F, 3) int64 with the same B as clip");
  TORCH_CHECK(face_lengths.dim() == 1 && face_lengths.size(0) == clip.size(0) &&
                  face_lengths.scalar_type() == at::kLong,
              "rasterize_triangles: face_lengths must be (B,) int64");
  TORCH_CHECK(faces.device() == clip.device() && face_lengths.device() == clip.device(),
              "rasterize_triangles: clip, faces and face_lengths must be on one device");
  // The z-buffer word keeps the face index in 32 bits, all ones meaning "no face".
  TORCH_CHECK(faces.size(1) < int64_t(std::numeric_limits<uint32_t>::max()),
              "rasterize_triangles: at most 2^32 - 2 faces per mesh");
  TORCH_CHECK(height > 0 && width > 0, "rasterize_triangles: height and width must be positive");
}

struct RasterOutput {
  at::Tensor face;   // (B, C, H, W) int64, -1 where no face is visible
  at::Tensor bary;   // (B, C, H, W, 3), 0 there
  at::Tensor depth;  // (B, C, H, W) NDC depth, +inf there
};

// One call of the op: its arguments checked and made contiguous, and its outputs allocated, as
// every backend (and testing.cpp's portable driver) starts.
struct RasterCall {
  at::Tensor clip, faces, face_lengths;
  RasterOutput out;
  int64_t B, C, F, H, W;

  int64_t pixels() const { return B * C * H * W; }
  template <typename scalar_t>
  RasterInput<scalar_t> input() const {
    return RasterInput<scalar_t>{clip.data_ptr<scalar_t>(), faces.data_ptr<int64_t>(), face_lengths.data_ptr<int64_t>(),
                                 C, clip.size(2), F, H, W};
  }
};

inline RasterCall prepare_raster(const at::Tensor& clip, const at::Tensor& faces, const at::Tensor& face_lengths,
                                 int64_t height, int64_t width) {
  check_raster_inputs(clip, faces, face_lengths, height, width);
  const int64_t B = clip.size(0), C = clip.size(1);
  RasterOutput out{at::empty({B, C, height, width}, clip.options().dtype(at::kLong)),
                   at::empty({B, C, height, width, 3}, clip.options()),
                   at::empty({B, C, height, width}, clip.options())};
  return RasterCall{clip.contiguous(), faces.contiguous(), face_lengths.contiguous(), out, B, C, faces.size(1),
                    height, width};
}

}  // namespace pm
