// The driver shared by every elementwise loss (sigmoid focal with sparse labels or dense targets,
// varifocal, quality focal): one fused pass that reads each logit once, writes its gradient
// once (already scaled by the normaliser and the upstream gradient) and leaves one loss partial
// per block.
//
// Work split, fixed by the shape alone so that every run sums in the same order: the flat
// [rows * classes] array is cut into packs of 16 bytes of input (4 f32 or 8 half elements),
// tiles are kBlock * kPacksPerThread packs, blocks walk tiles with a grid stride, and the last
// numel % pack elements (the tail) go to the first threads of block 0. Each thread adds its
// elements into an f64 accumulator in that order; block_sum then reduces in a fixed tree. When
// any buffer is not 16-byte aligned the same walk runs with scalar loads and stores, so both
// paths produce bit-identical results.
#pragma once

#include "focal_common.cuh"

namespace focal {

constexpr int kPacksPerThread = 4;

// How an Op's whole packs (vector I/O, C >= the pack size) are computed: element by element
// (finish_elements, every Op's path for the rest), or by variant v4's branch-free pack path
// (finish_pack_two_rows), or by v6's all-background fast path in front of v4's
// (finish_pack_labelled, on v6's own walk, elementwise_loss_staged). Sparse Ops only for the
// last two.
enum class PackPath { kElements, kTwoRows, kBackgroundFirst };

// What an element needs from its row; refreshed only when the walk enters a new row.
struct RowCtx {
    uint32_t row;
    int32_t label;   // sparse losses only
    float weight;    // per-row weight, else 1
    float scale;     // loss factor of the row's image
    float gscale;    // scale * upstream: the gradient factor
};

__device__ __forceinline__ void enter_row(const LossArgs& a, uint32_t row, bool sparse, RowCtx& r) {
    r.row = row;
    r.label = sparse ? a.labels[row] : 0;
    r.weight = a.weight_mode == kWeightPerRow ? a.weights[row] : 1.0f;
    r.scale = a.scale ? a.scale[fast_div(row, a.rows_per_image_magic)] : a.uniform_scale;
    r.gscale = r.scale * a.upstream;
}

// Loss and gradient of one element with weights applied, before scaling. `Op` supplies
// `kSparse` and either `sparse(a, x, positive, c)` or `dense(a, x, t, c)`.
template <class Op>
__device__ __forceinline__ LossGrad eval_element(const LossArgs& a, float x, float t, uint32_t i,
                                                 uint32_t c, const RowCtx& r) {
    // An ignored anchor contributes nothing, even with a NaN logit (focal-core's rule).
    if constexpr (Op::kSparse) {
        if (r.label == kIgnore) return {0.0f, 0.0f};
    }
    if (x != x) return {nan_f32(), nan_f32()};
    if constexpr (Op::kSparse) {
        if (r.label < kIgnore || r.label >= int(a.classes)) {
            if (c == 0) atomicMin(a.first_bad_row, r.row);
            return {nan_f32(), nan_f32()};
        }
        return Op::sparse(a, x, r.label == int(c), c);
    } else {
        LossGrad lg = Op::dense(a, x, t, c);
        const float w = a.weight_mode == kWeightPerElement ? a.weights[i] : r.weight;
        if (w != 1.0f) {
            lg.loss *= w;
            lg.grad *= w;
        }
        return lg;
    }
}

template <class G, int N>
__device__ __forceinline__ void store_pack(const LossArgs& a, uint32_t first, int count,
                                           const float (&g)[N], const float (&l)[N], bool vector_io);

// Processes `count` consecutive elements starting at flat index `first`, whose logits (and
// targets) are already in registers; stores their gradients and adds their scaled losses: in f32
// over the pack (at most 8 positive terms), then once into the thread's f64 sum, since an
// f32 -> f64 conversion costs as much as 8 f32 operations on sm_80 and sm_90.
template <class Op, class T, class G, int N>
__device__ __forceinline__ void finish_elements(const LossArgs& a, uint32_t first, int count,
                                                const float (&x)[N], const float (&t)[N],
                                                bool vector_io, RowCtx& r, double& acc) {
    uint32_t row = fast_div(first, a.classes_magic);
    uint32_t c = first - row * a.classes;
    if (row != r.row) enter_row(a, row, Op::kSparse, r);
    float g[N], l[N];
    float pack_loss = 0.0f;
#pragma unroll
    for (int j = 0; j < N; ++j) {
        if (j < count) {
            const LossGrad lg = eval_element<Op>(a, x[j], t[j], first + j, c, r);
            pack_loss += lg.loss * r.scale;
            g[j] = lg.grad * r.gscale;
            l[j] = lg.loss;
            if (++c == a.classes && j + 1 < count) {
                c = 0;
                enter_row(a, ++row, Op::kSparse, r);
            }
        }
    }
    acc += double(pack_loss);
    store_pack<G, N>(a, first, count, g, l, vector_io);
}

// Stores the gradients and elementwise losses of `count` elements from flat index `first`.
template <class G, int N>
__device__ __forceinline__ void store_pack(const LossArgs& a, uint32_t first, int count,
                                           const float (&g)[N], const float (&l)[N], bool vector_io) {
    if (vector_io && count == N) {
        if (a.grad) {
            constexpr int kG = Pack<G>::kCount;
#pragma unroll
            for (int j = 0; j < N; j += kG) {
                Pack<G> out;
#pragma unroll
                for (int k = 0; k < kG; ++k) out.v[k] = from_f32<G>(g[j + k]);
                reinterpret_cast<Pack<G>*>(static_cast<G*>(a.grad) + first)[j / kG] = out;
            }
        }
        if (a.elementwise) {
#pragma unroll
            for (int j = 0; j < N; j += 4)
                reinterpret_cast<float4*>(a.elementwise + first)[j / 4] =
                    make_float4(l[j], l[j + 1], l[j + 2], l[j + 3]);
        }
    } else {
#pragma unroll
        for (int j = 0; j < N; ++j) {
            if (j < count) {
                if (a.grad) static_cast<G*>(a.grad)[first + j] = from_f32<G>(g[j]);
                if (a.elementwise) a.elementwise[first + j] = l[j];
            }
        }
    }
}

// Loss factor of a row's image.
__device__ __forceinline__ float row_scale(const LossArgs& a, uint32_t row) {
    return a.scale ? a.scale[fast_div(row, a.rows_per_image_magic)] : a.uniform_scale;
}

// The rows a whole pack with C >= N touches: at most two, since it holds at most C elements.
// Elements j < split belong to row0; the rest (if any) to row0 + 1, which exists because the
// pack is whole.
struct PackRows {
    uint32_t row0, c0, split;
    bool two;
    int32_t label0, label1;
    float scale0, scale1;
};

template <int N>
__device__ __forceinline__ PackRows pack_rows(const LossArgs& a, uint32_t first) {
    PackRows p;
    p.row0 = fast_div(first, a.classes_magic);
    p.c0 = first - p.row0 * a.classes;
    p.split = a.classes - p.c0;
    p.two = p.split < uint32_t(N);
    p.label0 = a.labels[p.row0];
    p.label1 = p.two ? a.labels[p.row0 + 1] : p.label0;
    p.scale0 = row_scale(a, p.row0);
    p.scale1 = p.two ? row_scale(a, p.row0 + 1) : p.scale0;
    return p;
}

// Variant v4 of the sparse losses (kernels/README.md), for a whole pack with C >= N: each
// element's label, class and scale are selects between the pack's first row and the next, the
// label checks are made once per row, and the element math has no branches, which lets the
// compiler interleave the N elements. Same results as finish_elements with the same Op: the
// same per-element function, the same order of the f32 pack sum.
template <class Op, class G, int N>
__device__ __forceinline__ void finish_pack_rows(const LossArgs& a, uint32_t first, const PackRows& p,
                                                 const float (&x)[N], double& acc) {
    // The gradient factors once per row, as enter_row's gscale.
    const float gscale0 = p.scale0 * a.upstream;
    const float gscale1 = p.scale1 * a.upstream;
    const int classes = int(a.classes);
    const bool bad0 = p.label0 < kIgnore || p.label0 >= classes;
    const bool bad1 = p.label1 < kIgnore || p.label1 >= classes;
    // Flagged by the thread holding class 0 of the row, as in eval_element.
    if (bad0 && p.c0 == 0) atomicMin(a.first_bad_row, p.row0);
    if (p.two && bad1) atomicMin(a.first_bad_row, p.row0 + 1);
    float g[N], l[N];
    float pack_loss = 0.0f;
#pragma unroll
    for (int j = 0; j < N; ++j) {
        const bool in0 = uint32_t(j) < p.split;
        const int32_t label = in0 ? p.label0 : p.label1;
        const int c = in0 ? int(p.c0) + j : int(p.c0) + j - classes;
        const float scale = in0 ? p.scale0 : p.scale1;
        const float gscale = in0 ? gscale0 : gscale1;
        LossGrad lg = Op::sparse(a, x[j], label == c, uint32_t(c));
        const bool nan_out = (in0 ? bad0 : bad1) || x[j] != x[j];
        lg.loss = nan_out ? nan_f32() : lg.loss;
        lg.grad = nan_out ? nan_f32() : lg.grad;
        lg.loss = label == kIgnore ? 0.0f : lg.loss;
        lg.grad = label == kIgnore ? 0.0f : lg.grad;
        pack_loss += lg.loss * scale;
        g[j] = lg.grad * gscale;
        l[j] = lg.loss;
    }
    acc += double(pack_loss);
    store_pack<G, N>(a, first, N, g, l, true);
}

template <class Op, class G, int N>
__device__ __forceinline__ void finish_pack_two_rows(const LossArgs& a, uint32_t first,
                                                     const float (&x)[N], double& acc) {
    finish_pack_rows<Op, G, N>(a, first, pack_rows<N>(a, first), x, acc);
}

// Where the image a thread's packs were last in ends (a flat element index) and its loss
// factor: variant v6 looks the scale up once per image instead of once per pack. A thread's
// packs come in increasing order, so the end alone tells when a pack has left the image.
struct ImageCtx {
    uint32_t end;
    float scale;
};

__device__ __forceinline__ ImageCtx first_image(const LossArgs& a) {
    // With one factor for every image, one image spans everything and never needs a refresh;
    // otherwise end = 0 makes the first pack look its image up.
    if (a.scale) return {0u, 0.0f};
    return {uint32_t(a.numel), a.uniform_scale};
}

// The image of row `row`, when a.scale holds one factor per image.
__device__ __forceinline__ ImageCtx image_of_row(const LossArgs& a, uint32_t row) {
    const uint32_t rows_per_image = uint32_t(a.rows_per_image);
    const uint32_t image = rows_per_image == 1 ? row : fast_div_nonunit(row, a.rows_per_image_magic);
    return {(image + 1) * rows_per_image * a.classes, a.scale[image]};
}

// The row and labels of a whole pack with C >= N > 1 (classes_magic is not 0 then), read before
// its logits are needed: variant v6 loads them a pack ahead.
struct PackLabels {
    uint32_t row0;
    bool two;  // the pack reaches into row0 + 1
    int32_t label0, label1;
};

template <int N>
__device__ __forceinline__ PackLabels pack_labels(const LossArgs& a, uint32_t first) {
    PackLabels p;
    p.row0 = fast_div_nonunit(first, a.classes_magic);
    const uint32_t c0 = first - p.row0 * a.classes;
    p.two = a.classes - c0 < uint32_t(N);
    const int32_t* labels = a.labels + p.row0;
    p.label0 = labels[0];
    p.label1 = p.two ? labels[1] : p.label0;
    return p;
}

// Variant v6's pack path (kernels/README.md; introduced with v5), for a whole pack with C >= N:
// when every row of the pack is background and the pack lies in one image (RetinaNet's common
// case), the elements go through Op::sparse as negatives with nothing else: no label, class,
// scale, ignore, bad-label or NaN selects, and the scale comes from the image context. A NaN
// logit makes its loss NaN and so the pack's loss sum; such a pack, like every pack with another
// label or across images, takes finish_pack_rows instead. So the results are those of
// finish_elements with the same Op, bit for bit: the fast path computes the same per-element
// function of the same operands (the row's scale, the same gradient factor), in the same order
// of the pack sum.
template <class Op, class G, int N>
__device__ __forceinline__ void finish_pack_labelled(const LossArgs& a, uint32_t first, const PackLabels& p,
                                                     const float (&x)[N], ImageCtx& image, double& acc) {
    if (first >= image.end) image = image_of_row(a, p.row0);
    const bool one_image = first + uint32_t(N) <= image.end;
    // -1 has every bit set: both labels are background when their AND is.
    if ((p.label0 & p.label1) == kBackground && one_image) {
        const float scale = image.scale;
        const float gscale = scale * a.upstream;
        float g[N], l[N];
        float pack_loss = 0.0f;
#pragma unroll
        for (int j = 0; j < N; ++j) {
            const LossGrad lg = Op::sparse(a, x[j], false, 0);
            pack_loss += lg.loss * scale;
            g[j] = lg.grad * gscale;
            l[j] = lg.loss;
        }
        if (pack_loss == pack_loss) {
            acc += double(pack_loss);
            store_pack<G, N>(a, first, N, g, l, true);
            return;
        }
    }
    finish_pack_rows<Op, G, N>(a, first, pack_rows<N>(a, first), x, acc);
}

// Whether every buffer of an elementwise loss allows 16-byte vector loads and stores.
template <bool kDense>
__device__ __forceinline__ bool vector_io_ok(const LossArgs& a) {
    return aligned16(a.logits) && (!a.grad || aligned16(a.grad)) && (!kDense || aligned16(a.targets)) &&
           (a.weight_mode != kWeightPerElement || aligned16(a.weights)) &&
           (!a.elementwise || aligned16(a.elementwise));
}

// The tail: the fewer than M elements after the last whole step of M (a pack, or v7's two),
// one per thread of block 0, after the thread's steps.
template <class Op, class T, class G, int M = Pack<T>::kCount>
__device__ __forceinline__ void elementwise_tail(const LossArgs& a, uint32_t steps, RowCtx& r, double& acc) {
    const T* logits = static_cast<const T*>(a.logits);
    const uint32_t tail_first = steps * M;
    if (blockIdx.x == 0 && threadIdx.x < uint32_t(a.numel) - tail_first) {
        const uint32_t i = tail_first + threadIdx.x;
        float x[M], t[M];
        x[0] = to_f32(logits[i]);
        t[0] = Op::kSparse ? 0.0f : a.targets[i];
#pragma unroll
        for (int j = 1; j < M; ++j) x[j] = t[j] = 0.0f;
        finish_elements<Op, T, G, M>(a, i, 1, x, t, false, r, acc);
    }
}

template <class Op, class T, class G>
__device__ __forceinline__ void elementwise_loss(const LossArgs& a) {
    constexpr int N = Pack<T>::kCount;
    constexpr uint32_t kTile = uint32_t(kBlock) * kPacksPerThread;
    const T* logits = static_cast<const T*>(a.logits);
    const uint32_t numel = uint32_t(a.numel);
    const uint32_t packs = numel / N;
    const uint32_t tiles = (packs + kTile - 1) / kTile;
    const bool dense = !Op::kSparse;
    const bool vector_io = vector_io_ok<!Op::kSparse>(a);
    static_assert(Op::kPackPath != PackPath::kBackgroundFirst, "v6's Op runs on elementwise_loss_staged");
    double acc = 0.0;
    RowCtx r;
    r.row = 0xffffffffu;
    for (uint32_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        // All loads of the tile first: the gradient may be written over the logits, so the
        // compiler could not move later loads above earlier stores by itself.
        float x[kPacksPerThread][N], t[kPacksPerThread][N];
#pragma unroll
        for (int k = 0; k < kPacksPerThread; ++k) {
            const uint32_t pack = tile * kTile + k * kBlock + threadIdx.x;
            if (pack < packs) {
                const uint32_t first = pack * N;
                if (vector_io) {
                    const Pack<T> in = reinterpret_cast<const Pack<T>*>(logits)[pack];
#pragma unroll
                    for (int j = 0; j < N; ++j) x[k][j] = to_f32(in.v[j]);
                    if (dense) {
#pragma unroll
                        for (int j = 0; j < N; j += 4) {
                            const float4 v = reinterpret_cast<const float4*>(a.targets + first)[j / 4];
                            t[k][j] = v.x, t[k][j + 1] = v.y, t[k][j + 2] = v.z, t[k][j + 3] = v.w;
                        }
                    }
                } else {
#pragma unroll
                    for (int j = 0; j < N; ++j) {
                        x[k][j] = to_f32(logits[first + j]);
                        t[k][j] = dense ? a.targets[first + j] : 0.0f;
                    }
                }
                if (!dense) {
#pragma unroll
                    for (int j = 0; j < N; ++j) t[k][j] = 0.0f;
                }
            }
        }
#pragma unroll
        for (int k = 0; k < kPacksPerThread; ++k) {
            const uint32_t pack = tile * kTile + k * kBlock + threadIdx.x;
            if (pack < packs) {
                if constexpr (Op::kPackPath == PackPath::kTwoRows) {
                    if (vector_io && a.classes >= uint32_t(N)) {
                        finish_pack_two_rows<Op, G, N>(a, pack * N, x[k], acc);
                        continue;
                    }
                }
                finish_elements<Op, T, G, N>(a, pack * N, N, x[k], t[k], vector_io, r, acc);
            }
        }
    }
    elementwise_tail<Op, T, G>(a, packs, r, acc);
    const double total = block_sum(acc);
    if (threadIdx.x == 0) a.partials[blockIdx.x] = total;
}

// Variant v6 (kernels/README.md) of the sparse losses: the all-background pack path
// (finish_pack_labelled) on a walk that keeps the loads of the next kStages - 1 packs in flight
// while a pack is computed. Its predecessor v5 (the same pack path on the tile walk of
// elementwise_loss) loaded a tile, waited, computed it and ended its block: a block's memory and
// arithmetic did not overlap, and both the logits' latency and the block's start and final sum
// were paid per 16 elements a thread (f32). Here a stage is one step per thread (kBlock steps;
// a step is one pack in v6, two consecutive packs in v7, computed as one pack of M elements),
// blocks walk stages with a grid stride (the host caps the grid, so each block takes many), and
// each thread copies its step of a later stage into its own slot of a shared-memory ring with
// cp.async while it computes the current one; the labels of its next step are read a step ahead
// too. Each thread reads back only its own slots, so there is no barrier in the loop.
//
// The same walk runs with scalar loads when a buffer is not 16-byte aligned (finish_elements on
// every step, as the tile walk's scalar path), so both give the same bits; the per-thread order
// of the loss sum is its stages in order, then its tail element.
template <class Op, class T, class G, int kStages, int kPacks>
__device__ __forceinline__ void elementwise_loss_staged(const LossArgs& a) {
    static_assert(Op::kSparse && Op::kPackPath == PackPath::kBackgroundFirst, "v6 walks the all-background pack path");
    static_assert((kStages & (kStages - 1)) == 0 && kStages >= 2, "a ring of a power of two slots");
    constexpr int N = Pack<T>::kCount;
    // A step is kPacks consecutive packs of a thread (v6: 1, v7: 2), M elements.
    constexpr int M = N * kPacks;
    __shared__ Pack<T> ring[kStages][kPacks][kBlock];
    const T* logits = static_cast<const T*>(a.logits);
    const Pack<T>* logit_packs = reinterpret_cast<const Pack<T>*>(logits);
    const uint32_t steps = uint32_t(a.numel) / M;
    // This thread's steps: first_step + k stride, for k = 0, 1, ... while below `steps` (no
    // overflow: steps < 2^30 and kStages stride < 2^27).
    const uint32_t stride = gridDim.x * uint32_t(kBlock);
    const uint32_t first_step = blockIdx.x * uint32_t(kBlock) + threadIdx.x;
    const bool vector_io = vector_io_ok<false>(a);
    const bool pack_path = vector_io && a.classes >= uint32_t(M);
    double acc = 0.0;
    RowCtx r;
    r.row = 0xffffffffu;
    ImageCtx image = first_image(a);
    float zeros[M];
#pragma unroll
    for (int j = 0; j < M; ++j) zeros[j] = 0.0f;
    if (pack_path) {
        // Slot s, pack p of this thread is at slots + s * kSlotBytes + p * kPackBytes (the
        // threads' packs side by side, so a warp's shared loads do not conflict). Every
        // iteration commits a group (maybe empty), so "all but kStages - 1 groups done" means
        // "this step's".
        constexpr uint32_t kPackBytes = uint32_t(kBlock) * sizeof(Pack<T>);
        constexpr uint32_t kSlotBytes = kPackBytes * kPacks;
        const SharedAddr slots = shared_addr(&ring[0][0][threadIdx.x]);
        uint32_t ahead = first_step;
#pragma unroll
        for (int s = 0; s < kStages - 1; ++s) {
            if (ahead < steps) {
#pragma unroll
                for (int p = 0; p < kPacks; ++p)
                    cp_async16(slots + s * kSlotBytes + p * kPackBytes, logit_packs + ahead * kPacks + p);
            }
            cp_async_commit();
            ahead += stride;
        }
        PackLabels next{};
        if (first_step < steps) next = pack_labels<M>(a, first_step * M);
        uint32_t k = 0;
        for (uint32_t step = first_step; step < steps; step += stride, ahead += stride, ++k) {
            if (ahead < steps) {
                const SharedAddr slot = slots + ((k + kStages - 1) % kStages) * kSlotBytes;
#pragma unroll
                for (int p = 0; p < kPacks; ++p)
                    cp_async16(slot + p * kPackBytes, logit_packs + ahead * kPacks + p);
            }
            cp_async_commit();
            const PackLabels labels = next;
            if (step + stride < steps) next = pack_labels<M>(a, (step + stride) * M);
            cp_async_wait<kStages - 1>();
            float x[M];
#pragma unroll
            for (int p = 0; p < kPacks; ++p) {
                Pack<T> in;
                ld_shared16(&in, slots + (k % kStages) * kSlotBytes + p * kPackBytes);
#pragma unroll
                for (int j = 0; j < N; ++j) x[p * N + j] = to_f32(in.v[j]);
            }
            finish_pack_labelled<Op, G, M>(a, step * M, labels, x, image, acc);
        }
        cp_async_wait<0>();
    } else {
        for (uint32_t step = first_step; step < steps; step += stride) {
            const uint32_t first = step * M;
            float x[M];
            if (vector_io) {
#pragma unroll
                for (int p = 0; p < kPacks; ++p) {
                    const Pack<T> in = logit_packs[step * kPacks + p];
#pragma unroll
                    for (int j = 0; j < N; ++j) x[p * N + j] = to_f32(in.v[j]);
                }
            } else {
#pragma unroll
                for (int j = 0; j < M; ++j) x[j] = to_f32(logits[first + j]);
            }
            finish_elements<Op, T, G, M>(a, first, M, x, zeros, vector_io, r, acc);
        }
    }
    elementwise_tail<Op, T, G, M>(a, steps, r, acc);
    const double total = block_sum(acc);
    if (threadIdx.x == 0) a.partials[blockIdx.x] = total;
}

}  // namespace focal

// One extern "C" entry point per (loss, input type, gradient type), named
// focal_<loss>_<input>_<grad>, for example focal_sigmoid_sparse_bf16_f32.
// `min_blocks`: the blocks per multiprocessor asked of ptxas (__launch_bounds__), which caps the
// registers at 65536 / (256 * min_blocks).
#define FOCAL_ELEMENTWISE_ENTRY_BOUNDS(loss, Op, T, tname, G, gname, min_blocks)                \
    extern "C" __global__ void __launch_bounds__(focal::kBlock, min_blocks)                     \
        focal_##loss##_##tname##_##gname(const focal::LossArgs args) {                          \
        focal::elementwise_loss<Op, T, G>(args);                                                \
    }                                                                                           \
    FOCAL_REGISTER(focal_##loss##_##tname##_##gname)

// Variant v6's and v7's entry points: the staged walk with a ring of `stages` steps of `packs`
// packs per thread.
#define FOCAL_STAGED_ENTRY_BOUNDS(loss, Op, T, tname, G, gname, min_blocks, stages, packs)       \
    extern "C" __global__ void __launch_bounds__(focal::kBlock, min_blocks)                     \
        focal_##loss##_##tname##_##gname(const focal::LossArgs args) {                          \
        focal::elementwise_loss_staged<Op, T, G, stages, packs>(args);                          \
    }                                                                                           \
    FOCAL_REGISTER(focal_##loss##_##tname##_##gname)

#define FOCAL_ELEMENTWISE_ENTRY(loss, Op, T, tname, G, gname) \
    FOCAL_ELEMENTWISE_ENTRY_BOUNDS(loss, Op, T, tname, G, gname, 2)

// The five (input, gradient) pairs: gradient in the input type, or f32 for half inputs.
#define FOCAL_ELEMENTWISE_ENTRIES(loss, Op)                                  \
    FOCAL_ELEMENTWISE_ENTRY(loss, Op, float, f32, float, f32)                \
    FOCAL_ELEMENTWISE_ENTRY(loss, Op, __half, f16, __half, f16)              \
    FOCAL_ELEMENTWISE_ENTRY(loss, Op, __half, f16, float, f32)               \
    FOCAL_ELEMENTWISE_ENTRY(loss, Op, __nv_bfloat16, bf16, __nv_bfloat16, bf16) \
    FOCAL_ELEMENTWISE_ENTRY(loss, Op, __nv_bfloat16, bf16, float, f32)
