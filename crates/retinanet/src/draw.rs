//! PNG output: detections drawn on images, and the ablation plots (`plotters`).

use std::path::Path;

use anchors::Detections;
use plotters::prelude::*;

use crate::data::RgbImage;
use crate::error::{Result, RetinaError};

/// Fonts tried for labels; plotters' pure-Rust text backend needs a TrueType file.
const FONT_PATHS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/Library/Fonts/Arial.ttf",
];

/// Registers a sans-serif font for labels once; `false` when none is found (boxes and lines
/// are drawn without text then).
pub fn ensure_font() -> bool {
    static FONT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FONT.get_or_init(|| {
        for p in FONT_PATHS {
            if let Ok(bytes) = std::fs::read(p) {
                let leaked: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, leaked).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

fn plot_error(e: impl std::fmt::Display) -> RetinaError {
    RetinaError::Data(format!("drawing: {e}"))
}

const PALETTE: [RGBColor; 6] = [RED, GREEN, BLUE, CYAN, MAGENTA, YELLOW];

/// Writes `image` with the detections scoring at least `min_score` as a PNG.
///
/// # Errors
/// [`RetinaError::Data`] when drawing or encoding fails.
pub fn draw_detections(
    image: &RgbImage,
    dets: &Detections,
    names: &[String],
    min_score: f32,
    path: &Path,
) -> Result<()> {
    let font = ensure_font();
    let mut buf = image.to_rgb8();
    {
        let root = BitMapBackend::with_buffer(&mut buf, (image.width as u32, image.height as u32)).into_drawing_area();
        for ((b, &s), &l) in dets.boxes.iter().zip(&dets.scores).zip(&dets.labels) {
            if s < min_score {
                continue;
            }
            let colour = PALETTE[l.rem_euclid(PALETTE.len() as i32) as usize];
            let (x1, y1, x2, y2) = (b[0] as i32, b[1] as i32, b[2] as i32, b[3] as i32);
            root.draw(&Rectangle::new([(x1, y1), (x2, y2)], colour.stroke_width(2))).map_err(plot_error)?;
            if font {
                let name = names.get(l as usize).cloned().unwrap_or_else(|| l.to_string());
                let text = format!("{name} {s:.2}");
                root.draw(&Text::new(text, (x1 + 2, y1 + 2), ("sans-serif", 11).into_font().color(&colour)))
                    .map_err(plot_error)?;
            }
        }
        root.present().map_err(plot_error)?;
    }
    let img = image::RgbImage::from_raw(image.width as u32, image.height as u32, buf)
        .ok_or_else(|| plot_error("buffer size"))?;
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageOutputFormat::Png).map_err(plot_error)?;
    crate::train::write_atomic(path, &bytes)
}

/// One run of the ablation: its name, gamma, AP and loss curve.
#[derive(Clone, Debug)]
pub struct AblationRun {
    /// Label (for example `gamma=2 alpha=0.25`).
    pub name: String,
    /// Gamma.
    pub gamma: f64,
    /// Whether the classifier started at the prior.
    pub prior_init: bool,
    /// Held-out AP (IoU 0.50:0.95), the mean over seeds.
    pub ap: f64,
    /// Held-out AP50, the mean over seeds.
    pub ap50: f64,
    /// Held-out AP of each seed.
    pub ap_per_seed: Vec<f64>,
    /// Total loss per iteration (the first seed).
    pub losses: Vec<f64>,
}

/// Writes the ablation figure: AP against gamma (left) and the loss curves (right).
///
/// # Errors
/// [`RetinaError::Data`] when drawing fails.
pub fn plot_ablation(runs: &[AblationRun], path: &Path) -> Result<()> {
    let font = ensure_font();
    let tmp = path.with_extension("tmp.png");
    {
        let root = BitMapBackend::new(&tmp, (1200, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let (left, right) = root.split_horizontally(560);
        let with_prior: Vec<&AblationRun> = runs.iter().filter(|r| r.prior_init).collect();
        let max_ap = runs.iter().map(|r| r.ap50).fold(0.05, f64::max) * 1.1;
        let max_gamma = with_prior.iter().map(|r| r.gamma).fold(1.0, f64::max) + 0.5;
        let mut chart = ChartBuilder::on(&left);
        chart.margin(20).x_label_area_size(if font { 35 } else { 0 }).y_label_area_size(if font { 45 } else { 0 });
        if font {
            chart.caption("held-out AP against gamma (prior init)", ("sans-serif", 18));
        }
        let mut chart = chart.build_cartesian_2d(-0.25..max_gamma, 0.0..max_ap).map_err(plot_error)?;
        if font {
            chart.configure_mesh().x_desc("gamma").y_desc("AP").draw().map_err(plot_error)?;
        }
        for (series, colour, name) in [(0, BLUE, "AP"), (1, RED, "AP50")] {
            let pts: Vec<(f64, f64)> =
                with_prior.iter().map(|r| (r.gamma, if series == 0 { r.ap } else { r.ap50 })).collect();
            let drawn = chart.draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2))).map_err(plot_error)?;
            if font {
                drawn.label(name).legend(move |(x, y)| PathElement::new([(x, y), (x + 15, y)], colour));
            }
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, colour.filled()))).map_err(plot_error)?;
        }
        // Each seed's AP as a hollow circle when there are several (the line is their mean).
        let seeds: Vec<(f64, f64)> = with_prior
            .iter()
            .filter(|r| r.ap_per_seed.len() > 1)
            .flat_map(|r| r.ap_per_seed.iter().map(|&ap| (r.gamma, ap)))
            .collect();
        chart.draw_series(seeds.iter().map(|&p| Circle::new(p, 3, BLUE.stroke_width(1)))).map_err(plot_error)?;
        if font {
            chart.configure_series_labels().border_style(BLACK).draw().map_err(plot_error)?;
        }
        let iters = runs.iter().map(|r| r.losses.len()).max().unwrap_or(1).max(2);
        let max_loss = runs.iter().flat_map(|r| r.losses.iter().copied()).filter(|v| v.is_finite()).fold(0.1, f64::max);
        let mut chart = ChartBuilder::on(&right);
        chart.margin(20).x_label_area_size(if font { 35 } else { 0 }).y_label_area_size(if font { 45 } else { 0 });
        if font {
            chart.caption("training loss (20-iteration mean)", ("sans-serif", 18));
        }
        let mut chart = chart.build_cartesian_2d(0..iters, 0.0..max_loss.min(5.0)).map_err(plot_error)?;
        if font {
            chart.configure_mesh().x_desc("iteration").y_desc("loss").draw().map_err(plot_error)?;
        }
        for (i, r) in runs.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            let smoothed: Vec<(usize, f64)> = (0..r.losses.len())
                .step_by(5)
                .map(|k| {
                    let w = &r.losses[k.saturating_sub(19)..=k];
                    (k, (w.iter().sum::<f64>() / w.len() as f64).min(5.0))
                })
                .collect();
            let drawn = chart.draw_series(LineSeries::new(smoothed, colour.stroke_width(2))).map_err(plot_error)?;
            if font {
                drawn.label(r.name.clone()).legend(move |(x, y)| PathElement::new([(x, y), (x + 15, y)], colour));
            }
        }
        if font {
            chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw().map_err(plot_error)?;
        }
        root.present().map_err(plot_error)?;
    }
    std::fs::rename(&tmp, path).map_err(|e| crate::error::io_error(path, e))
}
