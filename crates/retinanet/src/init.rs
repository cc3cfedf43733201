//! Seeded random initialisation.

/// A SplitMix64 stream: tiny, fast, and the same on every platform.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A stream from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with 24 random bits.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Standard normal draws from a seed (Box-Muller on SplitMix64), so a model initialised from
/// a seed is the same on every machine.
#[derive(Clone, Debug)]
pub struct NormalRng {
    rng: SplitMix64,
    spare: Option<f64>,
}

impl NormalRng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        NormalRng { rng: SplitMix64::new(seed), spare: None }
    }

    /// One draw from N(0, 1).
    pub fn next_normal(&mut self) -> f64 {
        if let Some(v) = self.spare.take() {
            return v;
        }
        // u1 in (0, 1]: the logarithm stays finite.
        let u1 = 1.0 - self.rng.unit() as f64;
        let u2 = self.rng.unit() as f64;
        let r = (-2.0 * u1.max(f64::MIN_POSITIVE).ln()).sqrt();
        let theta = std::f64::consts::TAU * u2;
        self.spare = Some(r * theta.sin());
        r * theta.cos()
    }

    /// Fills `out` with N(0, std^2) draws.
    pub fn fill_normal(&mut self, out: &mut [f32], std: f64) {
        for v in out {
            *v = (self.next_normal() * std) as f32;
        }
    }

    /// A uniform draw in [0, 1).
    pub fn unit(&mut self) -> f32 {
        self.rng.unit()
    }

    /// A uniform integer below `n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.rng.below(n)
    }
}

/// He (Kaiming) normal initialisation for a convolution followed by ReLU: std
/// `sqrt(2 / fan_in)`, bias 0.
pub(crate) fn kaiming_normal(conv: &mut fpn_net::Conv2d, rng: &mut NormalRng) {
    let fan_in: usize = conv.weight.shape()[1..].iter().product();
    rng.fill_normal(&mut conv.weight.value, (2.0 / fan_in.max(1) as f64).sqrt());
    if let Some(b) = &mut conv.bias {
        b.value.fill(0.0);
    }
}
