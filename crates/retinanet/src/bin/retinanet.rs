//! `retinanet`: train, evaluate, detect and run the focal-loss ablation.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anchors::PostprocessConfig;
use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use focal_core::FocalParams;
use retinanet::draw::{AblationRun, draw_detections, plot_ablation};
use retinanet::{
    BackboneConfig, BoxLoss, Dataset, LossConfig, ModelConfig, RetinaLoss, RetinaNet, SyntheticConfig, TrainConfig,
    Trainer,
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

/// Synthetic training images by default: 512 (with 3000 iterations, AP 0.77 on held-out
/// images in about 40 s on 2 cores; 128 images and 1000 iterations gave 0.46).
const SYNTHETIC_IMAGES: usize = 512;

/// Where the data comes from.
#[derive(Args, Clone)]
struct DataArgs {
    /// COCO instances JSON (default: the built-in synthetic dataset).
    #[arg(long, requires = "images")]
    annotations: Option<PathBuf>,
    /// Image folder of --annotations.
    #[arg(long)]
    images: Option<PathBuf>,
    /// Synthetic images [default: 512], or at most this many COCO images [default: all].
    #[arg(long)]
    num_images: Option<usize>,
    /// Seed of the synthetic dataset.
    #[arg(long, default_value_t = 1)]
    data_seed: u64,
}

impl DataArgs {
    fn load(&self) -> Result<Dataset> {
        match (&self.annotations, &self.images) {
            (Some(a), Some(i)) => Ok(Dataset::load_coco(a, i, self.num_images)?),
            _ => Ok(Dataset::synthetic(&SyntheticConfig::small(
                self.num_images.unwrap_or(SYNTHETIC_IMAGES),
                self.data_seed,
            ))?),
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
    /// Iterations (the learning rate drops x0.1 at 75% of them).
    #[arg(long, default_value_t = 3000)]
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
    /// After training, evaluate on this many held-out synthetic images (0: no evaluation).
    /// Only with the built-in data: for a COCO dataset run `eval` on its validation split.
    #[arg(long, default_value_t = 64)]
    eval_images: usize,
    /// Seed of the held-out synthetic images (must differ from --data-seed).
    #[arg(long, default_value_t = 99)]
    eval_seed: u64,
    /// Write the held-out statistics as JSON here.
    #[arg(long)]
    eval_json: Option<PathBuf>,
}

/// torchvision architectures whose RetinaNet state_dicts load 1:1.
#[derive(Clone, Copy, ValueEnum)]
enum ArchArg {
    /// `retinanet_resnet50_fpn` (P6/P7 from P5, plain heads).
    Resnet50Fpn,
    /// `retinanet_resnet50_fpn_v2` (P6/P7 from C5, GroupNorm heads).
    Resnet50FpnV2,
    /// The v1 layout on ResNet-18 (a `RetinaNet` built on `resnet18` by hand).
    Resnet18Fpn,
    /// The v1 layout on ResNet-34.
    Resnet34Fpn,
    /// The v1 layout on ResNet-101.
    Resnet101Fpn,
}

/// The model to run: our checkpoint, or a torchvision RetinaNet state_dict.
#[derive(Args)]
#[group(skip)]
struct ModelArgs {
    /// A checkpoint written by `retinanet train`.
    #[arg(long, required_unless_present = "torchvision_weights", conflicts_with = "torchvision_weights")]
    checkpoint: Option<PathBuf>,
    /// A torchvision RetinaNet state_dict in safetensors (as written by
    /// crates/fpn-net/scripts/export_torchvision.py). Its labels are taken as COCO category
    /// ids (torchvision's COCO models have 91 outputs, index 0 unused): `category_id` = label.
    #[arg(long)]
    torchvision_weights: Option<PathBuf>,
    /// Architecture of --torchvision-weights.
    #[arg(long, value_enum, default_value = "resnet50-fpn", conflicts_with = "checkpoint")]
    arch: ArchArg,
    /// Classes of --torchvision-weights (COCO: 91).
    #[arg(long, default_value_t = 91, conflicts_with = "checkpoint")]
    num_classes: usize,
    /// Shorter image side after resizing, with --torchvision-weights (torchvision: 800).
    #[arg(long, default_value_t = 800, conflicts_with = "checkpoint")]
    min_size: usize,
    /// Longest image side after resizing, with --torchvision-weights (torchvision: 1333).
    #[arg(long, default_value_t = 1333, conflicts_with = "checkpoint")]
    max_size: usize,
}

/// A model ready for inference and how its labels map to COCO categories.
struct LoadedModel {
    model: RetinaNet,
    /// `(COCO category id, name)` of each label.
    categories: Vec<(u64, String)>,
    /// Torchvision weights (labels are COCO category ids) rather than our checkpoint.
    torchvision: bool,
}

impl ModelArgs {
    fn load(&self) -> Result<LoadedModel> {
        if let Some(path) = &self.checkpoint {
            let model = retinanet::checkpoint::load_model(path)?;
            let names = retinanet::checkpoint::read_class_names(path)?;
            let ids = retinanet::checkpoint::read_category_ids(path)?;
            // Checkpoints from `train` store the dataset's category ids; without them label
            // l is category l + 1, as in the built-in data.
            let categories = (0..model.num_classes())
                .map(|l| {
                    let id = ids.as_ref().and_then(|v| v.get(l).copied()).unwrap_or(l as u64 + 1);
                    let name = names.as_ref().and_then(|v| v.get(l).cloned()).unwrap_or_else(|| l.to_string());
                    (id, name)
                })
                .collect();
            return Ok(LoadedModel { model, categories, torchvision: false });
        }
        let Some(path) = &self.torchvision_weights else { bail!("give --checkpoint or --torchvision-weights") };
        let base = match self.arch {
            ArchArg::Resnet50FpnV2 => ModelConfig::retinanet_resnet50_fpn_v2(self.num_classes),
            _ => ModelConfig::retinanet_resnet50_fpn(self.num_classes),
        };
        let layers = match self.arch {
            ArchArg::Resnet18Fpn => 18,
            ArchArg::Resnet34Fpn => 34,
            ArchArg::Resnet101Fpn => 101,
            ArchArg::Resnet50Fpn | ArchArg::Resnet50FpnV2 => 50,
        };
        let backbone = match base.backbone {
            BackboneConfig::ResNet { p6p7_from_c5, trainable_layers, .. } => {
                BackboneConfig::ResNet { layers, p6p7_from_c5, trainable_layers }
            }
            other => other,
        };
        let config = ModelConfig { backbone, min_size: self.min_size, max_size: self.max_size, ..base };
        config.validate()?;
        let model = retinanet::checkpoint::load_torchvision(path, config).with_context(|| {
            format!(
                "{} is not a torchvision RetinaNet state_dict for --arch {} with {} classes",
                path.display(),
                self.arch.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default(),
                self.num_classes
            )
        })?;
        // torchvision's detection models predict the COCO category id itself (91 outputs,
        // 0 = background placeholder, some ids unused), not an index into a category list.
        let categories = (0..self.num_classes)
            .map(|l| {
                let name = if self.num_classes == retinanet::coco::COCO_CATEGORY_NAMES.len() {
                    retinanet::coco::COCO_CATEGORY_NAMES[l].to_string()
                } else {
                    l.to_string()
                };
                (l as u64, name)
            })
            .collect();
        Ok(LoadedModel { model, categories, torchvision: true })
    }
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    data: DataArgs,
    /// Write the statistics as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct DetectArgs {
    #[command(flatten)]
    model: ModelArgs,
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
    #[arg(long, default_value_t = 3000)]
    iterations: usize,
    /// Training images.
    #[arg(long, default_value_t = SYNTHETIC_IMAGES)]
    num_images: usize,
    /// Held-out images.
    #[arg(long, default_value_t = 64)]
    val_images: usize,
    /// Side of the synthetic images (objects keep their 16-56 pixel sizes, so larger images
    /// mean more anchors per object: a stronger foreground-background imbalance).
    #[arg(long, default_value_t = 128)]
    image_size: usize,
    /// Runs per setting with model and batch-order seeds 0, 1, ...: the table gives the mean
    /// AP and each seed's, so a difference can be told from seed noise.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    seeds: u32,
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
    let synthetic = a.data.annotations.is_none();
    if synthetic && a.eval_images > 0 && a.eval_seed == a.data.data_seed {
        bail!("--eval-seed {} equals --data-seed: the held-out images would be the training images", a.eval_seed);
    }
    let mut config = ModelConfig::tiny(data.categories.len());
    if a.no_prior {
        config.prior_probability = None;
    }
    let model = RetinaNet::new(config, a.seed)?;
    let cfg = TrainConfig { batch_size: a.batch_size, base_lr: a.lr, seed: a.seed, ..TrainConfig::quick(a.iterations) };
    let mut trainer = Trainer::new(model, RetinaLoss::new(loss_config(a.gamma, a.alpha, a.box_loss)?)?, cfg)?;
    println!("focal loss: {}", trainer.loss.backend().describe());
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
    if a.eval_images == 0 {
        return Ok(());
    }
    if !synthetic {
        println!("no held-out evaluation for a COCO dataset: run `retinanet eval` on its validation split");
        return Ok(());
    }
    let held_out = Dataset::synthetic(&SyntheticConfig::small(a.eval_images, a.eval_seed))?;
    println!("held-out evaluation: {} synthetic images, seed {}", held_out.samples.len(), a.eval_seed);
    print_stats(&mut trainer.model, &data.categories, &held_out, false, a.eval_json.as_deref())
}

/// Evaluates `model` on `data`, prints the 12 COCO statistics and the time, and writes them
/// as JSON to `json` when given.
fn print_stats(
    model: &mut RetinaNet,
    model_categories: &[(u64, String)],
    data: &Dataset,
    torchvision: bool,
    json: Option<&Path>,
) -> Result<()> {
    let start = Instant::now();
    let stats = evaluate_model(model, model_categories, data, torchvision)?;
    for (n, v) in retinanet::eval::STAT_NAMES.iter().zip(stats.0) {
        println!("{n:>6} {v:.4}");
    }
    println!("{} images in {:.1}s", data.samples.len(), start.elapsed().as_secs_f64());
    if let Some(p) = json {
        retinanet::train::write_atomic(p, serde_json::to_string_pretty(&stats.to_json())?.as_bytes())?;
    }
    Ok(())
}

/// COCO statistics of `model` on `data`; label `l` of the model is COCO category
/// `model_categories[l].0`. Every category of the dataset must be one the model predicts;
/// a model we trained must have been trained on exactly the dataset's categories.
fn evaluate_model(
    model: &mut RetinaNet,
    model_categories: &[(u64, String)],
    data: &Dataset,
    torchvision: bool,
) -> Result<retinanet::eval::CocoStats> {
    if !torchvision && data.categories.len() != model.num_classes() {
        bail!("the dataset has {} categories, the checkpoint {} classes", data.categories.len(), model.num_classes());
    }
    for (id, name) in &data.categories {
        if !model_categories.iter().any(|(m, _)| m == id) {
            bail!(
                "the dataset has {} categories and category {id} ({name}) is not among the model's {} classes (ids {:?})",
                data.categories.len(),
                model.num_classes(),
                model_categories.iter().map(|c| c.0).collect::<Vec<_>>()
            );
        }
    }
    let images: Vec<_> = data.samples.iter().map(|s| &s.image).collect();
    let dets = retinanet::infer::detect(model, &images, 8, &PostprocessConfig::torchvision_retinanet())?;
    let gt = retinanet::eval::ground_truth_json(&data.samples, &data.categories);
    let ids: Vec<u64> = data.samples.iter().map(|s| s.id).collect();
    Ok(retinanet::eval::evaluate_json(&gt, &retinanet::eval::detections_json(&ids, &dets, model_categories))?)
}

fn eval(a: EvalArgs) -> Result<()> {
    let LoadedModel { mut model, categories, torchvision } = a.model.load()?;
    let data = a.data.load()?;
    print_stats(&mut model, &categories, &data, torchvision, a.json.as_deref())
}

fn detect(a: DetectArgs) -> Result<()> {
    let LoadedModel { mut model, categories, .. } = a.model.load()?;
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
    let names: Vec<String> = categories.iter().map(|c| c.1.clone()).collect();
    // A COCO results list (image ids are the 1-based positions of the inputs; category ids are
    // the checkpoint's stored ids, label + 1 by default, or the label itself for torchvision
    // weights), each entry also naming its file and class.
    let mut out = Vec::new();
    for (i, (p, d)) in a.inputs.iter().zip(&dets).enumerate() {
        for ((b, s), &l) in d.boxes.iter().zip(&d.scores).zip(&d.labels) {
            out.push(serde_json::json!({
                "image_id": i + 1, "file_name": p.display().to_string(),
                "category_id": categories.get(l as usize).map(|c| c.0),
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
    println!("focal loss: {}", retinanet::FocalBackend::auto()?.describe());
    // The paper's Table 1a pairs: alpha 0.75 at gamma 0, 0.5 at 0.5, 0.25 from gamma 1 on.
    let settings = [
        (0.0, 0.75, true),
        (0.5, 0.5, true),
        (1.0, 0.25, true),
        (2.0, 0.25, true),
        (5.0, 0.25, true),
        (2.0, 0.25, false),
    ];
    let mean = |s: &[f64]| if s.is_empty() { f64::NAN } else { s.iter().sum::<f64>() / s.len() as f64 };
    let mut runs = Vec::new();
    for (gamma, alpha, prior) in settings {
        let name = format!("gamma={gamma} alpha={alpha}{}", if prior { "" } else { " no prior init" });
        let (mut aps, mut ap50s, mut first_losses) = (Vec::new(), Vec::new(), None);
        for seed in 0..a.seeds as u64 {
            let start = Instant::now();
            let mut config = ModelConfig { min_size: a.image_size, max_size: a.image_size, ..ModelConfig::tiny(3) };
            if !prior {
                config.prior_probability = None;
            }
            let model = RetinaNet::new(config, seed)?;
            let cfg = TrainConfig { seed, ..TrainConfig::quick(a.iterations) };
            let (ap, ap50, losses) =
                match run_training(model, loss_config(gamma, alpha, BoxLossArg::L1)?, cfg, &train, false) {
                    Ok(mut t) => {
                        let stats = evaluate_model(&mut t.model, &val.categories, &val, false)?;
                        (stats.ap(), stats.ap50(), t.log.iter().map(|e| e.loss.total()).collect())
                    }
                    Err(e) => {
                        eprintln!("{name} seed {seed}: {e}");
                        (0.0, 0.0, Vec::new())
                    }
                };
            println!("{name:<32} seed {seed} AP {ap:.3} AP50 {ap50:.3} ({:.0}s)", start.elapsed().as_secs_f64());
            aps.push(ap);
            ap50s.push(ap50);
            first_losses.get_or_insert(losses);
        }
        runs.push(AblationRun {
            name,
            gamma,
            prior_init: prior,
            ap: mean(&aps),
            ap50: mean(&ap50s),
            ap_per_seed: aps,
            losses: first_losses.unwrap_or_default(),
        });
    }
    let mut table = format!(
        "| gamma | alpha | prior init | AP{0} | AP per seed | AP50{0} | first 20 it. loss | last 20 it. loss |\n|---|---|---|---|---|---|---|---|\n",
        if a.seeds > 1 { " (mean)" } else { "" }
    );
    for ((gamma, alpha, prior), r) in settings.iter().zip(&runs) {
        let n = r.losses.len();
        let per_seed: Vec<String> = r.ap_per_seed.iter().map(|ap| format!("{ap:.3}")).collect();
        table.push_str(&format!(
            "| {gamma} | {alpha} | {} | {:.3} | {} | {:.3} | {:.3} | {:.3} |\n",
            if *prior { "yes" } else { "no" },
            r.ap,
            per_seed.join(", "),
            r.ap50,
            mean(&r.losses[..n.min(20)]),
            mean(&r.losses[n.saturating_sub(20)..])
        ));
    }
    println!("\n{table}");
    retinanet::train::write_atomic(&a.out_dir.join("ablation.md"), table.as_bytes())?;
    let json: Vec<serde_json::Value> = runs
        .iter()
        .map(|r| serde_json::json!({"name": r.name, "gamma": r.gamma, "prior_init": r.prior_init, "ap": r.ap, "ap50": r.ap50, "ap_per_seed": r.ap_per_seed, "losses": r.losses}))
        .collect();
    retinanet::train::write_atomic(&a.out_dir.join("ablation.json"), serde_json::to_string(&json)?.as_bytes())?;
    plot_ablation(&runs, &a.out_dir.join("ablation.png"))?;
    println!("wrote {}/ablation.{{md,json,png}}", a.out_dir.display());
    Ok(())
}
