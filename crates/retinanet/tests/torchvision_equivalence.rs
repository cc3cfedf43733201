//! Head outputs, losses and detections equal torchvision's RetinaNet on the same synthetic
//! weights and image (`tests/fixtures/make_torchvision_fixture.py`): the committed ResNet-18
//! FPN v1 case always, the ResNet-50 v1 and v2 cases (`retinanet_resnet50_fpn` / `_v2`) when
//! `FOCAL_R50_FIXTURE` names a file made by `--case r50` (not committed: several MB of work).

use anchors::{GroundTruth, PostprocessConfig};
use retinanet::transform::batch_images;
use retinanet::{BackboneConfig, BoxLoss, LossConfig, ModelConfig, RetinaLoss, RetinaNet, RgbImage};
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

/// Largest `|a - r|` and largest `|a - r| / (ABS + REL * |r|)` seen per quantity, printed
/// at the end of each case so the margins are visible.
#[derive(Default)]
struct Diffs(Vec<(String, f64, f64)>);

impl Diffs {
    fn close(&mut self, what: &str, i: usize, got: f64, want: f64, abs: f64, rel: f64) {
        let tol = abs + rel * want.abs();
        let d = (got - want).abs();
        assert!(d <= tol, "{what}[{i}]: ours {got}, torchvision {want}, |a - r| <= {tol}");
        match self.0.iter_mut().find(|e| e.0 == what) {
            Some(e) => {
                e.1 = e.1.max(d);
                e.2 = e.2.max(d / tol);
            }
            None => self.0.push((what.to_string(), d, d / tol)),
        }
    }

    fn print(&self, case: &str) {
        for (what, d, ratio) in &self.0 {
            println!("{case}: {what}: max |a - r| = {d:.3e} ({:.0}% of the tolerance)", ratio * 100.0);
        }
    }
}

/// The fixture's case: `r18` (the committed file), `r50-v1` or `r50-v2`.
fn case(fx: &Value) -> &str {
    fx["case"].as_str().unwrap_or("r18")
}

fn model_and_image(fx: &Value) -> (RetinaNet, RgbImage) {
    let (h, w) = (fx["height"].as_u64().unwrap() as usize, fx["width"].as_u64().unwrap() as usize);
    let classes = fx["num_classes"].as_u64().unwrap() as usize;
    let base = match case(fx) {
        "r18" => ModelConfig {
            backbone: BackboneConfig::ResNet { layers: 18, p6p7_from_c5: false, trainable_layers: 5 },
            ..ModelConfig::retinanet_resnet50_fpn(classes)
        },
        "r50-v1" => ModelConfig::retinanet_resnet50_fpn(classes),
        "r50-v2" => ModelConfig::retinanet_resnet50_fpn_v2(classes),
        other => panic!("unknown fixture case {other}"),
    };
    let config = ModelConfig { min_size: h, max_size: w, ..base };
    let mut model = RetinaNet::new(config, 0).unwrap();
    fpn_net::init::synthetic(&mut model, fx["seed"].as_u64().unwrap());
    let scale = fx["cls_scale"].as_f64().unwrap() as f32;
    for v in &mut model.classification_head.output_weight_mut().value {
        *v *= scale;
    }
    let image = RgbImage { data: fpn_net::init::uniform("image", 0, 3 * h * w, 0.0, 1.0), height: h, width: w };
    (model, image)
}

fn check_head_outputs_and_losses(fx: &Value, diffs: &mut Diffs) {
    let (mut model, image) = model_and_image(fx);
    let batch = batch_images(&[&image]).unwrap();
    model.forward(&batch.images).unwrap();
    let a = fx["num_anchors"].as_u64().unwrap() as usize;
    let c = model.num_classes();
    assert_eq!(model.anchors().unwrap().len(), a);
    let step = fx["sample_step"].as_u64().unwrap() as usize;
    let (want_logits, want_reg) = (floats(&fx["logits"]), floats(&fx["regression"]));
    for (k, anchor) in (0..a).step_by(step).enumerate() {
        for j in 0..c {
            diffs.close(
                "logits",
                anchor * c + j,
                model.logits()[anchor * c + j] as f64,
                want_logits[k * c + j],
                ABS,
                REL,
            );
        }
        for j in 0..4 {
            diffs.close(
                "regression",
                anchor * 4 + j,
                model.regression()[anchor][j] as f64,
                want_reg[k * 4 + j],
                ABS,
                REL,
            );
        }
    }
    let sum: f64 = model.logits().iter().map(|&v| v as f64).sum();
    diffs.close("logits sum", 0, sum, fx["logits_sum"].as_f64().unwrap(), ABS, REL);

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
    let box_loss = if fx["box_loss"].as_str() == Some("giou") { BoxLoss::Giou } else { BoxLoss::L1 };
    let mut loss = RetinaLoss::new(LossConfig { box_loss, ..LossConfig::default() }).unwrap();
    let mut gl = vec![0.0; model.logits().len()];
    let mut gr = vec![[0.0; 4]; model.regression().len()];
    let anchors = model.anchors().unwrap();
    let gt = [GroundTruth { boxes: &boxes, labels: &labels }];
    let v = loss.compute(model.logits(), model.regression(), &anchors, &gt, c, &mut gl, &mut gr).unwrap();
    diffs.close("classification loss", 0, v.classification, fx["loss_classification"].as_f64().unwrap(), ABS, REL);
    diffs.close("box loss", 0, v.box_regression, fx["loss_bbox_regression"].as_f64().unwrap(), ABS, REL);
}

fn check_detections(fx: &Value, diffs: &mut Diffs) {
    let (mut model, image) = model_and_image(fx);
    let dets = retinanet::infer::detect(&mut model, &[&image], 1, &PostprocessConfig::torchvision_retinanet()).unwrap();
    let d = &dets[0];
    assert_eq!(d.scores.len(), fx["num_detections"].as_u64().unwrap() as usize);
    let want = &fx["detections"];
    let scores = floats(&want["scores"]);
    let labels: Vec<i64> = want["labels"].as_array().unwrap().iter().map(|l| l.as_i64().unwrap()).collect();
    for (i, s) in scores.iter().enumerate() {
        diffs.close("score", i, d.scores[i] as f64, *s, 1e-5, 1e-4);
        assert_eq!(d.labels[i] as i64, labels[i], "label of detection {i}");
        let b = floats(&want["boxes"][i]);
        for (k, (&ours, &theirs)) in d.boxes[i].iter().zip(&b).enumerate() {
            diffs.close("box", i * 4 + k, ours as f64, theirs, 1e-2, 1e-4);
        }
    }
}

#[test]
fn head_outputs_and_losses_equal_torchvision() {
    let mut diffs = Diffs::default();
    check_head_outputs_and_losses(&fixture(), &mut diffs);
    diffs.print("r18");
}

#[test]
fn detections_equal_torchvision() {
    let mut diffs = Diffs::default();
    check_detections(&fixture(), &mut diffs);
    diffs.print("r18");
}

/// The ResNet-50 v1 and v2 cases, when `FOCAL_R50_FIXTURE` names the file
/// (`make_torchvision_fixture.py --case r50 --out FILE`); otherwise says why it skips.
#[test]
fn resnet50_v1_and_v2_equal_torchvision_when_the_fixture_is_given() {
    let Some(path) = std::env::var_os("FOCAL_R50_FIXTURE") else {
        println!(
            "skipped: FOCAL_R50_FIXTURE is not set (make it with `make_torchvision_fixture.py --case r50 --out FILE`, \
             see tests/fixtures/README.md)"
        );
        return;
    };
    // A relative path is taken from the workspace root (tests run in the crate's folder).
    let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join(path);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("FOCAL_R50_FIXTURE={}: {e}", path.display()));
    let doc: Value = serde_json::from_str(&text).unwrap();
    let cases = doc["cases"].as_array().expect("a file made with --case r50 (`cases`: v1, v2)");
    assert_eq!(cases.len(), 2);
    for fx in cases {
        let mut diffs = Diffs::default();
        check_head_outputs_and_losses(fx, &mut diffs);
        check_detections(fx, &mut diffs);
        diffs.print(case(fx));
    }
}
