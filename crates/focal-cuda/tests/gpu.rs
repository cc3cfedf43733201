//! The kernels on a real GPU against `focal_core::reference`. Without a CUDA driver each test
//! prints `skipped: no CUDA driver` and passes; `FOCAL_REQUIRE_GPU=1` makes that a failure.
//! (`cargo xtask check-kernels` runs the large shapes; these stay small.)

use focal_core::{FocalParams, VarifocalParams};
use focal_cuda::verify::{self, CaseTarget, Rng, Tolerance};
use focal_cuda::{
    Call, CudaError, DeviceElement, DeviceTarget, Dims, FocalCuda, HostTarget, Normalization, Objective, Weights,
    Workspace,
};
use half::{bf16, f16};

/// The device, or `None` after printing why the test is skipped.
fn gpu() -> Option<FocalCuda> {
    verify::gpu_or_skip().expect("FOCAL_REQUIRE_GPU=1 but no GPU")
}

fn host_target(t: &CaseTarget) -> HostTarget<'_> {
    match t {
        CaseTarget::Sparse(l) => HostTarget::Sparse(l),
        CaseTarget::Dense { targets, weights } => {
            HostTarget::Dense { targets, weights: weights.as_ref().map(|(k, w)| (*k, w.as_slice())) }
        }
    }
}

fn check<T: DeviceElement, G: DeviceElement>(focal: &FocalCuda, call: &Call, seed: u64) {
    let mut rng = Rng::new(seed);
    let dims = call.dims;
    let logits = verify::random_logits_for::<T>(&mut rng, dims.numel(), &call.objective);
    let target = match call.objective {
        Objective::SigmoidFocal(_) if seed % 2 == 1 => verify::random_dense(&mut rng, dims, Weights::PerAnchor),
        Objective::SigmoidFocal(_) => {
            CaseTarget::Sparse(verify::random_labels(&mut rng, dims.rows(), dims.classes, false))
        }
        Objective::SoftmaxFocal(_) => {
            CaseTarget::Sparse(verify::random_labels(&mut rng, dims.rows(), dims.classes, true))
        }
        _ => verify::random_dense(&mut rng, dims, Weights::PerElement),
    };
    let out = focal.compute_host::<T, G>(call, &logits, host_target(&target)).expect("the call runs");
    let want = verify::reference(&call.objective, dims, &logits, &target, call.normalization, call.upstream, 4)
        .expect("reference");
    let grad: Vec<f64> = out.grad.iter().map(|g| g.to_f64()).collect();
    let ctx = format!("{call:?} {}->{}", T::NAME, G::NAME);
    if let Err(m) = verify::compare("grad", &grad, &want.grad, Tolerance::for_dtype(G::DTYPE), want.unit) {
        panic!("{ctx}: {m}");
    }
    if let Err(m) = verify::compare("loss", &[out.loss], &[want.loss], Tolerance::LOSS, want.unit / call.upstream) {
        panic!("{ctx}: {m}");
    }
}

fn calls(dims: Dims) -> Vec<Call> {
    let call = |objective, normalization| Call { upstream: 0.5, ..Call::new(objective, dims, normalization) };
    vec![
        call(Objective::SigmoidFocal(FocalParams::retinanet()), Normalization::ForegroundPerImage),
        call(Objective::SigmoidFocal(FocalParams::new(Some(0.25), 1.5).unwrap()), Normalization::Normalizer(5.0)),
        call(Objective::SoftmaxFocal(FocalParams::retinanet()), Normalization::Mean),
        call(Objective::Varifocal(VarifocalParams::mmdet()), Normalization::Sum),
        call(Objective::QualityFocal { beta: 2.0 }, Normalization::Mean),
    ]
}

#[test]
fn every_kernel_matches_reference_gpu() {
    let Some(focal) = gpu() else { return };
    for (k, dims) in [Dims::new(1, 1, 1), Dims::new(2, 37, 7), Dims::new(2, 1001, 80)].into_iter().enumerate() {
        for (j, call) in calls(dims).iter().enumerate() {
            let seed = (10 * k + j) as u64;
            check::<f32, f32>(&focal, call, seed);
            check::<f16, f16>(&focal, call, seed);
            check::<f16, f32>(&focal, call, seed);
            check::<bf16, bf16>(&focal, call, seed);
            check::<bf16, f32>(&focal, call, seed);
        }
    }
}

#[test]
fn repeated_runs_are_bit_identical_gpu() {
    let Some(focal) = gpu() else { return };
    let dims = Dims::new(4, 5003, 80);
    let mut rng = Rng::new(7);
    let logits = verify::random_logits::<f32>(&mut rng, dims.numel());
    let labels = verify::random_labels(&mut rng, dims.rows(), dims.classes, false);
    let call = &calls(dims)[0];
    let first = focal.compute_host::<f32, f32>(call, &logits, HostTarget::Sparse(&labels)).unwrap();
    for _ in 0..2 {
        let again = focal.compute_host::<f32, f32>(call, &logits, HostTarget::Sparse(&labels)).unwrap();
        assert_eq!(again.loss.to_bits(), first.loss.to_bits());
        assert!(again.grad.iter().zip(&first.grad).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}

#[test]
fn in_place_gradient_equals_separate_buffer_gpu() {
    let Some(focal) = gpu() else { return };
    let dims = Dims::new(2, 777, 13);
    let mut rng = Rng::new(3);
    let logits = verify::random_logits::<bf16>(&mut rng, dims.numel());
    let labels = verify::random_labels(&mut rng, dims.rows(), dims.classes, false);
    let call = &calls(dims)[0];
    let separate = focal.compute_host::<bf16, bf16>(call, &logits, HostTarget::Sparse(&labels)).unwrap();
    let s = focal.stream();
    let mut x = s.clone_htod(&logits).unwrap();
    let l = s.clone_htod(&labels).unwrap();
    let mut ws = Workspace::new(s, dims).unwrap();
    focal.forward_backward_in_place(call, &mut x.as_view_mut(), DeviceTarget::Sparse(l.as_view()), &mut ws).unwrap();
    let in_place = s.clone_dtoh(&x).unwrap();
    assert_eq!(ws.read_loss().unwrap().to_bits(), separate.loss.to_bits());
    assert!(in_place.iter().zip(&separate.grad).all(|(a, b)| a.to_bits() == b.to_bits()));
}

#[test]
fn bad_labels_are_errors_gpu() {
    let Some(focal) = gpu() else { return };
    let dims = Dims::new(1, 3, 4);
    let call = &calls(dims)[0];
    let logits = [0.0f32; 12];
    let r = focal.compute_host::<f32, f32>(call, &logits, HostTarget::Sparse(&[0, 4, -1]));
    assert!(matches!(r, Err(CudaError::Core(_))), "{r:?}");
    // On the device path the kernel flags the row instead.
    let s = focal.stream();
    let x = s.clone_htod(&logits).unwrap();
    let l = s.clone_htod(&[0, -3, -1]).unwrap();
    let mut ws = Workspace::new(s, dims).unwrap();
    let mut g = s.alloc_zeros::<f32>(12).unwrap();
    focal
        .forward_backward::<f32, f32>(
            call,
            &x.as_view(),
            DeviceTarget::Sparse(l.as_view()),
            Some(&mut g.as_view_mut()),
            None,
            &mut ws,
        )
        .unwrap();
    assert!(matches!(ws.check_labels(), Err(CudaError::BadLabel { row: 1, .. })));
    assert!(ws.read_loss().unwrap().is_nan());
}

#[test]
fn tensor_trait_entry_point_matches_host_api_gpu() {
    let Some(focal) = gpu() else { return };
    let dims = Dims::new(2, 301, 9);
    let mut rng = Rng::new(9);
    let logits = verify::random_logits::<f32>(&mut rng, dims.numel());
    let labels = verify::random_labels(&mut rng, dims.rows(), dims.classes, false);
    let call = &calls(dims)[0];
    let host = focal.compute_host::<f32, f32>(call, &logits, HostTarget::Sparse(&labels)).unwrap();
    let s = focal.stream();
    let x = s.clone_htod(&logits).unwrap();
    let l = s.clone_htod(&labels).unwrap();
    let mut g = s.alloc_zeros::<f32>(dims.numel()).unwrap();
    let mut ws = Workspace::new(s, dims).unwrap();
    let shape = [dims.images, dims.anchors, dims.classes];
    let x_t = focal_cuda::DeviceTensor::new(x.as_view(), &shape).unwrap();
    let mut g_t = focal_cuda::DeviceTensorMut::new(g.as_view_mut(), &shape).unwrap();
    focal
        .forward_backward_tensor(
            &call.objective,
            call.normalization,
            call.upstream,
            &x_t,
            DeviceTarget::Sparse(l.as_view()),
            &mut g_t,
            &mut ws,
        )
        .unwrap();
    assert_eq!(ws.read_loss().unwrap().to_bits(), host.loss.to_bits());
    let grad = s.clone_dtoh(&g).unwrap();
    assert!(grad.iter().zip(&host.grad).all(|(a, b)| a.to_bits() == b.to_bits()));
}
