// Host code compiled twice, for AVX2 and for the baseline x86-64 (SSE2), with the loader picking
// the one the CPU runs (GCC's target_clones, an ifunc: x86-64 Linux with GCC only; elsewhere a
// single baseline build). AVX2 without FMA, and -ffp-contract=off: the same IEEE operations, so
// the same bits on either. Put it on the function that holds a hot loop; what it inlines is
// compiled for both targets.
#pragma once

#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#define PM_WIDE_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define PM_WIDE_CLONES
#endif
