//! The public API, as a reviewed snapshot: every `pub` item declared in `src/` (functions with
//! their first signature line, types, fields, constants, modules and re-exports), by file.
//! A change to the public surface fails this test until `tests/fixtures/public-api.txt` is
//! regenerated with `UPDATE_PUBLIC_API=1 cargo test --all-features --test public_api`, so every
//! such change shows up in review as a diff of that file.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("src is readable")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The public declarations of one file, outside its `#[cfg(test)]` module.
fn declarations(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim();
        if t == "#[cfg(test)]" && lines.peek().is_some_and(|l| l.trim().starts_with("mod ")) {
            break;
        }
        if !t.starts_with("pub ") {
            continue;
        }
        let decl = t.trim_end_matches('{').trim_end_matches("where").trim_end();
        out.push(decl.to_owned());
    }
    out
}

fn snapshot() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut text = String::new();
    for file in files {
        let rel = file.strip_prefix(root).expect("under the crate");
        if rel.starts_with("src/bin") {
            continue;
        }
        let decls = declarations(&std::fs::read_to_string(&file).expect("readable"));
        if decls.is_empty() {
            continue;
        }
        text.push_str(&format!("{}\n", rel.display()));
        for d in decls {
            text.push_str(&format!("    {d}\n"));
        }
    }
    text
}

#[test]
fn the_public_api_matches_its_reviewed_snapshot() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/public-api.txt");
    let now = snapshot();
    if std::env::var_os("UPDATE_PUBLIC_API").is_some() {
        std::fs::write(&path, &now).expect("snapshot written");
        return;
    }
    let kept = std::fs::read_to_string(&path).unwrap_or_default();
    if kept != now {
        let added: Vec<&str> = now
            .lines()
            .filter(|l| !kept.lines().any(|k| k == *l))
            .collect();
        let removed: Vec<&str> = kept
            .lines()
            .filter(|l| !now.lines().any(|n| n == *l))
            .collect();
        panic!(
            "the public API changed; review, then regenerate the snapshot with \
             UPDATE_PUBLIC_API=1.\nadded:\n{}\nremoved:\n{}",
            added.join("\n"),
            removed.join("\n")
        );
    }
}

#[test]
fn helpers_stay_private() {
    let now = snapshot();
    for helper in [
        "pub fn encode_segment",
        "pub fn error_message",
        "pub fn retry_after",
        "pub fn is_idempotent",
        "pub fn system_time_millis",
        "pub fn hmac(",
        "pub fn identity(",
        "pub fn api_key(",
    ] {
        assert!(!now.contains(helper), "{helper} is public");
    }
}

/// The size of the public API, front doors aside (the reqwest middleware, the WebSocket and the
/// mock's socket.io half): at most 50 types and 140 functions, as rustdoc counts them. The
/// snapshot lists every `pub fn`; rustdoc adds the two methods of the `Clock` trait.
#[test]
fn the_public_api_stays_small() {
    let mut file = String::new();
    let (mut types, mut functions) = (0, 0);
    for line in snapshot().lines() {
        if !line.starts_with(' ') {
            file = line.to_owned();
            continue;
        }
        let front_door =
            file == "src/reqwest.rs" || file.starts_with("src/ws/") || file == "src/mock/socket.rs";
        if front_door {
            continue;
        }
        let decl = line.trim();
        if ["pub struct ", "pub enum ", "pub trait ", "pub type "]
            .iter()
            .any(|k| decl.starts_with(k))
        {
            types += 1;
        }
        if decl.starts_with("pub fn ") || decl.starts_with("pub async fn ") {
            functions += 1;
        }
    }
    // `Clock::now_millis` and `Clock::confirmed_now_millis`.
    let trait_methods = 2;
    assert!(types <= 50, "{types} public types");
    assert!(
        functions + trait_methods <= 140,
        "{} public functions",
        functions + trait_methods
    );
}
