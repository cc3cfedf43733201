//! `retinanet`: train, evaluate, detect and run the focal-loss ablation.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anchors::PostprocessConfig;
use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use focal_core::FocalParams;
use retinanet::draw::{AblationRun, draw_detections, plot_ablation};
use retinanet::{
    BoxLoss, Dataset, LossConfig, ModelConfig, RetinaLoss, RetinaNet, SyntheticConfig, TrainConfig, Trainer,
};

#[derive(Parser)]
#[command(name = "retinanet", version, about = "RetinaNet with focal loss on the CPU: train, eval, detect, ablate")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model (the tiny configuration on the built-in synthetic shapes by default).
    Train(TrainArgs),
    /// COCO bbox AP of a checkpoint on a dataset.
    Eval(EvalArgs),
    /// Detect objects in images: COCO-style JSON, and PNGs with boxes with --draw.
    Detect(DetectArgs),
    /// The paper's ablation in miniature: gamma in {0, 0.5, 1, 2, 5} and no prior init.
    Ablate(AblateArgs),
}

/// Where the data comes from.
#[derive(Args, Clone)]
struct DataArgs {
    /// COCO instances JSON (default: the built-in synthetic dataset).
    #[arg(long, requires = "images")]
    annotations: Option<PathBuf>,
    /// Image folder of --annotations.
    #[arg(long)]
    images: Option<PathBuf>,
    /// Synthetic images (or at most this many COCO images).
    #[arg(long, default_value_t = 128)]
    num_images: usize,
    /// Seed of the synthetic dataset.
    #[arg(long, default_value_t = 1)]
    data_seed: u64,
}

impl DataArgs {
    fn load(&self) -> Result<Dataset> {
        match (&self.annotations, &self.images) {
            (Some(a), Some(i)) => Ok(Dataset::load_coco(a, i, Some(self.num_images))?),
            _ => Ok(Dataset::synthetic(&SyntheticConfig::small(self.num_images, self.data_seed))?),
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum BoxLossArg {
    L1,
    SmoothL1,
    Giou,
}

#[derive(Args)]
struct TrainArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Iterations.
    #[arg(long, default_value_t = 1000)]
    iterations: usize,
    /// Images per batch.
    #[arg(long, default_value_t = 4)]
    batch_size: usize,
    /// Base learning rate.
    #[arg(long, default_value_t = 0.01)]
    lr: f32,
    /// Focal loss gamma.
    #[arg(long, default_value_t = 2.0)]
    gamma: f64,
    /// Focal loss alpha (negative: none).
    #[arg(long, default_value_t = 0.25)]
    alpha: f64,
    /// Start the classifier bias at 0 instead of the prior 0.01.
    #[arg(long)]
    no_prior: bool,
    /// Box loss.
    #[arg(long, value_enum, default_value = "l1")]
    box_loss: BoxLossArg,
    /// Model seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Checkpoint to write (atomically, every --save-every iterations and at the end).
    #[arg(long, default_value = "retinanet.safetensors")]
    out: PathBuf,
    /// Save every this many iterations (0: only at the end).
    #[arg(long, default_value_t = 0)]
    save_every: usize,
    /// Resume from this checkpoint.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Loss log (CSV: iteration, lr, classification, box, foreground).
    #[arg(long)]
    log: Option<PathBuf>,
}

#[derive(Args)]
struct EvalArgs {
    /// The checkpoint.
    #[arg(long)]
    checkpoint: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Write the statistics as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct DetectArgs {
    /// The checkpoint.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Images (PNG or JPEG).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Detections JSON to write.
    #[arg(long, default_value = "detections.json")]
    out: PathBuf,
    /// Also write each image with its boxes as PNG into this folder.
    #[arg(long)]
    draw: Option<PathBuf>,
    /// Minimum score of drawn boxes.
    #[arg(long, default_value_t = 0.3)]
    draw_threshold: f32,
}

#[derive(Args)]
struct AblateArgs {
    /// Iterations per run.
    #[arg(long, default_value_t = 600)]
    iterations: usize,
    /// Training images.
    #[arg(long, default_value_t = 128)]
    num_images: usize,
    /// Held-out images.
    #[arg(long, default_value_t = 64)]
    val_images: usize,
    /// Side of the synthetic images (objects keep their 16-56 pixel sizes, so larger images
    /// mean more anchors per object: a stronger foreground-background imbalance).
    #[arg(long, default_value_t = 128)]
    image_size: usize,
    /// Folder for the table (ablation.md), the runs (ablation.json) and the plot (ablation.png).
    #[arg(long, default_value = "ablation")]
    out_dir: PathBuf,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Train(a) => train(a),
        Command::Eval(a) => eval(a),
        Command::Detect(a) => detect(a),
        Command::Ablate(a) => ablate(a),
    }
}

fn loss_config(gamma: f64, alpha: f64, box_loss: BoxLossArg) -> Result<LossConfig> {
    let alpha = (alpha >= 0.0).then_some(alpha);
    Ok(LossConfig {
        focal: FocalParams::new(alpha, gamma)?,
        box_loss: match box_loss {
            BoxLossArg::L1 => BoxLoss::L1,
            BoxLossArg::SmoothL1 => BoxLoss::SmoothL1 { beta: 1.0 / 9.0 },
            BoxLossArg::Giou => BoxLoss::Giou,
        },
        ..LossConfig::default()
    })
}

/// Trains `model` with a progress bar; returns the trainer.
fn run_training(model: RetinaNet, loss: LossConfig, cfg: TrainConfig, data: &Dataset, quiet: bool) -> Result<Trainer> {
    let mut trainer = Trainer::new(model, RetinaLoss::new(loss)?, cfg)?;
    train_loop(&mut trainer, data, quiet, None, 0)?;
    Ok(trainer)
}

fn train_loop(
    trainer: &mut Trainer,
    data: &Dataset,
    quiet: bool,
    save: Option<&Path>,
    save_every: usize,
) -> Result<()> {
    let total = trainer.config.iterations as u64;
    let bar = if quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(total) };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_position(trainer.iteration as u64);
    let mut save_error = None;
    trainer.train(&data.samples, |t| {
        if let Some(e) = t.log.last() {
            bar.set_position(t.iteration as u64);
            bar.set_message(format!(
                "cls {:.3} box {:.3} lr {:.4}",
                e.loss.classification, e.loss.box_regression, e.lr
            ));
        }
        if let Some(p) = save
            && save_every > 0
            && t.iteration.is_multiple_of(save_every)
            && let Err(e) = t.save_checkpoint(p)
        {
            save_error.get_or_insert(e);
        }
    })?;
    bar.finish_and_clear();
    if let Some(e) = save_error {
        return Err(e.into());
    }
    Ok(())
}

fn train(a: TrainArgs) -> Result<()> {
    let data = a.data.load()?;
    let mut config = ModelConfig::tiny(data.categories.len());
    if a.no_prior {
        config.prior_probability = None;
    }
    let model = RetinaNet::new(config, a.seed)?;
    let cfg = TrainConfig { batch_size: a.batch_size, base_lr: a.lr, seed: a.seed, ..TrainConfig::quick(a.iterations) };
    let mut trainer = Trainer::new(model, RetinaLoss::new(loss_config(a.gamma, a.alpha, a.box_loss)?)?, cfg)?;
    trainer.metadata.insert("class_names".into(), serde_json::to_string(&data.class_names())?);
    trainer.metadata.insert("category_ids".into(), serde_json::to_string(&data.category_ids())?);
    if let Some(r) = &a.resume {
        trainer.load_checkpoint(r)?;
        eprintln!("resumed from {} at iteration {}", r.display(), trainer.iteration);
    }
    let start = Instant::now();
    train_loop(&mut trainer, &data, false, Some(&a.out), a.save_every)?;
    trainer.save_checkpoint(&a.out)?;
    if let Some(log) = &a.log {
        let mut csv = String::from("iteration,lr,classification,box,foreground\n");
        for e in &trainer.log {
            csv.push_str(&format!(
                "{},{},{},{},{}\n",
                e.iteration, e.lr, e.loss.classification, e.loss.box_regression, e.loss.num_foreground
            ));
        }
        retinanet::train::write_atomic(log, csv.as_bytes())?;
    }
    println!(
        "trained {} iterations in {:.1}s; checkpoint {}",
        trainer.log.len(),
        start.elapsed().as_secs_f64(),
        a.out.display()
    );
    Ok(())
}

fn evaluate_model(model: &mut RetinaNet, data: &Dataset) -> Result<retinanet::eval::CocoStats> {
    if data.categories.len() != model.num_classes() {
        bail!("the dataset has {} categories, the checkpoint {} classes", data.categories.len(), model.num_classes());
    }
    let images: Vec<_> = data.samples.iter().map(|s| &s.image).collect();
    let dets = retinanet::infer::detect(model, &images, 8, &PostprocessConfig::torchvision_retinanet())?;
    Ok(retinanet::eval::evaluate(&data.samples, &dets, &data.categories)?)
}

fn eval(a: EvalArgs) -> Result<()> {
    let mut model = retinanet::checkpoint::load_model(&a.checkpoint)?;
    let data = a.data.load()?;
    let start = Instant::now();
    let stats = evaluate_model(&mut model, &data)?;
    for (n, v) in retinanet::eval::STAT_NAMES.iter().zip(stats.0) {
        println!("{n:>6} {v:.4}");
    }
    println!("{} images in {:.1}s", data.samples.len(), start.elapsed().as_secs_f64());
    if let Some(p) = &a.json {
        retinanet::train::write_atomic(p, serde_json::to_string_pretty(&stats.to_json())?.as_bytes())?;
    }
    Ok(())
}

fn detect(a: DetectArgs) -> Result<()> {
    let mut model = retinanet::checkpoint::load_model(&a.checkpoint)?;
    let mut images = Vec::new();
    for p in &a.inputs {
        let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        let img =
            image::load_from_memory(&bytes).with_context(|| format!("{}: cannot decode image", p.display()))?.to_rgb8();
        let (w, h) = img.dimensions();
        images.push(retinanet::RgbImage::from_rgb8(img.as_raw(), h as usize, w as usize));
    }
    let refs: Vec<_> = images.iter().collect();
    let dets = retinanet::infer::detect(&mut model, &refs, 4, &PostprocessConfig::torchvision_retinanet())?;
    let names = retinanet::checkpoint::read_class_names(&a.checkpoint)?
        .unwrap_or_else(|| (0..model.num_classes()).map(|l| l.to_string()).collect());
    // A COCO results list (image ids are the 1-based positions of the inputs, category ids
    // label + 1), each entry also naming its file and class.
    let mut out = Vec::new();
    for (i, (p, d)) in a.inputs.iter().zip(&dets).enumerate() {
        for ((b, s), &l) in d.boxes.iter().zip(&d.scores).zip(&d.labels) {
            out.push(serde_json::json!({
                "image_id": i + 1, "file_name": p.display().to_string(), "category_id": l + 1,
                "category": names.get(l as usize), "score": s,
                "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
            }));
        }
    }
    if let Some(dir) = &a.draw {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for ((p, img), d) in a.inputs.iter().zip(&images).zip(&dets) {
            let stem = p.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "image".into());
            draw_detections(img, d, &names, a.draw_threshold, &dir.join(format!("{stem}.png")))?;
        }
    }
    retinanet::train::write_atomic(&a.out, serde_json::to_string_pretty(&out)?.as_bytes())?;
    println!(
        "{} images, {} detections -> {}",
        dets.len(),
        dets.iter().map(|d| d.scores.len()).sum::<usize>(),
        a.out.display()
    );
    Ok(())
}

fn ablate(a: AblateArgs) -> Result<()> {
    let synthetic = |n, seed| SyntheticConfig { image_size: a.image_size, ..SyntheticConfig::small(n, seed) };
    let train = Dataset::synthetic(&synthetic(a.num_images, 1))?;
    let val = Dataset::synthetic(&synthetic(a.val_images, 99))?;
    std::fs::create_dir_all(&a.out_dir).with_context(|| format!("creating {}", a.out_dir.display()))?;
    // The paper's Table 1a pairs: alpha 0.75 at gamma 0, 0.5 at 0.5, 0.25 from gamma 1 on.
    let settings = [
        (0.0, 0.75, true),
        (0.5, 0.5, true),
        (1.0, 0.25, true),
        (2.0, 0.25, true),
        (5.0, 0.25, true),
        (2.0, 0.25, false),
    ];
    let mut runs = Vec::new();
    for (gamma, alpha, prior) in settings {
        let name = format!("gamma={gamma} alpha={alpha}{}", if prior { "" } else { " no prior init" });
        let start = Instant::now();
        let mut config = ModelConfig { min_size: a.image_size, max_size: a.image_size, ..ModelConfig::tiny(3) };
        if !prior {
            config.prior_probability = None;
        }
        let model = RetinaNet::new(config, 0)?;
        let cfg = TrainConfig::quick(a.iterations);
        let (ap, ap50, losses) =
            match run_training(model, loss_config(gamma, alpha, BoxLossArg::L1)?, cfg, &train, false) {
                Ok(mut t) => {
                    let stats = evaluate_model(&mut t.model, &val)?;
                    (stats.ap(), stats.ap50(), t.log.iter().map(|e| e.loss.total()).collect())
                }
                Err(e) => {
                    eprintln!("{name}: {e}");
                    (0.0, 0.0, Vec::new())
                }
            };
        println!("{name:<32} AP {ap:.3} AP50 {ap50:.3} ({:.0}s)", start.elapsed().as_secs_f64());
        runs.push(AblationRun { name, gamma, prior_init: prior, ap, ap50, losses });
    }
    let mut table = String::from(
        "| gamma | alpha | prior init | AP | AP50 | first 20 it. loss | last 20 it. loss |\n|---|---|---|---|---|---|---|\n",
    );
    for ((gamma, alpha, prior), r) in settings.iter().zip(&runs) {
        let mean = |s: &[f64]| if s.is_empty() { f64::NAN } else { s.iter().sum::<f64>() / s.len() as f64 };
        let n = r.losses.len();
        table.push_str(&format!(
            "| {gamma} | {alpha} | {} | {:.3} | {:.3} | {:.3} | {:.3} |\n",
            if *prior { "yes" } else { "no" },
            r.ap,
            r.ap50,
            mean(&r.losses[..n.min(20)]),
            mean(&r.losses[n.saturating_sub(20)..])
        ));
    }
    println!("\n{table}");
    retinanet::train::write_atomic(&a.out_dir.join("ablation.md"), table.as_bytes())?;
    let json: Vec<serde_json::Value> = runs
        .iter()
        .map(|r| serde_json::json!({"name": r.name, "gamma": r.gamma, "prior_init": r.prior_init, "ap": r.ap, "ap50": r.ap50, "losses": r.losses}))
        .collect();
    retinanet::train::write_atomic(&a.out_dir.join("ablation.json"), serde_json::to_string(&json)?.as_bytes())?;
    plot_ablation(&runs, &a.out_dir.join("ablation.png"))?;
    println!("wrote {}/ablation.{{md,json,png}}", a.out_dir.display());
    Ok(())
}
