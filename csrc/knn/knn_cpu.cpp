// CPU implementation of the knn op, and the CPU search engine (search_cpu in knn.h).
//   D <= 3: each target cloud gets a uniform grid (spatial/grid.h), the fastest search when points
//           are spread evenly over a volume or a surface. Where the grid turns out crowded (tight
//           clusters, far outliers that stretch the bounding box, thin curves) the cloud gets a
//           kd-tree (spatial/point_tree.h) instead, which adapts to any distribution. Both are exact.
//   D > 3:  brute force over the targets, in parallel over the queries.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "spatial/grid_build.h"
#include "spatial/point_tree_build.h"
#include "knn.h"

namespace pm {

namespace {

// Builds trees for the clouds in `clouds` (sub-batch) and records their slots.
void add_trees(Targets& t, const at::Tensor& yq, const std::vector<int64_t>& yl, const std::vector<int64_t>& clouds) {
  t.slot.assign(yq.size(0), -1);
  if (clouds.empty()) return;
  std::vector<int64_t> sub_yl;
  for (size_t k = 0; k < clouds.size(); ++k) {
    t.slot[clouds[k]] = static_cast<int64_t>(k);
    sub_yl.push_back(yl[clouds[k]]);
  }
  const at::Tensor sub = yq.index_select(0, at::tensor(clouds, at::kLong)).contiguous();
  t.tree = build_point_tree_cpu(sub, sub_yl);
}

// An upper bound on the distance (squared for NORM 2) from query q to the previous query's nearest
// neighbour, from the triangle inequality: |q - n| <= |q - prev_q| + |prev_q - n|. Computed in
// double and widened by a relative 1e-5, far more than the rounding of the bound and of the
// neighbour's distance computed in scalar_t, so the neighbour always passes it.
template <typename scalar_t, int NORM>
scalar_t reach_bound(const scalar_t* q, const scalar_t* prev_q, scalar_t prev_d) {
  double step = 0.0;
  for (int a = 0; a < 3; ++a) {
    const double diff = static_cast<double>(q[a]) - static_cast<double>(prev_q[a]);
    step += NORM == 2 ? diff * diff : std::abs(diff);
  }
  const double prev = static_cast<double>(prev_d);
  const double reach = NORM == 2 ? std::sqrt(step) + std::sqrt(prev) : step + prev;
  const double bound = (NORM == 2 ? reach * reach : reach) * (1.0 + 1e-5) + 1e-30;
  return bound < static_cast<double>(std::numeric_limits<scalar_t>::max()) ? static_cast<scalar_t>(bound)
                                                                           : std::numeric_limits<scalar_t>::infinity();
}

template <typename scalar_t, int NORM>
struct Searcher {
  const at::Tensor& xq;  // (B, N, 3) queries
  const at::Tensor& y;   // (B, M, D) targets, for warm starts
  const std::vector<int64_t>& yl;
  int64_t K;
  scalar_t* out_d;
  int64_t* out_i;

  // Each cloud's structure as raw views, made once per run: making them per query (a tensor's
  // data_ptr checks, four times) took a few percent of a Chamfer call.
  struct Views {
    std::vector<GridView<scalar_t>> grid;
    std::vector<PointTreeView<scalar_t>> tree;
  };

  Views views(const Targets& t) const {
    const int64_t B = static_cast<int64_t>(t.slot.size());
    Views v{std::vector<GridView<scalar_t>>(B), std::vector<PointTreeView<scalar_t>>(B)};
    for (int64_t b = 0; b < B; ++b) {
      if (t.slot[b] >= 0) {
        v.tree[b] = t.tree.view<scalar_t>(t.slot[b], yl[b]);
      } else {
        v.grid[b] = t.grid.view<scalar_t>(b);
      }
    }
    return v;
  }

  template <typename Top>
  bool search_one(const Targets& t, const Views& v, int64_t b, const scalar_t* q, bool defer, Top& top) const {
    if (t.slot[b] >= 0) {
      tree_knn<scalar_t, NORM>(v.tree[b], q, top);
      return true;
    }
    return grid_knn<scalar_t, NORM>(v.grid[b], q, top, !defer);
  }

  // Searches `order` in parallel chunks; queries of grid clouds that need the fallback are
  // appended to `deferred` when `defer` is set. Within a chunk each query warm-starts from the
  // previous one: its K neighbours bound the next query's K-th distance.
  //
  // Queries in spatial order are scattered in memory. They are gathered into that order first,
  // and results are written contiguously and scattered back at the end: two tight loops whose
  // cache misses overlap, instead of misses inside the dependent search loop.
  void run(const Targets& t, const std::vector<int64_t>& order, bool defer, std::vector<int64_t>* deferred) const {
    const int64_t N = xq.size(1), M = y.size(1), D = y.size(2);
    const scalar_t* qbase = xq.data_ptr<scalar_t>();
    const scalar_t* ybase = y.data_ptr<scalar_t>();
    const int64_t total = order.size();
    std::vector<scalar_t> q_sorted(3 * total), d_sorted(K * total);
    std::vector<int64_t> i_sorted(K * total);
    at::parallel_for(0, total, 4096, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) std::copy(qbase + order[p] * 3, qbase + order[p] * 3 + 3, &q_sorted[3 * p]);
    });
    const Views v = views(t);
    constexpr int64_t kChunk = 256;
    const int64_t chunks = (total + kChunk - 1) / kChunk;
    std::vector<std::vector<int64_t>> chunk_deferred(defer ? chunks : 0);
    at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        int64_t prev_b = -1, prev_pos = -1;
        const int64_t* prev_i = nullptr;
        for (int64_t pos = c * kChunk; pos < std::min(total, (c + 1) * kChunk); ++pos) {
          const int64_t b = order[pos] / N;
          const scalar_t q[3] = {q_sorted[3 * pos], q_sorted[3 * pos + 1], q_sorted[3 * pos + 2]};
          scalar_t* row_d = &d_sorted[K * pos];
          int64_t* row_i = &i_sorted[K * pos];
          scalar_t bound = std::numeric_limits<scalar_t>::infinity();
          if (b == prev_b && prev_i[K - 1] >= 0) {
            if (K == 1) {
              // The previous neighbour is within the previous distance plus the step between the
              // two queries: a bound from data in cache, where reading that neighbour's
              // coordinates (scattered in y) costs a cache miss per query.
              bound = reach_bound<scalar_t, NORM>(q, &q_sorted[3 * prev_pos], d_sorted[prev_pos]);
            } else {
              bound = 0;
              for (int64_t k = 0; k < K; ++k) {
                const scalar_t* p = ybase + (b * M + prev_i[k]) * D;
                bound = std::max(bound, point_distance<NORM>(q, p, static_cast<int>(D)));
              }
            }
          }
          bool done;
          if (K == 1) {  // the Chamfer case: the running best stays in registers
            Top1<scalar_t> top{0, -1, 0, bound};
            done = search_one(t, v, b, q, defer, top);
            row_d[0] = done && top.count ? top.d : scalar_t(0);
            row_i[0] = done && top.count ? top.i : -1;
          } else {
            TopK<scalar_t> top{row_d, row_i, static_cast<int>(K), 0, bound};
            done = search_one(t, v, b, q, defer, top);
            // Every row is written in full: found neighbours, then padding (dist 0, index -1).
            for (int64_t k = done ? top.count : 0; k < K; ++k) {
              row_d[k] = 0;
              row_i[k] = -1;
            }
          }
          if (!done) {
            chunk_deferred[c].push_back(order[pos]);
            prev_b = -1;  // its row is incomplete: no warm start from it
            continue;
          }
          prev_b = b;
          prev_i = row_i;
          prev_pos = pos;
        }
      }
    });
    at::parallel_for(0, total, 4096, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        std::copy(&d_sorted[K * p], &d_sorted[K * p] + K, out_d + order[p] * K);
        std::copy(&i_sorted[K * p], &i_sorted[K * p] + K, out_i + order[p] * K);
      }
    });
    for (const auto& d : chunk_deferred) deferred->insert(deferred->end(), d.begin(), d.end());
  }
};

// The CPU plan for D <= 3, decided per cloud: each cloud gets a grid; a crowded grid's cloud also
// gets a kd-tree, which answers all its queries. Queries run in the order of their cloud's
// structure (grid cells, or the tree's Morton order). Queries far from the data, which the grid
// answers only by its slow fallback, are deferred to a second pass: by a kd-tree for the clouds
// that deferred many of them, by the fallback for the others.
void plan_and_search(const at::Tensor& xq, const at::Tensor& yq, const at::Tensor& y, const std::vector<int64_t>& xl,
                     const std::vector<int64_t>& yl, int64_t K, int64_t norm, at::Tensor& dists, at::Tensor& idx) {
  const int64_t B = yq.size(0), N = xq.size(1);
  Targets t;
  t.grid = build_grid_cpu(yq, yl, K);
  std::vector<int64_t> crowded;
  for (int64_t b = 0; b < B; ++b) {
    if (grid_is_crowded(t.grid.params[b], K)) crowded.push_back(b);
  }
  add_trees(t, yq, yl, crowded);
  std::vector<int64_t> order = order_queries_cpu(xq, xl, t.grid);
  if (!crowded.empty()) {  // queries of tree clouds go in Morton order of their tree
    std::vector<int64_t> merged, sub_xl;
    for (int64_t flat : order) {
      if (t.slot[flat / N] < 0) merged.push_back(flat);
    }
    for (int64_t b : crowded) sub_xl.push_back(xl[b]);
    const at::Tensor sub = xq.index_select(0, at::tensor(crowded, at::kLong)).contiguous();
    for (int64_t flat : order_queries_cpu(sub, sub_xl, t.tree)) merged.push_back(crowded[flat / N] * N + flat % N);
    order.swap(merged);
  }
  const std::vector<int64_t> deferred = search_cpu(t, xq, y, yl, K, norm, order, /*defer=*/true, dists, idx);
  if (deferred.empty()) return;

  std::vector<int64_t> count(B, 0), far;
  for (int64_t flat : deferred) ++count[flat / N];
  for (int64_t b = 0; b < B; ++b) {
    if (deferred_needs_tree(count[b], yl[b])) far.push_back(b);
  }
  Targets far_targets;
  far_targets.grid = t.grid;
  add_trees(far_targets, yq, yl, far);
  search_cpu(far_targets, xq, y, yl, K, norm, deferred, /*defer=*/false, dists, idx);
}

template <typename scalar_t, int NORM>
void search_brute(const at::Tensor& x, const at::Tensor& y, const std::vector<int64_t>& xl,
                  const std::vector<int64_t>& yl, int64_t K, scalar_t* out_d, int64_t* out_i) {
  const int64_t B = x.size(0), N = x.size(1), M = y.size(1), D = x.size(2);
  const scalar_t* xb = x.data_ptr<scalar_t>();
  const scalar_t* yb = y.data_ptr<scalar_t>();
  at::parallel_for(0, B * N, 64, [&](int64_t f0, int64_t f1) {
    for (int64_t flat = f0; flat < f1; ++flat) {
      const int64_t b = flat / N;
      if (flat % N >= xl[b]) continue;
      TopK<scalar_t> top{out_d + flat * K, out_i + flat * K, static_cast<int>(K), 0,
                         std::numeric_limits<scalar_t>::infinity()};
      const scalar_t* q = xb + flat * D;
      for (int64_t j = 0; j < yl[b]; ++j) {
        top.consider(point_distance<NORM>(q, yb + (b * M + j) * D, static_cast<int>(D)), j);
      }
    }
  });
}

}  // namespace

std::vector<int64_t> search_cpu(const Targets& t, const at::Tensor& xq, const at::Tensor& y,
                                const std::vector<int64_t>& yl, int64_t K, int64_t norm,
                                const std::vector<int64_t>& order, bool defer, at::Tensor& dists, at::Tensor& idx) {
  std::vector<int64_t> deferred;
  AT_DISPATCH_FLOATING_TYPES(xq.scalar_type(), "knn_search_cpu", [&] {
    scalar_t* out_d = dists.data_ptr<scalar_t>();
    int64_t* out_i = idx.data_ptr<int64_t>();
    norm == 2 ? Searcher<scalar_t, 2>{xq, y, yl, K, out_d, out_i}.run(t, order, defer, &deferred)
              : Searcher<scalar_t, 1>{xq, y, yl, K, out_d, out_i}.run(t, order, defer, &deferred);
  });
  return deferred;
}

std::tuple<at::Tensor, at::Tensor> knn_on_cpu(CpuPlan plan, const at::Tensor& x_in, const at::Tensor& y_in,
                                              const at::Tensor& x_lengths, const at::Tensor& y_lengths, int64_t K,
                                              int64_t norm) {
  const at::ScalarType dtype = check_knn_args(x_in, y_in, x_lengths, y_lengths, K, norm);
  const at::Tensor x = x_in.to(dtype).contiguous();
  const at::Tensor y = y_in.to(dtype).contiguous();
  const std::vector<int64_t> xl = host_lengths(x_lengths, x.size(1), "knn", "x_lengths");
  const std::vector<int64_t> yl = host_lengths(y_lengths, y.size(1), "knn", "y_lengths");
  at::Tensor dists, idx;
  std::tie(dists, idx) = empty_knn_result(x, K);
  if (x.size(2) <= 3) {
    plan(as_3d_points(x, dtype), as_3d_points(y, dtype), y, xl, yl, K, norm, dists, idx);
    return {dists, idx};
  }
  AT_DISPATCH_FLOATING_TYPES(dtype, "knn_brute_cpu", [&] {
    scalar_t* out_d = dists.data_ptr<scalar_t>();
    int64_t* out_i = idx.data_ptr<int64_t>();
    norm == 2 ? search_brute<scalar_t, 2>(x, y, xl, yl, K, out_d, out_i)
              : search_brute<scalar_t, 1>(x, y, xl, yl, K, out_d, out_i);
  });
  return {dists, idx};
}

std::tuple<at::Tensor, at::Tensor> knn_cpu(const at::Tensor& x, const at::Tensor& y, const at::Tensor& x_lengths,
                                           const at::Tensor& y_lengths, int64_t K, int64_t norm) {
  return knn_on_cpu(&plan_and_search, x, y, x_lengths, y_lengths, K, norm);
}

TORCH_LIBRARY_IMPL(pointmetrics, CPU, m) { m.impl("knn", &knn_cpu); }

}  // namespace pm
