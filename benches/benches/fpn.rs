//! fpn-net: every layer's forward and backward at the sizes ResNet-50-FPN meets at 512 x 512,
//! and the whole backbone (ResNet-50-FPN forward, ResNet-18-FPN training step). Group names
//! follow `<op>/<impl>/<size>`; convolution throughput is counted in multiply-adds
//! (`Throughput::Elements`), elementwise layers in the bytes they must move. The side-by-side
//! comparison with PyTorch is `cargo xtask bench fpn`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fpn_net::{
    Conv2d, Conv2dConfig, Depth, FpnExtra, FrozenBatchNorm2d, GradOut, GroupNorm, MaxPool2d, Module, ResNetFpn, Sgd,
    Tensor4, UpsampleNearest, init,
};

fn random(name: &str, dims: [usize; 4]) -> Tensor4 {
    let n = dims.iter().product();
    Tensor4::from_vec(init::uniform(name, 0, n, -1.0, 1.0), dims).expect("dims")
}

fn size_name(d: [usize; 4]) -> String {
    format!("{}x{}x{}x{}", d[0], d[1], d[2], d[3])
}

/// Representative convolutions of ResNet-50-FPN at 512 x 512: (name, config, input).
fn conv_cases() -> Vec<(&'static str, Conv2dConfig, [usize; 4])> {
    vec![
        ("stem 7x7/2", Conv2dConfig::new(3, 64, 7).stride(2).padding(3), [1, 3, 512, 512]),
        ("layer1 3x3", Conv2dConfig::new(64, 64, 3).padding(1), [1, 64, 128, 128]),
        ("layer1 1x1", Conv2dConfig::new(256, 64, 1), [1, 256, 128, 128]),
        ("layer3 3x3", Conv2dConfig::new(256, 256, 3).padding(1), [1, 256, 32, 32]),
        ("layer4 3x3/2", Conv2dConfig::new(512, 512, 3).stride(2).padding(1), [1, 512, 32, 32]),
        ("fpn P3 3x3", Conv2dConfig::new(256, 256, 3).padding(1).bias(true), [1, 256, 64, 64]),
    ]
}

fn conv(c: &mut Criterion) {
    for (name, cfg, dims) in conv_cases() {
        let mut layer = Conv2d::new(cfg).expect("config");
        layer.weight.value = init::uniform("w", 0, layer.weight.numel(), -0.1, 0.1);
        let x = random("x", dims);
        let mut y = Tensor4::default();
        layer.forward(&x, &mut y).expect("shape");
        let macs = (y.as_slice().len() * cfg.in_channels * cfg.kernel[0] * cfg.kernel[1]) as u64;
        let dy = random("dy", y.dims());
        let mut dx = Tensor4::default();
        let label = format!("{name} {}", size_name(dims));

        let mut group = c.benchmark_group("conv2d_fwd");
        group.sample_size(10).throughput(Throughput::Elements(macs));
        group.bench_function(BenchmarkId::new("im2col_gemm", &label), |b| {
            b.iter(|| layer.forward(&x, &mut y).expect("shape"))
        });
        group.finish();
        let mut group = c.benchmark_group("conv2d_bwd");
        group.sample_size(10).throughput(Throughput::Elements(2 * macs));
        group.bench_function(BenchmarkId::new("im2col_gemm", &label), |b| {
            b.iter(|| layer.backward(&x, &dy, GradOut::Write(&mut dx)).expect("shape"))
        });
        group.finish();
    }
}

fn norms_and_pooling(c: &mut Criterion) {
    let dims = [1, 256, 64, 64];
    let bytes = (2 * 4 * dims.iter().product::<usize>()) as u64;
    let x = random("x", dims);
    let dy = random("dy", dims);
    let (mut y, mut dx) = (Tensor4::default(), Tensor4::default());
    let label = size_name(dims);

    let mut group = c.benchmark_group("frozen_batch_norm");
    group.throughput(Throughput::Bytes(bytes));
    let bn = FrozenBatchNorm2d::new(256);
    group.bench_function(BenchmarkId::new("fwd", &label), |b| b.iter(|| bn.forward(&x, &mut y).expect("shape")));
    group.bench_function(BenchmarkId::new("bwd", &label), |b| {
        b.iter(|| bn.backward(&dy, GradOut::Write(&mut dx)).expect("shape"))
    });
    group.finish();

    let mut group = c.benchmark_group("group_norm_32");
    group.throughput(Throughput::Bytes(bytes));
    let mut gn = GroupNorm::new(32, 256).expect("groups");
    group.bench_function(BenchmarkId::new("fwd", &label), |b| b.iter(|| gn.forward(&x, &mut y).expect("shape")));
    gn.forward(&x, &mut y).expect("shape");
    group.bench_function(BenchmarkId::new("bwd", &label), |b| {
        b.iter(|| gn.backward(&x, &dy, GradOut::Write(&mut dx)).expect("shape"))
    });
    group.finish();

    let stem = [1, 64, 256, 256];
    let xs = random("stem", stem);
    let pool = MaxPool2d::new(3, 2, 1).expect("pool");
    let mut group = c.benchmark_group("max_pool_3_2_1");
    group.throughput(Throughput::Bytes((4 * stem.iter().product::<usize>() * 5 / 4) as u64));
    group.bench_function(BenchmarkId::new("fwd", size_name(stem)), |b| {
        b.iter(|| pool.forward(&xs, &mut y).expect("shape"))
    });
    let mut yp = Tensor4::default();
    pool.forward(&xs, &mut yp).expect("shape");
    let dyp = random("dyp", yp.dims());
    group.bench_function(BenchmarkId::new("bwd", size_name(stem)), |b| {
        b.iter(|| pool.backward(&xs, &yp, &dyp, GradOut::Write(&mut dx)).expect("shape"))
    });
    group.finish();

    let coarse = [1, 256, 32, 32];
    let xc = random("coarse", coarse);
    let mut fine = random("fine", dims);
    let mut group = c.benchmark_group("upsample_nearest_add");
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function(BenchmarkId::new("fwd", size_name(coarse)), |b| {
        b.iter(|| UpsampleNearest.forward(&xc, [64, 64], &mut fine, true).expect("shape"))
    });
    group.bench_function(BenchmarkId::new("bwd", size_name(coarse)), |b| {
        b.iter(|| UpsampleNearest.backward(&dy, coarse, GradOut::Write(&mut dx)).expect("shape"))
    });
    group.finish();
}

fn backbones(c: &mut Criterion) {
    let mut group = c.benchmark_group("resnet50_fpn_forward");
    group.sample_size(10);
    for dims in [[1, 3, 512, 512], [1, 3, 800, 1216]] {
        let mut net = ResNetFpn::new(Depth::R50, FpnExtra::P6P7FromP5).expect("net");
        init::synthetic(&mut net, 0);
        let x = random("input", dims);
        group.bench_function(BenchmarkId::new("ours", size_name(dims)), |b| {
            b.iter(|| {
                net.forward(&x).expect("shape");
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("resnet18_fpn_train_step");
    group.sample_size(10);
    let dims = [2, 3, 256, 256];
    let mut net = ResNetFpn::new(Depth::R18, FpnExtra::P6P7FromP5).expect("net");
    init::synthetic(&mut net, 0);
    let x = random("input", dims);
    let grads: Vec<Tensor4> =
        net.forward(&x).expect("shape").iter().enumerate().map(|(i, p)| random(&format!("dP{i}"), p.dims())).collect();
    let mut sgd = Sgd::new(0.01, 0.9, 1e-4).expect("sgd");
    group.bench_function(BenchmarkId::new("ours", size_name(dims)), |b| {
        b.iter(|| {
            net.zero_grad();
            net.forward(&x).expect("shape");
            net.backward(&x, &grads).expect("shape");
            sgd.step(&mut net).expect("step");
        })
    });
    group.finish();
}

criterion_group!(benches, conv, norms_and_pooling, backbones);
criterion_main!(benches);
