//! Box coding: `(dx, dy, dw, dh)` regression targets relative to anchors, as torchvision's
//! `BoxCoder` (and detectron2's `Box2BoxTransform`, which uses the same formulas).
//!
//! Encoding `gt` against `anchor` (widths `w = x2 - x1`, centres `cx = x1 + 0.5 * w`):
//! `dx = wx * (gt_cx - a_cx) / a_w`, `dy` likewise, `dw = ww * ln(gt_w / a_w)`, `dh` likewise.
//! Decoding inverts it with `dw, dh` first divided by the weights and then clamped above at
//! `ln(1000 / 16)` so `exp` cannot overflow. Every step is `f32` in torchvision's order; `exp`
//! and `ln` may differ from torch's vectorised ones by an ulp.

use rayon::prelude::*;

use crate::boxes::BoxXyxy;
use crate::error::{AnchorError, Result, check_len};
use crate::math::exp_f32;

/// Anchors per parallel task when coding many boxes.
const CODE_CHUNK: usize = 4096;

/// Box encoder/decoder with weights `(wx, wy, ww, wh)` and a clamp on `dw, dh`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoxCoder {
    weights: [f32; 4],
    clip: f32,
}

impl Default for BoxCoder {
    fn default() -> Self {
        Self::retinanet()
    }
}

impl BoxCoder {
    /// `ln(1000 / 16)`, torchvision's and detectron2's default clamp.
    pub fn default_clip() -> f32 {
        (1000.0f64 / 16.0).ln() as f32
    }

    /// A coder with `weights` and the default clamp.
    ///
    /// # Errors
    /// [`AnchorError::Parameter`] when a weight is not finite and positive.
    pub fn new(weights: [f32; 4]) -> Result<Self> {
        Self::with_clip(weights, Self::default_clip())
    }

    /// A coder with `weights` and a clamp on the decoded `dw, dh`.
    ///
    /// # Errors
    /// [`AnchorError::Parameter`] when a weight is not finite and positive or the clamp is NaN.
    pub fn with_clip(weights: [f32; 4], clip: f32) -> Result<Self> {
        if let Some(&w) = weights.iter().find(|w| !(w.is_finite() && **w > 0.0)) {
            return Err(AnchorError::Parameter {
                name: "box coder weight",
                value: w as f64,
                expected: "finite and > 0",
            });
        }
        if clip.is_nan() {
            return Err(AnchorError::Parameter {
                name: "box coder clip",
                value: clip as f64,
                expected: "a number (may be +inf)",
            });
        }
        Ok(BoxCoder { weights, clip })
    }

    /// RetinaNet: weights `(1, 1, 1, 1)`.
    pub fn retinanet() -> Self {
        BoxCoder { weights: [1.0; 4], clip: Self::default_clip() }
    }

    /// Faster R-CNN box head: weights `(10, 10, 5, 5)`.
    pub fn faster_rcnn() -> Self {
        BoxCoder { weights: [10.0, 10.0, 5.0, 5.0], clip: Self::default_clip() }
    }

    /// The weights `(wx, wy, ww, wh)`.
    pub fn weights(&self) -> [f32; 4] {
        self.weights
    }

    /// The clamp on decoded `dw, dh`.
    pub fn clip(&self) -> f32 {
        self.clip
    }

    /// Regression target of `gt` relative to `anchor` (torchvision `encode_boxes`).
    ///
    /// A zero-width or zero-height anchor gives infinite or NaN targets, as in torchvision.
    #[inline]
    pub fn encode(&self, gt: &BoxXyxy, anchor: &BoxXyxy) -> [f32; 4] {
        let [wx, wy, ww, wh] = self.weights;
        let ex_w = anchor[2] - anchor[0];
        let ex_h = anchor[3] - anchor[1];
        let ex_cx = anchor[0] + 0.5 * ex_w;
        let ex_cy = anchor[1] + 0.5 * ex_h;
        let gt_w = gt[2] - gt[0];
        let gt_h = gt[3] - gt[1];
        let gt_cx = gt[0] + 0.5 * gt_w;
        let gt_cy = gt[1] + 0.5 * gt_h;
        [wx * (gt_cx - ex_cx) / ex_w, wy * (gt_cy - ex_cy) / ex_h, ww * (gt_w / ex_w).ln(), wh * (gt_h / ex_h).ln()]
    }

    /// The box that `code` describes relative to `anchor` (torchvision `decode_single`).
    ///
    /// NaN codes give NaN boxes (the clamp keeps NaN, as `torch.clamp` does). `exp` is this
    /// crate's branch-free one (within 2 ulps), so the batched decode vectorises.
    #[inline(always)]
    pub fn decode(&self, code: &[f32; 4], anchor: &BoxXyxy) -> BoxXyxy {
        let [wx, wy, ww, wh] = self.weights;
        let widths = anchor[2] - anchor[0];
        let heights = anchor[3] - anchor[1];
        let ctr_x = anchor[0] + 0.5 * widths;
        let ctr_y = anchor[1] + 0.5 * heights;
        let dx = code[0] / wx;
        let dy = code[1] / wy;
        let dw = clamp_max_keep_nan(code[2] / ww, self.clip);
        let dh = clamp_max_keep_nan(code[3] / wh, self.clip);
        let pred_ctr_x = dx * widths + ctr_x;
        let pred_ctr_y = dy * heights + ctr_y;
        let pred_w = exp_f32(dw) * widths;
        let pred_h = exp_f32(dh) * heights;
        let half_w = 0.5 * pred_w;
        let half_h = 0.5 * pred_h;
        [pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h]
    }

    /// Encodes `gts[i]` against `anchors[i]` for every `i`, in parallel.
    ///
    /// # Errors
    /// [`AnchorError::Length`] when the three slices differ in length.
    pub fn encode_boxes(&self, gts: &[BoxXyxy], anchors: &[BoxXyxy], out: &mut [[f32; 4]]) -> Result<()> {
        check_len("gt boxes", anchors.len(), gts.len())?;
        check_len("encode output", anchors.len(), out.len())?;
        out.par_chunks_mut(CODE_CHUNK).zip(gts.par_chunks(CODE_CHUNK).zip(anchors.par_chunks(CODE_CHUNK))).for_each(
            |(o, (g, a))| {
                for ((o, g), a) in o.iter_mut().zip(g).zip(a) {
                    *o = self.encode(g, a);
                }
            },
        );
        Ok(())
    }

    /// Decodes `codes[i]` against `anchors[i]` for every `i`, in parallel.
    ///
    /// # Errors
    /// [`AnchorError::Length`] when the three slices differ in length.
    ///
    /// # Examples
    /// ```
    /// use anchors::BoxCoder;
    /// let coder = BoxCoder::retinanet();
    /// let anchors = [[0.0f32, 0.0, 10.0, 20.0]];
    /// let mut out = [[0.0f32; 4]];
    /// coder.decode_boxes(&[[0.0; 4]], &anchors, &mut out).unwrap();
    /// assert_eq!(out, anchors);
    /// ```
    pub fn decode_boxes(&self, codes: &[[f32; 4]], anchors: &[BoxXyxy], out: &mut [BoxXyxy]) -> Result<()> {
        check_len("box codes", anchors.len(), codes.len())?;
        check_len("decode output", anchors.len(), out.len())?;
        out.par_chunks_mut(CODE_CHUNK)
            .zip(codes.par_chunks(CODE_CHUNK).zip(anchors.par_chunks(CODE_CHUNK)))
            .for_each(|(o, (c, a))| self.decode_chunk(c, a, o));
        Ok(())
    }

    /// Decodes a batch: `codes` is `[B, A, 4]` (flattened to `[B * A]` boxes) against the same
    /// `A` anchors for every image.
    ///
    /// # Errors
    /// [`AnchorError::Length`] when `codes.len()` is not a multiple of `anchors.len()` or
    /// `out.len() != codes.len()`.
    pub fn decode_batch(&self, codes: &[[f32; 4]], anchors: &[BoxXyxy], out: &mut [BoxXyxy]) -> Result<()> {
        check_len("decode output", codes.len(), out.len())?;
        if anchors.is_empty() {
            return check_len("box codes", 0, codes.len());
        }
        if !codes.len().is_multiple_of(anchors.len()) {
            return Err(AnchorError::Length {
                what: "box codes (a multiple of the anchor count)",
                expected: codes.len().div_ceil(anchors.len()) * anchors.len(),
                got: codes.len(),
            });
        }
        for (c, o) in codes.chunks(anchors.len()).zip(out.chunks_mut(anchors.len())) {
            self.decode_boxes(c, anchors, o)?;
        }
        Ok(())
    }
}

impl BoxCoder {
    /// Decodes one chunk, with the AVX2 build when the CPU has it.
    fn decode_chunk(&self, codes: &[[f32; 4]], anchors: &[BoxXyxy], out: &mut [BoxXyxy]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { self.decode_chunk_avx2(codes, anchors, out) };
            return;
        }
        self.decode_chunk_body(codes, anchors, out);
    }

    /// [`BoxCoder::decode_chunk_body`] compiled with AVX2 (no FMA: the same `f32` results).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    #[inline(never)]
    fn decode_chunk_avx2(&self, codes: &[[f32; 4]], anchors: &[BoxXyxy], out: &mut [BoxXyxy]) {
        self.decode_chunk_body(codes, anchors, out);
    }

    #[inline(always)]
    fn decode_chunk_body(&self, codes: &[[f32; 4]], anchors: &[BoxXyxy], out: &mut [BoxXyxy]) {
        for ((o, c), a) in out.iter_mut().zip(codes).zip(anchors) {
            *o = self.decode(c, a);
        }
    }
}

/// `min(x, max)` that keeps NaN, as `torch.clamp(x, max=...)`.
#[inline]
fn clamp_max_keep_nan(x: f32, max: f32) -> f32 {
    if x > max { max } else { x }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_clamps_large_dw() {
        let c = BoxCoder::retinanet();
        let b = c.decode(&[0.0, 0.0, 100.0, 100.0], &[0.0, 0.0, 16.0, 16.0]);
        let w = BoxCoder::default_clip().exp() * 16.0;
        assert_eq!(b, [8.0 - 0.5 * w, 8.0 - 0.5 * w, 8.0 + 0.5 * w, 8.0 + 0.5 * w]);
    }

    #[test]
    fn decode_keeps_nan() {
        let c = BoxCoder::retinanet();
        let b = c.decode(&[0.0, 0.0, f32::NAN, 0.0], &[0.0, 0.0, 16.0, 16.0]);
        assert!(b[0].is_nan() && b[2].is_nan());
        assert_eq!([b[1], b[3]], [0.0, 16.0]);
    }

    #[test]
    fn avx2_decode_equals_portable_decode() {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            let c = BoxCoder::faster_rcnn();
            // A deterministic spread of codes (including clamped dw, dh) and anchors.
            let codes: Vec<[f32; 4]> = (0..1003)
                .map(|i| {
                    let t = i as f32;
                    [(t * 0.37).sin() * 30.0, (t * 0.11).cos() * 30.0, (t * 0.07).sin() * 40.0, (t * 0.05).cos() * 25.0]
                })
                .collect();
            let anchors: Vec<BoxXyxy> = (0..1003)
                .map(|i| [i as f32, 2.0 * i as f32, i as f32 + 16.0 + (i % 7) as f32, 3.0 * i as f32 + 9.0])
                .collect();
            let (mut a, mut b) = (vec![[0.0; 4]; 1003], vec![[0.0; 4]; 1003]);
            c.decode_chunk_body(&codes, &anchors, &mut a);
            // SAFETY: AVX2 support checked above.
            unsafe { c.decode_chunk_avx2(&codes, &anchors, &mut b) };
            assert_eq!(a, b);
        }
    }

    #[test]
    fn bad_weights_are_an_error() {
        assert!(BoxCoder::new([1.0, 0.0, 1.0, 1.0]).is_err());
        assert!(BoxCoder::with_clip([1.0; 4], f32::NAN).is_err());
    }

    #[test]
    fn mismatched_lengths_are_an_error() {
        let c = BoxCoder::retinanet();
        let mut out = [[0.0; 4]; 2];
        assert!(matches!(
            c.decode_boxes(&[[0.0; 4]], &[[0.0, 0.0, 1.0, 1.0]; 2], &mut out),
            Err(AnchorError::Length { .. })
        ));
        assert!(c.decode_batch(&[[0.0; 4]; 3], &[[0.0, 0.0, 1.0, 1.0]; 2], &mut [[0.0; 4]; 3]).is_err());
    }
}
