//! `cargo xtask bench`: side-by-side throughput tables measured in one run.
//!
//! Every suite produces [`Row`]s. Implementations that are compared are timed in interleaved
//! rounds ([`measure_interleaved`]) so a noisy neighbour slows all of them alike; Python
//! baselines (torch, torchvision) run in a child process between our rounds, on the same inputs
//! (regenerated from the same seed) and with the same thread count. Ratios are printed against
//! a named reference row of the same group and shape.

pub mod anchors;
pub mod focal;
pub mod fpn;
pub mod gpu;
pub mod gpu_objectives;

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// One measured line of a table.
#[derive(Clone, Debug)]
pub struct Row {
    /// The operation, for example `sigmoid_focal_fwd_bwd`.
    pub group: String,
    /// Which implementation (`simd`, `floor`, `torchvision`...).
    pub implementation: String,
    /// The input, for example `120087x80 f32`.
    pub shape: String,
    /// Threads used.
    pub threads: usize,
    /// Median seconds per call.
    pub median_s: f64,
    /// Bytes the call must move at least (reads + writes), for GB/s.
    pub bytes: f64,
}

impl Row {
    /// Throughput in GB/s (1e9 bytes), from the bytes the operation must move.
    pub fn gbytes_per_s(&self) -> f64 {
        if self.median_s > 0.0 { self.bytes / self.median_s / 1e9 } else { 0.0 }
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "group": self.group,
            "impl": self.implementation,
            "shape": self.shape,
            "threads": self.threads,
            "median_s": self.median_s,
            "gbytes_per_s": self.gbytes_per_s(),
        })
    }
}

/// The suites `cargo xtask bench` knows.
pub const SUITES: [&str; 5] = ["focal", "anchors", "fpn", "gpu", "all"];

/// Command-line options of `cargo xtask bench`.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Shorter timing (for smoke runs).
    pub quick: bool,
    /// Also write the rows as JSON here.
    pub json: Option<PathBuf>,
    /// Suites to run; empty means the main job (`focal`), `all` means every suite.
    pub suites: Vec<String>,
    /// Threads for every implementation (ours and the Python baselines); 0 = all cores.
    pub threads: usize,
}

impl Options {
    /// Parses `[--quick] [--json FILE] [--threads N] [SUITE...]`.
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut opts = Options::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--quick" => opts.quick = true,
                "--json" => opts.json = Some(it.next().context("--json needs a file name")?.into()),
                "--threads" => {
                    opts.threads = it.next().context("--threads needs a number")?.parse().context("--threads N")?
                }
                s if s.starts_with('-') => bail!("unknown option `{s}`"),
                s if SUITES.contains(&s) => opts.suites.push(s.to_string()),
                s => bail!("unknown suite `{s}`: expected one of {SUITES:?}"),
            }
        }
        if opts.threads == 0 {
            opts.threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        }
        Ok(opts)
    }

    /// Seconds each implementation gets in total, spread over the rounds.
    pub fn budget_s(&self) -> f64 {
        if self.quick { 0.3 } else { 2.0 }
    }

    fn wants(&self, suite: &str) -> bool {
        if self.suites.is_empty() {
            return suite == "focal";
        }
        self.suites.iter().any(|s| s == suite || s == "all")
    }
}

/// Times each closure in `impls` in interleaved rounds and returns the median seconds per call
/// of each, in order. Each closure is called once untimed first (warm-up, page faults).
pub fn measure_interleaved(impls: &mut [&mut dyn FnMut()], budget_s: f64) -> Vec<f64> {
    const ROUNDS: usize = 5;
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); impls.len()];
    let mut per_call = vec![0.0f64; impls.len()];
    for (f, t) in impls.iter_mut().zip(&mut per_call) {
        let start = Instant::now();
        f();
        *t = start.elapsed().as_secs_f64().max(1e-7);
    }
    for _ in 0..ROUNDS {
        for ((f, s), t) in impls.iter_mut().zip(&mut samples).zip(&per_call) {
            let calls = ((budget_s / ROUNDS as f64 / t) as usize).clamp(2, 10_000);
            for _ in 0..calls {
                let start = Instant::now();
                f();
                s.push(start.elapsed().as_secs_f64());
            }
        }
    }
    samples.into_iter().map(median).collect()
}

/// The median of a sample (0 for an empty one).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) }
}

/// The Python interpreter for baselines: `$FOCAL_PYTHON`, else `python3`.
pub fn python() -> String {
    std::env::var("FOCAL_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Whether `python -c "import <modules>"` works.
pub fn python_has(modules: &str) -> bool {
    Command::new(python())
        .args(["-c", &format!("import {modules}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Runs a baseline script (path relative to the workspace root) that prints a JSON list of rows
/// (`group`, `impl`, `shape`, `threads`, `median_s`, `bytes`) on its last line of stdout.
pub fn run_python_rows(script: &str, args: &[String]) -> Result<Vec<Row>> {
    let root = workspace_root();
    let out = Command::new(python())
        .arg(root.join(script))
        .args(args)
        .current_dir(&root)
        .output()
        .with_context(|| format!("running {} {script}", python()))?;
    if !out.status.success() {
        bail!("{script} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let (last, before) = lines.split_last().context("baseline printed nothing")?;
    // Everything before the rows is for the reader: the library versions, skipped rows.
    for line in before {
        println!("{script}: {line}");
    }
    let parsed: serde_json::Value = serde_json::from_str(last).context("baseline output is not JSON")?;
    let rows = parsed.as_array().context("baseline output is not a JSON list")?;
    rows.iter()
        .map(|r| {
            Ok(Row {
                group: r["group"].as_str().context("group")?.to_string(),
                implementation: r["impl"].as_str().context("impl")?.to_string(),
                shape: r["shape"].as_str().context("shape")?.to_string(),
                threads: r["threads"].as_u64().context("threads")? as usize,
                median_s: r["median_s"].as_f64().context("median_s")?,
                bytes: r["bytes"].as_f64().unwrap_or(0.0),
            })
        })
        .collect()
}

/// The workspace root: `$FOCAL_ROOT` when set (a carried release binary on another machine,
/// see scripts/gpu-check.sh), else the parent of `xtask/` where it was built.
pub fn workspace_root() -> PathBuf {
    if let Some(root) = std::env::var_os("FOCAL_ROOT") {
        return PathBuf::from(root);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default()
}

/// Prints rows as a table: for each (group, shape), every implementation's median, GB/s and
/// its time as a multiple of each reference implementation present (`references`, in order).
pub fn print_table(title: &str, rows: &[Row], references: &[&str]) {
    println!("\n## {title}\n");
    let refs: Vec<&str> = references.to_vec();
    let mut header = String::from("| op | shape | impl | threads | median | GB/s |");
    let mut rule = String::from("|---|---|---|---:|---:|---:|");
    for r in &refs {
        header.push_str(&format!(" x {r} |"));
        rule.push_str("---:|");
    }
    println!("{header}\n{rule}");
    for row in rows {
        let mut line = format!(
            "| {} | {} | {} | {} | {} | {:.1} |",
            row.group,
            row.shape,
            row.implementation,
            row.threads,
            format_seconds(row.median_s),
            row.gbytes_per_s()
        );
        for r in &refs {
            let base = rows.iter().find(|b| b.group == row.group && b.shape == row.shape && b.implementation == *r);
            match base {
                Some(b) if b.median_s > 0.0 => line.push_str(&format!(" {:.2} |", row.median_s / b.median_s)),
                _ => line.push_str(" - |"),
            }
        }
        println!("{line}");
    }
}

/// `1.23 ms` style.
pub fn format_seconds(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.3} s")
    } else if s >= 1e-3 {
        format!("{:.3} ms", s * 1e3)
    } else {
        format!("{:.2} us", s * 1e6)
    }
}

/// Entry point of `cargo xtask bench`.
pub fn run(args: &[String]) -> Result<()> {
    let opts = Options::parse(args)?;
    let mut all = Vec::new();
    if opts.wants("focal") {
        all.extend(focal::run(&opts)?);
    }
    if opts.wants("anchors") {
        all.extend(anchors::run(&opts)?);
    }
    if opts.wants("gpu") {
        all.extend(gpu::run(&opts)?);
    }
    if opts.wants("fpn") {
        all.extend(fpn::run(&opts)?);
    }
    if let Some(path) = &opts.json {
        let json = serde_json::Value::Array(all.iter().map(Row::to_json).collect());
        std::fs::write(path, serde_json::to_string_pretty(&json)?).with_context(|| format!("writing {path:?}"))?;
        println!("\nrows written to {}", path.display());
    }
    Ok(())
}
