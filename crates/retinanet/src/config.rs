//! Model configuration: backbone, heads, anchors and the image transform.

use serde::{Deserialize, Serialize};

use crate::error::{Result, config_error};

/// Which feature extractor feeds the heads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BackboneConfig {
    /// torchvision's ResNet + FPN (`backbone.body.*`, `backbone.fpn.*`), 256 channels, so a
    /// torchvision `retinanet_resnet50_fpn` (v1, P6 from P5) or `_v2` (P6 from C5) state_dict
    /// loads 1:1.
    ResNet {
        /// 18, 34, 50 or 101.
        layers: usize,
        /// P6/P7 from C5 (torchvision v2 and the paper) rather than from P5 (v1).
        p6p7_from_c5: bool,
        /// How many of `layer4, layer3, layer2, layer1, conv1` train (torchvision: 3).
        trainable_layers: usize,
    },
    /// A small plain CNN for training from scratch on a CPU: a stride-4 stem of two 3x3
    /// convolutions, then three stages (C3, C4, C5) of one stride-2 3x3 convolution and
    /// `convs_per_stage - 1` stride-1 ones, every convolution followed by ReLU, then an FPN
    /// of `fpn_channels` with P6/P7 from P5.
    Plain {
        /// Channels of the stem, C3, C4 and C5.
        widths: [usize; 4],
        /// Convolutions per stage (at least 1).
        convs_per_stage: usize,
        /// Channels of every pyramid level (and of the heads).
        fpn_channels: usize,
    },
}

/// Everything that fixes the shapes of a RetinaNet's parameters and outputs.
///
/// Stored as JSON in every checkpoint, so a checkpoint for another configuration is refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// The feature extractor.
    pub backbone: BackboneConfig,
    /// Number of object classes (no background class).
    pub num_classes: usize,
    /// Convolutions (3x3 + ReLU) in each head before its output layer (torchvision: 4).
    pub head_convs: usize,
    /// GroupNorm (32 groups) after each head convolution, as torchvision's v2 heads.
    pub head_group_norm: bool,
    /// The classifier's prior probability: its bias starts at `-ln((1 - p) / p)`. `None`
    /// starts the bias at 0 (the paper's ablation without prior initialisation).
    pub prior_probability: Option<f64>,
    /// Base anchor size of each pyramid level (P3 first; torchvision: 32..512).
    pub anchor_sizes: Vec<f64>,
    /// Octave scales per level: sizes `s * 2^(k / n)`, `k < n`, truncated to integers as
    /// torchvision does (torchvision: 3).
    pub anchor_scales: usize,
    /// Aspect ratios (height / width) per location (torchvision: 0.5, 1, 2).
    pub aspect_ratios: Vec<f64>,
    /// Images are resized so the shorter side is `min_size`...
    pub min_size: usize,
    /// ...unless the longer side would exceed `max_size`.
    pub max_size: usize,
}

impl ModelConfig {
    /// torchvision's `retinanet_resnet50_fpn` with `num_classes` classes (COCO: 91).
    pub fn retinanet_resnet50_fpn(num_classes: usize) -> Self {
        ModelConfig {
            backbone: BackboneConfig::ResNet { layers: 50, p6p7_from_c5: false, trainable_layers: 3 },
            num_classes,
            head_convs: 4,
            head_group_norm: false,
            prior_probability: Some(0.01),
            anchor_sizes: vec![32.0, 64.0, 128.0, 256.0, 512.0],
            anchor_scales: 3,
            aspect_ratios: vec![0.5, 1.0, 2.0],
            min_size: 800,
            max_size: 1333,
        }
    }

    /// torchvision's `retinanet_resnet50_fpn_v2`: P6/P7 from C5, GroupNorm in the heads.
    pub fn retinanet_resnet50_fpn_v2(num_classes: usize) -> Self {
        ModelConfig {
            backbone: BackboneConfig::ResNet { layers: 50, p6p7_from_c5: true, trainable_layers: 3 },
            head_group_norm: true,
            ..Self::retinanet_resnet50_fpn(num_classes)
        }
    }

    /// A small configuration that trains from scratch on two CPU cores in minutes: the
    /// [`BackboneConfig::Plain`] backbone (16/32/48/64 channels, 32 in the pyramid and the
    /// heads), two head convolutions with GroupNorm (as the v2 heads: without it the tiny
    /// model trained from scratch needs about twice the iterations), anchors 16..256 at two
    /// scales for 128-pixel images.
    pub fn tiny(num_classes: usize) -> Self {
        ModelConfig {
            backbone: BackboneConfig::Plain { widths: [16, 32, 48, 64], convs_per_stage: 1, fpn_channels: 32 },
            num_classes,
            head_convs: 2,
            head_group_norm: true,
            prior_probability: Some(0.01),
            anchor_sizes: vec![16.0, 32.0, 64.0, 128.0, 256.0],
            anchor_scales: 2,
            aspect_ratios: vec![0.5, 1.0, 2.0],
            min_size: 128,
            max_size: 128,
        }
    }

    /// Channels of the pyramid levels and the heads.
    pub fn head_channels(&self) -> usize {
        match &self.backbone {
            BackboneConfig::ResNet { .. } => fpn_net::ResNetFpn::OUT_CHANNELS,
            BackboneConfig::Plain { fpn_channels, .. } => *fpn_channels,
        }
    }

    /// Anchors per location.
    pub fn anchors_per_location(&self) -> usize {
        self.anchor_scales * self.aspect_ratios.len()
    }

    /// The anchor generator's configuration (torchvision's conventions).
    pub fn anchor_config(&self) -> anchors::AnchorConfig {
        let n = self.anchor_scales as f64;
        let sizes = self
            .anchor_sizes
            .iter()
            .map(|&s| (0..self.anchor_scales).map(|k| (s * 2f64.powf(k as f64 / n)).trunc()).collect())
            .collect();
        anchors::AnchorConfig {
            sizes,
            aspect_ratios: vec![self.aspect_ratios.clone(); self.anchor_sizes.len()],
            ..anchors::AnchorConfig::torchvision_retinanet()
        }
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`crate::RetinaError::Config`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        if self.num_classes == 0 {
            return Err(config_error("num_classes must be at least 1"));
        }
        if self.anchor_sizes.len() != 5 {
            return Err(config_error(format!(
                "anchor_sizes has {} levels: the FPN gives 5 (P3-P7)",
                self.anchor_sizes.len()
            )));
        }
        if self.anchor_sizes.iter().any(|s| !(s.is_finite() && *s >= 1.0)) || self.anchor_scales == 0 {
            return Err(config_error("anchor sizes must be finite and >= 1, with at least one scale"));
        }
        if self.aspect_ratios.is_empty() || self.aspect_ratios.iter().any(|r| !(r.is_finite() && *r > 0.0)) {
            return Err(config_error("aspect_ratios must be non-empty, finite and > 0"));
        }
        if let Some(p) = self.prior_probability
            && !(p > 0.0 && p < 1.0)
        {
            return Err(config_error(format!("prior_probability {p}: expected a value in (0, 1)")));
        }
        if self.min_size < 32 || self.max_size < self.min_size {
            return Err(config_error(format!(
                "min_size {} / max_size {}: expected 32 <= min_size <= max_size",
                self.min_size, self.max_size
            )));
        }
        if self.head_group_norm && !self.head_channels().is_multiple_of(32) {
            return Err(config_error("head GroupNorm needs a multiple of 32 head channels"));
        }
        match &self.backbone {
            BackboneConfig::ResNet { layers, trainable_layers, .. } => {
                fpn_net::Depth::from_layers(*layers)?;
                if *trainable_layers > 5 {
                    return Err(config_error(format!("trainable_layers {trainable_layers}: expected 0..=5")));
                }
            }
            BackboneConfig::Plain { widths, convs_per_stage, fpn_channels } => {
                if widths.contains(&0) || *convs_per_stage == 0 || *fpn_channels == 0 {
                    return Err(config_error("plain backbone widths, convs_per_stage and fpn_channels must be > 0"));
                }
            }
        }
        Ok(())
    }
}
