// The small kernels around the fused losses: foreground counts and normalisers computed on the
// GPU from the labels (so a trainer needs no host synchronisation), and the fixed-order final
// sum of the per-block loss partials (bit-identical on every run: no float atomics).
#include "focal_common.cuh"

namespace focal {

// Field order mirrors `ReduceArgs` in crates/focal-cuda/src/args.rs.
struct ReduceArgs {
    const int32_t* labels;    // [images * rows_per_image]
    uint32_t* counts;         // [images]: foreground counts, zeroed before focal_count_foreground
    float* scale;             // [images]: written by focal_normalizers
    const double* partials;   // [num_partials]
    double* loss;             // [1]: the reduced loss in f64
    float* loss_f32;          // nullptr or [1]: the same, rounded to f32
    uint64_t rows_per_image;  // A
    uint32_t images;          // B
    uint32_t num_partials;
    uint32_t classes;         // C: labels in 0..C count as foreground
    uint32_t mode;            // kPerImage or kPerBatch
};

// ReduceArgs::mode: kPerImage is torchvision's sum_b L_b / max(1, fg_b) / B; any other value
// is one normaliser for the batch, sum L / max(1, fg) (mmdetection, detectron2).
constexpr uint32_t kPerImage = 0;

constexpr uint32_t kCountRowsPerThread = 16;

// Grid (ceil(A / (kBlock * kCountRowsPerThread)), B). Integer atomics: the order does not matter.
__device__ __forceinline__ void count_foreground(const ReduceArgs& a) {
    const uint32_t image = blockIdx.y;
    const uint32_t per_image = uint32_t(a.rows_per_image);
    const int32_t* labels = a.labels + uint64_t(image) * per_image;
    uint32_t n = 0;
    const uint32_t first = blockIdx.x * kBlock * kCountRowsPerThread + threadIdx.x;
    for (uint32_t k = 0; k < kCountRowsPerThread; ++k) {
        const uint32_t row = first + k * kBlock;
        if (row < per_image) {
            const int32_t l = labels[row];
            n += (l >= 0 && l < int32_t(a.classes)) ? 1u : 0u;
        }
    }
    for (int offset = 16; offset > 0; offset /= 2) n += __shfl_xor_sync(kFullMask, n, offset);
    if (threadIdx.x % 32 == 0 && n > 0) atomicAdd(&a.counts[image], n);
}

// One thread: B is small, and a fixed loop keeps the batch sum's order fixed.
__device__ __forceinline__ void normalizers(const ReduceArgs& a) {
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    if (a.mode == kPerImage) {
        for (uint32_t b = 0; b < a.images; ++b) {
            const double n = double(a.counts[b] > 0 ? a.counts[b] : 1u) * double(a.images);
            a.scale[b] = float(1.0 / n);
        }
    } else {
        uint64_t total = 0;
        for (uint32_t b = 0; b < a.images; ++b) total += a.counts[b];
        const float s = float(1.0 / double(total > 0 ? total : 1));
        for (uint32_t b = 0; b < a.images; ++b) a.scale[b] = s;
    }
}

// One block: thread t sums partials t, t + kBlock, ... in order, then the fixed block tree.
__device__ __forceinline__ void reduce_partials(const ReduceArgs& a) {
    double v = 0.0;
    for (uint32_t i = threadIdx.x; i < a.num_partials; i += kBlock) v += a.partials[i];
    const double total = block_sum(v);
    if (threadIdx.x == 0) {
        a.loss[0] = total;
        if (a.loss_f32) a.loss_f32[0] = float(total);
    }
}

}  // namespace focal

extern "C" __global__ void __launch_bounds__(focal::kBlock)
    focal_count_foreground(const focal::ReduceArgs args) {
    focal::count_foreground(args);
}
FOCAL_REGISTER(focal_count_foreground)

extern "C" __global__ void __launch_bounds__(focal::kBlock)
    focal_normalizers(const focal::ReduceArgs args) {
    focal::normalizers(args);
}
FOCAL_REGISTER(focal_normalizers)

extern "C" __global__ void __launch_bounds__(focal::kBlock)
    focal_reduce_partials(const focal::ReduceArgs args) {
    focal::reduce_partials(args);
}
FOCAL_REGISTER(focal_reduce_partials)
