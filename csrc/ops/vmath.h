/* Vectorisable math for the kernels' inner loops. libm's expf is a call per
 * element; these are plain arithmetic and bit operations that GCC turns
 * into AVX-512 code inside `#pragma omp simd` loops. */
#ifndef MD_VMATH_H
#define MD_VMATH_H

#include <stdint.h>
#include <string.h>

static inline float md_bits_to_float(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static inline uint32_t md_float_to_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

/* e^x within 2 ulp on [-87, 88] (clamped outside; NaN stays NaN):
 * e^x = 2^k e^r with k = round(x / ln 2) and |r| <= ln 2 / 2, e^r by
 * Cephes' degree-7 polynomial. Adding 1.5 * 2^23 + 127 rounds x / ln 2 to
 * an integer in the low mantissa bits, which shift straight into the
 * exponent field of 2^k, with no float-to-int conversion. */
static inline float md_expf(float x) {
  x = x > 88.0f ? 88.0f : x;
  x = x < -87.0f ? -87.0f : x;
  const float shifter = 12583039.0f; /* 1.5 * 2^23 + 127 */
  float t = x * 1.44269504088896341f + shifter;
  float k = t - shifter;
  float r = x - k * 0.693359375f + k * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return p * md_bits_to_float(md_float_to_bits(t) << 23);
}

static inline float md_sigmoidf(float z) { return 1.0f / (1.0f + md_expf(-z)); }

#endif
