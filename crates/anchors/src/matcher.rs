//! torchvision's `Matcher`: each prediction (anchor) gets the index of its best ground truth,
//! [`BACKGROUND`] or [`IGNORE`].
//!
//! For quality matrix `q[g, a]` (ground truth `g`, anchor `a`):
//! 1. `best[a] = max_g q[g, a]`, `arg[a]` = the first `g` reaching it (torch's `max(dim=0)`).
//! 2. `best < low` gives [`BACKGROUND`], `low <= best < high` gives [`IGNORE`], otherwise
//!    `arg[a]`. Thresholds are compared in `f32`, as torch compares an `f32` tensor with a
//!    Python float.
//! 3. With low-quality matches allowed: for every ground truth `g`, every anchor `a` with
//!    `q[g, a] == max_a' q[g, a']` (all ties) gets `arg[a]` back, its own best ground truth,
//!    which is not necessarily `g`.
//!
//! A ground truth that overlaps no anchor has a best quality of 0, so every anchor ties with
//! it and every anchor becomes foreground. That is torchvision's (and detectron2's) behaviour
//! and is kept; target assignment refuses degenerate ground-truth boxes, the usual cause.
//!
//! This module is the readable twin of the fused path in [`crate::assign`]: it works on a
//! materialised `[M, N]` matrix.

pub use focal_core::labels::{BACKGROUND, IGNORE};

use crate::error::{AnchorError, Result};

/// Matching thresholds and the low-quality rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Matcher {
    high: f32,
    low: f32,
    allow_low_quality_matches: bool,
}

impl Default for Matcher {
    fn default() -> Self {
        Self::retinanet()
    }
}

impl Matcher {
    /// A matcher with foreground at `quality >= high`, background below `low`.
    ///
    /// The thresholds are rounded to `f32`, as torch does when comparing.
    ///
    /// # Errors
    /// [`AnchorError::Parameter`] when a threshold is NaN or `low > high`.
    ///
    /// # Examples
    /// ```
    /// use anchors::Matcher;
    /// let m = Matcher::new(0.5, 0.4, true).unwrap();
    /// assert_eq!(m, Matcher::retinanet());
    /// assert!(Matcher::new(0.4, 0.5, true).is_err());
    /// ```
    pub fn new(high: f64, low: f64, allow_low_quality_matches: bool) -> Result<Self> {
        if high.is_nan() || low.is_nan() || low > high {
            return Err(AnchorError::Parameter {
                name: "matcher low threshold",
                value: low,
                expected: "a number <= the high threshold (and the high threshold not NaN)",
            });
        }
        Ok(Matcher { high: high as f32, low: low as f32, allow_low_quality_matches })
    }

    /// RetinaNet: foreground at IoU >= 0.5, background below 0.4, low-quality matches on.
    pub fn retinanet() -> Self {
        Matcher { high: 0.5, low: 0.4, allow_low_quality_matches: true }
    }

    /// The foreground threshold.
    pub fn high(&self) -> f32 {
        self.high
    }

    /// The background threshold.
    pub fn low(&self) -> f32 {
        self.low
    }

    /// Whether low-quality matches are allowed.
    pub fn allow_low_quality_matches(&self) -> bool {
        self.allow_low_quality_matches
    }

    /// The match code of an anchor whose best quality is `best`, reached first at `arg`.
    #[inline]
    pub(crate) fn code(&self, best: f32, arg: i32) -> i32 {
        if best < self.low {
            BACKGROUND
        } else if best < self.high {
            IGNORE
        } else {
            arg
        }
    }

    /// Matches from a quality matrix `[num_gt, num_pred]` (row-major), as torchvision's
    /// `Matcher.__call__`. Writes one code per prediction into `out`.
    ///
    /// With no ground truth every prediction is [`BACKGROUND`] (RetinaNet's rule for images
    /// without boxes; torchvision's `Matcher` itself raises there). NaN qualities propagate as
    /// in torch's `max`: a prediction whose column holds a NaN is matched to the first NaN's
    /// row (NaN fails both threshold tests).
    ///
    /// # Errors
    /// [`AnchorError::Length`] when `quality.len() != num_gt * num_pred` or
    /// `out.len() != num_pred`.
    pub fn match_quality_matrix(&self, quality: &[f32], num_gt: usize, num_pred: usize, out: &mut [i32]) -> Result<()> {
        if quality.len() != num_gt * num_pred {
            return Err(AnchorError::Length {
                what: "quality matrix",
                expected: num_gt * num_pred,
                got: quality.len(),
            });
        }
        if out.len() != num_pred {
            return Err(AnchorError::Length { what: "matches output", expected: num_pred, got: out.len() });
        }
        if num_gt == 0 {
            out.fill(BACKGROUND);
            return Ok(());
        }
        let mut all_matches = vec![0i32; num_pred];
        for (a, (o, arg)) in out.iter_mut().zip(&mut all_matches).enumerate() {
            let (best, g) = torch_max((0..num_gt).map(|g| quality[g * num_pred + a]));
            *arg = g as i32;
            *o = self.code(best, *arg);
        }
        if self.allow_low_quality_matches {
            for row in quality.chunks(num_pred) {
                let (highest, _) = torch_max(row.iter().copied());
                for (a, &q) in row.iter().enumerate() {
                    if q == highest {
                        out[a] = all_matches[a];
                    }
                }
            }
        }
        Ok(())
    }
}

/// torch's `max` over a non-empty sequence: the first maximum, or the first NaN if any.
fn torch_max(values: impl Iterator<Item = f32>) -> (f32, usize) {
    let mut best = (f32::NEG_INFINITY, 0);
    for (i, v) in values.enumerate() {
        if i == 0 || v.is_nan() || v > best.0 {
            best = (v, i);
            if v.is_nan() {
                break;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_split_three_ways() {
        let m = Matcher::new(0.5, 0.4, false).unwrap();
        let q = [0.39, 0.4, 0.49, 0.5, 0.9];
        let mut out = [0; 5];
        m.match_quality_matrix(&q, 1, 5, &mut out).unwrap();
        assert_eq!(out, [BACKGROUND, IGNORE, IGNORE, 0, 0]);
    }

    #[test]
    fn low_quality_ties_restore_each_anchors_own_best() {
        // gt 0's best is 0.3 at anchors 0 and 2 (a tie); anchor 2's own best gt is 1.
        let q = [0.3, 0.1, 0.3, 0.0, 0.2, 0.35];
        let mut out = [0; 3];
        Matcher::retinanet().match_quality_matrix(&q, 2, 3, &mut out).unwrap();
        assert_eq!(out, [0, BACKGROUND, 1]);
    }

    #[test]
    fn no_ground_truth_is_all_background() {
        let mut out = [7; 4];
        Matcher::retinanet().match_quality_matrix(&[], 0, 4, &mut out).unwrap();
        assert_eq!(out, [BACKGROUND; 4]);
    }

    #[test]
    fn nan_quality_matches_like_torch_max() {
        let q = [0.9, f32::NAN];
        let mut out = [0; 1];
        Matcher::new(0.5, 0.4, false).unwrap().match_quality_matrix(&q, 2, 1, &mut out).unwrap();
        assert_eq!(out, [1]);
    }

    #[test]
    fn wrong_sizes_are_an_error() {
        let mut out = [0; 2];
        assert!(Matcher::retinanet().match_quality_matrix(&[0.0; 3], 2, 2, &mut out).is_err());
    }
}
