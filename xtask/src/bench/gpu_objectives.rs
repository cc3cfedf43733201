//! The GPU suite's second table: every other focal-cuda entry point at the same size as the
//! RetinaNet table (8 images x 120,087 anchors x 80 classes), each beside a device-to-device
//! copy of its logits, measured in one run. The RetinaNet table times the sparse sigmoid kernel
//! at gamma 2 with a scalar alpha (the specialised entry points); this one times the general
//! sparse entry points (another gamma, per-class alpha), dense soft targets, softmax, varifocal
//! and quality focal loss, so no kernel ships untimed.

use super::gpu::{IMAGES, measure_beside_copy};
use super::{Row, print_table};
use anyhow::Result;
use cudarc::driver::{CudaSlice, DeviceRepr, ValidAsZeroBits};
use focal_benches::{COCO_CLASSES, RETINANET_ANCHORS, retinanet_inputs};
use focal_core::{FocalParams, VarifocalParams};
use focal_cuda::{Call, DeviceElement, DeviceTarget, Dims, FocalCuda, Normalization, Objective, Weights, Workspace};
use half::bf16;

/// Inputs of one image batch: logits, sparse labels and, with `dense`, targets built from the
/// labels (the positive class of a row at an IoU-like quality in [0.3, 0.9], 0 elsewhere,
/// ignored rows all 0) with a weight per anchor (0 on ignored rows).
struct Inputs {
    logits: Vec<f32>,
    labels: Vec<i32>,
    targets: Vec<f32>,
    weights: Vec<f32>,
    foreground: usize,
}

fn inputs(anchors: usize, classes: usize, dense: bool) -> Inputs {
    let mut out =
        Inputs { logits: Vec::new(), labels: Vec::new(), targets: Vec::new(), weights: Vec::new(), foreground: 0 };
    for b in 0..IMAGES {
        let (x, labels) = retinanet_inputs(anchors, classes, 42 + b as u64);
        out.foreground += labels.iter().filter(|&&l| l >= 0).count();
        if dense {
            for (r, &label) in labels.iter().enumerate() {
                let row = out.targets.len();
                out.targets.resize(row + classes, 0.0);
                if label >= 0 {
                    // A quality that varies from row to row without another random stream.
                    out.targets[row + label as usize] = 0.3 + 0.6 * ((r * 7919) % 1000) as f32 / 1000.0;
                }
                out.weights.push(if label == focal_core::labels::IGNORE { 0.0 } else { 1.0 });
            }
        }
        out.logits.extend(x);
        out.labels.extend(labels);
    }
    out
}

/// What one row of the table runs.
struct Case {
    name: &'static str,
    objective: Objective,
    normalization: Normalization,
    /// Sparse labels (else dense targets and per-anchor weights).
    sparse: bool,
    /// Softmax: the classes include background (one more column, background labelled C).
    softmax: bool,
}

fn cases(foreground: usize) -> Result<Vec<Case>> {
    let norm = Normalization::Normalizer(foreground.max(1) as f64);
    // Per-class alpha: COCO-like spread of class weights around torchvision's 0.25.
    let per_class: Vec<f64> = (0..COCO_CLASSES).map(|c| 0.15 + 0.2 * (c % 5) as f64 / 4.0).collect();
    Ok(vec![
        Case {
            name: "sigmoid sparse, gamma 1.5 (general entry)",
            objective: Objective::SigmoidFocal(FocalParams::new(Some(0.25), 1.5)?),
            normalization: Normalization::ForegroundPerImage,
            sparse: true,
            softmax: false,
        },
        Case {
            name: "sigmoid sparse, gamma 2, per-class alpha (general entry)",
            objective: Objective::SigmoidFocal(FocalParams::per_class(per_class, 2.0)?),
            normalization: Normalization::ForegroundPerImage,
            sparse: true,
            softmax: false,
        },
        Case {
            name: "sigmoid dense soft targets + anchor weights, gamma 2",
            objective: Objective::SigmoidFocal(FocalParams::retinanet()),
            normalization: norm,
            sparse: false,
            softmax: false,
        },
        Case {
            name: "softmax focal, 81 classes (background one of them), gamma 2",
            objective: Objective::SoftmaxFocal(FocalParams::retinanet()),
            // The mean over labelled rows (PyTorch's cross_entropy with ignore_index).
            normalization: Normalization::Mean,
            sparse: true,
            softmax: true,
        },
        Case {
            name: "varifocal (mmdetection defaults)",
            objective: Objective::Varifocal(VarifocalParams::mmdet()),
            normalization: norm,
            sparse: false,
            softmax: false,
        },
        Case {
            name: "quality focal, beta 2",
            objective: Objective::QualityFocal { beta: 2.0 },
            normalization: norm,
            sparse: false,
            softmax: false,
        },
    ])
}

/// The table's rows for logits of type `T` (gradient in `T`).
fn rows_for<T: DeviceElement + DeviceRepr + ValidAsZeroBits>(
    focal: &FocalCuda,
    data: &Inputs,
    softmax_data: &Inputs,
    calls: usize,
) -> Result<Vec<Row>> {
    let s = focal.stream().clone();
    let (anchors, classes) = (RETINANET_ANCHORS, COCO_CLASSES);
    let upload = |v: &[f32]| -> Result<CudaSlice<T>> {
        let host: Vec<T> = v.iter().map(|&x| T::from_f32(x)).collect();
        Ok(s.clone_htod(&host)?)
    };
    let x = upload(&data.logits)?;
    let x_softmax = upload(&softmax_data.logits)?;
    let labels = s.clone_htod(&data.labels)?;
    let labels_softmax = s.clone_htod(&softmax_data.labels)?;
    let targets = s.clone_htod(&data.targets)?;
    let weights = s.clone_htod(&data.weights)?;
    let dims = Dims::new(IMAGES, anchors, classes);
    let dims_softmax = Dims::new(IMAGES, anchors, classes + 1);

    let cases = cases(data.foreground)?;
    let mut states = Vec::new();
    for case in &cases {
        let d = if case.softmax { dims_softmax } else { dims };
        states.push((
            Call::new(case.objective.clone(), d, case.normalization),
            Workspace::new(&s, d)?,
            s.alloc_zeros::<T>(d.numel())?,
        ));
    }
    let mut runs: Vec<Box<dyn FnMut() -> Result<()> + '_>> = Vec::new();
    for (case, (call, ws, grad)) in cases.iter().zip(states.iter_mut()) {
        let (x, labels) = if case.softmax { (&x_softmax, &labels_softmax) } else { (&x, &labels) };
        let (targets, weights, sparse) = (&targets, &weights, case.sparse);
        runs.push(Box::new(move || -> Result<()> {
            let target = if sparse {
                DeviceTarget::Sparse(labels.as_view())
            } else {
                DeviceTarget::Dense {
                    targets: targets.as_view(),
                    weights: Some((Weights::PerAnchor, weights.as_view())),
                }
            };
            focal.forward_backward::<T, T>(call, &x.as_view(), target, Some(&mut grad.as_view_mut()), None, ws)?;
            Ok(())
        }));
    }
    // The floor copies the 80-class logits; softmax's row reads and writes 81 columns.
    let times = measure_beside_copy(&s, &mut runs, &x, calls)?;

    let elem = T::BYTES as f64;
    let shape = format!("{IMAGES}x{anchors}x{classes} {}", T::NAME);
    let row = |implementation: String, median_s: f64, bytes: f64| Row {
        group: "focal_cuda_objectives_gpu".into(),
        implementation,
        shape: shape.clone(),
        threads: 1,
        median_s,
        bytes,
    };
    let mut rows = Vec::new();
    for (case, &t) in cases.iter().zip(&times) {
        let d = if case.softmax { dims_softmax } else { dims };
        let n = d.numel() as f64;
        // Logits read and gradient written, plus labels (4 bytes a row) or f32 targets and an
        // f32 weight per row.
        let extra = if case.sparse { d.rows() as f64 * 4.0 } else { n * 4.0 + d.rows() as f64 * 4.0 };
        rows.push(row(case.name.to_string(), t, n * 2.0 * elem + extra));
    }
    rows.push(row("floor".into(), times[cases.len()], dims.numel() as f64 * 2.0 * elem));
    Ok(rows)
}

/// Times every case in f32 and bf16 and prints the table.
pub fn run(focal: &FocalCuda, calls: usize, title: &str) -> Result<Vec<Row>> {
    let (anchors, classes) = (RETINANET_ANCHORS, COCO_CLASSES);
    let data = inputs(anchors, classes, true);
    // Softmax: background is class `classes` of `classes + 1`; ignored rows keep -2.
    let mut softmax_data = inputs(anchors, classes + 1, false);
    for l in &mut softmax_data.labels {
        if *l == focal_core::labels::BACKGROUND {
            *l = classes as i32;
        }
    }
    let mut rows = rows_for::<f32>(focal, &data, &softmax_data, calls)?;
    rows.extend(rows_for::<bf16>(focal, &data, &softmax_data, calls)?);
    print_table(title, &rows, &["floor"]);
    Ok(rows)
}
