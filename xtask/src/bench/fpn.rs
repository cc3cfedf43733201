//! The fpn-net suite: ResNet-50-FPN inference and a ResNet-18-FPN training step beside
//! PyTorch eager on the CPU (torchvision's `resnet_fpn_backbone`, FrozenBatchNorm2d), same
//! inputs, same synthetic weights, same thread count, measured in one run. Before any time is
//! shown, our P3..P7 are checked against PyTorch's on the benchmarked input itself.

use super::{Options, Row, measure_interleaved, print_table, python_has, run_python_rows};
use anyhow::{Context, Result, ensure};
use fpn_net::{Depth, FpnExtra, Module, ResNetFpn, Sgd, Tensor4, init};

/// One benchmarked configuration.
struct Case {
    group: &'static str,
    depth: Depth,
    dims: [usize; 4],
    train: bool,
}

const CASES: [Case; 3] = [
    Case { group: "resnet50_fpn_forward", depth: Depth::R50, dims: [1, 3, 512, 512], train: false },
    Case { group: "resnet50_fpn_forward", depth: Depth::R50, dims: [1, 3, 800, 1216], train: false },
    Case { group: "resnet18_fpn_train_step", depth: Depth::R18, dims: [2, 3, 256, 256], train: true },
];

const OURS: &str = "ours (im2col + gemm)";
const TORCH: &str = "torch eager";

fn shape_name(d: [usize; 4]) -> String {
    format!("{}x{}x{}x{}", d[0], d[1], d[2], d[3])
}

fn depth_name(d: Depth) -> &'static str {
    match d {
        Depth::R18 => "resnet18",
        Depth::R34 => "resnet34",
        Depth::R50 => "resnet50",
        Depth::R101 => "resnet101",
    }
}

/// The synthetic output gradients of the training step (`dP3`..`dP7`, as the tests).
fn level_gradients(levels: &[Tensor4]) -> Result<Vec<Tensor4>> {
    levels
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let v = init::uniform(&format!("dP{}", i + 3), 1, p.as_slice().len(), -1.0, 1.0);
            Ok(Tensor4::from_vec(v, p.dims())?)
        })
        .collect()
}

/// Largest `|a - r| / (|r| + mean|r|)` over one level: the tests' tolerance measure.
fn worst_relative(ours: &[f32], theirs: &[f32]) -> f64 {
    let mean = theirs.iter().map(|v| v.abs() as f64).sum::<f64>() / theirs.len().max(1) as f64;
    ours.iter().zip(theirs).map(|(&a, &r)| (a as f64 - r as f64).abs() / (r.abs() as f64 + mean)).fold(0.0, f64::max)
}

/// Runs the suite and prints its table.
pub fn run(opts: &Options) -> Result<Vec<Row>> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(opts.threads).build()?;
    pool.install(|| run_in_pool(opts))
}

fn run_in_pool(opts: &Options) -> Result<Vec<Row>> {
    let threads = opts.threads;
    let dir = std::env::temp_dir().join(format!("fpn-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut rows = Vec::new();
    let mut first_outputs: Vec<Vec<Tensor4>> = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        let mut net = ResNetFpn::new(case.depth, FpnExtra::P6P7FromP5)?;
        init::synthetic(&mut net, 0);
        let numel = case.dims.iter().product();
        let x = Tensor4::from_vec(init::uniform("input", 0, numel, -1.0, 1.0), case.dims)?;
        std::fs::write(dir.join(format!("x{i}.f32")), bytemuck::cast_slice(x.as_slice()))?;
        let outputs = net.forward(&x)?.to_vec();
        let grads = level_gradients(&outputs)?;
        first_outputs.push(outputs);
        let mut sgd = Sgd::new(0.01, 0.9, 1e-4)?;
        let mut failure = None;
        let mut step = || {
            let result = (|| -> fpn_net::Result<()> {
                if case.train {
                    net.zero_grad();
                    net.forward(&x)?;
                    net.backward(&x, &grads)?;
                    sgd.step(&mut net)
                } else {
                    net.forward(&x).map(|_| ())
                }
            })();
            if let Err(e) = result {
                failure = Some(e);
            }
        };
        let median_s = measure_interleaved(&mut [&mut step], opts.budget_s())[0];
        if let Some(e) = failure {
            return Err(e).context(case.group);
        }
        rows.push(Row {
            group: case.group.into(),
            implementation: OURS.into(),
            shape: shape_name(case.dims),
            threads,
            median_s,
            bytes: 0.0,
        });
    }

    if python_has("torch, torchvision") {
        let cases: Vec<String> = CASES
            .iter()
            .map(|c| {
                format!("{}:{}:{}", if c.train { "train" } else { "forward" }, depth_name(c.depth), shape_name(c.dims))
            })
            .collect();
        let mut args = vec![
            "--dir".into(),
            dir.display().to_string(),
            "--threads".into(),
            threads.to_string(),
            "--budget".into(),
            (opts.budget_s() * 3.0).to_string(),
        ];
        args.extend(cases);
        let torch_rows = run_python_rows("benches/python/fpn_torchvision.py", &args).context("PyTorch baseline")?;
        // Our outputs must equal PyTorch's on these very inputs before the times mean anything.
        for (i, case) in CASES.iter().enumerate() {
            for (l, ours) in first_outputs[i].iter().enumerate() {
                let path = dir.join(format!("out{i}_P{}.f32", l + 3));
                let bytes = std::fs::read(&path).with_context(|| format!("reading {path:?}"))?;
                let theirs: Vec<f32> =
                    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
                ensure!(theirs.len() == ours.as_slice().len(), "P{} of case {i}: sizes differ", l + 3);
                let worst = worst_relative(ours.as_slice(), &theirs);
                println!(
                    "{} {}: P{} max |ours - torch| / (|torch| + mean|torch|) = {worst:.2e}",
                    case.group,
                    shape_name(case.dims),
                    l + 3
                );
                ensure!(worst <= 1e-4, "P{} of {} differs from PyTorch by {worst:e}", l + 3, case.group);
            }
        }
        rows.extend(torch_rows);
    } else {
        println!(
            "torch/torchvision not importable with `{}`: PyTorch rows skipped (set FOCAL_PYTHON)",
            super::python()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    rows.sort_by(|a, b| (&a.group, &a.shape).cmp(&(&b.group, &b.shape)));
    print_table(&format!("ResNet-FPN backbones (P3-P7), f32, {threads} threads; GB/s not applicable"), &rows, &[TORCH]);
    Ok(rows)
}
