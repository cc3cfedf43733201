//! Large `f32` gradients are written with non-temporal stores where the level has them
//! (AVX-512) and the vector width divides the row length. Those stores must be aligned, so the
//! kernels shift each vector into place; the result must be the same bits as plain stores
//! whatever the output's alignment, for every loss path that can stream, including vectors
//! redone by the scalar pass (NaN and infinite logits).

mod common;

use common::Rng;
use focal_core::{
    DenseTarget, FocalLoss, FocalParams, Reduction, SigmoidFocalLoss, SimdLevel, Target, TensorView, TensorViewMut,
    VarifocalLoss, VarifocalParams, with_stream_stores,
};

/// `x` with non-finite and extreme logits spread through it.
fn with_specials(mut x: Vec<f32>, rng: &mut Rng) -> Vec<f32> {
    let specials = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e4, -1e4, 0.0, -0.0, 88.0, -104.5];
    for _ in 0..x.len() / 500 + 1 {
        let i = rng.below(x.len());
        x[i] = specials[rng.below(specials.len())];
    }
    x
}

/// Labels with most rows background, so that whole blocks of background rows take the kernels'
/// flat path, and some rows of each other kind.
fn mostly_background(rows: usize, classes: usize, rng: &mut Rng) -> Vec<i32> {
    (0..rows)
        .map(|_| match rng.below(50) {
            0 => -2,
            1 | 2 => rng.below(classes) as i32,
            _ => -1,
        })
        .collect()
}

/// Same bits, counting +0 and -0 alike and every NaN alike.
fn bits(v: &[f32]) -> Vec<u32> {
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

/// Runs `f(grad)` with cached stores on a fresh output, then with non-temporal stores forced on
/// an output starting at each of 16 offsets in a larger buffer (pre-filled with NaN, so an
/// element left unwritten shows), and checks the loss and the gradient bit for bit.
fn check_offsets(what: &str, n: usize, f: impl Fn(&mut [f32]) -> f64) {
    let mut cached = vec![0.0f32; n];
    let want = with_stream_stores(Some(false), || f(&mut cached));
    let mut buf = vec![0.0f32; n + 16];
    for off in 0..16 {
        buf.fill(f32::NAN);
        let got = with_stream_stores(Some(true), || f(&mut buf[off..off + n]));
        assert_eq!(got.to_bits(), want.to_bits(), "{what}: loss differs at offset {off}");
        let (g, w) = (bits(&buf[off..off + n]), bits(&cached));
        if let Some(i) = (0..n).find(|&i| g[i] != w[i]) {
            panic!("{what}, offset {off}: grad[{i}] {} with streaming, {} without", buf[off + i], cached[i]);
        }
        assert!(buf[..off].iter().chain(&buf[off + n..]).all(|v| v.is_nan()), "{what}: wrote outside the output");
    }
}

#[test]
fn streamed_gradients_are_the_cached_bits_at_every_alignment() {
    let mut rng = Rng::new(11);
    for level in SimdLevel::supported() {
        // 16 and 80 classes stream on AVX-512 (16 lanes); 91 never does; 512 walks each row in
        // two blocks. Each shape spans several 16K-element chunks.
        for (rows, classes) in [(2_100, 16), (700, 80), (400, 91), (90, 512)] {
            let n = rows * classes;
            let x = with_specials(rng.logits(n), &mut rng);
            let per_class: Vec<f64> = (0..classes).map(|_| rng.uniform()).collect();
            for (labels, kind) in
                [(rng.labels(rows, classes), "mixed"), (mostly_background(rows, classes, &mut rng), "bg")]
            {
                let params = [
                    FocalParams::new(Some(0.25), 2.0).unwrap(),
                    FocalParams::per_class(per_class.clone(), 1.5).unwrap(),
                    FocalParams::new(None, 0.7).unwrap(),
                ];
                for p in params {
                    let what = format!("{level:?} sparse {rows}x{classes} {kind} gamma {} {:?}", p.gamma(), p.alpha());
                    let loss = SigmoidFocalLoss::new(p, Reduction::Normalizer(37.0)).with_simd(level).unwrap();
                    check_offsets(&what, n, |g| {
                        loss.forward_backward(
                            TensorView::new(&x, &[rows, classes]).unwrap(),
                            Target::labels(TensorView::new(&labels, &[rows]).unwrap()),
                            0.5,
                            TensorViewMut::new(g, &[rows, classes]).unwrap(),
                        )
                        .unwrap()
                    });
                }
            }
            // Dense soft targets with per-element weights, and varifocal.
            let t = rng.targets(n);
            let w: Vec<f32> = (0..n).map(|_| rng.uniform() as f32).collect();
            let loss = SigmoidFocalLoss::new(FocalParams::new(Some(0.25), 2.0).unwrap(), Reduction::Mean)
                .with_simd(level)
                .unwrap();
            check_offsets(&format!("{level:?} dense {rows}x{classes}"), n, |g| {
                let target = DenseTarget {
                    targets: TensorView::new(&t, &[rows, classes]).unwrap(),
                    weights: Some(TensorView::new(&w, &[rows, classes]).unwrap()),
                };
                loss.forward_backward(
                    TensorView::new(&x, &[rows, classes]).unwrap(),
                    Target::Dense(target),
                    1.0,
                    TensorViewMut::new(g, &[rows, classes]).unwrap(),
                )
                .unwrap()
            });
            let vfl = VarifocalLoss::new(VarifocalParams::mmdet(), Reduction::Sum).with_simd(level).unwrap();
            check_offsets(&format!("{level:?} varifocal {rows}x{classes}"), n, |g| {
                let target = DenseTarget { targets: TensorView::new(&t, &[rows, classes]).unwrap(), weights: None };
                vfl.forward_backward(
                    TensorView::new(&x, &[rows, classes]).unwrap(),
                    target,
                    1.0,
                    TensorViewMut::new(g, &[rows, classes]).unwrap(),
                )
                .unwrap()
            });
        }
    }
}

/// The elementwise losses, written beside a streamed gradient by plain stores, are unchanged too.
#[test]
fn elementwise_losses_beside_a_streamed_gradient() {
    let mut rng = Rng::new(12);
    let (rows, classes) = (500, 80);
    let n = rows * classes;
    let x = with_specials(rng.logits(n), &mut rng);
    let labels = rng.labels(rows, classes);
    let loss = SigmoidFocalLoss::new(FocalParams::new(Some(0.25), 2.0).unwrap(), Reduction::None);
    let run = |stream: bool, l: &mut [f32], g: &mut [f32]| {
        with_stream_stores(Some(stream), || {
            loss.compute(
                TensorView::new(&x, &[rows, classes]).unwrap(),
                Target::labels(TensorView::new(&labels, &[rows]).unwrap()),
                focal_core::Outputs {
                    elementwise: Some(TensorViewMut::new(l, &[rows, classes]).unwrap()),
                    grad: Some(TensorViewMut::new(g, &[rows, classes]).unwrap()),
                    upstream: 1.0,
                },
            )
            .unwrap()
        })
    };
    let (mut l0, mut g0) = (vec![0.0f32; n], vec![0.0f32; n]);
    let (mut l1, mut g1) = (vec![0.0f32; n + 3], vec![0.0f32; n + 5]);
    let s0 = run(false, &mut l0, &mut g0);
    let s1 = run(true, &mut l1[3..], &mut g1[5..]);
    assert_eq!(s0.to_bits(), s1.to_bits());
    for (what, a, b) in [("loss", &l0[..], &l1[3..]), ("grad", &g0[..], &g1[5..])] {
        let (a_bits, b_bits) = (bits(a), bits(b));
        if let Some(i) = (0..n).find(|&i| a_bits[i] != b_bits[i]) {
            panic!("{what}[{i}]: {} without streaming, {} with", a[i], b[i]);
        }
    }
}
