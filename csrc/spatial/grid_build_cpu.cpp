// CPU grid builder: a stable counting sort per cloud, clouds built in parallel.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "grid_build.h"

namespace pm {

namespace {

// One cloud while it is being built: its geometry, each point's cell, and the cell counts.
struct CloudCells {
  GridParams p{};
  double lo[3], hi[3];
  std::vector<int32_t> cell;   // per point
  std::vector<int32_t> count;  // per cell
};

int64_t num_cells(const GridParams& p) { return static_cast<int64_t>(p.dims[0]) * p.dims[1] * p.dims[2]; }
int64_t sat_size(const GridParams& p) {
  return static_cast<int64_t>(p.dims[0] + 1) * (p.dims[1] + 1) * (p.dims[2] + 1);
}

template <typename scalar_t>
int64_t cell_of(const GridParams& p, const scalar_t* q) {
  return linear_cell(p, cell_coord(p, q[0], 0), cell_coord(p, q[1], 1), cell_coord(p, q[2], 2));
}

// Cell of every point (in parallel: the double arithmetic dominates), then the counts.
// Inside a parallel region (clouds built in parallel) the inner parallel_for runs inline.
template <typename scalar_t>
void cells_of(const GridParams& p, const scalar_t* pts, int64_t n, std::vector<int32_t>& cell) {
  cell.resize(n);
  at::parallel_for(0, n, 16384, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) cell[i] = static_cast<int32_t>(cell_of(p, pts + 3 * i));
  });
}

template <typename scalar_t>
void assign_cells(const scalar_t* pts, int64_t n, CloudCells& c) {
  cells_of(c.p, pts, n, c.cell);
  c.count.assign(num_cells(c.p), 0);
  for (int64_t i = 0; i < n; ++i) ++c.count[c.cell[i]];
}

template <typename scalar_t>
void plan_cloud(const scalar_t* pts, int64_t n, double occupancy, CloudCells& c) {
  for (int a = 0; a < 3; ++a) {
    c.lo[a] = std::numeric_limits<double>::infinity();
    c.hi[a] = -std::numeric_limits<double>::infinity();
  }
  for (int64_t i = 0; i < n; ++i) {
    for (int a = 0; a < 3; ++a) {
      const double v = static_cast<double>(pts[3 * i + a]);
      c.lo[a] = std::min(c.lo[a], v);
      c.hi[a] = std::max(c.hi[a], v);
    }
  }
  c.p = choose_grid(c.lo, c.hi, n, occupancy);
  bool stale = true;
  for (int iter = 0; iter < 3 && stale; ++iter) {
    assign_cells(pts, n, c);
    const int64_t nonempty = std::count_if(c.count.begin(), c.count.end(), [](int32_t k) { return k > 0; });
    stale = refine_grid(c.p, c.lo, c.hi, n, nonempty, occupancy);
  }
  if (stale) assign_cells(pts, n, c);
}

// Summed-volume table: sat[z][y][x] = points in cells [0, x) x [0, y) x [0, z).
void fill_sat(const GridParams& p, const std::vector<int32_t>& count, int32_t* sat) {
  const int64_t gx = p.dims[0], gy = p.dims[1], gz = p.dims[2];
  const int64_t sx = gx + 1, sy = gy + 1;
  std::fill(sat, sat + sat_size(p), 0);
  for (int64_t z = 0; z < gz; ++z)
    for (int64_t y = 0; y < gy; ++y)
      for (int64_t x = 0; x < gx; ++x) sat[((z + 1) * sy + (y + 1)) * sx + (x + 1)] = count[(z * gy + y) * gx + x];
  for (int64_t z = 1; z <= gz; ++z)  // prefix along x, then y, then z
    for (int64_t y = 1; y <= gy; ++y)
      for (int64_t x = 1; x <= gx; ++x) sat[(z * sy + y) * sx + x] += sat[(z * sy + y) * sx + x - 1];
  for (int64_t z = 1; z <= gz; ++z)
    for (int64_t y = 1; y <= gy; ++y)
      for (int64_t x = 1; x <= gx; ++x) sat[(z * sy + y) * sx + x] += sat[(z * sy + y - 1) * sx + x];
  for (int64_t z = 1; z <= gz; ++z)
    for (int64_t y = 1; y <= gy; ++y)
      for (int64_t x = 1; x <= gx; ++x) sat[(z * sy + y) * sx + x] += sat[((z - 1) * sy + y) * sx + x];
}

template <typename scalar_t>
BatchGrid build_cpu(const at::Tensor& points, const std::vector<int64_t>& lengths, int64_t K) {
  const int64_t B = points.size(0), M = points.size(1);
  const scalar_t* base = points.data_ptr<scalar_t>();
  const double occupancy = target_occupancy(K);
  std::vector<CloudCells> clouds(B);
  for_each_cloud(B, [&](int64_t b) { plan_cloud(base + b * M * 3, lengths[b], occupancy, clouds[b]); });

  std::vector<int64_t> pt_offset(B + 1, 0);
  int64_t total_cells = 0, total_sat = 0;
  for (int64_t b = 0; b < B; ++b) {
    GridParams& p = clouds[b].p;
    p.cell_offset = total_cells;
    p.sat_offset = total_sat;
    total_cells += num_cells(p);
    total_sat += sat_size(p);
    pt_offset[b + 1] = pt_offset[b] + lengths[b];
  }
  TORCH_CHECK(pt_offset[B] < std::numeric_limits<int32_t>::max(), "pointmetrics: at most 2^31 - 1 points per batch");

  BatchGrid g;
  g.pts = at::empty({pt_offset[B], 3}, points.options());
  g.idx = at::empty({pt_offset[B]}, points.options().dtype(at::kLong));
  g.cell_start = at::empty({total_cells + 1}, points.options().dtype(at::kInt));
  g.sat = at::empty({total_sat}, points.options().dtype(at::kInt));
  scalar_t* out_pts = g.pts.data_ptr<scalar_t>();
  int64_t* out_idx = g.idx.data_ptr<int64_t>();
  int32_t* cell_start = g.cell_start.data_ptr<int32_t>();
  int32_t* sat = g.sat.data_ptr<int32_t>();
  cell_start[total_cells] = static_cast<int32_t>(pt_offset[B]);

  for_each_cloud(B, [&](int64_t b) {
    CloudCells& c = clouds[b];
    const int64_t cells = num_cells(c.p);
    int32_t* start = cell_start + c.p.cell_offset;
    int32_t running = static_cast<int32_t>(pt_offset[b]);
    for (int64_t k = 0; k < cells; ++k) {
      start[k] = running;
      running += c.count[k];
    }
    std::vector<int32_t> cursor(start, start + cells);
    const scalar_t* src = base + b * M * 3;
    for (int64_t i = 0; i < lengths[b]; ++i) {
      const int32_t pos = cursor[c.cell[i]]++;
      for (int a = 0; a < 3; ++a) out_pts[3 * static_cast<int64_t>(pos) + a] = src[3 * i + a];
      out_idx[pos] = i;
    }
    fill_sat(c.p, c.count, sat + c.p.sat_offset);
    double squares = 0.0;
    for (int32_t k : c.count) squares += static_cast<double>(k) * k;
    c.p.crowding = lengths[b] > 0 ? squares / static_cast<double>(lengths[b]) : 0.0;
    std::vector<int32_t>().swap(c.cell);
    std::vector<int32_t>().swap(c.count);
  });
  for (int64_t b = 0; b < B; ++b) g.params.push_back(clouds[b].p);
  g.params_bytes = at::empty({static_cast<int64_t>(B * sizeof(GridParams))}, points.options().dtype(at::kByte));
  std::memcpy(g.params_bytes.data_ptr<uint8_t>(), g.params.data(), B * sizeof(GridParams));
  return g;
}

template <typename scalar_t>
std::vector<int64_t> order_cpu(const at::Tensor& queries, const std::vector<int64_t>& lengths, const BatchGrid& grid) {
  const int64_t B = queries.size(0), N = queries.size(1);
  const scalar_t* base = queries.data_ptr<scalar_t>();
  std::vector<int64_t> offset(B + 1, 0);
  for (int64_t b = 0; b < B; ++b) offset[b + 1] = offset[b] + lengths[b];
  std::vector<int64_t> order(offset[B]);
  for_each_cloud(B, [&](int64_t b) {
    const GridParams& p = grid.params[b];
    const scalar_t* q = base + b * N * 3;
    std::vector<int32_t> cell;
    cells_of(p, q, lengths[b], cell);
    std::vector<int64_t> start(num_cells(p) + 1, 0);
    for (int64_t i = 0; i < lengths[b]; ++i) ++start[cell[i] + 1];
    for (size_t k = 1; k < start.size(); ++k) start[k] += start[k - 1];
    for (int64_t i = 0; i < lengths[b]; ++i) order[offset[b] + start[cell[i]]++] = b * N + i;
  });
  return order;
}

}  // namespace

BatchGrid build_grid_cpu(const at::Tensor& points, const std::vector<int64_t>& lengths, int64_t K) {
  return AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "build_grid_cpu",
                                    [&] { return build_cpu<scalar_t>(points, lengths, K); });
}

std::vector<int64_t> order_queries_cpu(const at::Tensor& queries, const std::vector<int64_t>& lengths,
                                       const BatchGrid& grid) {
  return AT_DISPATCH_FLOATING_TYPES(queries.scalar_type(), "order_queries_cpu",
                                    [&] { return order_cpu<scalar_t>(queries, lengths, grid); });
}

}  // namespace pm
