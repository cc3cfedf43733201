// Softmax focal loss, fused forward and backward, one warp per row. As in
// focal_core::reference::softmax_focal_row, in f32, for a row with label y:
//   L = -a_y (1 - p_y)^gamma log p_y,
//   dL/dx_j = G (delta_jy - p_j),  G = a_y q^gamma (gamma p_y (log p_y / q) - 1),
//   q = 1 - p_y = -expm1(log p_y), log p_y / q -> -1 as q -> 0.
// Labels: 0..C-1 a class; -1 and -2 contribute nothing (as in the reference); anything else is
// out of range and gives NaN. The row's loss is written (elementwise) in the label's column.
//
// Work split, fixed by the shape: tiles of kWarpsPerBlock * kRowsPerWarp rows, walked by
// blocks with a grid stride; warp w of a tile takes rows w, w + kWarpsPerBlock, ...
#include "focal_common.cuh"

namespace focal {

constexpr int kRowsPerWarp = 4;

template <class T, class G>
__device__ __forceinline__ void softmax_focal(const LossArgs& a) {
    const T* logits = static_cast<const T*>(a.logits);
    G* grad = static_cast<G*>(a.grad);
    const uint32_t classes = a.classes;
    const uint32_t rows = uint32_t(a.numel) / classes;
    constexpr uint32_t kTileRows = uint32_t(kWarpsPerBlock) * kRowsPerWarp;
    const uint32_t tiles = (rows + kTileRows - 1) / kTileRows;
    const uint32_t warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    double acc = 0.0;
    for (uint32_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        for (int k = 0; k < kRowsPerWarp; ++k) {
            const uint32_t row = tile * kTileRows + k * kWarpsPerBlock + warp;
            if (row >= rows) break;  // uniform across the warp
            const uint32_t base = row * classes;
            const int label = a.labels[row];
            const float scale = a.scale ? a.scale[row / uint32_t(a.rows_per_image)] : a.uniform_scale;
            const bool ignored = label == kIgnore || label == kBackground;
            const bool bad = !ignored && (label < kIgnore || label >= int(classes));
            if (ignored || bad) {
                if (bad && lane == 0) atomicMin(a.first_bad_row, row);
                const float fill = bad ? nan_f32() : 0.0f;
                for (uint32_t j = lane; j < classes; j += 32) {
                    if (grad) grad[base + j] = from_f32<G>(fill);
                    if (a.elementwise) a.elementwise[base + j] = fill;
                }
                if (bad && lane == 0) acc += double(nan_f32());
                continue;
            }
            // Read before any lane writes a gradient: the gradient may overwrite the logits.
            const float xy = to_f32(logits[base + label]);
            // Online max and sum of exponentials over the lane's columns, then across lanes.
            float m = -INFINITY, s = 0.0f;
            for (uint32_t j = lane; j < classes; j += 32) {
                const float v = to_f32(logits[base + j]);
                if (v > m) {
                    s = s * expf(m - v) + 1.0f;
                    m = v;
                } else {
                    s += expf(v - m);  // NaN logits end up here and make s NaN
                }
            }
            for (int offset = 16; offset > 0; offset /= 2) {
                const float m2 = __shfl_xor_sync(kFullMask, m, offset);
                const float s2 = __shfl_xor_sync(kFullMask, s, offset);
                const float mm = fmaxf(m, m2);
                // A lane with no columns has m = -inf and s = 0: it adds nothing.
                s = (m == -INFINITY ? 0.0f : s * expf(m - mm)) + (m2 == -INFINITY ? 0.0f : s2 * expf(m2 - mm));
                m = mm;
            }
            // log p_j = (x_j - m) - log(s): never form m + log(s), which loses log(s) when |m|
            // is large (ulp(1e4) ~ 1e-3), and x_j - m is exact when x_j is near m.
            const float log_s = logf(s);
            const float logp = (xy - m) - log_s;
            const float py = expf(logp);
            const float q = -expm1f(logp);
            const float qg = pow_nonneg(q, a.gamma);
            const float r = q > 0.0f ? logp / q : -1.0f;
            const float alpha = a.alpha_per_class ? a.alpha_per_class[label] : a.alpha_pos;
            const float coef = alpha * qg * (a.gamma * py * r - 1.0f);
            const float loss = -alpha * qg * logp;
            const float gscale = scale * a.upstream;
            for (uint32_t j = lane; j < classes; j += 32) {
                const float pj = expf((to_f32(logits[base + j]) - m) - log_s);
                const float delta = j == uint32_t(label) ? 1.0f : 0.0f;
                if (grad) grad[base + j] = from_f32<G>(coef * (delta - pj) * gscale);
                if (a.elementwise) a.elementwise[base + j] = j == uint32_t(label) ? loss : 0.0f;
            }
            if (lane == 0) acc += double(loss) * double(scale);
        }
    }
    const double total = block_sum(acc);
    if (threadIdx.x == 0) a.partials[blockIdx.x] = total;
}

}  // namespace focal

#define FOCAL_SOFTMAX_ENTRY(T, tname, G, gname)                                              \
    extern "C" __global__ void __launch_bounds__(focal::kBlock)                              \
        focal_softmax_##tname##_##gname(const focal::LossArgs args) {                        \
        focal::softmax_focal<T, G>(args);                                                    \
    }                                                                                        \
    FOCAL_REGISTER(focal_softmax_##tname##_##gname)

FOCAL_SOFTMAX_ENTRY(float, f32, float, f32)
FOCAL_SOFTMAX_ENTRY(__half, f16, __half, f16)
FOCAL_SOFTMAX_ENTRY(__half, f16, float, f32)
FOCAL_SOFTMAX_ENTRY(__nv_bfloat16, bf16, __nv_bfloat16, bf16)
FOCAL_SOFTMAX_ENTRY(__nv_bfloat16, bf16, float, f32)
