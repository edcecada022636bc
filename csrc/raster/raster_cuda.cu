// CUDA rasteriser: the CPU's two passes with the same per-pixel arithmetic (raster.h). So that a
// few large triangles do not serialise on one thread, pass 1 splits every triangle's pixel box
// into tiles of kTile x kTile pixels and runs one thread per (triangle, tile): a counting kernel
// sizes each triangle's share, a prefix sum lays the shares out, and each thread finds its
// triangle by binary search. The z-buffer keeps the minimum (depth, face) word by atomicMin, which
// is order-independent, so the result is deterministic and equal to the CPU's.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "raster.h"

namespace pm {

namespace {

constexpr int kThreads = 256;

int64_t blocks_for(int64_t n) { return (n + kThreads - 1) / kThreads; }

template <typename scalar_t>
__global__ void count_tiles(RasterInput<scalar_t> in, int64_t items, int64_t* tiles) {
  const int64_t item = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (item < items) tiles[item] = item_tiles(in, item);
}

struct AtomicKeepMin {
  __device__ void operator()(uint64_t* word, uint64_t key) const {
    atomicMin(reinterpret_cast<unsigned long long*>(word), static_cast<unsigned long long>(key));
  }
};

template <typename scalar_t>
__global__ void draw_tiles(RasterInput<scalar_t> in, int64_t items, const int64_t* __restrict__ end_of,
                           int64_t total, uint64_t* zbuf) {
  const int64_t work = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (work < total) draw_tile(in, end_of, items, work, zbuf, AtomicKeepMin{});
}

template <typename scalar_t>
__global__ void resolve_pixels(RasterInput<scalar_t> in, int64_t count, const uint64_t* __restrict__ zbuf,
                               int64_t* face, scalar_t* bary, scalar_t* depth) {
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p < count) resolve_pixel(in, p, zbuf[p], face, bary, depth);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> rasterize_triangles_cuda(const at::Tensor& clip_in,
                                                                        const at::Tensor& faces_in,
                                                                        const at::Tensor& face_lengths_in,
                                                                        int64_t height, int64_t width) {
  const c10::cuda::CUDAGuard guard(clip_in.device());
  const RasterCall call = prepare_raster(clip_in, faces_in, face_lengths_in, height, width);
  const int64_t B = call.B, C = call.C, F = call.F, pixels = call.pixels();
  const RasterOutput& out = call.out;
  at::Tensor zbuf = at::full({pixels}, -1, call.clip.options().dtype(at::kLong));
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(call.clip.scalar_type(), "rasterize_triangles_cuda", [&] {
    const RasterInput<scalar_t> in = call.input<scalar_t>();
    auto* z = reinterpret_cast<uint64_t*>(zbuf.data_ptr<int64_t>());
    const int64_t items = B * C * F;
    if (items > 0) {
      at::Tensor tiles = at::empty({items}, call.clip.options().dtype(at::kLong));
      count_tiles<scalar_t><<<blocks_for(items), kThreads, 0, stream>>>(in, items, tiles.data_ptr<int64_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      const at::Tensor end_of = tiles.cumsum(0);
      const int64_t total = end_of[items - 1].item<int64_t>();
      if (total > 0) {
        draw_tiles<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(in, items, end_of.data_ptr<int64_t>(),
                                                                          total, z);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    }
    if (pixels > 0) {
      resolve_pixels<scalar_t><<<blocks_for(pixels), kThreads, 0, stream>>>(
          in, pixels, z, out.face.data_ptr<int64_t>(), out.bary.data_ptr<scalar_t>(), out.depth.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {out.face, out.bary, out.depth};
}

TORCH_LIBRARY_IMPL(pointmetrics, CUDA, m) { m.impl("rasterize_triangles", &rasterize_triangles_cuda); }

}  // namespace pm
