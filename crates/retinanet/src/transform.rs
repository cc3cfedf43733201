//! torchvision's `GeneralizedRCNNTransform`: resize, normalise, batch with zero padding to a
//! multiple of 32; and the horizontal flip used for augmentation.

use anchors::BoxXyxy;
use fpn_net::Tensor4;

use crate::data::RgbImage;
use crate::error::{Result, RetinaError};

/// ImageNet mean, as torchvision normalises.
pub const IMAGE_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet standard deviation.
pub const IMAGE_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// Batched images are padded to a multiple of this.
pub const SIZE_DIVISIBLE: usize = 32;

/// The size an image of `height x width` is resized to: the scale is
/// `min(min_size / shorter, max_size / longer)` and each side becomes `floor(side * scale)`,
/// as `interpolate(scale_factor=..., recompute_scale_factor=True)` does.
///
/// Both steps are in f64, as torchvision (a Python float) and `interpolate` (`math.floor` of a
/// Python float) compute them: with an f32 scale, 800 / 17 * 17 rounds to 799.99994 and a
/// 17 x 22 image would become 799 x 1035 instead of torchvision's 800 x 1035.
pub fn resized_size(height: usize, width: usize, min_size: usize, max_size: usize) -> [usize; 2] {
    let (short, long) = (height.min(width) as f64, height.max(width) as f64);
    let scale = (min_size as f64 / short).min(max_size as f64 / long);
    [((height as f64) * scale).floor().max(1.0) as usize, ((width as f64) * scale).floor().max(1.0) as usize]
}

/// Bilinear resize with `align_corners=False` (torch's `interpolate(mode="bilinear")`).
pub fn resize_bilinear(img: &RgbImage, height: usize, width: usize) -> RgbImage {
    if img.height == height && img.width == width {
        return img.clone();
    }
    if img.height == 0 || img.width == 0 || img.data.len() != 3 * img.height * img.width {
        return RgbImage::zeros(height, width);
    }
    let mut out = RgbImage::zeros(height, width);
    let (sy, sx) = (img.height as f32 / height as f32, img.width as f32 / width as f32);
    let src_plane = img.height * img.width;
    let plane = height * width;
    let coord = |o: usize, scale: f32, len: usize| {
        let s = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
        let i0 = (s as usize).min(len - 1);
        let i1 = (i0 + 1).min(len - 1);
        (i0, i1, s - i0 as f32)
    };
    for y in 0..height {
        let (y0, y1, fy) = coord(y, sy, img.height);
        for x in 0..width {
            let (x0, x1, fx) = coord(x, sx, img.width);
            for c in 0..3 {
                let p = |yy: usize, xx: usize| img.data[c * src_plane + yy * img.width + xx];
                let top = p(y0, x0) * (1.0 - fx) + p(y0, x1) * fx;
                let bottom = p(y1, x0) * (1.0 - fx) + p(y1, x1) * fx;
                out.data[c * plane + y * width + x] = top * (1.0 - fy) + bottom * fy;
            }
        }
    }
    out
}

/// Scales boxes from an image of `from` `[h, w]` to one of `to`, per axis (torchvision's
/// `resize_boxes`).
pub fn resize_boxes(boxes: &mut [BoxXyxy], from: [usize; 2], to: [usize; 2]) {
    let ry = to[0] as f32 / from[0] as f32;
    let rx = to[1] as f32 / from[1] as f32;
    for b in boxes {
        *b = [b[0] * rx, b[1] * ry, b[2] * rx, b[3] * ry];
    }
}

/// Mirrors an image and its boxes left to right.
pub fn flip_horizontal(img: &mut RgbImage, boxes: &mut [BoxXyxy]) {
    let w = img.width;
    for row in img.data.chunks_mut(w) {
        row.reverse();
    }
    let wf = w as f32;
    for b in boxes {
        *b = [wf - b[2], b[1], wf - b[0], b[3]];
    }
}

/// A batch ready for the network, with the size of each image inside the padding.
#[derive(Clone, Debug)]
pub struct Batch {
    /// `[B, 3, H, W]`, normalised, zero-padded at the bottom and right.
    pub images: Tensor4,
    /// `[height, width]` of each resized image (what boxes are clipped to).
    pub image_sizes: Vec<[u32; 2]>,
}

/// Normalises images (already resized) and stacks them, zero-padded to a common size that is
/// a multiple of 32.
///
/// # Errors
/// [`RetinaError::Shape`] for an empty list or an image whose buffer does not match its size.
pub fn batch_images(images: &[&RgbImage]) -> Result<Batch> {
    if images.is_empty() {
        return Err(RetinaError::Shape { what: "image batch", expected: "at least one image".into(), got: "0".into() });
    }
    for img in images {
        if img.data.len() != 3 * img.height * img.width || img.height == 0 || img.width == 0 {
            return Err(RetinaError::Shape {
                what: "image",
                expected: format!("3 x {} x {} values, sides > 0", img.height, img.width),
                got: format!("{}", img.data.len()),
            });
        }
    }
    let pad = |v: usize| v.div_ceil(SIZE_DIVISIBLE) * SIZE_DIVISIBLE;
    let h = pad(images.iter().map(|i| i.height).max().unwrap_or(1));
    let w = pad(images.iter().map(|i| i.width).max().unwrap_or(1));
    let mut batch = Tensor4::zeros([images.len(), 3, h, w]);
    let out = batch.as_mut_slice();
    for (n, img) in images.iter().enumerate() {
        let plane = img.height * img.width;
        for c in 0..3 {
            for y in 0..img.height {
                let src = &img.data[c * plane + y * img.width..c * plane + (y + 1) * img.width];
                let start = ((n * 3 + c) * h + y) * w;
                for (d, &s) in out[start..start + img.width].iter_mut().zip(src) {
                    *d = (s - IMAGE_MEAN[c]) / IMAGE_STD[c];
                }
            }
        }
    }
    Ok(Batch { images: batch, image_sizes: images.iter().map(|i| [i.height as u32, i.width as u32]).collect() })
}
