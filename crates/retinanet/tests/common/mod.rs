//! Inputs shared by the loss tests.

use anchors::Anchors;

/// 128 anchors on an 8 x 8 grid of stride 8 (a 64 x 64 image), two square sizes per location.
pub fn grid_anchors() -> Anchors {
    let mut boxes = Vec::new();
    for y in 0..8 {
        for x in 0..8 {
            let (cx, cy) = (x as f32 * 8.0 + 4.0, y as f32 * 8.0 + 4.0);
            for s in [8.0f32, 16.0] {
                boxes.push([cx - s, cy - s, cx + s, cy + s]);
            }
        }
    }
    Anchors::from_boxes(boxes).unwrap()
}
