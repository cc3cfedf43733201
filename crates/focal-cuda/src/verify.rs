//! Checking kernel outputs against `focal_core::reference`, the float64 oracle.
//!
//! Used by the emulation tests, the GPU tests and `cargo xtask check-kernels`, so the random
//! cases, the reference computation and the tolerances live in this one place. A mismatch names
//! the index, the reference, the value and the tolerance `|a - r| <= abs + rel * |r|`.

use crate::device::FocalCuda;
use crate::plan::{Dims, Dtype, Normalization, Objective, TargetKind, Weights};
use focal_core::labels::{BACKGROUND, IGNORE};
use focal_core::reference::{self, ReferenceTarget};
use focal_core::{Element, Reduction};

/// The one helper every GPU test and tool starts from: device 0, or `Ok(None)` after printing
/// `skipped: no CUDA driver (...)`. With `FOCAL_REQUIRE_GPU=1` a missing GPU is the `Err`
/// instead, so a machine that should have one cannot pass by skipping.
///
/// # Errors
/// Why there is no GPU, only when `FOCAL_REQUIRE_GPU=1`.
pub fn gpu_or_skip() -> crate::Result<Option<FocalCuda>> {
    match FocalCuda::on_device(0) {
        Ok(f) => Ok(Some(f)),
        Err(e) if std::env::var("FOCAL_REQUIRE_GPU").as_deref() == Ok("1") => Err(e),
        Err(e) => {
            println!("skipped: no CUDA driver ({e})");
            Ok(None)
        }
    }
}

/// Accepted error `|a - r| <= abs + rel * |r|`, with `abs = abs_floor + abs_unit * unit` where
/// `unit` is the gradient of one unit of loss (upstream times the largest normaliser scale).
///
/// Why these numbers: the f32 math takes exp, log1p and a power; `exp(-gamma * softplus)` of an
/// argument up to 88 in magnitude carries up to 88 * 2^-24 ~ 5e-6 relative error, and a loss or
/// gradient element is a product of three or four such factors, hence `rel = 2e-5` for f32.
/// Soft targets make the two gradient terms cancel where p ~ t, so the absolute part is
/// `abs_unit = 1e-6` of a unit gradient (terms are O(1) units there). Half outputs add the
/// rounding of the type (unit roundoff 2^-11 for f16, 2^-8 for bf16) and, for f16, its
/// subnormal spacing 2^-24 as an absolute floor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    /// Relative part.
    pub rel: f64,
    /// Absolute part, in units of the gradient of one unit of loss.
    pub abs_unit: f64,
    /// Absolute part independent of scale (underflow of the output type).
    pub abs_floor: f64,
    /// The largest finite value of the output type: a reference beyond it must come out as
    /// that value or the infinity of its sign (round to nearest overflows there).
    pub max_finite: f64,
}

impl Tolerance {
    /// For f32 outputs.
    pub const F32: Tolerance = Tolerance { rel: 2e-5, abs_unit: 1e-6, abs_floor: 1e-37, max_finite: f32::MAX as f64 };
    /// For f16 outputs: f32's, plus the rounding to f16 and its subnormal spacing.
    pub const F16: Tolerance =
        Tolerance { rel: 2e-5 + 4.8828125e-4, abs_unit: 1e-6, abs_floor: 5.960464477539063e-8, max_finite: 65504.0 };
    /// For bf16 outputs: f32's plus the rounding to bf16.
    pub const BF16: Tolerance =
        Tolerance { rel: 2e-5 + 3.90625e-3, abs_unit: 1e-6, abs_floor: 1e-37, max_finite: 3.3895313892515355e38 };
    /// For the reduced loss (f64, summed in f64 from f32 elements of one sign).
    pub const LOSS: Tolerance = Tolerance::F32;

    /// The tolerance of values written in `dtype`.
    pub fn for_dtype(dtype: Dtype) -> Tolerance {
        match dtype {
            Dtype::F32 => Tolerance::F32,
            Dtype::F16 => Tolerance::F16,
            Dtype::Bf16 => Tolerance::BF16,
        }
    }

    /// The bound for reference `r` at gradient unit `unit`.
    pub fn bound(&self, r: f64, unit: f64) -> f64 {
        self.abs_floor + self.abs_unit * unit + self.rel * r.abs()
    }
}

/// The first mismatch of a comparison, and how many there were.
#[derive(Clone, Debug, PartialEq)]
pub struct Mismatch {
    /// What was compared (`"grad"`, `"loss"`...).
    pub what: String,
    /// Flat index of the first mismatch.
    pub index: usize,
    /// The reference value.
    pub reference: f64,
    /// The value computed.
    pub value: f64,
    /// The bound `abs + rel * |r|` it exceeded.
    pub bound: f64,
    /// The tolerance used.
    pub tolerance: Tolerance,
    /// Mismatches in total.
    pub count: usize,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}[{}]: reference {:e}, value {:e}, |a - r| = {:e} > {:e} (abs {:e} + rel {:e} * |r|); {} mismatches",
            self.what,
            self.index,
            self.reference,
            self.value,
            (self.value - self.reference).abs(),
            self.bound,
            self.bound - self.tolerance.rel * self.reference.abs(),
            self.tolerance.rel,
            self.count
        )
    }
}

/// Compares every element; NaN must meet NaN.
///
/// # Errors
/// The first [`Mismatch`], with the total count.
pub fn compare(what: &str, values: &[f64], reference: &[f64], tolerance: Tolerance, unit: f64) -> Result<(), Mismatch> {
    let mut first: Option<Mismatch> = None;
    let mut count = 0;
    if values.len() != reference.len() {
        return Err(Mismatch {
            what: format!("{what} (length {} vs {})", values.len(), reference.len()),
            index: values.len().min(reference.len()),
            reference: f64::NAN,
            value: f64::NAN,
            bound: 0.0,
            tolerance,
            count: 1,
        });
    }
    for (index, (&value, &r)) in values.iter().zip(reference).enumerate() {
        let bound = tolerance.bound(r, unit);
        let ok = if r.is_nan() || value.is_nan() {
            r.is_nan() && value.is_nan()
        } else if r.abs() > tolerance.max_finite {
            // Beyond the output type's range: rounding gives its largest value or infinity.
            (value.is_infinite() || value.abs() == tolerance.max_finite) && value.signum() == r.signum()
        } else {
            (value - r).abs() <= bound
        };
        if !ok {
            count += 1;
            first.get_or_insert(Mismatch {
                what: what.to_string(),
                index,
                reference: r,
                value,
                bound,
                tolerance,
                count: 0,
            });
        }
    }
    match first {
        None => Ok(()),
        Some(mut m) => {
            m.count = count;
            Err(m)
        }
    }
}

/// The targets of a case, on the host.
#[derive(Clone, Debug, PartialEq)]
pub enum CaseTarget {
    /// One label per row.
    Sparse(Vec<i32>),
    /// Targets of the logits' shape, with optional weights.
    Dense {
        /// Targets in [0, 1].
        targets: Vec<f32>,
        /// Weights: per anchor or per element.
        weights: Option<(Weights, Vec<f32>)>,
    },
}

impl CaseTarget {
    /// The kind of target.
    pub fn kind(&self) -> TargetKind {
        match self {
            CaseTarget::Sparse(_) => TargetKind::Sparse,
            CaseTarget::Dense { weights, .. } => TargetKind::Dense(weights.as_ref().map_or(Weights::None, |w| w.0)),
        }
    }
}

/// A deterministic generator (SplitMix64), so cases depend on the seed alone.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-300);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// Random logits, mostly N(0, 3) with saturated ones mixed in (|x| in 10..30, 80..120, 1e4,
/// and exact zeros), rounded to `T` and widened back, so the reference sees exactly the input.
pub fn random_logits<T: Element>(rng: &mut Rng, n: usize) -> Vec<T> {
    (0..n)
        .map(|_| {
            let u = rng.uniform();
            let sign = if rng.uniform() < 0.5 { -1.0 } else { 1.0 };
            let x = if u < 0.80 {
                3.0 * rng.normal()
            } else if u < 0.90 {
                sign * (10.0 + 20.0 * rng.uniform())
            } else if u < 0.96 {
                sign * (80.0 + 40.0 * rng.uniform())
            } else if u < 0.98 {
                sign * 1e4
            } else {
                0.0
            };
            T::from_f64(x)
        })
        .collect()
}

/// The largest |logit| of the softmax cases: `focal_core::reference::softmax_focal_row` (as of
/// this writing) divides by `exp(x_y - max)`, which underflows to 0 in f64 when a row's logits
/// differ by more than ~745, and then returns NaN for a finite row. Until the oracle handles
/// that, softmax cases keep logits within +-300 (differences up to 600).
pub const SOFTMAX_LOGIT_BOUND: f64 = 300.0;

/// [`random_logits`] for `objective`: clamped to [`SOFTMAX_LOGIT_BOUND`] for the softmax loss.
pub fn random_logits_for<T: Element>(rng: &mut Rng, n: usize, objective: &Objective) -> Vec<T> {
    let logits = random_logits::<T>(rng, n);
    match objective {
        Objective::SoftmaxFocal(_) => logits
            .into_iter()
            .map(|v| T::from_f64(v.to_f64().clamp(-SOFTMAX_LOGIT_BOUND, SOFTMAX_LOGIT_BOUND)))
            .collect(),
        _ => logits,
    }
}

/// Random sparse labels: 5% ignored, 70% background, the rest a uniform class. For the softmax
/// loss (`softmax`), 10% ignored and the rest a class.
pub fn random_labels(rng: &mut Rng, rows: usize, classes: usize, softmax: bool) -> Vec<i32> {
    (0..rows)
        .map(|_| {
            let u = rng.uniform();
            if classes == 0 {
                IGNORE
            } else if softmax {
                if u < 0.1 { IGNORE } else { rng.below(classes) as i32 }
            } else if u < 0.05 {
                IGNORE
            } else if u < 0.75 {
                BACKGROUND
            } else {
                rng.below(classes) as i32
            }
        })
        .collect()
}

/// Random dense targets: 60% zero, 10% one, 30% uniform in (0, 1); weights uniform in [0, 2).
pub fn random_dense(rng: &mut Rng, dims: Dims, weights: Weights) -> CaseTarget {
    let targets = (0..dims.numel())
        .map(|_| {
            let u = rng.uniform();
            if u < 0.6 {
                0.0
            } else if u < 0.7 {
                1.0
            } else {
                rng.uniform() as f32
            }
        })
        .collect();
    let weight_len = match weights {
        Weights::None => 0,
        Weights::PerAnchor => dims.rows(),
        Weights::PerElement => dims.numel(),
    };
    let w: Vec<f32> = (0..weight_len).map(|_| (2.0 * rng.uniform()) as f32).collect();
    CaseTarget::Dense { targets, weights: (weights != Weights::None).then_some((weights, w)) }
}

/// One image's (scaled loss, scaled gradient, elementwise losses).
type ImageResult = focal_core::Result<(f64, Vec<f64>, Vec<f64>)>;

/// The reference result of a case: reduced loss, and `upstream * d loss / d logits`.
#[derive(Clone, Debug, PartialEq)]
pub struct Expected {
    /// The reduced loss.
    pub loss: f64,
    /// The gradient, row-major like the logits.
    pub grad: Vec<f64>,
    /// Weighted elementwise losses before normalisation (softmax: the row's loss in the
    /// label's column).
    pub elementwise: Vec<f64>,
    /// The gradient of one unit of loss: `upstream` times the largest normaliser scale.
    pub unit: f64,
}

fn foreground(labels: &[i32], classes: usize) -> usize {
    labels.iter().filter(|&&l| l >= 0 && (l as usize) < classes).count()
}

/// The factor on each image's loss sum, as the kernels apply it.
pub fn image_scales(objective: &Objective, dims: Dims, target: &CaseTarget, normalization: Normalization) -> Vec<f64> {
    let labels = match target {
        CaseTarget::Sparse(l) => Some(l.as_slice()),
        CaseTarget::Dense { .. } => None,
    };
    let softmax = matches!(objective, Objective::SoftmaxFocal(_));
    let batch_fg = || foreground(labels.unwrap_or(&[]), dims.classes).max(1) as f64;
    let per_image = |b: usize| {
        let l = labels.unwrap_or(&[]);
        let rows = &l[(b * dims.anchors).min(l.len())..((b + 1) * dims.anchors).min(l.len())];
        foreground(rows, dims.classes).max(1) as f64 * dims.images as f64
    };
    (0..dims.images)
        .map(|b| match normalization {
            Normalization::Sum => 1.0,
            Normalization::Mean if softmax => 1.0 / batch_fg(),
            Normalization::Mean => 1.0 / dims.numel().max(1) as f64,
            Normalization::Normalizer(n) => 1.0 / n,
            Normalization::ForegroundPerImage => 1.0 / per_image(b),
            Normalization::ForegroundPerBatch => 1.0 / batch_fg(),
        })
        .collect()
}

/// Computes the reference with `focal_core::reference` (float64) on up to `threads` threads,
/// in pieces of rows within an image: each piece's elementwise losses and gradient come from
/// the oracle unscaled (`Reduction::Sum`, upstream 1), then its image's normaliser scale and
/// the upstream gradient are applied in f64, as the kernels apply them in f32.
///
/// # Errors
/// A parameter the oracle rejects.
pub fn reference<T: Element>(
    objective: &Objective,
    dims: Dims,
    logits: &[T],
    target: &CaseTarget,
    normalization: Normalization,
    upstream: f64,
    threads: usize,
) -> focal_core::Result<Expected> {
    let scales = image_scales(objective, dims, target, normalization);
    let threads = threads.max(1);
    // Pieces (image, first row, end row), rows counted over the whole batch.
    let splits = (2 * threads).div_ceil(dims.images.max(1)).max(1);
    let piece_rows = dims.anchors.div_ceil(splits).max(1);
    let mut pieces = Vec::new();
    for b in 0..dims.images {
        let mut lo = 0;
        while lo < dims.anchors {
            let hi = (lo + piece_rows).min(dims.anchors);
            pieces.push((b, b * dims.anchors + lo, b * dims.anchors + hi));
            lo = hi;
        }
    }
    let run_piece = |(b, row_lo, row_hi): (usize, usize, usize)| -> ImageResult {
        let span = row_lo * dims.classes..row_hi * dims.classes;
        let rows = row_lo..row_hi;
        let x: Vec<f64> = logits[span.clone()].iter().map(|v| v.to_f64()).collect();
        let c = dims.classes;
        let (targets64, weights64);
        let out = match (objective, target) {
            (Objective::SigmoidFocal(p), CaseTarget::Sparse(l)) => {
                reference::sigmoid_focal(&x, c, ReferenceTarget::Sparse(&l[rows]), p, Reduction::Sum, 1.0)?
            }
            (Objective::SoftmaxFocal(p), CaseTarget::Sparse(l)) => {
                reference::softmax_focal(&x, c, &l[rows], p, Reduction::Sum, 1.0)?
            }
            (_, CaseTarget::Dense { targets, weights }) => {
                targets64 = targets[span.clone()].iter().map(|&t| f64::from(t)).collect::<Vec<_>>();
                weights64 = weights.as_ref().map(|(kind, w)| {
                    let range = match kind {
                        Weights::PerAnchor => rows.clone(),
                        _ => span.clone(),
                    };
                    w[range].iter().map(|&v| f64::from(v)).collect::<Vec<_>>()
                });
                let w = weights64.as_deref();
                match objective {
                    Objective::SigmoidFocal(p) => reference::sigmoid_focal(
                        &x,
                        c,
                        ReferenceTarget::Dense { targets: &targets64, weights: w },
                        p,
                        Reduction::Sum,
                        1.0,
                    )?,
                    Objective::Varifocal(p) => reference::varifocal(&x, c, &targets64, w, p, Reduction::Sum, 1.0)?,
                    Objective::QualityFocal { beta } => {
                        reference::quality_focal(&x, c, &targets64, w, *beta, Reduction::Sum, 1.0)?
                    }
                    Objective::SoftmaxFocal(_) => {
                        return Err(focal_core::FocalError::Unsupported("softmax focal loss with dense targets"));
                    }
                }
            }
            (_, CaseTarget::Sparse(_)) => {
                return Err(focal_core::FocalError::Unsupported("varifocal / quality focal loss with sparse labels"));
            }
        };
        let s = scales[b];
        let grad = out.grad.iter().map(|g| g * s * upstream).collect();
        Ok((out.loss * s, grad, out.elementwise))
    };
    let mut results: Vec<Option<ImageResult>> = vec![None; pieces.len()];
    let per_thread = pieces.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        for (chunk, work) in results.chunks_mut(per_thread).zip(pieces.chunks(per_thread)) {
            let run_piece = &run_piece;
            scope.spawn(move || {
                for (slot, &piece) in chunk.iter_mut().zip(work) {
                    *slot = Some(run_piece(piece));
                }
            });
        }
    });
    let mut loss_terms = Vec::with_capacity(dims.images);
    let mut grad = Vec::with_capacity(dims.numel());
    let mut elementwise = Vec::with_capacity(dims.numel());
    for r in results.into_iter().flatten() {
        let (l, g, e) = r?;
        loss_terms.push(l);
        grad.extend(g);
        elementwise.extend(e);
    }
    Ok(Expected {
        loss: reference::compensated_sum(loss_terms),
        grad,
        elementwise,
        unit: upstream.abs() * scales.iter().copied().fold(0.0, f64::max),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatch_names_index_reference_value_and_tolerance() {
        let err = compare("grad", &[1.0, 2.5, 3.0], &[1.0, 2.0, 3.0], Tolerance::F32, 1.0).unwrap_err();
        assert_eq!((err.index, err.reference, err.value, err.count), (1, 2.0, 2.5, 1));
        let text = err.to_string();
        assert!(text.contains("grad[1]") && text.contains("reference 2e0") && text.contains("value 2.5e0"), "{text}");
        assert!(text.contains("rel 2e-5"), "{text}");
    }

    #[test]
    fn nan_must_meet_nan() {
        assert!(compare("g", &[f64::NAN], &[f64::NAN], Tolerance::F32, 1.0).is_ok());
        assert!(compare("g", &[0.0], &[f64::NAN], Tolerance::F32, 1.0).is_err());
        assert!(compare("g", &[f64::NAN], &[0.0], Tolerance::F32, 1.0).is_err());
    }

    #[test]
    fn beyond_the_output_range_rounds_to_max_or_infinity() {
        let t = Tolerance::F16;
        assert!(compare("g", &[f64::INFINITY], &[3e5], t, 1.0).is_ok());
        assert!(compare("g", &[65504.0], &[65510.0], t, 1.0).is_ok());
        assert!(compare("g", &[f64::NEG_INFINITY], &[3e5], t, 1.0).is_err());
        assert!(compare("g", &[f64::INFINITY], &[6e4], t, 1.0).is_err());
    }
}
