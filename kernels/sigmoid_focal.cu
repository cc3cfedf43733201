// Sigmoid focal loss (Lin et al. 2017; torchvision's sigmoid_focal_loss), fused forward and
// backward, with sparse labels (class, -1 background, -2 ignore) or dense soft targets and
// optional weights. The formulas are those of focal_core::reference, in f32:
//   L = alpha_t w^gamma CE,  w = 1 - p_t,  CE = t softplus(-x) + (1 - t) softplus(x),
//   dL/dx = alpha_t [gamma w^gamma (p (1 - p) / w) (1 - 2t) CE + w^gamma (p - t)].
#include "elementwise.cuh"

namespace focal {

// Variant v1: accurate expf, IEEE division, log1pf, element by element.
struct SigmoidFocalSparse {
    static constexpr bool kSparse = true;
    static constexpr PackPath kPackPath = PackPath::kElements;

    // t is 0 or 1, so w is pm or p and its log is a softplus we already have: the focal weight
    // is exp(-gamma softplus(s)) and p (1 - p) / w is p or pm.
    __device__ __forceinline__ static LossGrad sparse(const LossArgs& a, float x, bool positive,
                                                      uint32_t c) {
        float alpha_pos, alpha_neg;
        class_alpha(a, c, alpha_pos, alpha_neg);
        const Sigmoid s = sigmoid_parts(x);
        const float g = a.gamma;
        if (positive) {
            const float wg = focal_weight(s.pm, s.sp_pos, g);
            return {alpha_pos * wg * s.sp_neg, -alpha_pos * wg * (g * s.p * s.sp_neg + s.pm)};
        }
        const float wg = focal_weight(s.p, s.sp_neg, g);
        return {alpha_neg * wg * s.sp_pos, alpha_neg * wg * (g * s.pm * s.sp_pos + s.p)};
    }
};

// Variant v4, the default (kernels/README.md): hardware reciprocal and log2 in their
// flush-to-zero forms (rcp_approx, log1p_unit), element math without branches (whole packs go
// through finish_pack_two_rows), and with kRetina, gamma = 2 and a scalar alpha known at compile
// time (the host picks those entry points only then). exp stays the accurate expf: __expf's
// argument rounding costs |x| 2^-24 relative, up to 5e-6 at |x| = 88.
//
// A positive at logit x is a negative at xs = -x with the gradient's sign flipped: with
// w = sigmoid(xs) (the focal base, p for a negative, 1 - p for a positive), q = 1 - w and
// ce = softplus(xs) = -log(1 - w), the loss is alpha w^g ce and its derivative in xs is
// alpha w^g (g q ce + w). Same formulas as v1's, in one branch-free form.
template <bool kRetina>
struct SigmoidFocalSparseV4 {
    static constexpr bool kSparse = true;
    static constexpr PackPath kPackPath = PackPath::kTwoRows;

    __device__ __forceinline__ static LossGrad sparse(const LossArgs& a, float x, bool positive,
                                                      uint32_t c) {
        float alpha_pos = a.alpha_pos, alpha_neg = a.alpha_neg;
        if constexpr (!kRetina) {
            const float* per_class = a.alpha_per_class;
            const float alpha_c = per_class ? per_class[c] : 0.0f;
            alpha_pos = per_class ? alpha_c : alpha_pos;
            alpha_neg = per_class ? 1.0f - alpha_c : alpha_neg;
        }
        const float xs = positive ? -x : x;
        const float e = expf(-fabsf(x));
        const float u = 1.0f + e;
        const float big = rcp_approx(u);  // 1 / (1 + e)
        const float small = e * big;      // e / (1 + e)
        const float l = log1p_unit(e, u);
        const bool up = xs >= 0.0f;
        const float w = up ? big : small;
        const float q = up ? small : big;
        const float ce = fmaxf(xs, 0.0f) + l;
        float wg, gq;
        if constexpr (kRetina) {
            wg = w * w;
            gq = 2.0f * q;
        } else {
            const float g = a.gamma;
            wg = focal_weight_select(w, fmaxf(-xs, 0.0f) + l, g);
            gq = g * q;
        }
        const float aw = (positive ? alpha_pos : alpha_neg) * wg;
        const float grad = aw * fmaf(gq, ce, w);
        return {aw * ce, positive ? -grad : grad};
    }
};

// The element math of variant v6 (introduced with v5, deleted since: kernels/README.md): v4's
// gamma-2, scalar-alpha element math with a cheaper exp, behind the all-background pack path
// (finish_pack_labelled): exp(-|x|) is one MUFU.EX2 of -|x| log2(e) (ex2_approx) instead of
// expf's ~8 instructions, which costs |x| 2^-24 relative in e (2.7e-7 at |x| = 4.6; see
// ex2_approx). Its element lines repeat v4's gamma-2 ones instead of sharing a helper with them:
// the shared helper reordered v4's SASS, the code the H200 table measured.
//
// kSeriesLog1p: log1p(e) as v4's log1p_unit (the series below 1/16), for gradients written in
// f32. Without it, log1p(e) = ln(2) MUFU.LG2(1 + e) for every e: rounding u = 1 + e and the
// unit's absolute error near 1 (about 2^-22) make l's relative error about 2^-22 / e, 2e-5 at
// RetinaNet's prior (e ~ 0.01), inside the checks' absolute part but far from a few 1e-7. Only
// the entry points that write bf16 or f16 take that (their own rounding is 2^-8 or 2^-11
// relative), and it keeps them in 62 registers without spills.
template <bool kSeriesLog1p>
struct SigmoidFocalSparseV6 {
    static constexpr bool kSparse = true;
    static constexpr PackPath kPackPath = PackPath::kBackgroundFirst;

    // Same form as v4's: xs = -x for a positive, w = sigmoid(xs), q = 1 - w, ce = softplus(xs);
    // loss alpha w^2 ce, derivative in xs alpha w^2 (2 q ce + w).
    __device__ __forceinline__ static LossGrad sparse(const LossArgs& a, float x, bool positive,
                                                      uint32_t) {
        const float xs = positive ? -x : x;
        const float e = ex2_approx(fabsf(x) * -1.44269504088896341f);  // exp(-|x|)
        const float u = 1.0f + e;
        const float big = rcp_approx(u);  // 1 / (1 + e)
        const float small = e * big;      // e / (1 + e)
        const bool up = xs >= 0.0f;
        const float w = up ? big : small;
        const float q = up ? small : big;
        const float l = kSeriesLog1p ? log1p_unit(e, u) : lg2_approx(u) * 0.693147180559945309f;
        const float ce = fmaxf(xs, 0.0f) + l;
        const float aw = (positive ? a.alpha_pos : a.alpha_neg) * (w * w);
        const float grad = aw * fmaf(2.0f * q, ce, w);
        return {aw * ce, positive ? -grad : grad};
    }
};

struct SigmoidFocalDense {
    static constexpr bool kSparse = false;
    static constexpr PackPath kPackPath = PackPath::kElements;

    __device__ __forceinline__ static LossGrad dense(const LossArgs& a, float x, float t,
                                                     uint32_t c) {
        float alpha_pos, alpha_neg;
        class_alpha(a, c, alpha_pos, alpha_neg);
        const Sigmoid s = sigmoid_parts(x);
        const float g = a.gamma;
        const float ce = t * s.sp_neg + (1.0f - t) * s.sp_pos;
        const float w = t * s.pm + (1.0f - t) * s.p;
        // Hard targets take the log-space weight; soft ones need the power of the mixture.
        const float wg = t == 0.0f   ? focal_weight(s.p, s.sp_neg, g)
                         : t == 1.0f ? focal_weight(s.pm, s.sp_pos, g)
                                     : pow_nonneg(w, g);
        const float alpha_t = alpha_pos * t + alpha_neg * (1.0f - t);
        const float dce = (1.0f - t) * s.p - t * s.pm;
        // p (1 - p) / w <= 1; its limit is 0 where w = 0.
        const float ratio = w > 0.0f ? s.p * s.pm / w : 0.0f;
        const float dwg = g * wg * ratio * (1.0f - 2.0f * t);
        return {alpha_t * wg * ce, alpha_t * (dwg * ce + wg * dce)};
    }
};

}  // namespace focal

FOCAL_ELEMENTWISE_ENTRIES(sigmoid_sparse, focal::SigmoidFocalSparse)
FOCAL_ELEMENTWISE_ENTRIES(sigmoid_dense, focal::SigmoidFocalDense)

// v4 as two sets of entry points, chosen on the host (focal-cuda's plan.rs): `_v4_g2` for
// gamma = 2 with a scalar alpha or none (RetinaNet), `_v4` for everything else. (One kernel
// branching on gamma inside was compiled into a single body that computed both cases.) The
// gamma-2 entry points ask for more blocks per multiprocessor: at most 64 registers for f32 and
// 80 for the half types, against 80 and 110-127 under the default bound, which measured 7-13%
// slower (kernels/README.md).
FOCAL_ELEMENTWISE_ENTRIES(sigmoid_sparse_v4, focal::SigmoidFocalSparseV4<false>)
FOCAL_ELEMENTWISE_ENTRY_BOUNDS(sigmoid_sparse_v4_g2, focal::SigmoidFocalSparseV4<true>, float, f32, float, f32, 4)
FOCAL_ELEMENTWISE_ENTRY_BOUNDS(sigmoid_sparse_v4_g2, focal::SigmoidFocalSparseV4<true>, __half, f16, __half, f16, 3)
FOCAL_ELEMENTWISE_ENTRY_BOUNDS(sigmoid_sparse_v4_g2, focal::SigmoidFocalSparseV4<true>, __half, f16, float, f32, 3)
FOCAL_ELEMENTWISE_ENTRY_BOUNDS(sigmoid_sparse_v4_g2, focal::SigmoidFocalSparseV4<true>, __nv_bfloat16, bf16,
                               __nv_bfloat16, bf16, 3)
FOCAL_ELEMENTWISE_ENTRY_BOUNDS(sigmoid_sparse_v4_g2, focal::SigmoidFocalSparseV4<true>, __nv_bfloat16, bf16, float,
                               f32, 3)

// v6: gamma = 2 with a scalar alpha or none only (plan.rs sends other parameters to `_v4`), on the
// staged walk (elementwise_loss_staged): the next 7 packs of each thread in flight (a ring of 8
// slots, 32 KiB of shared memory a block). One more block per multiprocessor than v4 and v5 asked
// for, without spills: 5 for f32 (48 registers), 4 for the half types (62), 3 for half inputs
// with an f32 gradient (78-80, where the series for log1p is kept).
FOCAL_STAGED_ENTRY_BOUNDS(sigmoid_sparse_v6_g2, focal::SigmoidFocalSparseV6<true>, float, f32, float, f32, 5, 8, 1)
FOCAL_STAGED_ENTRY_BOUNDS(sigmoid_sparse_v6_g2, focal::SigmoidFocalSparseV6<false>, __half, f16, __half, f16, 4, 8, 1)
FOCAL_STAGED_ENTRY_BOUNDS(sigmoid_sparse_v6_g2, focal::SigmoidFocalSparseV6<true>, __half, f16, float, f32, 3, 8, 1)
FOCAL_STAGED_ENTRY_BOUNDS(sigmoid_sparse_v6_g2, focal::SigmoidFocalSparseV6<false>, __nv_bfloat16, bf16,
                          __nv_bfloat16, bf16, 4, 8, 1)
FOCAL_STAGED_ENTRY_BOUNDS(sigmoid_sparse_v6_g2, focal::SigmoidFocalSparseV6<true>, __nv_bfloat16, bf16, float,
                          f32, 3, 8, 1)

// v7 (a candidate, not timed on a GPU yet): v6 with two packs (8 f32 elements) per thread per
// step, so the walk's per-step work (the ahead copy and its group, the wait, the next step's
// labels, the image and background tests: about 69 SASS instructions in v6's f32 loop) is shared
// by twice the elements. A ring of 4 steps (32 KiB a block, as v6's; 6 packs in flight a thread
// against v6's 7). f32 logits only; half inputs run v6's entry points (plan.rs).
FOCAL_STAGED_ENTRY_BOUNDS(sigmoid_sparse_v7_g2, focal::SigmoidFocalSparseV6<true>, float, f32, float, f32, 5, 4, 2)
