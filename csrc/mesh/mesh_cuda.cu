// CUDA implementations of the mesh ops (see mesh_cpu.cpp): one thread per query, queries in
// Morton order of each mesh's box so that neighbouring threads walk the same nodes.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <limits>

#include "core/lengths.h"
#include "core/morton.h"
#include "spatial/point_tree_build.h"
#include "mesh.h"
#include "mesh_tree.h"

namespace pm {

namespace {

constexpr int kThreads = 128;

template <typename scalar_t>
__device__ TriangleTreeView<scalar_t> tree_view(const scalar_t* tris, const int64_t* face, const scalar_t* lo,
                                                const scalar_t* hi, int64_t S, int64_t b, int64_t n) {
  const int64_t leaves = S / kLeafSize;
  return TriangleTreeView<scalar_t>{tris + b * S * 9, face + b * S, lo + b * 2 * leaves * 3, hi + b * 2 * leaves * 3,
                                    leaves, n};
}

template <typename scalar_t>
__global__ void triangle_frames_kernel(const scalar_t* __restrict__ tris, int64_t B, int64_t S, int64_t faces,
                                       const int64_t* face_lengths, TriangleFrame* frames) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= B * faces) return;
  const int64_t b = i / faces, s = i % faces;
  const scalar_t* c = tris + 9 * (b * S + s);
  frames[i] = s < face_lengths[b] ? make_frame(vec3(c), vec3(c + 3), vec3(c + 6)) : TriangleFrame{};
}

template <typename scalar_t>
__global__ void closest_triangle_kernel(const scalar_t* __restrict__ points, int64_t N, const int64_t* order,
                                        int64_t total, const scalar_t* tris, const int64_t* face, const scalar_t* lo,
                                        const scalar_t* hi, const int64_t* face_lengths, int64_t S,
                                        const TriangleFrame* frames, int64_t F, const scalar_t* slot_boxes,
                                        scalar_t* dist2, int64_t* out_face, scalar_t* bary, scalar_t* closest) {
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (t >= total) return;
  const int64_t flat = order[t], b = flat / N;
  TriangleTreeView<scalar_t> view = tree_view(tris, face, lo, hi, S, b, face_lengths[b]);
  view.frames = frames + b * F;
  view.slot_boxes = slot_boxes + b * (S / 4) * kBox4;
  const Vec3 p = vec3(points + 3 * flat);
  ClosestTriangle best = start_closest(view, p);
  closest_triangle(view, p, best);
  if (best.face < 0) return;
  write_closest(view, best, flat, dist2, out_face, bary, closest);
}

template <typename scalar_t>
__global__ void winding_number_kernel(const scalar_t* __restrict__ points, int64_t N, const int64_t* order,
                                      int64_t total, const scalar_t* tris, const int64_t* face, const scalar_t* lo,
                                      const scalar_t* hi, const int64_t* face_lengths, int64_t S,
                                      const double* centre, const double* normal_sum, const double* moment,
                                      const double* radius, double beta, scalar_t* out) {
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (t >= total) return;
  const int64_t flat = order[t], b = flat / N, nodes = 2 * (S / kLeafSize);
  const WindingMoments m{centre + b * nodes * 3, normal_sum + b * nodes * 3, moment + b * nodes * 9,
                         radius + b * nodes};
  out[flat] = static_cast<scalar_t>(
      winding_number(tree_view(tris, face, lo, hi, S, b, face_lengths[b]), m, vec3(points + 3 * flat), beta));
}

// Queries in Morton order of each mesh's root box (node 1).
at::Tensor query_order(const at::Tensor& points, const at::Tensor& point_lengths, const at::Tensor& lo,
                       const at::Tensor& hi) {
  const at::Tensor rlo = lo.select(1, 1).to(at::kDouble), rhi = hi.select(1, 1).to(at::kDouble);
  const at::Tensor frame_lo = at::where(rlo.isfinite(), rlo, at::zeros({}, rlo.options()));
  const at::Tensor ext = (rhi - rlo).amax(1);
  const at::Tensor scale = at::where(ext.gt(0).logical_and(ext.isfinite()), static_cast<double>(kMortonMax) / ext,
                                     at::zeros({}, ext.options()));
  return morton_order_aten(points, point_lengths, frame_lo, scale).contiguous();
}

int64_t blocks_for(int64_t n) { return (n + kThreads - 1) / kThreads; }

}  // namespace

at::Tensor triangle_frames_cuda(const at::Tensor& tris_in, const at::Tensor& face_lengths, int64_t faces) {
  check_frames_args(tris_in, face_lengths, faces);
  const c10::cuda::CUDAGuard guard(tris_in.device());
  const at::Tensor tris = tris_in.contiguous(), fl = checked_lengths(face_lengths, faces, "triangle_frames", "face_lengths");
  const int64_t B = tris.size(0), S = tris.size(1);
  at::Tensor frames = at::empty({B, faces, kFrameBytes}, tris.options().dtype(at::kByte));
  if (B * faces == 0) return frames;
  AT_DISPATCH_FLOATING_TYPES(tris.scalar_type(), "triangle_frames_cuda", [&] {
    triangle_frames_kernel<scalar_t><<<blocks_for(B * faces), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        tris.data_ptr<scalar_t>(), B, S, faces, fl.data_ptr<int64_t>(),
        reinterpret_cast<TriangleFrame*>(frames.data_ptr<uint8_t>()));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return frames;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> closest_triangle_cuda(
    const at::Tensor& points_in, const at::Tensor& point_lengths, const at::Tensor& tris_in, const at::Tensor& face,
    const at::Tensor& lo, const at::Tensor& hi, const at::Tensor& face_lengths, const at::Tensor& frames_in,
    const at::Tensor& slot_boxes_in, const at::Tensor& quads) {
  check_mesh_tree_args(points_in, point_lengths, tris_in, face, lo, hi, face_lengths);
  check_closest_args(tris_in, frames_in, slot_boxes_in, quads);  // quads: only the CPU search reads them
  const c10::cuda::CUDAGuard guard(points_in.device());
  const at::Tensor points = points_in.contiguous(), tris = tris_in.contiguous();
  const at::Tensor frames = frames_in.contiguous(), slot_boxes = slot_boxes_in.contiguous();
  const int64_t B = points.size(0), N = points.size(1), S = tris.size(1), F = frames.size(1);
  const at::Tensor pl = checked_lengths(point_lengths, N, "closest_triangle", "point_lengths"),
                   fl = checked_lengths(face_lengths, F, "closest_triangle", "face_lengths");
  at::Tensor dist2 = at::zeros({B, N}, points.options());
  at::Tensor out_face = at::full({B, N}, -1, face.options());
  at::Tensor bary = at::zeros({B, N, 3}, points.options());
  at::Tensor closest = at::zeros({B, N, 3}, points.options());
  const at::Tensor order = query_order(points, pl, lo, hi);
  const int64_t total = order.numel();
  if (total == 0) return {dist2, out_face, bary, closest};
  const at::Tensor facec = face.contiguous(), loc = lo.contiguous(), hic = hi.contiguous();
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "closest_triangle_cuda", [&] {
    auto stream = c10::cuda::getCurrentCUDAStream();
    closest_triangle_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
        points.data_ptr<scalar_t>(), N, order.data_ptr<int64_t>(), total, tris.data_ptr<scalar_t>(),
        facec.data_ptr<int64_t>(), loc.data_ptr<scalar_t>(), hic.data_ptr<scalar_t>(), fl.data_ptr<int64_t>(), S,
        reinterpret_cast<const TriangleFrame*>(frames.data_ptr<uint8_t>()), F, slot_boxes.data_ptr<scalar_t>(),
        dist2.data_ptr<scalar_t>(), out_face.data_ptr<int64_t>(), bary.data_ptr<scalar_t>(),
        closest.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {dist2, out_face, bary, closest};
}

at::Tensor winding_number_cuda(const at::Tensor& points_in, const at::Tensor& point_lengths, const at::Tensor& tris_in,
                               const at::Tensor& face, const at::Tensor& lo, const at::Tensor& hi,
                               const at::Tensor& face_lengths, const at::Tensor& centre, const at::Tensor& normal_sum,
                               const at::Tensor& moment, const at::Tensor& radius, double beta) {
  check_mesh_tree_args(points_in, point_lengths, tris_in, face, lo, hi, face_lengths);
  check_winding_args(lo, centre, normal_sum, moment, radius, beta);
  const c10::cuda::CUDAGuard guard(points_in.device());
  const at::Tensor points = points_in.contiguous(), tris = tris_in.contiguous();
  const int64_t B = points.size(0), N = points.size(1), S = tris.size(1);
  const at::Tensor pl = checked_lengths(point_lengths, N, "winding_number", "point_lengths"),
                   fl = checked_lengths(face_lengths, S, "winding_number", "face_lengths");
  at::Tensor out = at::zeros({B, N}, points.options());
  const at::Tensor order = query_order(points, pl, lo, hi);
  const int64_t total = order.numel();
  if (total == 0) return out;
  const at::Tensor facec = face.contiguous(), loc = lo.contiguous(), hic = hi.contiguous();
  const at::Tensor c = centre.contiguous(), ns = normal_sum.contiguous(), mo = moment.contiguous(),
                   r = radius.contiguous();
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "winding_number_cuda", [&] {
    winding_number_kernel<scalar_t><<<blocks_for(total), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        points.data_ptr<scalar_t>(), N, order.data_ptr<int64_t>(), total, tris.data_ptr<scalar_t>(),
        facec.data_ptr<int64_t>(), loc.data_ptr<scalar_t>(), hic.data_ptr<scalar_t>(), fl.data_ptr<int64_t>(), S,
        c.data_ptr<double>(), ns.data_ptr<double>(), mo.data_ptr<double>(), r.data_ptr<double>(), beta,
        out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

TORCH_LIBRARY_IMPL(pointmetrics, CUDA, m) {
  m.impl("triangle_frames", &triangle_frames_cuda);
  m.impl("closest_triangle", &closest_triangle_cuda);
  m.impl("winding_number", &winding_number_cuda);
}

}  // namespace pm
