//! The focal loss backend: the CPU path is the same computation with or without the `cuda`
//! feature, and (with `cuda` and a GPU) focal-cuda agrees with it.
//!
//! Built and run both ways: `cargo test -p retinanet --test backend` and
//! `cargo test -p retinanet --features cuda --test backend`.

use anchors::{Anchors, GroundTruth};

mod common;
use common::grid_anchors;
use retinanet::init::NormalRng;
use retinanet::{FocalBackend, LossConfig, LossValues, Normalizer, RetinaLoss};

/// Three images on a grid of 128 anchors, 3 classes: two boxes, one box, and no box (an image
/// whose normaliser is max(1, 0) = 1), so per-image normalisation is exercised.
struct Batch {
    anchors: Anchors,
    logits: Vec<f32>,
    regression: Vec<[f32; 4]>,
}

const CLASSES: usize = 3;
const GT_BOXES: [&[[f32; 4]]; 3] =
    [&[[4.0, 4.0, 30.0, 28.0], [36.0, 30.0, 60.0, 62.0]], &[[10.0, 40.0, 26.0, 56.0]], &[]];
const GT_LABELS: [&[i32]; 3] = [&[0, 2], &[1], &[]];

fn batch() -> Batch {
    let anchors = grid_anchors();
    let n = GT_BOXES.len() * anchors.len();
    let mut rng = NormalRng::new(21);
    let mut logits = vec![0.0f32; n * CLASSES];
    rng.fill_normal(&mut logits, 3.0);
    let mut regression = vec![[0.0f32; 4]; n];
    for r in &mut regression {
        rng.fill_normal(r, 0.5);
    }
    Batch { anchors, logits, regression }
}

/// One step on `b` with `loss`.
fn run_into(loss: &mut RetinaLoss, b: &Batch) -> (LossValues, Vec<f32>, Vec<[f32; 4]>) {
    let gt: Vec<GroundTruth<'_>> =
        GT_BOXES.iter().zip(GT_LABELS).map(|(boxes, labels)| GroundTruth { boxes, labels }).collect();
    let (mut gl, mut gr) = (vec![f32::NAN; b.logits.len()], vec![[f32::NAN; 4]; b.regression.len()]);
    let v = loss.compute(&b.logits, &b.regression, &b.anchors, &gt, CLASSES, &mut gl, &mut gr).unwrap();
    (v, gl, gr)
}

/// Two steps (so the EMA normaliser moves), returning each step's values and gradients.
fn run(mut loss: RetinaLoss, b: &Batch) -> Vec<(LossValues, Vec<f32>, Vec<[f32; 4]>)> {
    (0..2).map(|_| run_into(&mut loss, b)).collect()
}

fn configs() -> [LossConfig; 2] {
    [LossConfig::default(), LossConfig { normalizer: Normalizer::Ema { momentum: 0.9 }, ..LossConfig::default() }]
}

#[test]
fn cpu_backend_is_what_new_chooses_without_a_gpu_bit_for_bit() {
    let auto = FocalBackend::auto().unwrap();
    println!("focal loss backend: {}", auto.describe());
    if auto.is_gpu() {
        println!("skipped: a GPU was found, so `RetinaLoss::new` runs focal-cuda (compared in the GPU test)");
        return;
    }
    // Without a GPU the `cuda` build takes exactly the code path of a build without the
    // feature: the same per-image focal-core calls, so the same bits.
    assert!(auto.describe().starts_with("focal-core on the CPU"), "{}", auto.describe());
    let b = batch();
    for config in configs() {
        let auto_run = run(RetinaLoss::new(config.clone()).unwrap(), &b);
        let cpu_run = run(RetinaLoss::with_backend(config, FocalBackend::Cpu).unwrap(), &b);
        for ((va, ga, ra), (vc, gc, rc)) in auto_run.iter().zip(&cpu_run) {
            assert_eq!(va.classification.to_bits(), vc.classification.to_bits());
            assert_eq!(va.box_regression.to_bits(), vc.box_regression.to_bits());
            assert_eq!(va.num_foreground, vc.num_foreground);
            assert!(ga.iter().zip(gc).all(|(x, y)| x.to_bits() == y.to_bits()), "logit gradients differ");
            assert!(ra.iter().flatten().zip(rc.iter().flatten()).all(|(x, y)| x.to_bits() == y.to_bits()));
        }
    }
}

#[test]
fn cpu_backend_loss_is_finite_and_gradient_fully_written() {
    let b = batch();
    for (v, gl, gr) in run(RetinaLoss::with_backend(LossConfig::default(), FocalBackend::Cpu).unwrap(), &b) {
        assert!(v.classification.is_finite() && v.classification > 0.0 && v.num_foreground > 0, "{v:?}");
        assert!(gl.iter().all(|g| g.is_finite()) && gr.iter().flatten().all(|g| g.is_finite()));
    }
}

/// The GPU path normalises with `Normalization::ForegroundPerImage`, which counts the labels
/// `>= 0` of each image on the device; the CPU path divides by the assigner's
/// `num_foreground`. Both must be the same number for the two paths to mean the same thing.
#[test]
fn foreground_counts_of_the_cpu_normaliser_are_the_labels_a_gpu_counts() {
    let b = batch();
    let mut loss = RetinaLoss::with_backend(LossConfig::default(), FocalBackend::Cpu).unwrap();
    run_into(&mut loss, &b);
    let a = b.anchors.len();
    let t = loss.targets();
    let counted: Vec<usize> = t.labels().chunks(a).map(|l| l.iter().filter(|&&x| x >= 0).count()).collect();
    assert_eq!(t.num_foreground(), counted.as_slice());
    assert!(counted[0] > 0 && counted[1] > 0 && counted[2] == 0, "{counted:?}");
}

#[cfg(feature = "cuda")]
mod gpu {
    use super::*;

    /// The GPU backend, or `None` after printing why the comparison is skipped;
    /// `FOCAL_REQUIRE_GPU=1` turns the skip into a failure.
    fn gpu_or_skip() -> Option<FocalBackend> {
        if focal_cuda::is_available() {
            return Some(FocalBackend::cuda(0).unwrap());
        }
        assert!(
            std::env::var("FOCAL_REQUIRE_GPU").as_deref() != Ok("1"),
            "FOCAL_REQUIRE_GPU=1 but no CUDA driver or device was found"
        );
        println!("skipped: no CUDA driver (or no CUDA device): the GPU-CPU comparison needs one");
        None
    }

    use focal_cuda::verify::Tolerance;

    /// `|gpu - cpu|` bound: focal-cuda documents that its f32 loss and gradient lie within
    /// `Tolerance::F32` of the float64 reference (`abs_unit * unit + rel * |r|`, `unit` the
    /// gradient of one unit of loss), and focal-core is within the same of it, so the two may
    /// differ by twice that.
    fn bound(r: f64, unit: f64) -> f64 {
        2.0 * Tolerance::F32.bound(r, unit)
    }

    /// The gradient of one unit of loss: 1 / the smallest normaliser of the batch
    /// (per image: max(1, fg_i) * B; EMA: the EMA value, which starts at 100 and moves towards
    /// max(1, the batch's foreground count), so it never falls below the smaller of the two).
    fn gradient_unit(loss: &RetinaLoss, config: &LossConfig) -> f64 {
        let images = GT_BOXES.len() as f64;
        match config.normalizer {
            Normalizer::PerImage => {
                1.0 / (loss.targets().num_foreground().iter().map(|&n| n.max(1)).min().unwrap_or(1) as f64 * images)
            }
            Normalizer::Ema { .. } => 1.0 / loss.targets().num_foreground().iter().sum::<usize>().clamp(1, 100) as f64,
        }
    }

    #[test]
    fn gpu_focal_loss_and_gradient_match_cpu() {
        let Some(gpu) = gpu_or_skip() else { return };
        let b = batch();
        for config in configs() {
            let mut cpu_loss = RetinaLoss::with_backend(config.clone(), FocalBackend::Cpu).unwrap();
            let cpu_first = run_into(&mut cpu_loss, &b);
            let unit = gradient_unit(&cpu_loss, &config);
            let gpu_run = run(RetinaLoss::with_backend(config.clone(), gpu.clone()).unwrap(), &b);
            let cpu_run = run(RetinaLoss::with_backend(config.clone(), FocalBackend::Cpu).unwrap(), &b);
            assert_eq!(cpu_first.0, cpu_run[0].0);
            let (mut worst_loss, mut worst_grad) = (0.0f64, 0.0f64);
            for (step, ((vg, gg, rg), (vc, gc, rc))) in gpu_run.iter().zip(&cpu_run).enumerate() {
                let tol = bound(vc.classification, 0.0);
                let d = (vg.classification - vc.classification).abs();
                assert!(
                    d <= tol,
                    "{config:?} step {step}: GPU loss {}, CPU {}, |a - r| <= {tol}",
                    vg.classification,
                    vc.classification
                );
                worst_loss = worst_loss.max(d / tol);
                assert_eq!(vg.box_regression.to_bits(), vc.box_regression.to_bits(), "the box loss is on the CPU");
                for (i, (&g, &r)) in gg.iter().zip(gc).enumerate() {
                    let tol = bound(r as f64, unit);
                    let d = (g as f64 - r as f64).abs();
                    assert!(d <= tol, "{config:?} step {step}: d logit[{i}]: GPU {g}, CPU {r}, |a - r| <= {tol}");
                    worst_grad = worst_grad.max(d / tol);
                }
                assert_eq!(rg, rc);
            }
            println!(
                "{:?}: largest GPU-CPU difference {:.0}% of the bound (loss), {:.0}% (gradient)",
                config.normalizer,
                worst_loss * 100.0,
                worst_grad * 100.0
            );
        }
    }

    #[test]
    fn auto_chooses_the_gpu_when_one_is_present() {
        let Some(_) = gpu_or_skip() else { return };
        let auto = FocalBackend::auto().unwrap();
        assert!(auto.is_gpu(), "{}", auto.describe());
        assert!(RetinaLoss::new(LossConfig::default()).unwrap().backend().is_gpu());
    }
}
