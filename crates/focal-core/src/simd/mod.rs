//! Explicit SIMD: one vector trait, one implementation per instruction set, chosen at run time.
//!
//! The kernels (`crate::kernel`) are written once, generic over [`F32v`], and instantiated per
//! level inside `#[target_feature]` functions ([`dispatch`]), so every level runs the same
//! arithmetic in the same order; only the lane count differs.

pub(crate) mod math;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;
pub(crate) mod portable;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

/// An instruction-set level for the `f32` fast path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SimdLevel {
    /// Plain Rust on 8-lane arrays; runs everywhere.
    Portable,
    /// x86-64 AVX2 with FMA, 8 lanes.
    Avx2,
    /// x86-64 AVX-512 (F, BW, DQ, VL), 16 lanes.
    Avx512,
    /// aarch64 NEON, 4 lanes.
    Neon,
}

impl SimdLevel {
    /// Every level, best first.
    pub const ALL: [SimdLevel; 4] = [SimdLevel::Avx512, SimdLevel::Avx2, SimdLevel::Neon, SimdLevel::Portable];

    /// Whether this CPU runs the level.
    pub fn is_supported(self) -> bool {
        match self {
            SimdLevel::Portable => true,
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "aarch64")]
            SimdLevel::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The best level this CPU runs (detected once). `FOCAL_SIMD=portable|avx2|avx512|neon`
    /// lowers it, for comparisons; a level the CPU lacks is ignored.
    pub fn detect() -> SimdLevel {
        static BEST: std::sync::OnceLock<SimdLevel> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            let forced = std::env::var("FOCAL_SIMD").ok().and_then(|s| SimdLevel::from_name(&s));
            match forced {
                Some(level) if level.is_supported() => level,
                _ => SimdLevel::supported().next().unwrap_or(SimdLevel::Portable),
            }
        })
    }

    /// The supported levels, best first.
    pub fn supported() -> impl Iterator<Item = SimdLevel> {
        SimdLevel::ALL.into_iter().filter(|l| l.is_supported())
    }

    /// Lower-case name (`"avx512"`...).
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Portable => "portable",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
            SimdLevel::Neon => "neon",
        }
    }

    /// Parses [`SimdLevel::name`].
    pub fn from_name(name: &str) -> Option<SimdLevel> {
        SimdLevel::ALL.into_iter().find(|l| l.name() == name.trim().to_ascii_lowercase())
    }
}

/// A vector of `f32` lanes. Every method is `#[inline(always)]` in the implementations so that
/// the generic kernels compile to straight vector code inside the `#[target_feature]` wrappers.
///
/// # Safety
/// Implementations may only be used on CPUs that support their instruction set; the
/// [`dispatch`] wrappers guarantee that.
pub(crate) unsafe trait F32v: Copy {
    /// Lane mask.
    type Mask: Copy;
    /// Number of lanes.
    const LANES: usize;

    fn splat(v: f32) -> Self;
    /// `0, 1, 2, ...` as floats.
    fn iota() -> Self;
    /// Loads `LANES` values from `s[..LANES]` (the caller guarantees the length).
    fn load(s: &[f32]) -> Self;
    /// Loads `s.len() <= LANES` values; the other lanes are 0.
    fn load_partial(s: &[f32]) -> Self;
    /// Stores all lanes into `s[..LANES]`.
    fn store(self, s: &mut [f32]);
    /// Stores the first `s.len() <= LANES` lanes.
    fn store_partial(self, s: &mut [f32]);

    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn div(self, o: Self) -> Self;
    /// Square root, correctly rounded.
    fn sqrt(self) -> Self;
    /// `self * b + c`, fused where the hardware has it.
    fn mul_add(self, b: Self, c: Self) -> Self;
    fn max(self, o: Self) -> Self;
    fn min(self, o: Self) -> Self;
    fn abs(self) -> Self;
    fn neg(self) -> Self;
    /// `-min(|x|, limit)` for `limit >= 0` (NaN lanes give an unspecified value).
    #[inline(always)]
    fn neg_abs_min(self, limit: Self) -> Self {
        self.abs().min(limit).neg()
    }
    /// Round to nearest, ties to even.
    fn round(self) -> Self;
    /// `2^n` for integer-valued `n` in `[-126, 127]`.
    fn pow2i(n: Self) -> Self;
    /// `self * 2^n` for integer-valued `n` in `[-252, 127]`, rounding into the subnormal range
    /// and to 0 like a correctly scaled product would.
    #[inline(always)]
    fn scale_pow2(self, n: Self) -> Self {
        // Two factors so that each stays a normal number down to 2^-252.
        let half = n.mul(Self::splat(0.5)).round();
        self.mul(Self::pow2i(half)).mul(Self::pow2i(n.sub(half)))
    }
    /// Splits a positive normal `x` into `(m, e)` with `x = m * 2^e`, `m` in `[1, 2)`.
    fn frexp1(self) -> (Self, Self);

    /// A mask with only lane `index` (< LANES) set.
    #[inline(always)]
    fn lane_mask(index: usize) -> Self::Mask {
        Self::iota().eq(Self::splat(index as f32))
    }
    fn lt(self, o: Self) -> Self::Mask;
    fn le(self, o: Self) -> Self::Mask;
    fn eq(self, o: Self) -> Self::Mask;
    fn ne(self, o: Self) -> Self::Mask;
    fn and(a: Self::Mask, b: Self::Mask) -> Self::Mask;
    /// `m ? a : b` per lane.
    fn select(m: Self::Mask, a: Self, b: Self) -> Self;

    /// Whether every lane is finite (no NaN, no infinity).
    fn all_finite(self) -> bool;
    /// Whether every lane is zero.
    fn all_zero(self) -> bool;
    /// Whether every lane is finite and `<= 0`.
    fn all_finite_nonpositive(self) -> bool;
    /// Asks for the cache line holding `s[0]` (`s` not empty) to be brought into L1, where the
    /// level has an instruction for it; a hint with no effect on results.
    #[inline(always)]
    fn prefetch(_s: &[f32]) {}

    /// An `f64` accumulator with one lane per `f32` lane.
    type Acc: Copy;
    /// A zero accumulator.
    fn acc_zero() -> Self::Acc;
    /// `acc + widen(self)`, lane by lane.
    fn acc_add(acc: Self::Acc, v: Self) -> Self::Acc;
    /// Sum of the accumulator's lanes in a fixed order.
    fn acc_sum(acc: Self::Acc) -> f64;

    /// Sum of the lanes, in `f64`, in a fixed order.
    fn sum_f64(self) -> f64 {
        Self::acc_sum(Self::acc_add(Self::acc_zero(), self))
    }
    /// Largest lane.
    fn max_lane(self) -> f32;
}

/// A computation on one chunk of rows, written once for every SIMD level.
pub(crate) trait ChunkKernel: Sync {
    /// Runs the chunk with vector type `V` and returns its partial loss sum.
    fn run<V: F32v>(&self, chunk: crate::kernel::Chunk<'_>) -> f64;
}

/// Runs `kernel` on `chunk` with `level`'s instructions.
///
/// The caller has checked `level.is_supported()` (the loss constructors refuse others).
#[inline]
pub(crate) fn dispatch<K: ChunkKernel>(level: SimdLevel, kernel: &K, chunk: crate::kernel::Chunk<'_>) -> f64 {
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the loss constructors only accept levels that `is_supported()` on this CPU.
        SimdLevel::Avx512 if SimdLevel::Avx512.is_supported() => unsafe { x86::run_avx512(kernel, chunk) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        SimdLevel::Avx2 if SimdLevel::Avx2.is_supported() => unsafe { x86::run_avx2(kernel, chunk) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: as above.
        SimdLevel::Neon if SimdLevel::Neon.is_supported() => unsafe { neon::run_neon(kernel, chunk) },
        _ => run_portable(kernel, chunk),
    }
}

/// The portable level, compiled once per kernel like the `#[target_feature]` wrappers, not
/// inlined into every caller of [`dispatch`] (which made the test crates take over 15 minutes
/// to build).
#[inline(never)]
fn run_portable<K: ChunkKernel>(kernel: &K, chunk: crate::kernel::Chunk<'_>) -> f64 {
    kernel.run::<portable::F32x8>(chunk)
}
