//! Every bad input is an `Err` naming what was wrong, never a panic, and no output is written.

use focal_core::labels::validate_labels;
use focal_core::{
    DenseTarget, FocalError, FocalLoss, FocalParams, QualityFocalLoss, Reduction, SigmoidFocalLoss, SimdLevel,
    SoftmaxFocalLoss, Target, TensorView, TensorViewMut, VarifocalLoss, VarifocalParams,
};

fn sigmoid() -> SigmoidFocalLoss {
    SigmoidFocalLoss::new(FocalParams::retinanet(), Reduction::Sum)
}

const X: [f32; 6] = [0.1, -0.2, 0.3, 1.0, -1.0, 2.0];

#[test]
fn gamma_below_zero_is_an_error() {
    assert!(matches!(FocalParams::new(Some(0.25), -0.5), Err(FocalError::InvalidParameter { name: "gamma", .. })));
}

#[test]
fn alpha_outside_unit_interval_is_an_error() {
    for a in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
        assert!(matches!(FocalParams::new(Some(a), 2.0), Err(FocalError::InvalidParameter { name: "alpha", .. })));
    }
    assert!(FocalParams::per_class(vec![0.2, 1.2], 2.0).is_err());
}

#[test]
fn non_finite_parameters_are_errors() {
    assert!(FocalParams::new(None, f64::NAN).is_err());
    assert!(FocalParams::new(None, f64::INFINITY).is_err());
    assert!(QualityFocalLoss::new(f64::NAN, Reduction::Sum).is_err());
    assert!(VarifocalParams::new(0.75, -1.0, true).is_err());
    let x = TensorView::new(&X, &[2, 3]).unwrap();
    let labels = [0, -1];
    let labels = Target::labels(TensorView::new(&labels, &[2]).unwrap());
    for bad in [0.0, -1.0, f64::NAN] {
        let loss = SigmoidFocalLoss::new(FocalParams::retinanet(), Reduction::Normalizer(bad));
        assert!(matches!(loss.forward(x, labels), Err(FocalError::InvalidParameter { name: "normalizer", .. })));
    }
    let mut g = [0.0f32; 6];
    let err = sigmoid().backward(x, labels, f64::NAN, TensorViewMut::new(&mut g, &[2, 3]).unwrap());
    assert!(matches!(err, Err(FocalError::InvalidParameter { name: "upstream gradient", .. })));
}

#[test]
fn labels_out_of_range_are_an_error() {
    let x = TensorView::new(&X, &[2, 3]).unwrap();
    for bad in [[3, -1], [0, -3], [i32::MIN, 0]] {
        let err = sigmoid().forward(x, Target::labels(TensorView::new(&bad, &[2]).unwrap()));
        assert!(matches!(err, Err(FocalError::LabelOutOfRange { num_classes: 3, .. })), "{bad:?}: {err:?}");
    }
    assert_eq!(validate_labels(&[0, 2, 5], 3), Err(FocalError::LabelOutOfRange { index: 2, label: 5, num_classes: 3 }));
    // Every boundary of the range, with small and huge class counts, against the plain test.
    let edges = [i32::MIN, i32::MIN + 1, -4, -3, -2, -1, 0, 1, 2, 3, 4, i32::MAX - 1, i32::MAX];
    for classes in [0usize, 1, 3, 1 << 20, i32::MAX as usize - 1, i32::MAX as usize, 1 << 31, 1 << 40, usize::MAX] {
        for &l in &edges {
            let valid = l >= -2 && (l < 0 || (l as usize) < classes);
            // Far from the start, so a search that skipped whole blocks would miss it.
            let mut labels = vec![-1; 1000];
            labels[777] = l;
            let expected = if valid {
                Ok(())
            } else {
                Err(FocalError::LabelOutOfRange { index: 777, label: l, num_classes: classes })
            };
            assert_eq!(validate_labels(&labels, classes), expected, "label {l}, {classes} classes");
        }
    }
    // Softmax has no background label: -1 is an error there.
    let soft = SoftmaxFocalLoss::new(FocalParams::new(None, 2.0).unwrap(), Reduction::Sum);
    let labels = [-1, 0];
    assert!(matches!(
        soft.forward(x, TensorView::new(&labels, &[2]).unwrap()),
        Err(FocalError::LabelOutOfRange { index: 0, label: -1, .. })
    ));
}

#[test]
fn mismatched_shapes_are_errors() {
    let x = TensorView::new(&X, &[2, 3]).unwrap();
    let labels = [0, -1, 1];
    assert!(matches!(
        sigmoid().forward(x, Target::labels(TensorView::new(&labels, &[3]).unwrap())),
        Err(FocalError::ShapeMismatch { what: "labels", .. })
    ));
    let t = [0.0f32; 6];
    let t_wrong = TensorView::new(&t, &[3, 2]).unwrap();
    assert!(matches!(sigmoid().forward(x, Target::dense(t_wrong)), Err(FocalError::ShapeMismatch { .. })));
    let w = [1.0f32; 4];
    let bad_w = Target::weighted(TensorView::new(&t, &[2, 3]).unwrap(), TensorView::new(&w, &[4]).unwrap());
    assert!(matches!(sigmoid().forward(x, bad_w), Err(FocalError::ShapeMismatch { .. })));
    let mut g = [7.0f32; 6];
    let ok_labels = [0, -1];
    let err = sigmoid().backward(
        x,
        Target::labels(TensorView::new(&ok_labels, &[2]).unwrap()),
        1.0,
        TensorViewMut::new(&mut g, &[3, 2]).unwrap(),
    );
    assert!(matches!(err, Err(FocalError::ShapeMismatch { what: "gradient output", .. })));
    assert_eq!(g, [7.0; 6], "nothing is written on error");
    assert!(matches!(TensorView::new(&X, &[4, 2]), Err(FocalError::StorageSize { .. })));
    let flat = TensorView::new(&X, &[6]).unwrap();
    assert!(matches!(
        sigmoid().forward(flat, Target::labels(TensorView::new(&[0i32; 1], &[1]).unwrap())),
        Err(FocalError::Rank { .. })
    ));
    let per_class = SigmoidFocalLoss::new(FocalParams::per_class(vec![0.25; 4], 2.0).unwrap(), Reduction::Sum);
    assert!(matches!(
        per_class.forward(x, Target::labels(TensorView::new(&ok_labels, &[2]).unwrap())),
        Err(FocalError::ShapeMismatch { what: "per-class alpha", .. })
    ));
}

#[test]
fn targets_outside_unit_interval_and_bad_weights_are_errors() {
    let x = TensorView::new(&X, &[2, 3]).unwrap();
    for bad in [1.5f32, -0.1, f32::NAN] {
        let t = [0.0, 0.0, bad, 0.0, 0.0, 0.0];
        let target = DenseTarget { targets: TensorView::new(&t, &[2, 3]).unwrap(), weights: None };
        let vfl = VarifocalLoss::new(VarifocalParams::mmdet(), Reduction::Sum);
        assert!(matches!(vfl.forward(x, target), Err(FocalError::InvalidParameter { name: "target", .. })));
    }
    let t = [0.0f32; 6];
    let w = [1.0f32, f32::INFINITY];
    let target = DenseTarget {
        targets: TensorView::new(&t, &[2, 3]).unwrap(),
        weights: Some(TensorView::new(&w, &[2]).unwrap()),
    };
    let qfl = QualityFocalLoss::new(2.0, Reduction::Sum).unwrap();
    assert!(matches!(qfl.forward(x, target), Err(FocalError::InvalidParameter { name: "weight", .. })));
}

#[test]
fn empty_input_is_a_zero_loss() {
    let empty: [f32; 0] = [];
    let labels: [i32; 0] = [];
    for shape in [[0usize, 80], [5, 0]] {
        let x = TensorView::new(&empty, &shape).unwrap();
        let l = TensorView::new(&labels, &shape[..1]);
        if let Ok(l) = l {
            assert_eq!(sigmoid().forward(x, Target::labels(l)).unwrap(), 0.0);
        }
        let mean = SigmoidFocalLoss::new(FocalParams::retinanet(), Reduction::Mean);
        let t = TensorView::new(&empty, &shape).unwrap();
        assert_eq!(mean.forward(x, Target::dense(t)).unwrap(), 0.0);
    }
    let x = TensorView::new(&empty, &[0, 3, 80]).unwrap();
    let l = TensorView::new(&labels, &[0, 3]).unwrap();
    assert_eq!(sigmoid().forward(x, Target::labels(l)).unwrap(), 0.0);
}

#[test]
fn unsupported_simd_level_is_an_error_not_a_crash() {
    for level in SimdLevel::ALL {
        let r = sigmoid().with_simd(level);
        assert_eq!(r.is_ok(), level.is_supported(), "{level:?}");
    }
}

#[test]
fn non_contiguous_ndarray_is_an_error() {
    let a = ndarray::Array2::<f32>::zeros((3, 4));
    let t = a.t();
    assert!(matches!(TensorView::from_ndarray(t), Err(FocalError::NotContiguous { .. })));
    assert!(TensorView::from_ndarray(a.view()).is_ok());
}
