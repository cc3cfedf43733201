//! Properties of the box coder.

mod common;

use anchors::BoxCoder;
use common::{box_strategy, prop_config};
use proptest::prelude::*;

proptest! {
    #![proptest_config(prop_config(512))]

    #[test]
    fn decode_inverts_encode(
        gt in box_strategy(400.0, 2.0, 300.0),
        anchor in box_strategy(400.0, 8.0, 300.0),
        faster_rcnn in any::<bool>(),
    ) {
        // Sides within a factor of 1000/16 of each other, so the decode clamp is not reached.
        let coder = if faster_rcnn { BoxCoder::faster_rcnn() } else { BoxCoder::retinanet() };
        let back = coder.decode(&coder.encode(&gt, &anchor), &anchor);
        // Rounding of the centre, size, ln and exp: a few ulps of the largest coordinate.
        let scale = gt.iter().chain(&anchor).fold(1.0f32, |m, v| m.max(v.abs()));
        for k in 0..4 {
            prop_assert!(
                (back[k] - gt[k]).abs() <= 16.0 * f32::EPSILON * scale,
                "coordinate {}: {} vs {} (scale {})", k, back[k], gt[k], scale
            );
        }
    }

    #[test]
    fn batched_decode_equals_single_decode(
        codes in proptest::collection::vec(prop::array::uniform4(-6.0f32..6.0), 1..40),
        anchor in box_strategy(400.0, 8.0, 300.0),
    ) {
        let coder = BoxCoder::retinanet();
        let anchors = vec![anchor; codes.len()];
        let mut out = vec![[0.0; 4]; codes.len()];
        coder.decode_boxes(&codes, &anchors, &mut out).unwrap();
        for (o, c) in out.iter().zip(&codes) {
            prop_assert_eq!(*o, coder.decode(c, &anchor));
            prop_assert!(o.iter().all(|v| v.is_finite()));
        }
    }
}
