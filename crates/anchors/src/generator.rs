//! Anchor generation: torchvision's `AnchorGenerator` exactly, detectron2's as a preset.
//!
//! Anchors are ordered level by level, then by location (row y, then column x), then by the
//! cell anchor at that location. The cell order is torchvision's (aspect ratio major, size
//! minor) by default.
//!
//! torchvision's conventions ([`AnchorConfig::torchvision_retinanet`]):
//! * sizes `32..512 x {2^0, 2^(1/3), 2^(2/3)}` truncated to integers (`32, 40, 50, 64, 80, 101, ...`);
//! * cell anchors `[-w/2, -h/2, w/2, h/2]` with `h = sqrt(ratio) * size`, `w = size / sqrt(ratio)`
//!   computed in `f32` and rounded half to even;
//! * strides `image_size // grid_size` per axis (integer division), no half-stride offset.
//!
//! detectron2's conventions ([`AnchorConfig::detectron2_retinanet`]): sizes not truncated, cell
//! anchors computed in `f64` and not rounded, size major and ratio minor, fixed strides
//! 8..128, offset 0.0.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::assign::ASSIGN_CHUNK;
use crate::boxes::{BoxRequirement, BoxXyxy, box_area, validate_boxes};
use crate::error::{AnchorError, Result};

/// Order of the cell anchors at one location.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellOrder {
    /// torchvision: for each aspect ratio, every size.
    RatioMajor,
    /// detectron2: for each size, every aspect ratio.
    SizeMajor,
}

/// How the stride of each level is found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Strides {
    /// torchvision: `[image_h / grid_h, image_w / grid_w]` (integer division) per level.
    FromImage,
    /// Fixed `[stride_h, stride_w]` per level (detectron2 takes them from the backbone).
    Fixed(Vec<[u32; 2]>),
}

/// How cell anchors are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellArithmetic {
    /// torchvision: `f32`, then rounded half to even.
    TorchvisionF32Rounded,
    /// detectron2: `f64` (`w = sqrt(size^2 / ratio)`, `h = ratio * w`), not rounded.
    Detectron2F64,
}

/// What anchors to make for each pyramid level.
#[derive(Clone, Debug, PartialEq)]
pub struct AnchorConfig {
    /// Anchor sizes (square root of the area) per level.
    pub sizes: Vec<Vec<f64>>,
    /// Aspect ratios (height / width) per level.
    pub aspect_ratios: Vec<Vec<f64>>,
    /// Anchor centre offset in units of the stride (torchvision 0.0; 0.5 puts centres mid-cell).
    pub offset: f64,
    /// Stride rule.
    pub strides: Strides,
    /// Cell anchor order.
    pub order: CellOrder,
    /// Cell anchor arithmetic.
    pub arithmetic: CellArithmetic,
}

/// RetinaNet's base sizes for P3..P7.
const RETINANET_BASE_SIZES: [f64; 5] = [32.0, 64.0, 128.0, 256.0, 512.0];
const RETINANET_RATIOS: [f64; 3] = [0.5, 1.0, 2.0];

impl AnchorConfig {
    /// torchvision's `_default_anchorgen()` for RetinaNet: P3..P7, three octave scales truncated
    /// to integers, ratios 0.5/1/2, strides from the image and feature-map sizes.
    pub fn torchvision_retinanet() -> Self {
        let sizes = RETINANET_BASE_SIZES
            .iter()
            .map(|&x| vec![x, (x * 2f64.powf(1.0 / 3.0)).trunc(), (x * 2f64.powf(2.0 / 3.0)).trunc()])
            .collect();
        AnchorConfig {
            sizes,
            aspect_ratios: vec![RETINANET_RATIOS.to_vec(); 5],
            offset: 0.0,
            strides: Strides::FromImage,
            order: CellOrder::RatioMajor,
            arithmetic: CellArithmetic::TorchvisionF32Rounded,
        }
    }

    /// detectron2's RetinaNet anchors (`DefaultAnchorGenerator` with the RetinaNet config):
    /// sizes `x * 2^(k/3)` not truncated, size-major cells computed in `f64` without rounding,
    /// strides 8, 16, 32, 64, 128, offset 0.0.
    pub fn detectron2_retinanet() -> Self {
        let sizes =
            RETINANET_BASE_SIZES.iter().map(|&x| vec![x, x * 2f64.powf(1.0 / 3.0), x * 2f64.powf(2.0 / 3.0)]).collect();
        AnchorConfig {
            sizes,
            aspect_ratios: vec![RETINANET_RATIOS.to_vec(); 5],
            offset: 0.0,
            strides: Strides::Fixed(vec![[8, 8], [16, 16], [32, 32], [64, 64], [128, 128]]),
            order: CellOrder::SizeMajor,
            arithmetic: CellArithmetic::Detectron2F64,
        }
    }

    /// Number of pyramid levels.
    pub fn num_levels(&self) -> usize {
        self.sizes.len()
    }

    /// Anchors per location of each level (`sizes * ratios`).
    pub fn anchors_per_location(&self) -> Vec<usize> {
        self.sizes.iter().zip(&self.aspect_ratios).map(|(s, r)| s.len() * r.len()).collect()
    }

    fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(AnchorError::Config(msg));
        if self.sizes.is_empty() {
            return bad("no levels: `sizes` is empty".into());
        }
        if self.sizes.len() != self.aspect_ratios.len() {
            return bad(format!(
                "{} levels of sizes but {} levels of aspect ratios",
                self.sizes.len(),
                self.aspect_ratios.len()
            ));
        }
        if let Strides::Fixed(s) = &self.strides {
            if s.len() != self.sizes.len() {
                return bad(format!("{} levels of sizes but {} fixed strides", self.sizes.len(), s.len()));
            }
            if s.iter().flatten().any(|&v| v == 0) {
                return bad("a fixed stride is 0".into());
            }
        }
        for (level, (sizes, ratios)) in self.sizes.iter().zip(&self.aspect_ratios).enumerate() {
            if sizes.is_empty() || ratios.is_empty() {
                return bad(format!("level {level} has no sizes or no aspect ratios"));
            }
            if let Some(s) = sizes.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
                return bad(format!("level {level}: size {s} is not finite and positive"));
            }
            if let Some(r) = ratios.iter().find(|r| !(r.is_finite() && **r > 0.0)) {
                return bad(format!("level {level}: aspect ratio {r} is not finite and positive"));
            }
        }
        if !(self.offset.is_finite() && (0.0..1.0).contains(&self.offset)) {
            return Err(AnchorError::Parameter {
                name: "anchor offset",
                value: self.offset,
                expected: "a value in [0, 1)",
            });
        }
        Ok(())
    }
}

/// The anchors of one image layout, level by level, with the index range of each level.
///
/// Also keeps the coordinates as separate columns and the areas, which target assignment reads
/// in its inner loop.
#[derive(Clone, Debug, PartialEq)]
pub struct Anchors {
    boxes: Vec<BoxXyxy>,
    level_starts: Vec<usize>,
    /// `x1, y1, x2, y2` as columns.
    pub(crate) columns: [Vec<f32>; 4],
    /// Areas `(x2 - x1) * (y2 - y1)`.
    pub(crate) areas: Vec<f32>,
    /// Bounding box of each block of [`ASSIGN_CHUNK`] anchors.
    pub(crate) chunk_bounds: Vec<BoxXyxy>,
}

impl Anchors {
    /// Anchors from explicit boxes (one level).
    ///
    /// # Errors
    /// [`AnchorError::InvalidBox`] when a box is not finite or has `x2 < x1` or `y2 < y1`.
    pub fn from_boxes(boxes: Vec<BoxXyxy>) -> Result<Self> {
        let n = boxes.len();
        Self::from_levels(boxes, vec![0, n])
    }

    /// Anchors from boxes and the start of each level (`level_starts[0] == 0`, the last entry
    /// is `boxes.len()`).
    ///
    /// # Errors
    /// [`AnchorError::InvalidBox`] for a non-finite or degenerate box;
    /// [`AnchorError::Config`] when the level starts are not increasing from 0 to `boxes.len()`.
    pub fn from_levels(boxes: Vec<BoxXyxy>, level_starts: Vec<usize>) -> Result<Self> {
        validate_boxes("anchors", &boxes, BoxRequirement::NonNegativeSize)?;
        let ok = level_starts.first() == Some(&0)
            && level_starts.last() == Some(&boxes.len())
            && level_starts.windows(2).all(|w| w[0] <= w[1]);
        if !ok {
            return Err(AnchorError::Config(format!(
                "level starts {level_starts:?} must rise from 0 to {}",
                boxes.len()
            )));
        }
        Ok(Self::new_unchecked(boxes, level_starts))
    }

    fn new_unchecked(boxes: Vec<BoxXyxy>, level_starts: Vec<usize>) -> Self {
        let columns = std::array::from_fn(|k| boxes.iter().map(|b| b[k]).collect());
        let areas = boxes.iter().map(box_area).collect();
        let chunk_bounds = boxes
            .chunks(ASSIGN_CHUNK)
            .map(|c| {
                c.iter().fold([f32::INFINITY, f32::INFINITY, f32::NEG_INFINITY, f32::NEG_INFINITY], |m, b| {
                    [m[0].min(b[0]), m[1].min(b[1]), m[2].max(b[2]), m[3].max(b[3])]
                })
            })
            .collect();
        Anchors { boxes, level_starts, columns, areas, chunk_bounds }
    }

    /// All anchors, level by level.
    pub fn boxes(&self) -> &[BoxXyxy] {
        &self.boxes
    }

    /// Total number of anchors.
    pub fn len(&self) -> usize {
        self.boxes.len()
    }

    /// Whether there are no anchors.
    pub fn is_empty(&self) -> bool {
        self.boxes.is_empty()
    }

    /// Number of levels.
    pub fn num_levels(&self) -> usize {
        self.level_starts.len() - 1
    }

    /// Index range of level `level` (empty when out of range).
    pub fn level_range(&self, level: usize) -> std::ops::Range<usize> {
        match (self.level_starts.get(level), self.level_starts.get(level + 1)) {
            (Some(&a), Some(&b)) => a..b,
            _ => 0..0,
        }
    }

    /// The anchors of level `level` (empty when out of range).
    pub fn level(&self, level: usize) -> &[BoxXyxy] {
        &self.boxes[self.level_range(level)]
    }
}

type CacheKey = ([u32; 2], Vec<[u32; 2]>);

/// Layouts kept by [`AnchorGenerator::generate`] before the cache is emptied.
pub const CACHE_CAPACITY: usize = 64;

/// Makes anchors for an image and its feature maps, caching them per layout.
///
/// # Examples
/// ```
/// use anchors::{AnchorConfig, AnchorGenerator};
/// let generator = AnchorGenerator::new(AnchorConfig::torchvision_retinanet()).unwrap();
/// // An 800 x 800 padded image: P3..P7 feature maps.
/// let grids = [[100, 100], [50, 50], [25, 25], [13, 13], [7, 7]];
/// let anchors = generator.generate([800, 800], &grids).unwrap();
/// assert_eq!(anchors.len(), 120_087);
/// assert_eq!(anchors.boxes()[0], [-23.0, -11.0, 23.0, 11.0]);
/// ```
#[derive(Debug)]
pub struct AnchorGenerator {
    config: AnchorConfig,
    cells: Vec<Vec<BoxXyxy>>,
    cache: Mutex<HashMap<CacheKey, Arc<Anchors>>>,
}

impl AnchorGenerator {
    /// A generator for `config`.
    ///
    /// # Errors
    /// [`AnchorError::Config`] or [`AnchorError::Parameter`] for an unusable configuration.
    pub fn new(config: AnchorConfig) -> Result<Self> {
        config.validate()?;
        let cells = config
            .sizes
            .iter()
            .zip(&config.aspect_ratios)
            .map(|(sizes, ratios)| cell_anchors(sizes, ratios, config.order, config.arithmetic))
            .collect();
        Ok(AnchorGenerator { config, cells, cache: Mutex::new(HashMap::new()) })
    }

    /// The configuration.
    pub fn config(&self) -> &AnchorConfig {
        &self.config
    }

    /// The zero-centred cell anchors of each level.
    pub fn cell_anchors(&self) -> &[Vec<BoxXyxy>] {
        &self.cells
    }

    /// Anchors for a (padded) image of `[height, width]` and feature maps of `[height, width]`
    /// per level, from the cache when this layout was seen before (the cache holds up to
    /// [`CACHE_CAPACITY`] layouts, then starts over).
    ///
    /// # Errors
    /// [`AnchorError::Config`] when the number of feature maps differs from the number of
    /// levels, or a grid size is 0, or (with [`Strides::FromImage`]) a grid is larger than
    /// the image.
    pub fn generate(&self, image_size: [u32; 2], grid_sizes: &[[u32; 2]]) -> Result<Arc<Anchors>> {
        let key = (image_size, grid_sizes.to_vec());
        if let Some(hit) = self.lock_cache().get(&key) {
            return Ok(Arc::clone(hit));
        }
        let anchors = Arc::new(self.generate_uncached(image_size, grid_sizes)?);
        let mut cache = self.lock_cache();
        if cache.len() >= CACHE_CAPACITY {
            // Unpadded multi-scale training meets many layouts; start over rather than grow.
            cache.clear();
        }
        cache.insert(key, Arc::clone(&anchors));
        Ok(anchors)
    }

    /// Empties the layout cache.
    pub fn clear_cache(&self) {
        self.lock_cache().clear();
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Arc<Anchors>>> {
        // A panic elsewhere while holding the lock cannot leave the map half-updated (inserts
        // are single calls), so a poisoned lock is still usable.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Anchors without touching the cache.
    ///
    /// # Errors
    /// As [`AnchorGenerator::generate`].
    pub fn generate_uncached(&self, image_size: [u32; 2], grid_sizes: &[[u32; 2]]) -> Result<Anchors> {
        if grid_sizes.len() != self.cells.len() {
            return Err(AnchorError::Config(format!(
                "{} feature maps for {} anchor levels",
                grid_sizes.len(),
                self.cells.len()
            )));
        }
        let mut strides = Vec::with_capacity(grid_sizes.len());
        for (level, grid) in grid_sizes.iter().enumerate() {
            if grid[0] == 0 || grid[1] == 0 {
                return Err(AnchorError::Config(format!("level {level}: grid size {grid:?} has a zero side")));
            }
            let stride = match &self.config.strides {
                Strides::FromImage => {
                    if grid[0] > image_size[0] || grid[1] > image_size[1] {
                        return Err(AnchorError::Config(format!(
                            "level {level}: grid {grid:?} larger than the image {image_size:?}"
                        )));
                    }
                    [image_size[0] / grid[0], image_size[1] / grid[1]]
                }
                Strides::Fixed(s) => s[level],
            };
            strides.push(stride);
        }
        let total: usize =
            grid_sizes.iter().zip(&self.cells).map(|(g, c)| g[0] as usize * g[1] as usize * c.len()).sum();
        let mut boxes = Vec::with_capacity(total);
        let mut level_starts = vec![0];
        for ((grid, stride), cells) in grid_sizes.iter().zip(&strides).zip(&self.cells) {
            let offset = self.config.offset;
            for y in 0..grid[0] {
                // torchvision: integer shifts converted to f32; detectron2: f32 arange from
                // offset * stride (computed in f64, as torch's arange does, then rounded).
                let sy = ((y as f64 + offset) * stride[0] as f64) as f32;
                for x in 0..grid[1] {
                    let sx = ((x as f64 + offset) * stride[1] as f64) as f32;
                    boxes.extend(cells.iter().map(|c| [sx + c[0], sy + c[1], sx + c[2], sy + c[3]]));
                }
            }
            level_starts.push(boxes.len());
        }
        Ok(Anchors::new_unchecked(boxes, level_starts))
    }
}

/// The zero-centred anchors of one level, in the configured order and arithmetic.
fn cell_anchors(sizes: &[f64], ratios: &[f64], order: CellOrder, arithmetic: CellArithmetic) -> Vec<BoxXyxy> {
    let one = |size: f64, ratio: f64| -> BoxXyxy {
        match arithmetic {
            CellArithmetic::TorchvisionF32Rounded => {
                let h_ratio = (ratio as f32).sqrt();
                let w_ratio = 1.0 / h_ratio;
                let w = w_ratio * size as f32;
                let h = h_ratio * size as f32;
                [-w, -h, w, h].map(|v| (v / 2.0).round_ties_even())
            }
            CellArithmetic::Detectron2F64 => {
                let w = (size * size / ratio).sqrt();
                let h = ratio * w;
                [-w / 2.0, -h / 2.0, w / 2.0, h / 2.0].map(|v| v as f32)
            }
        }
    };
    let mut cells = Vec::with_capacity(sizes.len() * ratios.len());
    match order {
        CellOrder::RatioMajor => {
            for &r in ratios {
                cells.extend(sizes.iter().map(|&s| one(s, r)));
            }
        }
        CellOrder::SizeMajor => {
            for &s in sizes {
                cells.extend(ratios.iter().map(|&r| one(s, r)));
            }
        }
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torchvision_sizes_are_truncated() {
        let c = AnchorConfig::torchvision_retinanet();
        assert_eq!(
            c.sizes,
            vec![
                vec![32.0, 40.0, 50.0],
                vec![64.0, 80.0, 101.0],
                vec![128.0, 161.0, 203.0],
                vec![256.0, 322.0, 406.0],
                vec![512.0, 645.0, 812.0],
            ]
        );
    }

    #[test]
    fn mismatched_levels_is_an_error() {
        let g = AnchorGenerator::new(AnchorConfig::torchvision_retinanet()).unwrap();
        assert!(matches!(g.generate([64, 64], &[[8, 8]]), Err(AnchorError::Config(_))));
        assert!(matches!(g.generate([64, 64], &[[8, 8], [4, 4], [2, 2], [1, 1], [0, 1]]), Err(AnchorError::Config(_))));
    }

    #[test]
    fn cache_returns_the_same_anchors() {
        let g = AnchorGenerator::new(AnchorConfig::torchvision_retinanet()).unwrap();
        let grids = [[8, 8], [4, 4], [2, 2], [1, 1], [1, 1]];
        let a = g.generate([64, 64], &grids).unwrap();
        let b = g.generate([64, 64], &grids).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(*a, g.generate_uncached([64, 64], &grids).unwrap());
    }

    #[test]
    fn detectron2_cells_are_size_major_and_unrounded() {
        let g = AnchorGenerator::new(AnchorConfig::detectron2_retinanet()).unwrap();
        let cells = &g.cell_anchors()[0];
        // size 32, ratio 0.5: w = sqrt(1024 / 0.5) = 45.254..., h = 22.627...
        let w = (2048f64).sqrt();
        assert_eq!(cells[0], [(-w / 2.0) as f32, (-w / 4.0) as f32, (w / 2.0) as f32, (w / 4.0) as f32]);
        // then size 32, ratio 1
        assert_eq!(cells[1], [-16.0, -16.0, 16.0, 16.0]);
    }

    #[test]
    fn detectron2_grid_uses_fixed_strides_and_offset() {
        let mut config = AnchorConfig::detectron2_retinanet();
        config.offset = 0.5;
        let g = AnchorGenerator::new(config).unwrap();
        // Strides are fixed (8 at P3) whatever the image size.
        let a = g.generate_uncached([100, 100], &[[2, 3], [1, 2], [1, 1], [1, 1], [1, 1]]).unwrap();
        let cells = &g.cell_anchors()[0];
        let per_location = cells.len();
        // Location (y = 1, x = 2) of P3: centre ((2 + 0.5) * 8, (1 + 0.5) * 8) = (20, 12).
        let first = a.boxes()[(3 + 2) * per_location];
        let c = cells[0];
        assert_eq!(first, [20.0 + c[0], 12.0 + c[1], 20.0 + c[2], 12.0 + c[3]]);
        assert_eq!(a.level_range(1), 6 * per_location..8 * per_location);
    }

    #[test]
    fn bad_offset_is_an_error() {
        let mut c = AnchorConfig::torchvision_retinanet();
        c.offset = 1.5;
        assert!(matches!(AnchorGenerator::new(c), Err(AnchorError::Parameter { .. })));
    }
}
