// Test-only entry points, in their own library namespace (torch.ops.pointmetrics_testing) so that
// the production schema (ops.cpp) holds only what users call. Each runs a device algorithm on the
// CPU, so that CI without a GPU exercises the code the CUDA backend runs and compares it with the
// CPU's own algorithm:
//   point_tree                  the ATen point-tree builder (CUDA) vs the CPU builder (tests/test_tree_builders.py)
//   knn_portable                knn.h's run_device_plan, the CUDA grid/tree plan (tests/test_knn.py)
//   greedy_radius_keep_portable greedy.h's greedy_round_step in rounds, the CUDA kernel's, vs the
//                               CPU's sequential pass (tests/test_dtu.py)
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <tuple>
#include <vector>

#include "core/lengths.h"
#include "downsample/greedy.h"
#include "knn/knn.h"
#include "mesh/mesh_tree.h"
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
  const RadiusGridView view = grid_view(g);
  const double r2 = radius * radius;
  at::Tensor status = at::zeros({n}, points.options().dtype(at::kChar));
  int64_t rounds = 0;
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "greedy_radius_keep_portable", [&] {
    const scalar_t* p = points.data_ptr<scalar_t>();
    std::vector<int8_t> before(n, kUndecided), after(n, kUndecided);
    for (bool undecided = true; undecided; ++rounds) {
      at::parallel_for(0, n, 1024, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
          after[i] = before[i] == kUndecided ? greedy_round_step(p, i, view, r2, before.data()) : before[i];
        }
      });
      before.swap(after);
      undecided = false;
      for (int8_t s : before) undecided = undecided || s == kUndecided;
    }
    std::copy(before.begin(), before.end(), status.data_ptr<int8_t>());
  });
  return {status == kKept, at::scalar_tensor(rounds, at::kLong)};
}

// A layout constant that pointmetrics/_ops.py mirrors, by its C++ name (tests/test_constants.py).
int64_t constant(c10::string_view name) {
  if (name == "kLeafSize") return kLeafSize;
  if (name == "kFrameBytes") return kFrameBytes;
  if (name == "kBox4") return kBox4;
  TORCH_CHECK(false, "constant: no constant named ", name);
}

}  // namespace

TORCH_LIBRARY(pointmetrics_testing, m) {
  m.def("point_tree(Tensor points, Tensor lengths, bool portable) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("knn_portable(Tensor x, Tensor y, Tensor x_lengths, Tensor y_lengths, int K, int norm) -> (Tensor, Tensor)");
  m.def("greedy_radius_keep_portable(Tensor points, float radius) -> (Tensor, Tensor)");
  m.def("constant(str name) -> int", &constant);  // no tensor to dispatch on: one kernel for every device
}

TORCH_LIBRARY_IMPL(pointmetrics_testing, CPU, m) {
  m.impl("point_tree", &point_tree);
  m.impl("knn_portable", &knn_portable);
  m.impl("greedy_radius_keep_portable", &greedy_radius_keep_portable);
}

}  // namespace pm
