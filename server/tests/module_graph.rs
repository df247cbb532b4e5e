//! The server's modules depend on each other one way: no import cycle between top-level
//! modules, nor between the files of one module. A parent module declaring and re-exporting
//! its children does not count as depending on them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`batching::batcher`; the crate root is empty) → source file.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    let mut folders = vec![src.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = relative
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            found.insert(parts.join("::"), path);
        }
    }
    found
}

/// The code of a file without comments and without its unit tests.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn parent(module: &str) -> String {
    module
        .rsplit_once("::")
        .map_or(String::new(), |(p, _)| p.to_string())
}

/// The modules `module`'s code names through `crate::`, `super::` or `self::` paths, each
/// resolved to the deepest module the path reaches.
fn references(module: &str, code: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let bytes = code.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        for (at, _) in code.match_indices(start) {
            let preceded =
                at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
            if preceded {
                continue;
            }
            let mut base = match start {
                "crate::" => String::new(),
                "super::" => parent(module),
                _ => module.to_string(),
            };
            let rest = &code[at + start.len()..];
            let segments = rest.split("::").map(|s| {
                s.chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect::<String>()
            });
            for segment in segments {
                if segment == "super" {
                    base = parent(&base);
                    continue;
                }
                let deeper = if base.is_empty() {
                    segment.clone()
                } else {
                    format!("{base}::{segment}")
                };
                if segment.is_empty() || !known.contains(&deeper) {
                    break;
                }
                base = deeper;
            }
            found.insert(base);
        }
    }
    found
}

fn is_ancestor(ancestor: &str, of: &str) -> bool {
    ancestor.is_empty() || of.starts_with(&format!("{ancestor}::"))
}

/// A cycle in `edges`, if there is one.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if !done.insert(node.to_string()) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, done, path) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|node| visit(node, edges, &mut done, &mut Vec::new()))
}

#[test]
fn server_modules_have_no_import_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = modules(&src);
    let known: BTreeSet<String> = files.keys().cloned().collect();
    let mut by_file: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut by_top_level: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, path) in &files {
        if module.is_empty() {
            continue;
        }
        for target in references(module, &code(path), &known) {
            if target == *module || target.is_empty() || is_ancestor(module, &target) {
                continue;
            }
            by_file
                .entry(module.clone())
                .or_default()
                .insert(target.clone());
            let top = |m: &str| m.split("::").next().unwrap().to_string();
            if top(module) != top(&target) {
                by_top_level
                    .entry(top(module))
                    .or_default()
                    .insert(top(&target));
            }
        }
    }
    assert!(
        by_top_level.contains_key("http") && by_file.contains_key("batching::batcher"),
        "the scan found no imports: {by_file:?}"
    );
    assert_eq!(find_cycle(&by_top_level), None, "{by_top_level:#?}");
    assert_eq!(find_cycle(&by_file), None);
}

#[test]
fn the_scan_finds_a_cycle_when_there_is_one() {
    let known: BTreeSet<String> = ["a", "a::x", "a::y", "b"].map(String::from).into();
    let x = references("a::x", "use super::y::Thing;", &known);
    let y = references("a::y", "use crate::a::x::{self, Other};", &known);
    assert_eq!(x, BTreeSet::from(["a::y".to_string()]));
    assert_eq!(y, BTreeSet::from(["a::x".to_string()]));
    let edges = BTreeMap::from([("a::x".to_string(), x), ("a::y".to_string(), y)]);
    assert!(find_cycle(&edges).is_some());
}
