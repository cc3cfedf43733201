// The kernels of this folder as one host library, for the emulation tests of focal-cuda.
//
// Built by crates/focal-cuda/src/emulation.rs with
//   g++ -std=c++20 -O2 -shared -fPIC -pthread -DFOCAL_EMULATION -I kernels -I <CUDA include>
// and loaded with dlopen. One C entry point runs a kernel by name on the host.
#include "../sigmoid_focal.cu"
#include "../varifocal.cu"
#include "../quality_focal.cu"
#include "../softmax_focal.cu"
#include "../reduce.cu"

#include <mutex>

extern "C" {

// Runs kernel `name` over a (grid_x, grid_y) grid of blocks of block_x threads, with `args`
// pointing at its argument struct. Returns 0, or 1 for an unknown kernel. Launches are
// serialised: the statics that stand for shared memory belong to one launch at a time.
int focal_emu_launch(const char* name, unsigned grid_x, unsigned grid_y, unsigned block_x,
                     const void* args) {
    static std::mutex one_launch_at_a_time;
    std::lock_guard<std::mutex> lock(one_launch_at_a_time);
    auto it = focal_emu::registry().find(name);
    if (it == focal_emu::registry().end()) return 1;
    const auto& kernel = it->second;
    focal_emu::launch(dim3(grid_x, grid_y, 1), dim3(block_x, 1, 1), [&] { kernel(args); });
    return 0;
}

// sizeof of the argument structs, so the Rust side can check its #[repr(C)] mirrors.
unsigned long focal_emu_sizeof_loss_args() { return sizeof(focal::LossArgs); }
unsigned long focal_emu_sizeof_reduce_args() { return sizeof(focal::ReduceArgs); }
unsigned long focal_emu_offsetof_loss_args_uniform_scale() {
    return offsetof(focal::LossArgs, uniform_scale);
}
unsigned long focal_emu_offsetof_reduce_args_mode() { return offsetof(focal::ReduceArgs, mode); }

}
