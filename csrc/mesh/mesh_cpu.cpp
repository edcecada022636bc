// CPU implementations of the mesh ops: triangle_frames, closest_triangle and winding_number.
// Queries run in parallel, in Morton order of each mesh's box, and each closest-triangle query
// starts from the leaf of the previous query's triangle and searches the tree four boxes at a
// time (wide_tree.h).
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>

#include "core/lengths.h"
#include "core/morton.h"
#include "core/simd.h"
#include "spatial/point_tree_build.h"
#include "mesh.h"
#include "mesh_tree.h"
#include "winding_lanes.h"
#include "wide_tree.h"

namespace pm {

namespace {

// Queries in Morton order of each mesh's bounding box, for cache coherence.
template <typename scalar_t>
std::vector<int64_t> query_order(const at::Tensor& points, const std::vector<int64_t>& pl, const at::Tensor& lo,
                                 const at::Tensor& hi) {
  const int64_t B = points.size(0);
  std::vector<double> frame_lo(3 * B, 0.0), scale(B, 0.0);
  for (int64_t b = 0; b < B; ++b) {
    double l[3], h[3];
    for (int a = 0; a < 3; ++a) {  // the root box (node 1)
      l[a] = static_cast<double>(lo[b][1][a].template item<scalar_t>());
      h[a] = static_cast<double>(hi[b][1][a].template item<scalar_t>());
      frame_lo[3 * b + a] = std::isfinite(l[a]) ? l[a] : 0.0;
    }
    // 10 bits per axis instead of 21: the queries run as fast in this order (measured on scan
    // and uniform points) and the codes sort in three radix passes instead of six.
    scale[b] = morton_scale(l, h) / 2048.0;
  }
  return morton_order_cpu(points, pl, frame_lo.data(), scale.data());
}

}  // namespace

at::Tensor triangle_frames_cpu(const at::Tensor& tris_in, const at::Tensor& face_lengths, int64_t faces) {
  check_frames_args(tris_in, face_lengths, faces);
  const at::Tensor tris = tris_in.contiguous();
  const int64_t B = tris.size(0), S = tris.size(1);
  const std::vector<int64_t> fl = host_lengths(face_lengths, faces, "triangle_frames", "face_lengths");
  at::Tensor frames = at::empty({B, faces, kFrameBytes}, tris.options().dtype(at::kByte));
  AT_DISPATCH_FLOATING_TYPES(tris.scalar_type(), "triangle_frames_cpu", [&] {
    const scalar_t* corners = tris.data_ptr<scalar_t>();
    auto* out = reinterpret_cast<TriangleFrame*>(frames.data_ptr<uint8_t>());
    at::parallel_for(0, B * faces, 4096, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t b = i / faces, s = i % faces;
        const scalar_t* c = corners + 9 * (b * S + s);
        out[i] = s < fl[b] ? make_frame(vec3(c), vec3(c + 3), vec3(c + 6)) : TriangleFrame{};
      }
    });
  });
  return frames;
}

// Queries order[p0..p1) of one thread, each warm-started from the previous one's leaf. Built for
// AVX2 and the baseline (core/simd.h).
template <typename scalar_t>
PM_WIDE_CLONES void closest_run(const WideTreeView<scalar_t>* views, const int64_t* order, int64_t p0, int64_t p1,
                                int64_t N, const scalar_t* q, scalar_t* d_out, int64_t* f_out, scalar_t* w_out,
                                scalar_t* c_out) {
  int64_t prev_b = -1, prev_slot = -1;
  for (int64_t pos = p0; pos < p1; ++pos) {
    const int64_t flat = order[pos], b = flat / N;
    if (pos + 16 < p1) {  // the queries and outputs of a later query: Morton order scatters them in memory
      const int64_t ahead = order[pos + 16];
      __builtin_prefetch(q + 3 * ahead);
      __builtin_prefetch(d_out + ahead, 1);
      __builtin_prefetch(f_out + ahead, 1);
      __builtin_prefetch(w_out + 3 * ahead, 1);
      __builtin_prefetch(c_out + 3 * ahead, 1);
    }
    const Vec3 p = vec3(q + 3 * flat);
    ClosestTriangle best = start_closest(views[b].tree, p);
    // Warm start: begin at the leaf of the previous query's triangle, usually the answer's.
    const int64_t start_leaf = b == prev_b && prev_slot >= 0 ? prev_slot / kLeafSize : -1;
    wide_closest_triangle(views[b], p, best, start_leaf);
    if (best.face < 0) continue;
    write_closest(views[b].tree, best, flat, d_out, f_out, w_out, c_out);
    prev_b = b;
    prev_slot = best.slot;
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> closest_triangle_cpu(
    const at::Tensor& points_in, const at::Tensor& point_lengths, const at::Tensor& tris_in, const at::Tensor& face,
    const at::Tensor& lo, const at::Tensor& hi, const at::Tensor& face_lengths, const at::Tensor& frames_in,
    const at::Tensor& slot_boxes_in, const at::Tensor& quads_in) {
  check_mesh_tree_args(points_in, point_lengths, tris_in, face, lo, hi, face_lengths);
  check_closest_args(tris_in, frames_in, slot_boxes_in, quads_in);
  const at::Tensor points = points_in.contiguous(), tris = tris_in.contiguous();
  const at::Tensor frames = frames_in.contiguous(), slot_boxes = slot_boxes_in.contiguous(),
                   quads = quads_in.contiguous();
  const int64_t B = points.size(0), N = points.size(1);
  const std::vector<int64_t> pl = host_lengths(point_lengths, N, "closest_triangle", "point_lengths");
  const std::vector<int64_t> fl = host_lengths(face_lengths, frames.size(1), "closest_triangle", "face_lengths");
  at::Tensor dist2 = at::zeros({B, N}, points.options());
  at::Tensor out_face = at::full({B, N}, -1, face.options());
  at::Tensor bary = at::zeros({B, N, 3}, points.options());
  at::Tensor closest = at::zeros({B, N, 3}, points.options());
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "closest_triangle_cpu", [&] {
    const std::vector<int64_t> order = query_order<scalar_t>(points, pl, lo, hi);
    const at::Tensor loc = lo.contiguous(), hic = hi.contiguous(), facec = face.contiguous();
    const int depth = tree_depth(tris.size(1) / kLeafSize);
    std::vector<WideTreeView<scalar_t>> views;
    for (int64_t b = 0; b < B; ++b) {
      TriangleTreeView<scalar_t> t = tree_view<scalar_t>(tris, facec, loc, hic, b, fl[b]);
      t.frames = reinterpret_cast<const TriangleFrame*>(frames[b].data_ptr<uint8_t>());
      t.slot_boxes = slot_boxes[b].data_ptr<scalar_t>();
      views.push_back(WideTreeView<scalar_t>{t, quads[b].data_ptr<scalar_t>(), depth});
    }
    const scalar_t* q = points.data_ptr<scalar_t>();
    scalar_t* d_out = dist2.data_ptr<scalar_t>();
    int64_t* f_out = out_face.data_ptr<int64_t>();
    scalar_t* w_out = bary.data_ptr<scalar_t>();
    scalar_t* c_out = closest.data_ptr<scalar_t>();
    at::parallel_for(0, static_cast<int64_t>(order.size()), 1024, [&](int64_t p0, int64_t p1) {
      closest_run(views.data(), order.data(), p0, p1, N, q, d_out, f_out, w_out, c_out);
    });
  });
  return {dist2, out_face, bary, closest};
}

at::Tensor winding_number_cpu(const at::Tensor& points_in, const at::Tensor& point_lengths, const at::Tensor& tris_in,
                              const at::Tensor& face, const at::Tensor& lo, const at::Tensor& hi,
                              const at::Tensor& face_lengths, const at::Tensor& centre, const at::Tensor& normal_sum,
                              const at::Tensor& moment, const at::Tensor& radius, double beta) {
  const WindingInputs in = winding_inputs(points_in, point_lengths, tris_in, face, lo, hi, face_lengths, centre,
                                          normal_sum, moment, radius, beta);
  const int64_t N = in.points.size(1);
  at::Tensor out = at::zeros({in.points.size(0), N}, in.points.options());
  const std::vector<WindingMoments> moments = in.moments();
  AT_DISPATCH_FLOATING_TYPES(in.points.scalar_type(), "winding_number_cpu", [&] {
    const std::vector<int64_t> order = query_order<scalar_t>(in.points, in.point_lengths, in.lo, in.hi);
    const std::vector<TriangleTreeView<scalar_t>> trees = in.trees<scalar_t>();
    const scalar_t* q = in.points.data_ptr<scalar_t>();
    scalar_t* w_out = out.data_ptr<scalar_t>();
    at::parallel_for(0, static_cast<int64_t>(order.size()), 64, [&](int64_t p0, int64_t p1) {
      // Runs of up to kLanes consecutive queries of one batch element (winding_lanes.h).
      for (int64_t pos = p0; pos < p1;) {
        const int64_t b = order[pos] / N;
        int lanes = 0;
        Vec3 p[kLanes];
        while (lanes < kLanes && pos + lanes < p1 && order[pos + lanes] / N == b) {
          p[lanes] = vec3(q + 3 * order[pos + lanes]);
          ++lanes;
        }
        for (int l = lanes; l < kLanes; ++l) p[l] = p[0];  // idle lanes repeat a real query
        double w[kLanes];
        winding_number_lanes(trees[b], moments[b], p, lanes, beta, w);
        for (int l = 0; l < lanes; ++l) w_out[order[pos + l]] = static_cast<scalar_t>(w[l]);
        pos += lanes;
      }
    });
  });
  return out;
}

TORCH_LIBRARY_IMPL(pointmetrics, CPU, m) {
  m.impl("triangle_frames", &triangle_frames_cpu);
  m.impl("closest_triangle", &closest_triangle_cpu);
  m.impl("winding_number", &winding_number_cpu);
}

}  // namespace pm
