// Sigmoid focal loss (Lin et al. 2017; torchvision's sigmoid_focal_loss), fused forward and
// backward, with sparse labels (class, -1 background, -2 ignore) or dense soft targets and
// optional weights. The formulas are those of focal_core::reference, in f32:
//   L = alpha_t w^gamma CE,  w = 1 - p_t,  CE = t softplus(-x) + (1 - t) softplus(x),
//   dL/dx = alpha_t [gamma w^gamma (p (1 - p) / w) (1 - 2t) CE + w^gamma (p - t)].
#include "elementwise.cuh"

namespace focal {

// kFast selects variant v2 (sigmoid_parts_fast); see kernels/README.md.
template <bool kFast>
struct SigmoidFocalSparseT {
    static constexpr bool kSparse = true;

    // t is 0 or 1, so w is pm or p and its log is a softplus we already have: the focal weight
    // is exp(-gamma softplus(s)) and p (1 - p) / w is p or pm.
    __device__ __forceinline__ static LossGrad sparse(const LossArgs& a, float x, bool positive,
                                                      uint32_t c) {
        float alpha_pos, alpha_neg;
        class_alpha(a, c, alpha_pos, alpha_neg);
        const Sigmoid s = kFast ? sigmoid_parts_fast(x) : sigmoid_parts(x);
        const float g = a.gamma;
        if (positive) {
            const float wg = focal_weight(s.pm, s.sp_pos, g);
            return {alpha_pos * wg * s.sp_neg, -alpha_pos * wg * (g * s.p * s.sp_neg + s.pm)};
        }
        const float wg = focal_weight(s.p, s.sp_neg, g);
        return {alpha_neg * wg * s.sp_pos, alpha_neg * wg * (g * s.pm * s.sp_pos + s.p)};
    }
};

using SigmoidFocalSparse = SigmoidFocalSparseT<false>;
using SigmoidFocalSparseV2 = SigmoidFocalSparseT<true>;

struct SigmoidFocalDense {
    static constexpr bool kSparse = false;

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
FOCAL_ELEMENTWISE_ENTRIES(sigmoid_sparse_v2, focal::SigmoidFocalSparseV2)
FOCAL_ELEMENTWISE_ENTRIES(sigmoid_dense, focal::SigmoidFocalDense)
