// Device-generic grid builder made of ATen ops (sort, index_add, cumsum). CUDA uses it; the
// test-only CPU op knn_portable (testing.cpp) uses it too, so it is tested without a GPU.
//
// Synchronisations are what a small CUDA call pays for, so the builder reads the device once per
// grid it tries (each cloud's occupied cells and summed squared counts, in one readback) and
// nothing else: the clouds' bounds come in with the call (CloudBounds, read together with the
// queries' lengths by knn.h's plan), host data goes up through pinned memory (a pageable upload
// waits for the stream), and no op with a data-dependent output size (nonzero, masked_select,
// bincount) runs: invalid points sort to the end under the largest key instead.
#include <algorithm>
#include <cstring>
#include <limits>

#include "grid_build.h"

namespace pm {

namespace {

int64_t num_cells(const GridParams& p) { return static_cast<int64_t>(p.dims[0]) * p.dims[1] * p.dims[2]; }

// Per-cloud geometry as tensors on `device`, for broadcasting over (B, M, 3) points.
struct ParamTensors {
  at::Tensor origin, inv_h, dims_max, dims_xy, cell_offset;
};

// A small host tensor on `device` without waiting for the device: from pinned memory the copy is
// queued on the stream (the caching host allocator keeps the buffer until it is done).
at::Tensor upload(const at::Tensor& host, const at::Device& device) {
  if (!device.is_cuda()) return host.to(device);
  return host.pin_memory().to(device, /*non_blocking=*/true);
}

ParamTensors param_tensors(const std::vector<GridParams>& params, const at::Device& device) {
  const int64_t B = params.size();
  auto o = at::empty({B, 1, 3}, at::kDouble), ih = at::empty({B, 1, 1}, at::kDouble);
  auto dm = at::empty({B, 1, 3}, at::kDouble), dxy = at::empty({B, 1, 2}, at::kLong);
  auto off = at::empty({B, 1}, at::kLong);
  auto oa = o.accessor<double, 3>(), iha = ih.accessor<double, 3>(), dma = dm.accessor<double, 3>();
  auto dxya = dxy.accessor<int64_t, 3>();
  auto offa = off.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b) {
    const GridParams& p = params[b];
    for (int a = 0; a < 3; ++a) {
      oa[b][0][a] = p.origin[a];
      dma[b][0][a] = static_cast<double>(p.dims[a] - 1);
    }
    iha[b][0][0] = p.inv_h;
    dxya[b][0][0] = p.dims[0];
    dxya[b][0][1] = p.dims[1];
    offa[b][0] = p.cell_offset;
  }
  return {upload(o, device), upload(ih, device), upload(dm, device), upload(dxy, device), upload(off, device)};
}

// Global cell index (cloud's cell_offset + linear cell) of every point, as pm::cell_coord computes it.
at::Tensor global_cells(const at::Tensor& points, const ParamTensors& t) {
  at::Tensor f = (points.to(at::kDouble) - t.origin) * t.inv_h;
  f = at::where(f >= 0, f, at::zeros({}, f.options()));  // also maps NaN to cell 0
  const at::Tensor c = at::minimum(f, t.dims_max).floor().to(at::kLong);
  const at::Tensor x = c.select(2, 0), y = c.select(2, 1), z = c.select(2, 2);
  const at::Tensor gx = t.dims_xy.select(2, 0), gy = t.dims_xy.select(2, 1);
  return t.cell_offset + (z * gy + y) * gx + x;
}

void set_offsets(std::vector<GridParams>& params) {
  int64_t cells = 0, sat = 0;
  for (GridParams& p : params) {
    p.cell_offset = cells;
    p.sat_offset = sat;
    cells += num_cells(p);
    sat += static_cast<int64_t>(p.dims[0] + 1) * (p.dims[1] + 1) * (p.dims[2] + 1);
  }
}

// Points per cell of every global cell (invalid points counted nowhere), without a readback.
at::Tensor cell_counts(const at::Tensor& cells, const at::Tensor& valid, int64_t total) {
  const at::Tensor slot = at::where(valid, cells, at::full({}, total, cells.options())).reshape(-1);
  return at::zeros({total + 1}, cells.options()).index_add_(0, slot, at::ones_like(slot)).narrow(0, 0, total);
}

// Each cloud's occupied cells and its summed squared counts, in one readback: cumulative sums read
// at every cloud's last cell, minus the previous cloud's.
void read_cloud_sums(const at::Tensor& counts, const std::vector<GridParams>& params, std::vector<int64_t>& occupied,
                     std::vector<double>& squares) {
  const int64_t B = params.size();
  at::Tensor ends = at::empty({B}, at::kLong);
  for (int64_t b = 0; b < B; ++b) ends.data_ptr<int64_t>()[b] = params[b].cell_offset + num_cells(params[b]) - 1;
  ends = upload(ends, counts.device());
  const at::Tensor occupied_cum = counts.gt(0).to(at::kDouble).cumsum(0).index_select(0, ends);
  const at::Tensor squares_cum = counts.to(at::kDouble).square().cumsum(0).index_select(0, ends);
  const at::Tensor host = at::stack({occupied_cum, squares_cum}).cpu();  // the synchronisation
  double occupied_before = 0.0, squares_before = 0.0;
  for (int64_t b = 0; b < B; ++b) {
    occupied[b] = static_cast<int64_t>(host[0][b].item<double>() - occupied_before);
    squares[b] = host[1][b].item<double>() - squares_before;
    occupied_before = host[0][b].item<double>();
    squares_before = host[1][b].item<double>();
  }
}

// Flat indices b * N + i of the valid entries of (B, N) `valid` (a prefix of each row, `total` in
// all), sorted stably by `keys`: invalid entries take the largest key and are cut off the end.
at::Tensor sorted_valid(const at::Tensor& keys, const at::Tensor& valid, int64_t total) {
  const at::Tensor k = at::where(valid, keys, at::full({}, std::numeric_limits<int64_t>::max(), keys.options()));
  return std::get<1>(k.reshape(-1).sort(/*stable=*/true, /*dim=*/0, /*descending=*/false)).narrow(0, 0, total);
}

}  // namespace

at::Tensor cloud_bounds_rows(const at::Tensor& points, const at::Tensor& lengths) {
  const int64_t M = points.size(1);
  const at::Tensor mask3 = (at::arange(M, lengths.options()).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(2);
  const double inf = std::numeric_limits<double>::infinity();
  const at::Tensor pd = points.to(at::kDouble);
  const at::Tensor lo = at::where(mask3, pd, at::full({}, inf, pd.options())).amin(1);  // (B, 3)
  const at::Tensor hi = at::where(mask3, pd, at::full({}, -inf, pd.options())).amax(1);
  return at::cat({lo, hi, lengths.to(at::kDouble).unsqueeze(1)}, 1);
}

CloudBounds cloud_bounds_from(const at::Tensor& rows_in, int64_t limit, const char* op, const char* name) {
  const at::Tensor rows = rows_in.cpu().contiguous();
  const int64_t B = rows.size(0);
  CloudBounds c{std::vector<int64_t>(B), std::vector<double>(3 * B), std::vector<double>(3 * B)};
  const double* r = rows.data_ptr<double>();
  for (int64_t b = 0; b < B; ++b, r += rows.size(1)) {
    TORCH_CHECK(r[6] >= 0 && r[6] <= static_cast<double>(limit), op, ": ", name, " values must lie in [0, ", limit,
                "]");
    c.n[b] = static_cast<int64_t>(r[6]);
    std::copy(r, r + 3, c.lo.begin() + 3 * b);
    std::copy(r + 3, r + 6, c.hi.begin() + 3 * b);
  }
  return c;
}

BatchGrid build_grid_aten(const at::Tensor& points, const at::Tensor& lengths, int64_t K) {
  return build_grid_aten(points, lengths, cloud_bounds_from(cloud_bounds_rows(points, lengths), points.size(1),
                                                            "knn", "y_lengths"), K);
}

BatchGrid build_grid_aten(const at::Tensor& points, const at::Tensor& lengths, const CloudBounds& bounds, int64_t K) {
  const int64_t B = points.size(0), M = points.size(1);
  const auto device = points.device();
  const at::Tensor valid = at::arange(M, lengths.options()).unsqueeze(0) < lengths.unsqueeze(1);  // (B, M)
  const std::vector<int64_t>& n = bounds.n;
  int64_t total_valid = 0;
  for (int64_t v : n) total_valid += v;

  const double occupancy = target_occupancy(K);
  std::vector<GridParams> params(B);
  for (int64_t b = 0; b < B; ++b) params[b] = choose_grid(&bounds.lo[3 * b], &bounds.hi[3 * b], n[b], occupancy);
  set_offsets(params);

  at::Tensor cells, counts;  // (B, M) global cell of each point; points per global cell
  std::vector<int64_t> occupied(B);
  std::vector<double> squares(B);
  for (int iter = 0;; ++iter) {
    cells = global_cells(points, param_tensors(params, device));
    counts = cell_counts(cells, valid, params.back().cell_offset + num_cells(params.back()));
    read_cloud_sums(counts, params, occupied, squares);
    if (iter == 3) break;  // at most three refinements, as in the CPU builder
    bool changed = false;
    for (int64_t b = 0; b < B; ++b) {
      changed |= refine_grid(params[b], &bounds.lo[3 * b], &bounds.hi[3 * b], n[b], occupied[b], occupancy);
    }
    if (!changed) break;
    set_offsets(params);
  }

  const at::Tensor src = sorted_valid(cells, valid, total_valid);  // by (cloud, cell), then index

  BatchGrid g;
  g.pts = points.reshape({B * M, 3}).index_select(0, src).contiguous();
  g.idx = src.remainder(M);
  g.cell_start = at::cat({at::zeros({1}, counts.options()), counts.cumsum(0)}).to(at::kInt);
  const int64_t total_sat = params.back().sat_offset +
                            static_cast<int64_t>(params.back().dims[0] + 1) * (params.back().dims[1] + 1) *
                                (params.back().dims[2] + 1);
  g.sat = at::zeros({total_sat}, counts.options().dtype(at::kInt));
  for (int64_t b = 0; b < B; ++b) {
    const GridParams& p = params[b];
    const int64_t gx = p.dims[0], gy = p.dims[1], gz = p.dims[2];
    const at::Tensor c = counts.narrow(0, p.cell_offset, gx * gy * gz).view({gz, gy, gx});
    at::Tensor s = g.sat.narrow(0, p.sat_offset, (gx + 1) * (gy + 1) * (gz + 1)).view({gz + 1, gy + 1, gx + 1});
    s.narrow(0, 1, gz).narrow(1, 1, gy).narrow(2, 1, gx).copy_(c.cumsum(0).cumsum(1).cumsum(2));
  }
  // Crowding per cloud: its squared cell counts summed, divided by its points.
  for (int64_t b = 0; b < B; ++b) params[b].crowding = n[b] > 0 ? squares[b] / static_cast<double>(n[b]) : 0.0;
  g.params = params;
  at::Tensor bytes = at::empty({static_cast<int64_t>(B * sizeof(GridParams))}, at::kByte);
  std::memcpy(bytes.data_ptr<uint8_t>(), params.data(), B * sizeof(GridParams));
  g.params_bytes = upload(bytes, device);
  return g;
}

at::Tensor order_queries_aten(const at::Tensor& queries, const at::Tensor& lengths, const BatchGrid& grid,
                              int64_t total) {
  const int64_t N = queries.size(1);
  const at::Tensor valid = at::arange(N, lengths.options()).unsqueeze(0) < lengths.unsqueeze(1);
  if (total < 0) total = valid.sum().item<int64_t>();
  return sorted_valid(global_cells(queries, param_tensors(grid.params, queries.device())), valid, total);
}

}  // namespace pm
