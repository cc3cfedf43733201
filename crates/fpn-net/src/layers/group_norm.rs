//! Group normalisation (Wu & He 2018), as `torch.nn.GroupNorm` (used by RetinaNet v2's head).

use rayon::prelude::*;

use super::GradOut;
use crate::error::{NetError, Result, config_error};
use crate::param::{Module, Param, join};
use crate::tensor::{Tensor4, check_nchw, check_same};

/// `y = (x - mean) / sqrt(var + eps) * weight + bias`, statistics over each group of
/// `C / groups` channels and all positions of one image (biased variance). Statistics are
/// accumulated in f64. Parameter names: `weight`, `bias` (both trainable).
#[derive(Clone, Debug)]
pub struct GroupNorm {
    num_groups: usize,
    eps: f64,
    /// `[C]`, gamma.
    pub weight: Param,
    /// `[C]`, beta.
    pub bias: Param,
    /// Per `(n, group)`: `(mean, 1 / sqrt(var + eps))` of the last forward.
    stats: Vec<(f64, f64)>,
    stats_dims: [usize; 4],
}

impl GroupNorm {
    /// `num_groups` groups over `channels` channels, weight 1, bias 0, `eps = 1e-5`.
    ///
    /// # Errors
    /// [`NetError::Config`] when `num_groups` is zero or does not divide `channels`.
    pub fn new(num_groups: usize, channels: usize) -> Result<Self> {
        if num_groups == 0 || channels == 0 || !channels.is_multiple_of(num_groups) {
            return Err(config_error(
                "GroupNorm",
                format!("{num_groups} groups must divide {channels} channels (both > 0)"),
            ));
        }
        Ok(GroupNorm {
            num_groups,
            eps: 1e-5,
            weight: Param::filled(&[channels], 1.0, true),
            bias: Param::zeros(&[channels], true),
            stats: Vec::new(),
            stats_dims: [0; 4],
        })
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.weight.numel()
    }

    /// `y = gn(x)`; remembers the statistics for [`Self::backward`].
    ///
    /// # Errors
    /// [`NetError::Shape`] when `x` has another number of channels.
    pub fn forward(&mut self, x: &Tensor4, y: &mut Tensor4) -> Result<()> {
        check_nchw("group norm input", x, Some(self.channels()))?;
        let group_len = x.image_len() / self.num_groups;
        let cpg = self.channels() / self.num_groups;
        let plane = x.plane_len();
        let eps = self.eps;
        y.reshape_for(x.dims());
        let (w, b) = (&self.weight.value, &self.bias.value);
        self.stats = y
            .as_mut_slice()
            .par_chunks_mut(group_len)
            .zip(x.as_slice().par_chunks(group_len))
            .enumerate()
            .map(|(i, (dst, src))| {
                let mean = src.iter().map(|&v| v as f64).sum::<f64>() / group_len as f64;
                let var = src.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / group_len as f64;
                let rstd = 1.0 / (var + eps).sqrt();
                let first_c = (i % self.num_groups) * cpg;
                for (j, (d, s)) in dst.chunks_mut(plane).zip(src.chunks(plane)).enumerate() {
                    let c = first_c + j;
                    let a = (rstd * w[c] as f64) as f32;
                    let shift = (b[c] as f64 - mean * rstd * w[c] as f64) as f32;
                    for (d, &s) in d.iter_mut().zip(s) {
                        *d = s * a + shift;
                    }
                }
                (mean, rstd)
            })
            .collect();
        self.stats_dims = x.dims();
        Ok(())
    }

    /// Backward: accumulates `dL/dweight`, `dL/dbias` and puts `dL/dx` into `dx`. `x` is the
    /// input of the preceding [`Self::forward`].
    ///
    /// # Errors
    /// [`NetError::NoForward`] when the last forward saw another shape, [`NetError::Shape`]
    /// when `dy` is not shaped like `x`.
    pub fn backward(&mut self, x: &Tensor4, dy: &Tensor4, mut dx: GradOut<'_>) -> Result<()> {
        check_same("group norm output gradient", x, dy)?;
        if self.stats_dims != x.dims() {
            return Err(NetError::NoForward { what: "GroupNorm" });
        }
        let groups = self.num_groups;
        let cpg = self.channels() / groups;
        let plane = x.plane_len();
        let group_len = cpg * plane;
        let w = &self.weight.value;
        let stats = &self.stats;
        // Per (n, group): the partial weight and bias gradients of its channels, summed below
        // in a fixed order so results do not depend on the thread count.
        let partials: Vec<Vec<(f64, f64)>> = x
            .as_slice()
            .par_chunks(group_len)
            .zip(dy.as_slice().par_chunks(group_len))
            .enumerate()
            .map(|(i, (xs, gs))| {
                let (mean, rstd) = stats[i];
                xs.chunks(plane)
                    .zip(gs.chunks(plane))
                    .map(|(xp, gp)| {
                        let mut dw = 0.0;
                        let mut db = 0.0;
                        for (&xv, &g) in xp.iter().zip(gp) {
                            dw += g as f64 * (xv as f64 - mean) * rstd;
                            db += g as f64;
                        }
                        (dw, db)
                    })
                    .collect()
            })
            .collect();
        if let Some((dx, acc)) = dx.prepare("group norm input gradient", x.dims(), false)? {
            dx.as_mut_slice()
                .par_chunks_mut(group_len)
                .zip(x.as_slice().par_chunks(group_len))
                .zip(dy.as_slice().par_chunks(group_len))
                .enumerate()
                .for_each(|(i, ((dxs, xs), gs))| {
                    let (mean, rstd) = stats[i];
                    let first_c = (i % groups) * cpg;
                    // With xhat = (x - mean) * rstd and g' = dy * weight:
                    // dx = rstd * (g' - mean(g') - xhat * mean(g' * xhat)).
                    let mut sum_g = 0.0;
                    let mut sum_gx = 0.0;
                    for (j, (xp, gp)) in xs.chunks(plane).zip(gs.chunks(plane)).enumerate() {
                        let wc = w[first_c + j] as f64;
                        for (&xv, &g) in xp.iter().zip(gp) {
                            let gw = g as f64 * wc;
                            sum_g += gw;
                            sum_gx += gw * (xv as f64 - mean) * rstd;
                        }
                    }
                    let mean_g = sum_g / group_len as f64;
                    let mean_gx = sum_gx / group_len as f64;
                    for (j, ((dp, xp), gp)) in
                        dxs.chunks_mut(plane).zip(xs.chunks(plane)).zip(gs.chunks(plane)).enumerate()
                    {
                        let wc = w[first_c + j] as f64;
                        for ((d, &xv), &g) in dp.iter_mut().zip(xp).zip(gp) {
                            let xhat = (xv as f64 - mean) * rstd;
                            let v = (rstd * (g as f64 * wc - mean_g - xhat * mean_gx)) as f32;
                            *d = if acc { *d + v } else { v };
                        }
                    }
                });
        }
        for (i, part) in partials.iter().enumerate() {
            let first_c = (i % groups) * cpg;
            for (j, &(dw, db)) in part.iter().enumerate() {
                let c = first_c + j;
                if self.weight.trainable() {
                    self.weight.grad[c] += dw as f32;
                }
                if self.bias.trainable() {
                    self.bias.grad[c] += db as f32;
                }
            }
        }
        Ok(())
    }
}

impl Module for GroupNorm {
    fn params<'a>(&'a self, prefix: &str, out: &mut Vec<(String, &'a Param)>) {
        out.push((join(prefix, "weight"), &self.weight));
        out.push((join(prefix, "bias"), &self.bias));
    }
    fn params_mut<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, &'a mut Param)>) {
        out.push((join(prefix, "weight"), &mut self.weight));
        out.push((join(prefix, "bias"), &mut self.bias));
    }
}
