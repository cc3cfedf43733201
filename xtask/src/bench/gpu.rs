//! The GPU suite: focal-cuda's fused sigmoid focal forward+backward at RetinaNet's training
//! size (8 images x 120,087 anchors x 80 classes), beside the floor (a device-to-device copy of
//! the logits: the same bytes read and written) and torchvision's composite ops, eager and under
//! `torch.compile`, on the same inputs, measured in one run.
//!
//! Times come from CUDA events around each call (the GPU's time, no host overhead); calls of
//! every implementation alternate in rounds. Without a GPU the suite prints
//! `skipped: no CUDA driver` (an error with `FOCAL_REQUIRE_GPU=1`).

use super::{Options, Row, median, print_table, python_has, run_python_rows};
use crate::check_kernels::{describe, gpu_or_skip};
use anyhow::Result;
use cudarc::driver::{CudaSlice, CudaStream, DeviceRepr, ValidAsZeroBits};
use focal_benches::{COCO_CLASSES, RETINANET_ANCHORS, retinanet_inputs};
use focal_core::FocalParams;
use focal_cuda::{Call, DeviceElement, DeviceTarget, Dims, FocalCuda, Normalization, Objective, Variant, Workspace};
use half::{bf16, f16};
use std::sync::Arc;

/// Images per batch in the table (torchvision's RetinaNet recipe trains with 16 over 8 GPUs,
/// 2 per GPU; 8 on one card is the target size).
pub const IMAGES: usize = 8;

/// Milliseconds of one call of `f` on the stream, from events around it.
fn event_time(stream: &Arc<CudaStream>, f: &mut dyn FnMut() -> Result<()>) -> Result<f64> {
    let ctx = stream.context();
    let start = ctx.new_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT))?;
    let end = ctx.new_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT))?;
    start.record(stream)?;
    f()?;
    end.record(stream)?;
    end.synchronize()?;
    Ok(f64::from(start.elapsed_ms(&end)?) * 1e-3)
}

/// Medians of each implementation, timed in interleaved rounds after one warm-up call each.
fn measure_gpu(
    stream: &Arc<CudaStream>,
    impls: &mut [&mut dyn FnMut() -> Result<()>],
    calls: usize,
) -> Result<Vec<f64>> {
    const ROUNDS: usize = 5;
    let mut samples = vec![Vec::new(); impls.len()];
    for f in impls.iter_mut() {
        f()?;
    }
    stream.synchronize()?;
    for _ in 0..ROUNDS {
        for (f, s) in impls.iter_mut().zip(&mut samples) {
            for _ in 0..calls.div_ceil(ROUNDS) {
                s.push(event_time(stream, *f)?);
            }
        }
    }
    Ok(samples.into_iter().map(median).collect())
}

/// Medians of `runs` and, last, of the floor: a device-to-device copy of `x`, timed in the same
/// interleaved rounds.
pub(super) fn measure_beside_copy<T: DeviceRepr + ValidAsZeroBits>(
    stream: &Arc<CudaStream>,
    runs: &mut [Box<dyn FnMut() -> Result<()> + '_>],
    x: &CudaSlice<T>,
    calls: usize,
) -> Result<Vec<f64>> {
    let mut copy = stream.alloc_zeros::<T>(x.len())?;
    let mut floor = || -> Result<()> {
        stream.memcpy_dtod(x, &mut copy)?;
        Ok(())
    };
    let mut impls: Vec<&mut dyn FnMut() -> Result<()>> = runs.iter_mut().map(|f| f.as_mut() as _).collect();
    impls.push(&mut floor);
    measure_gpu(stream, &mut impls, calls)
}

struct Batch {
    logits: Vec<f32>,
    labels: Vec<i32>,
}

/// RetinaNet-like inputs for `IMAGES` images, image b from seed 42 + b.
fn batch(anchors: usize, classes: usize) -> Batch {
    let mut logits = Vec::with_capacity(IMAGES * anchors * classes);
    let mut labels = Vec::with_capacity(IMAGES * anchors);
    for b in 0..IMAGES {
        let (x, l) = retinanet_inputs(anchors, classes, 42 + b as u64);
        logits.extend(x);
        labels.extend(l);
    }
    Batch { logits, labels }
}

fn rows_for<T: DeviceElement + DeviceRepr + ValidAsZeroBits>(
    focal: &FocalCuda,
    batch: &Batch,
    dims: Dims,
    calls: usize,
) -> Result<Vec<Row>> {
    let s = focal.stream().clone();
    let host: Vec<T> = batch.logits.iter().map(|&v| T::from_f32(v)).collect();
    let x: CudaSlice<T> = s.clone_htod(&host)?;
    let labels = s.clone_htod(&batch.labels)?;
    let call = Call::new(Objective::SigmoidFocal(FocalParams::retinanet()), dims, Normalization::ForegroundPerImage);
    // One call, workspace and gradient per variant, timed side by side with the copy.
    // v6 also under lower block limits than its own grid (at most V6_GRID = 1024 blocks): the
    // grid is the one free choice of its walk (kernels/README.md has the runs that chose it).
    // v7 is v6 for the half types (the same entry points).
    const VARIANTS: [(Variant, Option<u32>, &str); 7] = [
        (Variant::V1, None, "focal-cuda v1"),
        (Variant::V4, None, "focal-cuda v4"),
        (Variant::V6, None, "focal-cuda v6"),
        (Variant::V6, Some(512), "focal-cuda v6, <= 512 blocks"),
        (Variant::V6, Some(256), "focal-cuda v6, <= 256 blocks"),
        (Variant::V7, None, "focal-cuda v7"),
        (Variant::V7, Some(512), "focal-cuda v7, <= 512 blocks"),
    ];
    let mut states = Vec::new();
    for (variant, max_blocks, _) in VARIANTS {
        let call = Call { variant, max_blocks, ..call.clone() };
        states.push((call, Workspace::new(&s, dims)?, s.alloc_zeros::<T>(dims.numel())?));
    }
    let mut ours: Vec<Box<dyn FnMut() -> Result<()> + '_>> = states
        .iter_mut()
        .map(|(call, ws, grad)| {
            let (x, labels) = (&x, &labels);
            Box::new(move || -> Result<()> {
                focal.forward_backward::<T, T>(
                    call,
                    &x.as_view(),
                    DeviceTarget::Sparse(labels.as_view()),
                    Some(&mut grad.as_view_mut()),
                    None,
                    ws,
                )?;
                Ok(())
            }) as Box<dyn FnMut() -> Result<()> + '_>
        })
        .collect();
    let times = measure_beside_copy(&s, &mut ours, &x, calls)?;
    let n = dims.numel() as f64;
    let elem = T::BYTES as f64;
    let shape = format!("{}x{}x{} {}", dims.images, dims.anchors, dims.classes, T::NAME);
    let group = "sigmoid_focal_fwd_bwd_gpu".to_string();
    let ours_bytes = n * 2.0 * elem + dims.rows() as f64 * 4.0;
    let row = |implementation: &str, median_s: f64, bytes: f64| Row {
        group: group.clone(),
        implementation: implementation.into(),
        shape: shape.clone(),
        threads: 1,
        median_s,
        bytes,
    };
    let mut rows: Vec<Row> = VARIANTS.iter().zip(&times).map(|(&(_, _, name), &t)| row(name, t, ours_bytes)).collect();
    rows.push(row("floor", times[VARIANTS.len()], n * 2.0 * elem));
    Ok(rows)
}

/// Runs the suite and prints its table (empty without a GPU).
pub fn run(opts: &Options) -> Result<Vec<Row>> {
    let Some(focal) = gpu_or_skip()? else {
        return Ok(Vec::new());
    };
    focal.load_all()?;
    let (anchors, classes) = (RETINANET_ANCHORS, COCO_CLASSES);
    let dims = Dims::new(IMAGES, anchors, classes);
    let batch = batch(anchors, classes);
    let calls = if opts.quick { 10 } else { 100 };
    let mut rows = Vec::new();
    rows.extend(rows_for::<f32>(&focal, &batch, dims, calls)?);
    rows.extend(rows_for::<bf16>(&focal, &batch, dims, calls)?);
    rows.extend(rows_for::<f16>(&focal, &batch, dims, calls)?);

    let mut note = String::new();
    if python_has("torch, torchvision") {
        let dir = super::workspace_root().join("target/bench-gpu-inputs");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("logits.f32"), bytemuck::cast_slice(&batch.logits))?;
        std::fs::write(dir.join("labels.i32"), bytemuck::cast_slice(&batch.labels))?;
        let args: Vec<String> = vec![
            "--dir".into(),
            dir.to_string_lossy().into_owned(),
            "--images".into(),
            IMAGES.to_string(),
            "--anchors".into(),
            anchors.to_string(),
            "--classes".into(),
            classes.to_string(),
            "--calls".into(),
            calls.to_string(),
        ];
        match run_python_rows("benches/python/focal_torchvision_gpu.py", &args) {
            Ok(r) => rows.extend(r),
            Err(e) => note = format!("torchvision rows failed: {e:#}"),
        }
    } else {
        note = "torch/torchvision not importable: no torchvision rows".into();
    }
    print_table(
        &format!("GPU: sigmoid focal loss forward+backward, RetinaNet per-image normaliser, {}", describe(&focal)),
        &rows,
        &["floor", "torchvision eager", "torchvision compile"],
    );
    if !note.is_empty() {
        println!("\n{note}");
    }
    rows.extend(super::gpu_objectives::run(
        &focal,
        calls,
        &format!(
            "GPU: the other focal-cuda entry points, forward+backward, gradient in the input type, {}",
            describe(&focal)
        ),
    )?);
    Ok(rows)
}
