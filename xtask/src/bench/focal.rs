//! The focal-core suite: sigmoid focal loss forward+backward on RetinaNet-sized inputs, each of
//! our paths beside the memory floor and torchvision, measured in one run.

use super::{Options, Row, measure_interleaved, print_table, python_has, run_python_rows};
use anyhow::{Context, Result};
use focal_benches::{COCO_CLASSES, RETINANET_ANCHORS, floor_copy, retinanet_inputs};
use focal_core::{
    Element, FocalLoss, FocalParams, Reduction, SigmoidFocalLoss, SimdLevel, Target, TensorView, TensorViewMut,
};

fn loss_for(gamma: f64, level: SimdLevel, normalizer: f64) -> Result<SigmoidFocalLoss> {
    Ok(SigmoidFocalLoss::new(FocalParams::new(Some(0.25), gamma)?, Reduction::Normalizer(normalizer))
        .with_simd(level)?)
}

fn fused<T: Element>(loss: &SigmoidFocalLoss, x: &[T], labels: &[i32], classes: usize, grad: &mut [T]) -> f64 {
    let rows = labels.len();
    let logits = TensorView::new(x, &[rows, classes]).expect("shape");
    let target = Target::labels(TensorView::new(labels, &[rows]).expect("shape"));
    let grad = TensorViewMut::new(grad, &[rows, classes]).expect("shape");
    loss.forward_backward(logits, target, 1.0, grad).expect("valid inputs")
}

/// Runs the suite and prints its table.
pub fn run(opts: &Options) -> Result<Vec<Row>> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(opts.threads).build()?;
    pool.install(|| run_in_pool(opts))
}

fn run_in_pool(opts: &Options) -> Result<Vec<Row>> {
    let (anchors, classes) = (RETINANET_ANCHORS, COCO_CLASSES);
    let (x, labels) = retinanet_inputs(anchors, classes, 42);
    let normalizer = focal_core::labels::retinanet_normalizer(&labels);
    let n = x.len();
    let shape = format!("{anchors}x{classes}");
    let threads = opts.threads;
    let best = SimdLevel::detect();
    let x_bf16: Vec<half::bf16> = x.iter().map(|&v| half::bf16::from_f32(v)).collect();
    // The same draws spread over [-8, 8]: about half the logits positive, so no vector takes the
    // kernels' shorter path for vectors without a positive logit (which every vector of `x`,
    // around the prior -4.6, takes).
    let x_mixed: Vec<f32> = x.iter().map(|&v| (v + 4.6) * (8.0 / 3.0)).collect();
    let mut grads: Vec<Vec<f32>> = (0..5).map(|_| vec![0.0f32; n]).collect();
    let mut grad_bf16 = vec![half::bf16::ZERO; n];
    let mut floor_out = vec![0.0f32; n];

    let g2 = loss_for(2.0, best, normalizer)?;
    let g15 = loss_for(1.5, best, normalizer)?;
    let avx2 = SimdLevel::Avx2.is_supported().then(|| loss_for(2.0, SimdLevel::Avx2, normalizer)).transpose()?;
    let portable = loss_for(2.0, SimdLevel::Portable, normalizer)?;
    let f32_bytes = (n * 8 + anchors * 4) as f64;
    let bf16_bytes = (n * 4 + anchors * 4) as f64;

    let mut names: Vec<(String, String, f64)> = Vec::new();
    let medians = {
        let [ga, gb, gc, gd, ge] = &mut grads[..] else { unreachable!() };
        let mut f_floor = || floor_copy(&x, &mut floor_out);
        let mut f_g2 = || {
            fused(&g2, &x, &labels, classes, ga);
        };
        let mut f_g15 = || {
            fused(&g15, &x, &labels, classes, gb);
        };
        let mut f_mixed = || {
            fused(&g2, &x_mixed, &labels, classes, ge);
        };
        let mut f_portable = || {
            fused(&portable, &x, &labels, classes, gc);
        };
        let mut f_bf16 = || {
            fused(&g2, &x_bf16, &labels, classes, &mut grad_bf16);
        };
        let mut f_fwd = || {
            let logits = TensorView::new(&x, &[anchors, classes]).expect("shape");
            let target = Target::labels(TensorView::new(&labels, &[anchors]).expect("shape"));
            g2.forward(logits, target).expect("valid");
        };
        let mut f_avx2 = || {
            if let Some(l) = &avx2 {
                fused(l, &x, &labels, classes, gd);
            }
        };
        names.push(("sigmoid_focal_fwd_bwd".into(), "floor (read x, write same size)".into(), f32_bytes));
        names.push(("sigmoid_focal_fwd_bwd".into(), format!("ours {} gamma 2", best.name()), f32_bytes));
        names.push(("sigmoid_focal_fwd_bwd".into(), format!("ours {} gamma 1.5", best.name()), f32_bytes));
        names.push((
            "sigmoid_focal_fwd_bwd".into(),
            format!("ours {} gamma 2, logits in [-8, 8]", best.name()),
            f32_bytes,
        ));
        names.push(("sigmoid_focal_fwd_bwd".into(), "ours portable gamma 2".into(), f32_bytes));
        names.push(("sigmoid_focal_fwd_bwd".into(), format!("ours {} gamma 2 bf16 in/out", best.name()), bf16_bytes));
        names.push(("sigmoid_focal_fwd".into(), format!("ours {} gamma 2 (loss only)", best.name()), (n * 4) as f64));
        let mut impls: Vec<&mut dyn FnMut()> =
            vec![&mut f_floor, &mut f_g2, &mut f_g15, &mut f_mixed, &mut f_portable, &mut f_bf16, &mut f_fwd];
        if avx2.is_some() {
            names.push(("sigmoid_focal_fwd_bwd".into(), "ours avx2 gamma 2".into(), f32_bytes));
            impls.push(&mut f_avx2);
        }
        measure_interleaved(&mut impls, opts.budget_s())
    };
    let mut rows: Vec<Row> = names
        .into_iter()
        .zip(medians)
        .map(|((group, implementation, bytes), median_s)| Row {
            group,
            implementation,
            shape: shape.clone(),
            threads,
            median_s,
            bytes,
        })
        .collect();
    // Every fast path agrees with the others before its time is shown (the tests check them
    // against the float64 reference).
    let max_diff = grads[0].iter().zip(&grads[2]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    anyhow::ensure!(max_diff <= 1e-9, "portable and SIMD gradients differ by {max_diff:e}");

    if python_has("torch, torchvision") {
        let dir = std::env::temp_dir().join(format!("focal-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("logits.f32"), bytemuck::cast_slice(&x))?;
        std::fs::write(dir.join("labels.i32"), bytemuck::cast_slice(&labels))?;
        let args: Vec<String> = vec![
            "--dir".into(),
            dir.display().to_string(),
            "--anchors".into(),
            anchors.to_string(),
            "--classes".into(),
            classes.to_string(),
            "--threads".into(),
            threads.to_string(),
            "--budget".into(),
            (opts.budget_s() * 3.0).to_string(),
        ];
        let result = run_python_rows("benches/python/focal_torchvision.py", &args);
        let _ = std::fs::remove_dir_all(&dir);
        let mut torch_rows = result.context("torchvision baseline")?;
        for r in &mut torch_rows {
            r.bytes = f32_bytes;
        }
        rows.extend(torch_rows);
    } else {
        println!("torchvision not importable with `{}`: its rows are skipped (set FOCAL_PYTHON)", super::python());
    }
    print_table(
        &format!("sigmoid focal loss, sparse labels, alpha 0.25, {threads} threads"),
        &rows,
        &["floor (read x, write same size)", "torchvision eager"],
    );
    Ok(rows)
}
