//! focal-cuda: fused sigmoid focal forward+backward on the GPU (variants v1 and v2) beside the
//! floor, a device-to-device copy of the logits, at 120K and 8 x 120K anchors x 80 classes, f32
//! and bf16. Groups `<op>/<impl>/<size>`, throughput in bytes moved; times are CUDA-event
//! times of the queued calls. Without a GPU it prints `skipped: no CUDA driver` and measures
//! nothing (`FOCAL_REQUIRE_GPU=1` makes that a panic).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use cudarc::driver::{CudaSlice, CudaStream, sys::CUevent_flags};
use focal_benches::{COCO_CLASSES, RETINANET_ANCHORS, retinanet_inputs};
use focal_core::FocalParams;
use focal_cuda::{
    Call, DeviceElement, DeviceTarget, Dims, FocalCuda, Normalization, Objective, Variant, Workspace, verify,
};
use half::bf16;
use std::sync::Arc;
use std::time::Duration;

/// GPU time of `iters` calls of `f`, from events around them.
fn gpu_time(stream: &Arc<CudaStream>, iters: u64, f: &mut dyn FnMut()) -> Duration {
    let ctx = stream.context();
    let start = ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).expect("event");
    let end = ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).expect("event");
    start.record(stream).expect("record");
    for _ in 0..iters {
        f();
    }
    end.record(stream).expect("record");
    end.synchronize().expect("sync");
    Duration::from_secs_f64(f64::from(start.elapsed_ms(&end).expect("elapsed")) * 1e-3)
}

fn bench_dtype<T: DeviceElement>(c: &mut Criterion, focal: &FocalCuda, images: usize) {
    let s = focal.stream().clone();
    let dims = Dims::new(images, RETINANET_ANCHORS, COCO_CLASSES);
    let (mut logits, mut labels) = (Vec::new(), Vec::new());
    for b in 0..images {
        let (x, l) = retinanet_inputs(RETINANET_ANCHORS, COCO_CLASSES, 7 + b as u64);
        logits.extend(x.into_iter().map(T::from_f32));
        labels.extend(l);
    }
    let x: CudaSlice<T> = s.clone_htod(&logits).expect("upload");
    let l = s.clone_htod(&labels).expect("upload");
    let mut grad = s.alloc_zeros::<T>(dims.numel()).expect("alloc");
    let mut copy = s.alloc_zeros::<T>(dims.numel()).expect("alloc");
    let mut ws = Workspace::new(&s, dims).expect("workspace");
    let size = format!("{images}x120k x 80 {}", T::NAME);
    let mut group = c.benchmark_group("sigmoid_focal_fwd_bwd_gpu");
    group.sample_size(30);
    group.throughput(Throughput::Bytes((dims.numel() * 2 * T::BYTES + dims.rows() * 4) as u64));
    for (name, variant) in [("cuda_v1", Variant::V1), ("cuda_v4", Variant::V4), ("cuda_v6", Variant::V6)] {
        let call = Call {
            variant,
            ..Call::new(Objective::SigmoidFocal(FocalParams::retinanet()), dims, Normalization::ForegroundPerImage)
        };
        group.bench_function(BenchmarkId::new(name, &size), |b| {
            b.iter_custom(|iters| {
                gpu_time(&s, iters, &mut || {
                    focal
                        .forward_backward::<T, T>(
                            &call,
                            &x.as_view(),
                            DeviceTarget::Sparse(l.as_view()),
                            Some(&mut grad.as_view_mut()),
                            None,
                            &mut ws,
                        )
                        .expect("valid call")
                })
            })
        });
    }
    group.throughput(Throughput::Bytes((dims.numel() * 2 * T::BYTES) as u64));
    group.bench_function(BenchmarkId::new("floor", &size), |b| {
        b.iter_custom(|iters| gpu_time(&s, iters, &mut || s.memcpy_dtod(&x, &mut copy).expect("copy")))
    });
    group.finish();
}

fn gpu(c: &mut Criterion) {
    let Some(focal) = verify::gpu_or_skip().expect("FOCAL_REQUIRE_GPU=1 but no GPU") else { return };
    for images in [1, 8] {
        bench_dtype::<f32>(c, &focal, images);
        bench_dtype::<bf16>(c, &focal, images);
    }
}

criterion_group!(benches, gpu);
criterion_main!(benches);
