//! The `retinanet` binary: a short train/eval/detect run, and clear errors for bad input.

use std::path::PathBuf;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_retinanet"))
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("retina-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run_err(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "expected a failure, got success: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn train_eval_detect_round_trip_writes_outputs() {
    let dir = temp("ok");
    let ckpt = dir.join("m.safetensors");
    let out = bin()
        .args(["train", "--iterations", "4", "--num-images", "4", "--eval-images", "2", "--out"])
        .arg(&ckpt)
        .arg("--log")
        .arg(dir.join("loss.csv"))
        .arg("--eval-json")
        .arg(dir.join("held_out.json"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Train, then the held-out evaluation: the 12 COCO numbers, also as JSON.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("held-out evaluation: 2 synthetic images, seed 99"), "{stdout}");
    for name in retinanet::eval::STAT_NAMES {
        assert!(stdout.contains(name), "{name} missing from {stdout}");
    }
    let held_out: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("held_out.json")).unwrap()).unwrap();
    assert!(held_out.is_object(), "{held_out}");
    assert_eq!(std::fs::read_to_string(dir.join("loss.csv")).unwrap().lines().count(), 5);
    let out = bin().args(["eval", "--num-images", "2", "--checkpoint"]).arg(&ckpt).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("AP50"));
    // An image to detect on.
    let sample = retinanet::SyntheticConfig::small(1, 5).generate().unwrap().remove(0);
    let png = dir.join("in.png");
    image::RgbImage::from_raw(128, 128, sample.image.to_rgb8()).unwrap().save(&png).unwrap();
    let json = dir.join("dets.json");
    let out = bin()
        .args(["detect", "--checkpoint"])
        .arg(&ckpt)
        .arg(&png)
        .arg("--out")
        .arg(&json)
        .arg("--draw")
        .arg(dir.join("drawn"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let list = doc.as_array().unwrap();
    assert!(list.iter().all(|d| d["image_id"] == 1 && d["bbox"].as_array().unwrap().len() == 4));
    assert!(dir.join("drawn/in.png").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ablate_writes_table_json_and_plot_with_each_seed() {
    let dir = temp("ablate");
    let out = bin()
        .args(["ablate", "--iterations", "2", "--num-images", "2", "--val-images", "1", "--seeds", "2", "--out-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = std::fs::read_to_string(dir.join("ablation.md")).unwrap();
    // Header, separator, and the six settings (five gammas with the prior, gamma 2 without).
    assert_eq!(table.lines().count(), 8, "{table}");
    assert!(table.lines().next().unwrap().contains("AP (mean)"), "{table}");
    assert!(table.lines().nth(7).unwrap().starts_with("| 2 | 0.25 | no |"), "{table}");
    let runs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ablation.json")).unwrap()).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 6);
    for r in runs {
        let per_seed = r["ap_per_seed"].as_array().unwrap();
        assert_eq!(per_seed.len(), 2, "{r}");
        let mean = per_seed.iter().map(|v| v.as_f64().unwrap()).sum::<f64>() / 2.0;
        assert!((r["ap"].as_f64().unwrap() - mean).abs() < 1e-12, "{r}");
        assert_eq!(r["losses"].as_array().unwrap().len(), 2, "{r}");
    }
    assert!(dir.join("ablation.png").exists());
    // Zero seeds is refused.
    let err = run_err(bin().args(["ablate", "--seeds", "0", "--out-dir"]).arg(dir.join("none")));
    assert!(err.contains("--seeds"), "{err}");
    assert!(!dir.join("none").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_inputs_give_clear_errors_and_no_output() {
    let dir = temp("bad");
    // A missing checkpoint.
    let err = run_err(bin().args(["eval", "--checkpoint"]).arg(dir.join("none.safetensors")));
    assert!(err.contains("none.safetensors") && err.contains("No such file"), "{err}");
    // A file that is not a checkpoint.
    let fake = dir.join("fake.safetensors");
    std::fs::write(&fake, b"{}").unwrap();
    let err = run_err(bin().args(["eval", "--checkpoint"]).arg(&fake));
    assert!(err.contains("fake.safetensors"), "{err}");
    // A bad annotations JSON.
    let ann = dir.join("ann.json");
    std::fs::write(&ann, b"{ not json").unwrap();
    let err = run_err(bin().args(["train", "--iterations", "1", "--annotations"]).arg(&ann).arg("--images").arg(&dir));
    assert!(err.contains("not valid JSON"), "{err}");
    // An image that does not decode.
    std::fs::write(
        &ann,
        br#"{"images": [{"id": 1, "file_name": "broken.png"}], "annotations": [], "categories": [{"id": 1, "name": "a"}]}"#,
    )
    .unwrap();
    std::fs::write(dir.join("broken.png"), b"not a png").unwrap();
    let err = run_err(bin().args(["train", "--iterations", "1", "--annotations"]).arg(&ann).arg("--images").arg(&dir));
    assert!(err.contains("cannot decode image"), "{err}");
    // A checkpoint for another configuration: 3 synthetic classes against a 1-category dataset.
    let ckpt = dir.join("m.safetensors");
    let out = bin()
        .args(["train", "--iterations", "1", "--num-images", "2", "--eval-images", "0", "--out"])
        .arg(&ckpt)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let png = dir.join("ok.png");
    image::RgbImage::new(64, 64).save(&png).unwrap();
    std::fs::write(
        &ann,
        br#"{"images": [{"id": 1, "file_name": "ok.png"}], "annotations": [], "categories": [{"id": 1, "name": "a"}]}"#,
    )
    .unwrap();
    let out_json = dir.join("stats.json");
    let err = run_err(
        bin()
            .args(["eval", "--checkpoint"])
            .arg(&ckpt)
            .arg("--annotations")
            .arg(&ann)
            .arg("--images")
            .arg(&dir)
            .arg("--json")
            .arg(&out_json),
    );
    assert!(err.contains("categories") && err.contains("classes"), "{err}");
    assert!(!out_json.exists(), "nothing is written on error");
    let mut other = bin();
    other
        .args(["train", "--iterations", "3", "--resume"])
        .arg(&ckpt)
        .arg("--annotations")
        .arg(&ann)
        .arg("--images")
        .arg(&dir);
    let err = run_err(other.arg("--out").arg(dir.join("other.safetensors")));
    assert!(err.contains("another configuration"), "{err}");
    // Detect on an image that does not decode.
    let err = run_err(
        bin()
            .args(["detect", "--checkpoint"])
            .arg(&ckpt)
            .arg(dir.join("broken.png"))
            .arg("--out")
            .arg(dir.join("d.json")),
    );
    assert!(err.contains("cannot decode image"), "{err}");
    assert!(!dir.join("d.json").exists());
    // Held-out images drawn with the training seed are refused before any training.
    let err = run_err(
        bin()
            .args(["train", "--iterations", "1", "--num-images", "2", "--data-seed", "99", "--out"])
            .arg(dir.join("same-seed.safetensors")),
    );
    assert!(err.contains("--eval-seed 99 equals --data-seed"), "{err}");
    assert!(!dir.join("same-seed.safetensors").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A torchvision-layout RetinaNet (ResNet-18 FPN v1, 91 classes, small images) with
/// synthetic weights, written as torchvision's state_dict would be exported: our parameter
/// names are torchvision's (`tests/state_dict.rs`).
fn torchvision_style_model(min_size: usize, max_size: usize) -> retinanet::RetinaNet {
    let config = retinanet::ModelConfig {
        backbone: retinanet::BackboneConfig::ResNet { layers: 18, p6p7_from_c5: false, trainable_layers: 3 },
        min_size,
        max_size,
        ..retinanet::ModelConfig::retinanet_resnet50_fpn(91)
    };
    let mut model = retinanet::RetinaNet::new(config, 0).unwrap();
    fpn_net::init::synthetic(&mut model, 4);
    // As in the torchvision fixture: a smaller classifier output spreads the scores.
    for v in &mut model.classification_head.output_weight_mut().value {
        *v *= 0.02;
    }
    model
}

#[test]
fn torchvision_weights_detect_reports_the_label_as_coco_category_id() {
    let dir = temp("tv");
    let weights = dir.join("retinanet_r18.safetensors");
    let mut model = torchvision_style_model(64, 96);
    std::fs::write(&weights, fpn_net::weights::save(&model, "").unwrap()).unwrap();
    let sample = retinanet::SyntheticConfig::small(1, 5).generate().unwrap().remove(0);
    let png = dir.join("in.png");
    image::RgbImage::from_raw(128, 128, sample.image.to_rgb8()).unwrap().save(&png).unwrap();
    let json = dir.join("dets.json");
    let out = bin()
        .args(["detect", "--arch", "resnet18-fpn", "--min-size", "64", "--max-size", "96", "--torchvision-weights"])
        .arg(&weights)
        .arg(&png)
        .arg("--out")
        .arg(&json)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let list = doc.as_array().unwrap();
    // The same model through the library, on the decoded PNG.
    let decoded = image::open(&png).unwrap().to_rgb8();
    let img = retinanet::RgbImage::from_rgb8(decoded.as_raw(), 128, 128);
    let dets = retinanet::infer::detect(&mut model, &[&img], 1, &anchors::PostprocessConfig::torchvision_retinanet())
        .unwrap()
        .remove(0);
    assert!(!dets.labels.is_empty(), "the synthetic weights give detections");
    assert_eq!(list.len(), dets.labels.len());
    for (d, (&label, &score)) in list.iter().zip(dets.labels.iter().zip(&dets.scores)) {
        // torchvision's COCO models predict the category id itself: no + 1.
        assert_eq!(d["category_id"].as_i64().unwrap(), label as i64, "{d}");
        assert_eq!(d["category"].as_str().unwrap(), retinanet::coco::COCO_CATEGORY_NAMES[label as usize]);
        assert!((d["score"].as_f64().unwrap() - score as f64).abs() < 1e-6, "{d}");
    }
    // eval takes the same weights; on the built-in data (categories 1-3) it runs end to end.
    let out = bin()
        .args(["eval", "--num-images", "2", "--arch", "resnet18-fpn", "--min-size", "64", "--max-size", "96"])
        .arg("--torchvision-weights")
        .arg(&weights)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("AP50"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn torchvision_weights_that_are_missing_or_for_another_arch_are_clear_errors() {
    let dir = temp("tv-bad");
    let png = dir.join("in.png");
    image::RgbImage::new(64, 64).save(&png).unwrap();
    let json = dir.join("dets.json");
    // A missing file.
    let missing = dir.join("none.safetensors");
    let err = run_err(bin().args(["detect", "--torchvision-weights"]).arg(&missing).arg(&png).arg("--out").arg(&json));
    assert!(err.contains("none.safetensors") && err.contains("No such file"), "{err}");
    // ResNet-18 weights given as the default ResNet-50 v1: every missing and mis-shaped tensor
    // is listed.
    let weights = dir.join("r18.safetensors");
    std::fs::write(&weights, fpn_net::weights::save(&torchvision_style_model(64, 96), "").unwrap()).unwrap();
    let err = run_err(bin().args(["detect", "--torchvision-weights"]).arg(&weights).arg(&png).arg("--out").arg(&json));
    assert!(err.contains("not a torchvision RetinaNet state_dict for --arch resnet50-fpn with 91 classes"), "{err}");
    assert!(err.contains("missing") && err.contains("backbone.body.layer1.0.conv3.weight"), "{err}");
    assert!(err.contains("mis-shaped") && err.contains("backbone.fpn.inner_blocks.0.0.weight"), "{err}");
    // The right arch with another class count: the classifier is mis-shaped.
    let err = run_err(
        bin()
            .args(["eval", "--arch", "resnet18-fpn", "--num-classes", "3", "--torchvision-weights"])
            .arg(&weights)
            .arg("--json")
            .arg(&json),
    );
    assert!(err.contains("head.classification_head.cls_logits.weight"), "{err}");
    // Our checkpoint and torchvision weights together are refused.
    let err = run_err(bin().args(["eval", "--checkpoint"]).arg(&weights).arg("--torchvision-weights").arg(&weights));
    assert!(err.contains("cannot be used with"), "{err}");
    assert!(!json.exists(), "nothing is written on error");
    std::fs::remove_dir_all(&dir).unwrap();
}
