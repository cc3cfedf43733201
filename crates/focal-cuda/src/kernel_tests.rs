//! Every kernel against `focal_core::reference` on small, odd and tail shapes. Each property is
//! written once and runs on two backends: the CPU emulation of the kernel sources (always, in
//! CI) and the GPU (when there is one; `FOCAL_REQUIRE_GPU=1` makes its absence a failure).
//! Both go through the same launch plans.

use crate::device::{Call, DeviceElement, DeviceTarget, FocalCuda, Workspace};
use crate::emulation::{KernelOutput, emulator, run_case};
use crate::plan::{Dims, Dtype, Normalization, Objective, Variant, Weights};
use crate::verify::{self, CaseTarget, Rng, Tolerance};
use focal_core::{FocalParams, VarifocalParams};
use half::{bf16, f16};
use std::sync::OnceLock;

/// Where a test runs the kernels.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Backend {
    /// `kernels/*.cu` compiled as host C++ (see `emulation.rs`).
    Emulated,
    /// The embedded PTX on GPU 0.
    Gpu,
}

/// The GPU for the lib tests, opened once; `None` (after printing why) without one.
fn gpu() -> Option<&'static FocalCuda> {
    static GPU: OnceLock<Result<FocalCuda, String>> = OnceLock::new();
    let gpu = GPU.get_or_init(|| match verify::gpu_or_skip() {
        Ok(Some(f)) => Ok(f),
        Ok(None) => Err("no CUDA driver".into()),
        Err(e) => Err(format!("FOCAL_REQUIRE_GPU=1 but {e}")),
    });
    match gpu {
        Ok(f) => Some(f),
        Err(e) => {
            assert!(!e.starts_with("FOCAL_REQUIRE_GPU"), "{e}");
            println!("skipped: {e}");
            None
        }
    }
}

/// Uploads `host` one element past the start of the buffer when `misalign` (so every pointer
/// is off the 16-byte grid and the scalar path runs), with at least one element allocated.
fn upload<T: cudarc::driver::DeviceRepr + Default + Copy>(
    focal: &FocalCuda,
    host: &[T],
    misalign: bool,
) -> cudarc::driver::CudaSlice<T> {
    let mut v = vec![T::default(); usize::from(misalign)];
    v.extend_from_slice(host);
    if v.is_empty() {
        v.push(T::default());
    }
    focal.stream().clone_htod(&v).expect("upload")
}

/// One call on the GPU with NaN-poisoned outputs.
#[allow(clippy::too_many_arguments)]
fn run_gpu<T: DeviceElement, G: DeviceElement>(
    focal: &FocalCuda,
    objective: &Objective,
    dims: Dims,
    logits: &[T],
    target: &CaseTarget,
    normalization: Normalization,
    upstream: f64,
    misalign: bool,
) -> KernelOutput<G> {
    let s = focal.stream();
    let n = dims.numel();
    let off = usize::from(misalign);
    let span = off..off + n;
    let x = upload(focal, logits, misalign);
    let mut grad = upload(focal, &vec![G::from_f64(f64::NAN); n], misalign);
    let mut elementwise = upload(focal, &vec![f32::NAN; n], misalign);
    let (labels, targets, weights) = match target {
        CaseTarget::Sparse(l) => (Some(upload(focal, l, misalign)), None, None),
        CaseTarget::Dense { targets, weights } => (
            None,
            Some(upload(focal, targets, misalign)),
            weights.as_ref().map(|(k, w)| (*k, w.len(), upload(focal, w, misalign))),
        ),
    };
    let device_target = match (&labels, &targets) {
        (Some(l), _) => DeviceTarget::Sparse(l.slice(off..off + dims.rows())),
        (None, Some(t)) => DeviceTarget::Dense {
            targets: t.slice(span.clone()),
            weights: weights.as_ref().map(|(k, len, w)| (*k, w.slice(off..off + len))),
        },
        (None, None) => unreachable!("a case has labels or targets"),
    };
    let mut ws = Workspace::new(s, dims).expect("workspace");
    let variant = crate::emulation::VARIANT.with(|v| v.get());
    let call = Call { objective: objective.clone(), dims, normalization, upstream, variant, max_blocks: None };
    focal
        .forward_backward::<T, G>(
            &call,
            &x.slice(span.clone()),
            device_target,
            Some(&mut grad.slice_mut(span.clone())),
            Some(&mut elementwise.slice_mut(span.clone())),
            &mut ws,
        )
        .expect("a valid request");
    let first_bad_row = match ws.check_labels() {
        Ok(()) => u32::MAX,
        Err(crate::CudaError::BadLabel { row, .. }) => row as u32,
        Err(e) => panic!("{e}"),
    };
    KernelOutput {
        loss: ws.read_loss().expect("loss"),
        loss_f32: s.clone_dtoh(&ws.loss_device()).expect("loss")[0],
        grad: s.clone_dtoh(&grad.slice(span.clone())).expect("grad"),
        elementwise: s.clone_dtoh(&elementwise.slice(span)).expect("elementwise"),
        first_bad_row,
    }
}

impl Backend {
    /// One call with NaN-poisoned outputs, or `None` when this backend is not here.
    #[allow(clippy::too_many_arguments)]
    fn run<T: DeviceElement, G: DeviceElement>(
        self,
        objective: &Objective,
        dims: Dims,
        logits: &[T],
        target: &CaseTarget,
        normalization: Normalization,
        upstream: f64,
        misalign: bool,
    ) -> Option<KernelOutput<G>> {
        Some(match self {
            Backend::Emulated => run_case(
                emulator()?,
                objective,
                dims,
                T::DTYPE,
                G::DTYPE,
                logits,
                target,
                normalization,
                upstream,
                G::from_f64(f64::NAN),
                misalign,
            )
            .expect("a valid request"),
            Backend::Gpu => run_gpu(gpu()?, objective, dims, logits, target, normalization, upstream, misalign),
        })
    }

    /// Whether this backend can run here (prints the skip otherwise).
    fn here(self) -> bool {
        match self {
            Backend::Emulated => emulator().is_some(),
            Backend::Gpu => gpu().is_some(),
        }
    }
}

/// Shapes `[B, A, C]`: single elements, odd sizes, a pack tail, several blocks and grid-stride
/// tiles (8192 f16 or 4096 f32 elements per tile).
const SHAPES: &[(usize, usize, usize)] = &[(1, 1, 1), (1, 3, 5), (2, 37, 7), (3, 29, 80), (2, 301, 21)];

/// Runs one case and compares every gradient element and the loss with the reference.
fn check<T: DeviceElement, G: DeviceElement>(
    backend: Backend,
    objective: &Objective,
    dims: Dims,
    make_target: &dyn Fn(&mut Rng, Dims) -> CaseTarget,
    normalization: Normalization,
    seed: u64,
    misalign: bool,
) {
    let mut rng = Rng::new(seed);
    let logits = verify::random_logits_for::<T>(&mut rng, dims.numel(), objective);
    let target = make_target(&mut rng, dims);
    let upstream = 0.75;
    let Some(out) = backend.run::<T, G>(objective, dims, &logits, &target, normalization, upstream, misalign) else {
        return;
    };
    let want = verify::reference(objective, dims, &logits, &target, normalization, upstream, 1).expect("reference");
    let context = format!(
        "{backend:?} {objective:?} {dims:?} {}->{} {normalization:?} seed {seed} misaligned {misalign}",
        T::NAME,
        G::NAME
    );
    let grad: Vec<f64> = out.grad.iter().map(|g| g.to_f64()).collect();
    if let Err(m) = verify::compare("grad", &grad, &want.grad, Tolerance::for_dtype(G::DTYPE), want.unit) {
        panic!("{context}: {m}");
    }
    if let Err(m) = verify::compare("loss", &[out.loss], &[want.loss], Tolerance::LOSS, want.unit / upstream) {
        panic!("{context}: {m}");
    }
    let elementwise: Vec<f64> = out.elementwise.iter().map(|&v| f64::from(v)).collect();
    if let Err(m) = verify::compare("elementwise", &elementwise, &want.elementwise, Tolerance::F32, 1.0) {
        panic!("{context}: {m}");
    }
    assert_eq!(out.loss_f32.to_bits(), (out.loss as f32).to_bits(), "{context}: f32 loss");
    assert_eq!(out.first_bad_row, u32::MAX, "{context}: no label is out of range");
}

fn sparse(softmax: bool) -> impl Fn(&mut Rng, Dims) -> CaseTarget {
    move |rng, dims| CaseTarget::Sparse(verify::random_labels(rng, dims.rows(), dims.classes, softmax))
}

fn dense(weights: Weights) -> impl Fn(&mut Rng, Dims) -> CaseTarget {
    move |rng, dims| verify::random_dense(rng, dims, weights)
}

/// One test per (backend, input type, gradient type) from one body, called with the backend and
/// any further arguments given (a variant, say).
macro_rules! per_dtype {
    ($name:ident, $body:ident $(, $arg:expr)*) => {
        mod $name {
            use super::*;
            per_dtype!(@backend emulated, Backend::Emulated, $body $(, $arg)*);
            per_dtype!(@backend gpu, Backend::Gpu, $body $(, $arg)*);
        }
    };
    (@backend $module:ident, $backend:expr, $body:ident $(, $arg:expr)*) => {
        mod $module {
            use super::*;
            #[test]
            fn f32_to_f32() {
                $body::<f32, f32>($backend $(, $arg)*);
            }
            #[test]
            fn f16_to_f16() {
                $body::<f16, f16>($backend $(, $arg)*);
            }
            #[test]
            fn f16_to_f32() {
                $body::<f16, f32>($backend $(, $arg)*);
            }
            #[test]
            fn bf16_to_bf16() {
                $body::<bf16, bf16>($backend $(, $arg)*);
            }
            #[test]
            fn bf16_to_f32() {
                $body::<bf16, f32>($backend $(, $arg)*);
            }
        }
    };
}

/// One test per backend from one body.
macro_rules! per_backend {
    ($name:ident) => {
        mod $name {
            #[test]
            fn emulated() {
                super::$name(super::Backend::Emulated);
            }
            #[test]
            fn gpu() {
                super::$name(super::Backend::Gpu);
            }
        }
    };
}

fn sigmoid_sparse_matches_reference<T: DeviceElement, G: DeviceElement>(backend: Backend) {
    let objectives = [
        Objective::SigmoidFocal(FocalParams::retinanet()),
        Objective::SigmoidFocal(FocalParams::new(None, 0.0).unwrap()),
        Objective::SigmoidFocal(FocalParams::new(Some(0.4), 0.5).unwrap()),
        Objective::SigmoidFocal(FocalParams::per_class((0..80).map(|c| c as f64 / 80.0).collect(), 1.5).unwrap()),
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
                backend,
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

/// Runs `f` with `variant` chosen for this thread's kernel calls, then goes back to v1.
fn with_variant(variant: crate::plan::Variant, f: impl FnOnce()) {
    crate::emulation::VARIANT.with(|v| v.set(variant));
    f();
    crate::emulation::VARIANT.with(|v| v.set(crate::plan::Variant::V1));
}

/// Another variant on the same cases. The emulation checks its logic with exact host
/// functions; the precision of its hardware approximations shows on a GPU.
fn variant_matches_reference<T: DeviceElement, G: DeviceElement>(backend: Backend, variant: Variant) {
    with_variant(variant, || sigmoid_sparse_matches_reference::<T, G>(backend));
}
// v4: both of its entry points (RetinaNet's gamma 2 with a scalar alpha, and the general one for
// the other objectives), whole packs (C = 80, 21, 7 against packs of 4 or 8) and the element
// path (C = 1, 5).
per_dtype!(sigmoid_sparse_v4, variant_matches_reference, Variant::V4);
// v6: its gamma-2 entry points (the other objectives run v4's general ones), whole packs with its
// all-background fast path and v4's pack path behind it, and the element path (C = 1, 5), on
// the staged walk (the shapes are small, so each block has a stage or two; `ring_wraps_around`
// walks many per block).
per_dtype!(sigmoid_sparse_v6, variant_matches_reference, Variant::V6);
// v7: its f32 entry point (half inputs run v6's).
per_dtype!(sigmoid_sparse_v7, variant_matches_reference, Variant::V7);

/// The fast path of v6 and v7 against the reference where it must step aside:
/// packs of all-background rows with a NaN logit, ignored rows with NaN logits, a bad label, and
/// packs that straddle two images with different scales (one foreground anchor in image 0, two
/// in image 1), for packs of 4 (f32) and 8 (half) elements, on the vector and the scalar
/// (misaligned) path.
fn fast_path_steps_aside<T: DeviceElement, G: DeviceElement>(backend: Backend, variant: Variant) {
    with_variant(variant, || {
        // 2 images x 7 anchors x 9 classes: image 1 starts at element 63, inside a pack.
        let dims = Dims::new(2, 7, 9);
        let mut labels = vec![-1; 14];
        labels[2] = 3;
        labels[9] = 0;
        labels[12] = 8;
        labels[4] = -2;
        let mut rng = Rng::new(21);
        let mut logits = verify::random_logits::<T>(&mut rng, dims.numel());
        // NaN in a background row (row 1), and in an ignored row (row 4).
        logits[10] = T::from_f64(f64::NAN);
        logits[37] = T::from_f64(f64::NAN);
        let objective = Objective::SigmoidFocal(FocalParams::retinanet());
        let target = CaseTarget::Sparse(labels.clone());
        let norm = Normalization::ForegroundPerImage;
        let want = verify::reference(&objective, dims, &logits, &target, norm, 0.75, 1).expect("reference");
        for misalign in [false, true] {
            let Some(out) = backend.run::<T, G>(&objective, dims, &logits, &target, norm, 0.75, misalign) else {
                return;
            };
            let grad: Vec<f64> = out.grad.iter().map(|g| g.to_f64()).collect();
            if let Err(m) = verify::compare("grad", &grad, &want.grad, Tolerance::for_dtype(G::DTYPE), want.unit) {
                panic!("{} -> {} misaligned {misalign}: {m}", T::NAME, G::NAME);
            }
            assert!(grad[10].is_nan(), "NaN in must give NaN out");
            assert!(grad[36..45].iter().all(|&g| g == 0.0), "ignored row, NaN logit included");
            assert!(out.loss.is_nan());
            assert_eq!(out.first_bad_row, u32::MAX);
        }
        // Without the NaN logit in row 1 the loss is finite and matches the reference.
        logits[10] = T::from_f64(0.5);
        let want = verify::reference(&objective, dims, &logits, &target, norm, 0.75, 1).expect("reference");
        let Some(out) = backend.run::<T, G>(&objective, dims, &logits, &target, norm, 0.75, false) else { return };
        if let Err(m) = verify::compare("loss", &[out.loss], &[want.loss], Tolerance::LOSS, want.unit / 0.75) {
            panic!("{} -> {}: {m}", T::NAME, G::NAME);
        }
        // A bad label in a row whose neighbours are background.
        labels[6] = 9;
        let target = CaseTarget::Sparse(labels);
        let Some(out) = backend.run::<T, G>(&objective, dims, &logits, &target, norm, 0.75, false) else { return };
        assert_eq!(out.first_bad_row, 6);
        assert!(out.grad[54..63].iter().all(|g| g.to_f64().is_nan()));
        assert!(out.grad[45..54].iter().chain(&out.grad[63..72]).all(|g| g.to_f64().is_finite()));
    });
}
per_dtype!(sigmoid_sparse_v6_fast_path, fast_path_steps_aside, Variant::V6);
per_dtype!(sigmoid_sparse_v7_fast_path, fast_path_steps_aside, Variant::V7);

/// The staged walk (v6, v7) with a grid of 1, 2 and 3 blocks, so that each block walks 3 to 9
/// stages (its ring of 8 slots, 4 for v7, wraps around, and later stages are copied while
/// earlier ones are computed): every element against the reference, foreground rows and ignored
/// rows included, aligned and misaligned, at each pair of types; and the gradient's bits do not
/// depend on the grid.
fn ring_wraps_around<T: DeviceElement, G: DeviceElement>(backend: Backend, variant: Variant) {
    if !backend.here() {
        return;
    }
    with_variant(variant, || {
        // 4,504 f32 packs (18 stages of v6, 9 of v7) or 2,252 half packs (9 stages), and a tail
        // of 2.
        let dims = Dims::new(2, 1001, 9);
        let objective = Objective::SigmoidFocal(FocalParams::retinanet());
        let mut rng = Rng::new(33);
        let logits = verify::random_logits::<T>(&mut rng, dims.numel());
        let labels = verify::random_labels(&mut rng, dims.rows(), dims.classes, false);
        let target = CaseTarget::Sparse(labels);
        let norm = Normalization::ForegroundPerImage;
        let mut first_grad: Option<Vec<u64>> = None;
        for cap in [1, 2, 3] {
            crate::plan::GRID_CAP.with(|c| c.set(cap));
            let want = verify::reference(&objective, dims, &logits, &target, norm, 0.5, 1).expect("reference");
            for misalign in [false, true] {
                let out = backend.run::<T, G>(&objective, dims, &logits, &target, norm, 0.5, misalign);
                let out = out.expect("backend is here");
                let grad: Vec<f64> = out.grad.iter().map(|g| g.to_f64()).collect();
                let tolerance = Tolerance::for_dtype(G::DTYPE);
                if let Err(m) = verify::compare("grad", &grad, &want.grad, tolerance, want.unit) {
                    panic!("{} -> {} grid {cap} misaligned {misalign}: {m}", T::NAME, G::NAME);
                }
                if let Err(m) = verify::compare("loss", &[out.loss], &[want.loss], Tolerance::LOSS, want.unit / 0.5) {
                    panic!("{} -> {} grid {cap} misaligned {misalign}: {m}", T::NAME, G::NAME);
                }
                let bits: Vec<u64> = grad.iter().map(|g| g.to_bits()).collect();
                match &first_grad {
                    None => first_grad = Some(bits),
                    Some(first) => assert!(first == &bits, "gradient bits changed with grid {cap}"),
                }
            }
        }
        crate::plan::GRID_CAP.with(|c| c.set(crate::plan::MAX_GRID));
    });
}
per_dtype!(v6_ring, ring_wraps_around, Variant::V6);
per_dtype!(v7_ring, ring_wraps_around, Variant::V7);

fn sigmoid_dense_matches_reference<T: DeviceElement, G: DeviceElement>(backend: Backend) {
    let objectives = [
        Objective::SigmoidFocal(FocalParams::retinanet()),
        Objective::SigmoidFocal(FocalParams::new(None, 0.3).unwrap()),
    ];
    let weights = [Weights::None, Weights::PerAnchor, Weights::PerElement];
    dense_cases::<T, G>(backend, &objectives, weights, Normalization::Normalizer(7.0));
}
per_dtype!(sigmoid_dense, sigmoid_dense_matches_reference);

fn softmax_matches_reference<T: DeviceElement, G: DeviceElement>(backend: Backend) {
    let objectives = [
        Objective::SoftmaxFocal(FocalParams::new(Some(0.25), 2.0).unwrap()),
        Objective::SoftmaxFocal(FocalParams::new(None, 0.7).unwrap()),
    ];
    let shapes: &[(usize, usize, usize)] = &[(1, 1, 1), (1, 3, 5), (2, 37, 81), (1, 40, 33), (2, 45, 3)];
    let norms = [Normalization::Mean, Normalization::Sum, Normalization::ForegroundPerImage];
    for (s, &(b, a, c)) in shapes.iter().enumerate() {
        for (k, objective) in objectives.iter().enumerate() {
            check::<T, G>(
                backend,
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

/// The dense-target cases of one loss: every shape, each objective, weights rotating through
/// `weights`, odd objectives on misaligned buffers.
fn dense_cases<T: DeviceElement, G: DeviceElement>(
    backend: Backend,
    objectives: &[Objective],
    weights: [Weights; 3],
    normalization: Normalization,
) {
    for (s, &(b, a, c)) in SHAPES.iter().enumerate() {
        for (k, objective) in objectives.iter().enumerate() {
            let w = weights[(s + k) % 3];
            let dims = Dims::new(b, a, c);
            check::<T, G>(backend, objective, dims, &dense(w), normalization, (s * 10 + k) as u64, k % 2 == 1);
        }
    }
}

fn varifocal_matches_reference<T: DeviceElement, G: DeviceElement>(backend: Backend) {
    let objectives = [
        Objective::Varifocal(VarifocalParams::mmdet()),
        Objective::Varifocal(VarifocalParams::new(0.5, 1.5, false).unwrap()),
    ];
    dense_cases::<T, G>(
        backend,
        &objectives,
        [Weights::None, Weights::PerElement, Weights::PerAnchor],
        Normalization::Mean,
    );
}
per_dtype!(varifocal, varifocal_matches_reference);

fn quality_focal_matches_reference<T: DeviceElement, G: DeviceElement>(backend: Backend) {
    let objectives = [Objective::QualityFocal { beta: 0.6 }, Objective::QualityFocal { beta: 2.0 }];
    dense_cases::<T, G>(
        backend,
        &objectives,
        [Weights::PerAnchor, Weights::None, Weights::PerElement],
        Normalization::Sum,
    );
}
per_dtype!(quality_focal, quality_focal_matches_reference);

/// The RetinaNet loss on `backend` for the properties below.
fn run_sigmoid_sparse(
    backend: Backend,
    logits: &[f32],
    labels: &[i32],
    dims: Dims,
    misalign: bool,
) -> Option<KernelOutput<f32>> {
    backend.run::<f32, f32>(
        &Objective::SigmoidFocal(FocalParams::retinanet()),
        dims,
        logits,
        &CaseTarget::Sparse(labels.to_vec()),
        Normalization::ForegroundPerImage,
        1.0,
        misalign,
    )
}

fn nan_logit_gives_nan_gradient_and_loss(backend: Backend) {
    let dims = Dims::new(1, 5, 3);
    let mut logits = vec![0.5f32; 15];
    logits[7] = f32::NAN;
    let Some(out) = run_sigmoid_sparse(backend, &logits, &[0, -1, 2, -1, 1], dims, false) else { return };
    assert!(out.grad[7].is_nan(), "NaN in must give NaN out");
    assert!(out.grad.iter().enumerate().all(|(i, g)| i == 7 || g.is_finite()));
    assert!(out.loss.is_nan());
}
per_backend!(nan_logit_gives_nan_gradient_and_loss);

fn out_of_range_label_is_flagged_with_its_row(backend: Backend) {
    let dims = Dims::new(1, 4, 3);
    let Some(out) = run_sigmoid_sparse(backend, &[0.25f32; 12], &[0, -1, 3, -7], dims, false) else { return };
    assert_eq!(out.first_bad_row, 2);
    assert!(out.grad[6..12].iter().all(|g| g.is_nan()));
    assert!(out.grad[..6].iter().all(|g| g.is_finite()));
}
per_backend!(out_of_range_label_is_flagged_with_its_row);

fn ignored_anchors_get_zero_gradient(backend: Backend) {
    let dims = Dims::new(1, 3, 4);
    let Some(out) = run_sigmoid_sparse(backend, &[3.0f32; 12], &[-2, 1, -2], dims, false) else { return };
    assert!(out.grad[..4].iter().chain(&out.grad[8..]).all(|&g| g == 0.0));
    assert!(out.grad[4..8].iter().all(|&g| g != 0.0));
}
per_backend!(ignored_anchors_get_zero_gradient);

fn scalar_path_and_repeated_runs_are_bit_identical(backend: Backend) {
    if !backend.here() {
        return;
    }
    // Several tiles and a tail: 2 * 1000 * 9 = 18000 elements.
    let dims = Dims::new(2, 1000, 9);
    let mut rng = Rng::new(11);
    let logits = verify::random_logits::<f32>(&mut rng, dims.numel());
    let labels = verify::random_labels(&mut rng, dims.rows(), dims.classes, false);
    let run = |misalign| run_sigmoid_sparse(backend, &logits, &labels, dims, misalign).expect("backend is here");
    let vector = run(false);
    for other in [run(true), run(false)] {
        assert_eq!(other.loss.to_bits(), vector.loss.to_bits());
        assert!(other.grad.iter().zip(&vector.grad).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}
per_backend!(scalar_path_and_repeated_runs_are_bit_identical);

/// The whole-pack paths of v4 and v6 (C >= the pack size) keep the element rules of the element
/// path: NaN in gives NaN out, an ignored anchor contributes nothing even with a NaN logit, a bad
/// label is flagged with its row and gives NaN there, on the vector and the scalar (misaligned)
/// path.
fn pack_path_keeps_the_element_rules(backend: Backend, variant: crate::plan::Variant) {
    with_variant(variant, || {
        // Packs of 4 f32 straddle the rows of 5 classes.
        let dims = Dims::new(1, 6, 5);
        let mut logits = vec![0.5f32; 30];
        logits[7] = f32::NAN; // row 1, background
        logits[11] = f32::NAN; // row 2, ignored
        let labels = [0, -1, -2, 4, 7, 1]; // row 4: class 7 of 5
        for misalign in [false, true] {
            let Some(out) = run_sigmoid_sparse(backend, &logits, &labels, dims, misalign) else { return };
            assert!(out.grad[7].is_nan(), "NaN in must give NaN out (misalign {misalign})");
            assert!(out.grad[10..15].iter().all(|&g| g == 0.0), "ignored row (misalign {misalign})");
            assert_eq!(out.first_bad_row, 4);
            assert!(out.grad[20..25].iter().all(|g| g.is_nan()));
            let mut elsewhere = (0..30).filter(|&i| i != 7 && !(10..15).contains(&i) && !(20..25).contains(&i));
            assert!(elsewhere.all(|i| out.grad[i].is_finite() && out.grad[i] != 0.0));
            assert!(out.loss.is_nan());
        }
    });
}
fn v4_pack_path_keeps_the_element_rules(backend: Backend) {
    pack_path_keeps_the_element_rules(backend, crate::plan::Variant::V4);
}
per_backend!(v4_pack_path_keeps_the_element_rules);

fn v6_pack_path_keeps_the_element_rules(backend: Backend) {
    pack_path_keeps_the_element_rules(backend, crate::plan::Variant::V6);
}
per_backend!(v6_pack_path_keeps_the_element_rules);

/// v4, v6 and v7: the whole-pack paths and the scalar path give the same bits, for every entry point,
/// on rows that packs straddle, across the image boundary (element 9009, inside a pack) and on
/// a tail; repeated runs too.
fn pack_and_scalar_paths_are_bit_identical<T: DeviceElement>(backend: Backend, variant: crate::plan::Variant) {
    if !backend.here() {
        return;
    }
    with_variant(variant, || {
        let dims = Dims::new(2, 1001, 9);
        let mut rng = Rng::new(12);
        let logits = verify::random_logits::<T>(&mut rng, dims.numel());
        let labels = verify::random_labels(&mut rng, dims.rows(), dims.classes, false);
        let objectives = [
            Objective::SigmoidFocal(FocalParams::retinanet()),
            Objective::SigmoidFocal(FocalParams::new(Some(0.25), 1.5).unwrap()),
            Objective::SigmoidFocal(FocalParams::per_class((0..9).map(|c| c as f64 / 9.0).collect(), 2.0).unwrap()),
        ];
        for objective in &objectives {
            let target = CaseTarget::Sparse(labels.clone());
            let run = |misalign| {
                backend
                    .run::<T, T>(objective, dims, &logits, &target, Normalization::ForegroundPerImage, 0.5, misalign)
                    .expect("backend is here")
            };
            let vector = run(false);
            for other in [run(true), run(false)] {
                assert_eq!(other.loss.to_bits(), vector.loss.to_bits(), "{objective:?}");
                assert!(other.grad.iter().zip(&vector.grad).all(|(a, b)| a.to_f64().to_bits() == b.to_f64().to_bits()));
            }
        }
    });
}

fn v4_pack_and_scalar_paths_are_bit_identical(backend: Backend) {
    pack_and_scalar_paths_are_bit_identical::<f32>(backend, crate::plan::Variant::V4);
}
per_backend!(v4_pack_and_scalar_paths_are_bit_identical);

fn v6_pack_and_scalar_paths_are_bit_identical(backend: Backend) {
    pack_and_scalar_paths_are_bit_identical::<f32>(backend, crate::plan::Variant::V6);
    pack_and_scalar_paths_are_bit_identical::<bf16>(backend, crate::plan::Variant::V6);
    pack_and_scalar_paths_are_bit_identical::<f16>(backend, crate::plan::Variant::V6);
}
per_backend!(v6_pack_and_scalar_paths_are_bit_identical);

fn v7_pack_and_scalar_paths_are_bit_identical(backend: Backend) {
    pack_and_scalar_paths_are_bit_identical::<f32>(backend, Variant::V7);
}
per_backend!(v7_pack_and_scalar_paths_are_bit_identical);

fn empty_input_is_a_zero_loss(backend: Backend) {
    let Some(out) = run_sigmoid_sparse(backend, &[], &[], Dims::new(2, 0, 80), false) else { return };
    assert_eq!(out.loss, 0.0);
}
per_backend!(empty_input_is_a_zero_loss);

fn grid_stride_loops_match_reference(backend: Backend) {
    // At most 2 blocks: 5 elementwise tiles and 13 softmax tiles are walked with a grid stride.
    crate::plan::GRID_CAP.with(|c| c.set(2));
    let sigmoid = Objective::SigmoidFocal(FocalParams::retinanet());
    let dims = Dims::new(2, 1000, 9);
    check::<f32, f32>(backend, &sigmoid, dims, &sparse(false), Normalization::ForegroundPerImage, 1, false);
    check::<bf16, f32>(backend, &sigmoid, dims, &dense(Weights::PerElement), Normalization::Sum, 2, true);
    let softmax = Objective::SoftmaxFocal(FocalParams::retinanet());
    check::<f16, f16>(backend, &softmax, Dims::new(2, 200, 7), &sparse(true), Normalization::Mean, 3, false);
    crate::plan::GRID_CAP.with(|c| c.set(crate::plan::MAX_GRID));
}
per_backend!(grid_stride_loops_match_reference);

#[test]
fn gradient_in_place_over_logits_matches_separate_buffer() {
    let Some(emu) = emulator() else { return };
    // 5,250 bf16 packs: with at most 2 blocks, each of v6's blocks walks 11 stages, so its ring
    // wraps while the gradient is written over logits that later stages read.
    let dims = Dims::new(2, 3000, 7);
    let mut rng = Rng::new(5);
    let logits = verify::random_logits::<bf16>(&mut rng, dims.numel());
    let labels = verify::random_labels(&mut rng, dims.rows(), dims.classes, true);
    let softmax = Objective::SoftmaxFocal(FocalParams::retinanet());
    let sigmoid = Objective::SigmoidFocal(FocalParams::retinanet());
    crate::plan::GRID_CAP.with(|c| c.set(2));
    for (objective, variant) in
        [(&softmax, Variant::V1), (&sigmoid, Variant::V1), (&sigmoid, Variant::V4), (&sigmoid, Variant::V6)]
    {
        let target = CaseTarget::Sparse(labels.clone());
        let mut separate = None;
        with_variant(variant, || {
            separate = run_case(
                emu,
                objective,
                dims,
                Dtype::Bf16,
                Dtype::Bf16,
                &logits,
                &target,
                Normalization::Sum,
                1.0,
                bf16::NAN,
                false,
            )
            .ok();
        });
        let separate = separate.expect("the emulator runs the case");
        let mut x = logits.clone();
        let mut ws = crate::emulation::HostWorkspace::new(dims);
        let bufs = crate::plan::Buffers {
            logits: x.as_mut_ptr() as u64,
            grad: x.as_mut_ptr() as u64,
            labels: labels.as_ptr() as u64,
            ..Default::default()
        };
        let req = crate::plan::Request {
            objective,
            dims,
            input: Dtype::Bf16,
            grad: Dtype::Bf16,
            target: target.kind(),
            normalization: Normalization::Sum,
            upstream: 1.0,
            variant,
            max_blocks: None,
        };
        emu.run(&crate::plan::plan(&req, &bufs, &ws.ptrs()).unwrap());
        assert!(x.iter().zip(&separate.grad).all(|(a, b)| a.to_bits() == b.to_bits()), "{objective:?} {variant:?}");
        assert_eq!(ws.loss[0].to_bits(), separate.loss.to_bits(), "{objective:?} {variant:?}");
    }
    crate::plan::GRID_CAP.with(|c| c.set(crate::plan::MAX_GRID));
}

mod random_problems {
    use super::*;
    use proptest::prelude::*;

    fn objective(kind: usize, alpha: Option<f64>, gamma: f64) -> Objective {
        match kind {
            0 | 1 => Objective::SigmoidFocal(FocalParams::new(alpha, gamma).unwrap()),
            2 => Objective::SoftmaxFocal(FocalParams::new(alpha, gamma).unwrap()),
            3 => Objective::Varifocal(VarifocalParams::new(alpha.unwrap_or(0.75), gamma, gamma > 1.0).unwrap()),
            _ => Objective::QualityFocal { beta: gamma },
        }
    }

    proptest! {
        // A fixed seed, as every test here; 2,100 cases with random seeds ran clean once the
        // quality-focal overflow they found was fixed (see kernels/README.md).
        #![proptest_config(ProptestConfig {
            cases: 64,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0xf0ca1),
            ..ProptestConfig::default()
        })]

        /// Any shape, parameters, normalisation, alignment and type pair matches the oracle.
        #[test]
        fn random_problems_match_reference(
            images in 1usize..4,
            anchors in 0usize..70,
            classes in 1usize..90,
            kind in 0usize..5,
            alpha in proptest::option::of(0.0f64..=1.0),
            gamma in 0.0f64..3.0,
            norm in 0usize..5,
            pair in 0usize..5,
            misalign in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let objective = objective(kind, alpha, gamma);
            let dims = Dims::new(images, anchors, classes);
            let sparse_target = matches!(kind, 0 | 2);
            let normalization = match norm {
                0 => Normalization::Sum,
                1 => Normalization::Mean,
                2 => Normalization::Normalizer(0.5 + gamma),
                3 if sparse_target => Normalization::ForegroundPerImage,
                _ if sparse_target => Normalization::ForegroundPerBatch,
                _ => Normalization::Normalizer(3.0),
            };
            let softmax = kind == 2;
            let weights = [Weights::None, Weights::PerAnchor, Weights::PerElement][norm % 3];
            let target = move |rng: &mut verify::Rng, dims: Dims| {
                if sparse_target {
                    CaseTarget::Sparse(verify::random_labels(rng, dims.rows(), dims.classes, softmax))
                } else {
                    verify::random_dense(rng, dims, weights)
                }
            };
            match pair {
                0 => check::<f32, f32>(Backend::Emulated, &objective, dims, &target, normalization, seed, misalign),
                1 => check::<f16, f16>(Backend::Emulated, &objective, dims, &target, normalization, seed, misalign),
                2 => check::<f16, f32>(Backend::Emulated, &objective, dims, &target, normalization, seed, misalign),
                3 => check::<bf16, bf16>(Backend::Emulated, &objective, dims, &target, normalization, seed, misalign),
                _ => check::<bf16, f32>(Backend::Emulated, &objective, dims, &target, normalization, seed, misalign),
            }
        }
    }
}
