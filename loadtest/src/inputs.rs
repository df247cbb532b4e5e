//! Request payloads from real data: every PNG/JPEG file of a folder, or the lines of a
//! text file of prompts.

use std::path::Path;

/// One image ready to send: its bytes and content type.
#[derive(Debug, Clone)]
pub struct ImageInput {
    pub name: String,
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
}

/// Read every `.png`, `.jpg` and `.jpeg` file of `dir`, sorted by name.
pub fn load_images(dir: &Path) -> Result<Vec<ImageInput>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut images = Vec::new();
    for path in entries.flatten().map(|e| e.path()) {
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let content_type = match extension.as_deref() {
            Some("png") => "image/png",
            Some("jpg" | "jpeg") => "image/jpeg",
            _ => continue,
        };
        let bytes =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        images.push(ImageInput {
            name: path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            bytes,
            content_type,
        });
    }
    if images.is_empty() {
        return Err(format!("{} holds no PNG or JPEG image", dir.display()));
    }
    images.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(images)
}

/// Every non-empty line of a prompts file.
pub fn load_prompts(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let prompts: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if prompts.is_empty() {
        return Err(format!("{} holds no prompt", path.display()));
    }
    Ok(prompts)
}
