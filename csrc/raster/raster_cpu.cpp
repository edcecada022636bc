// CPU rasteriser. Pass 1 runs over triangles in parallel and keeps, per pixel, the minimum
// z-buffer word (depth, face) with an atomic compare-and-swap: the minimum does not depend on the
// order of the updates, so the result is deterministic. Pass 2 runs over pixels and recomputes
// the winning face's barycentric weights and depth with the same functions.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <atomic>

#include "raster.h"

namespace pm {

namespace {

void atomic_min(uint64_t* slot, uint64_t value) {
  std::atomic_ref<uint64_t> ref(*slot);
  uint64_t seen = ref.load(std::memory_order_relaxed);
  while (value < seen && !ref.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
  }
}

template <typename scalar_t>
void draw_faces(const RasterInput<scalar_t>& in, int64_t BC, uint64_t* zbuf) {
  at::parallel_for(0, BC * in.F, 256, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t bc = item / in.F, f = item % in.F;
      ScreenTriangle t;
      if (!setup_face(in, bc, f, t)) continue;
      uint64_t* image = zbuf + bc * in.H * in.W;
      for (int64_t row = t.y0; row <= t.y1; ++row) {
        for (int64_t col = t.x0; col <= t.x1; ++col) {
          double bary[3], depth;
          if (cover_pixel(t, row, col, bary, depth)) atomic_min(image + row * in.W + col, depth_key(depth, f));
        }
      }
    }
  });
}

template <typename scalar_t>
void resolve_pixels(const RasterInput<scalar_t>& in, int64_t BC, const uint64_t* zbuf, int64_t* face,
                    scalar_t* bary, scalar_t* depth) {
  at::parallel_for(0, BC * in.H * in.W, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) resolve_pixel(in, p, zbuf[p], face, bary, depth);
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> rasterize_triangles_cpu(const at::Tensor& clip_in,
                                                                       const at::Tensor& faces_in,
                                                                       const at::Tensor& face_lengths_in,
                                                                       int64_t height, int64_t width) {
  const RasterCall call = prepare_raster(clip_in, faces_in, face_lengths_in, height, width);
  at::Tensor zbuf = at::full({call.pixels()}, -1, call.clip.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES(call.clip.scalar_type(), "rasterize_triangles_cpu", [&] {
    const RasterInput<scalar_t> in = call.input<scalar_t>();
    uint64_t* z = reinterpret_cast<uint64_t*>(zbuf.data_ptr<int64_t>());
    draw_faces(in, call.B * call.C, z);
    resolve_pixels(in, call.B * call.C, z, call.out.face.data_ptr<int64_t>(), call.out.bary.data_ptr<scalar_t>(),
                   call.out.depth.data_ptr<scalar_t>());
  });
  return {call.out.face, call.out.bary, call.out.depth};
}

TORCH_LIBRARY_IMPL(pointmetrics, CPU, m) { m.impl("rasterize_triangles", &rasterize_triangles_cpu); }

}  // namespace pm
