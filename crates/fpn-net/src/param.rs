//! Named parameters and buffers, and the [`Module`] trait that lists them in torchvision's
//! state_dict order.

/// A learnable weight or a fixed buffer (such as a batch norm's running mean), with its
/// gradient.
///
/// `grad` has the length of `value` while the parameter is trainable and is empty otherwise;
/// backward passes accumulate into it (`+=`), so call [`Param::zero_grad`] (or
/// [`Module::zero_grad`]) between steps.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// The values, row-major in `shape`.
    pub value: Vec<f32>,
    /// The accumulated gradient; empty when not trainable.
    pub grad: Vec<f32>,
    shape: Vec<usize>,
    trainable: bool,
}

impl Param {
    /// A zero tensor of `shape`, trainable or not.
    pub fn zeros(shape: &[usize], trainable: bool) -> Self {
        let numel = shape.iter().product();
        Param {
            value: vec![0.0; numel],
            grad: if trainable { vec![0.0; numel] } else { Vec::new() },
            shape: shape.to_vec(),
            trainable,
        }
    }

    /// A tensor of `shape` filled with `value`.
    pub fn filled(shape: &[usize], value: f32, trainable: bool) -> Self {
        let mut p = Param::zeros(shape, trainable);
        p.value.fill(value);
        p
    }

    /// The shape, as in the torchvision state_dict.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.value.len()
    }

    /// Whether backward computes a gradient for it and optimisers update it.
    pub fn trainable(&self) -> bool {
        self.trainable
    }

    /// Makes the parameter trainable (allocating a zero gradient) or frozen (dropping it).
    pub fn set_trainable(&mut self, trainable: bool) {
        self.trainable = trainable;
        if trainable {
            self.grad.resize(self.value.len(), 0.0);
        } else {
            self.grad = Vec::new();
        }
    }

    /// Sets the gradient to zero.
    pub fn zero_grad(&mut self) {
        self.grad.fill(0.0);
    }
}

/// Anything that owns named parameters: a layer, a block, a whole network.
///
/// Names are torchvision's state_dict keys relative to the module (`conv1.weight`,
/// `layer2.0.downsample.1.running_var`, `fpn.inner_blocks.0.0.bias`), listed in the order
/// torchvision's `state_dict()` lists them.
pub trait Module {
    /// Appends `(prefix + name, parameter)` for every parameter and buffer.
    fn params<'a>(&'a self, prefix: &str, out: &mut Vec<(String, &'a Param)>);

    /// Appends `(prefix + name, parameter)` for every parameter and buffer, writable.
    fn params_mut<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, &'a mut Param)>);

    /// Every parameter and buffer with its full name.
    fn named_params(&self) -> Vec<(String, &Param)> {
        let mut out = Vec::new();
        self.params("", &mut out);
        out
    }

    /// Every parameter and buffer with its full name, writable.
    fn named_params_mut(&mut self) -> Vec<(String, &mut Param)> {
        let mut out = Vec::new();
        self.params_mut("", &mut out);
        out
    }

    /// Sets every gradient to zero.
    fn zero_grad(&mut self) {
        for (_, p) in self.named_params_mut() {
            p.zero_grad();
        }
    }

    /// Number of trainable scalars.
    fn num_trainable(&self) -> usize {
        self.named_params().iter().filter(|(_, p)| p.trainable()).map(|(_, p)| p.numel()).sum()
    }
}

/// `prefix + name`, the way torchvision joins module paths.
pub(crate) fn join(prefix: &str, name: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + name.len());
    s.push_str(prefix);
    s.push_str(name);
    s
}
