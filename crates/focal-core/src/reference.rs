//! The float64 oracle: readable scalar formulas for every loss, forward and gradient.
//!
//! Written for clarity, not speed. Every fast path in this workspace (SIMD here, CUDA in
//! `focal-cuda`) is tested against these functions. All math is in `f64` and in log space:
//!
//! * `softplus(z) = max(z, 0) + log1p(exp(-|z|))`, finite for every finite z;
//! * the binary cross-entropy with a (possibly soft) target t is written
//!   `t * softplus(-x) + (1 - t) * softplus(x)`, which equals the textbook
//!   `softplus(x) - t x` without its cancellation when `x` is large;
//! * `p = sigmoid(x)` and `1 - p = sigmoid(-x)` are computed separately, never as `1 - p`.
//!
//! **Sigmoid focal loss** (Lin et al. 2017, torchvision's `sigmoid_focal_loss`), per element with
//! target t in [0, 1]:
//! `w = 1 - p_t = t (1 - p) + (1 - t) p`, `L = alpha_t * w^gamma * CE`,
//! `alpha_t = alpha t + (1 - alpha)(1 - t)`. Its derivative is
//! `dL/dx = alpha_t [gamma w^gamma (p (1 - p) / w) (1 - 2t) CE + w^gamma (p - t)]`.
//! The ratio `p (1 - p) / w` is at most 1 (w is a convex combination of p and 1 - p), so the
//! gradient is finite for every gamma >= 0, including 0 < gamma < 1 where the textbook
//! `w^(gamma - 1)` overflows at saturated probabilities; where `w = 0` the term is 0, its limit.
//!
//! **Softmax focal loss**, per row with label y: `L = -a_y (1 - p_y)^gamma log p_y` and
//! `dL/dx_j = G (delta_jy - p_j)` with `G = a_y q^gamma (gamma p_y (log p_y / q) - 1)`,
//! `q = 1 - p_y = -expm1(log p_y)`; `log p_y / q -> -1` as `q -> 0`.
//!
//! **Varifocal loss** (Zhang et al. 2021, as mmdetection defines it), target t = IoU score:
//! `t > 0`: `L = t * BCE(x, t)` (or `1 * BCE` without IoU weighting); `t = 0`:
//! `L = alpha p^gamma BCE(x, 0)`. The focal weight is not detached (mmdetection's autograd
//! differentiates through it, and so do we).
//!
//! **Quality focal loss** (Li et al. 2020), soft target y: `L = |p - y|^beta BCE(x, y)`, with
//! `dL/dx = beta |p - y|^(beta-1) sign(p - y) p (1 - p) BCE + |p - y|^beta (p - y)`; the first
//! term is 0 where `p = y` (for beta < 1 the true derivative diverges there).

use crate::error::Result;
use crate::params::{Alpha, FocalParams, Reduction, check_upstream};

/// `log(1 + exp(z))` without overflow or cancellation.
pub fn softplus(z: f64) -> f64 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

/// `(sigmoid(x), 1 - sigmoid(x))`, each computed without cancellation.
pub fn sigmoid_pair(x: f64) -> (f64, f64) {
    let e = (-x.abs()).exp();
    let (big, small) = (1.0 / (1.0 + e), e / (1.0 + e));
    if x >= 0.0 { (big, small) } else { (small, big) }
}

/// Binary cross-entropy with logits and a soft target t in [0, 1]. A term whose weight is 0
/// is left out, so hard targets give the limits at infinite logits (not `0 * inf`).
pub fn bce_with_logits(x: f64, t: f64) -> f64 {
    let positive = if t != 0.0 { t * softplus(-x) } else { 0.0 };
    let negative = if t != 1.0 { (1.0 - t) * softplus(x) } else { 0.0 };
    positive + negative
}

/// `(loss, dloss/dx)` of the sigmoid focal loss for one element.
///
/// `alpha_pos` weighs the positive part (target 1) and `alpha_neg` the negative part; pass
/// `(1, 1)` for no alpha weighting.
pub fn sigmoid_focal_element(x: f64, t: f64, alpha_pos: f64, alpha_neg: f64, gamma: f64) -> (f64, f64) {
    if x.is_nan() {
        return (f64::NAN, f64::NAN);
    }
    let (p, pm) = sigmoid_pair(x);
    let ce = bce_with_logits(x, t);
    let w = t * pm + (1.0 - t) * p;
    let wg = w.powf(gamma);
    let alpha_t = alpha_pos * t + alpha_neg * (1.0 - t);
    let dce = (1.0 - t) * p - t * pm;
    let ratio = if w > 0.0 { p * pm / w } else { 0.0 };
    let dwg = gamma * wg * ratio * (1.0 - 2.0 * t);
    // At infinite logits dwg is 0 and CE may be infinite: the product's limit is 0.
    let dwg_ce = if dwg == 0.0 { 0.0 } else { dwg * ce };
    (alpha_t * wg * ce, alpha_t * (dwg_ce + wg * dce))
}

/// `(loss, dloss/dx)` of the varifocal loss for one element.
pub fn varifocal_element(x: f64, t: f64, alpha: f64, gamma: f64, iou_weighted: bool) -> (f64, f64) {
    if x.is_nan() {
        return (f64::NAN, f64::NAN);
    }
    let (p, pm) = sigmoid_pair(x);
    let ce = bce_with_logits(x, t);
    if t > 0.0 {
        let w = if iou_weighted { t } else { 1.0 };
        (w * ce, w * ((1.0 - t) * p - t * pm))
    } else {
        // t == 0: BCE = softplus(x), dBCE/dx = p, d(p^gamma)/dx = gamma p^gamma (1 - p).
        let pg = p.powf(gamma);
        let pm_ce = if pm == 0.0 { 0.0 } else { pm * ce };
        (alpha * pg * ce, alpha * (gamma * pg * pm_ce + pg * p))
    }
}

/// `(loss, dloss/dx)` of the quality focal loss for one element.
pub fn quality_focal_element(x: f64, y: f64, beta: f64) -> (f64, f64) {
    if x.is_nan() {
        return (f64::NAN, f64::NAN);
    }
    let (p, pm) = sigmoid_pair(x);
    let ce = bce_with_logits(x, y);
    // p - y = (1 - y) p - y (1 - p): exact at y = 0 and y = 1.
    let d = (1.0 - y) * p - y * pm;
    let db = d.abs().powf(beta);
    let ppm = p * pm;
    let first = if d != 0.0 && ppm != 0.0 { beta * db / d * ppm * ce } else { 0.0 };
    (db * ce, first + db * d)
}

/// `log p_y` from `d_y = x_y - max`, `e_y = exp(d_y)` and `others`, the sum of `exp(x_j - max)`
/// over the other classes: `-log1p(others / e_y)` where p_y > 1/2 (exact as p_y -> 1), and
/// `d_y - log(e_y + others)` elsewhere (finite even where `e_y` underflows).
pub fn softmax_log_p(d_y: f64, e_y: f64, others: f64) -> f64 {
    if others < e_y { -(others / e_y).ln_1p() } else { d_y - (e_y + others).ln() }
}

/// `(loss, gradient)` of the softmax focal loss for one row with label `y` (a class index);
/// `grad` receives `dL/dx_j` for every j.
pub fn softmax_focal_row(x: &[f64], y: usize, alpha: f64, gamma: f64, grad: &mut [f64]) -> f64 {
    if x.iter().any(|v| v.is_nan()) {
        grad.fill(f64::NAN);
        return f64::NAN;
    }
    let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    // p_y = e_y / (e_y + others). Summing the other classes apart keeps q = 1 - p_y and
    // log p_y exact when p_y is close to 1.
    let e_y = (x[y] - max).exp();
    let others: f64 = x.iter().enumerate().filter(|&(j, _)| j != y).map(|(_, &v)| (v - max).exp()).sum();
    let sum = e_y + others;
    let logp = softmax_log_p(x[y] - max, e_y, others);
    let py = e_y / sum;
    let q = others / sum;
    let qg = q.powf(gamma);
    let r = if q > 0.0 { logp / q } else { -1.0 };
    let g = alpha * qg * (gamma * py * r - 1.0);
    for (j, (gj, &xj)) in grad.iter_mut().zip(x).enumerate() {
        *gj = if j == y { g * q } else { -g * (xj - max).exp() / sum };
    }
    -alpha * qg * logp
}

/// What the reference computes for a whole tensor: the reduced loss, the elementwise losses
/// (before reduction) and the gradient of the reduced loss times the upstream gradient.
#[derive(Clone, Debug, PartialEq)]
pub struct ReferenceOutput {
    /// The reduced loss.
    pub loss: f64,
    /// Elementwise losses, weights applied, before reduction.
    pub elementwise: Vec<f64>,
    /// `upstream * d(loss)/d(logits)`.
    pub grad: Vec<f64>,
}

/// Targets for the reference, in `f64`.
#[derive(Clone, Copy, Debug)]
pub enum ReferenceTarget<'a> {
    /// One label per row: class, -1 background, -2 ignore.
    Sparse(&'a [i32]),
    /// One target in [0, 1] per element, with optional weights: `weights.len()` is the number of
    /// rows (per anchor) or of elements.
    Dense {
        /// Targets, same shape as the logits.
        targets: &'a [f64],
        /// Optional per-anchor or per-element weights.
        weights: Option<&'a [f64]>,
    },
}

/// Sum with Neumaier compensation, so the oracle's sums are exact to a few ulp.
pub fn compensated_sum(values: impl IntoIterator<Item = f64>) -> f64 {
    let (mut sum, mut comp) = (0.0f64, 0.0f64);
    for v in values {
        let t = sum + v;
        if sum.abs() >= v.abs() {
            comp += (sum - t) + v;
        } else {
            comp += (v - t) + sum;
        }
        sum = t;
    }
    sum + comp
}

fn finish(elementwise: Vec<f64>, mut grad: Vec<f64>, reduction: Reduction, upstream: f64) -> Result<ReferenceOutput> {
    check_upstream(upstream)?;
    let scale = reduction.scale(elementwise.len())?;
    let loss = compensated_sum(elementwise.iter().copied()) * scale;
    for g in &mut grad {
        *g *= scale * upstream;
    }
    Ok(ReferenceOutput { loss, elementwise, grad })
}

fn weight_at(weights: Option<&[f64]>, rows: usize, row: usize, index: usize) -> f64 {
    match weights {
        None => 1.0,
        Some(w) if w.len() == rows => w[row],
        Some(w) => w[index],
    }
}

/// Generic driver: applies `element(x, t, class) -> (loss, grad)` over `[rows, classes]`.
fn elementwise_reference(
    logits: &[f64],
    classes: usize,
    target: ReferenceTarget<'_>,
    element: impl Fn(f64, f64, usize) -> (f64, f64),
) -> (Vec<f64>, Vec<f64>) {
    let rows = logits.len().checked_div(classes).unwrap_or(0);
    let mut loss = vec![0.0; logits.len()];
    let mut grad = vec![0.0; logits.len()];
    for row in 0..rows {
        for c in 0..classes {
            let i = row * classes + c;
            let (t, w) = match target {
                ReferenceTarget::Sparse(labels) => {
                    if labels[row] == crate::labels::IGNORE {
                        continue;
                    }
                    (if labels[row] == c as i32 { 1.0 } else { 0.0 }, 1.0)
                }
                ReferenceTarget::Dense { targets, weights } => (targets[i], weight_at(weights, rows, row, i)),
            };
            let (l, g) = element(logits[i], t, c);
            loss[i] = w * l;
            grad[i] = w * g;
        }
    }
    (loss, grad)
}

/// Sigmoid focal loss over `[rows, classes]` logits. Inputs are assumed valid (the fast paths
/// validate); this is the oracle, not an entry point.
pub fn sigmoid_focal(
    logits: &[f64],
    classes: usize,
    target: ReferenceTarget<'_>,
    params: &FocalParams,
    reduction: Reduction,
    upstream: f64,
) -> Result<ReferenceOutput> {
    let gamma = params.gamma();
    let (loss, grad) = elementwise_reference(logits, classes, target, |x, t, c| {
        let (ap, an) = params.alpha().pos_neg(c);
        sigmoid_focal_element(x, t, ap, an, gamma)
    });
    finish(loss, grad, reduction, upstream)
}

/// Varifocal loss over `[rows, classes]` logits with IoU-score targets.
pub fn varifocal(
    logits: &[f64],
    classes: usize,
    targets: &[f64],
    weights: Option<&[f64]>,
    params: &crate::params::VarifocalParams,
    reduction: Reduction,
    upstream: f64,
) -> Result<ReferenceOutput> {
    let (loss, grad) =
        elementwise_reference(logits, classes, ReferenceTarget::Dense { targets, weights }, |x, t, _| {
            varifocal_element(x, t, params.alpha, params.gamma, params.iou_weighted)
        });
    finish(loss, grad, reduction, upstream)
}

/// Quality focal loss over `[rows, classes]` logits with soft targets.
pub fn quality_focal(
    logits: &[f64],
    classes: usize,
    targets: &[f64],
    weights: Option<&[f64]>,
    beta: f64,
    reduction: Reduction,
    upstream: f64,
) -> Result<ReferenceOutput> {
    let (loss, grad) =
        elementwise_reference(logits, classes, ReferenceTarget::Dense { targets, weights }, |x, y, _| {
            quality_focal_element(x, y, beta)
        });
    finish(loss, grad, reduction, upstream)
}

/// Softmax focal loss over `[rows, classes]` logits with one label per row (class or -2).
/// `elementwise` holds the row's loss in the label's column and zeros elsewhere.
pub fn softmax_focal(
    logits: &[f64],
    classes: usize,
    labels: &[i32],
    params: &FocalParams,
    reduction: Reduction,
    upstream: f64,
) -> Result<ReferenceOutput> {
    let mut loss = vec![0.0; logits.len()];
    let mut grad = vec![0.0; logits.len()];
    for (row, &label) in labels.iter().enumerate() {
        if label < 0 {
            continue;
        }
        let y = label as usize;
        let alpha = match params.alpha() {
            Alpha::None => 1.0,
            Alpha::Scalar(a) => *a,
            Alpha::PerClass(v) => v[y],
        };
        let span = row * classes..(row + 1) * classes;
        loss[row * classes + y] = softmax_focal_row(&logits[span.clone()], y, alpha, params.gamma(), &mut grad[span]);
    }
    // Reduction::Mean for the softmax loss averages over the rows that are not ignored, as
    // PyTorch's cross_entropy(ignore_index=...) does.
    let counted = labels.iter().filter(|&&l| l >= 0).count();
    let reduction = match reduction {
        Reduction::Mean => Reduction::Normalizer(counted.max(1) as f64),
        other => other,
    };
    finish(loss, grad, reduction, upstream)
}
