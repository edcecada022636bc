// CUDA implementation of the auction assignment op: one block per problem runs every phase and
// round on the device, with no host round trips. Each warp bids for one unassigned bidder at a
// time: its lanes scan the objects and merge their best two values; each object then takes its
// highest bid (integer atomics on order-preserving price bits) and, among equal bids, the smaller
// bidder index. Bids, resolution and the eps schedule are those of emd_cpu.cpp, and sums run in
// one thread in the same order, so CPU and CUDA return the same assignment.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <limits>

#include "../nn/knn.h"
#include "auction.h"
#include "emd.h"

namespace pm {

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

// Monotone map of doubles to unsigned integers, so that atomicMax on the bits orders bids.
__device__ unsigned long long ordered_bits(double v) {
  const unsigned long long bits = static_cast<unsigned long long>(__double_as_longlong(v));
  return (bits & 0x8000000000000000ULL) ? ~bits : bits | 0x8000000000000000ULL;
}

__device__ TopTwo merge_top_two(TopTwo a, TopTwo b) {
  TopTwo out = a;
  out.consider(b.v1, b.j1);  // the better of the two winners leads, the other falls to second
  if (b.v2 > out.v2) out.v2 = b.v2;
  return out;
}

// Best two values v = -c - p over all objects, by the lanes of one warp (same result as a scan).
template <int P, typename scalar_t>
__device__ TopTwo warp_top_two(const scalar_t* xi, const scalar_t* objects, int D, int64_t m, const double* prices,
                               int lane) {
  const double neg_inf = -std::numeric_limits<double>::infinity();
  TopTwo top{neg_inf, neg_inf, -1};
  for (int64_t j = lane; j < m; j += 32) top.consider(-pair_cost<P>(xi, objects + j * D, D) - prices[j], j);
  for (int offset = 16; offset > 0; offset /= 2) {
    TopTwo other;
    other.v1 = __shfl_down_sync(0xffffffffu, top.v1, offset);
    other.v2 = __shfl_down_sync(0xffffffffu, top.v2, offset);
    other.j1 = __shfl_down_sync(0xffffffffu, top.j1, offset);
    top = merge_top_two(top, other);
  }
  return top;  // valid in lane 0
}

template <int P, typename scalar_t>
__device__ double pair_cost_of(const scalar_t* bidders, const scalar_t* objects, int D, int64_t i, int64_t j) {
  return pair_cost<P>(bidders + i * D, objects + j * D, D);
}

// terms[i] = min_j (c_ij + p_j) for every bidder, one warp per bidder.
template <int P, typename scalar_t>
__device__ void dual_terms(const scalar_t* bidders, const scalar_t* objects, int D, int64_t n, int64_t m,
                           const double* prices, double* terms) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int64_t i = warp; i < n; i += kWarps) {
    const TopTwo top = warp_top_two<P>(bidders + i * D, objects, D, m, prices, lane);
    if (lane == 0) terms[i] = -top.v1;
  }
}

struct Workspace {  // per problem, each of length max(N, M)
  double* prices;
  int64_t* owner;
  int64_t* assigned;
  int64_t* bid_object;
  double* bid_price;
  unsigned long long* win_bits;
  long long* win_bidder;
  double* terms;
  int8_t* bidding;
};

template <int P, typename scalar_t>
__global__ void auction_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ y,
                               const int64_t* x_len, const int64_t* y_len, int64_t N, int64_t M, int D,
                               double rel_tol, int64_t max_rounds, Workspace ws, int64_t width, int64_t* out,
                               double* stats) {
  const int64_t b = blockIdx.x;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int64_t nx = x_len[b], ny = y_len[b];
  const bool x_bids = nx <= ny;
  const scalar_t* bidders = x_bids ? x + b * N * D : y + b * M * D;
  const scalar_t* objects = x_bids ? y + b * M * D : x + b * N * D;
  const int64_t n = x_bids ? nx : ny, m = x_bids ? ny : nx;
  double* prices = ws.prices + b * width;
  int64_t* owner = ws.owner + b * width;
  int64_t* assigned = ws.assigned + b * width;
  int64_t* bid_object = ws.bid_object + b * width;
  double* bid_price = ws.bid_price + b * width;
  unsigned long long* win_bits = ws.win_bits + b * width;
  long long* win_bidder = ws.win_bidder + b * width;
  double* terms = ws.terms + b * width;
  int8_t* bidding = ws.bidding + b * width;
  double* st = stats + b * kStats;

  __shared__ double eps, eps_target, lower, cost;
  __shared__ long long rounds, phases;
  __shared__ int unassigned, state;  // state: 0 running, 1 done, 2 out of rounds
  __shared__ bool scaling;
  if (n == 0) {
    if (tid == 0) {
      for (int k = 0; k < kStats; ++k) st[k] = 0.0;
      st[kComplete] = 1.0;
    }
    return;
  }
  for (int64_t j = tid; j < m; j += kThreads) {
    prices[j] = 0.0;
    win_bits[j] = 0;
    win_bidder[j] = LLONG_MAX;
  }
  for (int64_t i = tid; i < n; i += kThreads) bidding[i] = 0;
  __syncthreads();
  dual_terms<P>(bidders, objects, D, n, m, prices, terms);
  __syncthreads();
  if (tid == 0) {  // the scales of emd_cpu.cpp's solve(), summed in the same order
    double nearest = 0.0, diagonal2 = 0.0;
    for (int64_t i = 0; i < n; ++i) nearest += terms[i];
    nearest -= 0.0;  // minus the sum of the (zero) prices, as on the CPU
    for (int d = 0; d < D; ++d) {
      double lo = std::numeric_limits<double>::infinity(), hi = -lo;
      for (int64_t i = 0; i < n; ++i) lo = fmin(lo, double(bidders[i * D + d])), hi = fmax(hi, double(bidders[i * D + d]));
      for (int64_t j = 0; j < m; ++j) lo = fmin(lo, double(objects[j * D + d])), hi = fmax(hi, double(objects[j * D + d]));
      diagonal2 += (hi - lo) * (hi - lo);
    }
    const double largest = P == 2 ? diagonal2 : sqrt(diagonal2);
    eps_target = fmax(rel_tol * nearest / n, 1e-12 * largest + 1e-300);
    scaling = n == m;
    eps = scaling ? fmax(largest / 5.0, eps_target) : eps_target;
    lower = nearest;
    rounds = 0;
    phases = 0;
    state = 0;
  }
  __syncthreads();
  while (state == 0) {
    if (tid == 0) ++phases;
    for (int64_t j = tid; j < m; j += kThreads) owner[j] = -1;
    for (int64_t i = tid; i < n; i += kThreads) assigned[i] = -1;
    __syncthreads();
    while (true) {
      if (tid == 0) unassigned = 0;
      __syncthreads();
      for (int64_t i = tid; i < n; i += kThreads) {
        if (assigned[i] < 0) atomicAdd(&unassigned, 1);
      }
      __syncthreads();
      if (unassigned == 0) break;
      if (tid == 0 && ++rounds > max_rounds) state = 2;
      __syncthreads();
      if (state == 2) break;
      for (int64_t i = warp; i < n; i += kWarps) {  // bids
        if (assigned[i] >= 0) continue;
        const TopTwo top = warp_top_two<P>(bidders + i * D, objects, D, m, prices, lane);
        if (lane == 0) {
          const double neg_inf = -std::numeric_limits<double>::infinity();
          const double increment = top.v2 == neg_inf ? eps : (top.v1 - top.v2) + eps;
          const double price = prices[top.j1] + increment;
          bid_object[i] = top.j1;
          bid_price[i] = price;
          bidding[i] = 1;
          atomicMax(&win_bits[top.j1], ordered_bits(price));
        }
      }
      __syncthreads();
      for (int64_t i = tid; i < n; i += kThreads) {  // among the highest bids, the smallest bidder
        if (bidding[i] && ordered_bits(bid_price[i]) == win_bits[bid_object[i]]) {
          atomicMin(&win_bidder[bid_object[i]], static_cast<long long>(i));
        }
      }
      __syncthreads();
      for (int64_t i = tid; i < n; i += kThreads) {  // winners take their objects
        if (!bidding[i]) continue;
        const int64_t j = bid_object[i];
        if (win_bidder[j] != i) continue;
        const int64_t old = owner[j];
        if (old >= 0) assigned[old] = -1;
        owner[j] = i;
        assigned[i] = j;
        prices[j] = bid_price[i];
      }
      __syncthreads();
      for (int64_t i = tid; i < n; i += kThreads) {
        if (!bidding[i]) continue;
        win_bits[bid_object[i]] = 0;
        win_bidder[bid_object[i]] = LLONG_MAX;
        bidding[i] = 0;
      }
      __syncthreads();
    }
    if (state == 2) break;
    if (tid == 0) {
      cost = 0.0;
      for (int64_t i = 0; i < n; ++i) cost += pair_cost_of<P>(bidders, objects, D, i, assigned[i]);
    }
    __syncthreads();
    const bool last = eps <= eps_target || !scaling;
    if (last || n * eps <= rel_tol * cost) {
      dual_terms<P>(bidders, objects, D, n, m, prices, terms);
      __syncthreads();
      if (tid == 0) {
        double sum_terms = 0.0, sum_prices = 0.0;
        for (int64_t i = 0; i < n; ++i) sum_terms += terms[i];
        for (int64_t j = 0; j < m; ++j) sum_prices += prices[j];
        lower = fmax(lower, sum_terms - sum_prices);
        if (last || cost - lower <= rel_tol * fmax(lower, 0.0)) state = 1;
      }
    }
    __syncthreads();
    if (tid == 0 && state == 0) eps = fmax(eps / 5.0, eps_target);
    __syncthreads();
  }
  if (tid == 0) {
    st[kCost] = cost;
    st[kLowerBound] = fmin(lower, cost);
    st[kEps] = eps;
    st[kRounds] = static_cast<double>(rounds);
    st[kPhases] = static_cast<double>(phases);
    st[kComplete] = state == 2 ? 0.0 : 1.0;
  }
  if (state == 2) return;
  int64_t* row = out + b * N;
  for (int64_t i = tid; i < n; i += kThreads) {
    if (x_bids) {
      row[i] = assigned[i];
    } else {
      row[assigned[i]] = i;  // bidder i is a y point, its object an x point
    }
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> auction_assignment_cuda(const at::Tensor& x_in, const at::Tensor& y_in,
                                                           const at::Tensor& x_lengths, const at::Tensor& y_lengths,
                                                           int64_t p, double rel_tol, int64_t max_rounds) {
  check_auction_args(x_in, y_in, x_lengths, y_lengths, p, rel_tol, max_rounds);
  const c10::cuda::CUDAGuard guard(x_in.device());
  // D < 3 is padded with zeros, exactly as on the CPU (same costs).
  const at::Tensor x = x_in.size(2) < 3 ? as_grid_points(x_in, x_in.scalar_type()) : x_in.contiguous();
  const at::Tensor y = y_in.size(2) < 3 ? as_grid_points(y_in, y_in.scalar_type()) : y_in.contiguous();
  const int64_t B = x.size(0), N = x.size(1), M = y.size(1), width = std::max<int64_t>(std::max(N, M), 1);
  const at::Tensor xl = x_lengths.clamp(0, N).contiguous(), yl = y_lengths.clamp(0, M).contiguous();
  at::Tensor assignment = at::full({B, N}, -1, x_lengths.options());
  at::Tensor stats = at::zeros({B, kStats}, x.options().dtype(at::kDouble));
  if (B == 0) return {assignment, stats};
  auto dbl = x.options().dtype(at::kDouble), lng = x.options().dtype(at::kLong);
  at::Tensor prices = at::empty({B, width}, dbl), bid_price = at::empty({B, width}, dbl);
  at::Tensor terms = at::empty({B, width}, dbl);
  at::Tensor owner = at::empty({B, width}, lng), assigned = at::empty({B, width}, lng);
  at::Tensor bid_object = at::empty({B, width}, lng), win_bits = at::empty({B, width}, lng);
  at::Tensor win_bidder = at::empty({B, width}, lng);
  at::Tensor bidding = at::empty({B, width}, x.options().dtype(at::kChar));
  const Workspace ws{prices.data_ptr<double>(),
                     owner.data_ptr<int64_t>(),
                     assigned.data_ptr<int64_t>(),
                     bid_object.data_ptr<int64_t>(),
                     bid_price.data_ptr<double>(),
                     reinterpret_cast<unsigned long long*>(win_bits.data_ptr<int64_t>()),
                     reinterpret_cast<long long*>(win_bidder.data_ptr<int64_t>()),
                     terms.data_ptr<double>(),
                     bidding.data_ptr<int8_t>()};
  const int D = static_cast<int>(x.size(2));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "auction_assignment_cuda", [&] {
    auto stream = c10::cuda::getCurrentCUDAStream();
    if (p == 1) {
      auction_kernel<1, scalar_t><<<B, kThreads, 0, stream>>>(
          x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), xl.data_ptr<int64_t>(), yl.data_ptr<int64_t>(), N, M, D,
          rel_tol, max_rounds, ws, width, assignment.data_ptr<int64_t>(), stats.data_ptr<double>());
    } else {
      auction_kernel<2, scalar_t><<<B, kThreads, 0, stream>>>(
          x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), xl.data_ptr<int64_t>(), yl.data_ptr<int64_t>(), N, M, D,
          rel_tol, max_rounds, ws, width, assignment.data_ptr<int64_t>(), stats.data_ptr<double>());
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {assignment, stats};
}

TORCH_LIBRARY_IMPL(pointmetrics, CUDA, m) { m.impl("auction_assignment", &auction_assignment_cuda); }

}  // namespace pm
