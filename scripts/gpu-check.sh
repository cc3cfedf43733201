#!/usr/bin/env bash
# The GPU checks of focal-cuda in one command, for a machine with an NVIDIA GPU and no Rust
# toolchain (the binaries are built here and carried there).
#
#   scripts/gpu-check.sh build   # on the development machine: release binaries -> target/gpu-carry
#   scripts/gpu-check.sh run     # on the GPU machine, from the repository root (under 8 minutes)
#
# `run` executes, with FOCAL_REQUIRE_GPU=1 (a missing GPU fails instead of skipping):
#   1. the GPU tests of focal-cuda (crates/focal-cuda/tests/gpu.rs) and the GPU instance of
#      every kernel property in src/kernel_tests.rs (the same bodies CI runs emulated), then
#      retinanet's backend test built with `cuda` (crates/retinanet/tests/backend.rs: the
#      RetinaNet focal loss and gradient on focal-cuda against focal-core, a few seconds);
#   2. `xtask check-kernels`: every kernel and dtype pair, fresh random inputs up to 1M x 80,
#      poisoned outputs, every element against focal-core's float64 reference, 3-run bit-identity;
#   3. `xtask bench gpu`: focal-cuda at 8 x 120,087 x 80 (f32, bf16, f16) beside a device-to-device
#      copy of the same bytes and torchvision eager / torch.compile when torch is importable.
# and writes the logs and a Markdown summary under $OUT (default target/gpu-check-out).
# With the device tool: carry `target/gpu-carry` and run `bash scripts/gpu-check.sh run`.
#
#   scripts/gpu-check.sh variant v6  # on the GPU machine: a shorter run for one variant (138 and 155 s on an H200)
#
# `variant V` runs the kernel tests' GPU instances, `xtask check-kernels --only V`, `xtask bench gpu`
# and, when Nsight Compute is there, `ncu` on one call each of v4 and V (f32 and bf16): throughput,
# occupancy, issue and memory figures (ncu-*.log). The device tool returns at most 8 files:
# `variant` writes the summary, three logs and four profiles, and no JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
carry=target/gpu-carry

case "${1:-}" in
build)
    cargo build --release -p xtask
    test_bin=$(cargo test --release -p focal-cuda --test gpu --no-run 2>&1 |
        sed -n 's/.*Executable tests\/gpu.rs (\(.*\))/\1/p' | tail -1)
    lib_bin=$(cargo test --release -p focal-cuda --lib --no-run 2>&1 |
        sed -n 's/.*Executable unittests src\/lib.rs (\(.*\))/\1/p' | tail -1)
    retina_bin=$(cargo test --release -p retinanet --features cuda --test backend --no-run 2>&1 |
        sed -n 's/.*Executable tests\/backend.rs (\(.*\))/\1/p' | tail -1)
    [ -n "$test_bin" ] && [ -n "$lib_bin" ] || { echo "could not find the focal-cuda test binaries" >&2; exit 1; }
    [ -n "$retina_bin" ] || { echo "could not find the retinanet backend test binary" >&2; exit 1; }
    rm -rf "$carry" && mkdir -p "$carry"
    # Debug info is not needed there, and each binary embeds the PTX (about 10 MB of text, 4:1
    # under gzip): stripped and compressed, the four stay well inside the device tool's 64 MiB
    # for the whole carried tree. `run` unpacks them.
    objcopy --strip-debug target/release/xtask "$carry/xtask"
    objcopy --strip-debug "$test_bin" "$carry/focal-cuda-gpu-tests"
    objcopy --strip-debug "$lib_bin" "$carry/focal-cuda-lib-tests"
    objcopy --strip-debug "$retina_bin" "$carry/retinanet-cuda-tests"
    gzip -9 "$carry"/*
    du -sh "$carry"/*
    ;;
run | variant)
    mode=$1
    variant=${2:-}
    if [ "$mode" = variant ] && [ -z "$variant" ]; then
        echo "usage: scripts/gpu-check.sh variant v6" >&2
        exit 2
    fi
    out=${OUT:-target/gpu-check-out}
    mkdir -p "$out"
    for packed in "$carry"/*.gz; do
        [ -e "$packed" ] || break
        gunzip -f "$packed" && chmod +x "${packed%.gz}"
    done
    [ -x "$carry/xtask" ] || { echo "no $carry/xtask: run \`scripts/gpu-check.sh build\` first and carry $carry" >&2; exit 1; }
    export FOCAL_REQUIRE_GPU=1 FOCAL_ROOT="$PWD" PYTHONUNBUFFERED=1
    summary="$out/gpu-check.md"
    {
        echo "# focal-cuda GPU check, $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo
        nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv 2>&1 || true
        echo
    } >"$summary"
    status=0
    step() {
        local name=$1
        shift
        local t0=$SECONDS
        echo "== $name" | tee -a "$summary"
        if "$@" 2>&1 | tee "$out/$name.log"; then
            echo "$name: ok ($((SECONDS - t0)) s)" | tee -a "$summary"
        else
            echo "$name: FAILED ($((SECONDS - t0)) s), see $name.log" | tee -a "$summary"
            status=1
        fi
    }
    if [ "$mode" = variant ]; then
        step kernel-tests-gpu "$carry/focal-cuda-lib-tests" ::gpu
        step check-kernels timeout 120 "$carry/xtask" check-kernels --only "$variant"
        step bench-gpu timeout 150 "$carry/xtask" bench gpu
        ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1 || true)
        if [ -n "$ncu" ]; then
            for pair in f32_f32 bf16_bf16; do
                for kernel in v4 "$variant"; do
                    # --quick: 10 calls a row; the first launch that matches is the kernel's warm-up
                    # (a variant without an entry point for the pair profiles nothing).
                    step "ncu-$kernel-$pair" timeout 60 env FOCAL_PYTHON=false "$ncu" \
                        --target-processes application-only -k "regex:sigmoid_sparse_${kernel}_g2_${pair}\$" -c 1 \
                        --section SpeedOfLight --section Occupancy --section LaunchStats \
                        --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis \
                        "$carry/xtask" bench gpu --quick
                done
            done
        else
            echo "no ncu on this machine: no profile" | tee -a "$summary"
        fi
    else
        step gpu-tests "$carry/focal-cuda-gpu-tests"
        # Every property of the kernel tests, GPU instance (the emulated twins ran in CI).
        step kernel-tests-gpu "$carry/focal-cuda-lib-tests" ::gpu
        # RetinaNet's focal loss through focal-cuda against focal-core (GPU comparison not skipped).
        step retinanet-cuda "$carry/retinanet-cuda-tests" --nocapture
        # Bounded (270 s, the bench 150 s) so the whole run stays under 8 minutes; if it runs out,
        # `xtask check-kernels --quick` stops at 3 x 1001 x 80.
        step check-kernels timeout 270 "$carry/xtask" check-kernels
        step bench-gpu timeout 150 "$carry/xtask" bench gpu --json "$out/bench-gpu.json"
    fi
    {
        echo
        sed -n '/^## GPU/,/^$/p;/^| /p' "$out/bench-gpu.log" | awk '!seen[$0]++'
        grep -E "^(check-kernels on|all [0-9]+ kernel checks|.*FAILED)" "$out/check-kernels.log" || true
    } >>"$summary"
    cat "$summary"
    exit $status
    ;;
*)
    echo "usage: scripts/gpu-check.sh build|run|variant V" >&2
    exit 2
    ;;
esac
