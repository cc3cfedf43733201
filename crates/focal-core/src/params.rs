//! Validated loss parameters and reductions.

use crate::error::{FocalError, Result};

/// Class-balancing weight alpha.
#[derive(Clone, Debug, PartialEq)]
pub enum Alpha {
    /// No weighting (torchvision's `alpha = -1`).
    None,
    /// `alpha` for positives, `1 - alpha` for negatives (the paper's alpha_t).
    Scalar(f64),
    /// One alpha per class: `alpha[c]` for a positive of class c, `1 - alpha[c]` for a negative.
    PerClass(Vec<f64>),
}

impl Alpha {
    /// `(weight of a positive, weight of a negative)` for class `c`.
    #[inline]
    pub fn pos_neg(&self, class: usize) -> (f64, f64) {
        match self {
            Alpha::None => (1.0, 1.0),
            Alpha::Scalar(a) => (*a, 1.0 - *a),
            Alpha::PerClass(v) => (v[class], 1.0 - v[class]),
        }
    }
}

fn check_unit(name: &'static str, v: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&v) {
        return Err(FocalError::InvalidParameter { name, value: v, expected: "a finite value in [0, 1]" });
    }
    Ok(())
}

fn check_non_negative(name: &'static str, v: f64) -> Result<()> {
    if !(v.is_finite() && v >= 0.0) {
        return Err(FocalError::InvalidParameter { name, value: v, expected: "a finite value >= 0" });
    }
    Ok(())
}

/// Focal loss parameters: alpha and the focusing parameter gamma.
///
/// # Examples
/// ```
/// use focal_core::FocalParams;
/// let p = FocalParams::new(Some(0.25), 2.0).unwrap();
/// assert_eq!(p.gamma(), 2.0);
/// assert!(FocalParams::new(Some(1.5), 2.0).is_err());
/// assert!(FocalParams::new(None, -1.0).is_err());
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct FocalParams {
    alpha: Alpha,
    gamma: f64,
}

impl FocalParams {
    /// `alpha` in [0, 1] (or `None` for no weighting) and `gamma >= 0`, both finite.
    ///
    /// # Errors
    /// [`FocalError::InvalidParameter`] for gamma < 0, alpha outside [0, 1] or a non-finite value.
    pub fn new(alpha: Option<f64>, gamma: f64) -> Result<Self> {
        check_non_negative("gamma", gamma)?;
        let alpha = match alpha {
            None => Alpha::None,
            Some(a) => {
                check_unit("alpha", a)?;
                Alpha::Scalar(a)
            }
        };
        Ok(FocalParams { alpha, gamma })
    }

    /// One alpha per class, each in [0, 1].
    ///
    /// # Errors
    /// [`FocalError::InvalidParameter`] for a bad alpha or gamma.
    pub fn per_class(alpha: Vec<f64>, gamma: f64) -> Result<Self> {
        check_non_negative("gamma", gamma)?;
        for &a in &alpha {
            check_unit("alpha[class]", a)?;
        }
        Ok(FocalParams { alpha: Alpha::PerClass(alpha), gamma })
    }

    /// RetinaNet's defaults: alpha 0.25, gamma 2.
    pub fn retinanet() -> Self {
        FocalParams { alpha: Alpha::Scalar(0.25), gamma: 2.0 }
    }

    /// The alpha weighting.
    pub fn alpha(&self) -> &Alpha {
        &self.alpha
    }

    /// The focusing parameter.
    pub fn gamma(&self) -> f64 {
        self.gamma
    }

    /// Checks a per-class alpha against the number of classes.
    pub(crate) fn check_classes(&self, num_classes: usize) -> Result<()> {
        if let Alpha::PerClass(v) = &self.alpha
            && v.len() != num_classes
        {
            return Err(FocalError::ShapeMismatch {
                what: "per-class alpha",
                expected: vec![num_classes],
                got: vec![v.len()],
            });
        }
        Ok(())
    }
}

/// How elementwise losses become the returned value, and how the gradient is scaled.
///
/// The gradient is always the gradient of the returned (reduced) loss, times the upstream
/// gradient passed to `backward`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reduction {
    /// Elementwise losses are written out; the returned value is their sum, and the gradient is
    /// that of the sum.
    None,
    /// The sum of all elements.
    Sum,
    /// The mean over all elements (`A * C`), torchvision's `reduction="mean"`.
    Mean,
    /// The sum divided by a given normaliser, for example RetinaNet's max(1, foreground).
    Normalizer(f64),
}

impl Reduction {
    /// The factor the sum is multiplied by, for `numel` elements.
    ///
    /// # Errors
    /// [`FocalError::InvalidParameter`] for a normaliser that is not finite and positive.
    pub fn scale(&self, numel: usize) -> Result<f64> {
        match *self {
            Reduction::None | Reduction::Sum => Ok(1.0),
            Reduction::Mean => Ok(if numel == 0 { 0.0 } else { 1.0 / numel as f64 }),
            Reduction::Normalizer(n) => {
                if !(n.is_finite() && n > 0.0) {
                    return Err(FocalError::InvalidParameter {
                        name: "normalizer",
                        value: n,
                        expected: "a finite value > 0",
                    });
                }
                Ok(1.0 / n)
            }
        }
    }
}

/// Checks an upstream gradient.
pub(crate) fn check_upstream(g: f64) -> Result<()> {
    if !g.is_finite() {
        return Err(FocalError::InvalidParameter { name: "upstream gradient", value: g, expected: "a finite value" });
    }
    Ok(())
}

/// Varifocal loss parameters (Zhang et al. 2021; mmdetection's defaults are alpha 0.75,
/// gamma 2, IoU-weighted positives).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VarifocalParams {
    /// Weight of the negative part.
    pub(crate) alpha: f64,
    /// Focusing exponent on negatives.
    pub(crate) gamma: f64,
    /// Weigh positives by their target IoU.
    pub(crate) iou_weighted: bool,
}

impl VarifocalParams {
    /// Validated parameters.
    ///
    /// # Errors
    /// [`FocalError::InvalidParameter`] for alpha outside [0, 1] or gamma < 0.
    pub fn new(alpha: f64, gamma: f64, iou_weighted: bool) -> Result<Self> {
        check_unit("alpha", alpha)?;
        check_non_negative("gamma", gamma)?;
        Ok(VarifocalParams { alpha, gamma, iou_weighted })
    }

    /// mmdetection's defaults: alpha 0.75, gamma 2, IoU-weighted.
    pub fn mmdet() -> Self {
        VarifocalParams { alpha: 0.75, gamma: 2.0, iou_weighted: true }
    }

    /// alpha.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }
    /// gamma.
    pub fn gamma(&self) -> f64 {
        self.gamma
    }
    /// Whether positives are weighted by their target.
    pub fn iou_weighted(&self) -> bool {
        self.iou_weighted
    }
}

/// Validates the quality focal loss exponent beta (Li et al. 2020 use 2).
///
/// # Errors
/// [`FocalError::InvalidParameter`] for beta < 0 or non-finite.
pub fn check_beta(beta: f64) -> Result<()> {
    check_non_negative("beta", beta)
}
