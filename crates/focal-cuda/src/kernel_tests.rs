//! Every kernel, emulated on the CPU, against `focal_core::reference` on small, odd and tail
//! shapes, through the same launch plans as the GPU path.

use crate::emulation::{emulator, run_case};
use crate::plan::{Dims, Dtype, Normalization, Objective, Weights};
use crate::verify::{self, CaseTarget, Rng, Tolerance};
use focal_core::{Element, FocalParams, VarifocalParams};
use half::{bf16, f16};

/// Shapes `[B, A, C]`: single elements, odd sizes, a pack tail, several blocks and grid-stride
/// tiles (8192 f16 or 4096 f32 elements per tile).
const SHAPES: &[(usize, usize, usize)] =
    &[(1, 1, 1), (1, 3, 5), (2, 37, 7), (3, 29, 80), (2, 301, 21)];

fn dtype_of<T: Element>() -> Dtype {
    match T::NAME {
        "f32" => Dtype::F32,
        "f16" => Dtype::F16,
        _ => Dtype::Bf16,
    }
}

/// Runs one case and compares every gradient element and the loss with the reference.
fn check<T: Element, G: Element>(
    objective: &Objective,
    dims: Dims,
    make_target: &dyn Fn(&mut Rng, Dims) -> CaseTarget,
    normalization: Normalization,
    seed: u64,
    misalign: bool,
) {
    let Some(emu) = emulator() else { return };
    let mut rng = Rng::new(seed);
    let logits = verify::random_logits::<T>(&mut rng, dims.numel());
    let target = make_target(&mut rng, dims);
    let upstream = 0.75;
    let out = run_case(
        emu,
        objective,
        dims,
        dtype_of::<T>(),
        dtype_of::<G>(),
        &logits,
        &target,
        normalization,
        upstream,
        G::from_f64(f64::NAN),
        misalign,
    )
    .expect("a valid request");
    let want = verify::reference(
        objective,
        dims,
        &logits,
        &target,
        normalization,
        upstream,
        1,
    )
    .expect("reference");
    let context = format!(
        "{objective:?} {dims:?} {}->{} {normalization:?} seed {seed} misaligned {misalign}",
        T::NAME,
        G::NAME
    );
    let grad: Vec<f64> = out.grad.iter().map(|g| g.to_f64()).collect();
    if let Err(m) = verify::compare(
        "grad",
        &grad,
        &want.grad,
        Tolerance::for_dtype(dtype_of::<G>()),
        want.unit,
    ) {
        panic!("{context}: {m}");
    }
    if let Err(m) = verify::compare(
        "loss",
        &[out.loss],
        &[want.loss],
        Tolerance::LOSS,
        want.unit / upstream,
    ) {
        panic!("{context}: {m}");
    }
    assert_eq!(
        out.loss_f32.to_bits(),
        (out.loss as f32).to_bits(),
        "{context}: f32 loss"
    );
    assert_eq!(
        out.first_bad_row,
        u32::MAX,
        "{context}: no label is out of range"
    );
}

fn sparse(softmax: bool) -> impl Fn(&mut Rng, Dims) -> CaseTarget {
    move |rng, dims| {
        CaseTarget::Sparse(verify::random_labels(
            rng,
            dims.rows(),
            dims.classes,
            softmax,
        ))
    }
}

fn dense(weights: Weights) -> impl Fn(&mut Rng, Dims) -> CaseTarget {
    move |rng, dims| verify::random_dense(rng, dims, weights)
}

/// One test body per (input, gradient) type pair.
macro_rules! per_dtype {
    ($name:ident, $body:ident) => {
        mod $name {
            use super::*;
            #[test]
            fn f32_to_f32() {
                $body::<f32, f32>();
            }
            #[test]
            fn f16_to_f16() {
                $body::<f16, f16>();
            }
            #[test]
            fn f16_to_f32() {
                $body::<f16, f32>();
            }
            #[test]
            fn bf16_to_bf16() {
                $body::<bf16, bf16>();
            }
            #[test]
            fn bf16_to_f32() {
                $body::<bf16, f32>();
            }
        }
    };
}

fn sigmoid_sparse_matches_reference<T: Element, G: Element>() {
    let objectives = [
        Objective::SigmoidFocal(FocalParams::retinanet()),
        Objective::SigmoidFocal(FocalParams::new(None, 0.0).unwrap()),
        Objective::SigmoidFocal(FocalParams::new(Some(0.4), 0.5).unwrap()),
        Objective::SigmoidFocal(
            FocalParams::per_class((0..80).map(|c| c as f64 / 80.0).collect(), 1.5).unwrap(),
        ),
    ];
    let norms = [
        Normalization::ForegroundPerImage,
        Normalization::ForegroundPerBatch,
        Normalization::Sum,
        Normalization::Mean,
        Normalization::Normalizer(3.5),
    ];
    for (s, &(b, a, c)) in SHAPES.iter().enumerate() {
        for (k, objective) in objectives.iter().enumerate() {
            if matches!(objective, Objective::SigmoidFocal(p) if matches!(p.alpha(), focal_core::Alpha::PerClass(v) if v.len() != c))
            {
                continue;
            }
            let norm = norms[(s + k) % norms.len()];
            check::<T, G>(
                objective,
                Dims::new(b, a, c),
                &sparse(false),
                norm,
                (s * 10 + k) as u64,
                (s + k) % 2 == 1,
            );
        }
    }
}
per_dtype!(sigmoid_sparse, sigmoid_sparse_matches_reference);

fn sigmoid_dense_matches_reference<T: Element, G: Element>() {
    let objectives = [
        Objective::SigmoidFocal(FocalParams::retinanet()),
        Objective::SigmoidFocal(FocalParams::new(None, 0.3).unwrap()),
    ];
    let weights = [Weights::None, Weights::PerAnchor, Weights::PerElement];
    for (s, &(b, a, c)) in SHAPES.iter().enumerate() {
        for (k, objective) in objectives.iter().enumerate() {
            let w = weights[(s + k) % 3];
            check::<T, G>(
                objective,
                Dims::new(b, a, c),
                &dense(w),
                Normalization::Normalizer(7.0),
                (s * 10 + k) as u64,
                (s + k) % 2 == 0,
            );
        }
    }
}
per_dtype!(sigmoid_dense, sigmoid_dense_matches_reference);

fn softmax_matches_reference<T: Element, G: Element>() {
    let objectives = [
        Objective::SoftmaxFocal(FocalParams::new(Some(0.25), 2.0).unwrap()),
        Objective::SoftmaxFocal(FocalParams::new(None, 0.7).unwrap()),
    ];
    let shapes: &[(usize, usize, usize)] =
        &[(1, 1, 1), (1, 3, 5), (2, 37, 81), (1, 40, 33), (2, 45, 3)];
    let norms = [
        Normalization::Mean,
        Normalization::Sum,
        Normalization::ForegroundPerImage,
    ];
    for (s, &(b, a, c)) in shapes.iter().enumerate() {
        for (k, objective) in objectives.iter().enumerate() {
            check::<T, G>(
                objective,
                Dims::new(b, a, c),
                &sparse(true),
                norms[(s + k) % 3],
                (s * 10 + k) as u64,
                k == 1,
            );
        }
    }
}
per_dtype!(softmax, softmax_matches_reference);

fn varifocal_matches_reference<T: Element, G: Element>() {
    let objectives = [
        Objective::Varifocal(VarifocalParams::mmdet()),
        Objective::Varifocal(VarifocalParams::new(0.5, 1.5, false).unwrap()),
    ];
    for (s, &(b, a, c)) in SHAPES.iter().enumerate() {
        for (k, objective) in objectives.iter().enumerate() {
            let w = [Weights::None, Weights::PerElement, Weights::PerAnchor][(s + k) % 3];
            check::<T, G>(
                objective,
                Dims::new(b, a, c),
                &dense(w),
                Normalization::Mean,
                (s * 10 + k) as u64,
                k == 1,
            );
        }
    }
}
per_dtype!(varifocal, varifocal_matches_reference);

fn quality_focal_matches_reference<T: Element, G: Element>() {
    let objectives = [
        Objective::QualityFocal { beta: 2.0 },
        Objective::QualityFocal { beta: 0.6 },
    ];
    for (s, &(b, a, c)) in SHAPES.iter().enumerate() {
        for (k, objective) in objectives.iter().enumerate() {
            let w = [Weights::PerAnchor, Weights::None, Weights::PerElement][(s + k) % 3];
            check::<T, G>(
                objective,
                Dims::new(b, a, c),
                &dense(w),
                Normalization::Sum,
                (s * 10 + k) as u64,
                k == 0,
            );
        }
    }
}
per_dtype!(quality_focal, quality_focal_matches_reference);
