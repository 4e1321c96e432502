//! The twin's layers, read from its sources: the shared context (`src/ctx/`) at the
//! bottom, the simulated world (`src/world/`) above it, the embedded control plane
//! (`src/controllers/`) beside the rest. Fails when a file outside `controllers/`
//! takes from `controllers` what lives in a lower layer, or when a lower layer
//! imports a higher one.

use std::path::{Path, PathBuf};

/// Items once in `controllers` that now live lower, and where to import them from.
const MOVED: &[(&str, &str)] = &[
    ("Ctx", "crate::ctx::Ctx"),
    ("Power", "crate::ctx::Power"),
    ("Crashes", "crate::ctx::Crashes"),
    ("obj", "crate::ctx::obj"),
    ("reconcile_loop", "crate::ctx::reconcile_loop"),
    (
        "kubelet",
        "crate::world::kubelet (and Ctx::kubelet_running for kubelet_running)",
    ),
    (
        "volumes",
        "crate::world::volumes (and crate::ctx::provisioners for Provisioners)",
    ),
];

/// Folders of `src/` and the modules they must not import (lower layers first).
const BELOW: &[(&str, &[&str])] = &[
    ("ctx", &["controllers", "world"]),
    ("world", &["controllers"]),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Each file's code with comments blanked (line numbers kept), relative to the crate.
fn sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("tests"), &mut files);
    files.sort();
    files
        .into_iter()
        .filter(|p| !p.ends_with("tests/layers.rs"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let code: Vec<&str> = text
                .lines()
                .map(|l| {
                    if l.trim_start().starts_with("//") {
                        ""
                    } else {
                        l
                    }
                })
                .collect();
            let rel = p.strip_prefix(root).unwrap_or(&p).display().to_string();
            (rel, code.join("\n"))
        })
        .collect()
}

/// The names imported through each `PREFIX::` path in `code` (a name, or the first
/// segment of each entry of a `{...}` group), with their 1-based lines.
fn imported(code: &str, prefix: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let needle = format!("{prefix}::");
    let mut from = 0;
    while let Some(i) = code[from..].find(&needle) {
        let at = from + i;
        from = at + needle.len();
        // A whole path segment: `crate::controllers::`, not `my_controllers::`.
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let line = code[..at].matches('\n').count() + 1;
        let rest = &code[from..];
        if let Some(group) = rest.strip_prefix('{') {
            let (mut depth, mut end) = (1, group.len());
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = j;
                    break;
                }
            }
            let mut depth = 0;
            let mut entry = String::new();
            for c in group[..end].chars().chain(std::iter::once(',')) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        let first = entry.trim().split("::").next().unwrap_or("").trim();
                        if !first.is_empty() {
                            out.push((line, first.to_string()));
                        }
                        entry.clear();
                        continue;
                    }
                    _ => {}
                }
                entry.push(c);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.push((line, name));
        }
    }
    out
}

#[test]
fn nothing_takes_from_controllers_what_lives_lower() {
    let mut problems = Vec::new();
    for (file, code) in sources() {
        if file.starts_with("src/controllers/") {
            // No re-exports that would let the old paths work again.
            for (n, l) in code.lines().enumerate() {
                let l = l.trim_start();
                if l.starts_with("pub use") && (l.contains("ctx::") || l.contains("world::")) {
                    problems.push(format!(
                        "{file}:{}: re-exports a lower layer from controllers ({l}); \
                         import it from where it lives",
                        n + 1
                    ));
                }
            }
            continue;
        }
        for prefix in ["crate::controllers", "stormdrill_twin::controllers"] {
            for (line, name) in imported(&code, prefix) {
                if let Some((_, instead)) = MOVED.iter().find(|(n, _)| *n == name) {
                    problems.push(format!(
                        "{file}:{line}: imports {prefix}::{name}; import {instead} instead"
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the shared context and the simulated world live below the embedded control \
         plane:\n{}",
        problems.join("\n")
    );
}

#[test]
fn lower_layers_do_not_import_higher_ones() {
    let mut problems = Vec::new();
    for (file, code) in sources() {
        for (folder, forbidden) in BELOW {
            if !file.starts_with(&format!("src/{folder}/")) {
                continue;
            }
            for module in *forbidden {
                let prefix = format!("crate::{module}");
                for (line, name) in imported(&code, &prefix) {
                    problems.push(format!(
                        "{file}:{line}: `{folder}` imports {prefix}::{name}, a layer above it"
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_reader_sees_groups_and_paths() {
    let code = "use crate::controllers::{obj, pdb::{self, compute}, Ctx};\n\
                let x = crate::controllers::obj::name(o);\n\
                use my_crate::controllers::Ctx;";
    assert_eq!(
        imported(code, "crate::controllers"),
        vec![
            (1, "obj".to_string()),
            (1, "pdb".to_string()),
            (1, "Ctx".to_string()),
            (2, "obj".to_string()),
        ]
    );
}
