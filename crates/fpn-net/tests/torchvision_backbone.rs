//! ResNet-FPN backbones against torchvision's `resnet_fpn_backbone` on synthetic weights
//! (`fixtures/backbone_*.safetensors`, made by `fixtures/make_fixtures.py`), parameter names
//! against torchvision's state_dicts, and a small conv stack against PyTorch autograd.

mod common;

use common::{FORWARD, Fixture, GRADIENT, assert_close, assert_close_f32, widen};
use fpn_net::{
    Conv2d, Conv2dConfig, Depth, FpnExtra, FrozenBatchNorm2d, GradOut, GroupNorm, MaxPool2d, Module, Relu, ResNetFpn,
    Tensor4, UpsampleNearest, init, weights,
};

fn level_gradients(levels: &[Tensor4]) -> Vec<Tensor4> {
    levels
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let v = init::uniform(&format!("dP{}", i + 3), 1, p.as_slice().len(), -1.0, 1.0);
            Tensor4::from_vec(v, p.dims()).unwrap()
        })
        .collect()
}

/// Forward equals torchvision's P3..P7; the gradient of every trainable parameter, projected
/// on a synthetic direction, equals autograd's.
fn check_backbone(depth: Depth, extra: FpnExtra, file: &str) {
    let f = Fixture::open(file);
    let mut net = ResNetFpn::new(depth, extra).unwrap();
    init::synthetic(&mut net, 0);
    let x = f.t4("x");
    let levels: Vec<Tensor4> = net.forward(&x).unwrap().to_vec();
    assert_eq!(levels.len(), 5);
    for (i, p) in levels.iter().enumerate() {
        let want = f.t4(&format!("P{}", i + 3));
        assert_eq!(p.dims(), want.dims(), "{file} P{}", i + 3);
        assert_close_f32(&format!("{file} P{}", i + 3), p.as_slice(), want.as_slice(), FORWARD);
    }

    net.backward(&x, &level_gradients(&levels)).unwrap();
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for (name, p) in net.named_params() {
        let key = format!("sketch.{name}");
        assert_eq!(p.trainable(), f.has(&key), "{name}: trainable here and in torchvision");
        if !p.trainable() {
            continue;
        }
        let r = init::uniform(&name, 2, p.numel(), -1.0, 1.0);
        ours.push(p.grad.iter().zip(&r).map(|(&g, &r)| g as f64 * r as f64).sum::<f64>() as f32);
        theirs.push(f.f64(&key)[0]);
        let full = format!("grad.{name}");
        if f.has(&full) {
            assert_close_f32(&format!("{file} {full}"), &p.grad, &f.values(&full), GRADIENT);
        }
    }
    assert_close(&format!("{file} gradient sketches"), &ours, &theirs, GRADIENT);
}

#[test]
fn resnet18_fpn_v1_equals_torchvision() {
    check_backbone(Depth::R18, FpnExtra::P6P7FromP5, "backbone_r18_v1.safetensors");
}

#[test]
fn resnet50_fpn_v2_equals_torchvision() {
    check_backbone(Depth::R50, FpnExtra::P6P7FromC5, "backbone_r50_v2.safetensors");
}

#[test]
fn parameter_names_and_shapes_equal_torchvision_state_dicts() {
    let path = format!("{}/tests/fixtures/state_dict_names.txt", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap();
    let models = [
        ("resnet18_v1", Depth::R18, FpnExtra::P6P7FromP5, ""),
        ("resnet18_v2", Depth::R18, FpnExtra::P6P7FromC5, ""),
        ("resnet34_v1", Depth::R34, FpnExtra::P6P7FromP5, ""),
        ("resnet34_v2", Depth::R34, FpnExtra::P6P7FromC5, ""),
        ("resnet50_v1", Depth::R50, FpnExtra::P6P7FromP5, ""),
        ("resnet50_v2", Depth::R50, FpnExtra::P6P7FromC5, ""),
        ("resnet101_v1", Depth::R101, FpnExtra::P6P7FromP5, ""),
        ("resnet101_v2", Depth::R101, FpnExtra::P6P7FromC5, ""),
        ("retinanet_v1", Depth::R50, FpnExtra::P6P7FromP5, "backbone."),
        ("retinanet_v2", Depth::R50, FpnExtra::P6P7FromC5, "backbone."),
    ];
    for (model, depth, extra, prefix) in models {
        let want: Vec<(String, Vec<usize>)> = text
            .lines()
            .filter_map(|l| {
                let mut it = l.split(' ');
                (it.next() == Some(model)).then(|| {
                    let name = it.next().unwrap().to_string();
                    let shape = it.next().unwrap_or("");
                    let shape = shape.split(',').filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
                    (name, shape)
                })
            })
            .filter(|(n, _)| !n.ends_with("num_batches_tracked"))
            .collect();
        assert!(!want.is_empty(), "{model}");
        let net = ResNetFpn::new(depth, extra).unwrap();
        let mut ours = Vec::new();
        net.params(prefix, &mut ours);
        let ours: Vec<(String, Vec<usize>)> = ours.into_iter().map(|(n, p)| (n, p.shape().to_vec())).collect();
        assert_eq!(ours, want, "{model}");
    }
}

#[test]
fn frozen_layers_get_no_gradient_and_leave_the_others_unchanged() {
    let f = Fixture::open("backbone_r18_v1.safetensors");
    let x = f.t4("x");
    let mut full = ResNetFpn::new(Depth::R18, FpnExtra::P6P7FromP5).unwrap();
    init::synthetic(&mut full, 0);
    let mut frozen = full.clone();
    frozen.body.set_trainable_layers(3).unwrap();
    let d = level_gradients(full.forward(&x).unwrap());
    full.backward(&x, &d).unwrap();
    frozen.forward(&x).unwrap();
    frozen.backward(&x, &d).unwrap();
    let full_params = full.named_params();
    for ((name, p), (_, q)) in frozen.named_params().into_iter().zip(full_params) {
        let frozen_part = name.starts_with("body.conv1") || name.starts_with("body.layer1");
        if frozen_part && name.ends_with("weight") && p.shape().len() == 4 {
            assert!(!p.trainable() && p.grad.is_empty(), "{name} should be frozen");
        } else if p.trainable() {
            assert_eq!(p.grad, q.grad, "{name}");
        }
    }
    assert!(frozen.body.set_trainable_layers(6).is_err());
}

#[test]
fn forward_is_bit_identical_across_thread_counts() {
    let f = Fixture::open("backbone_r18_v1.safetensors");
    let x = f.t4("x");
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut net = ResNetFpn::new(Depth::R18, FpnExtra::P6P7FromP5).unwrap();
            init::synthetic(&mut net, 0);
            let out = net.forward(&x).unwrap().to_vec();
            net.backward(&x, &level_gradients(&out)).unwrap();
            let grads: Vec<Vec<f32>> = net.named_params().iter().map(|(_, p)| p.grad.clone()).collect();
            (out, grads)
        })
    };
    assert!(run(1) == run(2), "outputs or gradients differ between 1 and 2 threads");
}

#[test]
fn weights_round_trip_through_safetensors_with_a_prefix() {
    let mut net = ResNetFpn::new(Depth::R18, FpnExtra::P6P7FromC5).unwrap();
    init::synthetic(&mut net, 3);
    let bytes = weights::save(&net, "backbone.").unwrap();
    let mut copy = ResNetFpn::new(Depth::R18, FpnExtra::P6P7FromC5).unwrap();
    let report = weights::load(&mut copy, &bytes, "backbone.", weights::Extra::Reject).unwrap();
    assert_eq!(report.loaded, net.named_params().len());
    for ((n, p), (_, q)) in net.named_params().into_iter().zip(copy.named_params()) {
        assert_eq!(p.value, q.value, "{n}");
    }
}

/// The stack of `make_fixtures.py::conv_stack`, built from this crate's layers.
#[test]
fn conv_stack_gradients_equal_pytorch_autograd() {
    let f = Fixture::open("conv_stack.safetensors");
    let x = f.t4("x");
    let mut conv1 = Conv2d::new(Conv2dConfig::new(3, 8, 3).stride(2).padding(1).bias(true)).unwrap();
    let mut bn = FrozenBatchNorm2d::new(8);
    let mut conv2 = Conv2d::new(Conv2dConfig::new(8, 8, 3).padding(1)).unwrap();
    let mut gn = GroupNorm::new(4, 8).unwrap();
    let pool = MaxPool2d::new(3, 2, 1).unwrap();
    let mut conv3 = Conv2d::new(Conv2dConfig::new(8, 6, 1).bias(true)).unwrap();
    for (name, p) in conv1
        .named_params_mut()
        .into_iter()
        .map(|(n, p)| (format!("conv1.{n}"), p))
        .chain(conv2.named_params_mut().into_iter().map(|(n, p)| (format!("conv2.{n}"), p)))
        .chain(gn.named_params_mut().into_iter().map(|(n, p)| (format!("gn.{n}"), p)))
        .chain(conv3.named_params_mut().into_iter().map(|(n, p)| (format!("conv3.{n}"), p)))
        .chain(bn.named_params_mut().into_iter().map(|(n, p)| (format!("bn.{n}"), p)))
    {
        p.value = f.values(&name);
    }
    // Forward, keeping every activation.
    let mut a1 = Tensor4::default();
    conv1.forward(&x, &mut a1).unwrap();
    bn.forward_inplace(&mut a1, true).unwrap();
    let mut a2 = Tensor4::default();
    conv2.forward(&a1, &mut a2).unwrap();
    let mut a3 = Tensor4::default();
    gn.forward(&a2, &mut a3).unwrap();
    Relu.forward_inplace(&mut a3);
    let mut a4 = Tensor4::default();
    pool.forward(&a3, &mut a4).unwrap();
    let mut a5 = Tensor4::default();
    UpsampleNearest.forward(&a4, [5, 5], &mut a5, false).unwrap();
    let mut y = Tensor4::default();
    conv3.forward(&a5, &mut y).unwrap();
    assert_close_f32("conv stack y", y.as_slice(), &f.values("y"), FORWARD);
    let r = f.t4("r");
    let loss: f64 = y.as_slice().iter().zip(r.as_slice()).map(|(&a, &b)| a as f64 * b as f64).sum();
    assert_close("conv stack loss", &[loss as f32], &widen(&f.values("loss")), FORWARD);

    // Backward, layer by layer.
    let (mut g5, mut g4, mut g3, mut g2, mut g1, mut dx) = Default::default();
    conv3.backward(&a5, &r, GradOut::Write(&mut g5)).unwrap();
    UpsampleNearest.backward(&g5, a4.dims(), GradOut::Write(&mut g4)).unwrap();
    pool.backward(&a3, &a4, &g4, GradOut::Write(&mut g3)).unwrap();
    let mut g3_pre = Tensor4::default();
    Relu.backward(&a3, &g3, GradOut::Write(&mut g3_pre)).unwrap();
    gn.backward(&a2, &g3_pre, GradOut::Write(&mut g2)).unwrap();
    conv2.backward(&a1, &g2, GradOut::Write(&mut g1)).unwrap();
    bn.backward_inplace(&mut g1, Some(&a1)).unwrap();
    conv1.backward(&x, &g1, GradOut::Write(&mut dx)).unwrap();

    assert_close_f32("conv stack dx", dx.as_slice(), &f.values("dx"), GRADIENT);
    for (prefix, m) in [("conv1", &conv1 as &dyn Module), ("conv2", &conv2), ("gn", &gn), ("conv3", &conv3)] {
        for (n, p) in m.named_params() {
            let key = format!("d.{prefix}.{n}");
            assert_close_f32(&key, &p.grad, &f.values(&key), GRADIENT);
        }
    }
}
