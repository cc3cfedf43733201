//! Our results against torchvision's, saved by `tests/fixtures/make_fixtures.py`.

mod common;

use anchors::boxes::{clip_boxes_to_image, remove_small_boxes};
use anchors::{
    AnchorConfig, AnchorGenerator, Anchors, BoxCoder, GroundTruth, LevelOutputs, Matcher, PostprocessConfig,
    TargetAssigner, assign_image_reference, batched_nms, box_iou, generalized_box_iou, nms, postprocess_batch,
};
use common::*;
use serde_json::Value;

fn grids(v: &Value) -> Vec<[u32; 2]> {
    v.as_array()
        .expect("grids")
        .iter()
        .map(|g| {
            let g = i64s(g);
            [g[0] as u32, g[1] as u32]
        })
        .collect()
}

fn image_size(v: &Value) -> [u32; 2] {
    let s = i64s(v);
    [s[0] as u32, s[1] as u32]
}

fn layout(fx: &Value) -> Anchors {
    let generator = AnchorGenerator::new(AnchorConfig::torchvision_retinanet()).unwrap();
    generator.generate_uncached(image_size(&fx["image_size"]), &grids(&fx["grids"])).unwrap()
}

#[test]
fn anchor_generator_matches_torchvision() {
    let fx = fixture("anchors.json");
    for case in fx["cases"].as_array().unwrap() {
        let nested = |v: &Value| -> Vec<Vec<f64>> {
            v.as_array().unwrap().iter().map(|l| f32s(l).into_iter().map(f64::from).collect()).collect()
        };
        let config = AnchorConfig {
            sizes: nested(&case["sizes"]),
            aspect_ratios: nested(&case["aspect_ratios"]),
            ..AnchorConfig::torchvision_retinanet()
        };
        let generator = AnchorGenerator::new(config).unwrap();
        let anchors = generator.generate(image_size(&case["image_size"]), &grids(&case["grids"])).unwrap();
        let got: Vec<f32> = anchors.boxes().iter().flatten().copied().collect();
        assert_bitwise(case["name"].as_str().unwrap(), &got, &f32s(&case["anchors"]));
    }
}

#[test]
fn retinanet_800_layout_matches_torchvision() {
    let fx = &fixture("anchors.json")["retinanet_800"];
    let generator = AnchorGenerator::new(AnchorConfig::torchvision_retinanet()).unwrap();
    let anchors = generator.generate([800, 800], &grids(&fx["grids"])).unwrap();
    assert_eq!(anchors.len() as i64, fx["count"].as_i64().unwrap());
    for (level, cells) in fx["cell_anchors"].as_array().unwrap().iter().enumerate() {
        let got: Vec<f32> = generator.cell_anchors()[level].iter().flatten().copied().collect();
        assert_bitwise("cell anchors", &got, &f32s(cells));
    }
    let sampled: Vec<f32> = usizes(&fx["sample_index"]).iter().flat_map(|&i| anchors.boxes()[i]).collect();
    assert_bitwise("sampled anchors", &sampled, &f32s(&fx["sample_anchors"]));
    let sum: f64 = anchors.boxes().iter().flatten().map(|&v| v as f64).sum();
    assert_eq!(sum, fx["sum"].as_f64().unwrap());
}

#[test]
fn box_iou_and_giou_match_torchvision_bitwise() {
    let fx = fixture("iou.json");
    let (a, b) = (boxes(&fx["a"]), boxes(&fx["b"]));
    let mut out = vec![0.0; a.len() * b.len()];
    box_iou(&a, &b, &mut out).unwrap();
    assert_bitwise("box_iou", &out, &f32s(&fx["iou"]));
    generalized_box_iou(&a, &b, &mut out).unwrap();
    assert_bitwise("generalized_box_iou", &out, &f32s(&fx["giou"]));
}

#[test]
fn clip_and_remove_small_match_torchvision() {
    let fx = fixture("iou.json");
    let b = boxes(&fx["b"]);
    let mut shifted: Vec<[f32; 4]> = b.iter().map(|x| x.map(|v| v - 10.0)).collect();
    clip_boxes_to_image(&mut shifted, image_size(&fx["clip_size"]));
    let got: Vec<f32> = shifted.iter().flatten().copied().collect();
    assert_bitwise("clip_boxes_to_image", &got, &f32s(&fx["clipped"]));
    let min_size = fx["small_min_size"].as_f64().unwrap() as f32;
    assert_eq!(remove_small_boxes(&b, min_size), usizes(&fx["small_keep"]));
}

#[test]
fn matcher_and_target_assignment_match_torchvision() {
    let fx = fixture("matcher.json");
    let anchors = layout(&fx);
    let images: Vec<(Vec<[f32; 4]>, Vec<i32>)> =
        fx["images"].as_array().unwrap().iter().map(|im| (boxes(&im["boxes"]), i32s(&im["labels"]))).collect();
    let gts: Vec<GroundTruth<'_>> = images.iter().map(|(b, l)| GroundTruth { boxes: b, labels: l }).collect();
    for (low_quality, key) in [(true, "matched_low_quality"), (false, "matched_strict")] {
        let assigner =
            TargetAssigner { matcher: Matcher::new(0.5, 0.4, low_quality).unwrap(), ..TargetAssigner::retinanet() };
        let targets = assigner.assign(&anchors, &gts).unwrap();
        let a = anchors.len();
        for (i, (im, gt)) in fx["images"].as_array().unwrap().iter().zip(&gts).enumerate() {
            let want = i32s(&im[key]);
            let got = &targets.matched_gt()[i * a..(i + 1) * a];
            assert_eq!(got, &want[..], "image {i}, {key}: fused path");
            let anchors::ImageTargets { labels, matched_gt: matched, regression } =
                assign_image_reference(&assigner, anchors.boxes(), gt).unwrap();
            assert_eq!(matched, want, "image {i}, {key}: reference path");
            let want_labels: Vec<i32> = want.iter().map(|&m| if m >= 0 { gt.labels[m as usize] } else { m }).collect();
            assert_eq!(&targets.labels()[i * a..(i + 1) * a], &want_labels[..]);
            assert_eq!(labels, want_labels);
            if low_quality {
                let want_reg = f32s(&im["regression"]);
                let got: Vec<f32> = targets.regression()[i * a..(i + 1) * a].iter().flatten().copied().collect();
                let scale: Vec<f32> = want_reg.iter().map(|_| 1.0).collect();
                assert_close_scaled("regression targets", &got, &want_reg, &scale);
                let reference: Vec<f32> = regression.iter().flatten().copied().collect();
                assert_bitwise("fused vs reference regression", &got, &reference);
            }
        }
    }
}

#[test]
fn box_coder_matches_torchvision() {
    let fx = fixture("coder.json");
    let (anchors, gts, codes) = (boxes(&fx["anchors"]), boxes(&fx["gts"]), boxes(&fx["codes"]));
    for case in fx["cases"].as_array().unwrap() {
        let w = f32s(&case["weights"]);
        let coder = BoxCoder::new([w[0], w[1], w[2], w[3]]).unwrap();
        let mut out = vec![[0.0; 4]; anchors.len()];
        coder.encode_boxes(&gts, &anchors, &mut out).unwrap();
        let got: Vec<f32> = out.iter().flatten().copied().collect();
        let want = f32s(&case["encoded"]);
        // dx, dy involve no transcendental function: bitwise. dw, dh go through ln.
        for (k, what) in [(0, "dx"), (1, "dy")] {
            let g: Vec<f32> = got.iter().skip(k).step_by(4).copied().collect();
            let r: Vec<f32> = want.iter().skip(k).step_by(4).copied().collect();
            assert_bitwise(what, &g, &r);
        }
        assert_close_scaled("encoded", &got, &want, &want);
        coder.decode_boxes(&codes, &anchors, &mut out).unwrap();
        let got: Vec<f32> = out.iter().flatten().copied().collect();
        let want = f32s(&case["decoded"]);
        // Rounding errors scale with the largest term of each box: its coordinates and size.
        let scale: Vec<f32> = want
            .chunks(4)
            .flat_map(|b| {
                let s = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                [s; 4]
            })
            .collect();
        assert_close_scaled("decoded", &got, &want, &scale);
    }
}

#[test]
fn nms_and_batched_nms_match_torchvision() {
    let fx = fixture("nms.json");
    let (b, s, c) = (boxes(&fx["boxes"]), f32s(&fx["scores"]), i32s(&fx["classes"]));
    let (bb, bs, bc) = (boxes(&fx["big_boxes"]), f32s(&fx["big_scores"]), i32s(&fx["big_classes"]));
    for case in fx["cases"].as_array().unwrap() {
        let t = case["iou_threshold"].as_f64().unwrap();
        assert_eq!(nms(&b, &s, t).unwrap(), usizes(&case["nms"]), "nms {t}");
        assert_eq!(batched_nms(&b, &s, &c, t).unwrap(), usizes(&case["batched_nms"]), "batched_nms {t}");
        assert_eq!(nms(&bb, &bs, t).unwrap(), usizes(&case["big_nms"]), "big nms {t}");
        assert_eq!(batched_nms(&bb, &bs, &bc, t).unwrap(), usizes(&case["big_batched_nms"]), "big batched_nms {t}");
    }
}

#[test]
fn retinanet_postprocess_matches_torchvision() {
    let fx = fixture("postprocess.json");
    let anchors = layout(&fx);
    let num_classes = fx["num_classes"].as_u64().unwrap() as usize;
    let logits = f32s(&fx["logits"]);
    let regression = boxes(&fx["regression"]);
    let shapes: Vec<[u32; 2]> = fx["image_shapes"].as_array().unwrap().iter().map(image_size).collect();
    let config = PostprocessConfig {
        topk_candidates: fx["topk_candidates"].as_u64().unwrap() as usize,
        ..PostprocessConfig::torchvision_retinanet()
    };
    let coder = BoxCoder::retinanet();
    let dets = postprocess_batch(&logits, &regression, &anchors, num_classes, &shapes, &coder, &config).unwrap();
    for (i, (d, want)) in dets.iter().zip(fx["detections"].as_array().unwrap()).enumerate() {
        assert_eq!(d.labels, i32s(&want["labels"]), "image {i} labels");
        let want_scores = f32s(&want["scores"]);
        assert_close_scaled("scores", &d.scores, &want_scores, &want_scores);
        let got: Vec<f32> = d.boxes.iter().flatten().copied().collect();
        let want_boxes = f32s(&want["boxes"]);
        let scale: Vec<f32> = want_boxes.iter().map(|_| 100.0).collect();
        assert_close_scaled("boxes", &got, &want_boxes, &scale);
    }
    // The single-image entry point on level slices gives the same result.
    let a = anchors.len();
    let levels: Vec<LevelOutputs<'_>> = (0..anchors.num_levels())
        .map(|l| {
            let r = anchors.level_range(l);
            LevelOutputs {
                logits: &logits[r.start * num_classes..r.end * num_classes],
                regression: &regression[r.clone()],
                anchors: anchors.level(l),
            }
        })
        .collect();
    let single = anchors::postprocess_image(&levels, num_classes, shapes[0], &coder, &config).unwrap();
    assert_eq!(single, dets[0]);
    assert!(a > 0);
}
