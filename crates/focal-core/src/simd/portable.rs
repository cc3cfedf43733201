//! The portable level: 8 lanes as a plain array, for CPUs without a supported SIMD extension.

use super::F32v;

/// Eight `f32` lanes in an array; the compiler vectorises what it can.
#[derive(Clone, Copy, Debug)]
pub(crate) struct F32x8([f32; 8]);

// Lane loops are written out rather than built with `array::from_fn` or `array::map`, which
// are not always inlined into the large kernels: a call per operation made this level 1.7x
// slower once. They are `#[inline]`, not `#[inline(always)]`: forced, the portable kernels
// grow so large that the test crates took over 15 minutes to build.

/// `[f(0), ..., f(7)]`.
#[inline]
fn lanes<T: Copy + Default>(f: impl Fn(usize) -> T) -> [T; 8] {
    let mut out = [T::default(); 8];
    for (i, o) in out.iter_mut().enumerate() {
        *o = f(i);
    }
    out
}

#[inline(always)]
fn map(a: F32x8, f: impl Fn(f32) -> f32) -> F32x8 {
    F32x8(lanes(|i| f(a.0[i])))
}

#[inline(always)]
fn zip(a: F32x8, b: F32x8, f: impl Fn(f32, f32) -> f32) -> F32x8 {
    F32x8(lanes(|i| f(a.0[i], b.0[i])))
}

#[inline(always)]
fn cmp(a: F32x8, b: F32x8, f: impl Fn(f32, f32) -> bool) -> [bool; 8] {
    lanes(|i| f(a.0[i], b.0[i]))
}

// SAFETY: plain Rust, valid on every CPU.
unsafe impl F32v for F32x8 {
    type Mask = [bool; 8];
    const LANES: usize = 8;

    #[inline(always)]
    fn splat(v: f32) -> Self {
        F32x8([v; 8])
    }
    #[inline(always)]
    fn iota() -> Self {
        F32x8([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    }
    #[inline(always)]
    fn load(s: &[f32]) -> Self {
        let mut out = [0.0; 8];
        out.copy_from_slice(&s[..8]);
        F32x8(out)
    }
    #[inline(always)]
    fn load_partial(s: &[f32]) -> Self {
        let mut out = [0.0; 8];
        out[..s.len()].copy_from_slice(s);
        F32x8(out)
    }
    #[inline(always)]
    fn store(self, s: &mut [f32]) {
        s[..8].copy_from_slice(&self.0);
    }
    #[inline(always)]
    fn store_partial(self, s: &mut [f32]) {
        let n = s.len();
        s.copy_from_slice(&self.0[..n]);
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        zip(self, o, |a, b| a + b)
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        zip(self, o, |a, b| a - b)
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        zip(self, o, |a, b| a * b)
    }
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        zip(self, o, |a, b| a / b)
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        zip(self, self, |a, _| a.sqrt())
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        // Without a guaranteed FMA unit `f32::mul_add` is a slow library call; in f64 the
        // product is exact, so this rounds like a fused multiply-add (but for rare double
        // rounding) and keeps the kernels' accuracy.
        F32x8(lanes(|i| (self.0[i] as f64 * b.0[i] as f64 + c.0[i] as f64) as f32))
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        zip(self, o, |a, b| if a > b { a } else { b })
    }
    #[inline(always)]
    fn min(self, o: Self) -> Self {
        zip(self, o, |a, b| if a < b { a } else { b })
    }
    #[inline(always)]
    fn abs(self) -> Self {
        map(self, f32::abs)
    }
    #[inline(always)]
    fn neg(self) -> Self {
        map(self, |a| -a)
    }
    #[inline(always)]
    fn round(self) -> Self {
        // Adding and subtracting 1.5 * 2^23 rounds to nearest even for |x| < 2^22 (all the
        // kernels need: exponents of clamped arguments).
        const MAGIC: f32 = 12_582_912.0;
        map(self, |a| (a + MAGIC) - MAGIC)
    }
    #[inline(always)]
    fn pow2i(n: Self) -> Self {
        map(n, |n| f32::from_bits((((n as i32) + 127) as u32) << 23))
    }
    #[inline(always)]
    fn frexp1(self) -> (Self, Self) {
        let bits: [u32; 8] = lanes(|i| self.0[i].to_bits());
        (
            F32x8(lanes(|i| f32::from_bits((bits[i] & 0x007f_ffff) | 0x3f80_0000))),
            F32x8(lanes(|i| ((bits[i] >> 23) & 0xff) as f32 - 127.0)),
        )
    }
    #[inline(always)]
    fn lt(self, o: Self) -> [bool; 8] {
        cmp(self, o, |a, b| a < b)
    }
    #[inline(always)]
    fn le(self, o: Self) -> [bool; 8] {
        cmp(self, o, |a, b| a <= b)
    }
    #[inline(always)]
    fn eq(self, o: Self) -> [bool; 8] {
        cmp(self, o, |a, b| a == b)
    }
    #[inline(always)]
    fn ne(self, o: Self) -> [bool; 8] {
        cmp(self, o, |a, b| a != b)
    }
    #[inline(always)]
    fn and(a: [bool; 8], b: [bool; 8]) -> [bool; 8] {
        lanes(|i| a[i] & b[i])
    }
    #[inline(always)]
    fn select(m: [bool; 8], a: Self, b: Self) -> Self {
        F32x8(lanes(|i| if m[i] { a.0[i] } else { b.0[i] }))
    }
    #[inline(always)]
    fn all_finite(self) -> bool {
        self.0.iter().all(|v| v.is_finite())
    }
    #[inline(always)]
    fn all_zero(self) -> bool {
        self.0.iter().all(|&v| v == 0.0)
    }
    #[inline(always)]
    fn all_finite_nonpositive(self) -> bool {
        self.0.iter().all(|&v| (f32::MIN..=0.0).contains(&v))
    }
    type Acc = [f64; 8];
    #[inline(always)]
    fn acc_zero() -> [f64; 8] {
        [0.0; 8]
    }
    #[inline(always)]
    fn acc_add(acc: [f64; 8], v: Self) -> [f64; 8] {
        lanes(|i| acc[i] + v.0[i] as f64)
    }
    #[inline(always)]
    fn acc_sum(v: [f64; 8]) -> f64 {
        ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]))
    }
    #[inline(always)]
    fn max_lane(self) -> f32 {
        self.0.iter().copied().fold(f32::NEG_INFINITY, f32::max)
    }
}
