//! Every fast path, at every SIMD level this CPU runs, against the float64 reference, element
//! by element, on shapes with full vectors, tails and single elements, and on logits up to 1e4.

mod common;

use common::*;
use focal_core::reference::{self, ReferenceTarget};
use focal_core::{
    DenseTarget, FocalLoss, FocalParams, Outputs, QualityFocalLoss, Reduction, SigmoidFocalLoss, SimdLevel,
    SoftmaxFocalLoss, Target, TensorView, TensorViewMut, VarifocalLoss, VarifocalParams,
};

/// Shapes around the lane counts (4, 8, 16), COCO's 80 classes, and more classes than the
/// kernels' 256-element blocks hold (a row then goes in pieces): 257, 512 and LVIS's 1203.
const SHAPES: [(usize, usize); 11] =
    [(1, 1), (3, 7), (5, 16), (2, 17), (17, 80), (9, 91), (4, 3), (300, 80), (3, 257), (2, 512), (3, 1203)];

fn levels() -> Vec<SimdLevel> {
    let levels: Vec<_> = SimdLevel::supported().collect();
    eprintln!("SIMD levels tested on this CPU: {levels:?}");
    levels
}

struct Run {
    value: f64,
    elementwise: Vec<f64>,
    grad: Vec<f64>,
}

fn run<L: FocalLoss>(loss: &L, x: &[f32], shape: &[usize], target: L::Target<'_>, upstream: f64) -> Run {
    let n = x.len();
    let (mut el, mut grad) = (vec![0.0f32; n], vec![0.0f32; n]);
    let value = loss
        .compute(
            TensorView::new(x, shape).unwrap(),
            target,
            Outputs {
                elementwise: Some(TensorViewMut::new(&mut el, shape).unwrap()),
                grad: Some(TensorViewMut::new(&mut grad, shape).unwrap()),
                upstream,
            },
        )
        .unwrap();
    Run { value, elementwise: widen(&el), grad: widen(&grad) }
}

#[test]
fn sigmoid_sparse_matches_reference_at_every_level() {
    sigmoid_sparse_matches_reference(|x| x);
}

/// Background anchors' logits are nearly all negative, and vectors with no positive logit take
/// a shorter path in the kernels: check it (with +0, -0 and -inf-free extremes) on its own.
#[test]
fn sigmoid_sparse_matches_reference_on_nonpositive_logits() {
    sigmoid_sparse_matches_reference(|x| if x == 0.0 { x } else { -x.abs() });
}

fn sigmoid_sparse_matches_reference(map: impl Fn(f32) -> f32) {
    for level in levels() {
        for (k, &(rows, classes)) in SHAPES.iter().enumerate() {
            for (gamma, alpha) in
                [(2.0, Some(0.25)), (0.0, None), (1.0, Some(0.5)), (1.5, Some(0.25)), (0.5, Some(0.75)), (5.0, None)]
            {
                let mut rng = Rng::new(1000 + k as u64);
                let x: Vec<f32> = rng.logits(rows * classes).into_iter().map(&map).collect();
                let labels = rng.labels(rows, classes);
                let params = FocalParams::new(alpha, gamma).unwrap();
                let reduction = Reduction::Normalizer(3.0);
                let loss = SigmoidFocalLoss::new(params.clone(), reduction).with_simd(level).unwrap();
                let shape = [rows, classes];
                let target = Target::labels(TensorView::new(&labels, &[rows]).unwrap());
                let got = run(&loss, &x, &shape, target, 0.5);
                let r = reference::sigmoid_focal(
                    &widen(&x),
                    classes,
                    ReferenceTarget::Sparse(&labels),
                    &params,
                    reduction,
                    0.5,
                )
                .unwrap();
                let what = format!("{level:?} {rows}x{classes} gamma {gamma} alpha {alpha:?}");
                assert_close(&format!("{what} loss"), &got.elementwise, &r.elementwise, None, F32_REL, F32_ABS);
                assert_close(&format!("{what} grad"), &got.grad, &r.grad, None, F32_REL, F32_ABS);
                assert_sum_close(&format!("{what} sum"), got.value, r.loss, F32_SUM_REL);
            }
        }
    }
}

#[test]
fn sigmoid_per_class_alpha_matches_reference() {
    // 80 and 32 classes: rows of background go through the kernels' flat path too.
    for (level, (rows, classes)) in levels().into_iter().flat_map(|l| [(37, 21), (60, 80), (50, 32)].map(|s| (l, s))) {
        let mut rng = Rng::new(7);
        let x = rng.logits(rows * classes);
        let labels = rng.labels(rows, classes);
        let alphas: Vec<f64> = (0..classes).map(|_| rng.uniform()).collect();
        let params = FocalParams::per_class(alphas, 1.5).unwrap();
        let loss = SigmoidFocalLoss::new(params.clone(), Reduction::Sum).with_simd(level).unwrap();
        let got = run(&loss, &x, &[rows, classes], Target::labels(TensorView::new(&labels, &[rows]).unwrap()), 1.0);
        let r = reference::sigmoid_focal(
            &widen(&x),
            classes,
            ReferenceTarget::Sparse(&labels),
            &params,
            Reduction::Sum,
            1.0,
        )
        .unwrap();
        let what = format!("{level:?} {rows}x{classes} per-class");
        assert_close(&format!("{what} loss"), &got.elementwise, &r.elementwise, None, F32_REL, F32_ABS);
        assert_close(&format!("{what} grad"), &got.grad, &r.grad, None, F32_REL, F32_ABS);
    }
}

#[test]
fn sigmoid_dense_matches_reference_at_every_level() {
    for level in levels() {
        for (k, &(rows, classes)) in SHAPES.iter().enumerate() {
            for (gamma, alpha) in [(2.0, Some(0.25)), (0.0, None), (1.5, Some(0.25)), (0.5, Some(0.6))] {
                for per_row_weights in [false, true] {
                    let mut rng = Rng::new(2000 + k as u64);
                    let n = rows * classes;
                    let x = rng.logits(n);
                    let t = rng.targets(n);
                    let w: Vec<f32> =
                        (0..if per_row_weights { rows } else { n }).map(|_| (rng.uniform() * 2.0) as f32).collect();
                    let wshape: Vec<usize> = if per_row_weights { vec![rows] } else { vec![rows, classes] };
                    let params = FocalParams::new(alpha, gamma).unwrap();
                    let loss = SigmoidFocalLoss::new(params.clone(), Reduction::Mean).with_simd(level).unwrap();
                    let target = Target::weighted(
                        TensorView::new(&t, &[rows, classes]).unwrap(),
                        TensorView::new(&w, &wshape).unwrap(),
                    );
                    let got = run(&loss, &x, &[rows, classes], target, 2.0);
                    let (xd, td, wd) = (widen(&x), widen(&t), widen(&w));
                    let r = reference::sigmoid_focal(
                        &xd,
                        classes,
                        ReferenceTarget::Dense { targets: &td, weights: Some(&wd) },
                        &params,
                        Reduction::Mean,
                        2.0,
                    )
                    .unwrap();
                    let (ap, an) = params.alpha().pos_neg(0);
                    let scale: Vec<f64> = (0..n)
                        .map(|i| {
                            let wi = if per_row_weights { wd[i / classes] } else { wd[i] };
                            wi * sigmoid_soft_grad_scale(xd[i], td[i], ap, an, gamma) * 2.0 / n as f64
                        })
                        .collect();
                    let what = format!("{level:?} {rows}x{classes} gamma {gamma} per-row weights {per_row_weights}");
                    assert_close(&format!("{what} loss"), &got.elementwise, &r.elementwise, None, F32_REL, F32_ABS);
                    assert_close(&format!("{what} grad"), &got.grad, &r.grad, Some(&scale), F32_REL, F32_ABS);
                    assert_sum_close(&format!("{what} sum"), got.value, r.loss, F32_SUM_REL);
                }
            }
        }
    }
}

#[test]
fn softmax_matches_reference_at_every_level() {
    for level in levels() {
        for (k, &(rows, classes)) in SHAPES.iter().enumerate() {
            for (gamma, alpha) in [(2.0, None), (0.0, None), (0.5, Some(0.25)), (1.5, None)] {
                let mut rng = Rng::new(3000 + k as u64);
                let x: Vec<f32> = (0..rows * classes).map(|_| rng.logit().clamp(-200.0, 200.0)).collect();
                let labels: Vec<i32> =
                    (0..rows).map(|_| if rng.below(5) == 0 { -2 } else { rng.below(classes) as i32 }).collect();
                let params = FocalParams::new(alpha, gamma).unwrap();
                let loss = SoftmaxFocalLoss::new(params.clone(), Reduction::Mean).with_simd(level).unwrap();
                let got = run(&loss, &x, &[rows, classes], TensorView::new(&labels, &[rows]).unwrap(), 1.0);
                let r = reference::softmax_focal(&widen(&x), classes, &labels, &params, Reduction::Mean, 1.0).unwrap();
                let what = format!("{level:?} softmax {rows}x{classes} gamma {gamma}");
                assert_close(&format!("{what} loss"), &got.elementwise, &r.elementwise, None, F32_REL, F32_ABS);
                assert_close(&format!("{what} grad"), &got.grad, &r.grad, None, F32_REL, F32_ABS);
                assert_sum_close(&format!("{what} sum"), got.value, r.loss, F32_SUM_REL);
            }
        }
    }
}

#[test]
fn varifocal_matches_reference_at_every_level() {
    for level in levels() {
        for (k, &(rows, classes)) in SHAPES.iter().enumerate() {
            for (gamma, iou_weighted) in [(2.0, true), (1.5, false), (0.0, true)] {
                let mut rng = Rng::new(4000 + k as u64);
                let n = rows * classes;
                let x = rng.logits(n);
                let t = rng.targets(n);
                let params = VarifocalParams::new(0.75, gamma, iou_weighted).unwrap();
                let loss = VarifocalLoss::new(params, Reduction::Sum).with_simd(level).unwrap();
                let target = DenseTarget { targets: TensorView::new(&t, &[rows, classes]).unwrap(), weights: None };
                let got = run(&loss, &x, &[rows, classes], target, 1.0);
                let (xd, td) = (widen(&x), widen(&t));
                let r = reference::varifocal(&xd, classes, &td, None, &params, Reduction::Sum, 1.0).unwrap();
                let scale: Vec<f64> = (0..n).map(|i| varifocal_grad_scale(xd[i], td[i])).collect();
                let what = format!("{level:?} varifocal {rows}x{classes} gamma {gamma}");
                assert_close(&format!("{what} loss"), &got.elementwise, &r.elementwise, None, F32_REL, F32_ABS);
                assert_close(&format!("{what} grad"), &got.grad, &r.grad, Some(&scale), F32_REL, F32_ABS);
                assert_sum_close(&format!("{what} sum"), got.value, r.loss, F32_SUM_REL);
            }
        }
    }
}

#[test]
fn quality_focal_matches_reference_at_every_level() {
    for level in levels() {
        for (k, &(rows, classes)) in SHAPES.iter().enumerate() {
            for beta in [2.0, 1.0, 0.0, 1.5, 0.5] {
                let mut rng = Rng::new(5000 + k as u64);
                let n = rows * classes;
                let x = rng.logits(n);
                let t = rng.targets(n);
                let loss = QualityFocalLoss::new(beta, Reduction::Sum).unwrap().with_simd(level).unwrap();
                let target = DenseTarget { targets: TensorView::new(&t, &[rows, classes]).unwrap(), weights: None };
                let got = run(&loss, &x, &[rows, classes], target, 1.0);
                let (xd, td) = (widen(&x), widen(&t));
                let r = reference::quality_focal(&xd, classes, &td, None, beta, Reduction::Sum, 1.0).unwrap();
                let (ls, gs): (Vec<f64>, Vec<f64>) = (0..n).map(|i| quality_focal_scales(xd[i], td[i], beta)).unzip();
                let what = format!("{level:?} qfl {rows}x{classes} beta {beta}");
                assert_close(&format!("{what} loss"), &got.elementwise, &r.elementwise, Some(&ls), F32_REL, F32_ABS);
                assert_close(&format!("{what} grad"), &got.grad, &r.grad, Some(&gs), F32_REL, F32_ABS);
            }
        }
    }
}
