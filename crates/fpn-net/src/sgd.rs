//! Stochastic gradient descent with momentum and weight decay, as `torch.optim.SGD`.

use crate::error::{NetError, Result, config_error};
use crate::param::Module;

/// `torch.optim.SGD(lr, momentum, weight_decay, nesterov)` with `dampening = 0`:
///
/// ```text
/// g = grad + weight_decay * w
/// v = g                    (first step)
/// v = momentum * v + g     (later steps)
/// w -= lr * (g + momentum * v   if nesterov else   v)
/// ```
///
/// Only trainable parameters are updated. The momentum buffers are matched to parameters by
/// order and size; a model that changes between steps is an error.
///
/// # Examples
/// ```
/// use fpn_net::{Conv2d, Conv2dConfig, Module, Sgd};
/// let mut conv = Conv2d::new(Conv2dConfig::new(1, 1, 1)).unwrap();
/// conv.weight.value[0] = 1.0;
/// conv.weight.grad[0] = 0.5;
/// let mut sgd = Sgd::new(0.1, 0.9, 0.0).unwrap();
/// sgd.step(&mut conv).unwrap();
/// assert!((conv.weight.value[0] - 0.95).abs() < 1e-7);
/// ```
#[derive(Clone, Debug)]
pub struct Sgd {
    /// Learning rate (may be changed between steps by a schedule).
    pub lr: f32,
    momentum: f32,
    weight_decay: f32,
    nesterov: bool,
    velocity: Vec<Vec<f32>>,
}

impl Sgd {
    /// Plain momentum SGD.
    ///
    /// # Errors
    /// [`NetError::Config`] when `lr`, `momentum` or `weight_decay` is negative or not finite.
    pub fn new(lr: f32, momentum: f32, weight_decay: f32) -> Result<Self> {
        for (name, v) in [("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(config_error("Sgd", format!("{name} = {v}: expected a finite value >= 0")));
            }
        }
        Ok(Sgd { lr, momentum, weight_decay, nesterov: false, velocity: Vec::new() })
    }

    /// Nesterov momentum.
    ///
    /// # Errors
    /// [`NetError::Config`] when `momentum` is zero (as PyTorch).
    pub fn nesterov(mut self) -> Result<Self> {
        if self.momentum <= 0.0 {
            return Err(config_error("Sgd", "nesterov needs momentum > 0"));
        }
        self.nesterov = true;
        Ok(self)
    }

    /// One update of every trainable parameter from its accumulated gradient (the gradients
    /// are left as they are; zero them before the next backward).
    ///
    /// # Errors
    /// [`NetError::OptimizerState`] when the trainable parameters differ in number or size
    /// from the previous steps.
    pub fn step<M: Module + ?Sized>(&mut self, model: &mut M) -> Result<()> {
        let mut params = model.named_params_mut();
        params.retain(|(_, p)| p.trainable());
        let first = self.velocity.is_empty();
        if !first {
            let sizes_match = self.velocity.len() == params.len()
                && self.velocity.iter().zip(&params).all(|(v, (_, p))| v.len() == p.numel());
            if !sizes_match {
                return Err(NetError::OptimizerState(format!(
                    "{} momentum buffers, {} trainable parameters now",
                    self.velocity.len(),
                    params.len()
                )));
            }
        } else if self.momentum > 0.0 {
            self.velocity = params.iter().map(|(_, p)| vec![0.0; p.numel()]).collect();
        }
        let (lr, mu, wd, nesterov) = (self.lr, self.momentum, self.weight_decay, self.nesterov);
        for (i, (_, p)) in params.into_iter().enumerate() {
            let velocity = self.velocity.get_mut(i);
            match velocity {
                Some(v) if mu > 0.0 => {
                    for ((w, &g), v) in p.value.iter_mut().zip(&p.grad).zip(v.iter_mut()) {
                        let g = g + wd * *w;
                        *v = if first { g } else { mu * *v + g };
                        let update = if nesterov { g + mu * *v } else { *v };
                        *w -= lr * update;
                    }
                }
                _ => {
                    for (w, &g) in p.value.iter_mut().zip(&p.grad) {
                        *w -= lr * (g + wd * *w);
                    }
                }
            }
        }
        Ok(())
    }
}
