//! Backward passes against central finite differences.

use anchors::{BoxCoder, GroundTruth};
use fpn_net::{Module, Tensor4};
use retinanet::init::NormalRng;
use retinanet::loss::{giou_loss, giou_loss_of_code, smooth_l1};
use retinanet::{BackboneConfig, LossConfig, ModelConfig, RetinaLoss, RetinaNet};

fn small_config(group_norm: bool) -> ModelConfig {
    ModelConfig {
        backbone: BackboneConfig::Plain {
            widths: [4, 6, 6, 8],
            convs_per_stage: 2,
            fpn_channels: if group_norm { 32 } else { 8 },
        },
        head_convs: 2,
        head_group_norm: group_norm,
        anchor_scales: 1,
        aspect_ratios: vec![1.0, 2.0],
        min_size: 64,
        max_size: 64,
        ..ModelConfig::tiny(2)
    }
}

/// `sum(logits * r1) + sum(regression * r2)` in f64.
fn objective(model: &mut RetinaNet, x: &Tensor4, r1: &[f32], r2: &[[f32; 4]]) -> f64 {
    model.forward(x).unwrap();
    let a: f64 = model.logits().iter().zip(r1).map(|(&l, &r)| l as f64 * r as f64).sum();
    let b: f64 =
        model.regression().iter().zip(r2).flat_map(|(p, r)| p.iter().zip(r)).map(|(&p, &r)| p as f64 * r as f64).sum();
    a + b
}

fn check_model_gradients(group_norm: bool) {
    let mut model = RetinaNet::new(small_config(group_norm), 3).unwrap();
    // Larger head weights than N(0, 0.01), so every path carries a measurable signal, and
    // biases that keep every ReLU input positive: a finite difference that crosses a ReLU
    // kink measures the kink, not the gradient (the masking itself is tested in fpn-net).
    let mut rng = NormalRng::new(11);
    for (name, p) in model.named_params_mut() {
        let output_layer = name.contains("cls_logits") || name.contains("bbox_reg");
        if p.shape().len() == 4 && (output_layer || name.starts_with("backbone.body.") || name.starts_with("head")) {
            rng.fill_normal(&mut p.value, if output_layer { 0.2 } else { 0.02 });
        }
        let before_relu = name.starts_with("backbone.body.") || name.contains(".p6.") || name.contains("head.");
        if before_relu && name.ends_with(".bias") && !name.contains("cls_logits") && !name.contains("bbox_reg") {
            p.value.fill(if name.ends_with(".1.bias") { 5.0 } else { 10.0 });
        }
    }
    let mut x = Tensor4::zeros([2, 3, 64, 64]);
    rng.fill_normal(x.as_mut_slice(), 1.0);
    model.forward(&x).unwrap();
    let mut r1 = vec![0.0f32; model.logits().len()];
    rng.fill_normal(&mut r1, 1.0);
    let mut r2 = vec![[0.0f32; 4]; model.regression().len()];
    for r in &mut r2 {
        rng.fill_normal(r, 1.0);
    }
    model.zero_grad();
    model.backward(&x, &r1, &r2).unwrap();
    let names: Vec<String> = model.named_params().iter().map(|(n, _)| n.clone()).collect();
    let mut checked = 0;
    for name in names {
        for probe in [0usize, 7] {
            let (analytic, original) = {
                let params = model.named_params();
                let p = params.iter().find(|(n, _)| *n == name).unwrap().1;
                if !p.trainable() || probe >= p.numel() {
                    continue;
                }
                (p.grad[probe] as f64, p.value[probe])
            };
            let h = 1e-2f32;
            let set = |v: f32, model: &mut RetinaNet| {
                for (n, p) in model.named_params_mut() {
                    if n == name {
                        p.value[probe] = v;
                    }
                }
            };
            set(original + h, &mut model);
            let up = objective(&mut model, &x, &r1, &r2);
            set(original - h, &mut model);
            let down = objective(&mut model, &x, &r1, &r2);
            set(original, &mut model);
            let numeric = (up - down) / (2.0 * h as f64);
            let tol = 2e-2 + 2e-2 * numeric.abs().max(analytic.abs());
            assert!(
                (numeric - analytic).abs() <= tol,
                "{name}[{probe}]: analytic {analytic}, numeric {numeric}, tolerance {tol}"
            );
            checked += 1;
        }
    }
    assert!(checked > 40, "only {checked} parameters checked");
}

#[test]
fn model_backward_matches_finite_difference() {
    check_model_gradients(false);
}

#[test]
fn model_backward_with_group_norm_heads_matches_finite_difference() {
    check_model_gradients(true);
}

#[test]
fn smooth_l1_grad_matches_finite_difference() {
    let target = [0.3f32, -0.2, 0.05, 1.0];
    for beta in [0.0, 0.11, 1.0] {
        for pred in [[0.35f32, -1.0, 0.1, 0.2], [2.0, 0.0, -0.5, 1.05]] {
            let (_, g) = smooth_l1(&pred, &target, beta);
            for k in 0..4 {
                let h = 1e-3f32;
                let (mut up, mut down) = (pred, pred);
                up[k] += h;
                down[k] -= h;
                let numeric = (smooth_l1(&up, &target, beta).0 - smooth_l1(&down, &target, beta).0) / (2.0 * h as f64);
                assert!((numeric - g[k]).abs() < 1e-3, "beta {beta} k {k}: {numeric} vs {}", g[k]);
            }
        }
    }
}

#[test]
fn giou_grad_matches_finite_difference() {
    let gt = [10.0f32, 12.0, 50.0, 40.0];
    // Overlapping, disjoint, containing and contained boxes.
    for pred in [[15.0, 5.0, 45.0, 48.0], [60.0, 50.0, 80.0, 70.0], [0.0, 0.0, 70.0, 60.0], [20.0, 20.0, 30.0, 30.0]] {
        let (_, g) = giou_loss(&pred, &gt);
        for k in 0..4 {
            let h = 1e-4;
            let (mut up, mut down) = (pred, pred);
            up[k] += h;
            down[k] -= h;
            let numeric = (giou_loss(&up, &gt).0 - giou_loss(&down, &gt).0) / (2.0 * h);
            assert!((numeric - g[k]).abs() < 1e-6, "{pred:?} k {k}: {numeric} vs {}", g[k]);
        }
    }
}

#[test]
fn giou_of_code_grad_matches_finite_difference() {
    let coder = BoxCoder::retinanet();
    let anchor = [8.0f32, 8.0, 40.0, 56.0];
    let gt = [12.0f32, 4.0, 50.0, 44.0];
    for code in [[0.1f32, -0.2, 0.3, -0.1], [0.5, 0.4, -0.6, 0.2], [0.0, 0.0, 5.0, 0.0]] {
        let (_, g) = giou_loss_of_code(&coder, &code, &anchor, &gt);
        for k in 0..4 {
            let h = 1e-3f32;
            let (mut up, mut down) = (code, code);
            up[k] += h;
            down[k] -= h;
            let numeric = (giou_loss_of_code(&coder, &up, &anchor, &gt).0
                - giou_loss_of_code(&coder, &down, &anchor, &gt).0)
                / (2.0 * h as f64);
            assert!((numeric - g[k]).abs() < 1e-3, "{code:?} k {k}: {numeric} vs {}", g[k]);
        }
    }
}

#[test]
fn loss_grad_matches_finite_difference_for_each_box_loss() {
    use retinanet::BoxLoss;
    let mut model = RetinaNet::new(small_config(false), 5).unwrap();
    model.forward(&Tensor4::zeros([2, 3, 64, 64])).unwrap();
    let anchors = model.anchors().unwrap();
    let mut rng = NormalRng::new(2);
    let mut logits = vec![0.0f32; model.logits().len()];
    rng.fill_normal(&mut logits, 2.0);
    let mut reg = vec![[0.0f32; 4]; model.regression().len()];
    for r in &mut reg {
        rng.fill_normal(r, 0.3);
    }
    let gt = [
        GroundTruth { boxes: &[[4.0, 6.0, 30.0, 40.0], [30.0, 30.0, 62.0, 50.0]], labels: &[0, 1] },
        GroundTruth { boxes: &[], labels: &[] },
    ];
    for box_loss in [BoxLoss::L1, BoxLoss::SmoothL1 { beta: 0.5 }, BoxLoss::Giou] {
        let mut loss = RetinaLoss::new(LossConfig { box_loss, ..LossConfig::default() }).unwrap();
        let mut gl = vec![0.0f32; logits.len()];
        let mut gr = vec![[0.0f32; 4]; reg.len()];
        let v = loss.compute(&logits, &reg, &anchors, &gt, 2, &mut gl, &mut gr).unwrap();
        assert!(v.num_foreground > 0 && v.box_regression > 0.0);
        let total = |logits: &[f32], reg: &[[f32; 4]]| {
            let mut l = RetinaLoss::new(LossConfig { box_loss, ..LossConfig::default() }).unwrap();
            let mut a = vec![0.0f32; logits.len()];
            let mut b = vec![[0.0f32; 4]; reg.len()];
            l.compute(logits, reg, &anchors, &gt, 2, &mut a, &mut b).unwrap().total()
        };
        let fg: Vec<usize> = (0..reg.len()).filter(|&i| gr[i] != [0.0; 4]).take(3).collect();
        assert!(!fg.is_empty());
        for &i in &fg {
            for k in 0..4 {
                let h = 1e-3f32;
                let (mut up, mut down) = (reg.clone(), reg.clone());
                up[i][k] += h;
                down[i][k] -= h;
                let numeric = (total(&logits, &up) - total(&logits, &down)) / (2.0 * h as f64);
                assert!(
                    (numeric - gr[i][k] as f64).abs() < 2e-3,
                    "{box_loss:?} box {i}.{k}: {numeric} vs {}",
                    gr[i][k]
                );
            }
        }
        for i in [0usize, 17, logits.len() - 1] {
            let h = 1e-2f32;
            let (mut up, mut down) = (logits.clone(), logits.clone());
            up[i] += h;
            down[i] -= h;
            let numeric = (total(&up, &reg) - total(&down, &reg)) / (2.0 * h as f64);
            assert!((numeric - gl[i] as f64).abs() < 1e-4 + 1e-2 * numeric.abs(), "logit {i}: {numeric} vs {}", gl[i]);
        }
    }
}
