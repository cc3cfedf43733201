//! COCO bbox evaluation through the `hotcoco` crate (a pure-Rust port of pycocotools whose
//! numbers agree with it; `tests/fixtures/coco_eval` shows the agreement on our fixture).

use anchors::Detections;
use serde_json::{Value, json};

use crate::data::Sample;
use crate::error::{Result, RetinaError};

/// The twelve numbers of `COCOeval.summarize()` for bbox, in its order.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CocoStats(pub [f64; 12]);

/// Names of the twelve numbers.
pub const STAT_NAMES: [&str; 12] =
    ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"];

impl CocoStats {
    /// AP at IoU 0.50:0.95.
    pub fn ap(&self) -> f64 {
        self.0[0]
    }
    /// AP at IoU 0.50.
    pub fn ap50(&self) -> f64 {
        self.0[1]
    }
    /// The numbers by name.
    pub fn to_json(&self) -> Value {
        Value::Object(STAT_NAMES.iter().zip(self.0).map(|(n, v)| (n.to_string(), json!(v))).collect())
    }
}

/// A COCO instances document for `samples`; label `l` is category `categories[l]`.
pub fn ground_truth_json(samples: &[Sample], categories: &[(u64, String)]) -> Value {
    let images: Vec<Value> = samples
        .iter()
        .map(|s| json!({"id": s.id, "width": s.image.width, "height": s.image.height, "file_name": format!("{}.png", s.id)}))
        .collect();
    let mut annotations = Vec::new();
    for s in samples {
        for (b, &l) in s.boxes.iter().zip(&s.labels) {
            let (w, h) = ((b[2] - b[0]) as f64, (b[3] - b[1]) as f64);
            annotations.push(json!({
                "id": annotations.len() + 1, "image_id": s.id, "category_id": category(categories, l),
                "bbox": [b[0] as f64, b[1] as f64, w, h], "area": w * h, "iscrowd": 0,
            }));
        }
    }
    let cats: Vec<Value> = categories.iter().map(|(id, n)| json!({"id": id, "name": n})).collect();
    json!({"images": images, "annotations": annotations, "categories": cats})
}

/// The category id of label `l` (`l + 1` past the list).
fn category(categories: &[(u64, String)], l: i32) -> u64 {
    categories.get(l as usize).map_or(l as u64 + 1, |c| c.0)
}

/// Detections as a COCO results list (`bbox` as `[x, y, w, h]`); label `l` is category
/// `categories[l]`.
pub fn detections_json(image_ids: &[u64], detections: &[Detections], categories: &[(u64, String)]) -> Value {
    let mut out = Vec::new();
    for (&id, d) in image_ids.iter().zip(detections) {
        for ((b, &s), &l) in d.boxes.iter().zip(&d.scores).zip(&d.labels) {
            out.push(json!({
                "image_id": id, "category_id": category(categories, l), "score": s as f64,
                "bbox": [b[0] as f64, b[1] as f64, (b[2] - b[0]) as f64, (b[3] - b[1]) as f64],
            }));
        }
    }
    Value::Array(out)
}

/// COCO bbox evaluation of a results list against an instances document.
///
/// # Errors
/// [`RetinaError::Eval`] when either document is malformed or evaluation fails.
pub fn evaluate_json(ground_truth: &Value, results: &Value) -> Result<CocoStats> {
    let eval_err = |e: &dyn std::fmt::Display| RetinaError::Eval(e.to_string());
    let dataset: hotcoco::types::Dataset = serde_json::from_value(ground_truth.clone()).map_err(|e| eval_err(&e))?;
    let gt = hotcoco::COCO::from_dataset(dataset);
    let anns: Vec<hotcoco::types::Annotation> = serde_json::from_value(results.clone()).map_err(|e| eval_err(&e))?;
    let dt = gt.load_res_anns(anns).map_err(|e| eval_err(&e))?;
    let mut ev = hotcoco::COCOeval::new(gt, dt, hotcoco::params::IouType::Bbox);
    ev.evaluate().map_err(|e| eval_err(&e))?;
    ev.accumulate();
    let _ = ev.summarize_lines();
    let stats = ev.stats().ok_or_else(|| RetinaError::Eval("no statistics after summarize".into()))?;
    let mut out = [0.0; 12];
    for (o, s) in out.iter_mut().zip(stats) {
        *o = *s;
    }
    Ok(CocoStats(out))
}

/// COCO bbox AP of `detections` on `samples`.
///
/// # Errors
/// As [`evaluate_json`].
pub fn evaluate(samples: &[Sample], detections: &[Detections], categories: &[(u64, String)]) -> Result<CocoStats> {
    let gt = ground_truth_json(samples, categories);
    let ids: Vec<u64> = samples.iter().map(|s| s.id).collect();
    evaluate_json(&gt, &detections_json(&ids, detections, categories))
}
