//! The float64 reference gradients against central finite differences of the float64 losses,
//! and the fast path against the reference on random shapes and parameters at every SIMD level.

mod common;

use common::{F32_ABS, F32_REL, F32_SUM_REL, Rng, assert_close, assert_sum_close, widen};
use focal_core::reference::{self, ReferenceTarget};
use focal_core::{FocalLoss, FocalParams, Reduction, SigmoidFocalLoss, SimdLevel, Target, TensorView, TensorViewMut};
use proptest::prelude::*;

/// Central difference with a step scaled to x; returns (derivative, truncation-error scale).
fn central(f: impl Fn(f64) -> f64, x: f64) -> f64 {
    let h = 1e-6 * x.abs().max(1.0);
    (f(x + h) - f(x - h)) / (2.0 * h)
}

/// |fd - g| <= 1e-6 * (|g| + |f| / h-scale) + 1e-9: the difference quotient's own rounding is
/// about eps * |f| / h.
fn assert_fd(what: &str, g: f64, fd: f64, f: f64, x: f64) {
    let h = 1e-6 * x.abs().max(1.0);
    let tol = 1e-6 * g.abs() + 4.0 * f64::EPSILON * f.abs() / h + 1e-9;
    assert!((g - fd).abs() <= tol, "{what}: x {x}, analytic {g:e}, finite difference {fd:e}, tol {tol:e}");
}

fn logit() -> impl Strategy<Value = f64> {
    prop_oneof![-30.0f64..30.0, -3.0f64..3.0]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn sigmoid_grad_matches_finite_difference(
        x in logit(), t in prop_oneof![Just(0.0), Just(1.0), 0.0f64..1.0],
        alpha in 0.0f64..1.0, gamma in prop_oneof![Just(0.0), Just(2.0), 0.0f64..5.0],
    ) {
        let f = |x| reference::sigmoid_focal_element(x, t, alpha, 1.0 - alpha, gamma).0;
        let (l, g) = reference::sigmoid_focal_element(x, t, alpha, 1.0 - alpha, gamma);
        assert_fd("sigmoid focal", g, central(f, x), l, x);
    }

    #[test]
    fn varifocal_grad_matches_finite_difference(
        x in logit(), t in prop_oneof![Just(0.0), 0.0f64..1.0], gamma in 0.0f64..4.0, iou in any::<bool>(),
    ) {
        let f = |x| reference::varifocal_element(x, t, 0.75, gamma, iou).0;
        let (l, g) = reference::varifocal_element(x, t, 0.75, gamma, iou);
        assert_fd("varifocal", g, central(f, x), l, x);
    }

    #[test]
    fn quality_focal_grad_matches_finite_difference(
        x in logit(), y in prop_oneof![Just(0.0), Just(1.0), 0.0f64..1.0], beta in 1.0f64..4.0,
    ) {
        let (p, _) = reference::sigmoid_pair(x);
        // |p - y|^beta has a kink at p = y for beta near 1: stay away from it.
        prop_assume!((p - y).abs() > 1e-3);
        let f = |x| reference::quality_focal_element(x, y, beta).0;
        let (l, g) = reference::quality_focal_element(x, y, beta);
        assert_fd("quality focal", g, central(f, x), l, x);
    }

    #[test]
    fn softmax_grad_matches_finite_difference(
        x in proptest::collection::vec(-20.0f64..20.0, 1..12), label in any::<prop::sample::Index>(),
        gamma in prop_oneof![Just(0.0), Just(2.0), 0.0f64..5.0],
    ) {
        let y = label.index(x.len());
        let mut grad = vec![0.0; x.len()];
        let l = reference::softmax_focal_row(&x, y, 0.25, gamma, &mut grad);
        for j in 0..x.len() {
            let f = |v: f64| {
                let mut xs = x.clone();
                xs[j] = v;
                reference::softmax_focal_row(&xs, y, 0.25, gamma, &mut vec![0.0; x.len()])
            };
            assert_fd(&format!("softmax d/dx[{j}]"), grad[j], central(f, x[j]), l, x[j]);
        }
    }

    #[test]
    fn every_simd_level_matches_the_reference_on_random_shapes(
        rows in 1usize..64, classes in 1usize..100, seed in any::<u64>(),
        gamma in prop_oneof![Just(0.0), Just(2.0), 0.0f64..5.0], alpha in prop_oneof![Just(None), (0.0f64..1.0).prop_map(Some)],
        upstream in -4.0f64..4.0,
    ) {
        let mut rng = Rng::new(seed);
        let x = rng.logits(rows * classes);
        let labels = rng.labels(rows, classes);
        let params = FocalParams::new(alpha, gamma).unwrap();
        let r = reference::sigmoid_focal(&widen(&x), classes, ReferenceTarget::Sparse(&labels), &params, Reduction::Mean, upstream).unwrap();
        for level in SimdLevel::supported() {
            let loss = SigmoidFocalLoss::new(params.clone(), Reduction::Mean).with_simd(level).unwrap();
            let mut grad = vec![0.0f32; x.len()];
            let v = loss.forward_backward(
                TensorView::new(&x, &[rows, classes]).unwrap(),
                Target::labels(TensorView::new(&labels, &[rows]).unwrap()),
                upstream,
                TensorViewMut::new(&mut grad, &[rows, classes]).unwrap(),
            ).unwrap();
            assert_close(&format!("{level:?} grad"), &widen(&grad), &r.grad, None, F32_REL, F32_ABS);
            assert_sum_close(&format!("{level:?} loss"), v, r.loss, F32_SUM_REL);
        }
    }
}

#[test]
fn f64_inputs_are_computed_by_the_reference() {
    let mut rng = Rng::new(3);
    let (rows, classes) = (13, 9);
    let x: Vec<f64> = rng.logits(rows * classes).iter().map(|&v| v as f64 * 1.000_000_1).collect();
    let labels = rng.labels(rows, classes);
    let params = FocalParams::new(Some(0.25), 2.0).unwrap();
    let loss = SigmoidFocalLoss::new(params.clone(), Reduction::Sum);
    let mut grad = vec![0.0f64; x.len()];
    let v = loss
        .forward_backward(
            TensorView::new(&x, &[rows, classes]).unwrap(),
            Target::labels(TensorView::new(&labels, &[rows]).unwrap()),
            1.0,
            TensorViewMut::new(&mut grad, &[rows, classes]).unwrap(),
        )
        .unwrap();
    let r =
        reference::sigmoid_focal(&x, classes, ReferenceTarget::Sparse(&labels), &params, Reduction::Sum, 1.0).unwrap();
    assert_eq!(v, r.loss);
    assert_eq!(grad, r.grad);
}
