//! Loading weights into Burn modules from Burn's burnpack files, PyTorch checkpoints (zip
//! and legacy formats) and safetensors files written from PyTorch. Checkpoints keep their
//! own parameter names; a list of regex remappings renames them to the module's. A tensor
//! the module needs but the file lacks, or one of the wrong shape, fails the load with an
//! error that names it; tensors the module does not use (training-only heads, BatchNorm's
//! `num_batches_tracked`) are ignored.

use std::path::Path;

use burn::store::{
    ApplyResult, BurnpackStore, KeyRemapper, ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore,
    SafetensorsStore,
};

use crate::error::{Result, ZooError};

/// A regex over checkpoint keys and its replacement (`$1` refers to a capture group).
pub type KeyRemap = (String, String);

/// Turn a table of static remappings into owned ones.
pub fn remaps(table: &[(&str, &str)]) -> Vec<KeyRemap> {
    table
        .iter()
        .map(|(from, to)| ((*from).to_owned(), (*to).to_owned()))
        .collect()
}

/// The file formats weights load from, told apart by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsFormat {
    /// Burn's own format (`.bpk`), under Burn's parameter names and layouts.
    Burnpack,
    /// A PyTorch `state_dict` saved with `torch.save` (`.pt`, `.pth`, `.bin`).
    PyTorch,
    /// A safetensors file of a PyTorch `state_dict` (`.safetensors`).
    Safetensors,
}

impl WeightsFormat {
    pub fn of(path: &Path) -> Result<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("bpk") => Ok(Self::Burnpack),
            Some("pt" | "pth" | "bin") => Ok(Self::PyTorch),
            Some("safetensors") => Ok(Self::Safetensors),
            _ => Err(ZooError::Weights {
                path: path.to_path_buf(),
                reason: "unknown weights format: use .bpk (Burn), .pt/.pth/.bin (PyTorch) \
                         or .safetensors"
                    .into(),
            }),
        }
    }
}

/// Load the weights at `path` into `module`, renaming checkpoint keys with `key_remaps`
/// (applied in order; ignored for burnpack files, which already use the module's names).
pub fn load_weights<M: ModuleSnapshot>(
    module: &mut M,
    path: &Path,
    key_remaps: &[KeyRemap],
) -> Result<()> {
    let fail = |reason: String| ZooError::Weights {
        path: path.to_path_buf(),
        reason,
    };
    require_file(path)?;
    let format = WeightsFormat::of(path)?;
    let remapper = key_remapper(key_remaps).map_err(&fail)?;
    let result = match format {
        WeightsFormat::Burnpack => {
            let mut store = BurnpackStore::from_file(path)
                .auto_extension(false)
                .allow_partial(true)
                .validate(false);
            module.load_from(&mut store).map_err(|e| e.to_string())
        }
        WeightsFormat::PyTorch => {
            let mut store = PytorchStore::from_file(path)
                .remap(remapper)
                .map_indices_contiguous(false)
                .allow_partial(true)
                .validate(false);
            module.load_from(&mut store).map_err(|e| e.to_string())
        }
        WeightsFormat::Safetensors => {
            let mut store = SafetensorsStore::from_file(path)
                .with_from_adapter(PyTorchToBurnAdapter)
                .remap(remapper)
                .skip_enum_variants(true)
                .map_indices_contiguous(false)
                .allow_partial(true)
                .validate(false);
            module.load_from(&mut store).map_err(|e| e.to_string())
        }
    };
    check_complete(&result.map_err(&fail)?).map_err(fail)
}

/// Loads into `module` one part of a burnpack file: the tensors under the first of
/// `prefixes` the file has (a captioner's encoder is `Lstm.encoder.…` in its file), read as
/// if the prefix were not there. Within that part, a tensor missing or of the wrong shape
/// fails as in [`load_weights`]; the rest of the file is ignored.
pub fn load_burnpack_part<M: ModuleSnapshot>(
    module: &mut M,
    path: &Path,
    prefixes: &[&str],
) -> Result<()> {
    let fail = |reason: String| ZooError::Weights {
        path: path.to_path_buf(),
        reason,
    };
    require_file(path)?;
    if WeightsFormat::of(path)? != WeightsFormat::Burnpack {
        return Err(fail(
            "a part of a file is read from burnpack (.bpk) only".into(),
        ));
    }
    for prefix in prefixes {
        let remapper = key_remapper(&[(format!("^{}", regex_literal(prefix)), String::new())])
            .map_err(&fail)?;
        let mut store = BurnpackStore::from_file(path)
            .auto_extension(false)
            .allow_partial(true)
            .validate(false)
            .remap(remapper);
        let result = module
            .load_from(&mut store)
            .map_err(|e| fail(e.to_string()))?;
        // Nothing under this prefix: the file is of another kind; try the next.
        if result.applied.is_empty() && result.errors.is_empty() {
            continue;
        }
        return check_complete(&result).map_err(fail);
    }
    Err(fail(format!("no tensors under any of {prefixes:?}")))
}

/// Refuses a path that is not a file, before any store is opened on it.
fn require_file(path: &Path) -> Result<()> {
    if path.is_file() {
        return Ok(());
    }
    Err(ZooError::Weights {
        path: path.to_path_buf(),
        reason: "file not found".into(),
    })
}

/// `text` as a regex that matches it literally.
fn regex_literal(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

/// The remappings compiled once, an invalid pattern named (the stores would panic on it).
fn key_remapper(key_remaps: &[KeyRemap]) -> Result<KeyRemapper, String> {
    key_remaps
        .iter()
        .try_fold(KeyRemapper::new(), |remapper, (from, to)| {
            remapper
                .add_pattern(from, to.as_str())
                .map_err(|e| format!("invalid key remapping pattern '{from}': {e}"))
        })
}

fn check_complete(result: &ApplyResult) -> Result<(), String> {
    if result.missing.is_empty() && result.errors.is_empty() {
        return Ok(());
    }
    let mut reasons = Vec::new();
    if !result.errors.is_empty() {
        let errors: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
        reasons.push(errors.join("; "));
    }
    if !result.missing.is_empty() {
        let missing: Vec<&str> = result.missing.iter().map(|(p, _)| p.as_str()).collect();
        let mut reason = format!("missing tensors {missing:?}");
        if !result.unused.is_empty() {
            let shown: Vec<&str> = result.unused.iter().take(8).map(String::as_str).collect();
            reason.push_str(&format!(
                "; the file has {} tensors the model does not use, such as {shown:?} \
                 (a key remapping may be needed)",
                result.unused.len()
            ));
        }
        reasons.push(reason);
    }
    Err(reasons.join("; "))
}

/// Save a module's weights in burnpack format, replacing any existing file.
pub fn save_burnpack<M: ModuleSnapshot>(module: &M, path: &Path) -> Result<()> {
    let mut store = BurnpackStore::from_file(path)
        .auto_extension(false)
        .overwrite(true);
    module.save_into(&mut store).map_err(|e| ZooError::Weights {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}
