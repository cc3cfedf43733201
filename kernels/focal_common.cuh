// Shared pieces of the focal loss kernels: the argument block, f32 math in log space,
// element loads and stores, and the deterministic block reduction.
//
// Every kernel takes one `LossArgs` by value; the Rust side (`focal-cuda`, src/args.rs) has the
// same #[repr(C)] layout. Compiled by nvcc for the GPU, or as host C++ against
// emulation/cuda_emulation.h when FOCAL_EMULATION is defined.
#pragma once

#ifdef FOCAL_EMULATION
#include "emulation/cuda_emulation.h"
#define FOCAL_REGISTER(name) FOCAL_EMU_REGISTER(name)
#else
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#define FOCAL_REGISTER(name)
#endif

#include <stdint.h>

namespace focal {

// Threads per block of every kernel (the Rust side launches with the same number).
constexpr int kBlock = 256;
constexpr int kWarpsPerBlock = kBlock / 32;
constexpr unsigned kFullMask = 0xffffffffu;

// Sparse label codes (torchvision's Matcher).
constexpr int kBackground = -1;
constexpr int kIgnore = -2;

// LossArgs::weight_mode
constexpr uint32_t kWeightNone = 0;
constexpr uint32_t kWeightPerRow = 1;
constexpr uint32_t kWeightPerElement = 2;

// LossArgs::flags
constexpr uint32_t kFlagIouWeighted = 1;  // varifocal: weigh positives by their target

// Field order and types mirror `LossArgs` in crates/focal-cuda/src/args.rs (8-byte fields
// first, so there is no padding to disagree about).
struct LossArgs {
    const void* logits;            // [rows * classes] of the input type
    const int32_t* labels;         // sparse losses: [rows]
    const float* targets;          // dense losses: [rows * classes]
    const float* weights;          // nullptr, [rows] or [rows * classes] (weight_mode)
    const float* alpha_per_class;  // nullptr or [classes]
    const float* scale;            // nullptr or [images]: factor on the loss sum of each image
    void* grad;                    // nullptr or [rows * classes] of the gradient type; may alias logits
    float* elementwise;            // nullptr or [rows * classes]: weighted loss before reduction
    double* partials;              // [gridDim.x]: per-block loss partials
    uint32_t* first_bad_row;       // lowest row whose label is out of range (atomicMin)
    uint64_t numel;                // rows * classes
    uint64_t rows_per_image;       // A
    uint64_t classes_magic;        // ceil(2^64 / C), 0 for C = 1: see fast_div
    uint64_t rows_per_image_magic; // ceil(2^64 / A), 0 for A = 1
    uint32_t classes;              // C
    uint32_t weight_mode;
    float upstream;                // gradient of the caller's objective w.r.t. the loss
    float alpha_pos;               // weight of positive terms (1 = no alpha)
    float alpha_neg;               // weight of negative terms (1 = no alpha)
    float gamma;                   // focusing exponent (beta for the quality focal loss)
    uint32_t flags;
    float uniform_scale;           // the factor for every image when `scale` is nullptr
};

struct LossGrad {
    float loss;
    float grad;
};

// ---- math (f32, log space; see focal_core::reference for the formulas and why) ----

__device__ __forceinline__ float nan_f32() { return __int_as_float(0x7fc00000); }

// w^g for w >= 0 and g >= 0 with pow's conventions (0^0 = 1), exact for g = 0, 1, 2.
__device__ __forceinline__ float pow_nonneg(float w, float g) {
    if (g == 0.0f) return 1.0f;
    if (g == 1.0f) return w;
    if (g == 2.0f) return w * w;
    if (w == 0.0f) return 0.0f;
    return exp2f(g * log2f(w));
}

// w^g where w = exp(-minus_log_w), in log space (ARCHITECTURE.md): exact for g = 0, 1, 2 and
// free of the cancellation that pow(1 - p, g) suffers at saturated probabilities.
__device__ __forceinline__ float focal_weight(float w, float minus_log_w, float g) {
    if (g == 0.0f) return 1.0f;
    if (g == 1.0f) return w;
    if (g == 2.0f) return w * w;
    return expf(-g * minus_log_w);
}

// The pieces every sigmoid-based loss needs from one logit, with one exp and one log1p:
// p = sigmoid(x), pm = 1 - p = sigmoid(-x) (computed separately, never as 1 - p),
// sp_pos = softplus(x) = -log(1 - p), sp_neg = softplus(-x) = -log(p).
struct Sigmoid {
    float p, pm, sp_pos, sp_neg;
};

// From e = exp(-|x|), big = 1 / (1 + e) and l = log1p(e).
__device__ __forceinline__ Sigmoid assemble_sigmoid(float x, float e, float big, float l) {
    const float small = e * big;
    Sigmoid s;
    s.p = x >= 0.0f ? big : small;
    s.pm = x >= 0.0f ? small : big;
    s.sp_pos = fmaxf(x, 0.0f) + l;
    s.sp_neg = fmaxf(-x, 0.0f) + l;
    return s;
}

__device__ __forceinline__ Sigmoid sigmoid_parts(float x) {
    // exp(-|x|) never overflows; 1 / (1 + e) and e / (1 + e) are both accurate.
    const float e = expf(-fabsf(x));
    return assemble_sigmoid(x, e, 1.0f / (1.0f + e), log1pf(e));
}

// Class-balancing weights of class c: (alpha_pos, alpha_neg) or the per-class alpha.
__device__ __forceinline__ void class_alpha(const LossArgs& a, uint32_t c, float& pos, float& neg) {
    pos = a.alpha_pos;
    neg = a.alpha_neg;
    if (a.alpha_per_class) {
        pos = a.alpha_per_class[c];
        neg = 1.0f - pos;
    }
}

// n / d for n < 2^32 from magic = ceil(2^64 / d) (0 for d = 1): one 64-bit multiply-high
// instead of a ~20-instruction integer division (Lemire, Kaser, Kurz 2019, "Faster remainder by
// direct computation", exact for every 32-bit n and d >= 2).
__device__ __forceinline__ uint32_t fast_div(uint32_t n, uint64_t magic) {
    return magic == 0 ? n : uint32_t(__umul64hi(magic, uint64_t(n)));
}

// fast_div for a divisor d >= 2 (magic != 0), in 32-bit operations: with magic = hi 2^32 + lo,
// the high 64 bits of magic n are those of (hi n + umulhi(lo, n)) 2^32 (the low part of lo n
// cannot carry past them), so two multiplies (IMAD.HI, IMAD.WIDE) instead of five, and the
// quotient comes out as a 32-bit register (variant v6).
__device__ __forceinline__ uint32_t fast_div_nonunit(uint32_t n, uint64_t magic) {
    const uint32_t lo = uint32_t(magic), hi = uint32_t(magic >> 32);
    return uint32_t((uint64_t(hi) * n + __umulhi(lo, n)) >> 32);
}

// The hardware approximations of variant v4 (MUFU.RCP, MUFU.LG2), with flush to zero: their
// arguments here are in [1, 2], so no denormal handling is needed, and the .ftz forms skip the
// ~6 instructions of range scaling that __fdividef and __logf carry without -ftz. The emulation
// uses the exact host functions; the hardware's accuracy is checked on a GPU (check-kernels).
__device__ __forceinline__ float rcp_approx(float v) {
#ifdef FOCAL_EMULATION
    return 1.0f / v;
#else
    float r;
    asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(v));
    return r;
#endif
}

__device__ __forceinline__ float lg2_approx(float v) {
#ifdef FOCAL_EMULATION
    return log2f(v);
#else
    float r;
    asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(v));
    return r;
#endif
}

// 2^v by the hardware (MUFU.EX2), flush to zero: variant v6's exp, as exp(-|x|) =
// ex2_approx(-|x| log2(e)). Rounding that product to f32 costs ln(2) |x| log2(e) 2^-24 =
// |x| 2^-24 relative in the result (2.7e-7 at |x| = 4.6, 5.2e-6 at |x| = 88) besides the unit's
// own couple of ulp, so 3 |x| 2^-24 in the gamma-2 terms (about e^3): under the f32 checks'
// relative 2e-5 wherever those terms are above f32's range, |x| < 35 (kernels/README.md, v6).
__device__ __forceinline__ float ex2_approx(float v) {
#ifdef FOCAL_EMULATION
    return exp2f(v);
#else
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(v));
    return r;
#endif
}

// 16-byte asynchronous copy from global to shared memory (sm_80's cp.async, through L2 only:
// the logits are read once), committed in groups and waited for by group count, so a thread can
// keep several loads in flight while it computes. Each thread of variant v6 reads back only what
// it copied itself, so no barrier is needed: cp.async.wait_group orders the copy before the
// thread's own shared-memory reads. The emulation copies at once.
// A shared-memory address: 32 bits on the device (computed once, so that a loop does not
// rebuild the shared window's base), a plain pointer in the emulation.
#ifdef FOCAL_EMULATION
using SharedAddr = char*;
inline SharedAddr shared_addr(void* p) { return static_cast<char*>(p); }
#else
using SharedAddr = uint32_t;
__device__ __forceinline__ SharedAddr shared_addr(void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
#endif

__device__ __forceinline__ void cp_async16(SharedAddr dst, const void* global_src) {
#ifdef FOCAL_EMULATION
    std::memcpy(dst, global_src, 16);
#else
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(global_src) : "memory");
#endif
}

// Reads 16 bytes of shared memory into `out` (16 bytes). Volatile with a memory clobber: it must
// stay after the cp_async_wait that made the bytes arrive.
__device__ __forceinline__ void ld_shared16(void* out, SharedAddr src) {
#ifdef FOCAL_EMULATION
    std::memcpy(out, src, 16);
#else
    uint32_t w[4];
    asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(w[0]), "=r"(w[1]), "=r"(w[2]), "=r"(w[3])
                 : "r"(src)
                 : "memory");
    memcpy(out, w, 16);
#endif
}

__device__ __forceinline__ void cp_async_commit() {
#ifndef FOCAL_EMULATION
    asm volatile("cp.async.commit_group;" ::: "memory");
#endif
}

// Waits until at most `kPending` of this thread's committed groups are still in flight.
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
#ifndef FOCAL_EMULATION
    asm volatile("cp.async.wait_group %0;" ::"n"(kPending) : "memory");
#endif
}

// log1p(e) for e in [0, 1] given u = 1 + e: the 5-term series below 1/16 (truncation
// e^5 / 6 < 2e-7 relative), the hardware log2 of u above (an absolute error near 2^-22 on a
// value >= 0.06 is a few 1e-6 relative), instead of the ~22-instruction log1pf.
__device__ __forceinline__ float log1p_unit(float e, float u) {
    const float series = e * (1.0f - e * (0.5f - e * (1.0f / 3.0f - e * (0.25f - e * 0.2f))));
    return e < 0.0625f ? series : lg2_approx(u) * 0.693147180559945309f;
}

// focal_weight without branches (variant v4): every case is computed and one is selected, so
// that the compiler can interleave the elements of a pack.
__device__ __forceinline__ float focal_weight_select(float w, float minus_log_w, float g) {
    const float general = expf(-g * minus_log_w);
    return g == 0.0f ? 1.0f : g == 1.0f ? w : g == 2.0f ? w * w : general;
}

// ---- element access ----

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) {
    return __float2bfloat16_rn(v);
}

// 16 bytes of T: the unit of a vector load or store.
template <class T>
struct alignas(16) Pack {
    static constexpr int kCount = 16 / sizeof(T);
    T v[kCount];
};

__device__ __forceinline__ bool aligned16(const void* p) {
    return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

// ---- deterministic reduction ----

// Sum over the block in a fixed order (warp butterfly, then warp 0 over the warp sums); the
// result is valid in thread 0. Called by every thread of the block.
__device__ __forceinline__ double block_sum(double v) {
    __shared__ double warp_sums[kWarpsPerBlock];
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(kFullMask, v, offset);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    double total = 0.0;
    if (warp == 0) {
        total = lane < kWarpsPerBlock ? warp_sums[lane] : 0.0;
        for (int offset = 16; offset > 0; offset /= 2)
            total += __shfl_xor_sync(kFullMask, total, offset);
    }
    // warp_sums may be reused by the next call.
    __syncthreads();
    return total;
}

}  // namespace focal
