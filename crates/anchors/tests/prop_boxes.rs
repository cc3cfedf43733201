//! Properties of IoU and GIoU.

mod common;

use anchors::boxes::{giou, iou};
use common::{box_strategy, prop_config};
use proptest::prelude::*;

proptest! {
    #![proptest_config(prop_config(512))]

    #[test]
    fn iou_is_symmetric_and_in_unit_interval(
        a in box_strategy(100.0, 0.125, 60.0),
        b in box_strategy(100.0, 0.125, 60.0),
    ) {
        let ab = iou(&a, &b);
        prop_assert_eq!(ab.to_bits(), iou(&b, &a).to_bits());
        prop_assert!((0.0..=1.0).contains(&ab), "iou {}", ab);
        prop_assert_eq!(iou(&a, &a), 1.0);
    }

    #[test]
    fn giou_is_symmetric_bounded_and_at_most_iou(
        a in box_strategy(100.0, 0.125, 60.0),
        b in box_strategy(100.0, 0.125, 60.0),
    ) {
        let g = giou(&a, &b);
        prop_assert_eq!(g.to_bits(), giou(&b, &a).to_bits());
        prop_assert!((-1.0..=1.0).contains(&g), "giou {}", g);
        prop_assert!(g <= iou(&a, &b) + 1e-6);
    }
}
