//! COCO evaluation (hotcoco) against pycocotools' numbers on a committed fixture.

use retinanet::eval::{STAT_NAMES, evaluate_json};

#[test]
fn coco_stats_equal_pycocotools_on_fixture() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/coco_eval.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let stats = evaluate_json(&doc["ground_truth"], &doc["detections"]).unwrap();
    let expected: Vec<f64> = doc["pycocotools_stats"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    for (i, (got, want)) in stats.0.iter().zip(&expected).enumerate() {
        // pycocotools prints and stores float64; the tolerance covers its last-digit rounding.
        let tol = 1e-12;
        assert!((got - want).abs() <= tol, "{}: hotcoco {got}, pycocotools {want}, |a - r| <= {tol}", STAT_NAMES[i]);
    }
}

#[test]
fn malformed_results_are_an_error() {
    let gt = serde_json::json!({"images": [{"id": 1, "width": 10, "height": 10}], "annotations": [], "categories": [{"id": 1, "name": "a"}]});
    let bad = serde_json::json!([{"image_id": "x", "bbox": 3}]);
    assert!(evaluate_json(&gt, &bad).is_err());
}
