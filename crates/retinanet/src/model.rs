//! The detector: backbone, the two subnets, anchors.

use std::sync::Arc;

use anchors::{AnchorGenerator, Anchors};
use fpn_net::{Module, Param, Tensor4};

use crate::backbone::Backbone;
use crate::config::ModelConfig;
use crate::error::{Result, RetinaError};
use crate::head::{Subnet, flatten_levels, unflatten_levels};
use crate::init::NormalRng;

/// RetinaNet (Lin et al. 2017) with explicit forward and backward.
///
/// Parameter names are torchvision's (`backbone.body.*`, `backbone.fpn.*`,
/// `head.classification_head.*`, `head.regression_head.*`), so a torchvision
/// `retinanet_resnet50_fpn` state_dict exported to safetensors loads with
/// [`fpn_net::weights::load`] (prefix `""`).
///
/// # Examples
/// ```
/// use retinanet::{ModelConfig, RetinaNet};
/// let mut model = RetinaNet::new(ModelConfig::tiny(3), 0).unwrap();
/// let images = fpn_net::Tensor4::zeros([1, 3, 128, 128]);
/// model.forward(&images).unwrap();
/// let a = model.anchors().unwrap().len();
/// assert_eq!(model.logits().len(), a * 3);
/// assert_eq!(model.regression().len(), a);
/// ```
#[derive(Debug)]
pub struct RetinaNet {
    config: ModelConfig,
    /// Backbone with FPN (`backbone.`).
    pub backbone: Backbone,
    /// Classification subnet (`head.classification_head.`).
    pub classification_head: Subnet,
    /// Box subnet (`head.regression_head.`).
    pub regression_head: Subnet,
    generator: AnchorGenerator,
    anchors: Option<Arc<Anchors>>,
    logits: Vec<f32>,
    regression: Vec<f32>,
    d_cls: Vec<Tensor4>,
    d_box: Vec<Tensor4>,
    d_levels: Vec<Tensor4>,
}

impl RetinaNet {
    /// A model for `config`, initialised from `seed` (heads as torchvision: N(0, 0.01)
    /// weights, the classifier bias at the prior).
    ///
    /// # Errors
    /// [`RetinaError::Config`] for an invalid configuration.
    pub fn new(config: ModelConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let mut rng = NormalRng::new(seed);
        let backbone = Backbone::new(&config.backbone, &mut rng)?;
        let channels = config.head_channels();
        let a = config.anchors_per_location();
        let prior_bias = config.prior_probability.map_or(0.0, |p| -((1.0 - p) / p).ln()) as f32;
        let classification_head = Subnet::new(
            channels,
            config.head_convs,
            config.head_group_norm,
            a * config.num_classes,
            "cls_logits",
            prior_bias,
            &mut rng,
        )?;
        let regression_head =
            Subnet::new(channels, config.head_convs, config.head_group_norm, a * 4, "bbox_reg", 0.0, &mut rng)?;
        let generator = AnchorGenerator::new(config.anchor_config())?;
        Ok(RetinaNet {
            config,
            backbone,
            classification_head,
            regression_head,
            generator,
            anchors: None,
            logits: Vec::new(),
            regression: Vec::new(),
            d_cls: Vec::new(),
            d_box: Vec::new(),
            d_levels: Vec::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.config.num_classes
    }

    /// Runs the network on a normalised, padded batch `[B, 3, H, W]` (H, W multiples of 32):
    /// fills [`RetinaNet::logits`], [`RetinaNet::regression`] and [`RetinaNet::anchors`].
    ///
    /// # Errors
    /// [`RetinaError::Shape`] for a batch that is not 3-channel or whose sides are not
    /// multiples of 32; layer errors otherwise.
    pub fn forward(&mut self, images: &Tensor4) -> Result<()> {
        let [n, c, h, w] = images.dims();
        if n == 0 || c != 3 || h == 0 || w == 0 || !h.is_multiple_of(32) || !w.is_multiple_of(32) {
            return Err(RetinaError::Shape {
                what: "image batch",
                expected: "[B, 3, H, W] with B > 0 and H, W positive multiples of 32".into(),
                got: format!("{:?}", images.dims()),
            });
        }
        let levels = self.backbone.forward(images)?;
        self.classification_head.forward(levels)?;
        self.regression_head.forward(levels)?;
        let grids: Vec<[u32; 2]> = levels.iter().map(|t| [t.h() as u32, t.w() as u32]).collect();
        self.anchors = Some(self.generator.generate([h as u32, w as u32], &grids)?);
        flatten_levels(self.classification_head.outputs(), self.config.num_classes, &mut self.logits);
        flatten_levels(self.regression_head.outputs(), 4, &mut self.regression);
        Ok(())
    }

    /// Class logits of the last forward, `[B, A, C]` row-major.
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// Box regression of the last forward, `[B, A]` codes `(dx, dy, dw, dh)`.
    pub fn regression(&self) -> &[[f32; 4]] {
        bytemuck::cast_slice(&self.regression)
    }

    /// The anchors of the last forward (shared by every image of the batch).
    ///
    /// # Errors
    /// [`RetinaError::Config`] before the first forward.
    pub fn anchors(&self) -> Result<Arc<Anchors>> {
        self.anchors.clone().ok_or_else(|| RetinaError::Config("anchors are known after a forward".into()))
    }

    /// Backward from the gradients of the logits `[B, A, C]` and of the regression `[B, A, 4]`:
    /// accumulates the gradient of every trainable parameter (heads and backbone).
    ///
    /// # Errors
    /// [`RetinaError::Shape`] when the gradients do not match the last forward's outputs.
    pub fn backward(&mut self, images: &Tensor4, d_logits: &[f32], d_regression: &[[f32; 4]]) -> Result<()> {
        if d_logits.len() != self.logits.len() || d_regression.len() * 4 != self.regression.len() {
            return Err(RetinaError::Shape {
                what: "head output gradients",
                expected: format!("{} logits and {} boxes", self.logits.len(), self.regression.len() / 4),
                got: format!("{} and {}", d_logits.len(), d_regression.len()),
            });
        }
        let levels = backbone_levels(&self.backbone);
        unflatten_levels(d_logits, self.classification_head.outputs(), self.config.num_classes, &mut self.d_cls);
        unflatten_levels(bytemuck::cast_slice(d_regression), self.regression_head.outputs(), 4, &mut self.d_box);
        self.d_levels.resize_with(levels.len(), Tensor4::default);
        self.classification_head.backward(levels, &self.d_cls, &mut self.d_levels, false)?;
        self.regression_head.backward(levels, &self.d_box, &mut self.d_levels, true)?;
        self.backbone.backward(images, &self.d_levels)
    }
}

/// The pyramid levels of the backbone's last forward.
fn backbone_levels(backbone: &Backbone) -> &[Tensor4] {
    match backbone {
        Backbone::ResNet(net) => net.fpn.outputs(),
        Backbone::Plain(net) => net.levels(),
    }
}

impl Module for RetinaNet {
    fn params<'a>(&'a self, prefix: &str, out: &mut Vec<(String, &'a Param)>) {
        self.backbone.params(&format!("{prefix}backbone."), out);
        self.classification_head.params(&format!("{prefix}head.classification_head."), out);
        self.regression_head.params(&format!("{prefix}head.regression_head."), out);
    }
    fn params_mut<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, &'a mut Param)>) {
        self.backbone.params_mut(&format!("{prefix}backbone."), out);
        self.classification_head.params_mut(&format!("{prefix}head.classification_head."), out);
        self.regression_head.params_mut(&format!("{prefix}head.regression_head."), out);
    }
}
