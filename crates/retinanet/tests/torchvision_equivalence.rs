//! Head outputs, losses and detections equal torchvision's RetinaNet (ResNet-18 FPN, v1) on
//! the same synthetic weights and image (`tests/fixtures/make_torchvision_fixture.py`).

use anchors::{GroundTruth, PostprocessConfig};
use retinanet::transform::batch_images;
use retinanet::{BackboneConfig, LossConfig, ModelConfig, RetinaLoss, RetinaNet, RgbImage};
use serde_json::Value;

/// `|a - r| <= ABS + REL * |r|`: f32 sums in another order through 20+ layers.
const ABS: f64 = 1e-3;
const REL: f64 = 1e-4;

fn fixture() -> Value {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/torchvision_r18.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn close(what: &str, i: usize, got: f64, want: f64, abs: f64, rel: f64) {
    let tol = abs + rel * want.abs();
    assert!((got - want).abs() <= tol, "{what}[{i}]: ours {got}, torchvision {want}, |a - r| <= {tol}");
}

fn model_and_image(fx: &Value) -> (RetinaNet, RgbImage) {
    let (h, w) = (fx["height"].as_u64().unwrap() as usize, fx["width"].as_u64().unwrap() as usize);
    let config = ModelConfig {
        backbone: BackboneConfig::ResNet { layers: 18, p6p7_from_c5: false, trainable_layers: 5 },
        min_size: h,
        max_size: w,
        ..ModelConfig::retinanet_resnet50_fpn(fx["num_classes"].as_u64().unwrap() as usize)
    };
    let mut model = RetinaNet::new(config, 0).unwrap();
    fpn_net::init::synthetic(&mut model, fx["seed"].as_u64().unwrap());
    let scale = fx["cls_scale"].as_f64().unwrap() as f32;
    for v in &mut model.classification_head.output_weight_mut().value {
        *v *= scale;
    }
    let image = RgbImage { data: fpn_net::init::uniform("image", 0, 3 * h * w, 0.0, 1.0), height: h, width: w };
    (model, image)
}

#[test]
fn head_outputs_and_losses_equal_torchvision() {
    let fx = fixture();
    let (mut model, image) = model_and_image(&fx);
    let batch = batch_images(&[&image]).unwrap();
    model.forward(&batch.images).unwrap();
    let a = fx["num_anchors"].as_u64().unwrap() as usize;
    let c = model.num_classes();
    assert_eq!(model.anchors().unwrap().len(), a);
    let step = fx["sample_step"].as_u64().unwrap() as usize;
    let (want_logits, want_reg) = (floats(&fx["logits"]), floats(&fx["regression"]));
    for (k, anchor) in (0..a).step_by(step).enumerate() {
        for j in 0..c {
            close("logits", anchor * c + j, model.logits()[anchor * c + j] as f64, want_logits[k * c + j], ABS, REL);
        }
        for j in 0..4 {
            close("regression", anchor * 4 + j, model.regression()[anchor][j] as f64, want_reg[k * 4 + j], ABS, REL);
        }
    }
    let sum: f64 = model.logits().iter().map(|&v| v as f64).sum();
    close("logits sum", 0, sum, fx["logits_sum"].as_f64().unwrap(), ABS, REL);

    let boxes: Vec<[f32; 4]> = fx["boxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let v = floats(b);
            [v[0] as f32, v[1] as f32, v[2] as f32, v[3] as f32]
        })
        .collect();
    let labels: Vec<i32> = fx["labels"].as_array().unwrap().iter().map(|l| l.as_i64().unwrap() as i32).collect();
    let mut loss = RetinaLoss::new(LossConfig::default()).unwrap();
    let mut gl = vec![0.0; model.logits().len()];
    let mut gr = vec![[0.0; 4]; model.regression().len()];
    let anchors = model.anchors().unwrap();
    let gt = [GroundTruth { boxes: &boxes, labels: &labels }];
    let v = loss.compute(model.logits(), model.regression(), &anchors, &gt, c, &mut gl, &mut gr).unwrap();
    close("classification loss", 0, v.classification, fx["loss_classification"].as_f64().unwrap(), ABS, REL);
    close("box loss", 0, v.box_regression, fx["loss_bbox_regression"].as_f64().unwrap(), ABS, REL);
}

#[test]
fn detections_equal_torchvision() {
    let fx = fixture();
    let (mut model, image) = model_and_image(&fx);
    let dets = retinanet::infer::detect(&mut model, &[&image], 1, &PostprocessConfig::torchvision_retinanet()).unwrap();
    let d = &dets[0];
    assert_eq!(d.scores.len(), fx["num_detections"].as_u64().unwrap() as usize);
    let want = &fx["detections"];
    let scores = floats(&want["scores"]);
    let labels: Vec<i64> = want["labels"].as_array().unwrap().iter().map(|l| l.as_i64().unwrap()).collect();
    for (i, s) in scores.iter().enumerate() {
        close("score", i, d.scores[i] as f64, *s, 1e-5, 1e-4);
        assert_eq!(d.labels[i] as i64, labels[i], "label of detection {i}");
        let b = floats(&want["boxes"][i]);
        for (k, (&ours, &theirs)) in d.boxes[i].iter().zip(&b).enumerate() {
            close("box", i * 4 + k, ours as f64, theirs, 1e-2, 1e-4);
        }
    }
}
