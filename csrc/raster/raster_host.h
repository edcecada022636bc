// Host-side checks and output allocation shared by the CPU and CUDA rasterisers.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <limits>

namespace pm {

inline void check_raster_inputs(const at::Tensor& clip, const at::Tensor& faces, const at::Tensor& face_lengths,
                                int64_t height, int64_t width) {
  TORCH_CHECK(clip.dim() == 4 && clip.size(3) == 4 && at::isFloatingType(clip.scalar_type()),
              "rasterize_triangles: clip must be (B, C, V, 4) floating point");
  TORCH_CHECK(faces.dim() == 3 && faces.size(0) == clip.size(0) && faces.size(2) == 3 &&
                  faces.scalar_type() == at::kLong,
              "rasterize_triangles: faces must be (B, F, 3) int64 with the same B as clip");
  TORCH_CHECK(face_lengths.dim() == 1 && face_lengths.size(0) == clip.size(0) &&
                  face_lengths.scalar_type() == at::kLong,
              "rasterize_triangles: face_lengths must be (B,) int64");
  TORCH_CHECK(faces.device() == clip.device() && face_lengths.device() == clip.device(),
              "rasterize_triangles: clip, faces and face_lengths must be on one device");
  // The z-buffer word keeps the face index in 32 bits, all ones meaning "no face".
  TORCH_CHECK(faces.size(1) < int64_t(std::numeric_limits<uint32_t>::max()),
              "rasterize_triangles: at most 2^32 - 2 faces per mesh");
  TORCH_CHECK(height > 0 && width > 0, "rasterize_triangles: height and width must be positive");
}

struct RasterOutput {
  at::Tensor face;   // (B, C, H, W) int64, -1 where no face is visible
  at::Tensor bary;   // (B, C, H, W, 3), 0 there
  at::Tensor depth;  // (B, C, H, W) NDC depth, +inf there
};

inline RasterOutput allocate_raster_output(const at::Tensor& clip, int64_t height, int64_t width) {
  const int64_t B = clip.size(0), C = clip.size(1);
  return {at::empty({B, C, height, width}, clip.options().dtype(at::kLong)),
          at::empty({B, C, height, width, 3}, clip.options()), at::empty({B, C, height, width}, clip.options())};
}

}  // namespace pm
