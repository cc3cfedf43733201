//! Numerical edge cases: huge logits, saturated probabilities with 0 < gamma < 1 (kornia#918,
//! optax#1267), gamma = 0 against plain BCE, and NaN propagation.

mod common;

use common::{F32_ABS, F32_REL};
use focal_core::reference::bce_with_logits;
use focal_core::{FocalLoss, FocalParams, Reduction, SigmoidFocalLoss, SimdLevel, Target, TensorView, TensorViewMut};

fn run(level: SimdLevel, gamma: f64, x: &[f32], labels: &[i32], classes: usize) -> (f64, Vec<f32>, Vec<f32>) {
    let rows = labels.len();
    let loss =
        SigmoidFocalLoss::new(FocalParams::new(Some(0.25), gamma).unwrap(), Reduction::Sum).with_simd(level).unwrap();
    let (mut el, mut grad) = (vec![0.0f32; x.len()], vec![0.0f32; x.len()]);
    let v = loss
        .compute(
            TensorView::new(x, &[rows, classes]).unwrap(),
            Target::labels(TensorView::new(labels, &[rows]).unwrap()),
            focal_core::Outputs {
                elementwise: Some(TensorViewMut::new(&mut el, &[rows, classes]).unwrap()),
                grad: Some(TensorViewMut::new(&mut grad, &[rows, classes]).unwrap()),
                upstream: 1.0,
            },
        )
        .unwrap();
    (v, el, grad)
}

#[test]
fn extreme_logits_give_finite_loss_and_gradient() {
    let xs: Vec<f32> =
        [1e4f32, -1e4, 1e3, -1e3, 100.0, -100.0, 88.7, -88.7, 3.4e38, -3.4e38, 1e-40, -1e-40].into_iter().collect();
    let classes = xs.len();
    // Each row has a different positive class, and one row is all background.
    let labels: Vec<i32> = (0..classes as i32).chain([-1]).collect();
    let x: Vec<f32> = (0..labels.len()).flat_map(|_| xs.iter().copied()).collect();
    for level in SimdLevel::supported() {
        for gamma in [0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 5.0] {
            let (v, el, grad) = run(level, gamma, &x, &labels, classes);
            assert!(v.is_finite(), "{level:?} gamma {gamma}: loss {v}");
            for (i, (l, g)) in el.iter().zip(&grad).enumerate() {
                assert!(
                    l.is_finite() && g.is_finite(),
                    "{level:?} gamma {gamma} element {i} (x = {}): loss {l}, grad {g}",
                    x[i]
                );
            }
        }
    }
}

#[test]
fn small_gamma_at_saturated_probabilities_has_no_nan_gradient() {
    // p_t -> 1 exactly in f32: the textbook (1 - p_t)^(gamma - 1) is infinite here.
    let x = [40.0f32, -40.0, 17.0, -17.0];
    let labels = [0, -1, 0, -1];
    for level in SimdLevel::supported() {
        for gamma in [0.1, 0.5, 0.9] {
            let (_, _, grad) = run(level, gamma, &x, &labels, 1);
            assert!(grad.iter().all(|g| g.is_finite()), "{level:?} gamma {gamma}: {grad:?}");
        }
    }
}

#[test]
fn gamma_zero_equals_bce() {
    let x: Vec<f32> = (-50..50).map(|i| i as f32 * 0.37).collect();
    let labels: Vec<i32> = (0..100).map(|i| if i % 3 == 0 { 0 } else { -1 }).collect();
    for level in SimdLevel::supported() {
        let loss =
            SigmoidFocalLoss::new(FocalParams::new(None, 0.0).unwrap(), Reduction::Sum).with_simd(level).unwrap();
        let mut el = vec![0.0f32; 100];
        loss.forward_elementwise(
            TensorView::new(&x, &[100, 1]).unwrap(),
            Target::labels(TensorView::new(&labels, &[100]).unwrap()),
            TensorViewMut::new(&mut el, &[100, 1]).unwrap(),
        )
        .unwrap();
        for i in 0..100 {
            let t = if labels[i] == 0 { 1.0 } else { 0.0 };
            let bce = bce_with_logits(x[i] as f64, t);
            assert!(
                (el[i] as f64 - bce).abs() <= F32_REL * bce + F32_ABS,
                "{level:?} x {}: {} vs BCE {bce}",
                x[i],
                el[i]
            );
        }
    }
}

#[test]
fn nan_in_gives_nan_out() {
    let x = [0.5f32, f32::NAN, -1.0, 2.0, 0.1, -0.3];
    let labels = [1, -1];
    for level in SimdLevel::supported() {
        let (v, el, grad) = run(level, 2.0, &x, &labels, 3);
        assert!(v.is_nan(), "{level:?}");
        assert!(el[1].is_nan() && grad[1].is_nan(), "{level:?}");
        assert!(el.iter().enumerate().all(|(i, l)| i == 1 || l.is_finite()), "{level:?}: NaN leaked to other elements");
    }
}

#[test]
fn infinite_logits_give_the_limits() {
    // A background anchor at -inf and a positive at +inf cost nothing and get no gradient; a
    // background anchor at +inf costs infinitely much and its gradient is alpha_t = 0.75.
    let x = [f32::NEG_INFINITY, f32::INFINITY, f32::INFINITY];
    let labels = [-1, 0, -1];
    for level in SimdLevel::supported() {
        let (v, el, grad) = run(level, 2.0, &x, &labels, 1);
        assert_eq!((el[0], grad[0], el[1], grad[1]), (0.0, 0.0, 0.0, 0.0), "{level:?}");
        assert_eq!((el[2], grad[2]), (f32::INFINITY, 0.75), "{level:?}");
        assert_eq!(v, f64::INFINITY, "{level:?}");
    }
}

#[test]
fn softmax_is_finite_when_logits_differ_by_more_than_exp_can_hold() {
    // exp(x_y - max) underflows in f64 below -745 and in f32 below -104.
    let x = [1000.0f32, -1000.0, 0.0, 500.0, -200.0, 3.0];
    let labels = [1, 0];
    for level in SimdLevel::supported() {
        let loss = focal_core::SoftmaxFocalLoss::new(FocalParams::new(None, 2.0).unwrap(), Reduction::Sum)
            .with_simd(level)
            .unwrap();
        let mut grad = [0.0f32; 6];
        let v = loss
            .forward_backward(
                TensorView::new(&x, &[2, 3]).unwrap(),
                TensorView::new(&labels, &[2]).unwrap(),
                1.0,
                TensorViewMut::new(&mut grad, &[2, 3]).unwrap(),
            )
            .unwrap();
        // Row 0: label 1 is 2000 below the max: p_y = 0, loss = -log p_y = 2000 (q = 1).
        // Row 1: label 0 is the max by 497: p_y = 1 - e^-497, a loss far below f64's range.
        assert!((v - 2000.0).abs() < 1e-3, "{level:?}: {v}");
        assert!(grad.iter().all(|g| g.is_finite()), "{level:?}: {grad:?}");
        let mut r = [0.0f64; 3];
        let l = focal_core::reference::softmax_focal_row(&[1000.0, -1000.0, 0.0], 1, 1.0, 2.0, &mut r);
        assert!((l - 2000.0).abs() < 1e-9 && r == [1.0, -1.0, 0.0], "reference: {l} {r:?}");
    }
}

#[test]
fn sum_of_losses_near_f32_max_is_finite_and_exact() {
    // Each element's loss is finite (about 0.75 * 3e38), but eight of them overflow an f32
    // accumulator: the kernels must notice and sum such a chunk in f64.
    let classes = 160;
    let x: Vec<f32> = (0..2 * classes).map(|i| 3.0e38 - (i as f32) * 1e35).collect();
    let labels = [-1, 7];
    for level in SimdLevel::supported() {
        for gamma in [0.0, 2.0] {
            let (v, el, _) = run(level, gamma, &x, &labels, classes);
            let exact: f64 = el.iter().map(|&l| l as f64).sum();
            assert!(el.iter().all(|l| l.is_finite()), "{level:?} gamma {gamma}");
            assert!(v.is_finite() && ((v - exact) / exact).abs() < 1e-6, "{level:?} gamma {gamma}: {v} vs {exact}");
        }
    }
}
