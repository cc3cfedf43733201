//! Inference: resize, batch, forward, RetinaNet's post-processing from `anchors`, and boxes
//! mapped back to the original image sizes.

use anchors::{BoxCoder, Detections, PostprocessConfig, postprocess_batch};

use crate::data::RgbImage;
use crate::error::Result;
use crate::model::RetinaNet;
use crate::transform::{batch_images, resize_bilinear, resize_boxes, resized_size};

/// Detections for `images` (any sizes), `batch_size` at a time, boxes in each image's own
/// pixels: torchvision's `RetinaNet.eval()` forward with `config` (score threshold before
/// top-k per level, class-aware NMS, detections per image).
///
/// # Errors
/// Shape errors for empty images; layer errors.
pub fn detect(
    model: &mut RetinaNet,
    images: &[&RgbImage],
    batch_size: usize,
    config: &PostprocessConfig,
) -> Result<Vec<Detections>> {
    let cfg = model.config().clone();
    let mut out = Vec::with_capacity(images.len());
    for chunk in images.chunks(batch_size.max(1)) {
        let resized: Vec<RgbImage> = chunk
            .iter()
            .map(|img| {
                let [h, w] = resized_size(img.height, img.width, cfg.min_size, cfg.max_size);
                resize_bilinear(img, h, w)
            })
            .collect();
        let batch = batch_images(&resized.iter().collect::<Vec<_>>())?;
        model.forward(&batch.images)?;
        let anchors = model.anchors()?;
        let dets = postprocess_batch(
            model.logits(),
            model.regression(),
            &anchors,
            cfg.num_classes,
            &batch.image_sizes,
            &BoxCoder::retinanet(),
            config,
        )?;
        for ((mut d, img), r) in dets.into_iter().zip(chunk).zip(&resized) {
            resize_boxes(&mut d.boxes, [r.height, r.width], [img.height, img.width]);
            out.push(d);
        }
    }
    Ok(out)
}
