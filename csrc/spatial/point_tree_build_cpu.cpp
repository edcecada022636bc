// CPU builder of point trees: each node's median found through a histogram of its coordinates and
// nth_element over one bucket (select_rank), level by level, then bottom-up boxes.
// Query order: Morton codes sorted with a stable LSD radix sort.
#include <ATen/Parallel.h>

#include <algorithm>
#include <limits>

#include "core/morton.h"
#include "core/parallel.h"
#include "point_tree_build.h"

namespace pm {

// Stable sort of `a` by key(x): LSD radix with 11-bit digits over key bits [first_bit, end_bit).
// Each pass is parallel: every thread counts the digits of its own slice of the array, and a prefix
// sum over (digit, thread) gives each thread where its elements go, in the same order as a serial
// pass.
template <typename T, typename Key>
void radix_sort(std::vector<T>& a, int first_bit, int end_bit, const Key& key) {
  const int64_t n = static_cast<int64_t>(a.size());
  constexpr int kBits = 11, kBuckets = 1 << kBits;
  const int64_t slices = n < (1 << 15) ? 1 : at::get_num_threads();
  std::vector<T> tmp(n);
  std::vector<int64_t> count(slices * kBuckets);
  auto slice_range = [&](int64_t t) { return std::pair<int64_t, int64_t>{t * n / slices, (t + 1) * n / slices}; };
  for (int shift = first_bit; shift < end_bit; shift += kBits) {
    auto digit = [&](const T& x) { return static_cast<int64_t>((key(x) >> shift) & (kBuckets - 1)); };
    std::fill(count.begin(), count.end(), 0);
    at::parallel_for(0, slices, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const auto [begin, end] = slice_range(t);
        for (int64_t i = begin; i < end; ++i) ++count[t * kBuckets + digit(a[i])];
      }
    });
    int64_t running = 0;
    for (int d = 0; d < kBuckets; ++d) {
      for (int64_t t = 0; t < slices; ++t) {
        const int64_t c = count[t * kBuckets + d];
        count[t * kBuckets + d] = running;
        running += c;
      }
    }
    at::parallel_for(0, slices, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const auto [begin, end] = slice_range(t);
        for (int64_t i = begin; i < end; ++i) tmp[count[t * kBuckets + digit(a[i])]++] = a[i];
      }
    });
    a.swap(tmp);
  }
}

void sort_by_code(const std::vector<int64_t>& codes, int64_t offset, int64_t* out) {
  const int64_t n = static_cast<int64_t>(codes.size());
  uint64_t all = 0;
  for (int64_t c : codes) all |= static_cast<uint64_t>(c);
  const int bits = all == 0 ? 0 : 64 - __builtin_clzll(all);
  if (bits <= 32 && n <= (int64_t(1) << 32)) {
    // (code, index) packed in one word: each pass moves 8 bytes per element instead of 16. The
    // index breaks ties as the stable sort would.
    std::vector<uint64_t> packed(n);
    at::parallel_for(0, n, 1 << 14, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) packed[i] = static_cast<uint64_t>(codes[i]) << 32 | static_cast<uint64_t>(i);
    });
    radix_sort(packed, 32, 32 + bits, [](uint64_t x) { return x; });
    at::parallel_for(0, n, 1 << 14, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) out[i] = offset + static_cast<int64_t>(packed[i] & 0xffffffffu);
    });
    return;
  }
  struct Coded {
    uint64_t code;
    int64_t index;
  };
  std::vector<Coded> coded(n);
  at::parallel_for(0, n, 1 << 14, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) coded[i] = Coded{static_cast<uint64_t>(codes[i]), i};
  });
  radix_sort(coded, 0, bits, [](const Coded& x) { return x.code; });
  at::parallel_for(0, n, 1 << 14, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) out[i] = offset + coded[i].index;
  });
}

int64_t tree_leaves(int64_t m) {
  int64_t leaves = 1;
  while (leaves * kLeafSize < m) leaves *= 2;
  return leaves;
}

int tree_depth(int64_t leaves) {
  int depth = 0;
  while ((int64_t(1) << depth) < leaves) ++depth;
  return depth;
}

namespace {

template <typename scalar_t>
struct Record {
  scalar_t c[3];
  int64_t i;
};

template <typename scalar_t>
void bounds(const Record<scalar_t>* r, int64_t n, double lo[3], double hi[3]) {
  for (int a = 0; a < 3; ++a) {
    lo[a] = std::numeric_limits<double>::infinity();
    hi[a] = -std::numeric_limits<double>::infinity();
  }
  for (int64_t s = 0; s < n; ++s) {
    for (int a = 0; a < 3; ++a) {
      lo[a] = std::min(lo[a], static_cast<double>(r[s].c[a]));
      hi[a] = std::max(hi[a], static_cast<double>(r[s].c[a]));
    }
  }
}

// Rearranges r[0, count) as std::nth_element does for `rank` under the order (coordinate along
// `axis`, then index), given the coordinates' range [lo, hi]. A histogram of the coordinates in
// equal buckets finds the bucket holding the rank; one pass moves the records below, in and above
// it into place (branch-free); nth_element then only sorts out that bucket. Buckets are a monotone
// function of the coordinate, so a lower bucket means a smaller coordinate and the split is the
// one nth_element alone would find. nth_element over a whole node is slow because its comparisons
// are coin flips to the branch predictor: with this, kd_order of the bunny's 69,451 triangle
// centroids went from 13.4 to 9.8 ms on one thread (8.4 to 6.4 ms on two).
template <typename scalar_t, typename Less>
void select_rank(Record<scalar_t>* r, int64_t count, int64_t rank, int axis, double lo, double hi, const Less& less,
                 std::vector<Record<scalar_t>>& scratch) {
  constexpr int64_t kMaxBuckets = 1024;
  const int buckets = static_cast<int>(std::min(kMaxBuckets, count / 8));  // about 8 records per bucket
  const double scale = buckets / (hi - lo);
  if (count < 32 || !(hi > lo) || !std::isfinite(scale)) {
    std::nth_element(r, r + rank, r + count, less);
    return;
  }
  auto bucket = [&](const Record<scalar_t>& x) {
    double t = (static_cast<double>(x.c[axis]) - lo) * scale;
    t = t >= 0.0 ? t : 0.0;  // also NaN
    return t < buckets - 1 ? static_cast<int>(t) : buckets - 1;
  };
  int64_t hist[kMaxBuckets];
  std::fill(hist, hist + buckets, 0);
  for (int64_t i = 0; i < count; ++i) ++hist[bucket(r[i])];
  int b = 0;
  int64_t below = 0;
  while (below + hist[b] <= rank) below += hist[b++];
  scratch.resize(count);
  int64_t pos[3] = {0, below, below + hist[b]};  // next slot for records below, in and above bucket b
  for (int64_t i = 0; i < count; ++i) {
    const int k = bucket(r[i]);
    scratch[pos[(k > b) + (k >= b)]++] = r[i];
  }
  std::copy(scratch.begin(), scratch.begin() + count, r);
  std::nth_element(r + below, r + rank, r + below + hist[b], less);
}

// Partitions records into the implicit kd-tree of point_tree.h: the node over leaves
// [k * width, (k + 1) * width) splits at its middle leaf along the widest axis of its points.
template <typename scalar_t>
void partition(std::vector<Record<scalar_t>>& rec, int64_t leaves, int8_t* axis_out, scalar_t* val_out) {
  const int64_t n = rec.size();
  for (int64_t width = leaves; width > 1; width /= 2) {
    const int64_t nodes = leaves / width;
    // Points fill the leaves from the left, so the nodes past the last occupied one are empty.
    // Only the occupied ones are shared out, so that every thread gets a fair share of points.
    const int64_t occupied = std::min(nodes, (n + width * kLeafSize - 1) / (width * kLeafSize));
    for (int64_t k = occupied; k < nodes; ++k) {
      axis_out[nodes + k] = 0;
      val_out[nodes + k] = std::numeric_limits<scalar_t>::infinity();
    }
    at::parallel_for(0, occupied, 1, [&](int64_t k0, int64_t k1) {
      std::vector<Record<scalar_t>> scratch;
      for (int64_t k = k0; k < k1; ++k) {
        const int64_t node = nodes + k;
        const int64_t begin = k * width * kLeafSize, end = std::min(n, (k + 1) * width * kLeafSize);
        const int64_t split = begin + width / 2 * kLeafSize;
        axis_out[node] = 0;
        val_out[node] = std::numeric_limits<scalar_t>::infinity();
        if (split >= end) continue;  // right child empty: every query goes left
        double lo[3], hi[3];
        bounds(rec.data() + begin, end - begin, lo, hi);
        int axis = 0;
        for (int a = 1; a < 3; ++a) {
          if (hi[a] - lo[a] > hi[axis] - lo[axis]) axis = a;
        }
        // Ordered by (coordinate, index): tied points split the same way in both builders.
        select_rank(rec.data() + begin, end - begin, split - begin, axis, lo[axis], hi[axis],
                    [axis](const Record<scalar_t>& u, const Record<scalar_t>& v) {
                      return u.c[axis] < v.c[axis] || (u.c[axis] == v.c[axis] && u.i < v.i);
                    }, scratch);
        axis_out[node] = static_cast<int8_t>(axis);
        val_out[node] = rec[split].c[axis];
      }
    });
  }
}

// Node boxes: leaves from their points, then each internal node from its children.
template <typename scalar_t>
void fill_boxes(const scalar_t* pts, int64_t n, int64_t leaves, scalar_t* lo, scalar_t* hi) {
  const scalar_t inf = std::numeric_limits<scalar_t>::infinity();
  for (int64_t node = 0; node < 2 * leaves; ++node) {
    for (int a = 0; a < 3; ++a) {
      lo[3 * node + a] = inf;
      hi[3 * node + a] = -inf;
    }
  }
  for (int64_t s = 0; s < n; ++s) {
    const int64_t node = leaves + s / kLeafSize;
    for (int a = 0; a < 3; ++a) {
      lo[3 * node + a] = std::min(lo[3 * node + a], pts[3 * s + a]);
      hi[3 * node + a] = std::max(hi[3 * node + a], pts[3 * s + a]);
    }
  }
  for (int64_t node = leaves - 1; node >= 1; --node) {
    for (int a = 0; a < 3; ++a) {
      lo[3 * node + a] = std::min(lo[3 * (2 * node) + a], lo[3 * (2 * node + 1) + a]);
      hi[3 * node + a] = std::max(hi[3 * (2 * node) + a], hi[3 * (2 * node + 1) + a]);
    }
  }
}

// The records of cloud b partitioned into the tree's slot order: the kd partition, then each leaf
// by original index (canonical: the ATen builder does the same).
template <typename scalar_t>
std::vector<Record<scalar_t>> slot_records(const scalar_t* src, int64_t M, int64_t b, int64_t n, int64_t P,
                                           int8_t* axis_out, scalar_t* val_out) {
  std::vector<Record<scalar_t>> rec(n);
  for (int64_t i = 0; i < n; ++i) {
    const scalar_t* p = src + (b * M + i) * 3;
    rec[i] = Record<scalar_t>{{p[0], p[1], p[2]}, i};
  }
  partition(rec, P, axis_out, val_out);
  for (int64_t begin = 0; begin < n; begin += kLeafSize) {
    std::sort(rec.begin() + begin, rec.begin() + std::min(n, begin + kLeafSize),
              [](const Record<scalar_t>& u, const Record<scalar_t>& v) { return u.i < v.i; });
  }
  return rec;
}

// kd_order alone: the slot order of build_cpu without the tree's points, boxes and frames.
template <typename scalar_t>
at::Tensor slot_order_cpu(const at::Tensor& points, const std::vector<int64_t>& lengths) {
  const int64_t B = points.size(0), M = points.size(1), P = tree_leaves(M), S = P * kLeafSize;
  at::Tensor idx = at::full({B, S}, -1, points.options().dtype(at::kLong));
  const scalar_t* src = points.data_ptr<scalar_t>();
  for_each_cloud(B, [&](int64_t b) {
    std::vector<int8_t> axis(P);  // partition's split planes, not kept
    std::vector<scalar_t> val(P);
    const std::vector<Record<scalar_t>> rec = slot_records(src, M, b, lengths[b], P, axis.data(), val.data());
    int64_t* out = idx.data_ptr<int64_t>() + b * S;
    for (size_t s = 0; s < rec.size(); ++s) out[s] = rec[s].i;
  });
  return idx;
}

template <typename scalar_t>
BatchTree build_cpu(const at::Tensor& points, const std::vector<int64_t>& lengths) {
  const int64_t B = points.size(0), M = points.size(1);
  BatchTree t;
  t.leaves = tree_leaves(M);
  t.depth = tree_depth(t.leaves);
  const int64_t P = t.leaves, S = P * kLeafSize;
  t.pts = at::zeros({B, S, 3}, points.options());
  t.idx = at::full({B, S}, -1, points.options().dtype(at::kLong));
  t.lo = at::empty({B, 2 * P, 3}, points.options());
  t.hi = at::empty({B, 2 * P, 3}, points.options());
  t.split_axis = at::zeros({B, P}, points.options().dtype(at::kChar));
  t.split_val = at::full({B, P}, std::numeric_limits<double>::infinity(), points.options());  // node 0 unused
  t.counts = at::tensor(lengths, points.options().dtype(at::kLong));
  t.frame_lo = at::zeros({B, 3}, points.options().dtype(at::kDouble));
  t.frame_scale = at::zeros({B}, points.options().dtype(at::kDouble));
  const scalar_t* src = points.data_ptr<scalar_t>();
  auto build_one = [&](int64_t b) {
    const int64_t n = lengths[b];
    const std::vector<Record<scalar_t>> rec = slot_records(
        src, M, b, n, P, t.split_axis.data_ptr<int8_t>() + b * P, t.split_val.data_ptr<scalar_t>() + b * P);
    double lo[3], hi[3];
    bounds(rec.data(), n, lo, hi);
    if (n > 0) std::copy(lo, lo + 3, t.frame_lo.data_ptr<double>() + 3 * b);
    t.frame_scale.data_ptr<double>()[b] = morton_scale(lo, hi);
    scalar_t* pts = t.pts.data_ptr<scalar_t>() + b * S * 3;
    int64_t* idx = t.idx.data_ptr<int64_t>() + b * S;
    for (int64_t s = 0; s < n; ++s) {
      std::copy(rec[s].c, rec[s].c + 3, pts + 3 * s);
      idx[s] = rec[s].i;
    }
    fill_boxes(pts, n, P, t.lo.data_ptr<scalar_t>() + b * 2 * P * 3, t.hi.data_ptr<scalar_t>() + b * 2 * P * 3);
  };
  for_each_cloud(B, build_one);
  return t;
}

template <typename scalar_t>
std::vector<int64_t> order_cpu(const at::Tensor& queries, const std::vector<int64_t>& lengths, const double* frame_lo,
                               const double* frame_scale) {
  const int64_t B = queries.size(0), N = queries.size(1);
  const scalar_t* q = queries.data_ptr<scalar_t>();
  int64_t total = 0;
  for (int64_t b = 0; b < B; ++b) total += lengths[b];
  std::vector<int64_t> result(total);
  int64_t start = 0;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int64_t> codes(lengths[b]);
    at::parallel_for(0, lengths[b], 1 << 14, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const scalar_t* p = q + (b * N + i) * 3;
        codes[i] = morton_code(p[0], p[1], p[2], frame_lo + 3 * b, frame_scale[b]);
      }
    });
    sort_by_code(codes, b * N, result.data() + start);
    start += lengths[b];
  }
  return result;
}

}  // namespace

at::Tensor kd_slot_order_cpu(const at::Tensor& points, const std::vector<int64_t>& lengths) {
  return AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "kd_slot_order_cpu",
                                    [&] { return slot_order_cpu<scalar_t>(points, lengths); });
}

BatchTree build_point_tree_cpu(const at::Tensor& points, const std::vector<int64_t>& lengths) {
  return AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "build_point_tree_cpu",
                                    [&] { return build_cpu<scalar_t>(points, lengths); });
}

std::vector<int64_t> order_queries_cpu(const at::Tensor& queries, const std::vector<int64_t>& lengths,
                                       const BatchTree& tree) {
  return morton_order_cpu(queries, lengths, tree.frame_lo.data_ptr<double>(), tree.frame_scale.data_ptr<double>());
}

std::vector<int64_t> morton_order_cpu(const at::Tensor& queries, const std::vector<int64_t>& lengths,
                                      const double* frame_lo, const double* frame_scale) {
  return AT_DISPATCH_FLOATING_TYPES(queries.scalar_type(), "morton_order_cpu",
                                    [&] { return order_cpu<scalar_t>(queries, lengths, frame_lo, frame_scale); });
}

}  // namespace pm
