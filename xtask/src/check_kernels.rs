//! `cargo xtask check-kernels [--quick] [--seed N] [--only VARIANT]`: every kernel on a real GPU, fresh random
//! inputs from a handful of elements to 1M anchors x 80 classes, outputs poisoned (NaN bytes)
//! before every run, every gradient and elementwise loss compared with `focal_core::reference`
//! (tolerances in `focal_cuda::verify`), and loss and gradient bit-identical across 3 runs.
//!
//! Without a GPU it prints `skipped: no CUDA driver` and succeeds, unless `FOCAL_REQUIRE_GPU=1`.

use anyhow::{Context, Result, bail};
use cudarc::driver::{CudaSlice, DevicePtrMut};
use focal_core::{FocalParams, VarifocalParams};
use focal_cuda::verify::{self, CaseTarget, Rng, Tolerance};
use focal_cuda::{
    Call, DeviceElement, DeviceTarget, Dims, FocalCuda, Normalization, Objective, Variant, Weights, Workspace,
};
use half::{bf16, f16};
use std::time::Instant;

/// The GPU, or `None` after printing why (an error with `FOCAL_REQUIRE_GPU=1`).
pub fn gpu_or_skip() -> Result<Option<FocalCuda>> {
    verify::gpu_or_skip().context("FOCAL_REQUIRE_GPU=1 but no GPU")
}

/// Name, compute capability and memory of device 0, for tables.
pub fn describe(focal: &FocalCuda) -> String {
    let ctx = focal.stream().context();
    let name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
    let (major, minor) = ctx.compute_capability().unwrap_or((0, 0));
    let mem = ctx.total_mem().unwrap_or(0) as f64 / (1u64 << 30) as f64;
    format!("{name} (sm_{major}{minor}, {mem:.0} GiB)")
}

fn poison<T: cudarc::driver::DeviceRepr>(focal: &FocalCuda, buf: &mut CudaSlice<T>) -> Result<()> {
    let s = focal.stream();
    let bytes = buf.num_bytes();
    let (ptr, _guard) = buf.device_ptr_mut(s);
    // SAFETY: `ptr` is a live allocation of `bytes` bytes on this stream's context.
    unsafe { cudarc::driver::result::memset_d8_async(ptr, 0xff, bytes, s.cu_stream()) }
        .context("poisoning an output")?;
    Ok(())
}

struct Outcome<G> {
    loss: f64,
    grad: Vec<G>,
    elementwise: Vec<f32>,
}

/// Runs one call 3 times with poisoned outputs; fails unless the runs are bit-identical.
fn run_three<T: DeviceElement, G: DeviceElement>(
    focal: &FocalCuda,
    call: &Call,
    logits: &[T],
    target: &CaseTarget,
) -> Result<Outcome<G>> {
    let s = focal.stream();
    let dims = call.dims;
    let n = dims.numel().max(1);
    let x = s.clone_htod(logits)?;
    let mut grad = s.alloc_zeros::<G>(n)?;
    let mut elementwise = s.alloc_zeros::<f32>(n)?;
    let mut ws = Workspace::new(s, dims)?;
    let (labels, targets, weights) = match target {
        CaseTarget::Sparse(l) => (Some(s.clone_htod(l)?), None, None),
        CaseTarget::Dense { targets: t, weights: w } => {
            let w = match w {
                Some((k, w)) => Some((*k, s.clone_htod(w)?)),
                None => None,
            };
            (None, Some(s.clone_htod(t)?), w)
        }
    };
    let mut first: Option<Outcome<G>> = None;
    for run in 1..=3 {
        poison(focal, &mut grad)?;
        poison(focal, &mut elementwise)?;
        let device_target = match (&labels, &targets) {
            (Some(l), _) => DeviceTarget::Sparse(l.as_view()),
            (None, Some(t)) => {
                DeviceTarget::Dense { targets: t.as_view(), weights: weights.as_ref().map(|(k, w)| (*k, w.as_view())) }
            }
            (None, None) => bail!("a case has labels or targets"),
        };
        let numel = dims.numel();
        focal.forward_backward::<T, G>(
            call,
            &x.as_view(),
            device_target,
            Some(&mut grad.slice_mut(0..numel)),
            Some(&mut elementwise.slice_mut(0..numel)),
            &mut ws,
        )?;
        ws.check_labels()?;
        let outcome = Outcome {
            loss: ws.read_loss()?,
            grad: s.clone_dtoh(&grad.slice(0..numel))?,
            elementwise: s.clone_dtoh(&elementwise.slice(0..numel))?,
        };
        let Some(f) = &first else {
            first = Some(outcome);
            continue;
        };
        if outcome.loss.to_bits() != f.loss.to_bits() {
            bail!("run {run} loss {:e} differs from run 1's {:e}: not deterministic", outcome.loss, f.loss);
        }
        let bits = |v: &G| v.to_f64().to_bits();
        if let Some(i) = (0..numel).find(|&i| bits(&outcome.grad[i]) != bits(&f.grad[i])) {
            bail!(
                "run {run} grad[{i}] = {:e} differs from run 1's {:e}: not deterministic",
                outcome.grad[i].to_f64(),
                f.grad[i].to_f64()
            );
        }
        if let Some(i) = (0..numel).find(|&i| outcome.elementwise[i].to_bits() != f.elementwise[i].to_bits()) {
            bail!("run {run} elementwise[{i}] differs from run 1's: not deterministic");
        }
    }
    first.context("three runs")
}

fn check_case<T: DeviceElement, G: DeviceElement>(
    focal: &FocalCuda,
    call: &Call,
    target_kind: &str,
    seed: u64,
) -> Result<String> {
    let dims = call.dims;
    let mut rng = Rng::new(seed);
    let logits = verify::random_logits_for::<T>(&mut rng, dims.numel(), &call.objective);
    let target = match target_kind {
        "sparse" => CaseTarget::Sparse(verify::random_labels(
            &mut rng,
            dims.rows(),
            dims.classes,
            matches!(call.objective, Objective::SoftmaxFocal(_)),
        )),
        "dense/anchor" => verify::random_dense(&mut rng, dims, Weights::PerAnchor),
        _ => verify::random_dense(&mut rng, dims, Weights::PerElement),
    };
    let t0 = Instant::now();
    let got = run_three::<T, G>(focal, call, &logits, &target)?;
    let threads = std::thread::available_parallelism().map_or(4, |n| n.get());
    let want = verify::reference(&call.objective, dims, &logits, &target, call.normalization, call.upstream, threads)?;
    let grad: Vec<f64> = got.grad.iter().map(|v| v.to_f64()).collect();
    drop(got.grad);
    let elementwise: Vec<f64> = got.elementwise.iter().map(|&v| f64::from(v)).collect();
    let errors = [
        verify::compare("grad", &grad, &want.grad, Tolerance::for_dtype(G::DTYPE), want.unit),
        verify::compare("elementwise", &elementwise, &want.elementwise, Tolerance::F32, 1.0),
        verify::compare("loss", &[got.loss], &[want.loss], Tolerance::LOSS, want.unit / call.upstream),
    ];
    for e in errors {
        if let Err(m) = e {
            bail!("{m}");
        }
    }
    let worst = grad
        .iter()
        .zip(&want.grad)
        .filter(|(_, r)| r.is_finite())
        .map(|(a, r)| (a - r).abs() / Tolerance::for_dtype(G::DTYPE).bound(*r, want.unit))
        .fold(0.0f64, f64::max);
    Ok(format!("ok, worst |a-r|/bound {worst:.3}, {:.1}s", t0.elapsed().as_secs_f64()))
}

fn objective_name(o: &Objective) -> &'static str {
    match o {
        Objective::SigmoidFocal(_) => "sigmoid_focal",
        Objective::SoftmaxFocal(_) => "softmax_focal",
        Objective::Varifocal(_) => "varifocal",
        Objective::QualityFocal { .. } => "quality_focal",
    }
}

/// Entry point of `cargo xtask check-kernels`.
pub fn main(args: &[String]) -> Result<()> {
    let mut quick = false;
    let mut only: Option<Variant> = None;
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--seed" => seed = it.next().context("--seed N")?.parse().context("--seed N")?,
            "--only" => {
                only = Some(match it.next().map(String::as_str) {
                    Some("v1") => Variant::V1,
                    Some("v4") => Variant::V4,
                    Some("v6") => Variant::V6,
                    Some("v7") => Variant::V7,
                    other => bail!("--only v1|v4|v6|v7 (got {other:?})"),
                })
            }
            other => bail!("usage: cargo xtask check-kernels [--quick] [--seed N] [--only VARIANT] (got {other})"),
        }
    }
    let Some(focal) = gpu_or_skip()? else {
        return Ok(());
    };
    focal.load_all()?;
    println!("check-kernels on {}; seed {seed} (rerun with --seed {seed})", describe(&focal));

    let mut shapes = vec![Dims::new(1, 1, 1), Dims::new(1, 3, 5), Dims::new(2, 37, 7), Dims::new(3, 1001, 80)];
    if !quick {
        shapes.push(Dims::new(2, 12_345, 81));
        shapes.push(Dims::new(1, 1_000_000, 80));
    }
    let v1 = Variant::V1;
    let retina = || Objective::SigmoidFocal(FocalParams::retinanet());
    let per_image = Normalization::ForegroundPerImage;
    let gamma_15 = Objective::SigmoidFocal(FocalParams::new(Some(0.25), 1.5)?);
    let gamma_05 = Objective::SigmoidFocal(FocalParams::new(None, 0.5)?);
    // (objective, target, normalisation, variant, block limit); the first three run every pair
    // of types at 1M x 80, the others f32 and bf16 there.
    let cases: Vec<(Objective, &str, Normalization, Variant, Option<u32>)> = vec![
        (retina(), "sparse", per_image, v1, None),
        (retina(), "sparse", per_image, Variant::V4, None),
        (retina(), "sparse", per_image, Variant::V6, None),
        // v6 with a small grid: hundreds of stages per block at 1M x 80.
        (retina(), "sparse", Normalization::ForegroundPerBatch, Variant::V6, Some(37)),
        // v7 (f32 only; its half pairs run v6's entry points), also under a small grid.
        (retina(), "sparse", per_image, Variant::V7, None),
        (retina(), "sparse", Normalization::ForegroundPerBatch, Variant::V7, Some(37)),
        (gamma_15.clone(), "sparse", Normalization::ForegroundPerBatch, v1, None),
        (gamma_15, "sparse", Normalization::Sum, Variant::V4, None),
        (gamma_05, "dense/anchor", Normalization::Normalizer(100.0), v1, None),
        (Objective::SoftmaxFocal(FocalParams::retinanet()), "sparse", Normalization::Mean, v1, None),
        (Objective::Varifocal(VarifocalParams::mmdet()), "dense/element", Normalization::Normalizer(100.0), v1, None),
        (Objective::QualityFocal { beta: 2.0 }, "dense/element", Normalization::Mean, v1, None),
    ];
    let cases: Vec<_> = cases.into_iter().filter(|c| only.is_none_or(|v| c.3 == v)).collect();
    let mut failures = 0;
    let mut count = 0;
    for (k, dims) in shapes.iter().enumerate() {
        let big = dims.numel() > 10_000_000;
        for (j, (objective, target, normalization, variant, max_blocks)) in cases.iter().enumerate() {
            let call = Call {
                upstream: 0.5,
                variant: *variant,
                max_blocks: *max_blocks,
                ..Call::new(objective.clone(), *dims, *normalization)
            };
            let case_seed = seed.wrapping_add((100 * k + j) as u64);
            type Check = fn(&FocalCuda, &Call, &str, u64) -> Result<String>;
            let mut pairs: Vec<(&str, Check)> =
                vec![("f32->f32", check_case::<f32, f32>), ("bf16->bf16", check_case::<bf16, bf16>)];
            // At 1M x 80 every pair of the RetinaNet loss (v1, v4, v6), and f32 + bf16 of the
            // others (v6 under a block limit included, which the smaller shapes check at every
            // pair).
            if !big || j <= 1 || (*variant == Variant::V6 && max_blocks.is_none()) {
                pairs.push(("f16->f16", check_case::<f16, f16>));
                pairs.push(("f16->f32", check_case::<f16, f32>));
                pairs.push(("bf16->f32", check_case::<bf16, f32>));
            }
            for (name, check) in pairs {
                count += 1;
                let label = format!(
                    "{:<14} {:?} {:<13} {:<10} [{}, {}, {}] {:?}{}",
                    objective_name(objective),
                    variant,
                    target,
                    name,
                    dims.images,
                    dims.anchors,
                    dims.classes,
                    normalization,
                    max_blocks.map_or(String::new(), |b| format!(" <= {b} blocks")),
                );
                match check(&focal, &call, target, case_seed) {
                    Ok(msg) => println!("{label}: {msg}"),
                    Err(e) => {
                        failures += 1;
                        println!("{label}: FAILED (seed {case_seed}): {e:#}");
                    }
                }
            }
        }
    }
    if failures > 0 {
        bail!("{failures} of {count} kernel checks failed");
    }
    println!("all {count} kernel checks passed");
    Ok(())
}
