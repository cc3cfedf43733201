//! The COCO label names equal torchvision's (`tests/fixtures/make_coco_categories.py`).

#[test]
fn coco_category_names_equal_torchvision() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/coco_categories.txt")).unwrap();
    let theirs: Vec<&str> = text.lines().collect();
    assert_eq!(retinanet::coco::COCO_CATEGORY_NAMES.as_slice(), theirs.as_slice());
    // Label = category id: 1 is person, 90 toothbrush, 12 one of the unused ids.
    assert_eq!(theirs[1], "person");
    assert_eq!(theirs[90], "toothbrush");
    assert_eq!(theirs[12], "N/A");
}
