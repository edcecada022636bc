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

constexpr int64_t kTile = 8;
constexpr int kThreads = 256;

int64_t blocks_for(int64_t n) { return (n + kThreads - 1) / kThreads; }

PM_HD int64_t tiles_x(const ScreenTriangle& t) { return (t.x1 - t.x0) / kTile + 1; }
PM_HD int64_t tiles_y(const ScreenTriangle& t) { return (t.y1 - t.y0) / kTile + 1; }

template <typename scalar_t>
__global__ void count_tiles(RasterInput<scalar_t> in, int64_t items, int64_t* tiles) {
  const int64_t item = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (item >= items) return;
  ScreenTriangle t;
  tiles[item] = setup_face(in, item / in.F, item % in.F, t) ? tiles_x(t) * tiles_y(t) : 0;
}

template <typename scalar_t>
__global__ void draw_tiles(RasterInput<scalar_t> in, int64_t items, const int64_t* __restrict__ end_of,
                           int64_t total, unsigned long long* zbuf) {
  const int64_t work = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (work >= total) return;
  // The triangle owning this tile: the first item whose running end exceeds `work`.
  int64_t lo = 0, hi = items - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (end_of[mid] > work) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  const int64_t item = lo, bc = item / in.F, f = item % in.F;
  ScreenTriangle t;
  if (!setup_face(in, bc, f, t)) return;
  const int64_t tile = work - (end_of[item] - tiles_x(t) * tiles_y(t));
  const int64_t row0 = t.y0 + (tile / tiles_x(t)) * kTile, col0 = t.x0 + (tile % tiles_x(t)) * kTile;
  unsigned long long* image = zbuf + bc * in.H * in.W;
  for (int64_t row = row0; row <= min(row0 + kTile - 1, t.y1); ++row) {
    for (int64_t col = col0; col <= min(col0 + kTile - 1, t.x1); ++col) {
      double bary[3], depth;
      if (cover_pixel(t, row, col, bary, depth)) {
        atomicMin(image + row * in.W + col, static_cast<unsigned long long>(depth_key(depth, f)));
      }
    }
  }
}

template <typename scalar_t>
__global__ void resolve_pixels(RasterInput<scalar_t> in, int64_t count, const unsigned long long* __restrict__ zbuf,
                               int64_t* face, scalar_t* bary, scalar_t* depth) {
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p < count) resolve_pixel(in, p, zbuf[p], face, bary, depth);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> rasterize_triangles_cuda(const at::Tensor& clip_in,
                                                                        const at::Tensor& faces_in,
                                                                        const at::Tensor& face_lengths_in,
                                                                        int64_t height, int64_t width) {
  check_raster_inputs(clip_in, faces_in, face_lengths_in, height, width);
  const c10::cuda::CUDAGuard guard(clip_in.device());
  const at::Tensor clip = clip_in.contiguous(), faces = faces_in.contiguous();
  const at::Tensor face_lengths = face_lengths_in.contiguous();
  const int64_t B = clip.size(0), C = clip.size(1), F = faces.size(1);
  RasterOutput out = allocate_raster_output(clip, height, width);
  const int64_t pixels = B * C * height * width;
  at::Tensor zbuf = at::full({pixels}, -1, clip.options().dtype(at::kLong));
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(clip.scalar_type(), "rasterize_triangles_cuda", [&] {
    const RasterInput<scalar_t> in{clip.data_ptr<scalar_t>(), faces.data_ptr<int64_t>(),
                                   face_lengths.data_ptr<int64_t>(), C, clip.size(2), F, height, width};
    auto* z = reinterpret_cast<unsigned long long*>(zbuf.data_ptr<int64_t>());
    const int64_t items = B * C * F;
    if (items > 0) {
      at::Tensor tiles = at::empty({items}, clip.options().dtype(at::kLong));
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
