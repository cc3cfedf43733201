//! Checkpoints: safetensors with torchvision's parameter names, the model configuration as
//! JSON metadata, and optional extra tensors (optimiser state).

use std::collections::HashMap;
use std::path::Path;

use fpn_net::Module;
use safetensors::{Dtype, SafeTensors};

use crate::config::ModelConfig;
use crate::error::{Result, RetinaError, io_error};
use crate::model::RetinaNet;

/// The `format` metadata of our checkpoints.
pub const FORMAT: &str = "focal-retinanet/1";

fn checkpoint_error(path: &Path, detail: impl Into<String>) -> RetinaError {
    RetinaError::Checkpoint { path: path.display().to_string(), detail: detail.into() }
}

/// Writes the model's parameters, `extra` tensors `(name, values, shape)` and `metadata`
/// (plus `format` and `config`) to `path`, atomically.
///
/// # Errors
/// [`RetinaError::Io`] when writing fails.
pub fn save(
    model: &RetinaNet,
    extra: &[(String, &[f32], Vec<usize>)],
    mut metadata: HashMap<String, String>,
    path: &Path,
) -> Result<()> {
    let config = serde_json::to_string(model.config()).map_err(|e| RetinaError::Config(e.to_string()))?;
    metadata.insert("format".into(), FORMAT.into());
    metadata.insert("config".into(), config);
    let params = model.named_params();
    let mut entries: Vec<(String, Vec<usize>, Vec<u8>)> = params
        .iter()
        .map(|(n, p)| (n.clone(), p.shape().to_vec(), p.value.iter().flat_map(|v| v.to_le_bytes()).collect()))
        .collect();
    for (n, v, shape) in extra {
        entries.push((n.clone(), shape.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect()));
    }
    let views = entries
        .iter()
        .map(|(n, shape, bytes)| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (n.clone(), v))
                .map_err(|e| checkpoint_error(path, e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(|e| checkpoint_error(path, e.to_string()))?;
    crate::train::write_atomic(path, &bytes)
}

/// What [`load`] found besides the model's parameters.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    /// The metadata.
    pub metadata: HashMap<String, String>,
    /// Tensors under `optimizer.`, flattened.
    pub extra: Vec<(String, Vec<f32>)>,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| io_error(path, e))
}

/// The configuration stored in a checkpoint.
///
/// # Errors
/// [`RetinaError::Io`] when unreadable, [`RetinaError::Checkpoint`] when not one of ours.
pub fn read_config(path: &Path) -> Result<ModelConfig> {
    let bytes = read(path)?;
    config_of(&bytes, path)
}

/// The class names stored by `retinanet train` (`class_names` metadata), if any.
///
/// # Errors
/// As [`read_config`].
pub fn read_class_names(path: &Path) -> Result<Option<Vec<String>>> {
    read_json_metadata(path, "class_names")
}

/// The COCO category id of each label stored by `retinanet train` (`category_ids`
/// metadata), if any.
///
/// # Errors
/// As [`read_config`].
pub fn read_category_ids(path: &Path) -> Result<Option<Vec<u64>>> {
    read_json_metadata(path, "category_ids")
}

/// The JSON metadata entry `key` of one of our checkpoints, if present and of type `T`.
fn read_json_metadata<T: serde::de::DeserializeOwned>(path: &Path, key: &str) -> Result<Option<T>> {
    let bytes = read(path)?;
    config_of(&bytes, path)?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| checkpoint_error(path, e.to_string()))?;
    Ok(meta.metadata().as_ref().and_then(|m| m.get(key)).and_then(|v| serde_json::from_str(v).ok()))
}

fn config_of(bytes: &[u8], path: &Path) -> Result<ModelConfig> {
    let (_, meta) = SafeTensors::read_metadata(bytes)
        .map_err(|e| checkpoint_error(path, format!("not a safetensors file ({e})")))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    if meta.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(checkpoint_error(path, format!("no `format: {FORMAT}` metadata: not a retinanet checkpoint")));
    }
    let config = meta.get("config").ok_or_else(|| checkpoint_error(path, "no `config` metadata"))?;
    serde_json::from_str(config).map_err(|e| checkpoint_error(path, format!("bad `config` metadata: {e}")))
}

/// Loads a checkpoint into `model`, whose configuration must equal the stored one.
///
/// # Errors
/// [`RetinaError::Checkpoint`] for another configuration, missing or mis-shaped tensors, or
/// a file that is not a retinanet checkpoint; the model is unchanged then.
pub fn load(model: &mut RetinaNet, path: &Path) -> Result<Loaded> {
    let bytes = read(path)?;
    let stored = config_of(&bytes, path)?;
    if &stored != model.config() {
        return Err(checkpoint_error(
            path,
            format!(
                "written for another configuration: stored {}, expected {}",
                serde_json::to_string(&stored).unwrap_or_default(),
                serde_json::to_string(model.config()).unwrap_or_default()
            ),
        ));
    }
    let report = fpn_net::weights::load(model, &bytes, "", fpn_net::weights::Extra::Ignore)
        .map_err(|e| checkpoint_error(path, e.to_string()))?;
    if let Some(bad) = report.ignored.iter().find(|n| !n.starts_with("optimizer.")) {
        return Err(checkpoint_error(path, format!("unexpected tensor {bad}")));
    }
    let file = SafeTensors::deserialize(&bytes).map_err(|e| checkpoint_error(path, e.to_string()))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| checkpoint_error(path, e.to_string()))?;
    let mut extra = Vec::new();
    for name in report.ignored {
        let t = file.tensor(&name).map_err(|e| checkpoint_error(path, e.to_string()))?;
        if t.dtype() != Dtype::F32 {
            return Err(checkpoint_error(path, format!("{name}: expected F32")));
        }
        extra.push((name, t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()));
    }
    Ok(Loaded { metadata: meta.metadata().clone().unwrap_or_default(), extra })
}

/// A model built from the configuration stored in `path`, with its weights.
///
/// # Errors
/// As [`load`].
pub fn load_model(path: &Path) -> Result<RetinaNet> {
    let config = read_config(path)?;
    let mut model = RetinaNet::new(config, 0)?;
    load(&mut model, path)?;
    Ok(model)
}

/// A model for `config` with a torchvision RetinaNet state_dict exported to safetensors
/// (`crates/fpn-net/scripts/export_torchvision.py`), names and shapes matched 1:1.
///
/// # Errors
/// [`RetinaError::Io`] when unreadable; [`RetinaError::Checkpoint`] listing every missing,
/// unexpected and mis-shaped tensor.
pub fn load_torchvision(path: &Path, config: ModelConfig) -> Result<RetinaNet> {
    let bytes = read(path)?;
    let mut model = RetinaNet::new(config, 0)?;
    fpn_net::weights::load(&mut model, &bytes, "", fpn_net::weights::Extra::Reject)
        .map_err(|e| checkpoint_error(path, e.to_string()))?;
    Ok(model)
}
