//! Trains the tiny model on the synthetic data and prints the loss and the COCO AP.
use retinanet::{LossConfig, ModelConfig, RetinaLoss, RetinaNet, SyntheticConfig, TrainConfig, Trainer};

fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let iters = args.first().copied().unwrap_or(200);
    let n_train = args.get(1).copied().unwrap_or(64);
    let data = SyntheticConfig::small(n_train, 1).generate()?;
    let val = SyntheticConfig::small(32, 99).generate()?;
    let gn = std::env::var("GN").is_ok();
    let model = RetinaNet::new(ModelConfig { head_group_norm: gn, ..ModelConfig::tiny(3) }, 0)?;
    let lr: f32 = std::env::var("LR").ok().and_then(|v| v.parse().ok()).unwrap_or(0.01);
    let mut trainer = Trainer::new(
        model,
        RetinaLoss::new(LossConfig::default())?,
        TrainConfig { base_lr: lr, ..TrainConfig::quick(iters) },
    )?;
    let t0 = std::time::Instant::now();
    trainer.train(&data, |t| {
        let e = t.log.last().unwrap();
        if e.iteration % 100 == 0 {
            println!(
                "it {} lr {:.4} cls {:.4} box {:.4} fg {} ({:.1}s)",
                e.iteration,
                e.lr,
                e.loss.classification,
                e.loss.box_regression,
                e.loss.num_foreground,
                t0.elapsed().as_secs_f32()
            );
        }
    })?;
    let imgs: Vec<_> = val.iter().map(|s| &s.image).collect();
    let dets =
        retinanet::infer::detect(&mut trainer.model, &imgs, 8, &anchors::PostprocessConfig::torchvision_retinanet())?;
    let stats = retinanet::eval::evaluate(
        &val,
        &dets,
        &retinanet::Dataset::synthetic(&SyntheticConfig::small(1, 0)).unwrap().categories,
    )?;
    println!("val {:?} in {:.1}s", stats.to_json(), t0.elapsed().as_secs_f32());
    let train_imgs: Vec<_> = data.iter().take(32).map(|s| &s.image).collect();
    let dets = retinanet::infer::detect(
        &mut trainer.model,
        &train_imgs,
        8,
        &anchors::PostprocessConfig::torchvision_retinanet(),
    )?;
    let stats = retinanet::eval::evaluate(
        &data[..32],
        &dets,
        &retinanet::Dataset::synthetic(&SyntheticConfig::small(1, 0)).unwrap().categories,
    )?;
    println!("train AP {:.3} AP50 {:.3}", stats.ap(), stats.ap50());
    Ok(())
}
