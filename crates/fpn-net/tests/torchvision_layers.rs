//! Every layer's forward and backward against PyTorch's forward and autograd, on the cases of
//! `fixtures/layers.safetensors` (made by `fixtures/make_fixtures.py`).

mod common;

use common::{FORWARD, Fixture, GRADIENT, assert_close_f32};
use fpn_net::{Conv2d, Conv2dConfig, FrozenBatchNorm2d, GradOut, GroupNorm, MaxPool2d, Relu, Tensor4, UpsampleNearest};

const CONV_CASES: [&str; 7] = [
    "conv_3x3_s1_p1_bias",
    "conv_3x3_s2_p1",
    "conv_1x1_s2",
    "conv_1x1_bias",
    "conv_7x7_s2_p3",
    "conv_3x3_d2_p2_bias",
    "conv_3x5_s2x1_p1x2",
];

fn layers() -> Fixture {
    Fixture::open("layers.safetensors")
}

#[test]
fn conv2d_equals_pytorch_forward_and_autograd() {
    let f = layers();
    for case in CONV_CASES {
        let c: Vec<usize> = f.i64(&format!("{case}.config")).iter().map(|&v| v as usize).collect();
        let cfg = Conv2dConfig {
            in_channels: c[0],
            out_channels: c[1],
            kernel: [c[2], c[3]],
            stride: [c[4], c[5]],
            padding: [c[6], c[7]],
            dilation: [c[8], c[9]],
            bias: c[10] == 1,
        };
        let mut conv = Conv2d::new(cfg).unwrap();
        conv.weight.value = f.values(&format!("{case}.weight"));
        if let Some(b) = &mut conv.bias {
            b.value = f.values(&format!("{case}.bias"));
        }
        let x = f.t4(&format!("{case}.x"));
        let mut y = Tensor4::default();
        conv.forward(&x, &mut y).unwrap();
        let want = f.t4(&format!("{case}.y"));
        assert_eq!(y.dims(), want.dims(), "{case}");
        assert_close_f32(&format!("{case} y"), y.as_slice(), want.as_slice(), FORWARD);

        let dy = f.t4(&format!("{case}.dy"));
        let mut dx = Tensor4::default();
        conv.backward(&x, &dy, GradOut::Write(&mut dx)).unwrap();
        assert_close_f32(&format!("{case} dx"), dx.as_slice(), &f.values(&format!("{case}.dx")), GRADIENT);
        assert_close_f32(
            &format!("{case} dweight"),
            &conv.weight.grad,
            &f.values(&format!("{case}.dweight")),
            GRADIENT,
        );
        if let Some(b) = &conv.bias {
            assert_close_f32(&format!("{case} dbias"), &b.grad, &f.values(&format!("{case}.dbias")), GRADIENT);
        }
    }
}

#[test]
fn frozen_batch_norm_equals_torchvision() {
    let f = layers();
    let x = f.t4("frozen_bn.x");
    let mut bn = FrozenBatchNorm2d::new(x.c());
    bn.weight.value = f.values("frozen_bn.weight");
    bn.bias.value = f.values("frozen_bn.bias");
    bn.running_mean.value = f.values("frozen_bn.running_mean");
    bn.running_var.value = f.values("frozen_bn.running_var");
    let mut y = Tensor4::default();
    bn.forward(&x, &mut y).unwrap();
    assert_close_f32("frozen bn y", y.as_slice(), &f.values("frozen_bn.y"), FORWARD);
    let mut dx = Tensor4::default();
    bn.backward(&f.t4("frozen_bn.dy"), GradOut::Write(&mut dx)).unwrap();
    assert_close_f32("frozen bn dx", dx.as_slice(), &f.values("frozen_bn.dx"), GRADIENT);
}

#[test]
fn group_norm_equals_pytorch_forward_and_autograd() {
    let f = layers();
    let x = f.t4("group_norm.x");
    let mut gn = GroupNorm::new(4, x.c()).unwrap();
    gn.weight.value = f.values("group_norm.weight");
    gn.bias.value = f.values("group_norm.bias");
    let mut y = Tensor4::default();
    gn.forward(&x, &mut y).unwrap();
    assert_close_f32("group norm y", y.as_slice(), &f.values("group_norm.y"), FORWARD);
    let mut dx = Tensor4::default();
    gn.backward(&x, &f.t4("group_norm.dy"), GradOut::Write(&mut dx)).unwrap();
    assert_close_f32("group norm dx", dx.as_slice(), &f.values("group_norm.dx"), GRADIENT);
    assert_close_f32("group norm dweight", &gn.weight.grad, &f.values("group_norm.dweight"), GRADIENT);
    assert_close_f32("group norm dbias", &gn.bias.grad, &f.values("group_norm.dbias"), GRADIENT);
}

#[test]
fn relu_equals_pytorch_forward_and_autograd() {
    let f = layers();
    let x = f.t4("relu.x");
    let mut y = Tensor4::default();
    Relu.forward(&x, &mut y);
    assert_close_f32("relu y", y.as_slice(), &f.values("relu.y"), FORWARD);
    let mut dx = Tensor4::default();
    Relu.backward(&y, &f.t4("relu.dy"), GradOut::Write(&mut dx)).unwrap();
    assert_close_f32("relu dx", dx.as_slice(), &f.values("relu.dx"), GRADIENT);
}

#[test]
fn max_pool_equals_pytorch_forward_and_autograd() {
    let f = layers();
    for (case, k, s, p) in [("max_pool_3_2_1", 3, 2, 1), ("max_pool_2_2_0", 2, 2, 0)] {
        let pool = MaxPool2d::new(k, s, p).unwrap();
        let x = f.t4(&format!("{case}.x"));
        let mut y = Tensor4::default();
        pool.forward(&x, &mut y).unwrap();
        assert_close_f32(&format!("{case} y"), y.as_slice(), &f.values(&format!("{case}.y")), FORWARD);
        let mut dx = Tensor4::default();
        pool.backward(&x, &y, &f.t4(&format!("{case}.dy")), GradOut::Write(&mut dx)).unwrap();
        assert_close_f32(&format!("{case} dx"), dx.as_slice(), &f.values(&format!("{case}.dx")), GRADIENT);
    }
}

#[test]
fn upsample_equals_pytorch_forward_and_autograd() {
    let f = layers();
    for (case, size) in [("upsample_3x4_to_5x7", [5, 7]), ("upsample_3x4_to_6x8", [6, 8])] {
        let x = f.t4(&format!("{case}.x"));
        let mut y = Tensor4::default();
        UpsampleNearest.forward(&x, size, &mut y, false).unwrap();
        assert_close_f32(&format!("{case} y"), y.as_slice(), &f.values(&format!("{case}.y")), FORWARD);
        let mut dx = Tensor4::default();
        UpsampleNearest.backward(&f.t4(&format!("{case}.dy")), x.dims(), GradOut::Write(&mut dx)).unwrap();
        assert_close_f32(&format!("{case} dx"), dx.as_slice(), &f.values(&format!("{case}.dx")), GRADIENT);
    }
}
