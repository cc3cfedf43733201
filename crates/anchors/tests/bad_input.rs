//! Bad input gives an error value or a documented result, never a panic.

use anchors::{
    AnchorError, Anchors, BoxCoder, GroundTruth, LevelOutputs, PostprocessConfig, TargetAssigner, batched_nms, box_iou,
    nms, postprocess_image,
};

fn two_anchors() -> Anchors {
    Anchors::from_boxes(vec![[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 15.0]]).unwrap()
}

#[test]
fn degenerate_ground_truth_box_is_an_error() {
    let gt = GroundTruth { boxes: &[[5.0, 0.0, 4.0, 10.0]], labels: &[0] };
    let err = TargetAssigner::retinanet().assign(&two_anchors(), &[gt]).unwrap_err();
    assert!(matches!(err, AnchorError::InvalidBox { index: 0, .. }), "{err}");
}

#[test]
fn nan_ground_truth_box_is_an_error() {
    let gt = GroundTruth { boxes: &[[0.0, 0.0, 4.0, 4.0], [0.0, f32::NAN, 4.0, 10.0]], labels: &[0, 1] };
    let err = TargetAssigner::retinanet().assign(&two_anchors(), &[gt]).unwrap_err();
    assert!(matches!(err, AnchorError::InvalidBox { index: 1, .. }), "{err}");
}

#[test]
fn labels_out_of_range_are_an_error() {
    let assigner = TargetAssigner { num_classes: Some(3), ..TargetAssigner::retinanet() };
    for label in [-1, 3] {
        let labels = [label];
        let gt = GroundTruth { boxes: &[[0.0, 0.0, 4.0, 4.0]], labels: &labels };
        let err = assigner.assign(&two_anchors(), &[gt]).unwrap_err();
        assert!(matches!(err, AnchorError::Label { index: 0, .. }), "{err}");
    }
}

#[test]
fn mismatched_boxes_and_labels_are_an_error() {
    let gt = GroundTruth { boxes: &[[0.0, 0.0, 4.0, 4.0]], labels: &[] };
    let err = TargetAssigner::retinanet().assign(&two_anchors(), &[gt]).unwrap_err();
    assert!(matches!(err, AnchorError::Length { .. }), "{err}");
}

#[test]
fn image_without_boxes_is_all_background() {
    let empty = GroundTruth { boxes: &[], labels: &[] };
    let one = GroundTruth { boxes: &[[0.0, 0.0, 10.0, 10.0]], labels: &[2] };
    let t = TargetAssigner::retinanet().assign(&two_anchors(), &[empty, one]).unwrap();
    assert_eq!(t.labels(), &[-1, -1, 2, -1]);
    assert_eq!(t.num_foreground(), &[0, 1]);
    assert_eq!(t.regression()[0], [0.0; 4]);
}

#[test]
fn no_anchors_and_no_images_give_empty_targets() {
    let anchors = Anchors::from_boxes(vec![]).unwrap();
    let gt = GroundTruth { boxes: &[[0.0, 0.0, 4.0, 4.0]], labels: &[0] };
    let t = TargetAssigner::retinanet().assign(&anchors, &[gt]).unwrap();
    assert!(t.labels().is_empty());
    assert_eq!(t.num_foreground(), &[0]);
    let t = TargetAssigner::retinanet().assign(&two_anchors(), &[]).unwrap();
    assert!(t.labels().is_empty());
}

#[test]
fn invalid_anchors_are_an_error() {
    assert!(Anchors::from_boxes(vec![[0.0, 0.0, -1.0, 1.0]]).is_err());
    assert!(Anchors::from_boxes(vec![[0.0, 0.0, f32::INFINITY, 1.0]]).is_err());
    assert!(Anchors::from_levels(vec![[0.0, 0.0, 1.0, 1.0]], vec![0, 2]).is_err());
}

#[test]
fn nan_coordinates_give_nan_iou_and_are_never_suppressed() {
    let a = [[0.0f32, 0.0, 10.0, 10.0], [f32::NAN, 0.0, 10.0, 10.0]];
    let mut out = [0.0f32; 4];
    box_iou(&a, &a, &mut out).unwrap();
    assert_eq!(out[0], 1.0);
    assert!(out[1].is_nan() && out[2].is_nan() && out[3].is_nan());
    // As torchvision's kernel (checked against torchvision 0.29): the overlap with a NaN box
    // is NaN, never above the threshold, so it suppresses nothing and is kept.
    let keep = nms(&a, &[0.5, 0.9], 0.5).unwrap();
    assert_eq!(keep, [1, 0]);
}

#[test]
fn nan_scores_sort_first_like_torch() {
    let b = [[0.0f32, 0.0, 1.0, 1.0], [5.0, 5.0, 6.0, 6.0]];
    assert_eq!(nms(&b, &[0.5, f32::NAN], 0.5).unwrap(), [1, 0]);
    assert_eq!(batched_nms(&b, &[0.5, f32::NAN], &[0, 0], 0.5).unwrap(), [1, 0]);
}

#[test]
fn postprocess_rejects_mismatched_levels_and_zero_classes() {
    let anchors = [[0.0f32, 0.0, 10.0, 10.0]];
    let level = LevelOutputs { logits: &[1.0, 2.0], regression: &[[0.0; 4]], anchors: &anchors };
    let c = PostprocessConfig::default();
    let coder = BoxCoder::retinanet();
    assert!(postprocess_image(&[level], 3, [32, 32], &coder, &c).is_err());
    assert!(postprocess_image(&[level], 0, [32, 32], &coder, &c).is_err());
    let nan_logits = LevelOutputs { logits: &[f32::NAN, 2.0], ..level };
    let d = postprocess_image(&[nan_logits], 2, [32, 32], &coder, &c).unwrap();
    assert_eq!(d.labels, [1]); // a NaN score is never above the threshold
}

#[test]
fn ground_truth_outside_every_anchor_makes_every_anchor_foreground_like_torchvision() {
    // Its best IoU is 0 and every anchor ties with it: torchvision's Matcher then restores every
    // anchor's own best match (documented in `anchors::matcher`).
    let anchors = two_anchors();
    let boxes = [[500.0, 500.0, 510.0, 510.0], [0.0, 0.0, 10.0, 9.0]];
    let gt = GroundTruth { boxes: &boxes, labels: &[4, 6] };
    let assigner = TargetAssigner::retinanet();
    let t = assigner.assign(&anchors, &[gt]).unwrap();
    let reference = anchors::assign_image_reference(&assigner, anchors.boxes(), &gt).unwrap();
    assert_eq!(t.matched_gt(), &reference.matched_gt[..]);
    assert_eq!(t.labels(), &[6, 6]);
}
