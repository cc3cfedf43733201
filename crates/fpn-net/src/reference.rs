//! Float64 twins of every layer, written for clarity, not speed: direct loops over the
//! definitions. Tests compare the fast f32 layers with them and take their finite differences
//! as the gradient oracle.

use crate::layers::Conv2dConfig;

/// A plain `[N, C, H, W]` f64 array.
#[derive(Clone, Debug, PartialEq)]
pub struct Array4 {
    /// Row-major values.
    pub data: Vec<f64>,
    /// `[N, C, H, W]`.
    pub dims: [usize; 4],
}

impl Array4 {
    /// Zeros of `dims`.
    pub fn zeros(dims: [usize; 4]) -> Self {
        Array4 { data: vec![0.0; dims.iter().product()], dims }
    }

    /// Widens f32 values.
    pub fn from_f32(data: &[f32], dims: [usize; 4]) -> Self {
        Array4 { data: data.iter().map(|&v| v as f64).collect(), dims }
    }

    fn index(&self, n: usize, c: usize, y: usize, x: usize) -> usize {
        let [_, cs, h, w] = self.dims;
        ((n * cs + c) * h + y) * w + x
    }

    /// The value at `(n, c, y, x)`.
    pub fn at(&self, n: usize, c: usize, y: usize, x: usize) -> f64 {
        self.data[self.index(n, c, y, x)]
    }

    fn set(&mut self, n: usize, c: usize, y: usize, x: usize, v: f64) {
        let i = self.index(n, c, y, x);
        self.data[i] = v;
    }
}

/// Cross-correlation as `torch.nn.functional.conv2d` (groups 1): `weight` is
/// `[O, I, kh, kw]` row-major. Panics on inconsistent shapes (a test oracle, not an API).
pub fn conv2d(x: &Array4, weight: &[f64], bias: Option<&[f64]>, cfg: &Conv2dConfig) -> Array4 {
    let [n, c, h, w] = x.dims;
    let [kh, kw] = cfg.kernel;
    let out_len = |len: usize, a: usize| {
        (len + 2 * cfg.padding[a] - cfg.dilation[a] * (cfg.kernel[a] - 1) - 1) / cfg.stride[a] + 1
    };
    let (ho, wo) = (out_len(h, 0), out_len(w, 1));
    let o_ch = cfg.out_channels;
    let mut y = Array4::zeros([n, o_ch, ho, wo]);
    for b in 0..n {
        for o in 0..o_ch {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut acc = bias.map_or(0.0, |b| b[o]);
                    for i in 0..c {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * cfg.stride[0] + ky * cfg.dilation[0]) as isize - cfg.padding[0] as isize;
                                let ix = (ox * cfg.stride[1] + kx * cfg.dilation[1]) as isize - cfg.padding[1] as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let wv = weight[((o * c + i) * kh + ky) * kw + kx];
                                acc += wv * x.at(b, i, iy as usize, ix as usize);
                            }
                        }
                    }
                    y.set(b, o, oy, ox, acc);
                }
            }
        }
    }
    y
}

/// `(x - mean) / sqrt(var + eps) * weight + bias` per channel.
pub fn frozen_batch_norm(x: &Array4, weight: &[f64], bias: &[f64], mean: &[f64], var: &[f64], eps: f64) -> Array4 {
    let mut y = x.clone();
    let plane = x.dims[2] * x.dims[3];
    for (i, v) in y.data.iter_mut().enumerate() {
        let c = (i / plane) % x.dims[1];
        *v = (*v - mean[c]) / (var[c] + eps).sqrt() * weight[c] + bias[c];
    }
    y
}

/// Group normalisation with biased variance.
pub fn group_norm(x: &Array4, groups: usize, weight: &[f64], bias: &[f64], eps: f64) -> Array4 {
    let [n, c, h, w] = x.dims;
    let cpg = c / groups;
    let mut y = x.clone();
    for b in 0..n {
        for g in 0..groups {
            let vals: Vec<f64> = (g * cpg..(g + 1) * cpg)
                .flat_map(|ch| (0..h * w).map(move |p| (ch, p)))
                .map(|(ch, p)| x.at(b, ch, p / w, p % w))
                .collect();
            let mean = vals.iter().sum::<f64>() / vals.len() as f64;
            let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64;
            for ch in g * cpg..(g + 1) * cpg {
                for p in 0..h * w {
                    let v = (x.at(b, ch, p / w, p % w) - mean) / (var + eps).sqrt();
                    y.set(b, ch, p / w, p % w, v * weight[ch] + bias[ch]);
                }
            }
        }
    }
    y
}

/// `max(x, 0)`.
pub fn relu(x: &Array4) -> Array4 {
    let mut y = x.clone();
    y.data.iter_mut().for_each(|v| *v = v.max(0.0));
    y
}

/// Max pooling with `-inf` padding, floor mode.
pub fn max_pool2d(x: &Array4, kernel: usize, stride: usize, padding: usize) -> Array4 {
    let [n, c, h, w] = x.dims;
    let ho = (h + 2 * padding - kernel) / stride + 1;
    let wo = (w + 2 * padding - kernel) / stride + 1;
    let mut y = Array4::zeros([n, c, ho, wo]);
    for b in 0..n {
        for ch in 0..c {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut best = f64::NEG_INFINITY;
                    for ky in 0..kernel {
                        for kx in 0..kernel {
                            let iy = (oy * stride + ky) as isize - padding as isize;
                            let ix = (ox * stride + kx) as isize - padding as isize;
                            if iy >= 0 && ix >= 0 && iy < h as isize && ix < w as isize {
                                best = best.max(x.at(b, ch, iy as usize, ix as usize));
                            }
                        }
                    }
                    y.set(b, ch, oy, ox, best);
                }
            }
        }
    }
    y
}

/// Nearest-neighbour resize to `size`, source index `floor(o * in / out)` (exact rational
/// arithmetic; equal to PyTorch's f32 rule for the sizes of a feature pyramid).
pub fn upsample_nearest(x: &Array4, size: [usize; 2]) -> Array4 {
    let [n, c, h, w] = x.dims;
    let mut y = Array4::zeros([n, c, size[0], size[1]]);
    for b in 0..n {
        for ch in 0..c {
            for oy in 0..size[0] {
                for ox in 0..size[1] {
                    let (sy, sx) = ((oy * h / size[0]).min(h - 1), (ox * w / size[1]).min(w - 1));
                    y.set(b, ch, oy, ox, x.at(b, ch, sy, sx));
                }
            }
        }
    }
    y
}

/// `a + b`.
pub fn add(a: &Array4, b: &Array4) -> Array4 {
    let mut y = a.clone();
    y.data.iter_mut().zip(&b.data).for_each(|(y, b)| *y += b);
    y
}
