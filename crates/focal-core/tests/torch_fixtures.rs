//! Our losses against PyTorch / torchvision float64 values (fixtures/torch_reference.json, made
//! by fixtures/make_fixtures.py): the f32 path at every SIMD level and the f64 path.

mod common;

use common::*;
use focal_core::{
    DenseTarget, Element, FocalLoss, FocalParams, Outputs, QualityFocalLoss, Reduction, SigmoidFocalLoss, SimdLevel,
    SoftmaxFocalLoss, Target, TensorView, TensorViewMut, VarifocalLoss, VarifocalParams,
};
use serde_json::Value;

/// The f64 path is compared with torch's float64 results at this relative tolerance.
const F64_REL: f64 = 1e-9;

fn cases() -> Vec<Value> {
    let text = include_str!("fixtures/torch_reference.json");
    let v: Value = serde_json::from_str(text).expect("fixture JSON");
    v["cases"].as_array().expect("cases").clone()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number")).collect()
}

fn ints(v: &Value) -> Vec<i32> {
    v.as_array().expect("array").iter().map(|x| x.as_i64().expect("int") as i32).collect()
}

struct Got {
    loss: f64,
    elementwise: Vec<f64>,
    grad: Vec<f64>,
}

fn eval<T: Element, L: FocalLoss>(loss: &L, x: &[T], shape: &[usize], target: L::Target<'_>) -> Got {
    let n = x.len();
    let (mut el, mut grad) = (vec![T::default(); n], vec![T::default(); n]);
    let v = loss
        .compute(
            TensorView::new(x, shape).unwrap(),
            target,
            Outputs {
                elementwise: Some(TensorViewMut::new(&mut el, shape).unwrap()),
                grad: Some(TensorViewMut::new(&mut grad, shape).unwrap()),
                upstream: 1.0,
            },
        )
        .unwrap();
    Got { loss: v, elementwise: widen(&el), grad: widen(&grad) }
}

fn reduction(case: &Value) -> Reduction {
    match case["reduction"].as_str() {
        Some("mean") => Reduction::Mean,
        _ => Reduction::Sum,
    }
}

/// Runs `f` for the f32 path at every level and for the f64 path, checking against the case.
fn check_case(case: &Value, grad_scale: Option<Vec<f64>>, f: impl Fn(Option<SimdLevel>) -> Got) {
    let kind = case["kind"].as_str().unwrap();
    let (el_ref, grad_ref, loss_ref) =
        (floats(&case["elementwise"]), floats(&case["grad"]), case["loss"].as_f64().unwrap());
    for level in SimdLevel::supported().map(Some).chain([None]) {
        let got = f(level);
        let (rel, sum_rel) = if level.is_some() { (F32_REL, F32_SUM_REL) } else { (F64_REL, F64_REL) };
        let what = format!("{kind} {:?} rows {} gamma {}", level, case["rows"], case["gamma"]);
        assert_close(&format!("{what} elementwise"), &got.elementwise, &el_ref, None, rel, F32_ABS);
        assert_close(&format!("{what} grad"), &got.grad, &grad_ref, grad_scale.as_deref(), rel, F32_ABS);
        assert_sum_close(&format!("{what} loss"), got.loss, loss_ref, sum_rel);
    }
}

#[test]
fn sigmoid_dense_matches_torchvision() {
    for case in cases().iter().filter(|c| c["kind"] == "sigmoid_dense") {
        let (rows, classes) = (case["rows"].as_u64().unwrap() as usize, case["classes"].as_u64().unwrap() as usize);
        let (x, t) = (floats(&case["logits"]), floats(&case["targets"]));
        let (x32, t32): (Vec<f32>, Vec<f32>) =
            (x.iter().map(|&v| v as f32).collect(), t.iter().map(|&v| v as f32).collect());
        let alpha = case["alpha"].as_f64().unwrap();
        let alpha = (alpha >= 0.0).then_some(alpha);
        let gamma = case["gamma"].as_f64().unwrap();
        let red = reduction(case);
        let mean = if red == Reduction::Mean { 1.0 / (rows * classes) as f64 } else { 1.0 };
        let (ap, an) = alpha.map_or((1.0, 1.0), |a| (a, 1.0 - a));
        let scale = (0..x.len()).map(|i| mean * sigmoid_soft_grad_scale(x[i], t[i], ap, an, gamma)).collect();
        let params = FocalParams::new(alpha, gamma).unwrap();
        let shape = [rows, classes];
        check_case(case, Some(scale), |level| {
            let target = Target::dense(TensorView::new(&t32, &shape).unwrap());
            match level {
                Some(level) => {
                    eval(&SigmoidFocalLoss::new(params.clone(), red).with_simd(level).unwrap(), &x32, &shape, target)
                }
                None => eval(&SigmoidFocalLoss::new(params.clone(), red), &x, &shape, target),
            }
        });
    }
}

#[test]
fn retinanet_sparse_labels_match_torchvision() {
    for case in cases().iter().filter(|c| c["kind"] == "retinanet_sparse") {
        let (rows, classes) = (case["rows"].as_u64().unwrap() as usize, case["classes"].as_u64().unwrap() as usize);
        let x = floats(&case["logits"]);
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let labels = ints(&case["labels"]);
        assert_eq!(case["normalizer"].as_f64().unwrap(), focal_core::labels::retinanet_normalizer(&labels));
        let red = Reduction::Normalizer(focal_core::labels::retinanet_normalizer(&labels));
        let params = FocalParams::new(Some(0.25), case["gamma"].as_f64().unwrap()).unwrap();
        let shape = [rows, classes];
        check_case(case, None, |level| {
            let target = Target::labels(TensorView::new(&labels, &[rows]).unwrap());
            match level {
                Some(level) => {
                    eval(&SigmoidFocalLoss::new(params.clone(), red).with_simd(level).unwrap(), &x32, &shape, target)
                }
                None => eval(&SigmoidFocalLoss::new(params.clone(), red), &x, &shape, target),
            }
        });
    }
}

#[test]
fn softmax_focal_matches_torch() {
    for case in cases().iter().filter(|c| c["kind"] == "softmax") {
        let (rows, classes) = (case["rows"].as_u64().unwrap() as usize, case["classes"].as_u64().unwrap() as usize);
        let x = floats(&case["logits"]);
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let labels = ints(&case["labels"]);
        let params = FocalParams::new(Some(0.25), case["gamma"].as_f64().unwrap()).unwrap();
        let shape = [rows, classes];
        check_case(case, None, |level| {
            let target = TensorView::new(&labels, &[rows]).unwrap();
            match level {
                Some(level) => eval(
                    &SoftmaxFocalLoss::new(params.clone(), Reduction::Mean).with_simd(level).unwrap(),
                    &x32,
                    &shape,
                    target,
                ),
                None => eval(&SoftmaxFocalLoss::new(params.clone(), Reduction::Mean), &x, &shape, target),
            }
        });
    }
}

#[test]
fn varifocal_matches_mmdetection_formula() {
    for case in cases().iter().filter(|c| c["kind"] == "varifocal") {
        let (rows, classes) = (case["rows"].as_u64().unwrap() as usize, case["classes"].as_u64().unwrap() as usize);
        let (x, t) = (floats(&case["logits"]), floats(&case["targets"]));
        let (x32, t32): (Vec<f32>, Vec<f32>) =
            (x.iter().map(|&v| v as f32).collect(), t.iter().map(|&v| v as f32).collect());
        let params =
            VarifocalParams::new(0.75, case["gamma"].as_f64().unwrap(), case["iou_weighted"].as_bool().unwrap())
                .unwrap();
        let scale = (0..x.len()).map(|i| varifocal_grad_scale(x[i], t[i])).collect();
        let shape = [rows, classes];
        check_case(case, Some(scale), |level| {
            let target = DenseTarget { targets: TensorView::new(&t32, &shape).unwrap(), weights: None };
            match level {
                Some(level) => {
                    eval(&VarifocalLoss::new(params, Reduction::Sum).with_simd(level).unwrap(), &x32, &shape, target)
                }
                None => eval(&VarifocalLoss::new(params, Reduction::Sum), &x, &shape, target),
            }
        });
    }
}

#[test]
fn quality_focal_matches_mmdetection_formula() {
    for case in cases().iter().filter(|c| c["kind"] == "quality_focal") {
        let (rows, classes) = (case["rows"].as_u64().unwrap() as usize, case["classes"].as_u64().unwrap() as usize);
        let (x, t) = (floats(&case["logits"]), floats(&case["targets"]));
        let (x32, t32): (Vec<f32>, Vec<f32>) =
            (x.iter().map(|&v| v as f32).collect(), t.iter().map(|&v| v as f32).collect());
        let beta = case["beta"].as_f64().unwrap();
        let (ls, gs): (Vec<f64>, Vec<f64>) = (0..x.len()).map(|i| quality_focal_scales(x[i], t[i], beta)).unzip();
        let shape = [rows, classes];
        let el_ref = floats(&case["elementwise"]);
        let grad_ref = floats(&case["grad"]);
        for level in SimdLevel::supported() {
            let qfl = QualityFocalLoss::new(beta, Reduction::Sum).unwrap().with_simd(level).unwrap();
            let got = eval(
                &qfl,
                &x32,
                &shape,
                DenseTarget { targets: TensorView::new(&t32, &shape).unwrap(), weights: None },
            );
            assert_close(&format!("qfl {level:?} elementwise"), &got.elementwise, &el_ref, Some(&ls), F32_REL, F32_ABS);
            assert_close(&format!("qfl {level:?} grad"), &got.grad, &grad_ref, Some(&gs), F32_REL, F32_ABS);
        }
        let qfl = QualityFocalLoss::new(beta, Reduction::Sum).unwrap();
        let got =
            eval(&qfl, &x, &shape, DenseTarget { targets: TensorView::new(&t32, &shape).unwrap(), weights: None });
        assert_close("qfl f64 elementwise", &got.elementwise, &el_ref, None, F64_REL, F32_ABS);
        assert_close("qfl f64 grad", &got.grad, &grad_ref, None, F64_REL, F32_ABS);
        assert_sum_close("qfl f64 loss", got.loss, case["loss"].as_f64().unwrap(), F64_REL);
    }
}
