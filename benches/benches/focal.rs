//! focal-core: fused forward+backward of the sigmoid focal loss (sparse labels, alpha 0.25,
//! gamma 2 and 1.5) at every SIMD level, beside the memory floor, at 1K, 120K and 1M anchors x
//! 80 classes. Group names follow `<op>/<impl>/<size>`; throughput is the bytes the pass must
//! move (logits in, gradient out, labels).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use focal_benches::{COCO_CLASSES, floor_copy, retinanet_inputs};
use focal_core::{FocalLoss, FocalParams, Reduction, SigmoidFocalLoss, SimdLevel, Target, TensorView, TensorViewMut};

const SIZES: [(usize, &str); 3] = [(1_000, "1k x 80"), (120_087, "120k x 80"), (1_000_000, "1M x 80")];

fn fused(c: &mut Criterion) {
    for gamma in [2.0, 1.5] {
        let mut group = c.benchmark_group(format!("sigmoid_focal_fwd_bwd_gamma{gamma}"));
        group.sample_size(20);
        for (anchors, label) in SIZES {
            let (x, labels) = retinanet_inputs(anchors, COCO_CLASSES, 7);
            let normalizer = focal_core::labels::retinanet_normalizer(&labels);
            let mut grad = vec![0.0f32; x.len()];
            group.throughput(Throughput::Bytes((x.len() * 8 + anchors * 4) as u64));
            group.bench_function(BenchmarkId::new("floor", label), |b| b.iter(|| floor_copy(&x, &mut grad)));
            for level in SimdLevel::supported() {
                let loss = SigmoidFocalLoss::new(
                    FocalParams::new(Some(0.25), gamma).expect("params"),
                    Reduction::Normalizer(normalizer),
                )
                .with_simd(level)
                .expect("supported level");
                let shape = [anchors, COCO_CLASSES];
                group.bench_function(BenchmarkId::new(level.name(), label), |b| {
                    b.iter(|| {
                        loss.forward_backward(
                            TensorView::new(&x, &shape).expect("shape"),
                            Target::labels(TensorView::new(&labels, &[anchors]).expect("shape")),
                            1.0,
                            TensorViewMut::new(&mut grad, &shape).expect("shape"),
                        )
                        .expect("valid inputs")
                    })
                });
            }
        }
        group.finish();
    }
}

fn half_inputs(c: &mut Criterion) {
    let mut group = c.benchmark_group("sigmoid_focal_fwd_bwd_bf16");
    group.sample_size(20);
    let anchors = 120_087;
    let (x, labels) = retinanet_inputs(anchors, COCO_CLASSES, 7);
    let x: Vec<half::bf16> = x.iter().map(|&v| half::bf16::from_f32(v)).collect();
    let mut grad = vec![half::bf16::ZERO; x.len()];
    let loss = SigmoidFocalLoss::new(FocalParams::retinanet(), Reduction::Normalizer(1.0));
    let shape = [anchors, COCO_CLASSES];
    group.throughput(Throughput::Bytes((x.len() * 4 + anchors * 4) as u64));
    group.bench_function(BenchmarkId::new(SimdLevel::detect().name(), "120k x 80"), |b| {
        b.iter(|| {
            loss.forward_backward(
                TensorView::new(&x, &shape).expect("shape"),
                Target::labels(TensorView::new(&labels, &[anchors]).expect("shape")),
                1.0,
                TensorViewMut::new(&mut grad, &shape).expect("shape"),
            )
            .expect("valid inputs")
        })
    });
    group.finish();
}

criterion_group!(benches, fused, half_inputs);
criterion_main!(benches);
