// Varifocal loss (Zhang et al. 2021, as mmdetection defines it), fused forward and backward,
// targets = IoU scores. As in focal_core::reference::varifocal_element, in f32:
//   t > 0: L = w BCE(x, t), w = t (IoU-weighted) or 1,  dL/dx = w ((1 - t) p - t (1 - p));
//   t = 0: L = alpha p^gamma softplus(x),  dL/dx = alpha (gamma p^gamma (1 - p) softplus(x) + p^gamma p).
// The focal weight is differentiated through, as mmdetection's autograd does. alpha travels
// in LossArgs::alpha_neg (it weighs the negatives only).
#include "elementwise.cuh"

namespace focal {

struct Varifocal {
    static constexpr bool kSparse = false;
    static constexpr PackPath kPackPath = PackPath::kElements;

    __device__ __forceinline__ static LossGrad dense(const LossArgs& a, float x, float t, uint32_t) {
        const Sigmoid s = sigmoid_parts(x);
        if (t > 0.0f) {
            const float w = (a.flags & kFlagIouWeighted) ? t : 1.0f;
            const float ce = t * s.sp_neg + (1.0f - t) * s.sp_pos;
            return {w * ce, w * ((1.0f - t) * s.p - t * s.pm)};
        }
        // p^gamma = exp(-gamma softplus(-x)).
        const float pg = focal_weight(s.p, s.sp_neg, a.gamma);
        const float alpha = a.alpha_neg;
        return {alpha * pg * s.sp_pos, alpha * (a.gamma * pg * s.pm * s.sp_pos + pg * s.p)};
    }
};

}  // namespace focal

FOCAL_ELEMENTWISE_ENTRIES(varifocal, focal::Varifocal)
