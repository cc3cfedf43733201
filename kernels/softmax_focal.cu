// Softmax focal loss, fused forward and backward, one warp per row. As in
// focal_core::reference::softmax_focal_row, in f32, for a row with label y:
//   L = -a_y (1 - p_y)^gamma log p_y,
//   dL/dx_j = G (delta_jy - p_j),  G = a_y q^gamma (gamma p_y (log p_y / q) - 1),
//   q = 1 - p_y = others / (e_y + others), log p_y / q -> -1 as q -> 0.
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
            const float scale = a.scale ? a.scale[fast_div(row, a.rows_per_image_magic)] : a.uniform_scale;
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
            // Online max and sum of exponentials over the other classes (the label's column is
            // kept apart, as in the reference, so q = 1 - p_y needs no subtraction), per lane,
            // then across lanes.
            float m = -INFINITY, s = 0.0f;
            for (uint32_t j = lane; j < classes; j += 32) {
                if (j == uint32_t(label)) continue;
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
                s = (m == -INFINITY ? 0.0f : s * expf(m - mm)) +
                    (m2 == -INFINITY ? 0.0f : s2 * expf(m2 - mm));
                m = mm;
            }
            // p_y = e_y / (e_y + others), everything relative to the row's max mx.
            const float mx = fmaxf(m, xy);
            const float e_y = expf(xy - mx);
            const float others = m == -INFINITY ? 0.0f : s * expf(m - mx);
            const float sum = e_y + others;
            // log p_y = -log1p(others / e_y) is exact as p_y -> 1; where p_y < 1/2 use
            // (x_y - mx) - log(sum), which is exact there and finite when e_y underflows.
            const float logp = others <= e_y ? -log1pf(others / e_y) : (xy - mx) - logf(sum);
            const float py = e_y / sum;
            const float q = others / sum;
            const float qg = pow_nonneg(q, a.gamma);
            const float r = q > 0.0f ? logp / q : -1.0f;
            const float alpha = a.alpha_per_class ? a.alpha_per_class[label] : a.alpha_pos;
            const float coef = alpha * qg * (a.gamma * py * r - 1.0f);
            const float loss = -alpha * qg * logp;
            const float gscale = scale * a.upstream;
            for (uint32_t j = lane; j < classes; j += 32) {
                const bool is_label = j == uint32_t(label);
                const float g = is_label ? coef * q : -coef * (expf(to_f32(logits[base + j]) - mx) / sum);
                if (grad) grad[base + j] = from_f32<G>(g * gscale);
                if (a.elementwise) a.elementwise[base + j] = is_label ? loss : 0.0f;
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
