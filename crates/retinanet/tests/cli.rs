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
        .args(["train", "--iterations", "4", "--num-images", "4", "--out"])
        .arg(&ckpt)
        .arg("--log")
        .arg(dir.join("loss.csv"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
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
    let out = bin().args(["train", "--iterations", "1", "--num-images", "2", "--out"]).arg(&ckpt).output().unwrap();
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
    std::fs::remove_dir_all(&dir).unwrap();
}
