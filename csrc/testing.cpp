// Test-only entry points, in their own library namespace (torch.ops.pointmetrics_testing) so that
// the production schema (ops.cpp) holds only what users call. Each runs a device algorithm on the
// CPU, so that CI without a GPU exercises the code the CUDA backend runs and compares it with the
// CPU's own algorithm:
//   point_tree                  the ATen point-tree builder (CUDA) vs the CPU builder (tests/test_tree_builders.py)
//   knn_portable                knn.h's run_device_plan, the CUDA grid/tree plan (tests/test_knn.py)
//   closest_triangle_portable   mesh_tree.h's binary closest-triangle search, the CUDA kernel's, vs
//                               the CPU's four-wide one (wide_tree.h) (tests/test_mesh_portable.py)
//   greedy_radius_keep_portable greedy.h's greedy_round_step in rounds, the CUDA kernel's, vs the
//                               CPU's rounds and index-order finish (tests/test_dtu.py)
//   knn_uses_brute_force        knn.h's brute_force_wins, the CUDA backend's choice of brute force
//                               over the grid plan for given sizes (tests/test_knn.py)
//   brute_nearest               every pair's squared distance (core/common.h's point_distance), for
//                               scripts/bench_nn.py's measured distance-evaluation rate
//   rasterize_tiles_portable    raster.h's tile binning (item_tiles, a prefix sum, draw_tile), the
//                               CUDA kernels', vs the CPU's triangle loop (tests/test_raster.py)
//   winding_number_portable     mesh_tree.h's winding_number one query at a time, the CUDA kernel's,
//                               vs the CPU's eight-query version (winding_lanes.h): the same bits
//                               (tests/test_mesh_portable.py)
//   auction_assignment_portable the CUDA auction's batch layout, device price tree and bounded
//                               launches (emd/auction_batch.h, auction_rounds.h) as CPU loops, vs
//                               the CPU op's solve (tests/test_emd.py)
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <tuple>
#include <vector>

#include "core/lengths.h"
#include "downsample/greedy.h"
#include "emd/auction_batch.h"
#include "knn/knn.h"
#include "mesh/mesh.h"
#include "mesh/mesh_tree.h"
#include "raster/raster.h"
#include "spatial/point_tree.h"
#include "spatial/point_tree_build.h"

namespace pm {
namespace {

// The whole point tree from the CPU builder (portable=false) or from the ATen builder the CUDA
// backend runs (portable=true): idx, pts, lo, hi, split_axis, split_val. Both must be identical.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> point_tree(
    const at::Tensor& points, const at::Tensor& lengths, bool portable) {
  TORCH_CHECK(points.dim() == 3 && points.size(2) == 3 && at::isFloatingType(points.scalar_type()),
              "point_tree: points must be (B, N, 3) floating point");
  TORCH_CHECK(lengths.dim() == 1 && lengths.size(0) == points.size(0) && lengths.scalar_type() == at::kLong,
              "point_tree: lengths must be (B,) int64");
  const at::Tensor pts = points.contiguous();
  BatchTree t;
  if (portable) {
    t = build_point_tree_aten(pts, lengths.contiguous());
  } else {
    t = build_point_tree_cpu(pts, host_lengths(lengths, points.size(1), "point_tree", "lengths"));
  }
  return {t.idx, t.pts, t.lo, t.hi, t.split_axis, t.split_val};
}

// The two passes of knn.h's run_device_plan on the CPU search engine.
struct PortableSearch {
  const at::Tensor& xq;
  const at::Tensor& y;
  const std::vector<int64_t>& yl;
  int64_t K, norm;
  at::Tensor& dists;
  at::Tensor& idx;

  static std::vector<int64_t> host(const at::Tensor& order) {
    return std::vector<int64_t>(order.data_ptr<int64_t>(), order.data_ptr<int64_t>() + order.numel());
  }

  at::Tensor grid(const BatchGrid& g, const at::Tensor& order, bool fallback) {
    const Targets t{g, BatchTree{}, std::vector<int64_t>(xq.size(0), -1)};
    return at::tensor(search_cpu(t, xq, y, yl, K, norm, host(order), /*defer=*/!fallback, dists, idx), at::kLong);
  }

  void tree(const BatchTree& tree, const at::Tensor& order) {
    Targets t{BatchGrid{}, tree, std::vector<int64_t>(xq.size(0))};
    for (int64_t b = 0; b < xq.size(0); ++b) t.slot[b] = b;
    search_cpu(t, xq, y, yl, K, norm, host(order), /*defer=*/false, dists, idx);
  }
};

// The CUDA backend's plan (knn.h's run_device_plan: ATen builders, one decision per batch) on the
// CPU search engine.
void device_plan_on_cpu(const at::Tensor& xq, const at::Tensor& yq, const at::Tensor& y,
                        const std::vector<int64_t>& xl, const std::vector<int64_t>& yl, int64_t K, int64_t norm,
                        at::Tensor& dists, at::Tensor& idx) {
  PortableSearch search{xq, y, yl, K, norm, dists, idx};
  run_device_plan(xq, yq, at::tensor(xl, at::kLong), at::tensor(yl, at::kLong), K, search);
}

// The knn op with the CUDA backend's plan for D <= 3, run on the CPU (D > 3: the CPU's brute force).
std::tuple<at::Tensor, at::Tensor> knn_portable(const at::Tensor& x, const at::Tensor& y, const at::Tensor& x_lengths,
                                                const at::Tensor& y_lengths, int64_t K, int64_t norm) {
  return knn_on_cpu(&device_plan_on_cpu, x, y, x_lengths, y_lengths, K, norm);
}

// The closest_triangle op with the CUDA kernel's search (mesh_tree.h's closest_triangle: binary,
// top-down from the root, no warm start) and its write_closest, one query at a time on the CPU.
// The queries' Morton order of the CUDA op only schedules threads: each query's answer is its own.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> closest_triangle_portable(
    const at::Tensor& points_in, const at::Tensor& point_lengths, const at::Tensor& tris_in, const at::Tensor& face_in,
    const at::Tensor& lo_in, const at::Tensor& hi_in, const at::Tensor& face_lengths, const at::Tensor& frames_in,
    const at::Tensor& slot_boxes_in, const at::Tensor& quads) {
  check_mesh_tree_args(points_in, point_lengths, tris_in, face_in, lo_in, hi_in, face_lengths);
  check_closest_args(tris_in, frames_in, slot_boxes_in, quads);  // quads: only the CPU's wide search reads them
  const at::Tensor points = points_in.contiguous(), tris = tris_in.contiguous(), face = face_in.contiguous();
  const at::Tensor lo = lo_in.contiguous(), hi = hi_in.contiguous();
  const at::Tensor frames = frames_in.contiguous(), slot_boxes = slot_boxes_in.contiguous();
  const int64_t B = points.size(0), N = points.size(1), S = tris.size(1), F = frames.size(1), leaves = S / kLeafSize;
  const std::vector<int64_t> pl = host_lengths(point_lengths, N, "closest_triangle", "point_lengths");
  const std::vector<int64_t> fl = host_lengths(face_lengths, F, "closest_triangle", "face_lengths");
  at::Tensor dist2 = at::zeros({B, N}, points.options());
  at::Tensor out_face = at::full({B, N}, -1, face.options());
  at::Tensor bary = at::zeros({B, N, 3}, points.options());
  at::Tensor closest = at::zeros({B, N, 3}, points.options());
  if (B * N == 0) return {dist2, out_face, bary, closest};
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "closest_triangle_portable", [&] {
    const scalar_t* q = points.data_ptr<scalar_t>();
    const auto* all_frames = reinterpret_cast<const TriangleFrame*>(frames.data_ptr<uint8_t>());
    at::parallel_for(0, B * N, 256, [&](int64_t i0, int64_t i1) {
      for (int64_t flat = i0; flat < i1; ++flat) {
        const int64_t b = flat / N;
        if (flat % N >= pl[b]) continue;
        // As mesh_cuda.cu's closest_triangle_kernel.
        TriangleTreeView<scalar_t> view{tris.data_ptr<scalar_t>() + b * S * 9, face.data_ptr<int64_t>() + b * S,
                                        lo.data_ptr<scalar_t>() + b * 2 * leaves * 3,
                                        hi.data_ptr<scalar_t>() + b * 2 * leaves * 3, leaves, fl[b]};
        view.frames = all_frames + b * F;
        view.slot_boxes = slot_boxes.data_ptr<scalar_t>() + b * (S / 4) * kBox4;
        const Vec3 p = vec3(q + 3 * flat);
        ClosestTriangle best = start_closest(view, p);
        closest_triangle(view, p, best);
        if (best.face < 0) continue;
        write_closest(view, best, flat, dist2.data_ptr<scalar_t>(), out_face.data_ptr<int64_t>(),
                      bary.data_ptr<scalar_t>(), closest.data_ptr<scalar_t>());
      }
    });
  });
  return {dist2, out_face, bary, closest};
}

// The greedy_radius_keep op with the CUDA backend's parallel rounds (greedy.h's greedy_round_step
// for every undecided point, until none is left) on the CPU. Each round reads only the states of
// the rounds before it, the slowest schedule the CUDA rounds can take (a thread there may also
// see decisions of its own round): the most rounds, so the most decisions that wait for an earlier
// one. Returns the mask and the number of rounds (a 0-dim int64 tensor).
std::tuple<at::Tensor, at::Tensor> greedy_radius_keep_portable(const at::Tensor& points_in, double radius) {
  const at::Tensor points = points_in.contiguous();
  const int64_t n = points.size(0);
  if (n == 0) return {at::ones({0}, points.options().dtype(at::kBool)), at::zeros({}, at::kLong)};
  const RadiusGrid g = build_radius_grid(points, radius);
  const double r2 = radius * radius;
  at::Tensor status = at::zeros({n}, points.options().dtype(at::kChar));
  int64_t rounds = 0;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, points.scalar_type(), "greedy_radius_keep_portable", [&] {
    const RadiusGridView<scalar_t> view = grid_view<scalar_t>(g);
    std::vector<int8_t> before(n, kUndecided), after(n, kUndecided);
    for (bool undecided = true; undecided; ++rounds) {
      at::parallel_for(0, n, 1024, [&](int64_t s0, int64_t s1) {
        for (int64_t s = s0; s < s1; ++s) {
          after[s] = before[s] == kUndecided ? greedy_round_step(view, s, r2, before.data(), SearchRows{}) : before[s];
        }
      });
      before.swap(after);
      undecided = false;
      for (int8_t s : before) undecided = undecided || s == kUndecided;
    }
    std::copy(before.begin(), before.end(), status.data_ptr<int8_t>());
  });
  const at::Tensor keep = at::empty({n}, status.options().dtype(at::kBool)).index_copy_(0, g.index, status == kKept);
  return {keep, at::scalar_tensor(rounds, at::kLong)};
}

// The winding_number op as the CUDA kernel computes it: mesh_tree.h's winding_number, one query at
// a time (mesh_cuda.cu's winding_kernel), on the CPU.
at::Tensor winding_number_portable(const at::Tensor& points_in, const at::Tensor& point_lengths,
                                   const at::Tensor& tris_in, const at::Tensor& face, const at::Tensor& lo,
                                   const at::Tensor& hi, const at::Tensor& face_lengths, const at::Tensor& centre,
                                   const at::Tensor& normal_sum, const at::Tensor& moment, const at::Tensor& radius,
                                   double beta) {
  const WindingInputs in = winding_inputs(points_in, point_lengths, tris_in, face, lo, hi, face_lengths, centre,
                                          normal_sum, moment, radius, beta);
  const int64_t B = in.points.size(0), N = in.points.size(1);
  at::Tensor out = at::zeros({B, N}, in.points.options());
  const std::vector<WindingMoments> moments = in.moments();
  AT_DISPATCH_FLOATING_TYPES(in.points.scalar_type(), "winding_number_portable", [&] {
    const std::vector<TriangleTreeView<scalar_t>> trees = in.trees<scalar_t>();
    const scalar_t* q = in.points.data_ptr<scalar_t>();
    scalar_t* w_out = out.data_ptr<scalar_t>();
    at::parallel_for(0, B * N, 256, [&](int64_t i0, int64_t i1) {
      for (int64_t flat = i0; flat < i1; ++flat) {
        const int64_t b = flat / N;
        if (flat % N >= in.point_lengths[b]) continue;
        w_out[flat] = static_cast<scalar_t>(winding_number(trees[b], moments[b], vec3(q + 3 * flat), beta));
      }
    });
  });
  return out;
}

// The squared distance from each x to its nearest y by trying every y: N * M evaluations of the
// arithmetic every search runs per candidate. scripts/bench_nn.py times it for the machine's
// distance-evaluation rate, one term of its estimate of the fastest possible search.
at::Tensor brute_nearest(const at::Tensor& x_in, const at::Tensor& y_in) {
  TORCH_CHECK(x_in.dim() == 2 && y_in.dim() == 2 && x_in.size(1) == 3 && y_in.size(1) == 3 &&
                  x_in.scalar_type() == at::kFloat && y_in.scalar_type() == at::kFloat,
              "brute_nearest: x and y must be (N, 3) and (M, 3) float32");
  const at::Tensor x = x_in.contiguous(), y = y_in.contiguous();
  const int64_t N = x.size(0), M = y.size(0);
  at::Tensor out = at::full({N}, std::numeric_limits<float>::infinity(), x.options());
  const float *xp = x.data_ptr<float>(), *yp = y.data_ptr<float>();
  float* best = out.data_ptr<float>();
  at::parallel_for(0, N, 16, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      float b = best[i];
      for (int64_t j = 0; j < M; ++j) {
        const float d = point_distance<2>(xp + 3 * i, yp + 3 * j, 3);
        b = d < b ? d : b;
      }
      best[i] = b;
    }
  });
  return out;
}

// A layout constant that pointmetrics/_ops.py mirrors, by its C++ name (tests/test_constants.py).
int64_t constant(c10::string_view name) {
  if (name == "kLeafSize") return kLeafSize;
  if (name == "kFrameBytes") return kFrameBytes;
  if (name == "kBox4") return kBox4;
  TORCH_CHECK(false, "constant: no constant named ", name);
}

// rasterize_triangles by the CUDA backend's passes, run in order on the CPU: tiles counted per
// item, laid out by an inclusive prefix sum, every unit of work drawn with a plain minimum (the
// device's atomicMin), then the pixels resolved.
std::tuple<at::Tensor, at::Tensor, at::Tensor> rasterize_tiles_portable(const at::Tensor& clip_in,
                                                                        const at::Tensor& faces_in,
                                                                        const at::Tensor& face_lengths_in,
                                                                        int64_t height, int64_t width) {
  const RasterCall call = prepare_raster(clip_in, faces_in, face_lengths_in, height, width);
  const RasterOutput& out = call.out;
  std::vector<uint64_t> zbuf(call.pixels(), kEmptyKey);
  AT_DISPATCH_FLOATING_TYPES(call.clip.scalar_type(), "rasterize_tiles_portable", [&] {
    const RasterInput<scalar_t> in = call.input<scalar_t>();
    const int64_t items = call.B * call.C * call.F;
    std::vector<int64_t> end_of(items);
    int64_t total = 0;
    for (int64_t item = 0; item < items; ++item) end_of[item] = total += item_tiles(in, item);
    auto keep_min = [](uint64_t* word, uint64_t key) { *word = std::min(*word, key); };
    for (int64_t work = 0; work < total; ++work) draw_tile(in, end_of.data(), items, work, zbuf.data(), keep_min);
    for (int64_t p = 0; p < call.pixels(); ++p) {
      resolve_pixel(in, p, zbuf[p], out.face.data_ptr<int64_t>(), out.bary.data_ptr<scalar_t>(),
                    out.depth.data_ptr<scalar_t>());
    }
  });
  return {out.face, out.bary, out.depth};
}

bool knn_uses_brute_force(int64_t B, int64_t N, int64_t M, int64_t multiprocessors) {
  return brute_force_wins(B, N, M, multiprocessors);
}

}  // namespace

TORCH_LIBRARY(pointmetrics_testing, m) {
  m.def("point_tree(Tensor points, Tensor lengths, bool portable) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("knn_portable(Tensor x, Tensor y, Tensor x_lengths, Tensor y_lengths, int K, int norm) -> (Tensor, Tensor)");
  m.def("closest_triangle_portable(Tensor points, Tensor point_lengths, Tensor tris, Tensor face, Tensor lo, "
        "Tensor hi, Tensor face_lengths, Tensor frames, Tensor slot_boxes, Tensor quads) -> (Tensor, Tensor, Tensor, "
        "Tensor)");
  m.def("greedy_radius_keep_portable(Tensor points, float radius) -> (Tensor, Tensor)");
  m.def("winding_number_portable(Tensor points, Tensor point_lengths, Tensor tris, Tensor face, Tensor lo, Tensor hi, "
        "Tensor face_lengths, Tensor centre, Tensor normal_sum, Tensor moment, Tensor radius, float beta) -> Tensor");
  m.def("brute_nearest(Tensor x, Tensor y) -> Tensor");
  m.def("rasterize_tiles_portable(Tensor clip, Tensor faces, Tensor face_lengths, int height, int width) -> "
        "(Tensor, Tensor, Tensor)");
  m.def("auction_assignment_portable(Tensor x, Tensor y, Tensor x_lengths, Tensor y_lengths, int p, float rel_tol, "
        "int max_rounds, int launch_work) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("knn_uses_brute_force(int B, int N, int M, int multiprocessors) -> bool", &knn_uses_brute_force);
  m.def("constant(str name) -> int", &constant);  // no tensor to dispatch on: one kernel for every device
}

TORCH_LIBRARY_IMPL(pointmetrics_testing, CPU, m) {
  m.impl("point_tree", &point_tree);
  m.impl("knn_portable", &knn_portable);
  m.impl("closest_triangle_portable", &closest_triangle_portable);
  m.impl("greedy_radius_keep_portable", &greedy_radius_keep_portable);
  m.impl("winding_number_portable", &winding_number_portable);
  m.impl("brute_nearest", &brute_nearest);
  m.impl("rasterize_tiles_portable", &rasterize_tiles_portable);
  m.impl("auction_assignment_portable", &auction_assignment_portable);
}

}  // namespace pm
