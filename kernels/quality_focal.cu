// Quality focal loss (Li et al. 2020, generalized focal loss), fused forward and backward, soft
// targets y in [0, 1]. As in focal_core::reference::quality_focal_element, in f32:
//   L = |p - y|^beta BCE(x, y),
//   dL/dx = beta |p - y|^(beta - 1) sign(p - y) p (1 - p) BCE + |p - y|^beta (p - y),
// the first term taken as 0 where p = y. beta travels in LossArgs::gamma.
#include "elementwise.cuh"

namespace focal {

// sigmoid(x) - y in f64, rounded once to f32.
__device__ __forceinline__ float precise_sigmoid_minus(float x, float y) {
    const double e = exp(-fabs(double(x)));
    const double big = 1.0 / (1.0 + e);
    const double small = e * big;
    const double p = x >= 0.0f ? big : small;
    const double pm = x >= 0.0f ? small : big;
    return float((1.0 - double(y)) * p - double(y) * pm);
}

struct QualityFocal {
    static constexpr bool kSparse = false;
    static constexpr PackPath kPackPath = PackPath::kElements;

    __device__ __forceinline__ static LossGrad dense(const LossArgs& a, float x, float y, uint32_t) {
        const Sigmoid s = sigmoid_parts(x);
        const float beta = a.gamma;
        const float ce = y * s.sp_neg + (1.0f - y) * s.sp_pos;
        // p - y = (1 - y) p - y (1 - p): exact at y = 0 and y = 1.
        float d = (1.0f - y) * s.p - y * s.pm;
        // Near p = y the difference cancels: an f32 p carries ~1e-7 p of error, which
        // |d|^(beta - 1) turns into a large relative error when beta < 1 (and d^beta into one for
        // any beta). Where more than 4 bits cancel (rare), recompute p - y from an f64 sigmoid.
        if (fabsf(d) < 0.0625f * fmaxf(s.p, y)) d = precise_sigmoid_minus(x, y);
        const float db = pow_nonneg(fabsf(d), beta);
        // |d|^beta / d overflows f32 for tiny d and small beta (d ~ 1e-44 at a saturated logit):
        // take p (1 - p) / d first, which stays bounded (it is 1 - p where y = 0, p where y = 1).
        const float first = d != 0.0f ? beta * db * (s.p * s.pm / d) * ce : 0.0f;
        return {db * ce, first + db * d};
    }
};

}  // namespace focal

FOCAL_ELEMENTWISE_ENTRIES(quality_focal, focal::QualityFocal)
