//! Properties that must hold bit for bit: fused == forward + backward, sparse labels == dense
//! one-hot targets, ignored anchors contribute nothing, half inputs == the f32 path on the
//! widened values, and the thread count never changes a bit.

mod common;

use common::Rng;
use focal_core::{
    DenseTarget, Element, FocalLoss, FocalParams, Outputs, QualityFocalLoss, Reduction, SigmoidFocalLoss, SimdLevel,
    SoftmaxFocalLoss, Target, TensorView, TensorViewMut, VarifocalLoss, VarifocalParams,
};
use proptest::prelude::*;

fn bits(v: &[f32]) -> Vec<u32> {
    // +0 and -0 compare equal; everything else, NaN payloads aside, bit for bit.
    v.iter()
        .map(|x| {
            if *x == 0.0 {
                0
            } else if x.is_nan() {
                u32::MAX
            } else {
                x.to_bits()
            }
        })
        .collect()
}

fn level_strategy() -> impl Strategy<Value = SimdLevel> {
    let levels: Vec<SimdLevel> = SimdLevel::supported().collect();
    proptest::sample::select(levels)
}

fn gamma_strategy() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), Just(1.0), Just(2.0), Just(0.5), Just(1.5), 0.0f64..6.0]
}

struct Case {
    rows: usize,
    classes: usize,
    x: Vec<f32>,
    labels: Vec<i32>,
}

fn case(rows: usize, classes: usize, seed: u64) -> Case {
    let mut rng = Rng::new(seed);
    Case { rows, classes, x: rng.logits(rows * classes), labels: rng.labels(rows, classes) }
}

fn fused_sparse(loss: &SigmoidFocalLoss, c: &Case, x: &[f32], upstream: f64) -> (f64, Vec<f32>) {
    let mut grad = vec![0.0f32; x.len()];
    let v = loss
        .forward_backward(
            TensorView::new(x, &[c.rows, c.classes]).unwrap(),
            Target::labels(TensorView::new(&c.labels, &[c.rows]).unwrap()),
            upstream,
            TensorViewMut::new(&mut grad, &[c.rows, c.classes]).unwrap(),
        )
        .unwrap();
    (v, grad)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn fused_equals_forward_plus_backward(
        rows in 1usize..40, classes in 1usize..40, seed in any::<u64>(),
        gamma in gamma_strategy(), level in level_strategy(),
    ) {
        let c = case(rows, classes, seed);
        let loss = SigmoidFocalLoss::new(FocalParams::new(Some(0.25), gamma).unwrap(), Reduction::Normalizer(7.0))
            .with_simd(level).unwrap();
        let logits = TensorView::new(&c.x, &[rows, classes]).unwrap();
        let target = Target::labels(TensorView::new(&c.labels, &[rows]).unwrap());
        let (fused, fused_grad) = fused_sparse(&loss, &c, &c.x, 0.5);
        let forward = loss.forward(logits, target).unwrap();
        let mut grad = vec![0.0f32; c.x.len()];
        loss.backward(logits, target, 0.5, TensorViewMut::new(&mut grad, &[rows, classes]).unwrap()).unwrap();
        prop_assert_eq!(fused.to_bits(), forward.to_bits());
        prop_assert_eq!(bits(&fused_grad), bits(&grad));
    }

    #[test]
    fn fused_equals_forward_plus_backward_for_dense_losses(
        rows in 1usize..30, classes in 1usize..30, seed in any::<u64>(), gamma in gamma_strategy(),
        level in level_strategy(),
    ) {
        let mut rng = Rng::new(seed);
        let n = rows * classes;
        let (x, t) = (rng.logits(n), rng.targets(n));
        let shape = [rows, classes];
        let logits = TensorView::new(&x, &shape).unwrap();
        let target = DenseTarget { targets: TensorView::new(&t, &shape).unwrap(), weights: None };
        fn check<L: FocalLoss>(loss: &L, logits: TensorView<'_, f32>, target: L::Target<'_>, shape: &[usize]) -> Result<(), TestCaseError> {
            let n = logits.as_slice().len();
            let (mut g1, mut g2) = (vec![0.0f32; n], vec![0.0f32; n]);
            let fused = loss.forward_backward(logits, target, 1.0, TensorViewMut::new(&mut g1, shape).unwrap()).unwrap();
            let forward = loss.forward(logits, target).unwrap();
            loss.backward(logits, target, 1.0, TensorViewMut::new(&mut g2, shape).unwrap()).unwrap();
            prop_assert_eq!(fused.to_bits(), forward.to_bits());
            prop_assert_eq!(bits(&g1), bits(&g2));
            Ok(())
        }
        let sig = SigmoidFocalLoss::new(FocalParams::new(Some(0.25), gamma).unwrap(), Reduction::Sum).with_simd(level).unwrap();
        check(&sig, logits, Target::Dense(target), &shape)?;
        let vfl = VarifocalLoss::new(VarifocalParams::new(0.75, gamma, true).unwrap(), Reduction::Mean).with_simd(level).unwrap();
        check(&vfl, logits, target, &shape)?;
        let qfl = QualityFocalLoss::new(gamma, Reduction::Sum).unwrap().with_simd(level).unwrap();
        check(&qfl, logits, target, &shape)?;
        let labels: Vec<i32> = (0..rows).map(|r| (r % classes) as i32).collect();
        let soft = SoftmaxFocalLoss::new(FocalParams::new(None, gamma).unwrap(), Reduction::Mean).with_simd(level).unwrap();
        let xs: Vec<f32> = x.iter().map(|v| v.clamp(-50.0, 50.0)).collect();
        check(&soft, TensorView::new(&xs, &shape).unwrap(), TensorView::new(&labels, &[rows]).unwrap(), &shape)?;
    }

    #[test]
    fn sparse_labels_equal_dense_one_hot_bit_for_bit(
        // Also more classes than the kernels' 256-element blocks hold (rows go in pieces).
        rows in 1usize..40, classes in prop_oneof![3 => 1usize..40, 1 => 250usize..600], seed in any::<u64>(),
        gamma in gamma_strategy(),
        per_class in any::<bool>(), level in level_strategy(),
    ) {
        let c = case(rows, classes, seed);
        let params = if per_class {
            FocalParams::per_class((0..classes).map(|k| (k as f64 + 1.0) / (classes as f64 + 2.0)).collect(), gamma).unwrap()
        } else {
            FocalParams::new(Some(0.25), gamma).unwrap()
        };
        let loss = SigmoidFocalLoss::new(params, Reduction::Normalizer(3.0)).with_simd(level).unwrap();
        let (sparse, sparse_grad) = fused_sparse(&loss, &c, &c.x, 1.0);
        // One-hot targets; ignored anchors get weight 0.
        let mut onehot = vec![0.0f32; rows * classes];
        let mut weights = vec![1.0f32; rows];
        for (r, &l) in c.labels.iter().enumerate() {
            if l >= 0 { onehot[r * classes + l as usize] = 1.0; }
            if l == -2 { weights[r] = 0.0; }
        }
        let mut grad = vec![0.0f32; rows * classes];
        let dense = loss.forward_backward(
            TensorView::new(&c.x, &[rows, classes]).unwrap(),
            Target::weighted(TensorView::new(&onehot, &[rows, classes]).unwrap(), TensorView::new(&weights, &[rows]).unwrap()),
            1.0,
            TensorViewMut::new(&mut grad, &[rows, classes]).unwrap(),
        ).unwrap();
        prop_assert_eq!(sparse.to_bits(), dense.to_bits(), "sparse {} dense {}", sparse, dense);
        prop_assert_eq!(bits(&sparse_grad), bits(&grad));
    }

    #[test]
    fn ignored_anchors_contribute_nothing(
        rows in 1usize..40, classes in 1usize..20, seed in any::<u64>(), gamma in gamma_strategy(),
        junk in prop_oneof![Just(f32::NAN), Just(f32::INFINITY), -1e4f32..1e4],
    ) {
        let c = case(rows, classes, seed);
        let loss = SigmoidFocalLoss::new(FocalParams::new(Some(0.25), gamma).unwrap(), Reduction::Sum);
        let (before, grad_before) = fused_sparse(&loss, &c, &c.x, 1.0);
        let mut x = c.x.clone();
        for (r, &l) in c.labels.iter().enumerate() {
            if l == -2 { x[r * classes..(r + 1) * classes].fill(junk); }
        }
        let (after, grad_after) = fused_sparse(&loss, &c, &x, 1.0);
        prop_assert_eq!(before.to_bits(), after.to_bits());
        prop_assert_eq!(bits(&grad_before), bits(&grad_after));
        for (r, &l) in c.labels.iter().enumerate() {
            if l == -2 { prop_assert!(grad_after[r * classes..(r + 1) * classes].iter().all(|&g| g == 0.0)); }
        }
    }

    #[test]
    fn half_inputs_equal_the_f32_path_on_widened_values(
        rows in 1usize..30, classes in 1usize..30, seed in any::<u64>(), gamma in gamma_strategy(),
        level in level_strategy(),
    ) {
        let c = case(rows, classes, seed);
        let loss = SigmoidFocalLoss::new(FocalParams::new(Some(0.25), gamma).unwrap(), Reduction::Normalizer(5.0))
            .with_simd(level).unwrap();
        check_half::<half::f16>(&loss, &c)?;
        check_half::<half::bf16>(&loss, &c)?;
    }
}

/// Half inputs `H` give the f32 path's results on the widened values: the loss bit for bit, an
/// f32 gradient bit for bit, and an `H` gradient equal to the f32 gradient rounded to `H`.
fn check_half<H: Element>(loss: &SigmoidFocalLoss, c: &Case) -> Result<(), TestCaseError> {
    let shape = [c.rows, c.classes];
    let labels = Target::labels(TensorView::new(&c.labels, &[c.rows]).unwrap());
    let xh: Vec<H> = c.x.iter().map(|&v| H::from_f32(v)).collect();
    let widened: Vec<f32> = xh.iter().map(|v| v.to_f32()).collect();
    let (v32, g32) = fused_sparse(loss, c, &widened, 1.0);
    let xv = TensorView::new(&xh, &shape).unwrap();
    let mut g_f32 = vec![0.0f32; xh.len()];
    let v_a = loss.forward_backward(xv, labels, 1.0, TensorViewMut::new(&mut g_f32, &shape).unwrap()).unwrap();
    let mut g_half = vec![H::default(); xh.len()];
    let v_b = loss.forward_backward(xv, labels, 1.0, TensorViewMut::new(&mut g_half, &shape).unwrap()).unwrap();
    prop_assert_eq!(v_a.to_bits(), v32.to_bits(), "{}", H::NAME);
    prop_assert_eq!(v_b.to_bits(), v32.to_bits(), "{}", H::NAME);
    prop_assert_eq!(bits(&g_f32), bits(&g32), "{}", H::NAME);
    // Exact bits: widening a half value to f32 is injective.
    let expected: Vec<u32> = g32.iter().map(|&g| H::from_f32(g).to_f32().to_bits()).collect();
    let got: Vec<u32> = g_half.iter().map(|g| g.to_f32().to_bits()).collect();
    prop_assert_eq!(got, expected, "{}", H::NAME);
    Ok(())
}

#[test]
fn results_are_bit_identical_whatever_the_thread_count() {
    // Large enough for many chunks (the chunk size is 16K elements).
    let c = case(20_011, 80, 99);
    let mut rng = Rng::new(5);
    let t = rng.targets(c.x.len());
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let sparse = SigmoidFocalLoss::new(FocalParams::new(Some(0.25), 1.5).unwrap(), Reduction::Normalizer(20.0));
            let (v, g) = fused_sparse(&sparse, &c, &c.x, 1.0);
            let mut gd = vec![0.0f32; c.x.len()];
            let vd = QualityFocalLoss::new(2.0, Reduction::Sum)
                .unwrap()
                .forward_backward(
                    TensorView::new(&c.x, &[c.rows, c.classes]).unwrap(),
                    DenseTarget { targets: TensorView::new(&t, &[c.rows, c.classes]).unwrap(), weights: None },
                    1.0,
                    TensorViewMut::new(&mut gd, &[c.rows, c.classes]).unwrap(),
                )
                .unwrap();
            (v.to_bits(), bits(&g), vd.to_bits(), bits(&gd))
        })
    };
    let one = run(1);
    for threads in [2, 3, 8] {
        assert!(run(threads) == one, "{threads} threads differ from 1 thread");
    }
}

/// A fused call that writes only the gradient runs its background rows through a loop of its
/// own; its gradient and loss are the bits of a call that writes the elementwise loss as well
/// (the general loop): for uniform and per-class alpha, several gammas, rows wider than a
/// vector, and background rows holding NaN, infinities and huge logits.
#[test]
fn gradient_only_calls_give_the_bits_of_calls_with_every_output() {
    for level in SimdLevel::supported() {
        for (k, classes) in [16usize, 80, 160, 256].into_iter().enumerate() {
            let rows = 80;
            let mut rng = Rng::new(300 + k as u64);
            let mut x = rng.logits(rows * classes);
            // Mostly background, as in RetinaNet, with runs of background rows long enough to fill
            // whole blocks of the new loop at every class count: 16 rows at 16 classes (rows 16
            // to 31), 3 at 80, 1 at 160 and 256.
            let labels: Vec<i32> = (0..rows)
                .map(|r| match r {
                    5 | 40 | 41 | 70 => rng.below(classes) as i32,
                    12 | 55 => -2,
                    _ => -1,
                })
                .collect();
            // Non-finite logits in background rows, one of them (row 20) inside rows 16 to 31.
            for (at, v) in [(1, f32::NAN), (20, f32::INFINITY), (44, f32::NEG_INFINITY)] {
                x[at * classes + at % classes] = v;
            }
            for (gamma, per_class) in [(2.0, false), (2.0, true), (1.5, false), (0.5, true), (3.7, false)] {
                let params = if per_class {
                    FocalParams::per_class(
                        (0..classes).map(|j| (j as f64 + 1.0) / (classes as f64 + 2.0)).collect(),
                        gamma,
                    )
                } else {
                    FocalParams::new(Some(0.25), gamma)
                };
                let loss = SigmoidFocalLoss::new(params.unwrap(), Reduction::Normalizer(7.0)).with_simd(level).unwrap();
                let what = format!("{level:?} {rows}x{classes} gamma {gamma} per-class alpha {per_class}");
                // With the NaN (the sum is NaN), with it replaced by 0 (the sum is infinite), and
                // with +inf replaced too (only -inf is left: a finite sum).
                let no_nan: Vec<f32> = x.iter().map(|&v| if v.is_nan() { 0.0 } else { v }).collect();
                let only_minus_inf: Vec<f32> =
                    no_nan.iter().map(|&v| if v == f32::INFINITY { 0.0 } else { v }).collect();
                for x in [&x, &no_nan, &only_minus_inf] {
                    let ((fused, grad), (all, grad_all)) = gradient_only_and_every_output(&loss, x, &labels, classes);
                    assert!(
                        fused.to_bits() == all.to_bits() || fused.is_nan() && all.is_nan(),
                        "{what}: {fused} vs {all}"
                    );
                    assert!(grad == grad_all, "{what}: gradients differ");
                }
            }
        }
    }
}

/// `(loss, gradient bits)` of a fused call writing only the gradient, then of a call writing the
/// elementwise loss too.
fn gradient_only_and_every_output(
    loss: &SigmoidFocalLoss,
    x: &[f32],
    labels: &[i32],
    classes: usize,
) -> ((f64, Vec<u32>), (f64, Vec<u32>)) {
    let shape = [labels.len(), classes];
    let view = TensorView::new(x, &shape).unwrap();
    let target = || Target::labels(TensorView::new(labels, &[labels.len()]).unwrap());
    let mut grad = vec![0.0f32; x.len()];
    let fused = loss.forward_backward(view, target(), 1.0, TensorViewMut::new(&mut grad, &shape).unwrap()).unwrap();
    let (mut el, mut grad_all) = (vec![0.0f32; x.len()], vec![0.0f32; x.len()]);
    let outputs = Outputs {
        elementwise: Some(TensorViewMut::new(&mut el, &shape).unwrap()),
        grad: Some(TensorViewMut::new(&mut grad_all, &shape).unwrap()),
        upstream: 1.0,
    };
    let all = loss.compute(view, target(), outputs).unwrap();
    ((fused, bits(&grad)), (all, bits(&grad_all)))
}

/// Logits of 8 MiB and more are read ahead with prefetch hints (a different loop in the sparse
/// and dense kernels): every row's loss and gradient are the bits of the same rows passed in
/// pieces small enough to take the plain loop, at every level.
#[test]
fn large_tensors_give_the_bits_of_their_pieces() {
    let (rows, classes, pieces) = (27_003, 80, 3); // 2.16M logits, 8.6 MB
    let c = case(rows, classes, 77);
    let t = Rng::new(8).targets(c.x.len());
    let reduction = Reduction::Normalizer(250.0);
    for level in SimdLevel::supported() {
        let sparse =
            SigmoidFocalLoss::new(FocalParams::new(Some(0.25), 2.0).unwrap(), reduction).with_simd(level).unwrap();
        let dense =
            SigmoidFocalLoss::new(FocalParams::new(Some(0.25), 1.5).unwrap(), reduction).with_simd(level).unwrap();
        // Elementwise loss and gradient of rows `r`: sparse labels, then dense targets.
        let run = |r: std::ops::Range<usize>| {
            let span = r.start * classes..r.end * classes;
            let shape = [r.len(), classes];
            let x = TensorView::new(&c.x[span.clone()], &shape).unwrap();
            let labels = Target::labels(TensorView::new(&c.labels[r.clone()], &[r.len()]).unwrap());
            let targets = Target::dense(TensorView::new(&t[span], &shape).unwrap());
            let (sl, sg) = elementwise_bits(&sparse, x, labels, &shape);
            let (dl, dg) = elementwise_bits(&dense, x, targets, &shape);
            [sl, sg, dl, dg]
        };
        let whole = run(0..rows);
        let step = rows / pieces;
        for p in 0..pieces {
            let r = p * step..if p + 1 == pieces { rows } else { (p + 1) * step };
            let part = run(r.clone());
            for (k, name) in ["sparse loss", "sparse grad", "dense loss", "dense grad"].iter().enumerate() {
                let span = r.start * classes..r.end * classes;
                assert!(whole[k][span] == part[k][..], "{level:?} {name}: rows {r:?} differ from the whole tensor's");
            }
        }
    }
}

/// The bits of the elementwise loss and of the gradient (upstream 1).
fn elementwise_bits<L: FocalLoss>(
    loss: &L,
    x: TensorView<'_, f32>,
    target: L::Target<'_>,
    shape: &[usize],
) -> (Vec<u32>, Vec<u32>) {
    let n = shape.iter().product();
    let (mut l, mut g) = (vec![0.0f32; n], vec![0.0f32; n]);
    let outputs = Outputs {
        elementwise: Some(TensorViewMut::new(&mut l, shape).unwrap()),
        grad: Some(TensorViewMut::new(&mut g, shape).unwrap()),
        upstream: 1.0,
    };
    loss.compute(x, target, outputs).unwrap();
    (bits(&l), bits(&g))
}
