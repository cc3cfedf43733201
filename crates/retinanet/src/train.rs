//! Training: SGD with momentum and weight decay, linear warm-up, step decay, horizontal
//! flips, atomic and resumable safetensors checkpoints.

use std::collections::HashMap;
use std::path::Path;

use anchors::GroundTruth;
use fpn_net::Module;

use crate::data::Sample;
use crate::error::{Result, RetinaError, config_error, io_error};
use crate::init::NormalRng;
use crate::loss::{LossValues, RetinaLoss};
use crate::model::RetinaNet;
use crate::transform::{batch_images, flip_horizontal, resize_bilinear, resize_boxes, resized_size};

/// Optimiser and schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Iterations (batches).
    pub iterations: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// Learning rate after warm-up.
    pub base_lr: f32,
    /// SGD momentum.
    pub momentum: f32,
    /// L2 weight decay.
    pub weight_decay: f32,
    /// Linear warm-up length in iterations.
    pub warmup_iters: usize,
    /// Warm-up starts at `base_lr * warmup_factor`.
    pub warmup_factor: f32,
    /// Iterations at which the learning rate is multiplied by `lr_decay`.
    pub lr_steps: Vec<usize>,
    /// The step decay factor.
    pub lr_decay: f32,
    /// Probability of flipping each training image left to right.
    pub flip_probability: f32,
    /// Seed of the batch order and the flips.
    pub seed: u64,
}

impl TrainConfig {
    /// A short schedule for the tiny model on the synthetic data.
    pub fn quick(iterations: usize) -> Self {
        TrainConfig {
            iterations,
            batch_size: 4,
            base_lr: 0.01,
            momentum: 0.9,
            weight_decay: 1e-4,
            warmup_iters: iterations.min(50) / 2,
            warmup_factor: 0.001,
            lr_steps: vec![iterations * 3 / 4],
            lr_decay: 0.1,
            flip_probability: 0.5,
            seed: 0,
        }
    }

    /// The learning rate at `iteration` (torchvision reference scripts: linear warm-up from
    /// `warmup_factor`, then x`lr_decay` at each step).
    pub fn learning_rate(&self, iteration: usize) -> f32 {
        let decays = self.lr_steps.iter().filter(|&&s| iteration >= s).count() as i32;
        let mut lr = self.base_lr * self.lr_decay.powi(decays);
        if iteration < self.warmup_iters {
            let t = iteration as f32 / self.warmup_iters as f32;
            lr *= self.warmup_factor * (1.0 - t) + t;
        }
        lr
    }

    fn validate(&self) -> Result<()> {
        let finite = [self.base_lr, self.momentum, self.weight_decay, self.warmup_factor, self.lr_decay];
        if self.batch_size == 0 || finite.iter().any(|v| !(v.is_finite() && *v >= 0.0)) {
            return Err(config_error(format!(
                "training config {self:?}: expected batch_size > 0 and finite, non-negative rates"
            )));
        }
        if !(0.0..=1.0).contains(&self.flip_probability) {
            return Err(config_error("flip_probability must be in [0, 1]"));
        }
        Ok(())
    }
}

/// One line of the loss log.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogEntry {
    /// Iteration (0-based).
    pub iteration: usize,
    /// Learning rate used.
    pub lr: f32,
    /// The losses.
    pub loss: LossValues,
}

/// A model, its loss, the optimiser state and the position in the schedule.
#[derive(Debug)]
pub struct Trainer {
    /// The model being trained.
    pub model: RetinaNet,
    /// The loss.
    pub loss: RetinaLoss,
    /// The schedule.
    pub config: TrainConfig,
    /// Next iteration to run.
    pub iteration: usize,
    /// Momentum buffers by parameter name (kept here rather than in `fpn_net::Sgd`, whose
    /// state is private, so checkpoints can carry them and resume exactly).
    velocity: HashMap<String, Vec<f32>>,
    /// Every iteration's losses.
    pub log: Vec<LogEntry>,
    /// Extra metadata stored in checkpoints (for example `class_names`, a JSON list).
    pub metadata: HashMap<String, String>,
    d_logits: Vec<f32>,
    d_boxes: Vec<[f32; 4]>,
}

impl Trainer {
    /// A trainer at iteration 0.
    ///
    /// # Errors
    /// [`RetinaError::Config`] for an invalid schedule.
    pub fn new(model: RetinaNet, loss: RetinaLoss, config: TrainConfig) -> Result<Self> {
        config.validate()?;
        Ok(Trainer {
            model,
            loss,
            config,
            iteration: 0,
            velocity: HashMap::new(),
            log: Vec::new(),
            metadata: HashMap::new(),
            d_logits: Vec::new(),
            d_boxes: Vec::new(),
        })
    }

    /// The images of iteration `it`: a seeded shuffle of the dataset per epoch, so the batch
    /// order only depends on the seed and the iteration (and resuming gives the same batches).
    pub fn batch_indices(&self, it: usize, dataset_len: usize) -> Vec<usize> {
        if dataset_len == 0 {
            return Vec::new();
        }
        let b = self.config.batch_size;
        (0..b)
            .map(|k| {
                let flat = it * b + k;
                let (epoch, pos) = (flat / dataset_len, flat % dataset_len);
                let mut order: Vec<usize> = (0..dataset_len).collect();
                let mut rng = NormalRng::new(self.config.seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9));
                for i in (1..dataset_len).rev() {
                    order.swap(i, rng.below(i as u64 + 1) as usize);
                }
                order[pos]
            })
            .collect()
    }

    /// Runs one iteration on `samples` (resized to the model's sizes, flipped at random).
    ///
    /// # Errors
    /// [`RetinaError::Diverged`] when the loss is not finite; data and shape errors.
    pub fn step(&mut self, samples: &[&Sample]) -> Result<LossValues> {
        let cfg = self.model.config().clone();
        let mut rng =
            NormalRng::new(self.config.seed.wrapping_add(0xA5A5) ^ (self.iteration as u64).wrapping_mul(0x2545_F491));
        let mut images = Vec::with_capacity(samples.len());
        let mut boxes = Vec::with_capacity(samples.len());
        for s in samples {
            let [h, w] = resized_size(s.image.height, s.image.width, cfg.min_size, cfg.max_size);
            let mut img = resize_bilinear(&s.image, h, w);
            let mut b = s.boxes.clone();
            resize_boxes(&mut b, [s.image.height, s.image.width], [h, w]);
            if rng.unit() < self.config.flip_probability {
                flip_horizontal(&mut img, &mut b);
            }
            images.push(img);
            boxes.push(b);
        }
        let batch = batch_images(&images.iter().collect::<Vec<_>>())?;
        self.model.forward(&batch.images)?;
        let anchors = self.model.anchors()?;
        let gts: Vec<GroundTruth<'_>> =
            samples.iter().zip(&boxes).map(|(s, b)| GroundTruth { boxes: b, labels: &s.labels }).collect();
        self.d_logits.resize(self.model.logits().len(), 0.0);
        self.d_boxes.resize(self.model.regression().len(), [0.0; 4]);
        let values = self.loss.compute(
            self.model.logits(),
            self.model.regression(),
            &anchors,
            &gts,
            cfg.num_classes,
            &mut self.d_logits,
            &mut self.d_boxes,
        )?;
        if !values.total().is_finite() {
            return Err(RetinaError::Diverged { iteration: self.iteration, loss: values.total() });
        }
        self.model.zero_grad();
        self.model.backward(&batch.images, &self.d_logits, &self.d_boxes)?;
        let lr = self.config.learning_rate(self.iteration);
        self.sgd_step(lr);
        self.log.push(LogEntry { iteration: self.iteration, lr, loss: values });
        self.iteration += 1;
        Ok(values)
    }

    /// `torch.optim.SGD` (dampening 0, no Nesterov) on every trainable parameter.
    fn sgd_step(&mut self, lr: f32) {
        let (mu, wd) = (self.config.momentum, self.config.weight_decay);
        for (name, p) in self.model.named_params_mut() {
            if !p.trainable() {
                continue;
            }
            let v = self.velocity.entry(name).or_default();
            let first = v.is_empty();
            v.resize(p.numel(), 0.0);
            for ((w, &g), v) in p.value.iter_mut().zip(&p.grad).zip(v.iter_mut()) {
                let g = g + wd * *w;
                *v = if first { g } else { mu * *v + g };
                *w -= lr * *v;
            }
        }
    }

    /// Trains until `config.iterations`, calling `progress` after every iteration.
    ///
    /// # Errors
    /// As [`Trainer::step`].
    pub fn train(&mut self, dataset: &[Sample], mut progress: impl FnMut(&Trainer)) -> Result<()> {
        if dataset.is_empty() {
            return Err(RetinaError::Data("the training set is empty".into()));
        }
        while self.iteration < self.config.iterations {
            let idx = self.batch_indices(self.iteration, dataset.len());
            let batch: Vec<&Sample> = idx.iter().map(|&i| &dataset[i]).collect();
            self.step(&batch)?;
            progress(self);
        }
        Ok(())
    }

    /// Writes the model, the momentum buffers and the position in the schedule to `path`
    /// atomically (a temporary file in the same folder, synced, then renamed).
    ///
    /// # Errors
    /// [`RetinaError::Io`] when writing fails.
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        let extra: Vec<(String, &[f32], Vec<usize>)> = self
            .velocity
            .iter()
            .map(|(n, v)| (format!("optimizer.velocity.{n}"), v.as_slice(), vec![v.len()]))
            .collect();
        let mut meta = self.metadata.clone();
        meta.insert("iteration".to_string(), self.iteration.to_string());
        crate::checkpoint::save(&self.model, &extra, meta, path)
    }

    /// Restores a checkpoint written by [`Trainer::save_checkpoint`] for the same model
    /// configuration.
    ///
    /// # Errors
    /// [`RetinaError::Checkpoint`] for another configuration or a file that is not ours.
    pub fn load_checkpoint(&mut self, path: &Path) -> Result<()> {
        let loaded = crate::checkpoint::load(&mut self.model, path)?;
        self.iteration = loaded.metadata.get("iteration").and_then(|v| v.parse().ok()).unwrap_or(0);
        self.velocity = loaded
            .extra
            .into_iter()
            .filter_map(|(n, v)| n.strip_prefix("optimizer.velocity.").map(|s| (s.to_string(), v)))
            .collect();
        Ok(())
    }
}

/// Writes `bytes` to `path` atomically.
///
/// # Errors
/// [`RetinaError::Io`].
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_error(path, e));
    }
    Ok(())
}
