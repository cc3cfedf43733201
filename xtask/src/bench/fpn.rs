//! The fpn-net suite: ResNet-50-FPN inference and a ResNet-18-FPN training step beside
//! PyTorch eager on the CPU (torchvision's `resnet_fpn_backbone`, FrozenBatchNorm2d), same
//! inputs, same synthetic weights, same thread count, measured in one run in interleaved rounds
//! (ours, then PyTorch's, five times per case). Before any time is shown, our P3..P7 are
//! checked against PyTorch's on the benchmarked input itself.

use super::{Options, Row, median, print_table, python_has};
use anyhow::{Context, Result, ensure};
use fpn_net::{Depth, FpnExtra, Module, ResNetFpn, Sgd, Tensor4, init};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

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

/// The PyTorch side: a child process serving timing rounds (see the script's docstring).
struct TorchServer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl TorchServer {
    fn start(dir: &Path, threads: usize) -> Result<Self> {
        let cases = CASES.iter().map(|c| {
            format!("{}:{}:{}", if c.train { "train" } else { "forward" }, depth_name(c.depth), shape_name(c.dims))
        });
        let mut child = Command::new(super::python())
            .arg(super::workspace_root().join("benches/python/fpn_torchvision.py"))
            .args(["--dir", &dir.display().to_string(), "--threads", &threads.to_string()])
            .args(cases)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the PyTorch baseline")?;
        let stdin = child.stdin.take().context("baseline stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("baseline stdout")?);
        let mut server = TorchServer { child, stdin, stdout };
        let line = server.read_line()?;
        ensure!(line.trim() == "ready", "PyTorch baseline did not start: {line:?}");
        Ok(server)
    }

    fn read_line(&mut self) -> Result<String> {
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line)?;
        ensure!(n > 0, "the PyTorch baseline exited early");
        Ok(line)
    }

    /// `(wall, CPU)` seconds per call of `case`, run for about `budget_s`.
    fn samples(&mut self, case: usize, budget_s: f64) -> Result<Vec<(f64, f64)>> {
        writeln!(self.stdin, "{case} {budget_s}")?;
        self.stdin.flush()?;
        let line = self.read_line()?;
        let parsed: Vec<(f64, f64)> = serde_json::from_str(&line).context("baseline samples")?;
        Ok(parsed)
    }
}

impl Drop for TorchServer {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let _ = self.child.wait();
    }
}

/// CPU seconds used so far by all threads of this process (Linux `/proc`; 0 elsewhere, which
/// leaves the CPU table empty of meaning but harmless).
fn process_cpu_s() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum::<u64>() as f64
        * 1e-9
}

/// Runs the suite and prints its table.
pub fn run(opts: &Options) -> Result<Vec<Row>> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(opts.threads).build()?;
    pool.install(|| run_in_pool(opts))
}

/// Our network for one case, its input and the step the case times.
struct Ours {
    net: ResNetFpn,
    x: Tensor4,
    grads: Vec<Tensor4>,
    sgd: Sgd,
    train: bool,
}

impl Ours {
    fn new(case: &Case) -> Result<Self> {
        let mut net = ResNetFpn::new(case.depth, FpnExtra::P6P7FromP5)?;
        init::synthetic(&mut net, 0);
        let numel = case.dims.iter().product();
        let x = Tensor4::from_vec(init::uniform("input", 0, numel, -1.0, 1.0), case.dims)?;
        let grads = level_gradients(net.forward(&x)?)?;
        Ok(Ours { net, x, grads, sgd: Sgd::new(0.01, 0.9, 1e-4)?, train: case.train })
    }

    fn step(&mut self) -> fpn_net::Result<()> {
        if self.train {
            self.net.zero_grad();
            self.net.forward(&self.x)?;
            self.net.backward(&self.x, &self.grads)?;
            self.sgd.step(&mut self.net)
        } else {
            self.net.forward(&self.x).map(|_| ())
        }
    }

    fn samples(&mut self, budget_s: f64) -> Result<Vec<(f64, f64)>> {
        let mut samples = Vec::new();
        let start = Instant::now();
        while start.elapsed().as_secs_f64() < budget_s || samples.len() < 2 {
            let (t, c) = (Instant::now(), process_cpu_s());
            self.step()?;
            samples.push((t.elapsed().as_secs_f64(), process_cpu_s() - c));
        }
        Ok(samples)
    }
}

fn run_in_pool(opts: &Options) -> Result<Vec<Row>> {
    const ROUNDS: usize = 5;
    let threads = opts.threads;
    let dir = std::env::temp_dir().join(format!("fpn-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut ours: Vec<Ours> = CASES.iter().map(Ours::new).collect::<Result<_>>()?;
    for (i, o) in ours.iter().enumerate() {
        std::fs::write(dir.join(format!("x{i}.f32")), bytemuck::cast_slice(o.x.as_slice()))?;
    }
    let mut torch = if python_has("torch, torchvision") {
        Some(TorchServer::start(&dir, threads)?)
    } else {
        println!(
            "torch/torchvision not importable with `{}`: PyTorch rows skipped (set FOCAL_PYTHON)",
            super::python()
        );
        None
    };
    if torch.is_some() {
        // Our outputs must equal PyTorch's on these very inputs before the times mean anything.
        for (i, case) in CASES.iter().enumerate() {
            let Ours { net, x, .. } = &mut ours[i];
            let levels = net.forward(x)?;
            for (l, level) in levels.iter().enumerate() {
                let path = dir.join(format!("out{i}_P{}.f32", l + 3));
                let bytes = std::fs::read(&path).with_context(|| format!("reading {path:?}"))?;
                let theirs: Vec<f32> =
                    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
                ensure!(theirs.len() == level.as_slice().len(), "P{} of case {i}: sizes differ", l + 3);
                let worst = worst_relative(level.as_slice(), &theirs);
                println!(
                    "{} {}: P{} max |ours - torch| / (|torch| + mean|torch|) = {worst:.2e}",
                    case.group,
                    shape_name(case.dims),
                    l + 3
                );
                ensure!(worst <= 1e-4, "P{} of {} differs from PyTorch by {worst:e}", l + 3, case.group);
            }
        }
    }
    // Interleaved rounds: ours, then PyTorch, for each case, so load from neighbours hits both.
    let budget = opts.budget_s() * 2.0 / ROUNDS as f64;
    let mut rows = Vec::new();
    let mut cpu_rows = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        let (mut mine, mut theirs) = (Vec::new(), Vec::new());
        ours[i].step()?;
        if let Some(t) = torch.as_mut() {
            t.samples(i, 0.0)?;
        }
        for _ in 0..ROUNDS {
            mine.extend(ours[i].samples(budget)?);
            if let Some(t) = torch.as_mut() {
                theirs.extend(t.samples(i, budget)?);
            }
        }
        for (implementation, samples) in [(OURS, mine), (TORCH, theirs)] {
            if samples.is_empty() {
                continue;
            }
            let row = |median_s| Row {
                group: case.group.into(),
                implementation: implementation.into(),
                shape: shape_name(case.dims),
                threads,
                median_s,
                bytes: 0.0,
            };
            rows.push(row(median(samples.iter().map(|s| s.0).collect())));
            cpu_rows.push(row(median(samples.iter().map(|s| s.1).collect())));
        }
    }
    drop(torch);
    let _ = std::fs::remove_dir_all(&dir);
    print_table(
        &format!("ResNet-FPN backbones (P3-P7), f32, {threads} threads, wall time per call; GB/s not applicable"),
        &rows,
        &[TORCH],
    );
    // CPU time summed over threads: a second view that a loaded machine distorts less (a
    // descheduled thread uses none), though busy-waiting threads count in full.
    print_table(
        &format!("the same calls, CPU seconds per call summed over all {threads} threads"),
        &cpu_rows,
        &[TORCH],
    );
    Ok(rows)
}
