// CPU emulation of the CUDA execution model, just enough for the kernels in this folder.
//
// The kernel sources compile unchanged as host C++ (g++, C++20) with the CUDA headers of the
// pinned toolchain (cuda_fp16.h and cuda_bf16.h have host implementations). A launch runs the
// grid's blocks one after another; every block is run by blockDim.x real threads, so
// `__syncthreads` is a real barrier and `__shared__` variables (function statics here) are
// shared by the threads of the running block. Warp shuffles and votes go through a per-warp
// exchange slot array between two warp barriers, which is how a warp behaves when all its lanes
// take part (the kernels here always call them with a full mask, and this header checks that).
//
// Limits, on purpose: one-dimensional blocks whose size is a multiple of 32, no dynamic shared
// memory, one launch at a time (launches are serialised by the caller, see emulation_main.cpp).
#pragma once

#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <vector_types.h>

#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

// What nvcc gives kernels, mapped onto host C++.
#undef __shared__
#define __shared__ static
#undef __launch_bounds__
#define __launch_bounds__(...)

namespace focal_emu {

struct BlockState {
    explicit BlockState(unsigned threads)
        : block_barrier(threads), warps(threads / 32) {
        for (auto& w : warps) w = std::make_unique<Warp>();
    }
    struct Warp {
        std::barrier<> barrier{32};
        uint64_t slots[32] = {};
    };
    std::barrier<> block_barrier;
    std::vector<std::unique_ptr<Warp>> warps;
    std::atomic<int> count{0};
};

inline thread_local uint3 tls_thread_idx;
inline thread_local uint3 tls_block_idx;
inline dim3 g_block_dim;
inline dim3 g_grid_dim;
inline BlockState* g_block = nullptr;

[[noreturn]] inline void fail(const char* what) {
    std::fprintf(stderr, "cuda emulation: %s\n", what);
    std::abort();
}

inline unsigned lane() { return tls_thread_idx.x % 32; }
inline BlockState::Warp& warp() { return *g_block->warps[tls_thread_idx.x / 32]; }

inline void check_full(unsigned mask) {
    if (mask != 0xffffffffu) fail("warp intrinsics are emulated for a full mask only");
}

// Every lane publishes `v`, then reads the slot of lane `src` (its own when src is out of range,
// as on the hardware for shfl_down/up past the edge).
template <class T>
T exchange(T v, int src) {
    static_assert(sizeof(T) <= 8, "shuffles move at most 64 bits");
    auto& w = warp();
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    w.slots[lane()] = bits;
    w.barrier.arrive_and_wait();
    uint64_t got = w.slots[(src >= 0 && src < 32) ? src : lane()];
    w.barrier.arrive_and_wait();
    T out;
    std::memcpy(&out, &got, sizeof(T));
    return out;
}

// Runs `kernel()` over the grid: blocks in order, each by block.x real threads.
template <class F>
void launch(dim3 grid, dim3 block, F&& kernel) {
    if (block.y != 1 || block.z != 1 || block.x == 0 || block.x % 32 != 0)
        fail("blocks must be one-dimensional with a multiple of 32 threads");
    g_grid_dim = grid;
    g_block_dim = block;
    BlockState state(block.x);
    g_block = &state;
    std::vector<std::thread> threads;
    threads.reserve(block.x);
    for (unsigned t = 0; t < block.x; ++t) {
        threads.emplace_back([&, t] {
            tls_thread_idx = uint3{t, 0, 0};
            for (unsigned z = 0; z < grid.z; ++z)
                for (unsigned y = 0; y < grid.y; ++y)
                    for (unsigned x = 0; x < grid.x; ++x) {
                        tls_block_idx = uint3{x, y, z};
                        kernel();
                        // The next block reuses the statics that stand for shared memory.
                        state.block_barrier.arrive_and_wait();
                    }
        });
    }
    for (auto& th : threads) th.join();
    g_block = nullptr;
}

}  // namespace focal_emu

#define threadIdx (focal_emu::tls_thread_idx)
#define blockIdx (focal_emu::tls_block_idx)
#define blockDim (focal_emu::g_block_dim)
#define gridDim (focal_emu::g_grid_dim)

inline void __syncthreads() { focal_emu::g_block->block_barrier.arrive_and_wait(); }

inline int __syncthreads_count(int predicate) {
    auto* b = focal_emu::g_block;
    b->block_barrier.arrive_and_wait();
    if (predicate) b->count.fetch_add(1);
    b->block_barrier.arrive_and_wait();
    int n = b->count.load();
    b->block_barrier.arrive_and_wait();
    if (threadIdx.x == 0) b->count.store(0);
    b->block_barrier.arrive_and_wait();
    return n;
}

template <class T>
T __shfl_sync(unsigned mask, T v, int src) {
    focal_emu::check_full(mask);
    return focal_emu::exchange(v, src & 31);
}
template <class T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
    focal_emu::check_full(mask);
    return focal_emu::exchange(v, int(focal_emu::lane()) ^ lane_mask);
}
template <class T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta) {
    focal_emu::check_full(mask);
    return focal_emu::exchange(v, int(focal_emu::lane() + delta));
}
template <class T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta) {
    focal_emu::check_full(mask);
    return focal_emu::exchange(v, int(focal_emu::lane()) - int(delta));
}

inline unsigned __ballot_sync(unsigned mask, int predicate) {
    focal_emu::check_full(mask);
    auto& w = focal_emu::warp();
    w.slots[focal_emu::lane()] = predicate ? 1 : 0;
    w.barrier.arrive_and_wait();
    unsigned ballot = 0;
    for (unsigned l = 0; l < 32; ++l) ballot |= unsigned(w.slots[l] != 0) << l;
    w.barrier.arrive_and_wait();
    return ballot;
}
inline int __any_sync(unsigned mask, int predicate) { return __ballot_sync(mask, predicate) != 0; }
inline int __all_sync(unsigned mask, int predicate) {
    return __ballot_sync(mask, predicate) == 0xffffffffu;
}

template <class T>
T atomicAdd(T* address, T value) {
    return std::atomic_ref<T>(*address).fetch_add(value);
}
template <class T>
T atomicMin(T* address, T value) {
    std::atomic_ref<T> a(*address);
    T old = a.load();
    while (value < old && !a.compare_exchange_weak(old, value)) {
    }
    return old;
}

// The fast-math intrinsics, at host (better than hardware) precision: the emulation checks the
// logic of a kernel that uses them; their accuracy is checked on a GPU (check-kernels).
inline float __fdividef(float a, float b) { return a / b; }
inline float __logf(float x) { return logf(x); }

inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}

inline unsigned __umulhi(unsigned a, unsigned b) {
    return unsigned(((unsigned long long)a * b) >> 32);
}

inline float __int_as_float(int v) {
    float f;
    std::memcpy(&f, &v, 4);
    return f;
}

// ---- the kernel registry: name -> a function that runs the kernel on a by-value argument ----

#include <functional>
#include <map>
#include <string>
#include <type_traits>

namespace focal_emu {

using Entry = std::function<void(const void* args)>;

inline std::map<std::string, Entry>& registry() {
    static std::map<std::string, Entry> kernels;
    return kernels;
}

struct Registrar {
    template <class Args>
    Registrar(const char* name, void (*kernel)(Args)) {
        registry()[name] = [kernel](const void* args) {
            kernel(*static_cast<const std::remove_cvref_t<Args>*>(args));
        };
    }
};

}  // namespace focal_emu

#define FOCAL_EMU_REGISTER(name) \
    static const focal_emu::Registrar focal_emu_registrar_##name(#name, &name);
