//! The anchors suite: target assignment, NMS, box decoding and RetinaNet post-processing on
//! RetinaNet-sized inputs, ours
//! beside torchvision on the CPU with the same threads, measured in one run.
//!
//! Before any time is shown, our matches and NMS keep lists are compared with torchvision's on
//! the same inputs (when torch is importable) and with our readable reference twins.

use super::{Options, Row, measure_interleaved, print_table, python_has, run_python_rows};
use anchors::nms::nms_reference;
use anchors::{
    AnchorConfig, AnchorGenerator, AssignedTargets, BoxCoder, GroundTruth, PostprocessConfig, TargetAssigner,
    assign_image_reference, batched_nms, nms, postprocess_batch,
};
use anyhow::{Context, Result, ensure};
use focal_benches::COCO_CLASSES;
use focal_benches::anchors::{GRIDS_800, clustered_detections, ground_truth, head_outputs, random_codes};

/// Ground-truth boxes per image in the assignment rows.
pub const GT_COUNTS: [usize; 2] = [10, 100];
/// Boxes in the NMS rows.
pub const NMS_COUNTS: [usize; 2] = [1_000, 10_000];

/// Runs the suite and prints its table.
pub fn run(opts: &Options) -> Result<Vec<Row>> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(opts.threads).build()?;
    pool.install(|| run_in_pool(opts))
}

struct Named {
    group: &'static str,
    implementation: String,
    shape: String,
    bytes: f64,
}

fn run_in_pool(opts: &Options) -> Result<Vec<Row>> {
    let generator = AnchorGenerator::new(AnchorConfig::torchvision_retinanet())?;
    let anchors = generator.generate([800, 800], &GRIDS_800)?;
    let a = anchors.len();
    let assigner = TargetAssigner::retinanet();
    let coder = BoxCoder::retinanet();
    let gts: Vec<(Vec<[f32; 4]>, Vec<i32>)> = GT_COUNTS.iter().map(|&m| ground_truth(m)).collect();
    let scenes: Vec<_> = NMS_COUNTS.iter().map(|&n| clustered_detections(n as u64, n, 800.0, 80)).collect();
    let codes = random_codes(7, a, 1.0);
    let (head_logits, head_regression) = head_outputs(a, COCO_CLASSES, 11);
    let image_size = [800u32, 800];
    let postprocess_config = PostprocessConfig::torchvision_retinanet();

    // Correctness first: fused assignment equals the matrix reference, fast NMS equals the
    // kernel-shaped reference.
    let mut targets: Vec<AssignedTargets> = Vec::new();
    for (boxes, labels) in &gts {
        let gt = GroundTruth { boxes, labels };
        let t = assigner.assign(&anchors, &[gt])?;
        let reference = assign_image_reference(&assigner, anchors.boxes(), &gt)?;
        ensure!(t.matched_gt() == &reference.matched_gt[..], "fused assignment differs from the reference");
        ensure!(t.regression() == &reference.regression[..], "fused regression differs from the reference");
        targets.push(t);
    }
    for (boxes, scores, _) in &scenes {
        ensure!(nms(boxes, scores, 0.5)? == nms_reference(boxes, scores, 0.5)?, "fast NMS differs from the reference");
    }

    let mut names: Vec<Named> = Vec::new();
    let mut decoded = vec![[0.0f32; 4]; a];
    let medians = {
        let mut impls: Vec<Box<dyn FnMut() + '_>> = Vec::new();
        for ((boxes, labels), t) in gts.iter().zip(targets.iter_mut()) {
            let shape = format!("{a} anchors x {} boxes", boxes.len());
            names.push(Named {
                group: "assign_targets",
                implementation: "ours fused (labels + matches + encode)".into(),
                shape: shape.clone(),
                bytes: (a * (16 + 4 + 4 + 16 + 4)) as f64,
            });
            let (anchors, assigner) = (&anchors, &assigner);
            impls.push(Box::new(move || {
                let gt = GroundTruth { boxes, labels };
                assigner.assign_into(anchors, &[gt], t).expect("valid inputs");
            }));
            names.push(Named {
                group: "assign_targets",
                implementation: "ours reference (IoU matrix + Matcher + encode)".into(),
                shape,
                bytes: 0.0,
            });
            impls.push(Box::new(move || {
                let gt = GroundTruth { boxes, labels };
                assign_image_reference(assigner, anchors.boxes(), &gt).expect("valid inputs");
            }));
        }
        for (boxes, scores, classes) in &scenes {
            let n = boxes.len();
            names.push(Named { group: "nms", implementation: "ours".into(), shape: format!("{n} boxes"), bytes: 0.0 });
            impls.push(Box::new(move || {
                nms(boxes, scores, 0.5).expect("valid inputs");
            }));
            names.push(Named {
                group: "batched_nms",
                implementation: "ours".into(),
                shape: format!("{n} boxes, 80 classes"),
                bytes: 0.0,
            });
            impls.push(Box::new(move || {
                batched_nms(boxes, scores, classes, 0.5).expect("valid inputs");
            }));
        }
        names.push(Named {
            group: "decode_boxes",
            implementation: "ours".into(),
            shape: format!("{a} boxes"),
            bytes: (a * 48) as f64,
        });
        names.push(Named {
            group: "retinanet_postprocess",
            implementation: "ours".into(),
            shape: format!("1 x {a} anchors x {COCO_CLASSES} classes"),
            bytes: (a * (COCO_CLASSES + 4) * 4) as f64,
        });
        let (logits, regression, config) = (&head_logits, &head_regression, &postprocess_config);
        let (codes, anchors, coder, decoded) = (&codes, &anchors, &coder, &mut decoded);
        impls.push(Box::new(move || coder.decode_boxes(codes, anchors.boxes(), decoded).expect("valid inputs")));
        impls.push(Box::new(move || {
            postprocess_batch(logits, regression, anchors, COCO_CLASSES, &[image_size], coder, config)
                .expect("valid inputs");
        }));
        let mut refs: Vec<&mut dyn FnMut()> = impls.iter_mut().map(|f| f.as_mut() as &mut dyn FnMut()).collect();
        measure_interleaved(&mut refs, opts.budget_s())
    };
    let mut rows: Vec<Row> = names
        .into_iter()
        .zip(medians)
        .map(|(n, median_s)| Row {
            group: n.group.into(),
            implementation: n.implementation,
            shape: n.shape,
            threads: opts.threads,
            median_s,
            bytes: n.bytes,
        })
        .collect();

    if python_has("torch, torchvision, numpy") {
        let dir = std::env::temp_dir().join(format!("focal-bench-anchors-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let write = |name: &str, bytes: &[u8]| std::fs::write(dir.join(name), bytes);
        write("anchors.f32", bytemuck::cast_slice(anchors.boxes()))?;
        for (boxes, _) in &gts {
            write(&format!("gt{}.f32", boxes.len()), bytemuck::cast_slice(boxes))?;
        }
        for (boxes, scores, classes) in &scenes {
            let n = boxes.len();
            write(&format!("nms{n}_boxes.f32"), bytemuck::cast_slice(boxes))?;
            write(&format!("nms{n}_scores.f32"), bytemuck::cast_slice(scores))?;
            write(&format!("nms{n}_classes.i32"), bytemuck::cast_slice(classes))?;
        }
        write("codes.f32", bytemuck::cast_slice(&codes))?;
        write("head_logits.f32", bytemuck::cast_slice(&head_logits))?;
        write("head_regression.f32", bytemuck::cast_slice(&head_regression))?;
        let args = [
            "--dir".to_string(),
            dir.display().to_string(),
            "--threads".into(),
            opts.threads.to_string(),
            "--budget".into(),
            opts.budget_s().to_string(),
        ];
        let tv = run_python_rows("benches/python/anchors_torchvision.py", &args)?;
        // torchvision's answers on the same inputs must equal ours.
        for ((boxes, _), t) in gts.iter().zip(&targets) {
            let raw = std::fs::read(dir.join(format!("tv_matched{}.i32", boxes.len())))?;
            let theirs: &[i32] = bytemuck::try_cast_slice(&raw).map_err(|e| anyhow::anyhow!("{e}"))?;
            ensure!(theirs == t.matched_gt(), "torchvision's matches differ from ours for {} boxes", boxes.len());
        }
        for (boxes, scores, _) in &scenes {
            let raw = std::fs::read(dir.join(format!("tv_nms{}.i64", boxes.len())))?;
            let theirs: &[i64] = bytemuck::try_cast_slice(&raw).map_err(|e| anyhow::anyhow!("{e}"))?;
            let ours: Vec<i64> = nms(boxes, scores, 0.5)?.into_iter().map(|i| i as i64).collect();
            ensure!(theirs == &ours[..], "torchvision's NMS keeps differ from ours for {} boxes", boxes.len());
        }
        let dets = postprocess_batch(
            &head_logits,
            &head_regression,
            &anchors,
            COCO_CLASSES,
            &[image_size],
            &coder,
            &postprocess_config,
        )?;
        let raw = std::fs::read(dir.join("tv_post_labels.i64"))?;
        let theirs: &[i64] = bytemuck::try_cast_slice(&raw).map_err(|e| anyhow::anyhow!("{e}"))?;
        let ours: Vec<i64> = dets[0].labels.iter().map(|&l| l as i64).collect();
        ensure!(theirs == &ours[..], "torchvision's post-processed detections differ from ours");
        std::fs::remove_dir_all(&dir).context("removing the bench inputs")?;
        rows.extend(tv);
        println!("\nanchors: our matches and NMS keeps equal torchvision's on these inputs");
    } else {
        println!(
            "\nanchors: torch/torchvision not importable with `{}` (set $FOCAL_PYTHON); showing our rows only",
            super::python()
        );
    }
    rows.sort_by(|x, y| (x.group.as_str(), x.shape.as_str()).cmp(&(y.group.as_str(), y.shape.as_str())));
    print_table(
        "anchors: target assignment, NMS, decoding, post-processing (CPU)",
        &rows,
        &[
            "torchvision box_iou + Matcher",
            "torchvision nms (C++)",
            "torchvision batched_nms",
            "torchvision BoxCoder.decode_single",
            "torchvision RetinaNet.postprocess_detections",
        ],
    );
    Ok(rows)
}
