// Device-generic grid builder made of ATen ops (sort, bincount, cumsum). CUDA uses it; the
// test-only CPU op knn_portable (testing.cpp) uses it too, so it is tested without a GPU.
#include <cstring>

#include "grid_build.h"

namespace pm {

namespace {

int64_t num_cells(const GridParams& p) { return static_cast<int64_t>(p.dims[0]) * p.dims[1] * p.dims[2]; }

// Per-cloud geometry as tensors on `device`, for broadcasting over (B, M, 3) points.
struct ParamTensors {
  at::Tensor origin, inv_h, dims_max, dims_xy, cell_offset;
};

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
  return {o.to(device), ih.to(device), dm.to(device), dxy.to(device), off.to(device)};
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

}  // namespace

BatchGrid build_grid_aten(const at::Tensor& points, const at::Tensor& lengths, int64_t K) {
  const int64_t B = points.size(0), M = points.size(1);
  const auto device = points.device();
  const at::Tensor valid = at::arange(M, lengths.options()).unsqueeze(0) < lengths.unsqueeze(1);  // (B, M)
  const at::Tensor mask3 = valid.unsqueeze(2);
  const double inf = std::numeric_limits<double>::infinity();
  const at::Tensor pd = points.to(at::kDouble);
  const at::Tensor lo = at::where(mask3, pd, at::full({}, inf, pd.options())).amin(1).cpu();  // (B, 3)
  const at::Tensor hi = at::where(mask3, pd, at::full({}, -inf, pd.options())).amax(1).cpu();
  const at::Tensor len = lengths.cpu();

  const double occupancy = target_occupancy(K);
  std::vector<GridParams> params(B);
  std::vector<int64_t> n(B);
  for (int64_t b = 0; b < B; ++b) {
    n[b] = len[b].item<int64_t>();
    params[b] = choose_grid(lo[b].data_ptr<double>(), hi[b].data_ptr<double>(), n[b], occupancy);
  }
  set_offsets(params);

  at::Tensor cells;  // (B, M) global cell of each point
  for (int iter = 0; iter < 4; ++iter) {
    cells = global_cells(points, param_tensors(params, device));
    if (iter == 3) break;  // at most three refinements, as in the CPU builder
    const int64_t total = params.back().cell_offset + num_cells(params.back());
    const at::Tensor occupied = at::bincount(cells.masked_select(valid), {}, total) > 0;
    // Occupied cells per cloud: cumulative count read at each cloud's last cell.
    const at::Tensor cum = occupied.to(at::kLong).cumsum(0).cpu();
    bool changed = false;
    int64_t before = 0;
    for (int64_t b = 0; b < B; ++b) {
      const int64_t end = params[b].cell_offset + num_cells(params[b]) - 1;
      const int64_t upto = cum[end].item<int64_t>();
      changed |= refine_grid(params[b], lo[b].data_ptr<double>(), hi[b].data_ptr<double>(), n[b], upto - before,
                             occupancy);
      before = upto;
    }
    if (!changed) break;
    set_offsets(params);
  }

  const int64_t total_cells = params.back().cell_offset + num_cells(params.back());
  const at::Tensor flat_valid = valid.reshape(-1).nonzero().squeeze(1);  // ascending flat indices
  const at::Tensor keys = cells.reshape(-1).index_select(0, flat_valid);
  const at::Tensor perm = std::get<1>(keys.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false));
  const at::Tensor src = flat_valid.index_select(0, perm);

  BatchGrid g;
  g.pts = points.reshape({B * M, 3}).index_select(0, src).contiguous();
  g.idx = src.remainder(M);
  const at::Tensor counts = at::bincount(keys, {}, total_cells);
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
  // Crowding per cloud: squared counts summed over each cloud's cells (cumulative sums read at
  // the cloud boundaries), divided by its points.
  const at::Tensor cum_sq = counts.to(at::kDouble).square().cumsum(0).cpu();
  double before = 0.0;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t last = params[b].cell_offset + num_cells(params[b]) - 1;
    const double upto = cum_sq[last].item<double>();
    params[b].crowding = n[b] > 0 ? (upto - before) / static_cast<double>(n[b]) : 0.0;
    before = upto;
  }
  g.params = params;
  at::Tensor bytes = at::empty({static_cast<int64_t>(B * sizeof(GridParams))}, at::kByte);
  std::memcpy(bytes.data_ptr<uint8_t>(), params.data(), B * sizeof(GridParams));
  g.params_bytes = bytes.to(device);
  return g;
}

at::Tensor order_queries_aten(const at::Tensor& queries, const at::Tensor& lengths, const BatchGrid& grid) {
  const int64_t N = queries.size(1);
  const at::Tensor valid = at::arange(N, lengths.options()).unsqueeze(0) < lengths.unsqueeze(1);
  const at::Tensor flat_valid = valid.reshape(-1).nonzero().squeeze(1);
  const at::Tensor keys = global_cells(queries, param_tensors(grid.params, queries.device())).reshape(-1).index_select(0, flat_valid);
  const at::Tensor perm = std::get<1>(keys.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false));
  return flat_valid.index_select(0, perm);
}

}  // namespace pm
