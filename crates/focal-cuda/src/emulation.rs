//! Runs the kernels on the CPU: `kernels/*.cu` compiled as host C++ against
//! `kernels/emulation/cuda_emulation.h` (blocks of real threads, barriers, shared memory and warp
//! shuffles emulated), executing the same launch plans as the GPU path.
//!
//! The library is built with g++ and the CUDA headers of the pinned wheels that
//! `cargo xtask build-kernels` installs under `target/cuda-toolchain` (or `$FOCAL_CUDA_INCLUDE`).
//! Without them the emulation tests print `skipped: no CUDA headers` and pass, unless
//! `FOCAL_REQUIRE_EMULATION=1` (set by `.ci/run`) makes that a failure.

use crate::args::{LossArgs, ReduceArgs};
use crate::plan::{
    self, Buffers, Dims, Dtype, KernelArgs, MAX_GRID, Normalization, Objective, Request, Step, WorkspacePtrs,
};
use crate::verify::CaseTarget;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

type LaunchFn = unsafe extern "C" fn(*const i8, u32, u32, u32, *const std::ffi::c_void) -> i32;
type SizeFn = unsafe extern "C" fn() -> std::ffi::c_ulong;

/// The loaded emulation library.
pub(crate) struct Emulator {
    lib: libloading::Library,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cuda_include() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("FOCAL_CUDA_INCLUDE") {
        return Some(PathBuf::from(dir));
    }
    let dir = repo_root().join("target/cuda-toolchain/nvidia/cu13/include");
    dir.join("cuda_fp16.h").exists().then_some(dir)
}

fn fnv1a64(bytes: &[u8], mut h: u64) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Builds (once per source state) and loads the emulation library.
fn build() -> Result<Emulator, String> {
    let include = cuda_include().ok_or_else(|| {
        "no CUDA headers: run `cargo xtask build-kernels --check` (installs the pinned wheels) or set FOCAL_CUDA_INCLUDE".to_string()
    })?;
    let kernels = repo_root().join("kernels");
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut sources = Vec::new();
    for dir in [kernels.clone(), kernels.join("emulation")] {
        for entry in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_file() {
                sources.push(path);
            }
        }
    }
    sources.sort();
    for s in &sources {
        hash = fnv1a64(&std::fs::read(s).map_err(|e| e.to_string())?, hash);
    }
    let out_dir = repo_root().join("target/focal-emulation");
    std::fs::create_dir_all(&out_dir).map_err(|e| e.to_string())?;
    let lib = out_dir.join(format!("libfocal_emulation-{hash:016x}.so"));
    if !lib.exists() {
        // Build under a private name, then rename: test binaries may build at the same time.
        let tmp = out_dir.join(format!("tmp-{}-{hash:016x}.so", std::process::id()));
        let cxx = std::env::var("CXX").unwrap_or_else(|_| "g++".into());
        let out = Command::new(&cxx)
            .args(["-std=c++20", "-O2", "-shared", "-fPIC", "-pthread", "-DFOCAL_EMULATION"])
            .arg("-I")
            .arg(&kernels)
            .arg("-I")
            .arg(&include)
            .arg(kernels.join("emulation/emulation_main.cpp"))
            .arg("-o")
            .arg(&tmp)
            .output()
            .map_err(|e| format!("running {cxx}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{cxx} failed on kernels/emulation/emulation_main.cpp:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        std::fs::rename(&tmp, &lib).map_err(|e| e.to_string())?;
    }
    // SAFETY: the library is ours, built just above from kernels/emulation; loading it runs only
    // the static constructors that register the kernels.
    let lib = unsafe { libloading::Library::new(&lib) }.map_err(|e| e.to_string())?;
    Ok(Emulator { lib })
}

/// The emulator, or `None` after printing why it is skipped. Panics (fails the test) when
/// `FOCAL_REQUIRE_EMULATION=1` and it cannot be built, or when the build itself fails.
pub(crate) fn emulator() -> Option<&'static Emulator> {
    static EMU: OnceLock<Result<Emulator, String>> = OnceLock::new();
    match EMU.get_or_init(build) {
        Ok(e) => Some(e),
        Err(msg) if msg.starts_with("no CUDA headers") => {
            assert!(
                std::env::var("FOCAL_REQUIRE_EMULATION").as_deref() != Ok("1"),
                "FOCAL_REQUIRE_EMULATION=1 but {msg}"
            );
            println!("skipped: {msg}");
            None
        }
        Err(msg) => panic!("emulation build failed: {msg}"),
    }
}

impl Emulator {
    fn size(&self, symbol: &[u8]) -> usize {
        // SAFETY: the symbol is a `unsigned long f(void)` defined in emulation_main.cpp.
        unsafe { self.lib.get::<SizeFn>(symbol).map(|f| f() as usize).unwrap_or(0) }
    }

    /// Runs one kernel on the host.
    fn launch(&self, kernel: &str, grid: (u32, u32), args: &KernelArgs) {
        let name = std::ffi::CString::new(kernel).expect("kernel names have no NUL");
        let ptr = match args {
            KernelArgs::Loss(a) => a as *const LossArgs as *const std::ffi::c_void,
            KernelArgs::Reduce(a) => a as *const ReduceArgs as *const std::ffi::c_void,
        };
        // SAFETY: `focal_emu_launch` has this signature; the argument block outlives the call
        // and every address in it points into host buffers the caller keeps alive.
        let rc = unsafe {
            let f = self.lib.get::<LaunchFn>(b"focal_emu_launch").expect("launch symbol");
            f(name.as_ptr(), grid.0, grid.1, plan::BLOCK, ptr)
        };
        assert_eq!(rc, 0, "the emulation library has no kernel `{kernel}`");
    }

    /// Executes a plan's steps in order.
    pub(crate) fn run(&self, steps: &[Step]) {
        for step in steps {
            match step {
                Step::Fill { ptr, len, value } => {
                    // SAFETY: the plan's fill targets are workspace buffers of at least `len` u32.
                    unsafe { std::slice::from_raw_parts_mut(*ptr as *mut u32, *len) }.fill(*value)
                }
                Step::Upload { ptr, values } => {
                    // SAFETY: the alpha buffer holds `classes` f32, which is `values.len()`.
                    unsafe { std::slice::from_raw_parts_mut(*ptr as *mut f32, values.len()) }.copy_from_slice(values)
                }
                Step::Launch { kernel, grid, args } => self.launch(kernel, *grid, args),
            }
        }
    }
}

thread_local! {
    /// The kernel variant the emulated calls of this test thread use.
    pub(crate) static VARIANT: std::cell::Cell<crate::plan::Variant> =
        const { std::cell::Cell::new(crate::plan::Variant::V1) };
}

/// Host workspace with the layout the plans expect.
pub(crate) struct HostWorkspace {
    partials: Vec<f64>,
    counts: Vec<u32>,
    scale: Vec<f32>,
    pub(crate) loss: Vec<f64>,
    loss_f32: Vec<f32>,
    first_bad_row: Vec<u32>,
    alpha: Vec<f32>,
}

impl HostWorkspace {
    pub(crate) fn new(dims: Dims) -> Self {
        HostWorkspace {
            partials: vec![f64::NAN; MAX_GRID as usize],
            counts: vec![7; dims.images.max(1)],
            scale: vec![f32::NAN; dims.images.max(1)],
            loss: vec![f64::NAN],
            loss_f32: vec![f32::NAN],
            first_bad_row: vec![0],
            alpha: vec![f32::NAN; dims.classes.max(1)],
        }
    }
    pub(crate) fn ptrs(&mut self) -> WorkspacePtrs {
        WorkspacePtrs {
            partials: self.partials.as_mut_ptr() as u64,
            counts: self.counts.as_mut_ptr() as u64,
            scale: self.scale.as_mut_ptr() as u64,
            loss: self.loss.as_mut_ptr() as u64,
            loss_f32: self.loss_f32.as_mut_ptr() as u64,
            first_bad_row: self.first_bad_row.as_mut_ptr() as u64,
            alpha: self.alpha.as_mut_ptr() as u64,
        }
    }
}

/// What one emulated call produced.
pub(crate) struct KernelOutput<G> {
    pub loss: f64,
    pub loss_f32: f32,
    pub grad: Vec<G>,
    pub elementwise: Vec<f32>,
    pub first_bad_row: u32,
}

/// Runs the plan of one call on the host. `grad_init` poisons the gradient buffer;
/// `misalign` offsets every buffer by one element so the scalar path runs.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_case<T: Copy, G: Copy>(
    emu: &Emulator,
    objective: &Objective,
    dims: Dims,
    input: Dtype,
    grad_dtype: Dtype,
    logits: &[T],
    target: &CaseTarget,
    normalization: Normalization,
    upstream: f64,
    grad_init: G,
    misalign: bool,
) -> crate::Result<KernelOutput<G>> {
    // An empty input has nothing to misalign.
    let misalign = misalign && !logits.is_empty();
    let off = usize::from(misalign);
    let mut x = Vec::with_capacity(logits.len() + 1);
    x.extend(logits.first().copied().filter(|_| misalign));
    x.extend_from_slice(logits);
    let mut grad = vec![grad_init; dims.numel() + off];
    let mut elementwise = vec![f32::NAN; dims.numel() + off];
    let mut ws = HostWorkspace::new(dims);
    let (labels, targets, weights);
    let mut bufs = Buffers {
        logits: x[off..].as_ptr() as u64,
        grad: grad[off..].as_mut_ptr() as u64,
        elementwise: elementwise[off..].as_mut_ptr() as u64,
        ..Buffers::default()
    };
    match target {
        CaseTarget::Sparse(l) => {
            labels = l.clone();
            bufs.labels = labels.as_ptr() as u64;
        }
        CaseTarget::Dense { targets: t, weights: w } => {
            let mut tt = vec![0.0f32; off];
            tt.extend_from_slice(t);
            targets = tt;
            bufs.targets = targets[off..].as_ptr() as u64;
            if let Some((_, w)) = w {
                let mut ww = vec![0.0f32; off];
                ww.extend_from_slice(w);
                weights = ww;
                bufs.weights = weights[off..].as_ptr() as u64;
            }
        }
    }
    let req = Request {
        objective,
        dims,
        input,
        grad: grad_dtype,
        target: target.kind(),
        normalization,
        upstream,
        variant: VARIANT.with(|v| v.get()),
        max_blocks: None,
    };
    let steps = plan::plan(&req, &bufs, &ws.ptrs())?;
    emu.run(&steps);
    Ok(KernelOutput {
        loss: ws.loss[0],
        loss_f32: ws.loss_f32[0],
        grad: grad[off..].to_vec(),
        elementwise: elementwise[off..].to_vec(),
        first_bad_row: ws.first_bad_row[0],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulated_structs_match_the_rust_layout() {
        let Some(emu) = emulator() else { return };
        assert_eq!(emu.size(b"focal_emu_sizeof_loss_args"), std::mem::size_of::<LossArgs>());
        assert_eq!(emu.size(b"focal_emu_sizeof_reduce_args"), std::mem::size_of::<ReduceArgs>());
        assert_eq!(
            emu.size(b"focal_emu_offsetof_loss_args_uniform_scale"),
            std::mem::offset_of!(LossArgs, uniform_scale)
        );
        assert_eq!(emu.size(b"focal_emu_offsetof_reduce_args_mode"), std::mem::offset_of!(ReduceArgs, mode));
    }
}
