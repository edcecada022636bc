// CPU greedy radius reduction. The sequential definition visits points in index order, which for
// DTU's shuffled points jumps across memory at every step. Instead, the points are decided in
// rounds (greedy.h's greedy_round_step) that walk them in cell order on all cores, each thread
// seeing the decisions already made in the round (relaxed atomic reads: a stale read only delays a
// decision, never changes it). While a round decides at least a quarter of the undecided points
// the rounds continue; shuffled clouds need a handful. Points left undecided when progress slows
// (chains whose every decision waits for the one before, as in a line of points visited in order)
// are finished in index order, where every earlier point is already decided: so the work stays
// within a few passes over the points whatever the order, and the answer is the sequential one.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <numeric>
#include <vector>

#include "greedy.h"

namespace pm {

namespace {

// Slot states shared by the round's threads.
struct SharedStates {
  int8_t* state;
  int8_t operator[](int64_t slot) const { return std::atomic_ref<int8_t>(state[slot]).load(std::memory_order_relaxed); }
  void set(int64_t slot, int8_t value) const {
    std::atomic_ref<int8_t>(state[slot]).store(value, std::memory_order_relaxed);
  }
};

constexpr int64_t kRoundGrain = 4096;

// Each grid row's first cell, found from where the previous slot's search ended: within one thread's
// run of slots in cell order the key asked for a row only grows, so the search gallops forward a
// few cells instead of bisecting all of them.
struct RowCursors {
  int64_t at[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
  int64_t operator()(const int64_t* keys, int64_t count, int row, int64_t key) {
    int64_t lo = at[row];  // every key before lo is < key
    if (lo < count && keys[lo] < key) {
      int64_t step = 1;
      while (lo + step < count && keys[lo + step] < key) {
        lo += step;
        step *= 2;
      }
      lo = first_key_at_least(keys + lo + 1, std::min(step, count - lo - 1), key) + lo + 1;
    }
    return at[row] = lo;
  }
};

template <typename scalar_t>
void decide_all(const RadiusGridView<scalar_t>& g, int64_t n, double r2, int8_t* state) {
  const SharedStates shared{state};
  std::vector<int64_t> undecided(n);
  std::iota(undecided.begin(), undecided.end(), 0);
  while (!undecided.empty()) {
    const int64_t before = static_cast<int64_t>(undecided.size());
    at::parallel_for(0, before, kRoundGrain, [&](int64_t k0, int64_t k1) {
      RowCursors cursors;
      for (int64_t k = k0; k < k1; ++k) {
        const int8_t decision = greedy_round_step(g, undecided[k], r2, shared, cursors);
        if (decision != kUndecided) shared.set(undecided[k], decision);
      }
    });
    undecided.erase(std::remove_if(undecided.begin(), undecided.end(), [&](int64_t s) { return state[s] != kUndecided; }),
                    undecided.end());
    if (static_cast<int64_t>(undecided.size()) * 4 > before * 3) break;  // under a quarter decided
  }
  // In index order every earlier point is final when a point is reached, so each step decides.
  std::sort(undecided.begin(), undecided.end(), [&](int64_t a, int64_t b) { return g.index[a] < g.index[b]; });
  for (const int64_t s : undecided) state[s] = greedy_round_step(g, s, r2, state, SearchRows{});
}

}  // namespace

at::Tensor greedy_radius_keep_cpu(const at::Tensor& points_in, double radius) {
  const at::Tensor points = points_in.contiguous();
  const int64_t n = points.size(0);
  if (n == 0) return at::ones({0}, points.options().dtype(at::kBool));
  const RadiusGrid g = build_radius_grid(points, radius);
  at::Tensor state = at::zeros({n}, points.options().dtype(at::kChar));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, points.scalar_type(), "greedy_radius_keep_cpu", [&] {
    decide_all(grid_view<scalar_t>(g), n, radius * radius, state.data_ptr<int8_t>());
  });
  return at::empty({n}, state.options().dtype(at::kBool)).index_copy_(0, g.index, state == kKept);
}

TORCH_LIBRARY_IMPL(pointmetrics, CPU, m) { m.impl("greedy_radius_keep", &greedy_radius_keep_cpu); }

}  // namespace pm
