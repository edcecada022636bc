// Helpers shared by every CPU and CUDA source: the host/device qualifier and floating-point
// arithmetic that the compiler may not contract into fused multiply-adds.
//
// Why no FMA: CPU and CUDA must compute bit-identical distances, so that both backends pick the
// same neighbour when two candidates are (nearly) tied. nvcc contracts a*b+c into an FMA by
// default; the __*_rn intrinsics forbid that. Host code is compiled with -ffp-contract=off.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define PM_HD __host__ __device__ __forceinline__
#define PM_HOT __host__ __device__ __forceinline__
#else
#define PM_HD inline
// Small functions on the search's innermost path: always inlined, so that the running best
// stays in registers.
#define PM_HOT inline __attribute__((always_inline))
#endif

namespace pm {

PM_HD float mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
PM_HD double mul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
PM_HD float add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
PM_HD double add(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
PM_HD float sub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
PM_HD double sub(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}

template <typename T>
PM_HD T abs_val(T a) {
  return a < T(0) ? -a : a;
}
template <typename T>
PM_HD T min_val(T a, T b) {
  return b < a ? b : a;
}
template <typename T>
PM_HD T max_val(T a, T b) {
  return a < b ? b : a;
}

// Distance between two D-dimensional points: squared Euclidean (NORM == 2) or L1 (NORM == 1).
// Summed left to right from zero, so a D < 3 point padded with zeros gives the same bits.
template <int NORM, typename T>
PM_HOT T point_distance(const T* a, const T* b, int D) {
  T acc = T(0);
  for (int d = 0; d < D; ++d) {
    const T diff = sub(a[d], b[d]);
    acc = add(acc, NORM == 2 ? mul(diff, diff) : abs_val(diff));
  }
  return acc;
}

}  // namespace pm
