// Loralab's wrapper of MLX's CPU JIT preamble (installed by scripts/setup.sh
// as mlx/backend/cpu/compiled_preamble.h; MLX's own file sits beside it,
// unchanged, as compiled_preamble.orig.h).
//
// MLX compiles fused elementwise kernels at run time with plain
// `g++ -O3` (baseline x86-64). The kernels then call `simd::exp` out of line
// through the PLT, which resolves to libmlx.so's copy, and every `fma` in it
// is a call into libm: about 14 ns per exp, a quarter of a LoRA step on the
// CPU (softmax, log-sum-exp, SiLU). Here the kernels get AVX2/FMA (setup.sh
// writes this file only where the CPU has both), their helpers bind locally
// (hidden visibility), and exp is an inline function the compiler can
// vectorize. Same polynomial and the same edge cases as MLX's. The selects
// only become vector blends without trapping-math, which these kernels never
// relied on (MLX does not read the floating-point exception flags).
#pragma GCC target("avx2,fma")
#pragma GCC optimize("no-trapping-math")
#pragma GCC visibility push(hidden)

#include "mlx/backend/cpu/simd/type.h"

namespace mlx::core::simd {

template <typename T, int N>
Simd<T, N> exp(Simd<T, N> in);

template <>
inline __attribute__((always_inline)) Simd<float, 1> exp<float, 1>(
    Simd<float, 1> in) {
  const float x0 = in.value;
  // 2^(x log2 e) = 2^i * 2^f with i the nearest integer and |f| <= 1/2;
  // the clamp keeps the integer conversion defined, the selects below give
  // the results outside the range.
  float x = x0 * 1.442695f;
  x = x < -127.0f ? -127.0f : (x > 127.0f ? 127.0f : x);
  const float i = __builtin_floorf(x + 0.5f);
  const float f = x - i;
  float p = 1.535336188319500e-4f;
  p = __builtin_fmaf(p, f, 1.339887440266574e-3f);
  p = __builtin_fmaf(p, f, 9.618437357674640e-3f);
  p = __builtin_fmaf(p, f, 5.550332471162809e-2f);
  p = __builtin_fmaf(p, f, 2.402264791363012e-1f);
  p = __builtin_fmaf(p, f, 6.931472028550421e-1f);
  p = __builtin_fmaf(p, f, 1.000000000000000f);
  const float two_to_i = __builtin_bit_cast(float, (static_cast<int>(i) + 127) << 23);
  float r = two_to_i * p;
  r = x0 > 88.0f ? __builtin_inff() : r;
  r = x0 < -88.0f ? 0.0f : r;
  r = x0 != x0 ? x0 : r;
  return Simd<float, 1>(r);
}

} // namespace mlx::core::simd

#include "mlx/backend/cpu/compiled_preamble.orig.h"

#pragma GCC visibility pop
