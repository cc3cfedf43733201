//! The `f32` kernels, written once for every SIMD level.
//!
//! Each kernel walks the rows of one chunk (a row is one anchor's `C` logits), computes the loss
//! and its gradient elementwise with the log-space formulas of [`crate::reference`], writes the
//! requested outputs and returns the chunk's loss sum in `f64`. Rows are processed in whole
//! vectors plus one masked tail, so any `C` works. Each block of rows takes two passes (see
//! [`BLOCK`]): `exp(-|x|)` and `e / (2 + e)` first, the rest second, while the block is in L1.

use crate::labels::{BACKGROUND, IGNORE};
use crate::simd::math::{
    exp, exp_neg_abs, log, log1p_from_z, log1p_z, pow_from_log, sigmoid_quotients, sigmoid_reciprocal,
};
use crate::simd::{ChunkKernel, F32v};

/// One chunk of rows: `x` holds `rows * classes` logits; the outputs, when present, have the
/// same length. `row0` is the global index of the first row (for labels, targets, weights).
/// `prefetch`: `x` is part of a tensor large enough to stream from memory (`engine` decides), so
/// the kernels read it ahead ([`prefetch_ahead`]).
pub(crate) struct Chunk<'a> {
    pub row0: usize,
    pub x: &'a [f32],
    pub loss: Option<&'a mut [f32]>,
    pub grad: Option<&'a mut [f32]>,
    pub prefetch: bool,
}

/// How far ahead of the block being computed [`prefetch_ahead`] asks for the logits, in
/// elements (6 KiB, about six blocks).
const PREFETCH_AHEAD: usize = 1536;

/// When `chunk.prefetch` is set: asks for the cache lines of the logits `PREFETCH_AHEAD`
/// elements past `block` (as far as the chunk goes), before the first pass of `block`.
///
/// The first pass is bound by its chain of dependent operations, and that chain starts with the
/// load of `x`: a load that waits for memory lengthens it and leaves fewer vectors in flight.
/// The hardware prefetchers do not run far enough ahead of it. Measured in one process, in
/// alternation, with 2 threads on the 2-core Zen 5 of `benches/RESULTS.md` (gamma 2, 80
/// classes): 4 to 13% faster at 50,000 and 120,087 anchors, 3% at 240,000, and 1.5 to 4% slower
/// on tensors that stay in cache (8,000 and 20,000 anchors), hence the size threshold in
/// `engine`. 1024 to 2048 ahead did about as well; 512 was worse in two processes of three, 4096
/// in all. Prefetching the gradient's lines for writing as well was no faster.
#[inline(always)]
fn prefetch_ahead<V: F32v>(chunk: &Chunk<'_>, block: std::ops::Range<usize>) {
    if !chunk.prefetch {
        return;
    }
    let end = (block.end + PREFETCH_AHEAD).min(chunk.x.len());
    let mut at = block.start + PREFETCH_AHEAD;
    while at < end {
        V::prefetch(&chunk.x[at..]);
        // One request per 64-byte line.
        at += 16;
    }
}

/// What the first pass computed for a vector of logits `x`: `e = exp(-|x|)` and
/// `z = e / (2 + e)`, the argument of the series for `log1p(e)`. Every sigmoid loss needs `z`, so
/// its division runs in the first pass, beside the exp polynomial, where it does not lengthen
/// the second pass's chains (gamma 2 1 to 4% faster, gamma 1.5 9%, single thread in cache).
#[derive(Clone, Copy)]
pub(crate) struct Ez<V> {
    pub e: V,
    pub z: V,
}

/// How `w^gamma` is computed: by multiplications and a correctly rounded square root for the
/// common small values (0, 1/2, 1, 3/2, 2), through `exp(gamma log w)` otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Power {
    Zero = 0,
    One = 1,
    Two = 2,
    General = 3,
    Half = 4,
    ThreeHalves = 5,
}

impl Power {
    pub(crate) fn of(gamma: f64) -> Power {
        if gamma == 0.0 {
            Power::Zero
        } else if gamma == 1.0 {
            Power::One
        } else if gamma == 2.0 {
            Power::Two
        } else if gamma == 0.5 {
            Power::Half
        } else if gamma == 1.5 {
            Power::ThreeHalves
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
            Power::Half => w.sqrt(),
            Power::ThreeHalves => w.mul(w.sqrt()),
            Power::General => pow_from_log(log_w(), gamma),
        }
    }

    /// The power as a const-generic tag, so hot loops are compiled once per kind.
    fn tag(self) -> u8 {
        self as u8
    }

    #[inline(always)]
    fn from_tag(tag: u8) -> Power {
        match tag {
            0 => Power::Zero,
            1 => Power::One,
            2 => Power::Two,
            4 => Power::Half,
            5 => Power::ThreeHalves,
            _ => Power::General,
        }
    }
}

/// Alpha per class as the sparse kernel uses it: the weight of the loss (`alpha_t`) and the
/// weight of the gradient (`alpha_t` times the gradient scale, negated for positives since
/// `dL/dx = -dL/ds` there), for positives and negatives.
pub(crate) struct AlphaLanes {
    loss_pos: Vec<f32>,
    loss_neg: Vec<f32>,
    grad_pos: Vec<f32>,
    grad_neg: Vec<f32>,
    uniform: bool,
}

impl AlphaLanes {
    pub(crate) fn new(alpha: &crate::Alpha, classes: usize, grad_scale: f64) -> Self {
        let (pos, neg): (Vec<f64>, Vec<f64>) = match alpha {
            crate::Alpha::PerClass(_) => (0..classes).map(|c| alpha.pos_neg(c)).unzip(),
            _ => {
                let (p, n) = alpha.pos_neg(0);
                (vec![p], vec![n])
            }
        };
        AlphaLanes {
            loss_pos: pos.iter().map(|&a| a as f32).collect(),
            loss_neg: neg.iter().map(|&a| a as f32).collect(),
            grad_pos: pos.iter().map(|&a| (-a * grad_scale) as f32).collect(),
            grad_neg: neg.iter().map(|&a| (a * grad_scale) as f32).collect(),
            uniform: !matches!(alpha, crate::Alpha::PerClass(_)),
        }
    }

    #[inline(always)]
    fn load<V: F32v>(v: &[f32], uniform: bool, j: usize, len: usize) -> V {
        if uniform {
            V::splat(v[0])
        } else if len == V::LANES {
            V::load(&v[j..])
        } else {
            V::load_partial(&v[j..j + len])
        }
    }

    /// `(loss weight, gradient weight)` vectors for classes `j..j + len`, `pos` marking the
    /// positive lanes.
    #[inline(always)]
    fn lanes<V: F32v, const UNIFORM: bool>(&self, pos: V::Mask, j: usize, len: usize) -> (V, V) {
        let u = UNIFORM;
        (
            V::select(pos, Self::load(&self.loss_pos, u, j, len), Self::load(&self.loss_neg, u, j, len)),
            V::select(pos, Self::load(&self.grad_pos, u, j, len), Self::load(&self.grad_neg, u, j, len)),
        )
    }

    /// Scalar `(alpha for a positive, alpha for a negative)` of class `c`, unscaled.
    fn scalar(&self, c: usize) -> (f64, f64) {
        let c = if self.uniform { 0 } else { c };
        (self.loss_pos[c] as f64, self.loss_neg[c] as f64)
    }
}

/// Quantities every soft-target sigmoid loss needs, from one `exp`, two divisions and one `log1p`.
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

/// [`SigmoidParts`] plus what every soft-target loss derives from them for targets `t`.
struct SoftParts<V> {
    s: SigmoidParts<V>,
    /// 1 - t
    omt: V,
    /// BCE(x, t) = t softplus(-x) + (1 - t) softplus(x)
    ce: V,
    /// p - t = (1 - t) p - t (1 - p), exact at t = 0 and t = 1
    p_minus_t: V,
}

#[inline(always)]
fn soft_parts<V: F32v>(x: V, e: Ez<V>, t: V) -> SoftParts<V> {
    let s = sigmoid_parts(x, e);
    let omt = V::splat(1.0).sub(t);
    let ce = t.mul_add(s.sp_neg, omt.mul(s.sp_pos));
    let p_minus_t = omt.mul(s.p).sub(t.mul(s.pm));
    SoftParts { s, omt, ce, p_minus_t }
}

/// [`SigmoidParts`] of `x` given `e = exp(-|x|)` and `z`.
#[inline(always)]
fn sigmoid_parts<V: F32v>(x: V, Ez { e, z }: Ez<V>) -> SigmoidParts<V> {
    let zero = V::splat(0.0);
    let r = sigmoid_reciprocal(e);
    let er = e.mul(r);
    let nonneg = zero.le(x);
    let l = log1p_from_z(z);
    SigmoidParts {
        p: V::select(nonneg, r, er),
        pm: V::select(nonneg, er, r),
        sp_pos: l.add(x.max(zero)),
        sp_neg: l.sub(x.min(zero)),
    }
}

/// Elementwise `(loss, dloss/dx)` of a dense-target loss: vectorised for finite logits, and
/// the float64 reference for vectors holding a NaN or an infinity. The vector methods receive
/// the [`Ez`] of `x`, computed by the kernel's first pass.
pub(crate) trait DenseElement: Sync {
    fn eval<V: F32v>(&self, x: V, e: Ez<V>, t: V, j: usize, len: usize) -> (V, V);
    fn scalar(&self, x: f64, t: f64, class: usize) -> (f64, f64);
    /// For losses with a dedicated hard-target path: `(loss, gradient already scaled)` when
    /// every target of the vector is 0 or 1.
    #[inline(always)]
    fn eval_hard<V: F32v>(&self, _x: V, _e: Ez<V>, _t: V, _j: usize, _len: usize) -> Option<(V, V)> {
        None
    }
}

/// Sigmoid focal loss with soft targets. Vectors whose targets are all 0 or 1 (one-hot
/// targets) take the hard-target path, bit-identical to sparse labels.
pub(crate) struct SigmoidSoft {
    pub alpha: crate::Alpha,
    pub alpha_pos: Vec<f32>,
    pub alpha_neg: Vec<f32>,
    pub gamma: f32,
    pub power: Power,
    pub hard: HardTargets,
}

impl SigmoidSoft {
    pub(crate) fn new(alpha: &crate::Alpha, classes: usize, gamma: f64, grad_scale: f64) -> Self {
        let lanes = AlphaLanes::new(alpha, classes, 1.0);
        SigmoidSoft {
            alpha: alpha.clone(),
            alpha_pos: lanes.loss_pos,
            alpha_neg: lanes.loss_neg,
            gamma: gamma as f32,
            power: Power::of(gamma),
            hard: HardTargets::new(alpha, classes, gamma, grad_scale),
        }
    }
}

impl DenseElement for SigmoidSoft {
    #[inline(always)]
    fn eval<V: F32v>(&self, x: V, e: Ez<V>, t: V, j: usize, len: usize) -> (V, V) {
        let zero = V::splat(0.0);
        let one = V::splat(1.0);
        let gamma = V::splat(self.gamma);
        let SoftParts { s, omt, ce, p_minus_t: dce } = soft_parts(x, e, t);
        let w = t.mul_add(s.pm, omt.mul(s.p));
        // log(w) is exact for hard targets, where w is p or 1 - p.
        let wg = self.power.apply(
            w,
            || V::select(t.eq(zero), s.sp_neg.neg(), V::select(t.eq(one), s.sp_pos.neg(), log(w))),
            gamma,
        );
        let ratio = V::select(zero.lt(w), s.p.mul(s.pm).div(w), zero);
        let uniform = !matches!(self.alpha, crate::Alpha::PerClass(_));
        let a_pos: V = AlphaLanes::load(&self.alpha_pos, uniform, j, len);
        let a_neg: V = AlphaLanes::load(&self.alpha_neg, uniform, j, len);
        let at = a_pos.mul_add(t, a_neg.mul(omt));
        let dwg = gamma.mul(wg).mul(ratio).mul(one.sub(t.add(t)));
        let loss = at.mul(wg).mul(ce);
        let grad = at.mul(dwg.mul_add(ce, wg.mul(dce)));
        (loss, grad)
    }

    fn scalar(&self, x: f64, t: f64, class: usize) -> (f64, f64) {
        let (ap, an) = self.alpha.pos_neg(class);
        crate::reference::sigmoid_focal_element(x, t, ap, an, self.gamma as f64)
    }

    #[inline(always)]
    fn eval_hard<V: F32v>(&self, x: V, e: Ez<V>, t: V, j: usize, len: usize) -> Option<(V, V)> {
        let one = V::splat(1.0);
        if !t.mul(one.sub(t)).all_zero() {
            return None;
        }
        Some(self.hard.eval_dynamic(x, e, t.eq(one), j, len))
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
    fn eval<V: F32v>(&self, x: V, e: Ez<V>, t: V, _j: usize, _len: usize) -> (V, V) {
        let zero = V::splat(0.0);
        let one = V::splat(1.0);
        let gamma = V::splat(self.gamma);
        let alpha = V::splat(self.alpha);
        let SoftParts { s, ce, p_minus_t, .. } = soft_parts(x, e, t);
        let wpos = if self.iou_weighted { t } else { one };
        let loss_pos = wpos.mul(ce);
        let grad_pos = wpos.mul(p_minus_t);
        let pg = self.power.apply(s.p, || s.sp_neg.neg(), gamma);
        let apg = alpha.mul(pg);
        let loss_neg = apg.mul(s.sp_pos);
        let grad_neg = apg.mul(gamma.mul(s.pm).mul_add(s.sp_pos, s.p));
        let pos = zero.lt(t);
        (V::select(pos, loss_pos, loss_neg), V::select(pos, grad_pos, grad_neg))
    }

    fn scalar(&self, x: f64, t: f64, _class: usize) -> (f64, f64) {
        crate::reference::varifocal_element(x, t, self.alpha as f64, self.gamma as f64, self.iou_weighted)
    }
}

/// Quality focal loss.
pub(crate) struct QualityFocal {
    pub beta: f32,
    pub power: Power,
}

impl DenseElement for QualityFocal {
    #[inline(always)]
    fn eval<V: F32v>(&self, x: V, e: Ez<V>, t: V, _j: usize, _len: usize) -> (V, V) {
        let zero = V::splat(0.0);
        let one = V::splat(1.0);
        let beta = V::splat(self.beta);
        let SoftParts { s, ce, p_minus_t: d, .. } = soft_parts(x, e, t);
        let ad = d.abs();
        let db = self.power.apply(
            ad,
            || V::select(t.eq(zero), s.sp_neg.neg(), V::select(t.eq(one), s.sp_pos.neg(), log(ad))),
            beta,
        );
        let first = V::select(d.eq(zero), zero, beta.mul(db).div(d).mul(s.p.mul(s.pm).mul(ce)));
        (db.mul(ce), db.mul_add(d, first))
    }

    fn scalar(&self, x: f64, t: f64, _class: usize) -> (f64, f64) {
        crate::reference::quality_focal_element(x, t, self.beta as f64)
    }
}

/// Weights of a dense loss: none, one per row, or one per element.
pub(crate) enum WeightsRef<'a> {
    None,
    PerRow(&'a [f32]),
    PerElement(&'a [f32]),
}

/// Flushes the `f32` lane accumulator into `f64` after this many vectors, bounding the `f32`
/// rounding of any partial sum to 8 terms.
const FLUSH_EVERY: usize = 8;

/// Running loss sum of a chunk: `f32` lanes over at most `every` vectors, `f64` lanes beyond,
/// plus the `f64` sum of the elements that took the scalar path.
struct LossSum<V: F32v> {
    lanes: V,
    count: usize,
    every: usize,
    wide: V::Acc,
    scalar: f64,
}

impl<V: F32v> LossSum<V> {
    #[inline(always)]
    fn new(every: usize) -> Self {
        LossSum { lanes: V::splat(0.0), count: 0, every, wide: V::acc_zero(), scalar: 0.0 }
    }
    #[inline(always)]
    fn add(&mut self, v: V) {
        self.lanes = self.lanes.add(v);
        self.count += 1;
        if self.count == self.every {
            self.flush();
        }
    }
    #[inline(always)]
    fn flush(&mut self) {
        if self.count > 0 {
            self.wide = V::acc_add(self.wide, self.lanes);
            self.lanes = V::splat(0.0);
            self.count = 0;
        }
    }
    /// The chunk's sum, or `None` when an `f32` lane overflowed (only vectors of finite losses
    /// reach the lanes, so that takes losses near `f32::MAX`): the kernel then reruns the chunk
    /// flushing after every vector, where no lane can overflow.
    #[inline(always)]
    fn total(&mut self) -> Option<f64> {
        self.flush();
        let lanes = V::acc_sum(self.wide);
        (lanes.is_finite() || self.every == 1).then_some(lanes + self.scalar)
    }
}

/// Elements per block of the kernels' two passes. The first pass computes `e = exp(-|x|)` and
/// `z = e / (2 + e)` of a block into buffers on the stack ([`FirstPass`]), the second everything
/// else. One vector's work is a long chain of dependent operations (exp, two divisions, log1p,
/// products), and the out-of-order core holds too few such chains at once to keep its pipes
/// busy; in two passes each chain is shorter and more vectors are in flight. The results are
/// the same bits.
const BLOCK: usize = 256;

/// A first-pass buffer, aligned to cache lines so that no vector load or store of it is
/// split across two lines.
#[repr(C, align(64))]
struct BlockBuf([f32; BLOCK]);

/// How a chunk's rows are cut into blocks of at most [`BLOCK`] elements, in order: whole rows
/// when a row fits, otherwise pieces of one row of `BLOCK` classes. `BLOCK` is a multiple of
/// every lane count, so a piece holds whole vectors of its row and the vectors are those of the
/// whole row.
struct Blocks {
    classes: usize,
    rows: usize,
    rows_per_block: usize,
    piece: usize,
    /// The next block starts at row `r0`, class `j0`.
    r0: usize,
    j0: usize,
}

/// One block: classes `classes` of rows `rows` (several whole rows, or a piece of one).
struct Block {
    rows: std::ops::Range<usize>,
    classes: std::ops::Range<usize>,
}

impl Block {
    /// The block's elements in the chunk, contiguous, for rows of `c` classes.
    #[inline(always)]
    fn elements(&self, c: usize) -> std::ops::Range<usize> {
        self.rows.start * c + self.classes.start..(self.rows.end - 1) * c + self.classes.end
    }
}

impl Blocks {
    fn new(classes: usize, rows: usize) -> Blocks {
        let (rows_per_block, piece) = if classes <= BLOCK { (BLOCK / classes, classes) } else { (1, BLOCK) };
        Blocks { classes, rows, rows_per_block, piece, r0: 0, j0: 0 }
    }
}

impl Iterator for Blocks {
    type Item = Block;

    #[inline(always)]
    fn next(&mut self) -> Option<Block> {
        if self.r0 >= self.rows {
            return None;
        }
        let rows = self.r0..(self.r0 + self.rows_per_block).min(self.rows);
        let classes = self.j0..(self.j0 + self.piece).min(self.classes);
        if classes.end == self.classes {
            (self.r0, self.j0) = (rows.end, 0);
        } else {
            self.j0 = classes.end;
        }
        Some(Block { rows, classes })
    }
}

/// The first pass's buffers: `e` and `z` (see [`Ez`]) of a block's elements, in order.
struct FirstPass {
    e: BlockBuf,
    z: BlockBuf,
}

impl FirstPass {
    fn new() -> Self {
        FirstPass { e: BlockBuf([0.0; BLOCK]), z: BlockBuf([0.0; BLOCK]) }
    }

    /// The first pass of a block: [`Ez`] of `x` (at most [`BLOCK`] elements) into the start of
    /// the buffers, in `LANES`-wide vectors from the block's start.
    #[inline(always)]
    fn run<V: F32v>(&mut self, x: &[f32]) {
        let mut xs = x.chunks_exact(V::LANES);
        let mut es = self.e.0.chunks_exact_mut(V::LANES);
        let mut zs = self.z.0.chunks_exact_mut(V::LANES);
        for ((xv, eo), zo) in (&mut xs).zip(&mut es).zip(&mut zs) {
            Self::vector(V::load(xv), eo, zo);
        }
        let rest = xs.remainder();
        if let (false, Some(eo), Some(zo)) = (rest.is_empty(), es.next(), zs.next()) {
            Self::vector(V::load_partial(rest), eo, zo);
        }
    }

    /// [`Ez`] of one vector of logits into `eo` and `zo` (`LANES` long).
    #[inline(always)]
    fn vector<V: F32v>(x: V, eo: &mut [f32], zo: &mut [f32]) {
        let e = exp_neg_abs(x);
        e.store(eo);
        log1p_z(e).store(zo);
    }

    /// The buffers from element `at` of the block on.
    #[inline(always)]
    fn from(&self, at: usize) -> EzSlices<'_> {
        EzSlices { e: &self.e.0[at..], z: &self.z.0[at..] }
    }
}

/// [`Ez`] of consecutive elements, as the first pass stored them.
#[derive(Clone, Copy)]
struct EzSlices<'a> {
    e: &'a [f32],
    z: &'a [f32],
}

/// Loads `len <= LANES` values from `s[at..]`; lanes past `len` are 0.
#[inline(always)]
fn load_at<V: F32v>(s: &[f32], at: usize, len: usize) -> V {
    load_slice(&s[at..at + len])
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

impl<E: DenseElement> DenseKernel<'_, E> {
    fn weight_at(&self, row: usize, index: usize) -> f32 {
        match self.weights {
            WeightsRef::None => 1.0,
            WeightsRef::PerRow(w) => w[row],
            WeightsRef::PerElement(w) => w[index],
        }
    }
}

impl<E: DenseElement> ChunkKernel for DenseKernel<'_, E> {
    #[inline(always)]
    fn run<V: F32v>(&self, mut chunk: Chunk<'_>) -> f64 {
        let c = self.classes;
        let rows = chunk.x.len() / c;
        let scale = V::splat(self.grad_scale);
        let mut ahead = FirstPass::new();
        let mut every = FLUSH_EVERY;
        loop {
            let sum = &mut LossSum::<V>::new(every);
            // Vectors holding a NaN or an infinity are computed (and their results discarded) like
            // the others, then redone by the scalar pass after the loop: the hot loop makes no call,
            // which would force its vector registers (all caller-saved) onto the stack.
            let mut non_finite = false;
            for block in Blocks::new(c, rows) {
                let elements = block.elements(c);
                prefetch_ahead::<V>(&chunk, elements.clone());
                ahead.run::<V>(&chunk.x[elements]);
                for r in block.rows.clone() {
                    let ez = ahead.from((r - block.rows.start) * c);
                    non_finite |= self.segment(&mut chunk, sum, scale, r, block.classes.clone(), ez);
                }
            }
            if non_finite {
                sum.scalar = self.redo_non_finite(&mut chunk, V::LANES);
            }
            match sum.total() {
                Some(total) => return total,
                None => every = 1,
            }
        }
    }
}

impl<E: DenseElement> DenseKernel<'_, E> {
    /// The second pass over classes `js` of row `r` of the chunk, `ez[j - js.start]` holding the
    /// [`Ez`] of class `j`; returns whether a vector held a NaN or an infinity.
    #[inline(always)]
    fn segment<V: F32v>(
        &self,
        chunk: &mut Chunk<'_>,
        sum: &mut LossSum<V>,
        scale: V,
        r: usize,
        js: std::ops::Range<usize>,
        ez: EzSlices<'_>,
    ) -> bool {
        let c = self.classes;
        let row = chunk.row0 + r;
        let (base, gbase) = (r * c, row * c);
        let mut seg = Segment::new(chunk, base + js.start..base + js.end, ez);
        let targets = &self.targets[gbase + js.start..gbase + js.end];
        let weights = match self.weights {
            WeightsRef::None => WeightsRef::None,
            WeightsRef::PerRow(w) => WeightsRef::PerRow(&w[row..row + 1]),
            WeightsRef::PerElement(w) => WeightsRef::PerElement(&w[gbase + js.start..gbase + js.end]),
        };
        let n = seg.len();
        let mut non_finite = false;
        // Whole vectors, then the row's shorter tail: `len` is a constant in the first loop.
        let mut k = 0;
        while k + V::LANES <= n {
            non_finite |= self.vector(&mut seg, sum, scale, (targets, &weights), js.start, k, V::LANES);
            k += V::LANES;
        }
        if k < n {
            non_finite |= self.vector(&mut seg, sum, scale, (targets, &weights), js.start, k, n - k);
        }
        non_finite
    }

    /// One vector of a segment: classes `j0 + k..j0 + k + len`; returns whether it held a NaN or
    /// an infinity.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn vector<V: F32v>(
        &self,
        seg: &mut Segment<'_>,
        sum: &mut LossSum<V>,
        scale: V,
        (targets, weights): (&[f32], &WeightsRef<'_>),
        j0: usize,
        k: usize,
        len: usize,
    ) -> bool {
        let j = j0 + k;
        let (x, e) = seg.inputs::<V>(k, len);
        let t = load_at::<V>(targets, k, len);
        let (mut loss, mut grad) = match self.element.eval_hard(x, e, t, j, len) {
            Some(scaled) => scaled,
            None => {
                let (loss, grad) = self.element.eval(x, e, t, j, len);
                (loss, grad.mul(scale))
            }
        };
        let weight = match *weights {
            WeightsRef::None => None,
            WeightsRef::PerRow(w) => Some(V::splat(w[0])),
            WeightsRef::PerElement(w) => Some(load_at::<V>(w, k, len)),
        };
        if let Some(w) = weight {
            loss = loss.mul(w);
            grad = grad.mul(w);
        }
        !seg.emit(sum, x, k, len, (loss, grad))
    }

    /// Recomputes, with the float64 reference, the vectors of the chunk (as the vector loop
    /// splits its rows into `lanes`-wide pieces) that hold a NaN or an infinity; returns the
    /// sum of their losses.
    #[cold]
    #[inline(never)]
    fn redo_non_finite(&self, chunk: &mut Chunk<'_>, lanes: usize) -> f64 {
        let c = self.classes;
        let x = chunk.x;
        let mut total = 0.0;
        for_each_non_finite(
            x,
            c,
            lanes,
            |_| false,
            |r, j| {
                let row = chunk.row0 + r;
                let (at, gat) = (r * c + j, row * c + j);
                let w = self.weight_at(row, gat) as f64;
                let (l, g) = self.element.scalar(x[at] as f64, self.targets[gat] as f64, j);
                total += w * l;
                scalar_store(chunk, at, w * l, w * g * self.grad_scale as f64);
            },
        );
        total
    }
}

/// Calls `f(row, class)` for every element of `x` (`classes` per row) in a `lanes`-wide piece
/// of its row that holds a NaN or an infinity, in order. `skip_row(row)` leaves rows out.
fn for_each_non_finite(
    x: &[f32],
    classes: usize,
    lanes: usize,
    skip_row: impl Fn(usize) -> bool,
    mut f: impl FnMut(usize, usize),
) {
    for (r, xs) in x.chunks_exact(classes).enumerate() {
        if skip_row(r) {
            continue;
        }
        for (k, piece) in xs.chunks(lanes).enumerate() {
            if piece.iter().all(|v| v.is_finite()) {
                continue;
            }
            for i in 0..piece.len() {
                f(r, k * lanes + i);
            }
        }
    }
}

/// The second pass's view of one row segment: its logits, their [`Ez`] and the outputs, all `n`
/// long, so the vector loop indexes from 0 without further offsets.
struct Segment<'s> {
    n: usize,
    x: &'s [f32],
    e: &'s [f32],
    z: &'s [f32],
    loss: Option<&'s mut [f32]>,
    grad: Option<&'s mut [f32]>,
}

impl<'s> Segment<'s> {
    /// Elements `at` of the chunk, with the first `at.len()` elements of `ez`.
    #[inline(always)]
    fn new(chunk: &'s mut Chunk<'_>, at: std::ops::Range<usize>, ez: EzSlices<'s>) -> Self {
        let n = at.len();
        Segment {
            n,
            x: &chunk.x[at.clone()],
            e: &ez.e[..n],
            z: &ez.z[..n],
            loss: match &mut chunk.loss {
                Some(l) => Some(&mut l[at.clone()]),
                None => None,
            },
            grad: match &mut chunk.grad {
                Some(g) => Some(&mut g[at]),
                None => None,
            },
        }
    }

    #[inline(always)]
    fn len(&self) -> usize {
        self.n
    }

    /// The range of the `len`-lane vector at `k`, checked once against the segment for all five
    /// arrays (in the loop over whole vectors the compiler drops the check).
    #[inline(always)]
    fn range<V: F32v>(&self, k: usize, len: usize) -> std::ops::Range<usize> {
        assert!(len <= V::LANES && k <= self.n && len <= self.n - k);
        k..k + len
    }

    /// `x` and its [`Ez`] of the `len`-lane vector at `k`.
    #[inline(always)]
    fn inputs<V: F32v>(&self, k: usize, len: usize) -> (V, Ez<V>) {
        let r = self.range::<V>(k, len);
        // SAFETY: `x`, `e` and `z` are `n` long (`Segment::new`) and `range` checked `r` against `n`.
        let (x, e, z) =
            unsafe { (self.x.get_unchecked(r.clone()), self.e.get_unchecked(r.clone()), self.z.get_unchecked(r)) };
        (load_slice(x), Ez { e: load_slice(e), z: load_slice(z) })
    }

    /// Writes a vector's `(loss, grad)` at `k..k + len` into the outputs present.
    #[inline(always)]
    fn put<V: F32v>(&mut self, k: usize, len: usize, out: (V, V)) {
        let r = self.range::<V>(k, len);
        if let Some(l) = &mut self.loss {
            // SAFETY: as in `inputs`: the outputs are `n` long too.
            store_slice(unsafe { l.get_unchecked_mut(r.clone()) }, out.0);
        }
        if let Some(g) = &mut self.grad {
            // SAFETY: as above.
            store_slice(unsafe { g.get_unchecked_mut(r) }, out.1);
        }
    }

    /// Adds a computed vector's `(loss, grad)` to the sum and writes them at `k..k + len`;
    /// returns whether `x` was finite (if not, nothing was added: the scalar pass redoes it).
    ///
    /// The kernels' loops use plain `#[inline(always)]` functions like this one, never
    /// closures: a closure is not reliably inlined into the `#[target_feature]` wrapper, and
    /// outside it every intrinsic becomes a call (the AVX2 level once ran 40x slower that way).
    #[inline(always)]
    fn emit<V: F32v>(&mut self, sum: &mut LossSum<V>, x: V, k: usize, len: usize, out: (V, V)) -> bool {
        let finite = x.all_finite();
        self.emit_with(sum, k, len, out, finite);
        finite
    }

    /// [`Segment::emit`] for a vector whose finiteness is known.
    #[inline(always)]
    fn emit_with<V: F32v>(&mut self, sum: &mut LossSum<V>, k: usize, len: usize, out: (V, V), finite: bool) {
        sum.add(vector_contribution(out.0, len, finite));
        self.put(k, len, out);
    }
}

/// Loads a slice of at most `LANES` values; lanes past its length are 0.
#[inline(always)]
fn load_slice<V: F32v>(s: &[f32]) -> V {
    if s.len() == V::LANES { V::load(s) } else { V::load_partial(s) }
}

/// Stores the first `s.len() <= LANES` lanes of `v` into `s`.
#[inline(always)]
fn store_slice<V: F32v>(s: &mut [f32], v: V) {
    if s.len() == V::LANES { v.store(s) } else { v.store_partial(s) }
}

/// What a vector adds to the loss sum: its first `len` lanes, or nothing when it holds a NaN or
/// an infinity (the scalar pass adds those).
#[inline(always)]
fn vector_contribution<V: F32v>(loss: V, len: usize, finite: bool) -> V {
    if !finite {
        V::splat(0.0)
    } else if len == V::LANES {
        loss
    } else {
        V::select(V::iota().lt(V::splat(len as f32)), loss, V::splat(0.0))
    }
}

/// Writes one element computed on the scalar path.
fn scalar_store(chunk: &mut Chunk<'_>, at: usize, loss: f64, grad: f64) {
    if let Some(out) = &mut chunk.loss {
        out[at] = loss as f32;
    }
    if let Some(out) = &mut chunk.grad {
        out[at] = grad as f32;
    }
}

/// The sigmoid focal loss of hard (0/1) targets, shared by the sparse-label kernel and the
/// dense kernel's one-hot vectors, so both compute bit-identical results.
pub(crate) struct HardTargets {
    pub alpha: AlphaLanes,
    pub gamma: f32,
    pub power: Power,
}

impl HardTargets {
    pub(crate) fn new(alpha: &crate::Alpha, classes: usize, gamma: f64, grad_scale: f64) -> Self {
        HardTargets { alpha: AlphaLanes::new(alpha, classes, grad_scale), gamma: gamma as f32, power: Power::of(gamma) }
    }

    /// [`HardTargets::eval`] with the power and alpha layout chosen at run time.
    #[inline(always)]
    fn eval_dynamic<V: F32v>(&self, x: V, e: Ez<V>, pos: V::Mask, j: usize, len: usize) -> (V, V) {
        match (self.power.tag(), self.alpha.uniform) {
            (0, true) => self.eval::<V, 0, true>(x, e, pos, j, len),
            (1, true) => self.eval::<V, 1, true>(x, e, pos, j, len),
            (2, true) => self.eval::<V, 2, true>(x, e, pos, j, len),
            (4, true) => self.eval::<V, 4, true>(x, e, pos, j, len),
            (5, true) => self.eval::<V, 5, true>(x, e, pos, j, len),
            (_, true) => self.eval::<V, 3, true>(x, e, pos, j, len),
            (0, false) => self.eval::<V, 0, false>(x, e, pos, j, len),
            (1, false) => self.eval::<V, 1, false>(x, e, pos, j, len),
            (2, false) => self.eval::<V, 2, false>(x, e, pos, j, len),
            (4, false) => self.eval::<V, 4, false>(x, e, pos, j, len),
            (5, false) => self.eval::<V, 5, false>(x, e, pos, j, len),
            (_, false) => self.eval::<V, 3, false>(x, e, pos, j, len),
        }
    }
}

/// Sigmoid focal loss with sparse labels: no one-hot array is ever built; the positive lane of
/// a row is found from the row's label.
pub(crate) struct SigmoidSparse<'a> {
    pub labels: &'a [i32],
    pub classes: usize,
    pub hard: HardTargets,
    pub grad_scale: f32,
}

impl HardTargets {
    /// `(loss, dloss/dx)` for hard targets, `pos` marking the positive lanes. With
    /// `s = +-x`, `q = 1 - p_t = sigmoid(-s)`: `L = alpha_t q^gamma softplus(-s)` and
    /// `dL/ds = -alpha_t q^gamma (gamma p_t softplus(-s) + q)`; the gradient scale and the sign
    /// of `ds/dx` are folded into the gradient's alpha.
    #[inline(always)]
    fn eval<V: F32v, const POWER: u8, const UNIFORM: bool>(
        &self,
        x: V,
        Ez { e, z }: Ez<V>,
        pos: V::Mask,
        j: usize,
        len: usize,
    ) -> (V, V) {
        let zero = V::splat(0.0);
        let gamma = V::splat(self.gamma);
        let s = V::select(pos, x, x.neg());
        let (r, er) = sigmoid_quotients(e);
        let s_nonneg = zero.le(s);
        let pt = V::select(s_nonneg, r, er);
        let q = V::select(s_nonneg, er, r);
        let l = log1p_from_z(z);
        let ce = l.sub(s.min(zero));
        let qg = Power::from_tag(POWER).apply(q, || l.add(s.max(zero)).neg(), gamma);
        let (a_loss, a_grad) = self.alpha.lanes::<V, UNIFORM>(pos, j, len);
        let loss = a_loss.mul(qg).mul(ce);
        let grad = a_grad.mul(qg).mul(gamma_times::<V, POWER>(gamma, pt).mul_add(ce, q));
        (loss, grad)
    }
}

impl HardTargets {
    /// [`HardTargets::eval`] for a vector with no positive lane (nearly all of them): `s = -x`,
    /// so the selects on the label disappear.
    #[inline(always)]
    fn eval_negative<V: F32v, const POWER: u8, const UNIFORM: bool>(
        &self,
        x: V,
        Ez { e, z }: Ez<V>,
        j: usize,
        len: usize,
        uniform_neg: (V, V),
    ) -> (V, V) {
        let zero = V::splat(0.0);
        let (r, er) = sigmoid_quotients(e);
        // s = -x >= 0 where x <= 0: there p_t = r = 1 / (1 + e) and q = er = e / (1 + e).
        let x_nonpos = x.le(zero);
        let l = log1p_from_z(z);
        let (pt, q) = (V::select(x_nonpos, r, er), V::select(x_nonpos, er, r));
        let (ce, log_q) = (l.add(x.max(zero)), x.min(zero).sub(l));
        self.finish_negative::<V, POWER, UNIFORM>((pt, q, ce, log_q), j, len, uniform_neg)
    }

    /// [`HardTargets::eval_negative`] for a vector of finite logits `<= 0` (the common case for
    /// background anchors): the selects on the sign of `x` disappear too, with bit-identical
    /// results.
    #[inline(always)]
    fn eval_nonpositive<V: F32v, const POWER: u8, const UNIFORM: bool>(
        &self,
        x: V,
        Ez { e, z }: Ez<V>,
        j: usize,
        len: usize,
        uniform_neg: (V, V),
    ) -> (V, V) {
        // -|x| = x, so p_t = 1 / (1 + e), q = e / (1 + e), softplus(x) = log1p(e).
        let (r, er) = sigmoid_quotients(e);
        let l = log1p_from_z(z);
        self.finish_negative::<V, POWER, UNIFORM>((r, er, l, x.sub(l)), j, len, uniform_neg)
    }

    /// Loss and gradient of a vector without positive lanes, by [`HardTargets::eval_nonpositive`]
    /// when its logits are all finite and at most 0, else by [`HardTargets::eval_negative`]; and
    /// whether its logits are all finite (if not, the kernels redo it on the scalar path).
    #[inline(always)]
    fn eval_background<V: F32v, const POWER: u8, const UNIFORM: bool>(
        &self,
        x: V,
        ez: Ez<V>,
        j: usize,
        len: usize,
        uniform_neg: (V, V),
    ) -> ((V, V), bool) {
        if x.all_finite_nonpositive() {
            (self.eval_nonpositive::<V, POWER, UNIFORM>(x, ez, j, len, uniform_neg), true)
        } else {
            (self.eval_negative::<V, POWER, UNIFORM>(x, ez, j, len, uniform_neg), x.all_finite())
        }
    }

    /// Loss and gradient of a vector without positives from `(p_t, q, softplus(-s), log q)`.
    #[inline(always)]
    fn finish_negative<V: F32v, const POWER: u8, const UNIFORM: bool>(
        &self,
        (pt, q, ce, log_q): (V, V, V, V),
        j: usize,
        len: usize,
        uniform_neg: (V, V),
    ) -> (V, V) {
        let gamma = V::splat(self.gamma);
        let qg = Power::from_tag(POWER).apply(q, || log_q, gamma);
        let (a_loss, a_grad) = if UNIFORM {
            uniform_neg
        } else {
            (
                AlphaLanes::load(&self.alpha.loss_neg, false, j, len),
                AlphaLanes::load(&self.alpha.grad_neg, false, j, len),
            )
        };
        let loss = a_loss.mul(qg).mul(ce);
        let grad = a_grad.mul(qg).mul(gamma_times::<V, POWER>(gamma, pt).mul_add(ce, q));
        (loss, grad)
    }
}

/// `gamma p_t`: for gamma 2 as `p_t + p_t` (the same bits), which runs beside the FMAs instead
/// of taking one of their issue slots, the resource the second pass is bound by.
#[inline(always)]
fn gamma_times<V: F32v, const POWER: u8>(gamma: V, pt: V) -> V {
    if POWER == Power::Two as u8 { pt.add(pt) } else { gamma.mul(pt) }
}

impl ChunkKernel for SigmoidSparse<'_> {
    #[inline(always)]
    fn run<V: F32v>(&self, chunk: Chunk<'_>) -> f64 {
        // One compiled loop per (power, alpha layout): no dispatch inside the loop.
        match (self.hard.power.tag(), self.hard.alpha.uniform) {
            (0, true) => self.rows::<V, 0, true>(chunk),
            (1, true) => self.rows::<V, 1, true>(chunk),
            (2, true) => self.rows::<V, 2, true>(chunk),
            (4, true) => self.rows::<V, 4, true>(chunk),
            (5, true) => self.rows::<V, 5, true>(chunk),
            (_, true) => self.rows::<V, 3, true>(chunk),
            (0, false) => self.rows::<V, 0, false>(chunk),
            (1, false) => self.rows::<V, 1, false>(chunk),
            (2, false) => self.rows::<V, 2, false>(chunk),
            (4, false) => self.rows::<V, 4, false>(chunk),
            (5, false) => self.rows::<V, 5, false>(chunk),
            (_, false) => self.rows::<V, 3, false>(chunk),
        }
    }
}

impl SigmoidSparse<'_> {
    #[inline(always)]
    fn rows<V: F32v, const POWER: u8, const UNIFORM: bool>(&self, mut chunk: Chunk<'_>) -> f64 {
        let c = self.classes;
        let rows = chunk.x.len() / c;
        // Hoisted out of the loop: the alpha of negatives when it is the same for all classes.
        let hard = &self.hard;
        let uniform_neg = (V::splat(hard.alpha.loss_neg[0]), V::splat(hard.alpha.grad_neg[0]));
        // Whole rows of background in one segment need vectors that never cross a row.
        let flat = c.is_multiple_of(V::LANES) && c <= BLOCK;
        let mut ahead = FirstPass::new();
        let mut every = FLUSH_EVERY;
        loop {
            let sum = &mut LossSum::<V>::new(every);
            // As in the dense kernel: two passes per block, and vectors with a NaN or an infinity
            // redone after the loop.
            let mut non_finite = false;
            for block in Blocks::new(c, rows) {
                let elements = block.elements(c);
                prefetch_ahead::<V>(&chunk, elements.clone());
                ahead.run::<V>(&chunk.x[elements]);
                // `flat` implies whole rows in the block.
                if flat && self.all_background(chunk.row0, block.rows.clone()) {
                    let ez = ahead.from(0);
                    let x = chunk.x;
                    non_finite |= match (&chunk.loss, chunk.grad.as_deref_mut()) {
                        (None, Some(g)) => {
                            self.background_grad::<V, POWER, UNIFORM>((x, g), sum, block.rows, ez, uniform_neg)
                        }
                        _ => self.background::<V, POWER, UNIFORM>(&mut chunk, sum, block.rows, ez, uniform_neg),
                    };
                    continue;
                }
                for r in block.rows.clone() {
                    let ez = ahead.from((r - block.rows.start) * c);
                    let js = block.classes.clone();
                    non_finite |= self.segment::<V, POWER, UNIFORM>(&mut chunk, sum, r, js, ez, uniform_neg);
                }
            }
            if non_finite {
                sum.scalar = self.redo_non_finite(&mut chunk, V::LANES);
            }
            match sum.total() {
                Some(total) => return total,
                None => every = 1,
            }
        }
    }

    /// The second pass over classes `js` of row `r` (see [`DenseKernel::segment`]).
    #[inline(always)]
    fn segment<V: F32v, const POWER: u8, const UNIFORM: bool>(
        &self,
        chunk: &mut Chunk<'_>,
        sum: &mut LossSum<V>,
        r: usize,
        js: std::ops::Range<usize>,
        ez: EzSlices<'_>,
        uniform_neg: (V, V),
    ) -> bool {
        let base = r * self.classes;
        let label = self.labels[chunk.row0 + r];
        let mut seg = Segment::new(chunk, base + js.start..base + js.end, ez);
        let n = seg.len();
        let mut k = 0;
        if label == IGNORE {
            // Zero outputs, and zero vectors added to the sum so that it is grouped exactly as
            // the dense kernel's with weight 0 on this row.
            while k < n {
                let len = V::LANES.min(n - k);
                seg.emit_with(sum, k, len, (V::splat(0.0), V::splat(0.0)), true);
                k += len;
            }
            return false;
        }
        let mut non_finite = false;
        // Whole vectors, then the row's shorter tail: `len` is a constant in the first loop.
        while k + V::LANES <= n {
            non_finite |= self.vector::<V, POWER, UNIFORM>(&mut seg, sum, label, js.start, k, V::LANES, uniform_neg);
            k += V::LANES;
        }
        if k < n {
            non_finite |= self.vector::<V, POWER, UNIFORM>(&mut seg, sum, label, js.start, k, n - k, uniform_neg);
        }
        non_finite
    }

    /// One vector of a segment: classes `j0 + k..j0 + k + len` of a row labelled `label`;
    /// returns whether it held a NaN or an infinity.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn vector<V: F32v, const POWER: u8, const UNIFORM: bool>(
        &self,
        seg: &mut Segment<'_>,
        sum: &mut LossSum<V>,
        label: i32,
        j0: usize,
        k: usize,
        len: usize,
        uniform_neg: (V, V),
    ) -> bool {
        let hard = &self.hard;
        let j = j0 + k;
        let (x, e) = seg.inputs::<V>(k, len);
        match (label as isize - j as isize).try_into() {
            Ok(i) if i < len => {
                let out = hard.eval::<V, POWER, UNIFORM>(x, e, V::lane_mask(i), j, len);
                !seg.emit(sum, x, k, len, out)
            }
            _ => self.negative::<V, POWER, UNIFORM>(seg, sum, (x, e), j, k, len, uniform_neg),
        }
    }

    /// A vector `(x, e)` without a positive lane at `k..k + len` of the segment, classes from
    /// `j`; returns whether it held a NaN or an infinity.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn negative<V: F32v, const POWER: u8, const UNIFORM: bool>(
        &self,
        seg: &mut Segment<'_>,
        sum: &mut LossSum<V>,
        (x, e): (V, Ez<V>),
        j: usize,
        k: usize,
        len: usize,
        uniform_neg: (V, V),
    ) -> bool {
        let (out, finite) = self.hard.eval_background::<V, POWER, UNIFORM>(x, e, j, len, uniform_neg);
        seg.emit_with(sum, k, len, out, finite);
        !finite
    }

    /// The second pass over rows `rows` when all of them are background and `LANES` divides the
    /// row length: one flat segment, vector by vector as the rows' own walk (no vector crosses
    /// a row), without the per-row work of [`SigmoidSparse::segment`].
    #[inline(always)]
    fn background<V: F32v, const POWER: u8, const UNIFORM: bool>(
        &self,
        chunk: &mut Chunk<'_>,
        sum: &mut LossSum<V>,
        rows: std::ops::Range<usize>,
        ez: EzSlices<'_>,
        uniform_neg: (V, V),
    ) -> bool {
        let c = self.classes;
        let mut seg = Segment::new(chunk, rows.start * c..rows.end * c, ez);
        let n = seg.len();
        let mut non_finite = false;
        let mut k = 0;
        while k + V::LANES <= n {
            let x_e = seg.inputs::<V>(k, V::LANES);
            non_finite |= self.negative::<V, POWER, UNIFORM>(&mut seg, sum, x_e, k % c, k, V::LANES, uniform_neg);
            k += V::LANES;
        }
        non_finite
    }

    /// [`SigmoidSparse::background`] with the chunk's logits and gradient, when the gradient is
    /// the only elementwise output (a fused call with a reduction: training's case), over plain
    /// slices. The same operations in the same order, so the same bits; what goes is the
    /// per-vector bookkeeping of [`Segment`] (range checks, a test for each optional output),
    /// which cost 3 to 7% (2026-11-28 in `benches/RESULTS.md`).
    #[inline(always)]
    fn background_grad<V: F32v, const POWER: u8, const UNIFORM: bool>(
        &self,
        (x, grad): (&[f32], &mut [f32]),
        sum: &mut LossSum<V>,
        rows: std::ops::Range<usize>,
        ez: EzSlices<'_>,
        uniform_neg: (V, V),
    ) -> bool {
        let c = self.classes;
        let span = rows.start * c..rows.end * c;
        let n = span.len();
        let x = x[span.clone()].chunks_exact(V::LANES);
        let (e, z) = (ez.e[..n].chunks_exact(V::LANES), ez.z[..n].chunks_exact(V::LANES));
        let mut non_finite = false;
        // The class of each vector's first lane (`LANES` divides `c` here).
        let mut j = 0;
        for (((x, e), z), out) in x.zip(e).zip(z).zip(grad[span].chunks_exact_mut(V::LANES)) {
            let (x, ez) = (V::load(x), Ez { e: V::load(e), z: V::load(z) });
            let ((loss, grad), finite) =
                self.hard.eval_background::<V, POWER, UNIFORM>(x, ez, j, V::LANES, uniform_neg);
            // As `Segment::emit_with`: a vector with a NaN or an infinity adds nothing (the scalar
            // pass redoes it).
            non_finite |= !finite;
            sum.add(vector_contribution(loss, V::LANES, finite));
            grad.store(out);
            j += V::LANES;
            if j == c {
                j = 0;
            }
        }
        non_finite
    }

    /// Whether every row of `rows` (of the chunk) is background.
    #[inline(always)]
    fn all_background(&self, row0: usize, rows: std::ops::Range<usize>) -> bool {
        let mut all = true;
        for &label in &self.labels[row0 + rows.start..row0 + rows.end] {
            all &= label == BACKGROUND;
        }
        all
    }

    /// The scalar pass of [`SigmoidSparse::rows`] (see [`DenseKernel::redo_non_finite`]).
    #[cold]
    #[inline(never)]
    fn redo_non_finite(&self, chunk: &mut Chunk<'_>, lanes: usize) -> f64 {
        let c = self.classes;
        let (x, row0, hard) = (chunk.x, chunk.row0, &self.hard);
        let mut total = 0.0;
        for_each_non_finite(
            x,
            c,
            lanes,
            |r| self.labels[row0 + r] == IGNORE,
            |r, j| {
                let t = if self.labels[row0 + r] == j as i32 { 1.0 } else { 0.0 };
                let (ap, an) = hard.alpha.scalar(j);
                let (l, g) = crate::reference::sigmoid_focal_element(x[r * c + j] as f64, t, ap, an, hard.gamma as f64);
                total += l;
                scalar_store(chunk, r * c + j, l, g * self.grad_scale as f64);
            },
        );
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
                let x = if len == V::LANES { V::load(&xs[j..]) } else { V::load_partial(&xs[j..j + len]) };
                let e = exp(x.sub(vm));
                let keep = V::and(iota.lt(V::splat(len as f32)), iota.add(V::splat(j as f32)).ne(label_f));
                other += V::select(keep, e, V::splat(0.0)).sum_f64();
                if let Some(g) = &mut chunk.grad {
                    store_slice(&mut g[base + j..base + j + len], e);
                }
                j += len;
            }
            let d_y = xs[y] as f64 - max as f64;
            let e_y = d_y.exp();
            let sum = e_y + other;
            let q = other / sum;
            let logp = crate::reference::softmax_log_p(d_y, e_y, other);
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
                    let e = if len == V::LANES { V::load(gs) } else { V::load_partial(gs) };
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
