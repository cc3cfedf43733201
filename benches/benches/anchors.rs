//! anchors: target assignment (120,087 anchors x 10 and 100 boxes), greedy and class-aware NMS
//! (1K and 10K detector-like boxes), box decoding (120,087 boxes) and RetinaNet post-processing
//! (120,087 anchors x 80 classes). Group names follow `<op>/<impl>/<size>`. `cargo xtask bench
//! anchors` measures the same operations beside torchvision in one run.

use anchors::{
    AnchorConfig, AnchorGenerator, AssignedTargets, BoxCoder, GroundTruth, PostprocessConfig, TargetAssigner,
    batched_nms, nms, postprocess_batch,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use focal_benches::COCO_CLASSES;
use focal_benches::anchors::{GRIDS_800, clustered_detections, ground_truth, head_outputs, random_codes};
use std::hint::black_box;

fn retinanet_800() -> std::sync::Arc<anchors::Anchors> {
    let generator = AnchorGenerator::new(AnchorConfig::torchvision_retinanet()).expect("config");
    generator.generate([800, 800], &GRIDS_800).expect("layout")
}

fn assign_targets(c: &mut Criterion) {
    let anchors = retinanet_800();
    let a = anchors.len();
    let assigner = TargetAssigner::retinanet();
    let mut group = c.benchmark_group("assign_targets");
    // Anchors in; labels, matches, regression targets out.
    group.throughput(Throughput::Bytes((a * (16 + 4 + 4 + 16)) as u64));
    for m in [10usize, 100] {
        let (boxes, labels) = ground_truth(m);
        let mut out = AssignedTargets::default();
        group.bench_function(BenchmarkId::new("fused", format!("{a} anchors x {m} boxes")), |b| {
            b.iter(|| {
                let gt = GroundTruth { boxes: &boxes, labels: &labels };
                assigner.assign_into(&anchors, &[gt], &mut out).expect("valid");
                black_box(out.num_foreground()[0])
            })
        });
    }
    group.finish();
}

fn nms_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("nms");
    for n in [1_000usize, 10_000] {
        let (boxes, scores, classes) = clustered_detections(n as u64, n, 800.0, 80);
        group.throughput(Throughput::Bytes((n * 20) as u64));
        group.bench_function(BenchmarkId::new("greedy", format!("{n} boxes")), |b| {
            b.iter(|| black_box(nms(&boxes, &scores, 0.5).expect("valid").len()))
        });
        group.bench_function(BenchmarkId::new("batched 80 classes", format!("{n} boxes")), |b| {
            b.iter(|| black_box(batched_nms(&boxes, &scores, &classes, 0.5).expect("valid").len()))
        });
    }
    group.finish();
}

fn decode_boxes(c: &mut Criterion) {
    let anchors = retinanet_800();
    let a = anchors.len();
    let codes = random_codes(7, a, 1.0);
    let coder = BoxCoder::retinanet();
    let mut out = vec![[0.0f32; 4]; a];
    let mut group = c.benchmark_group("decode_boxes");
    group.throughput(Throughput::Bytes((a * 48) as u64));
    group.bench_function(BenchmarkId::new("retinanet weights", format!("{a} boxes")), |b| {
        b.iter(|| {
            coder.decode_boxes(&codes, anchors.boxes(), &mut out).expect("valid");
            black_box(out[0])
        })
    });
    group.finish();
}

fn retinanet_postprocess(c: &mut Criterion) {
    let anchors = retinanet_800();
    let a = anchors.len();
    let (logits, regression) = head_outputs(a, COCO_CLASSES, 11);
    let (coder, config) = (BoxCoder::retinanet(), PostprocessConfig::torchvision_retinanet());
    let mut group = c.benchmark_group("retinanet_postprocess");
    group.sample_size(20);
    group.throughput(Throughput::Bytes((a * (COCO_CLASSES + 4) * 4) as u64));
    group.bench_function(BenchmarkId::new("ours", format!("1 x {a} x {COCO_CLASSES}")), |b| {
        b.iter(|| {
            let dets = postprocess_batch(&logits, &regression, &anchors, COCO_CLASSES, &[[800, 800]], &coder, &config)
                .expect("valid");
            black_box(dets[0].labels.len())
        })
    });
    group.finish();
}

criterion_group!(benches, assign_targets, nms_benches, decode_boxes, retinanet_postprocess);
criterion_main!(benches);
