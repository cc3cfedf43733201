//! Properties of NMS: kept boxes do not overlap beyond the threshold, every dropped box is
//! explained by a kept one, and the fast path equals the kernel-shaped reference.

mod common;

use anchors::boxes::iou;
use anchors::nms::nms_reference;
use anchors::{batched_nms, nms};
use common::{box_strategy, prop_config};
use proptest::prelude::*;

fn scenes() -> impl Strategy<Value = (Vec<[f32; 4]>, Vec<f32>, Vec<i32>)> {
    (1usize..300).prop_flat_map(|n| {
        (
            proptest::collection::vec(box_strategy(120.0, 1.0, 50.0), n),
            // Quantised scores, so equal scores are common.
            proptest::collection::vec((0u8..16).prop_map(|s| s as f32 / 16.0), n),
            proptest::collection::vec(0i32..4, n),
        )
    })
}

proptest! {
    #![proptest_config(prop_config(256))]

    #[test]
    fn kept_boxes_are_pairwise_below_threshold(
        (boxes, scores, _) in scenes(),
        threshold in prop::sample::select(vec![0.3f64, 0.5, 0.7]),
    ) {
        let keep = nms(&boxes, &scores, threshold).unwrap();
        for (x, &i) in keep.iter().enumerate() {
            for &j in &keep[x + 1..] {
                prop_assert!(iou(&boxes[i], &boxes[j]) as f64 <= threshold);
            }
        }
        // Every dropped box overlaps a kept box of at least its score beyond the threshold.
        for d in (0..boxes.len()).filter(|d| !keep.contains(d)) {
            prop_assert!(keep.iter().any(|&k| scores[k] >= scores[d]
                && iou(&boxes[k], &boxes[d]) as f64 > threshold));
        }
        // Kept in descending score order.
        prop_assert!(keep.windows(2).all(|w| scores[w[0]] >= scores[w[1]]));
    }

    #[test]
    fn fast_nms_equals_reference((boxes, scores, _) in scenes(), threshold in 0.0f64..1.0) {
        prop_assert_eq!(nms(&boxes, &scores, threshold).unwrap(),
            nms_reference(&boxes, &scores, threshold).unwrap());
    }

    #[test]
    fn batched_nms_never_suppresses_across_classes((boxes, scores, classes) in scenes()) {
        let keep = batched_nms(&boxes, &scores, &classes, 0.5).unwrap();
        for class in 0..4 {
            let members: Vec<usize> = (0..boxes.len()).filter(|&i| classes[i] == class).collect();
            let b: Vec<[f32; 4]> = members.iter().map(|&i| boxes[i]).collect();
            let s: Vec<f32> = members.iter().map(|&i| scores[i]).collect();
            let alone: Vec<usize> = nms(&b, &s, 0.5).unwrap().iter().map(|&k| members[k]).collect();
            let together: Vec<usize> = keep.iter().copied().filter(|&i| classes[i] == class).collect();
            prop_assert_eq!(alone, together);
        }
    }
}
