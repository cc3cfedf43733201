//! Properties of target assignment: the fused path equals the matrix reference bit for bit,
//! and low-quality matching gives every ground truth its best anchors.

mod common;

use anchors::boxes::iou;
use anchors::{AnchorConfig, AnchorGenerator, Anchors, GroundTruth, Matcher, TargetAssigner, assign_image_reference};
use common::{box_strategy, prop_config};
use proptest::prelude::*;
use std::sync::{Arc, OnceLock};

/// A 96 x 128 RetinaNet layout (2,673 anchors: more than one assignment block).
fn layout() -> Arc<Anchors> {
    static LAYOUT: OnceLock<Arc<Anchors>> = OnceLock::new();
    Arc::clone(LAYOUT.get_or_init(|| {
        AnchorGenerator::new(AnchorConfig::torchvision_retinanet())
            .unwrap()
            .generate([96, 128], &[[12, 16], [6, 8], [3, 4], [2, 2], [1, 1]])
            .unwrap()
    }))
}

fn images() -> impl Strategy<Value = Vec<(Vec<[f32; 4]>, Vec<i32>)>> {
    proptest::collection::vec(
        (0usize..12).prop_flat_map(|n| {
            (proptest::collection::vec(box_strategy(128.0, 2.0, 90.0), n), proptest::collection::vec(0i32..5, n))
        }),
        1..4,
    )
}

proptest! {
    #![proptest_config(prop_config(96))]

    #[test]
    fn fused_assignment_equals_reference(images in images(), low_quality in any::<bool>()) {
        let anchors = layout();
        let assigner = TargetAssigner {
            matcher: Matcher::new(0.5, 0.4, low_quality).unwrap(),
            ..TargetAssigner::retinanet()
        };
        let gts: Vec<GroundTruth<'_>> =
            images.iter().map(|(b, l)| GroundTruth { boxes: b, labels: l }).collect();
        let t = assigner.assign(&anchors, &gts).unwrap();
        let a = anchors.len();
        for (i, gt) in gts.iter().enumerate() {
            let anchors::ImageTargets { labels, matched_gt: matched, regression } =
                assign_image_reference(&assigner, anchors.boxes(), gt).unwrap();
            prop_assert_eq!(&t.matched_gt()[i * a..(i + 1) * a], &matched[..]);
            prop_assert_eq!(&t.labels()[i * a..(i + 1) * a], &labels[..]);
            prop_assert_eq!(&t.regression()[i * a..(i + 1) * a], &regression[..]);
            let fg = matched.iter().filter(|&&m| m >= 0).count();
            prop_assert_eq!(t.num_foreground()[i], fg);
        }
    }

    #[test]
    fn every_ground_truth_gets_its_best_anchors(images in images()) {
        let anchors = layout();
        let gts: Vec<GroundTruth<'_>> =
            images.iter().map(|(b, l)| GroundTruth { boxes: b, labels: l }).collect();
        let t = TargetAssigner::retinanet().assign(&anchors, &gts).unwrap();
        let a = anchors.len();
        for (i, gt) in gts.iter().enumerate() {
            let matched = &t.matched_gt()[i * a..(i + 1) * a];
            for (g, gb) in gt.boxes.iter().enumerate() {
                let ious: Vec<f32> = anchors.boxes().iter().map(|ab| iou(gb, ab)).collect();
                let best = ious.iter().copied().fold(0.0f32, f32::max);
                // Every anchor tying the best IoU is foreground, matched to a ground truth it
                // overlaps at least as well (torchvision restores the anchor's own best match).
                for (k, _) in ious.iter().enumerate().filter(|(_, v)| **v == best) {
                    let m = matched[k];
                    prop_assert!(m >= 0, "gt {} best anchor {} not foreground", g, k);
                    prop_assert!(iou(&gt.boxes[m as usize], &anchors.boxes()[k]) >= best);
                }
                // So every ground truth whose best anchor prefers nobody else gets an anchor.
                let owns_one = ious.iter().enumerate().any(|(k, v)| *v == best && matched[k] == g as i32);
                // Otherwise another box takes those anchors: a better one, or an equal one with
                // a lower index (the first maximum wins, as in torch's max).
                let taken = ious.iter().enumerate().any(|(k, v)| *v == best
                    && gt.boxes.iter().enumerate().any(|(o, ob)| {
                        let q = iou(ob, &anchors.boxes()[k]);
                        o != g && (q > best || (q == best && o < g))
                    }));
                prop_assert!(owns_one || taken, "gt {} has no anchor", g);
            }
        }
    }

    #[test]
    fn assignment_does_not_depend_on_thread_count(images in images()) {
        let anchors = layout();
        let gts: Vec<GroundTruth<'_>> =
            images.iter().map(|(b, l)| GroundTruth { boxes: b, labels: l }).collect();
        let many = TargetAssigner::retinanet().assign(&anchors, &gts).unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let one = pool.install(|| TargetAssigner::retinanet().assign(&anchors, &gts).unwrap());
        prop_assert_eq!(many.labels(), one.labels());
        prop_assert_eq!(many.regression(), one.regression());
    }
}
