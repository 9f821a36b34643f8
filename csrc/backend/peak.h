/* A probe of the machine's fp32 FMA throughput, for benchmarks. */
#ifndef MD_PEAK_H
#define MD_PEAK_H

#include <stdint.h>

/* GFLOP/s of `iters` rounds of 16 independent vector FMAs per thread, on all
 * of moondust's threads (the widest FMA the build targets). */
double md_fma_peak_gflops(int64_t iters);

#endif
