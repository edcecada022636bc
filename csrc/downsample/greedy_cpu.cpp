// CPU greedy radius reduction: the grid is built in parallel (ATen), the greedy pass is sequential
// by definition (each decision depends on every earlier one) and costs O(N x neighbours).
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <limits>

#include "greedy.h"

namespace pm {

at::Tensor greedy_radius_keep_cpu(const at::Tensor& points_in, double radius) {
  const at::Tensor points = points_in.contiguous();
  const int64_t n = points.size(0);
  at::Tensor keep = at::ones({n}, points.options().dtype(at::kBool));
  if (n == 0) return keep;
  const RadiusGrid g = build_radius_grid(points, radius);
  const double r2 = radius * radius;
  bool* kept = keep.data_ptr<bool>();
  const int64_t* cell = g.cell.data_ptr<int64_t>();
  const int64_t* order = g.order.data_ptr<int64_t>();
  const int64_t* keys = g.keys.data_ptr<int64_t>();
  const int64_t* start = g.start.data_ptr<int64_t>();
  const int64_t count = g.keys.numel();
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "greedy_radius_keep_cpu", [&] {
    const scalar_t* p = points.data_ptr<scalar_t>();
    for (int64_t i = 0; i < n; ++i) {
      if (!kept[i]) continue;
      const int64_t* c = cell + 3 * i;
      for (int64_t x = std::max<int64_t>(c[0] - 1, 0); x <= std::min(c[0] + 1, g.dims[0] - 1); ++x) {
        for (int64_t y = std::max<int64_t>(c[1] - 1, 0); y <= std::min(c[1] + 1, g.dims[1] - 1); ++y) {
          for (int64_t z = std::max<int64_t>(c[2] - 1, 0); z <= std::min(c[2] + 1, g.dims[2] - 1); ++z) {
            const int64_t k = find_cell(keys, count, cell_key(x, y, z, g.dims));
            if (k < 0) continue;
            for (int64_t s = start[k]; s < start[k + 1]; ++s) {
              const int64_t j = order[s];
              if (j > i && kept[j] && within(p + 3 * i, p + 3 * j, r2)) kept[j] = false;
            }
          }
        }
      }
    }
  });
  return keep;
}

TORCH_LIBRARY_IMPL(pointmetrics, CPU, m) { m.impl("greedy_radius_keep", &greedy_radius_keep_cpu); }

}  // namespace pm
