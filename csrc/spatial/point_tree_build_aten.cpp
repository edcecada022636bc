// Device-generic builder of point trees from ATen ops. Mirrors point_tree_build_cpu.cpp: the same
// split positions, axes (first widest, computed in double) and split coordinates; nth_element is
// replaced by a stable sort of each node's points along its axis, one batched sort per level.
#include <limits>

#include "core/morton.h"
#include "point_tree_build.h"

namespace pm {

namespace {

at::Tensor spread_bits_aten(at::Tensor v) {
  v = v.bitwise_and(0x1fffff);
  v = v.bitwise_or(v.bitwise_left_shift(32)).bitwise_and(0x1f00000000ffffLL);
  v = v.bitwise_or(v.bitwise_left_shift(16)).bitwise_and(0x1f0000ff0000ffLL);
  v = v.bitwise_or(v.bitwise_left_shift(8)).bitwise_and(0x100f00f00f00f00fLL);
  v = v.bitwise_or(v.bitwise_left_shift(4)).bitwise_and(0x10c30c30c30c30c3LL);
  v = v.bitwise_or(v.bitwise_left_shift(2)).bitwise_and(0x1249249249249249LL);
  return v;
}

// Morton codes (morton.h) of (B, N, 3) points in per-cloud frames; invalid points get the largest code.
at::Tensor morton_codes(const at::Tensor& points, const at::Tensor& valid, const at::Tensor& frame_lo,
                        const at::Tensor& frame_scale) {
  at::Tensor t = (points.to(at::kDouble) - frame_lo.unsqueeze(1)) * frame_scale.view({-1, 1, 1});
  t = at::where(t >= 0, t, at::zeros({}, t.options()));
  t = at::minimum(t, at::full({}, static_cast<double>(kMortonMax), t.options())).floor().to(at::kLong);
  const at::Tensor code = spread_bits_aten(t.select(2, 0))
                              .bitwise_or(spread_bits_aten(t.select(2, 1)).bitwise_left_shift(1))
                              .bitwise_or(spread_bits_aten(t.select(2, 2)).bitwise_left_shift(2));
  return at::where(valid, code, at::full({}, std::numeric_limits<int64_t>::max(), code.options()));
}

at::Tensor valid_mask(const at::Tensor& lengths, int64_t n) {
  return at::arange(n, lengths.options()).unsqueeze(0) < lengths.unsqueeze(1);
}

}  // namespace

BatchTree build_point_tree_aten(const at::Tensor& points, const at::Tensor& lengths) {
  const int64_t B = points.size(0), M = points.size(1);
  BatchTree t;
  t.leaves = tree_leaves(M);
  t.depth = tree_depth(t.leaves);
  const int64_t P = t.leaves, S = P * kLeafSize;
  const double inf = std::numeric_limits<double>::infinity();
  const at::Tensor valid = valid_mask(lengths, S);  // (B, S); valid points always fill a prefix
  const at::Tensor valid3 = valid.unsqueeze(2);
  t.counts = lengths;

  // Working copy padded to S points; invalid points at +inf sort to the end of every node.
  at::Tensor work = at::full({B, S, 3}, inf, points.options());
  work.narrow(1, 0, M).copy_(at::where(valid3.narrow(1, 0, M), points, at::full({}, inf, points.options())));
  at::Tensor perm = at::arange(S, lengths.options()).unsqueeze(0).expand({B, S}).contiguous();

  const at::Tensor wd = work.to(at::kDouble);
  const at::Tensor lo_all = at::where(valid3, wd, at::full({}, inf, wd.options())).amin(1);
  const at::Tensor hi_all = at::where(valid3, wd, at::full({}, -inf, wd.options())).amax(1);
  const at::Tensor ext_all = (hi_all - lo_all).amax(1);
  t.frame_scale = at::where(ext_all.gt(0).logical_and(ext_all.isfinite()),
                            static_cast<double>(kMortonMax) / ext_all, at::zeros({}, ext_all.options()));
  t.frame_lo = at::where(lengths.gt(0).unsqueeze(1), lo_all, at::zeros({}, lo_all.options()));

  t.split_axis = at::zeros({B, P}, lengths.options().dtype(at::kChar));
  t.split_val = at::full({B, P}, inf, points.options());
  for (int64_t width = P; width > 1; width /= 2) {
    const int64_t nodes = P / width, seg = width * kLeafSize;
    const at::Tensor w = work.view({B, nodes, seg, 3});
    const at::Tensor m = valid.view({B, nodes, seg, 1});
    const at::Tensor w64 = w.to(at::kDouble);
    const at::Tensor ext = at::where(m, w64, at::full({}, -inf, w64.options())).amax(2) -
                           at::where(m, w64, at::full({}, inf, w64.options())).amin(2);  // (B, nodes, 3)
    const at::Tensor axis = at::nan_to_num(ext, 0.0, 0.0, -1.0).argmax(2);                  // first widest
    // Sort by (coordinate, original index), as the CPU's nth_element does: first by index, then
    // stably by coordinate, so tied points split the same way on every device.
    const at::Tensor by_index = std::get<1>(perm.view({B, nodes, seg}).sort(/*stable=*/true, /*dim=*/2, /*descending=*/false));
    const at::Tensor w_i = w.gather(2, by_index.unsqueeze(3).expand({B, nodes, seg, 3}));
    const at::Tensor perm_i = perm.view({B, nodes, seg}).gather(2, by_index);
    const at::Tensor key = w_i.gather(3, axis.view({B, nodes, 1, 1}).expand({B, nodes, seg, 1})).squeeze(3);
    const auto sorted = key.sort(/*stable=*/true, /*dim=*/2, /*descending=*/false);
    const at::Tensor order = std::get<1>(sorted);
    work = w_i.gather(2, order.unsqueeze(3).expand({B, nodes, seg, 3})).view({B, S, 3});
    perm = perm_i.gather(2, order).view({B, S});
    // Nodes whose right half holds no valid point keep axis 0 and split +inf, as on the CPU.
    const at::Tensor split = std::get<0>(sorted).select(2, seg / 2);  // (B, nodes)
    const at::Tensor right_empty = split.isinf();
    t.split_val.narrow(1, nodes, nodes).copy_(split);
    t.split_axis.narrow(1, nodes, nodes).copy_(at::where(right_empty, at::zeros_like(axis), axis).to(at::kChar));
  }
  {  // canonical slot order: each leaf by original index, as on the CPU (padding, whose perm is
     // at least the cloud's length, stays at the end)
    const at::Tensor by_index = std::get<1>(perm.view({B, P, kLeafSize}).sort(/*stable=*/true, /*dim=*/2, /*descending=*/false));
    work = work.view({B, P, kLeafSize, 3}).gather(2, by_index.unsqueeze(3).expand({B, P, kLeafSize, 3})).view({B, S, 3});
    perm = perm.view({B, P, kLeafSize}).gather(2, by_index).view({B, S});
  }
  t.pts = at::where(valid3, work, at::zeros({}, work.options())).contiguous();
  t.idx = at::where(valid, perm, at::full({}, -1, perm.options())).contiguous();

  // Leaf boxes from their valid points, then each level from the one below.
  const at::Tensor in_leaf = valid.view({B, P, kLeafSize, 1});
  const at::Tensor leaf_pts = t.pts.view({B, P, kLeafSize, 3});
  t.lo = at::full({B, 2 * P, 3}, inf, points.options());
  t.hi = at::full({B, 2 * P, 3}, -inf, points.options());
  t.lo.narrow(1, P, P).copy_(at::where(in_leaf, leaf_pts, at::full({}, inf, points.options())).amin(2));
  t.hi.narrow(1, P, P).copy_(at::where(in_leaf, leaf_pts, at::full({}, -inf, points.options())).amax(2));
  for (int64_t level = P / 2; level >= 1; level /= 2) {
    t.lo.narrow(1, level, level).copy_(t.lo.narrow(1, 2 * level, 2 * level).view({B, level, 2, 3}).amin(2));
    t.hi.narrow(1, level, level).copy_(t.hi.narrow(1, 2 * level, 2 * level).view({B, level, 2, 3}).amax(2));
  }
  return t;
}

at::Tensor order_queries_aten(const at::Tensor& queries, const at::Tensor& lengths, const BatchTree& tree) {
  return morton_order_aten(queries, lengths, tree.frame_lo.to(queries.device()), tree.frame_scale.to(queries.device()));
}

at::Tensor morton_order_aten(const at::Tensor& queries, const at::Tensor& lengths, const at::Tensor& frame_lo,
                             const at::Tensor& frame_scale) {
  const int64_t N = queries.size(1);
  const at::Tensor valid = valid_mask(lengths, N);
  const at::Tensor sorted = std::get<1>(
      morton_codes(queries, valid, frame_lo, frame_scale).sort(/*stable=*/true, /*dim=*/1, /*descending=*/false));
  // Valid queries sort first in each row (invalid ones carry the largest code).
  const at::Tensor flat = sorted + at::arange(queries.size(0), lengths.options()).unsqueeze(1) * N;
  return flat.masked_select(valid);
}

}  // namespace pm
