/*
 * bench_bounds.h - this machine's limits, measured the same way by every benchmark that prints
 * results as fractions of a bound (sy-bench-kern, sy-bench-model):
 * - read bandwidth: each thread streams its own 256 MiB buffer as 4 interleaved sequential
 *   streams (AVX-512 loads when present, else AVX2), the practical ceiling for streaming
 *   weights;
 * - FMA peak: a register-only FP32 FMA loop with 16 (AVX-512) or 12 (AVX2) independent chains
 *   per thread.
 * Each is the best of several repetitions (a bound is what the machine can do). Also the two
 * timing helpers the benchmarks share (bbnd_now_s, bbnd_median).
 * Does not: pin threads or change CPU frequency (the host is shared; results drift).
 * Thread-safety: call from one thread; the work runs on the given pool.
 */
#ifndef SY_BENCH_BOUNDS_H
#define SY_BENCH_BOUNDS_H

#include <stddef.h>

#include "common/tpool.h"

/* Read bandwidth in GB/s with tpool_threads(pool) threads, the best of reps runs (>= 1).
 * Exits the program with a message when the buffers cannot be allocated. */
double bbnd_read_gbs(tpool_t *pool, int reps);
/* FP32 FMA peak in GFLOP/s with tpool_threads(pool) threads, the best of reps runs (>= 1). */
double bbnd_fma_gflops(tpool_t *pool, int reps);
/* "AVX-512" or "AVX2": the ISA the FMA loop used. */
const char *bbnd_fma_isa(void);

/* Monotonic clock in seconds (sy_mono_ns). */
double bbnd_now_s(void);
/* Sorts v[0..n) in place and returns v[n / 2] (0 when n is 0). */
double bbnd_median(double *v, size_t n);

#endif
