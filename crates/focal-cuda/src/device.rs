//! The GPU path: cudarc buffers on a caller's stream, a reusable workspace, and a host
//! convenience API.

use crate::error::{CudaError, Result};
use crate::plan::{
    self, Buffers, Dims, Dtype, KernelArgs, MAX_GRID, Normalization, Objective, Request, Step, TargetKind, Variant,
    Weights, WorkspacePtrs,
};
use crate::ptx;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, CudaView, CudaViewMut, DevicePtr, DevicePtrMut, DeviceRepr,
    LaunchConfig, PushKernelArg, ValidAsZeroBits,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Whether the CUDA driver library can be loaded and reports at least one device.
///
/// Never panics: the driver library is probed before any cudarc call (cudarc panics when it
/// is missing).
pub fn is_available() -> bool {
    driver_present() && CudaContext::device_count().map(|n| n > 0).unwrap_or(false)
}

fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the driver library by its usual names; no driver call.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// Element types the kernels take on the device: `f32`, `half::f16`, `half::bf16`.
pub trait DeviceElement: focal_core::Element + DeviceRepr + ValidAsZeroBits {
    /// The kernel-name suffix of this type.
    const DTYPE: Dtype;
}
impl DeviceElement for f32 {
    const DTYPE: Dtype = Dtype::F32;
}
impl DeviceElement for half::f16 {
    const DTYPE: Dtype = Dtype::F16;
}
impl DeviceElement for half::bf16 {
    const DTYPE: Dtype = Dtype::Bf16;
}

/// What to compute: the loss, the shape `[B, A, C]`, the normalisation and the upstream
/// gradient (the gradient of the caller's objective with respect to this loss, usually 1).
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// The loss and its parameters.
    pub objective: Objective,
    /// Logits shape.
    pub dims: Dims,
    /// How the sum is normalised (the gradient is scaled alike).
    pub normalization: Normalization,
    /// Upstream gradient multiplied into the written gradient.
    pub upstream: f64,
    /// Which kernel variant runs where several compete (default: v6, the fastest measured; v1 is
    /// the reference).
    pub variant: Variant,
    /// At most this many blocks for the loss kernel (`None`: the variant's own grid, a function
    /// of the shape). Every loss kernel walks its work with a grid stride, so any limit computes
    /// the same gradient bits; the loss is summed per block, so its last bits follow the grid,
    /// and they stay the same from run to run and card to card for a given shape and limit.
    /// For tuning: `cargo xtask bench gpu` times v6 under a few limits.
    pub max_blocks: Option<u32>,
}

impl Call {
    /// A call with upstream gradient 1 and the default kernel variant.
    pub fn new(objective: Objective, dims: Dims, normalization: Normalization) -> Self {
        Call { objective, dims, normalization, upstream: 1.0, variant: Variant::default(), max_blocks: None }
    }
}

/// Targets on the device.
#[derive(Debug)]
pub enum DeviceTarget<'a> {
    /// One i32 label per anchor (`[B * A]`): class, -1 background, -2 ignore.
    Sparse(CudaView<'a, i32>),
    /// f32 targets of the logits' shape, with optional per-anchor or per-element weights.
    Dense {
        /// Targets in [0, 1].
        targets: CudaView<'a, f32>,
        /// Weights and their kind.
        weights: Option<(Weights, CudaView<'a, f32>)>,
    },
}

/// Targets on the host, for [`FocalCuda::compute_host`].
#[derive(Clone, Copy, Debug)]
pub enum HostTarget<'a> {
    /// One label per anchor.
    Sparse(&'a [i32]),
    /// Targets and optional weights.
    Dense {
        /// Targets in [0, 1].
        targets: &'a [f32],
        /// Weights and their kind.
        weights: Option<(Weights, &'a [f32])>,
    },
}

/// Device memory a call needs besides its inputs and outputs: per-block partials, counts,
/// normalisers and the reduced loss. Reuse one per stream: it only allocates when a call needs
/// more images or classes than it has room for.
#[derive(Debug)]
pub struct Workspace {
    stream: Arc<CudaStream>,
    partials: CudaSlice<f64>,
    counts: CudaSlice<u32>,
    scale: CudaSlice<f32>,
    loss: CudaSlice<f64>,
    loss_f32: CudaSlice<f32>,
    first_bad_row: CudaSlice<u32>,
    alpha: CudaSlice<f32>,
    last_classes: usize,
}

impl Workspace {
    /// A workspace on `stream` with room for `dims`.
    ///
    /// # Errors
    /// A driver error from the allocation.
    pub fn new(stream: &Arc<CudaStream>, dims: Dims) -> Result<Self> {
        let alloc_err = CudaError::driver("allocating the focal-cuda workspace");
        let mk = || -> std::result::Result<Workspace, cudarc::driver::DriverError> {
            Ok(Workspace {
                stream: stream.clone(),
                partials: stream.alloc_zeros(MAX_GRID as usize)?,
                counts: stream.alloc_zeros(dims.images.max(1))?,
                scale: stream.alloc_zeros(dims.images.max(1))?,
                loss: stream.alloc_zeros(1)?,
                loss_f32: stream.alloc_zeros(1)?,
                first_bad_row: stream.alloc_zeros(1)?,
                alpha: stream.alloc_zeros(dims.classes.max(1))?,
                last_classes: dims.classes,
            })
        };
        mk().map_err(alloc_err)
    }

    fn ensure(&mut self, dims: Dims) -> Result<()> {
        let err = || CudaError::driver("growing the focal-cuda workspace");
        if self.counts.len() < dims.images {
            self.counts = self.stream.alloc_zeros(dims.images).map_err(err())?;
            self.scale = self.stream.alloc_zeros(dims.images).map_err(err())?;
        }
        if self.alpha.len() < dims.classes {
            self.alpha = self.stream.alloc_zeros(dims.classes).map_err(err())?;
        }
        self.last_classes = dims.classes;
        Ok(())
    }

    /// The reduced loss of the last call, as a one-element f32 device buffer (for a trainer
    /// that keeps the loss on the GPU). Valid once the stream reaches the end of the call.
    pub fn loss_device(&self) -> CudaView<'_, f32> {
        self.loss_f32.as_view()
    }

    /// The reduced loss of the last call, in f64. Synchronises the stream.
    ///
    /// # Errors
    /// A driver error from the copy.
    pub fn read_loss(&self) -> Result<f64> {
        let v = self.stream.clone_dtoh(&self.loss).map_err(CudaError::driver("reading the loss"))?;
        Ok(v[0])
    }

    /// Fails when the last call met a label outside `0..C`, -1, -2 (those rows got NaN loss
    /// and gradient). Synchronises the stream.
    ///
    /// # Errors
    /// [`CudaError::BadLabel`] naming the lowest bad row, or a driver error.
    pub fn check_labels(&self) -> Result<()> {
        let v = self.stream.clone_dtoh(&self.first_bad_row).map_err(CudaError::driver("reading the label check"))?;
        match v[0] {
            u32::MAX => Ok(()),
            row => Err(CudaError::BadLabel { row: row as usize, classes: self.last_classes }),
        }
    }
}

/// The result of [`FocalCuda::compute_host`].
#[derive(Clone, Debug, PartialEq)]
pub struct HostOutput<G> {
    /// The reduced loss.
    pub loss: f64,
    /// `upstream * d loss / d logits`, row-major.
    pub grad: Vec<G>,
}

/// The kernels, loaded on one CUDA context, launched on a caller's stream.
///
/// # Examples
/// ```no_run
/// use focal_cuda::{Call, Dims, FocalCuda, HostTarget, Normalization, Objective};
/// use focal_core::FocalParams;
///
/// let focal = FocalCuda::on_device(0)?;
/// let dims = Dims::new(1, 2, 3);
/// let logits = [0.5f32, -1.0, 2.0, 0.0, 1.0, -3.0];
/// let labels = [2, -1]; // anchor 0: class 2, anchor 1: background
/// let call = Call::new(
///     Objective::SigmoidFocal(FocalParams::retinanet()),
///     dims,
///     Normalization::ForegroundPerImage,
/// );
/// let out = focal.compute_host::<f32, f32>(&call, &logits, HostTarget::Sparse(&labels))?;
/// println!("loss {} grad {:?}", out.loss, out.grad);
/// # Ok::<(), focal_cuda::CudaError>(())
/// ```
pub struct FocalCuda {
    stream: Arc<CudaStream>,
    functions: Mutex<HashMap<String, CudaFunction>>,
}

impl std::fmt::Debug for FocalCuda {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FocalCuda").finish_non_exhaustive()
    }
}

impl FocalCuda {
    /// The kernels on the caller's stream (for example a candle `CudaDevice`'s stream). The PTX
    /// modules load on first use.
    ///
    /// # Errors
    /// [`CudaError::NoDriver`] when libcuda cannot be loaded.
    pub fn new(stream: Arc<CudaStream>) -> Result<Self> {
        if !driver_present() {
            return Err(CudaError::NoDriver);
        }
        Ok(FocalCuda { stream, functions: Mutex::new(HashMap::new()) })
    }

    /// A new context on device `ordinal` and a new stream on it.
    ///
    /// # Errors
    /// [`CudaError::NoDriver`], [`CudaError::NoDevice`] or a driver error.
    pub fn on_device(ordinal: usize) -> Result<Self> {
        if !driver_present() {
            return Err(CudaError::NoDriver);
        }
        let count = CudaContext::device_count().map_err(CudaError::driver("counting devices"))?;
        if ordinal >= count.max(0) as usize {
            return Err(CudaError::NoDevice { ordinal, count: count.max(0) as usize });
        }
        let ctx = CudaContext::new(ordinal).map_err(CudaError::driver("creating a context"))?;
        let stream = ctx.new_stream().map_err(CudaError::driver("creating a stream"))?;
        FocalCuda::new(stream)
    }

    /// The stream every call is queued on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Loads every module now (otherwise each loads on first use), so a driver that cannot
    /// load the PTX fails here.
    ///
    /// # Errors
    /// [`CudaError::ModuleLoad`] naming the module.
    pub fn load_all(&self) -> Result<()> {
        for module in ptx::MODULES {
            self.function(module.kernels[0])?;
        }
        Ok(())
    }

    fn function(&self, kernel: &str) -> Result<CudaFunction> {
        let mut functions = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = functions.get(kernel) {
            return Ok(f.clone());
        }
        let module = ptx::MODULES
            .iter()
            .find(|m| m.kernels.contains(&kernel))
            .ok_or_else(|| CudaError::MissingKernel { kernel: kernel.to_string() })?;
        let loaded = self
            .stream
            .context()
            .load_module(cudarc::nvrtc::Ptx::from_src(module.ptx))
            .map_err(|source| CudaError::ModuleLoad { module: module.name, source })?;
        for &name in module.kernels {
            let f =
                loaded.load_function(name).map_err(|source| CudaError::ModuleLoad { module: module.name, source })?;
            functions.insert(name.to_string(), f);
        }
        functions.get(kernel).cloned().ok_or_else(|| CudaError::MissingKernel { kernel: kernel.to_string() })
    }

    fn execute(&self, steps: &[Step]) -> Result<()> {
        for step in steps {
            match step {
                Step::Fill { ptr, len, value } => {
                    // SAFETY: the plan fills workspace buffers of at least `len` u32, which
                    // the caller's `&mut Workspace` keeps alive and unaliased.
                    unsafe { cudarc::driver::sys::cuMemsetD32Async(*ptr, *value, *len, self.stream.cu_stream()) }
                        .result()
                        .map_err(CudaError::driver("filling the workspace"))?;
                }
                Step::Upload { ptr, values } => {
                    // SAFETY: `ptr` is the workspace's alpha buffer, grown to at least
                    // `values.len()` f32 by `Workspace::ensure`.
                    unsafe {
                        cudarc::driver::sys::cuMemcpyHtoDAsync_v2(
                            *ptr,
                            values.as_ptr().cast(),
                            std::mem::size_of_val(values.as_slice()),
                            self.stream.cu_stream(),
                        )
                    }
                    .result()
                    .map_err(CudaError::driver("uploading per-class alpha"))?;
                    // A pageable async copy is staged before it returns, so `values` may go.
                }
                Step::Launch { kernel, grid, args } => {
                    let f = self.function(kernel)?;
                    let cfg = LaunchConfig {
                        grid_dim: (grid.0, grid.1, 1),
                        block_dim: (plan::BLOCK, 1, 1),
                        shared_mem_bytes: 0,
                    };
                    let mut builder = self.stream.launch_builder(&f);
                    match args {
                        KernelArgs::Loss(a) => builder.arg(a),
                        KernelArgs::Reduce(a) => builder.arg(a),
                    };
                    // SAFETY: the argument block matches the kernel's C struct (checked by the
                    // emulation tests); every address in it is a live buffer of the length the
                    // plan validated, held by the caller for the duration of the call.
                    unsafe { builder.launch(cfg) }.map_err(CudaError::driver(format!("launching {kernel}")))?;
                }
            }
        }
        Ok(())
    }

    fn check_len(what: &'static str, dims: Dims, expected: usize, got: usize) -> Result<()> {
        if expected != got {
            return Err(CudaError::Length { what, shape: dims.shape(), expected, got });
        }
        Ok(())
    }

    /// Fused forward and backward on device buffers, queued on [`FocalCuda::stream`] with no
    /// synchronisation and no allocation (unless the workspace must grow). Writes
    /// `upstream * d loss / d logits` into `grad` (input type or f32) when given, the
    /// elementwise weighted losses into `elementwise` when given, and the reduced loss into the
    /// workspace ([`Workspace::loss_device`], [`Workspace::read_loss`]).
    ///
    /// Labels are not range-checked on the host here (that would need a sync): a bad label
    /// gives NaN in its row, and [`Workspace::check_labels`] reports it.
    ///
    /// # Errors
    /// Shapes, parameters or combinations the kernels do not take, before anything is queued;
    /// driver errors.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_backward<T: DeviceElement, G: DeviceElement>(
        &self,
        call: &Call,
        logits: &CudaView<'_, T>,
        target: DeviceTarget<'_>,
        grad: Option<&mut CudaViewMut<'_, G>>,
        elementwise: Option<&mut CudaViewMut<'_, f32>>,
        workspace: &mut Workspace,
    ) -> Result<()> {
        let s = &self.stream;
        let dims = call.dims;
        let numel = dims.numel();
        Self::check_len("logits", dims, numel, logits.len())?;
        let (x, _x) = logits.device_ptr(s);
        let mut bufs = Buffers { logits: x, ..Buffers::default() };
        let grad_guard = match grad {
            Some(g) => {
                Self::check_len("grad", dims, numel, g.len())?;
                let (p, guard) = g.device_ptr_mut(s);
                bufs.grad = p;
                Some(guard)
            }
            None => None,
        };
        let elementwise_guard = match elementwise {
            Some(e) => {
                Self::check_len("elementwise", dims, numel, e.len())?;
                let (p, guard) = e.device_ptr_mut(s);
                bufs.elementwise = p;
                Some(guard)
            }
            None => None,
        };
        let r = self.run(call, dims, T::DTYPE, G::DTYPE, target, bufs, workspace);
        drop((grad_guard, elementwise_guard));
        r
    }

    /// [`FocalCuda::forward_backward`] on focal-core's tensor trait: the shape `[A, C]` or
    /// `[B, A, C]` comes from the logits, and the gradient must have the same shape.
    ///
    /// # Errors
    /// A gradient of another shape or a logits rank other than 2 or 3, and as
    /// [`FocalCuda::forward_backward`].
    #[allow(clippy::too_many_arguments)]
    pub fn forward_backward_tensor<T: DeviceElement, G: DeviceElement>(
        &self,
        objective: &Objective,
        normalization: Normalization,
        upstream: f64,
        logits: &crate::DeviceTensor<'_, T>,
        target: DeviceTarget<'_>,
        grad: &mut crate::DeviceTensorMut<'_, G>,
        workspace: &mut Workspace,
    ) -> Result<()> {
        use focal_core::{Tensor, TensorMut};
        if grad.shape() != logits.shape() {
            return Err(focal_core::FocalError::ShapeMismatch {
                what: "gradient",
                expected: logits.shape().dims().to_vec(),
                got: grad.shape().dims().to_vec(),
            }
            .into());
        }
        let dims = Dims::from_shape(logits.shape())?;
        let call = Call { upstream, ..Call::new(objective.clone(), dims, normalization) };
        self.forward_backward(&call, logits.storage(), target, Some(grad.storage_mut()), None, workspace)
    }

    /// As [`FocalCuda::forward_backward`], writing the gradient over the logits (saves the
    /// gradient buffer: each element is read before it is overwritten by the same thread).
    ///
    /// # Errors
    /// As [`FocalCuda::forward_backward`].
    pub fn forward_backward_in_place<T: DeviceElement>(
        &self,
        call: &Call,
        logits: &mut CudaViewMut<'_, T>,
        target: DeviceTarget<'_>,
        workspace: &mut Workspace,
    ) -> Result<()> {
        let s = &self.stream;
        let dims = call.dims;
        Self::check_len("logits", dims, dims.numel(), logits.len())?;
        let (x, guard) = logits.device_ptr_mut(s);
        let bufs = Buffers { logits: x, grad: x, ..Buffers::default() };
        let r = self.run(call, dims, T::DTYPE, T::DTYPE, target, bufs, workspace);
        drop(guard);
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        call: &Call,
        dims: Dims,
        input: Dtype,
        grad: Dtype,
        target: DeviceTarget<'_>,
        mut bufs: Buffers,
        workspace: &mut Workspace,
    ) -> Result<()> {
        let s = &self.stream;
        let numel = dims.numel();
        let (kind, _guards) = match &target {
            DeviceTarget::Sparse(labels) => {
                Self::check_len("labels", dims, dims.rows(), labels.len())?;
                let (p, g) = labels.device_ptr(s);
                bufs.labels = p;
                (TargetKind::Sparse, (Some(g), None, None))
            }
            DeviceTarget::Dense { targets, weights } => {
                Self::check_len("targets", dims, numel, targets.len())?;
                let (p, g) = targets.device_ptr(s);
                bufs.targets = p;
                let (kind, wg) = match weights {
                    None => (Weights::None, None),
                    Some((kind, w)) => {
                        let kind = *kind;
                        let expected = if kind == Weights::PerAnchor { dims.rows() } else { numel };
                        Self::check_len("weights", dims, expected, w.len())?;
                        let (p, g) = w.device_ptr(s);
                        bufs.weights = p;
                        (kind, Some(g))
                    }
                };
                (TargetKind::Dense(kind), (None, Some(g), wg))
            }
        };
        workspace.ensure(dims)?;
        let ws = WorkspacePtrs {
            partials: workspace.partials.device_ptr_mut(s).0,
            counts: workspace.counts.device_ptr_mut(s).0,
            scale: workspace.scale.device_ptr_mut(s).0,
            loss: workspace.loss.device_ptr_mut(s).0,
            loss_f32: workspace.loss_f32.device_ptr_mut(s).0,
            first_bad_row: workspace.first_bad_row.device_ptr_mut(s).0,
            alpha: workspace.alpha.device_ptr_mut(s).0,
        };
        let req = Request {
            objective: &call.objective,
            dims,
            input,
            grad,
            target: kind,
            normalization: call.normalization,
            upstream: call.upstream,
            variant: call.variant,
            max_blocks: call.max_blocks,
        };
        let steps = plan::plan(&req, &bufs, &ws)?;
        self.execute(&steps)
    }

    /// Host convenience: validates (labels included), uploads, runs the fused kernel, and
    /// returns the loss and the gradient. Synchronises; for a training loop keep the buffers on
    /// the device and call [`FocalCuda::forward_backward`].
    ///
    /// # Errors
    /// Bad shapes, labels or parameters (before any GPU work), driver errors.
    pub fn compute_host<T: DeviceElement, G: DeviceElement>(
        &self,
        call: &Call,
        logits: &[T],
        target: HostTarget<'_>,
    ) -> Result<HostOutput<G>> {
        let s = &self.stream;
        let dims = call.dims;
        Self::check_len("logits", dims, dims.numel(), logits.len())?;
        let up = |what: &'static str| CudaError::driver(format!("uploading {what}"));
        let x = s.clone_htod(logits).map_err(up("logits"))?;
        let mut grad = s.alloc_zeros::<G>(dims.numel().max(1)).map_err(up("gradient"))?;
        let mut ws = Workspace::new(s, dims)?;
        let (labels, targets, weights);
        let device_target = match target {
            HostTarget::Sparse(l) => {
                Self::check_len("labels", dims, dims.rows(), l.len())?;
                focal_core::labels::validate_labels(l, dims.classes)?;
                labels = s.clone_htod(l).map_err(up("labels"))?;
                DeviceTarget::Sparse(labels.as_view())
            }
            HostTarget::Dense { targets: t, weights: w } => {
                Self::check_len("targets", dims, dims.numel(), t.len())?;
                targets = s.clone_htod(t).map_err(up("targets"))?;
                weights = match w {
                    Some((kind, w)) => Some((kind, s.clone_htod(w).map_err(up("weights"))?)),
                    None => None,
                };
                DeviceTarget::Dense {
                    targets: targets.as_view(),
                    weights: weights.as_ref().map(|(k, w): &(Weights, CudaSlice<f32>)| (*k, w.as_view())),
                }
            }
        };
        let mut grad_view = grad.slice_mut(0..dims.numel());
        self.forward_backward::<T, G>(call, &x.as_view(), device_target, Some(&mut grad_view), None, &mut ws)?;
        let loss = ws.read_loss()?;
        let grad = s.clone_dtoh(&grad.slice(0..dims.numel())).map_err(CudaError::driver("downloading the gradient"))?;
        Ok(HostOutput { loss, grad })
    }
}
