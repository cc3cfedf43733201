//! The `f32` kernels, written once for every SIMD level.
//!
//! Each kernel walks the rows of one chunk (a row is one anchor's `C` logits), computes the loss
//! and its gradient elementwise with the log-space formulas of [`crate::reference`], writes the
//! requested outputs and returns the chunk's loss sum in `f64`. Rows are processed in whole
//! vectors plus one masked tail, so any `C` works and no element is read twice.

use crate::labels::IGNORE;
use crate::simd::math::{exp, log, log1p_unit, mul0, pow_from_log};
use crate::simd::{ChunkKernel, F32v};

/// One chunk of rows: `x` holds `rows * classes` logits; the outputs, when present, have the
/// same length. `row0` is the global index of the first row (for labels, targets, weights).
pub(crate) struct Chunk<'a> {
    pub row0: usize,
    pub x: &'a [f32],
    pub loss: Option<&'a mut [f32]>,
    pub grad: Option<&'a mut [f32]>,
}

/// How `w^gamma` is computed: exactly for the common small integers, through `exp` otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Power {
    Zero,
    One,
    Two,
    General,
}

impl Power {
    pub(crate) fn of(gamma: f64) -> Power {
        if gamma == 0.0 {
            Power::Zero
        } else if gamma == 1.0 {
            Power::One
        } else if gamma == 2.0 {
            Power::Two
        } else {
            Power::General
        }
    }

    /// `w^gamma` from `w` and `log(w)` (the latter only evaluated for `General`).
    #[inline(always)]
    fn apply<V: F32v>(self, w: V, log_w: impl FnOnce() -> V, gamma: V) -> V {
        match self {
            Power::Zero => V::splat(1.0),
            Power::One => w,
            Power::Two => w.mul(w),
            Power::General => pow_from_log(log_w(), gamma),
        }
    }
}

/// Per-class alpha as vectors of (positive weight, negative weight), or one pair for all.
pub(crate) enum AlphaLanes {
    Uniform(f32, f32),
    PerClass { pos: Vec<f32>, neg: Vec<f32> },
}

impl AlphaLanes {
    pub(crate) fn new(alpha: &crate::Alpha, classes: usize) -> Self {
        match alpha {
            crate::Alpha::None => AlphaLanes::Uniform(1.0, 1.0),
            crate::Alpha::Scalar(a) => AlphaLanes::Uniform(*a as f32, (1.0 - *a) as f32),
            crate::Alpha::PerClass(v) => AlphaLanes::PerClass {
                pos: v.iter().take(classes).map(|&a| a as f32).collect(),
                neg: v.iter().take(classes).map(|&a| (1.0 - a) as f32).collect(),
            },
        }
    }

    /// Alpha vectors for classes `j..j + len`.
    #[inline(always)]
    fn lanes<V: F32v>(&self, j: usize, len: usize) -> (V, V) {
        match self {
            AlphaLanes::Uniform(p, n) => (V::splat(*p), V::splat(*n)),
            AlphaLanes::PerClass { pos, neg } => {
                if len == V::LANES {
                    (V::load(&pos[j..]), V::load(&neg[j..]))
                } else {
                    (
                        V::load_partial(&pos[j..j + len]),
                        V::load_partial(&neg[j..j + len]),
                    )
                }
            }
        }
    }
}

/// Quantities every sigmoid-based loss needs, from one `exp` and one `log1p`.
struct SigmoidParts<V> {
    /// sigmoid(x)
    p: V,
    /// 1 - sigmoid(x), computed directly.
    pm: V,
    /// softplus(x) = -log(1 - p)
    sp_pos: V,
    /// softplus(-x) = -log(p)
    sp_neg: V,
}

#[inline(always)]
fn sigmoid_parts<V: F32v>(x: V) -> SigmoidParts<V> {
    let zero = V::splat(0.0);
    let one = V::splat(1.0);
    let e = exp(x.abs().neg());
    let r = one.div(one.add(e));
    let er = e.mul(r);
    let nonneg = zero.le(x);
    let l = log1p_unit(e);
    SigmoidParts {
        p: V::select(nonneg, r, er),
        pm: V::select(nonneg, er, r),
        sp_pos: x.max(zero).add(l),
        sp_neg: x.neg().max(zero).add(l),
    }
}

/// Elementwise `(loss, dloss/dx)` for one vector of a dense-target loss (targets `t`, classes
/// starting at `j`).
pub(crate) trait DenseElement: Sync {
    fn eval<V: F32v>(&self, x: V, t: V, j: usize, len: usize) -> (V, V);
}

/// Sigmoid focal loss with soft targets.
pub(crate) struct SigmoidSoft {
    pub alpha: AlphaLanes,
    pub gamma: f32,
    pub power: Power,
}

impl DenseElement for SigmoidSoft {
    #[inline(always)]
    fn eval<V: F32v>(&self, x: V, t: V, j: usize, len: usize) -> (V, V) {
        let zero = V::splat(0.0);
        let one = V::splat(1.0);
        let gamma = V::splat(self.gamma);
        let s = sigmoid_parts(x);
        let omt = one.sub(t);
        let ce = t.mul_add(s.sp_neg, omt.mul(s.sp_pos));
        let w = t.mul_add(s.pm, omt.mul(s.p));
        // log(w) is exact for hard targets, where w is p or 1 - p.
        let wg = self.power.apply(
            w,
            || {
                V::select(
                    t.eq(zero),
                    s.sp_neg.neg(),
                    V::select(t.eq(one), s.sp_pos.neg(), log(w)),
                )
            },
            gamma,
        );
        let ratio = V::select(zero.lt(w), s.p.mul(s.pm).div(w), zero);
        let (a_pos, a_neg) = self.alpha.lanes::<V>(j, len);
        let at = a_pos.mul_add(t, a_neg.mul(omt));
        let dce = omt.mul(s.p).sub(t.mul(s.pm));
        let dwg = gamma.mul(wg).mul(ratio).mul(one.sub(t.add(t)));
        let loss = at.mul(wg).mul(ce);
        let grad = at.mul(mul0(dwg, ce).add(wg.mul(dce)));
        (loss, grad)
    }
}

/// Varifocal loss (mmdetection's definition).
pub(crate) struct Varifocal {
    pub alpha: f32,
    pub gamma: f32,
    pub power: Power,
    pub iou_weighted: bool,
}

impl DenseElement for Varifocal {
    #[inline(always)]
    fn eval<V: F32v>(&self, x: V, t: V, _j: usize, _len: usize) -> (V, V) {
        let zero = V::splat(0.0);
        let one = V::splat(1.0);
        let gamma = V::splat(self.gamma);
        let alpha = V::splat(self.alpha);
        let s = sigmoid_parts(x);
        let omt = one.sub(t);
        let ce = t.mul_add(s.sp_neg, omt.mul(s.sp_pos));
        let wpos = if self.iou_weighted { t } else { one };
        let loss_pos = wpos.mul(ce);
        let grad_pos = wpos.mul(omt.mul(s.p).sub(t.mul(s.pm)));
        let pg = self.power.apply(s.p, || s.sp_neg.neg(), gamma);
        let apg = alpha.mul(pg);
        let loss_neg = apg.mul(s.sp_pos);
        let grad_neg = apg.mul(gamma.mul(mul0(s.pm, s.sp_pos)).add(s.p));
        let pos = zero.lt(t);
        (
            V::select(pos, loss_pos, loss_neg),
            V::select(pos, grad_pos, grad_neg),
        )
    }
}

/// Quality focal loss.
pub(crate) struct QualityFocal {
    pub beta: f32,
    pub power: Power,
}

impl DenseElement for QualityFocal {
    #[inline(always)]
    fn eval<V: F32v>(&self, x: V, t: V, _j: usize, _len: usize) -> (V, V) {
        let zero = V::splat(0.0);
        let one = V::splat(1.0);
        let beta = V::splat(self.beta);
        let s = sigmoid_parts(x);
        let omt = one.sub(t);
        let ce = t.mul_add(s.sp_neg, omt.mul(s.sp_pos));
        let d = omt.mul(s.p).sub(t.mul(s.pm));
        let ad = d.abs();
        let db = self.power.apply(
            ad,
            || {
                V::select(
                    t.eq(zero),
                    s.sp_neg.neg(),
                    V::select(t.eq(one), s.sp_pos.neg(), log(ad)),
                )
            },
            beta,
        );
        let first = V::select(
            d.eq(zero),
            zero,
            beta.mul(db).div(d).mul(mul0(s.p.mul(s.pm), ce)),
        );
        (db.mul(ce), first.add(db.mul(d)))
    }
}

/// Weights of a dense loss: none, one per row, or one per element.
pub(crate) enum WeightsRef<'a> {
    None,
    PerRow(&'a [f32]),
    PerElement(&'a [f32]),
}

/// Drives a [`DenseElement`] over rows with targets and weights.
pub(crate) struct DenseKernel<'a, E> {
    pub element: E,
    pub classes: usize,
    pub targets: &'a [f32],
    pub weights: WeightsRef<'a>,
    /// Gradient scale: normaliser and upstream gradient.
    pub grad_scale: f32,
}

impl<E: DenseElement> ChunkKernel for DenseKernel<'_, E> {
    #[inline(always)]
    fn run<V: F32v>(&self, mut chunk: Chunk<'_>) -> f64 {
        let c = self.classes;
        let rows = chunk.x.len() / c;
        let scale = V::splat(self.grad_scale);
        let iota = V::iota();
        let mut total = 0.0f64;
        for r in 0..rows {
            let row = chunk.row0 + r;
            let base = r * c;
            let gbase = row * c;
            let xs = &chunk.x[base..base + c];
            let ts = &self.targets[gbase..gbase + c];
            let row_weight = match self.weights {
                WeightsRef::PerRow(w) => Some(V::splat(w[row])),
                _ => None,
            };
            let mut acc = V::splat(0.0);
            let mut j = 0;
            while j < c {
                let len = V::LANES.min(c - j);
                let full = len == V::LANES;
                let x = if full {
                    V::load(&xs[j..])
                } else {
                    V::load_partial(&xs[j..j + len])
                };
                let t = if full {
                    V::load(&ts[j..])
                } else {
                    V::load_partial(&ts[j..j + len])
                };
                let (mut loss, mut grad) = self.element.eval(x, t, j, len);
                let weight = match (&self.weights, row_weight) {
                    (_, Some(w)) => Some(w),
                    (WeightsRef::PerElement(w), None) => {
                        let ws = &w[gbase + j..gbase + j + len];
                        Some(if full {
                            V::load(ws)
                        } else {
                            V::load_partial(ws)
                        })
                    }
                    _ => None,
                };
                if let Some(w) = weight {
                    loss = loss.mul(w);
                    grad = grad.mul(w);
                }
                let nan = x.is_nan();
                loss = V::select(nan, x, loss);
                grad = V::select(nan, x, grad.mul(scale));
                acc = acc.add(if full {
                    loss
                } else {
                    V::select(iota.lt(V::splat(len as f32)), loss, V::splat(0.0))
                });
                store(&mut chunk.loss, base + j, len, loss);
                store(&mut chunk.grad, base + j, len, grad);
                j += len;
            }
            total += acc.sum_f64();
        }
        total
    }
}

#[inline(always)]
fn store<V: F32v>(out: &mut Option<&mut [f32]>, at: usize, len: usize, v: V) {
    if let Some(out) = out {
        if len == V::LANES {
            v.store(&mut out[at..]);
        } else {
            v.store_partial(&mut out[at..at + len]);
        }
    }
}

/// Sigmoid focal loss with sparse labels: no one-hot array is ever built; the positive lane of
/// a row is found by comparing class indices with the row's label.
pub(crate) struct SigmoidSparse<'a> {
    pub labels: &'a [i32],
    pub classes: usize,
    pub alpha: AlphaLanes,
    pub gamma: f32,
    pub power: Power,
    pub grad_scale: f32,
}

impl SigmoidSparse<'_> {
    /// `(loss, dloss/dx)` for hard targets, `pos` marking the positive lanes. With
    /// `s = +-x`, `q = 1 - p_t = sigmoid(-s)`: `L = alpha_t q^gamma softplus(-s)` and
    /// `dL/ds = -alpha_t q^gamma (gamma p_t softplus(-s) + q)`.
    #[inline(always)]
    fn eval<V: F32v>(&self, x: V, pos: V::Mask, j: usize, len: usize) -> (V, V) {
        let zero = V::splat(0.0);
        let one = V::splat(1.0);
        let gamma = V::splat(self.gamma);
        let s = V::select(pos, x, x.neg());
        let e = exp(x.abs().neg());
        let r = one.div(one.add(e));
        let er = e.mul(r);
        let s_nonneg = zero.le(s);
        let pt = V::select(s_nonneg, r, er);
        let q = V::select(s_nonneg, er, r);
        let l = log1p_unit(e);
        let ce = s.neg().max(zero).add(l);
        let qg = self.power.apply(q, || s.max(zero).add(l).neg(), gamma);
        let (a_pos, a_neg) = self.alpha.lanes::<V>(j, len);
        let w = V::select(pos, a_pos, a_neg).mul(qg);
        let loss = w.mul(ce);
        let gs = w.mul(gamma.mul_add(mul0(pt, ce), q));
        (loss, V::select(pos, gs.neg(), gs))
    }
}

impl ChunkKernel for SigmoidSparse<'_> {
    #[inline(always)]
    fn run<V: F32v>(&self, mut chunk: Chunk<'_>) -> f64 {
        let c = self.classes;
        let rows = chunk.x.len() / c;
        let scale = V::splat(self.grad_scale);
        let iota = V::iota();
        let mut total = 0.0f64;
        for r in 0..rows {
            let label = self.labels[chunk.row0 + r];
            let base = r * c;
            if label == IGNORE {
                for out in [&mut chunk.loss, &mut chunk.grad].into_iter().flatten() {
                    out[base..base + c].fill(0.0);
                }
                continue;
            }
            let xs = &chunk.x[base..base + c];
            // Class indices are compared as floats: exact for C < 2^24.
            let label_f = V::splat(label as f32);
            let mut acc = V::splat(0.0);
            let mut j = 0;
            while j < c {
                let len = V::LANES.min(c - j);
                let x = if len == V::LANES {
                    V::load(&xs[j..])
                } else {
                    V::load_partial(&xs[j..j + len])
                };
                let pos = iota.add(V::splat(j as f32)).eq(label_f);
                let (loss, grad) = self.eval(x, pos, j, len);
                let nan = x.is_nan();
                let loss = V::select(nan, x, loss);
                let grad = V::select(nan, x, grad.mul(scale));
                acc = acc.add(if len == V::LANES {
                    loss
                } else {
                    V::select(iota.lt(V::splat(len as f32)), loss, V::splat(0.0))
                });
                store(&mut chunk.loss, base + j, len, loss);
                store(&mut chunk.grad, base + j, len, grad);
                j += len;
            }
            total += acc.sum_f64();
        }
        total
    }
}

/// Softmax focal loss, one row per anchor: three passes over the row while it sits in L1
/// (max; exponentials and the sum of the other classes; gradient).
pub(crate) struct SoftmaxFocal<'a> {
    pub labels: &'a [i32],
    pub classes: usize,
    /// Alpha of each class (1 without weighting).
    pub alpha: Vec<f64>,
    pub gamma: f64,
    pub grad_scale: f32,
}

impl ChunkKernel for SoftmaxFocal<'_> {
    #[inline(always)]
    fn run<V: F32v>(&self, mut chunk: Chunk<'_>) -> f64 {
        let c = self.classes;
        let rows = chunk.x.len() / c;
        let iota = V::iota();
        let mut total = 0.0f64;
        for r in 0..rows {
            let label = self.labels[chunk.row0 + r];
            let base = r * c;
            let xs = &chunk.x[base..base + c];
            if label < 0 {
                for out in [&mut chunk.loss, &mut chunk.grad].into_iter().flatten() {
                    out[base..base + c].fill(0.0);
                }
                continue;
            }
            let y = label as usize;
            if xs.iter().any(|v| v.is_nan()) {
                for out in [&mut chunk.loss, &mut chunk.grad].into_iter().flatten() {
                    out[base..base + c].fill(f32::NAN);
                }
                total += f64::NAN;
                continue;
            }
            // Pass 1: the row maximum.
            let mut vmax = V::splat(f32::NEG_INFINITY);
            let mut j = 0;
            while j < c {
                let len = V::LANES.min(c - j);
                let x = if len == V::LANES {
                    V::load(&xs[j..])
                } else {
                    V::select(
                        iota.lt(V::splat(len as f32)),
                        V::load_partial(&xs[j..j + len]),
                        V::splat(f32::NEG_INFINITY),
                    )
                };
                vmax = vmax.max(x);
                j += len;
            }
            let max = vmax.max_lane();
            // Pass 2: e_j = exp(x_j - max), and the sum of the classes other than y (no
            // cancellation when p_y is close to 1).
            let label_f = V::splat(label as f32);
            let vm = V::splat(max);
            let mut other = 0.0f64;
            let mut j = 0;
            while j < c {
                let len = V::LANES.min(c - j);
                let x = if len == V::LANES {
                    V::load(&xs[j..])
                } else {
                    V::load_partial(&xs[j..j + len])
                };
                let e = exp(x.sub(vm));
                let keep = V::and(
                    iota.lt(V::splat(len as f32)),
                    iota.add(V::splat(j as f32)).ne(label_f),
                );
                other += V::select(keep, e, V::splat(0.0)).sum_f64();
                if let Some(g) = &mut chunk.grad {
                    store(&mut Some(&mut **g), base + j, len, e);
                }
                j += len;
            }
            let e_y = (xs[y] as f64 - max as f64).exp();
            let sum = e_y + other;
            let q = other / sum;
            let logp = -(other / e_y).ln_1p();
            let p_y = e_y / sum;
            let qg = q.powf(self.gamma);
            let ratio = if q > 0.0 { logp / q } else { -1.0 };
            let a = self.alpha[y];
            let loss = -a * qg * logp;
            total += loss;
            if let Some(l) = &mut chunk.loss {
                l[base..base + c].fill(0.0);
                l[base + y] = loss as f32;
            }
            // Pass 3: dL/dx_j = G (delta_jy - p_j), with 1 - p_y taken as q.
            if let Some(g) = &mut chunk.grad {
                let big_g = a * qg * (self.gamma * p_y * ratio - 1.0);
                let coef = V::splat((-big_g / sum) as f32 * self.grad_scale);
                let mut j = 0;
                while j < c {
                    let len = V::LANES.min(c - j);
                    let gs = &mut g[base + j..base + j + len];
                    let e = if len == V::LANES {
                        V::load(gs)
                    } else {
                        V::load_partial(gs)
                    };
                    let v = e.mul(coef);
                    if len == V::LANES {
                        v.store(gs)
                    } else {
                        v.store_partial(gs)
                    }
                    j += len;
                }
                g[base + y] = (big_g * q) as f32 * self.grad_scale;
            }
        }
        total
    }
}
