//! Every layer's forward against its float64 twin in `fpn_net::reference`, and its backward
//! against float64 central differences of that twin.

mod common;

use common::{FORWARD, GRADIENT, assert_close, dot, finite_difference, random, random_tensor, widen};
use fpn_net::layers::DEFAULT_COL_TILE_BYTES;
use fpn_net::reference::{self, Array4};
use fpn_net::{
    Conv2d, Conv2dConfig, FrozenBatchNorm2d, GradOut, GroupNorm, MaxPool2d, Relu, Tensor4, UpsampleNearest, layers,
};

/// Step of the central differences: the references are f64, so truncation (O(h^2)) and
/// rounding (O(eps / h)) errors both stay far below the f32 tolerance.
const H: f64 = 1e-5;

fn conv_configs() -> Vec<(Conv2dConfig, [usize; 4])> {
    let base = |i, o, k| Conv2dConfig::new(i, o, k);
    vec![
        (base(3, 4, 3).padding(1).bias(true), [2, 3, 7, 6]),
        (base(3, 5, 3).stride(2).padding(1), [2, 3, 9, 8]),
        (base(4, 3, 1), [2, 4, 5, 3]),
        (base(4, 3, 1).stride(2).bias(true), [1, 4, 7, 6]),
        (base(2, 3, 5).stride(2).padding(2).dilation(1), [1, 2, 9, 7]),
        (base(3, 2, 3).dilation(2).padding(2).bias(true), [1, 3, 7, 8]),
        // Kernel columns that see only padding at every output position.
        (Conv2dConfig { kernel: [1, 3], padding: [0, 2], dilation: [1, 2], ..base(2, 2, 1) }, [2, 2, 2, 1]),
        (
            Conv2dConfig {
                kernel: [3, 2],
                stride: [1, 3],
                padding: [0, 1],
                dilation: [2, 1],
                ..base(2, 3, 1).bias(true)
            },
            [2, 2, 8, 9],
        ),
    ]
}

fn random_conv(cfg: Conv2dConfig, tag: &str) -> Conv2d {
    let mut conv = Conv2d::new(cfg).unwrap();
    conv.weight.value = random(&format!("{tag}.w"), conv.weight.numel(), -0.5, 0.5);
    if let Some(b) = &mut conv.bias {
        b.value = random(&format!("{tag}.b"), b.numel(), -0.5, 0.5);
    }
    conv
}

fn a4(t: &Tensor4) -> Array4 {
    Array4::from_f32(t.as_slice(), t.dims())
}

/// Each configuration twice: one tile per image (the default for these sizes) and one output
/// row per tile.
fn conv_cases() -> Vec<(usize, Conv2dConfig, [usize; 4], usize)> {
    conv_configs()
        .into_iter()
        .enumerate()
        .flat_map(|(i, (cfg, dims))| [DEFAULT_COL_TILE_BYTES, 1].map(|t| (i, cfg, dims, t)))
        .collect()
}

#[test]
fn conv2d_forward_matches_reference() {
    for (i, cfg, dims, tile) in conv_cases() {
        let mut conv = random_conv(cfg, &format!("conv{i}"));
        conv.set_col_tile_bytes(tile);
        let x = random_tensor(&format!("x{i}"), dims, -1.0, 1.0);
        let mut y = Tensor4::default();
        conv.forward(&x, &mut y).unwrap();
        let bias = conv.bias.as_ref().map(|b| widen(&b.value));
        let want = reference::conv2d(&a4(&x), &widen(&conv.weight.value), bias.as_deref(), &cfg);
        assert_eq!(y.dims(), want.dims, "config {i}");
        assert_close(&format!("conv config {i}"), y.as_slice(), &want.data, FORWARD);
    }
}

#[test]
fn conv2d_backward_matches_finite_difference() {
    for (i, cfg, dims, tile) in conv_cases() {
        let mut conv = random_conv(cfg, &format!("conv{i}"));
        conv.set_col_tile_bytes(tile);
        let x = random_tensor(&format!("x{i}"), dims, -1.0, 1.0);
        let mut y = Tensor4::default();
        conv.forward(&x, &mut y).unwrap();
        let dy = random_tensor(&format!("dy{i}"), y.dims(), -1.0, 1.0);
        let r = widen(dy.as_slice());
        let mut dx = Tensor4::default();
        conv.backward(&x, &dy, GradOut::Write(&mut dx)).unwrap();

        let (xv, wv) = (widen(x.as_slice()), widen(&conv.weight.value));
        let bv = conv.bias.as_ref().map(|b| widen(&b.value));
        let loss = |x: &[f64], w: &[f64], b: Option<&[f64]>| {
            dot(&reference::conv2d(&Array4 { data: x.to_vec(), dims }, w, b, &cfg).data, &r)
        };
        let want_dx = finite_difference(&xv, H, |x| loss(x, &wv, bv.as_deref()));
        assert_close(&format!("conv {i} dx"), dx.as_slice(), &want_dx, GRADIENT);
        let want_dw = finite_difference(&wv, H, |w| loss(&xv, w, bv.as_deref()));
        assert_close(&format!("conv {i} dw"), &conv.weight.grad, &want_dw, GRADIENT);
        if let (Some(b), Some(bv)) = (&conv.bias, &bv) {
            let want_db = finite_difference(bv, H, |b| loss(&xv, &wv, Some(b)));
            assert_close(&format!("conv {i} db"), &b.grad, &want_db, GRADIENT);
        }

        // A second backward accumulates parameter gradients and, asked to, the input's.
        let mut dx2 = dx.clone();
        conv.backward(&x, &dy, GradOut::Accumulate(&mut dx2)).unwrap();
        let doubled: Vec<f64> = want_dw.iter().map(|g| 2.0 * g).collect();
        assert_close(&format!("conv {i} dw accumulated"), &conv.weight.grad, &doubled, GRADIENT);
        let doubled: Vec<f64> = want_dx.iter().map(|g| 2.0 * g).collect();
        assert_close(&format!("conv {i} dx accumulated"), dx2.as_slice(), &doubled, GRADIENT);
    }
}

fn random_bn(c: usize) -> FrozenBatchNorm2d {
    let mut bn = FrozenBatchNorm2d::new(c);
    bn.weight.value = random("bn.w", c, 0.5, 1.5);
    bn.bias.value = random("bn.b", c, -0.5, 0.5);
    bn.running_mean.value = random("bn.m", c, -0.5, 0.5);
    bn.running_var.value = random("bn.v", c, 0.5, 2.0);
    bn
}

fn bn_reference(bn: &FrozenBatchNorm2d, x: &Array4) -> Array4 {
    reference::frozen_batch_norm(
        x,
        &widen(&bn.weight.value),
        &widen(&bn.bias.value),
        &widen(&bn.running_mean.value),
        &widen(&bn.running_var.value),
        1e-5,
    )
}

#[test]
fn frozen_batch_norm_matches_reference_and_finite_difference() {
    let dims = [2, 5, 4, 3];
    let bn = random_bn(5);
    let x = random_tensor("bn.x", dims, -2.0, 2.0);
    let mut y = Tensor4::default();
    bn.forward(&x, &mut y).unwrap();
    assert_close("frozen bn forward", y.as_slice(), &bn_reference(&bn, &a4(&x)).data, FORWARD);
    let mut inplace = x.clone();
    bn.forward_inplace(&mut inplace, true).unwrap();
    let want = reference::relu(&bn_reference(&bn, &a4(&x)));
    assert_close("frozen bn + relu in place", inplace.as_slice(), &want.data, FORWARD);

    let dy = random_tensor("bn.dy", dims, -1.0, 1.0);
    let r = widen(dy.as_slice());
    let mut dx = Tensor4::default();
    bn.backward(&dy, GradOut::Write(&mut dx)).unwrap();
    let loss = |x: &[f64]| dot(&bn_reference(&bn, &Array4 { data: x.to_vec(), dims }).data, &r);
    let want = finite_difference(&widen(x.as_slice()), H, loss);
    assert_close("frozen bn dx", dx.as_slice(), &want, GRADIENT);

    let mut g = dy.clone();
    bn.backward_inplace(&mut g, Some(&inplace)).unwrap();
    let loss_relu = |x: &[f64]| {
        let y = reference::relu(&bn_reference(&bn, &Array4 { data: x.to_vec(), dims }));
        dot(&y.data, &r)
    };
    let want = finite_difference(&widen(x.as_slice()), H, loss_relu);
    assert_close("frozen bn + relu dx", g.as_slice(), &want, GRADIENT);
}

#[test]
fn group_norm_matches_reference_and_finite_difference() {
    let dims = [2, 6, 3, 4];
    let mut gn = GroupNorm::new(3, 6).unwrap();
    gn.weight.value = random("gn.w", 6, 0.5, 1.5);
    gn.bias.value = random("gn.b", 6, -0.5, 0.5);
    let x = random_tensor("gn.x", dims, -2.0, 3.0);
    let mut y = Tensor4::default();
    gn.forward(&x, &mut y).unwrap();
    let (wv, bv, xv) = (widen(&gn.weight.value), widen(&gn.bias.value), widen(x.as_slice()));
    let want = reference::group_norm(&a4(&x), 3, &wv, &bv, 1e-5);
    assert_close("group norm forward", y.as_slice(), &want.data, FORWARD);

    let dy = random_tensor("gn.dy", dims, -1.0, 1.0);
    let r = widen(dy.as_slice());
    let mut dx = Tensor4::default();
    gn.backward(&x, &dy, GradOut::Write(&mut dx)).unwrap();
    let loss = |x: &[f64], w: &[f64], b: &[f64]| {
        dot(&reference::group_norm(&Array4 { data: x.to_vec(), dims }, 3, w, b, 1e-5).data, &r)
    };
    let want = finite_difference(&xv, H, |x| loss(x, &wv, &bv));
    assert_close("group norm dx", dx.as_slice(), &want, GRADIENT);
    let want = finite_difference(&wv, H, |w| loss(&xv, w, &bv));
    assert_close("group norm dweight", &gn.weight.grad, &want, GRADIENT);
    let want = finite_difference(&bv, H, |b| loss(&xv, &wv, b));
    assert_close("group norm dbias", &gn.bias.grad, &want, GRADIENT);
}

/// Values in [-1, 1] kept at least 0.01 from zero, so a finite-difference step never
/// crosses the ReLU's kink.
fn away_from_zero(name: &str, dims: [usize; 4]) -> Tensor4 {
    let mut t = random_tensor(name, dims, -1.0, 1.0);
    for v in t.as_mut_slice() {
        *v += 0.01f32.copysign(*v);
    }
    t
}

#[test]
fn relu_matches_reference_and_finite_difference() {
    let dims = [2, 3, 4, 5];
    let x = away_from_zero("relu.x", dims);
    let mut y = Tensor4::default();
    Relu.forward(&x, &mut y);
    assert_close("relu forward", y.as_slice(), &reference::relu(&a4(&x)).data, FORWARD);
    let dy = random_tensor("relu.dy", dims, -1.0, 1.0);
    let r = widen(dy.as_slice());
    let mut dx = Tensor4::default();
    Relu.backward(&y, &dy, GradOut::Write(&mut dx)).unwrap();
    let want = finite_difference(&widen(x.as_slice()), H, |x| {
        dot(&reference::relu(&Array4 { data: x.to_vec(), dims }).data, &r)
    });
    assert_close("relu dx", dx.as_slice(), &want, GRADIENT);
}

#[test]
fn relu_keeps_nan() {
    let x = Tensor4::from_vec(vec![f32::NAN, -1.0, 2.0, 0.0], [1, 1, 2, 2]).unwrap();
    let mut y = Tensor4::default();
    Relu.forward(&x, &mut y);
    assert!(y.as_slice()[0].is_nan());
    assert_eq!(&y.as_slice()[1..], &[0.0, 2.0, 0.0]);
}

#[test]
fn max_pool_matches_reference_and_finite_difference() {
    for (k, s, p, dims) in [(3, 2, 1, [2, 3, 9, 8]), (2, 2, 0, [1, 2, 7, 6]), (3, 1, 1, [1, 2, 5, 5])] {
        let pool = MaxPool2d::new(k, s, p).unwrap();
        let x = random_tensor(&format!("pool.x{k}{s}{p}"), dims, -1.0, 1.0);
        let mut y = Tensor4::default();
        pool.forward(&x, &mut y).unwrap();
        let want = reference::max_pool2d(&a4(&x), k, s, p);
        assert_eq!(y.dims(), want.dims);
        assert_close("max pool forward", y.as_slice(), &want.data, FORWARD);
        let dy = random_tensor("pool.dy", y.dims(), -1.0, 1.0);
        let r = widen(dy.as_slice());
        let mut dx = Tensor4::default();
        pool.backward(&x, &y, &dy, GradOut::Write(&mut dx)).unwrap();
        let want = finite_difference(&widen(x.as_slice()), H, |x| {
            dot(&reference::max_pool2d(&Array4 { data: x.to_vec(), dims }, k, s, p).data, &r)
        });
        assert_close(&format!("max pool {k}/{s}/{p} dx"), dx.as_slice(), &want, GRADIENT);
    }
}

#[test]
fn upsample_matches_reference_and_finite_difference() {
    for (dims, size) in [([2, 3, 3, 4], [5, 7]), ([1, 2, 3, 4], [6, 8]), ([1, 2, 4, 4], [4, 4])] {
        let x = random_tensor("up.x", dims, -1.0, 1.0);
        let mut y = Tensor4::default();
        UpsampleNearest.forward(&x, size, &mut y, false).unwrap();
        let want = reference::upsample_nearest(&a4(&x), size);
        assert_close("upsample forward", y.as_slice(), &want.data, FORWARD);
        let mut acc = y.clone();
        UpsampleNearest.forward(&x, size, &mut acc, true).unwrap();
        let doubled: Vec<f64> = want.data.iter().map(|v| 2.0 * v).collect();
        assert_close("upsample accumulate", acc.as_slice(), &doubled, FORWARD);

        let dy = random_tensor("up.dy", y.dims(), -1.0, 1.0);
        let r = widen(dy.as_slice());
        let mut dx = Tensor4::default();
        UpsampleNearest.backward(&dy, dims, GradOut::Write(&mut dx)).unwrap();
        let want = finite_difference(&widen(x.as_slice()), H, |x| {
            dot(&reference::upsample_nearest(&Array4 { data: x.to_vec(), dims }, size).data, &r)
        });
        assert_close("upsample dx", dx.as_slice(), &want, GRADIENT);
    }
}

#[test]
fn add_matches_reference_and_finite_difference() {
    let dims = [2, 3, 2, 5];
    let a = random_tensor("add.a", dims, -1.0, 1.0);
    let b = random_tensor("add.b", dims, -1.0, 1.0);
    let mut y = Tensor4::default();
    layers::add(&a, &b, &mut y).unwrap();
    assert_close("add forward", y.as_slice(), &reference::add(&a4(&a), &a4(&b)).data, FORWARD);
    let mut y2 = a.clone();
    layers::add_inplace(&mut y2, &b).unwrap();
    assert_eq!(y, y2);

    let dy = random_tensor("add.dy", dims, -1.0, 1.0);
    let r = widen(dy.as_slice());
    let (mut da, mut db) = (Tensor4::default(), b.clone());
    layers::add_backward(&dy, GradOut::Write(&mut da), GradOut::Accumulate(&mut db)).unwrap();
    let bv = widen(b.as_slice());
    let want_da = finite_difference(&widen(a.as_slice()), H, |a| {
        dot(&reference::add(&Array4 { data: a.to_vec(), dims }, &Array4 { data: bv.clone(), dims }).data, &r)
    });
    assert_close("add da", da.as_slice(), &want_da, GRADIENT);
    let want_db: Vec<f64> = want_da.iter().zip(&bv).map(|(g, b)| g + b).collect();
    assert_close("add db accumulated", db.as_slice(), &want_db, GRADIENT);
}

#[test]
fn mismatched_shapes_are_errors() {
    let mut conv = Conv2d::new(Conv2dConfig::new(3, 4, 3)).unwrap();
    let x = Tensor4::zeros([1, 2, 8, 8]);
    assert!(conv.forward(&x, &mut Tensor4::default()).is_err());
    let x = Tensor4::zeros([1, 3, 8, 8]);
    let wrong_dy = Tensor4::zeros([1, 4, 5, 5]);
    assert!(conv.backward(&x, &wrong_dy, GradOut::Skip).is_err());
    let mut small = Tensor4::zeros([1, 3, 4, 4]);
    let dy = Tensor4::zeros([1, 4, 6, 6]);
    assert!(conv.backward(&x, &dy, GradOut::Accumulate(&mut small)).is_err());
    assert!(GroupNorm::new(4, 6).is_err());
    let mut gn = GroupNorm::new(2, 4).unwrap();
    let x = Tensor4::zeros([1, 4, 2, 2]);
    assert!(gn.backward(&x, &x, GradOut::Skip).is_err(), "backward before forward");
    assert!(MaxPool2d::new(3, 2, 2).is_err());
    let pool = MaxPool2d::new(3, 2, 1).unwrap();
    let wrong_y = Tensor4::zeros([1, 4, 2, 2]);
    assert!(pool.backward(&x, &wrong_y, &wrong_y, GradOut::Skip).is_err(), "output not shaped as the pool's");
    let a = Tensor4::zeros([1, 2, 3, 3]);
    assert!(layers::add(&a, &x, &mut Tensor4::default()).is_err());
}
