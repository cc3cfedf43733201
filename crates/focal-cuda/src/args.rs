//! The kernels' argument blocks, mirrored from `kernels/focal_common.cuh` (`LossArgs`) and
//! `kernels/reduce.cu` (`ReduceArgs`). Pointers are device addresses (`CUdeviceptr`) on the GPU
//! and host addresses in the emulation tests, which also check these layouts against the C++
//! structs (`sizeof`, `offsetof`).

/// Argument block of every loss kernel. 8-byte fields first: no padding to disagree about.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct LossArgs {
    pub logits: u64,
    pub labels: u64,
    pub targets: u64,
    pub weights: u64,
    pub alpha_per_class: u64,
    pub scale: u64,
    pub grad: u64,
    pub elementwise: u64,
    pub partials: u64,
    pub first_bad_row: u64,
    pub numel: u64,
    pub rows_per_image: u64,
    pub classes_magic: u64,
    pub rows_per_image_magic: u64,
    pub classes: u32,
    pub weight_mode: u32,
    pub upstream: f32,
    pub alpha_pos: f32,
    pub alpha_neg: f32,
    pub gamma: f32,
    pub flags: u32,
    pub uniform_scale: f32,
}

/// Argument block of the count, normaliser and final-sum kernels.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct ReduceArgs {
    pub labels: u64,
    pub counts: u64,
    pub scale: u64,
    pub partials: u64,
    pub loss: u64,
    pub loss_f32: u64,
    pub rows_per_image: u64,
    pub images: u32,
    pub num_partials: u32,
    pub classes: u32,
    pub mode: u32,
}

// SAFETY: both are #[repr(C)] plain data (integers and floats) with the layout of the C++
// structs the kernels take by value; cudarc copies them into the launch parameters.
unsafe impl cudarc::driver::DeviceRepr for LossArgs {}
// SAFETY: as above.
unsafe impl cudarc::driver::DeviceRepr for ReduceArgs {}

/// `ceil(2^64 / d)` for the kernels' `fast_div` (0 for d <= 1, where the quotient is n).
pub(crate) fn div_magic(d: u64) -> u64 {
    if d <= 1 { 0 } else { u64::MAX / d + 1 }
}

/// `LossArgs::weight_mode`.
pub(crate) const WEIGHT_NONE: u32 = 0;
pub(crate) const WEIGHT_PER_ROW: u32 = 1;
pub(crate) const WEIGHT_PER_ELEMENT: u32 = 2;
/// `LossArgs::flags`: varifocal positives weighted by their target.
pub(crate) const FLAG_IOU_WEIGHTED: u32 = 1;
/// `ReduceArgs::mode`.
pub(crate) const MODE_PER_IMAGE: u32 = 0;
pub(crate) const MODE_PER_BATCH: u32 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn div_magic_divides_exactly() {
        // The kernels' fast_div: (magic * n) >> 64, for every 32-bit n; spot-check the edges.
        for d in [1u64, 2, 3, 7, 80, 81, 120_087, 1 << 20, u64::from(u32::MAX)] {
            let m = div_magic(d);
            for n in [0u64, 1, d - 1, d, d + 1, 12_345_678, u64::from(u32::MAX) - 1, u64::from(u32::MAX)] {
                let q = if m == 0 { n } else { ((u128::from(m) * u128::from(n)) >> 64) as u64 };
                assert_eq!(q, n / d, "{n} / {d}");
            }
        }
    }

    #[test]
    fn args_have_the_c_layout() {
        assert_eq!(std::mem::size_of::<LossArgs>(), 144);
        assert_eq!(std::mem::offset_of!(LossArgs, uniform_scale), 140);
        assert_eq!(std::mem::size_of::<ReduceArgs>(), 72);
        assert_eq!(std::mem::offset_of!(ReduceArgs, mode), 68);
    }
}
