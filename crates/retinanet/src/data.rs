//! Images with boxes: the built-in synthetic dataset, and samples read from COCO files.

use crate::init::SplitMix64;
use anchors::BoxXyxy;

use crate::error::{Result, config_error};

/// An RGB image, channels first (`[3, H, W]`), values in [0, 1].
#[derive(Clone, Debug, PartialEq)]
pub struct RgbImage {
    /// `3 * height * width` values, row-major per channel.
    pub data: Vec<f32>,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

impl RgbImage {
    /// A black image.
    pub fn zeros(height: usize, width: usize) -> Self {
        RgbImage { data: vec![0.0; 3 * height * width], height, width }
    }

    /// Reads an 8-bit RGB buffer (`image::RgbImage` layout, interleaved).
    pub fn from_rgb8(pixels: &[u8], height: usize, width: usize) -> Self {
        let mut img = RgbImage::zeros(height, width);
        let plane = height * width;
        for (i, px) in pixels.chunks_exact(3).take(plane).enumerate() {
            for (c, &v) in px.iter().enumerate() {
                img.data[c * plane + i] = v as f32 / 255.0;
            }
        }
        img
    }

    /// Interleaved 8-bit RGB (for writing PNGs).
    pub fn to_rgb8(&self) -> Vec<u8> {
        let plane = self.height * self.width;
        let mut out = vec![0u8; 3 * plane];
        for i in 0..plane {
            for c in 0..3 {
                out[3 * i + c] = (self.data[c * plane + i].clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
        out
    }
}

/// One image with its annotations.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// COCO image id.
    pub id: u64,
    /// The image.
    pub image: RgbImage,
    /// Boxes `[x1, y1, x2, y2]` in pixels.
    pub boxes: Vec<BoxXyxy>,
    /// Class of each box, `0..C`.
    pub labels: Vec<i32>,
}

/// The shapes of the synthetic dataset, one per class.
pub const SHAPE_NAMES: [&str; 5] = ["rectangle", "disc", "triangle", "cross", "ring"];

/// The built-in synthetic dataset: coloured shapes (one class per shape) of several sizes on
/// striped, noisy backgrounds, generated deterministically from a seed.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticConfig {
    /// Number of images.
    pub num_images: usize,
    /// Side of the square images.
    pub image_size: usize,
    /// Number of classes (shapes), 1 to 5.
    pub num_classes: usize,
    /// Objects per image, at least.
    pub min_objects: usize,
    /// Objects per image, at most.
    pub max_objects: usize,
    /// Smallest object side in pixels.
    pub min_side: f32,
    /// Largest object side in pixels.
    pub max_side: f32,
    /// The seed: the same seed gives the same images everywhere.
    pub seed: u64,
}

impl SyntheticConfig {
    /// 128-pixel images with 1 to 3 objects of 3 classes, sides 16 to 56 pixels.
    pub fn small(num_images: usize, seed: u64) -> Self {
        SyntheticConfig {
            num_images,
            image_size: 128,
            num_classes: 3,
            min_objects: 1,
            max_objects: 3,
            min_side: 16.0,
            max_side: 56.0,
            seed,
        }
    }

    /// Class names.
    pub fn class_names(&self) -> Vec<String> {
        SHAPE_NAMES[..self.num_classes.min(SHAPE_NAMES.len())].iter().map(|s| s.to_string()).collect()
    }

    fn validate(&self) -> Result<()> {
        if !(1..=SHAPE_NAMES.len()).contains(&self.num_classes) {
            return Err(config_error(format!("synthetic num_classes {}: expected 1..=5", self.num_classes)));
        }
        if self.image_size < 32
            || self.min_objects > self.max_objects
            || !(self.min_side >= 4.0 && self.max_side >= self.min_side && self.max_side < self.image_size as f32)
        {
            return Err(config_error(format!(
                "synthetic dataset {self:?}: expected image_size >= 32, min_objects <= max_objects, \
                 4 <= min_side <= max_side < image_size"
            )));
        }
        Ok(())
    }

    /// Generates the images (ids 1..=n).
    ///
    /// # Errors
    /// [`crate::RetinaError::Config`] for invalid settings.
    pub fn generate(&self) -> Result<Vec<Sample>> {
        self.validate()?;
        Ok((0..self.num_images).map(|i| self.sample(i)).collect())
    }

    /// Image `index` alone (the same as `generate()[index]`).
    pub fn sample(&self, index: usize) -> Sample {
        let mut rng = SplitMix64::new(self.seed ^ (index as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
        let s = self.image_size;
        let mut image = background(&mut rng, s);
        let count =
            self.min_objects + rng.below((self.max_objects.saturating_sub(self.min_objects) + 1) as u64) as usize;
        let mut boxes: Vec<BoxXyxy> = Vec::new();
        let mut labels = Vec::new();
        for _ in 0..count {
            // A few tries to place an object that overlaps the others little.
            for _ in 0..20 {
                let w = rng.uniform(self.min_side, self.max_side).round();
                let h = (w * rng.uniform(0.75, 1.33)).round().clamp(self.min_side, self.max_side);
                let x1 = rng.below((s as f32 - w) as u64 + 1) as f32;
                let y1 = rng.below((s as f32 - h) as u64 + 1) as f32;
                let b = [x1, y1, x1 + w, y1 + h];
                if boxes.iter().any(|o| anchors::boxes::iou(o, &b) > 0.1) {
                    continue;
                }
                let class = rng.below(self.num_classes as u64) as usize;
                let colour = object_colour(&mut rng);
                draw_shape(&mut image, &b, class, colour);
                boxes.push(b);
                labels.push(class as i32);
                break;
            }
        }
        Sample { id: index as u64 + 1, image, boxes, labels }
    }
}

/// Stripes of a random colour, direction and frequency plus pixel noise.
fn background(rng: &mut SplitMix64, s: usize) -> RgbImage {
    let mut img = RgbImage::zeros(s, s);
    let base: [f32; 3] = [rng.uniform(0.2, 0.6), rng.uniform(0.2, 0.6), rng.uniform(0.2, 0.6)];
    let angle = rng.uniform(0.0, std::f32::consts::PI);
    let freq = rng.uniform(0.05, 0.4);
    let (fx, fy) = (freq * angle.cos(), freq * angle.sin());
    let amplitude = rng.uniform(0.05, 0.2);
    let plane = s * s;
    for y in 0..s {
        for x in 0..s {
            let stripe = amplitude * (fx * x as f32 + fy * y as f32).sin();
            for (c, b) in base.iter().enumerate() {
                let noise = rng.uniform(-0.06, 0.06);
                img.data[c * plane + y * s + x] = (b + stripe + noise).clamp(0.0, 1.0);
            }
        }
    }
    img
}

/// A saturated colour: one channel high, one low, one anywhere.
fn object_colour(rng: &mut SplitMix64) -> [f32; 3] {
    let hi = rng.below(3) as usize;
    let lo = (hi + 1 + rng.below(2) as usize) % 3;
    let mut c = [rng.uniform(0.0, 1.0); 3];
    c[hi] = rng.uniform(0.85, 1.0);
    c[lo] = rng.uniform(0.0, 0.15);
    c
}

/// Whether the point `(u, v)` in the unit box lies inside shape `class`.
fn inside(class: usize, u: f32, v: f32) -> bool {
    let (du, dv) = (u - 0.5, v - 0.5);
    let r2 = du * du + dv * dv;
    match class {
        0 => true,
        1 => r2 <= 0.25,
        2 => du.abs() <= 0.5 * v,
        3 => du.abs() <= 1.0 / 6.0 || dv.abs() <= 1.0 / 6.0,
        _ => (0.09..=0.25).contains(&r2),
    }
}

fn draw_shape(img: &mut RgbImage, b: &BoxXyxy, class: usize, colour: [f32; 3]) {
    let (w, h) = (b[2] - b[0], b[3] - b[1]);
    let plane = img.height * img.width;
    for y in b[1] as usize..(b[3] as usize).min(img.height) {
        for x in b[0] as usize..(b[2] as usize).min(img.width) {
            let u = (x as f32 + 0.5 - b[0]) / w;
            let v = (y as f32 + 0.5 - b[1]) / h;
            if inside(class, u, v) {
                for (c, &value) in colour.iter().enumerate() {
                    img.data[c * plane + y * img.width + x] = value;
                }
            }
        }
    }
}

/// A COCO-format dataset: samples with contiguous labels, and the category of each label.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// The images and their boxes.
    pub samples: Vec<Sample>,
    /// `(COCO category id, name)` of label `0..C`, by ascending id.
    pub categories: Vec<(u64, String)>,
}

impl Dataset {
    /// The built-in synthetic dataset (category ids are label + 1).
    ///
    /// # Errors
    /// [`crate::RetinaError::Config`] for invalid settings.
    pub fn synthetic(config: &SyntheticConfig) -> Result<Self> {
        let categories = config.class_names().into_iter().enumerate().map(|(i, n)| (i as u64 + 1, n)).collect();
        Ok(Dataset { samples: config.generate()?, categories })
    }

    /// Class names by label.
    pub fn class_names(&self) -> Vec<String> {
        self.categories.iter().map(|(_, n)| n.clone()).collect()
    }

    /// COCO category ids by label.
    pub fn category_ids(&self) -> Vec<u64> {
        self.categories.iter().map(|(id, _)| *id).collect()
    }

    /// Reads a COCO instances JSON and decodes its images from `image_dir`. Crowd
    /// annotations and boxes with no area are skipped (torchvision's reference scripts do the
    /// same); at most `limit` images are read when given.
    ///
    /// # Errors
    /// [`crate::RetinaError::Io`] for a missing file, [`crate::RetinaError::Data`] for bad
    /// JSON, unknown ids or an image that does not decode.
    pub fn load_coco(annotations: &std::path::Path, image_dir: &std::path::Path, limit: Option<usize>) -> Result<Self> {
        use crate::error::RetinaError;
        let text = std::fs::read_to_string(annotations).map_err(|e| crate::error::io_error(annotations, e))?;
        let doc: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| RetinaError::Data(format!("{}: not valid JSON ({e})", annotations.display())))?;
        let bad = |what: &str| RetinaError::Data(format!("{}: {what}", annotations.display()));
        let mut categories: Vec<(u64, String)> = doc["categories"]
            .as_array()
            .ok_or_else(|| bad("no `categories` list"))?
            .iter()
            .map(|c| {
                let id = c["id"].as_u64().ok_or_else(|| bad("a category without an integer `id`"))?;
                Ok((id, c["name"].as_str().unwrap_or("").to_string()))
            })
            .collect::<Result<_>>()?;
        categories.sort_by_key(|c| c.0);
        let label_of: std::collections::HashMap<u64, i32> =
            categories.iter().enumerate().map(|(i, c)| (c.0, i as i32)).collect();
        let images = doc["images"].as_array().ok_or_else(|| bad("no `images` list"))?;
        let mut samples = Vec::new();
        let mut index = std::collections::HashMap::new();
        for img in images.iter().take(limit.unwrap_or(usize::MAX)) {
            let id = img["id"].as_u64().ok_or_else(|| bad("an image without an integer `id`"))?;
            let file = img["file_name"].as_str().ok_or_else(|| bad("an image without `file_name`"))?;
            let path = image_dir.join(file);
            let bytes = std::fs::read(&path).map_err(|e| crate::error::io_error(&path, e))?;
            let decoded = image::load_from_memory(&bytes)
                .map_err(|e| RetinaError::Data(format!("{}: cannot decode image ({e})", path.display())))?
                .to_rgb8();
            let (w, h) = decoded.dimensions();
            index.insert(id, samples.len());
            samples.push(Sample {
                id,
                image: RgbImage::from_rgb8(decoded.as_raw(), h as usize, w as usize),
                boxes: Vec::new(),
                labels: Vec::new(),
            });
        }
        for ann in doc["annotations"].as_array().ok_or_else(|| bad("no `annotations` list"))? {
            let image_id = ann["image_id"].as_u64().ok_or_else(|| bad("an annotation without `image_id`"))?;
            let Some(&s) = index.get(&image_id) else { continue };
            if ann["iscrowd"].as_u64() == Some(1) {
                continue;
            }
            let cat = ann["category_id"].as_u64().ok_or_else(|| bad("an annotation without `category_id`"))?;
            let label = *label_of.get(&cat).ok_or_else(|| bad(&format!("unknown category_id {cat}")))?;
            let b: Vec<f64> =
                ann["bbox"].as_array().map(|a| a.iter().filter_map(|v| v.as_f64()).collect()).unwrap_or_default();
            if b.len() != 4 {
                return Err(bad("an annotation whose `bbox` is not [x, y, w, h]"));
            }
            if b[2] > 0.0 && b[3] > 0.0 {
                let x = [b[0] as f32, b[1] as f32, (b[0] + b[2]) as f32, (b[1] + b[3]) as f32];
                samples[s].boxes.push(x);
                samples[s].labels.push(label);
            }
        }
        if categories.is_empty() {
            return Err(bad("no categories"));
        }
        Ok(Dataset { samples, categories })
    }
}
