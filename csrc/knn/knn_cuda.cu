// CUDA implementation of the knn op:
//   D > 3, or few pairs of points: brute force, targets staged through shared memory in tiles;
//   otherwise knn.h's run_device_plan, the CPU's plan with one decision per batch: a grid per
//   cloud (spatial/grid_build_aten.cpp), searched one thread per query in cell order; if some
//   cloud's grid is crowded, a kd-tree per cloud (spatial/point_tree_build_aten.cpp) instead;
//   queries far from the data, which the grid answers only by a slow fallback, are deferred to a
//   second pass, by a kd-tree when there are many of them. testing.cpp runs the same plan on the
//   CPU (torch.ops.pointmetrics_testing.knn_portable), so CI without a GPU tests it.
// No float atomics and no N x M buffers; ties are broken by index, so results do not depend on
// thread scheduling.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAFunctions.h>
#include <cuda_runtime.h>
#include <torch/library.h>

#include <limits>

#include "core/lengths.h"
#include "spatial/grid_build.h"
#include "spatial/point_tree_build.h"
#include "knn.h"

namespace pm {

namespace {

constexpr int kThreads = 256;
static_assert(kThreads == kBruteQueriesPerBlock, "knn.h's brute_force_wins counts blocks of kThreads queries");
constexpr int kLocalK = 16;                    // K up to this keeps the running top-K in local memory
constexpr int kSharedBytes = 48 * 1024;

// Runs `search(top)` with the right running top-K (registers for K = 1, local memory for small K,
// the output row itself otherwise) and, if `write`, stores the row in full: neighbours, then
// padding (dist 0, index -1). Returns what `search` returns (false: deferred, row not final).
template <typename scalar_t, bool LOCAL, typename Search>
__device__ bool search_row(scalar_t* out_d, int64_t* out_i, int64_t row, int K, bool write, Search search) {
  const scalar_t inf = std::numeric_limits<scalar_t>::infinity();
  if (K == 1) {
    Top1<scalar_t> top{0, -1, 0, inf};
    const bool done = search(top);
    if (write) {
      out_d[row] = done && top.count ? top.d : scalar_t(0);
      out_i[row] = done && top.count ? top.i : -1;
    }
    return done;
  }
  scalar_t ld[LOCAL ? kLocalK : 1];
  int64_t li[LOCAL ? kLocalK : 1];
  TopK<scalar_t> top{LOCAL ? ld : out_d + row, LOCAL ? li : out_i + row, K, 0, inf};
  const bool done = search(top);
  if (write) {
    for (int k = 0; k < K; ++k) {
      const bool found = done && k < top.count;
      out_d[row + k] = found ? top.d[k] : scalar_t(0);
      out_i[row + k] = found ? top.i[k] : -1;
    }
  }
  return done;
}

// FALLBACK is a template parameter so that the first pass, which defers the queries the 27 cells do
// not settle, holds no fallback stack (fallback_search's boxes) per thread.
template <typename scalar_t, int NORM, bool LOCAL, bool FALLBACK>
__global__ void grid_knn_kernel(const scalar_t* __restrict__ xq, int64_t N, const int64_t* __restrict__ order,
                                int64_t total, const GridParams* __restrict__ params, const scalar_t* pts,
                                const int64_t* pidx, const int32_t* cell_start, const int32_t* sat, int K,
                                uint8_t* deferred, scalar_t* out_d, int64_t* out_i) {
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (t >= total) return;
  const int64_t flat = order[t];
  const GridParams p = params[flat / N];
  const GridView<scalar_t> g{p, pts, pidx, cell_start + p.cell_offset, sat + p.sat_offset};
  const scalar_t q[3] = {xq[flat * 3], xq[flat * 3 + 1], xq[flat * 3 + 2]};
  const bool done = search_row<scalar_t, LOCAL>(out_d, out_i, flat * K, K, true, [&](auto& top) {
    return grid_knn<scalar_t, NORM>(g, q, top, FALLBACK);
  });
  if (!done) deferred[t] = 1;
}

template <typename scalar_t, int NORM, bool LOCAL>
__global__ void tree_knn_kernel(const scalar_t* __restrict__ xq, int64_t N, const int64_t* __restrict__ order,
                                int64_t total, const scalar_t* pts, const int64_t* pidx, const scalar_t* lo,
                                const scalar_t* hi, const int8_t* split_axis, const scalar_t* split_val,
                                const int64_t* counts, int64_t leaves, int depth, int K, scalar_t* out_d,
                                int64_t* out_i) {
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (t >= total) return;
  const int64_t flat = order[t], b = flat / N;
  const int64_t S = leaves * kLeafSize, nodes = 2 * leaves;
  const PointTreeView<scalar_t> tree{pts + b * S * 3,    pidx + b * S, lo + b * nodes * 3, hi + b * nodes * 3,
                                     split_axis + b * leaves, split_val + b * leaves, leaves, depth, counts[b]};
  const scalar_t q[3] = {xq[flat * 3], xq[flat * 3 + 1], xq[flat * 3 + 2]};
  search_row<scalar_t, LOCAL>(out_d, out_i, flat * K, K, true, [&](auto& top) {
    tree_knn<scalar_t, NORM>(tree, q, top);
    return true;
  });
}

// One block handles kThreads queries of one cloud; DIM == 3 keeps the query in registers,
// DIM == 0 reads D coordinates from global memory.
template <typename scalar_t, int NORM, bool LOCAL, int DIM>
__global__ void brute_knn_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ y,
                                 const int64_t* __restrict__ x_len, const int64_t* __restrict__ y_len, int64_t N,
                                 int64_t M, int D, int K, int tile, int64_t blocks_per_cloud, scalar_t* out_d,
                                 int64_t* out_i) {
  extern __shared__ unsigned char shared_raw[];
  scalar_t* staged = reinterpret_cast<scalar_t*>(shared_raw);
  const int64_t b = blockIdx.x / blocks_per_cloud;
  const int64_t first = (blockIdx.x % blocks_per_cloud) * kThreads;
  const int64_t i = first + threadIdx.x;
  const int64_t nx = x_len[b], ny = y_len[b];
  if (first >= nx) return;  // uniform across the block
  const bool active = i < nx;
  const int dim = DIM == 3 ? 3 : D;
  scalar_t qreg[3] = {0, 0, 0};
  const scalar_t* q = x + (b * N + (active ? i : first)) * dim;
  if (DIM == 3) {
    qreg[0] = q[0];
    qreg[1] = q[1];
    qreg[2] = q[2];
    q = qreg;
  }
  // Every thread of the block stages tiles, active or not, so all reach each __syncthreads.
  search_row<scalar_t, LOCAL>(out_d, out_i, (b * N + (active ? i : first)) * K, K, active, [&](auto& top) {
    for (int64_t start = 0; start < ny; start += tile) {
      const int count = static_cast<int>(ny - start < tile ? ny - start : tile);
      __syncthreads();
      const scalar_t* src = y + (b * M + start) * dim;
      for (int e = threadIdx.x; e < count * dim; e += blockDim.x) staged[e] = src[e];
      __syncthreads();
      if (active) {
        for (int j = 0; j < count; ++j) top.consider(point_distance<NORM>(q, staged + j * dim, dim), start + j);
      }
    }
    return true;
  });
}

int64_t blocks_for(int64_t n) { return (n + kThreads - 1) / kThreads; }

template <typename scalar_t, int NORM, bool LOCAL>
void launch_brute(const at::Tensor& x, const at::Tensor& y, const at::Tensor& xl, const at::Tensor& yl, int64_t K,
                  at::Tensor& dists, at::Tensor& idx) {
  const int64_t B = x.size(0), N = x.size(1), M = y.size(1), D = x.size(2);
  const int64_t bytes_per_point = D * static_cast<int64_t>(sizeof(scalar_t));
  TORCH_CHECK(bytes_per_point <= kSharedBytes, "knn: point dimension too large for the CUDA kernel");
  const int tile = static_cast<int>(std::min<int64_t>(1024, kSharedBytes / bytes_per_point));
  const int64_t blocks_per_cloud = std::max<int64_t>(1, blocks_for(N));
  if (B * N == 0) return;
  const size_t shared = static_cast<size_t>(tile) * bytes_per_point;
  auto stream = c10::cuda::getCurrentCUDAStream();
  if (D == 3) {
    brute_knn_kernel<scalar_t, NORM, LOCAL, 3><<<B * blocks_per_cloud, kThreads, shared, stream>>>(
        x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), xl.data_ptr<int64_t>(), yl.data_ptr<int64_t>(), N, M, 3,
        static_cast<int>(K), tile, blocks_per_cloud, dists.data_ptr<scalar_t>(), idx.data_ptr<int64_t>());
  } else {
    brute_knn_kernel<scalar_t, NORM, LOCAL, 0><<<B * blocks_per_cloud, kThreads, shared, stream>>>(
        x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), xl.data_ptr<int64_t>(), yl.data_ptr<int64_t>(), N, M,
        static_cast<int>(D), static_cast<int>(K), tile, blocks_per_cloud, dists.data_ptr<scalar_t>(),
        idx.data_ptr<int64_t>());
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t, int NORM, bool LOCAL>
void launch_grid(const at::Tensor& xq, const BatchGrid& grid, const at::Tensor& order, int64_t K, bool fallback,
                 at::Tensor& deferred, at::Tensor& dists, at::Tensor& idx) {
  const int64_t total = order.numel();
  if (total == 0) return;
  auto kernel = fallback ? grid_knn_kernel<scalar_t, NORM, LOCAL, true> : grid_knn_kernel<scalar_t, NORM, LOCAL, false>;
  kernel<<<blocks_for(total), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      xq.data_ptr<scalar_t>(), xq.size(1), order.data_ptr<int64_t>(), total,
      reinterpret_cast<const GridParams*>(grid.params_bytes.data_ptr<uint8_t>()), grid.pts.data_ptr<scalar_t>(),
      grid.idx.data_ptr<int64_t>(), grid.cell_start.data_ptr<int32_t>(), grid.sat.data_ptr<int32_t>(),
      static_cast<int>(K), deferred.data_ptr<uint8_t>(), dists.data_ptr<scalar_t>(), idx.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t, int NORM, bool LOCAL>
void launch_tree(const at::Tensor& xq, const BatchTree& tree, const at::Tensor& order, int64_t K, at::Tensor& dists,
                 at::Tensor& idx) {
  const int64_t total = order.numel();
  if (total == 0) return;
  tree_knn_kernel<scalar_t, NORM, LOCAL><<<blocks_for(total), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      xq.data_ptr<scalar_t>(), xq.size(1), order.data_ptr<int64_t>(), total, tree.pts.data_ptr<scalar_t>(),
      tree.idx.data_ptr<int64_t>(), tree.lo.data_ptr<scalar_t>(), tree.hi.data_ptr<scalar_t>(),
      tree.split_axis.data_ptr<int8_t>(), tree.split_val.data_ptr<scalar_t>(), tree.counts.data_ptr<int64_t>(),
      tree.leaves, tree.depth, static_cast<int>(K), dists.data_ptr<scalar_t>(), idx.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// The two passes of knn.h's run_device_plan, as kernel launches.
template <typename scalar_t, int NORM, bool LOCAL>
struct CudaSearch {
  const at::Tensor& xq;
  int64_t K;
  at::Tensor& dists;
  at::Tensor& idx;

  at::Tensor grid(const BatchGrid& g, const at::Tensor& order, bool fallback) {
    at::Tensor deferred = at::zeros({order.numel()}, order.options().dtype(at::kByte));
    launch_grid<scalar_t, NORM, LOCAL>(xq, g, order, K, fallback, deferred, dists, idx);
    if (fallback) return order.new_empty({0});  // nothing is deferred: no synchronisation
    return order.masked_select(deferred.to(at::kBool)).contiguous();
  }

  void tree(const BatchTree& t, const at::Tensor& order) {
    launch_tree<scalar_t, NORM, LOCAL>(xq, t, order, K, dists, idx);
  }
};

template <typename scalar_t, int NORM, bool LOCAL>
void knn_cuda_impl(const at::Tensor& x, const at::Tensor& y, const at::Tensor& xl, const at::Tensor& yl, int64_t K,
                   at::Tensor& dists, at::Tensor& idx) {
  const int64_t N = x.size(1), M = y.size(1), D = x.size(2);
  int multiprocessors = 1;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, c10::cuda::current_device()));
  if (D > 3 || brute_force_wins(x.size(0), N, M, multiprocessors)) {
    check_lengths_pair(xl, N, "x_lengths", yl, M, "y_lengths", "knn");  // the one synchronisation
    if (D > 3) {
      launch_brute<scalar_t, NORM, LOCAL>(x, y, xl, yl, K, dists, idx);
    } else {
      launch_brute<scalar_t, NORM, LOCAL>(as_3d_points(x, x.scalar_type()), as_3d_points(y, y.scalar_type()), xl, yl,
                                          K, dists, idx);
    }
  } else {
    const at::Tensor xq = as_3d_points(x, x.scalar_type()), yq = as_3d_points(y, y.scalar_type());
    CudaSearch<scalar_t, NORM, LOCAL> search{xq, K, dists, idx};
    run_device_plan(xq, yq, xl, yl, K, search);
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> knn_cuda(const at::Tensor& x_in, const at::Tensor& y_in,
                                            const at::Tensor& x_lengths, const at::Tensor& y_lengths, int64_t K,
                                            int64_t norm) {
  const at::ScalarType dtype = check_knn_args(x_in, y_in, x_lengths, y_lengths, K, norm);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.to(dtype).contiguous();
  const at::Tensor y = y_in.to(dtype).contiguous();
  // Out-of-range lengths are rejected in Python already; direct op calls are checked where the
  // lengths are first read back (the brute-force pass here, the grid plan in knn.h).
  const at::Tensor xl = x_lengths.contiguous(), yl = y_lengths.contiguous();
  at::Tensor dists, idx;
  std::tie(dists, idx) = empty_knn_result(x, K);
  AT_DISPATCH_FLOATING_TYPES(dtype, "knn_cuda", [&] {
    const bool local = K <= kLocalK;
    if (norm == 2) {
      local ? knn_cuda_impl<scalar_t, 2, true>(x, y, xl, yl, K, dists, idx)
            : knn_cuda_impl<scalar_t, 2, false>(x, y, xl, yl, K, dists, idx);
    } else {
      local ? knn_cuda_impl<scalar_t, 1, true>(x, y, xl, yl, K, dists, idx)
            : knn_cuda_impl<scalar_t, 1, false>(x, y, xl, yl, K, dists, idx);
    }
  });
  return {dists, idx};
}

TORCH_LIBRARY_IMPL(pointmetrics, CUDA, m) { m.impl("knn", &knn_cuda); }

}  // namespace pm
