//! SGD against torch.optim.SGD trajectories (`fixtures/sgd.safetensors`).

mod common;

use common::{Fixture, Tol, assert_close_f32};
use fpn_net::{Conv2d, Conv2dConfig, Module, NetError, Sgd};

/// A few f32 updates; differences come only from operation order.
const SGD_TOL: Tol = Tol { rel: 1e-6 };

fn one_param(values: Vec<f32>) -> Conv2d {
    let mut c = Conv2d::new(Conv2dConfig::new(values.len(), 1, 1)).unwrap();
    c.weight.value = values;
    c
}

#[test]
fn sgd_trajectories_equal_pytorch() {
    let f = Fixture::open("sgd.safetensors");
    let cases = [
        ("momentum", Sgd::new(0.1, 0.9, 1e-2).unwrap()),
        ("nesterov", Sgd::new(0.05, 0.8, 1e-3).unwrap().nesterov().unwrap()),
        ("plain", Sgd::new(0.2, 0.0, 1e-2).unwrap()),
    ];
    for (name, mut sgd) in cases {
        let mut model = one_param(f.values("w0"));
        for step in 0..3 {
            model.weight.grad = f.values(&format!("grad{step}"));
            sgd.step(&mut model).unwrap();
            let want = f.values(&format!("{name}.step{step}"));
            assert_close_f32(&format!("{name} step {step}"), &model.weight.value, &want, SGD_TOL);
        }
    }
}

#[test]
fn sgd_rejects_bad_hyper_parameters_and_changed_models() {
    assert!(Sgd::new(-0.1, 0.9, 0.0).is_err());
    assert!(Sgd::new(0.1, f32::NAN, 0.0).is_err());
    assert!(Sgd::new(0.1, 0.0, 0.0).unwrap().nesterov().is_err());
    let mut sgd = Sgd::new(0.1, 0.9, 0.0).unwrap();
    let mut small = one_param(vec![1.0; 3]);
    sgd.step(&mut small).unwrap();
    let mut big = one_param(vec![1.0; 4]);
    assert!(matches!(sgd.step(&mut big), Err(NetError::OptimizerState(_))));
    small.weight.set_trainable(false);
    assert!(sgd.step(&mut small).is_err());
    assert_eq!(small.num_trainable(), 0);
}
