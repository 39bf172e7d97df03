//! The documentation against the code, so it stays true while the code changes: the README
//! documents every operation of the OpenAPI document (and no other), ARCHITECTURE.md names
//! functions, constants and config keys that exist, the `lib.rs` tour names every module, and
//! no document links to a file outside the repository. Reads files only; no services.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every `METHOD /path` written in backticks, the path up to the closing backtick or the query.
fn operations_in(markdown: &str) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (i, _) in markdown.match_indices('`') {
        let rest = &markdown[i + 1..];
        for method in METHODS {
            let Some(path) = rest.strip_prefix(method).and_then(|r| r.strip_prefix(' ')) else {
                continue;
            };
            if !path.starts_with('/') {
                continue;
            }
            let end = path.find(['`', '?', ' ']).unwrap_or(path.len());
            found.insert((method.to_string(), path[..end].to_string()));
        }
    }
    found
}

/// Every operation of the merged OpenAPI document, as (`GET`, `/api/v1/alarms`).
fn openapi_operations() -> BTreeSet<(String, String)> {
    let doc = campusguard::api::openapi::document().expect("the OpenAPI fragments merge");
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            let method = method.to_uppercase();
            if METHODS.contains(&method.as_str()) {
                ops.insert((method, path.clone()));
            }
        }
    }
    ops
}

fn list(ops: &BTreeSet<(String, String)>) -> String {
    ops.iter()
        .map(|(m, p)| format!("  {m} {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_readme_documents_every_operation_of_the_openapi_document() {
    let documented = operations_in(&read("README.md"));
    let served = openapi_operations();
    assert!(served.len() > 30, "the OpenAPI document lists {served:?}");
    let missing: BTreeSet<_> = served.difference(&documented).cloned().collect();
    assert!(
        missing.is_empty(),
        "README.md does not document these operations (write them as `METHOD /path`):\n{}",
        list(&missing)
    );
}

#[test]
fn the_readme_documents_no_operation_the_openapi_document_does_not_list() {
    let documented = operations_in(&read("README.md"));
    let unknown: BTreeSet<_> = documented
        .difference(&openapi_operations())
        .cloned()
        .collect();
    assert!(
        unknown.is_empty(),
        "README.md documents operations the API does not serve:\n{}",
        list(&unknown)
    );
}

/// The cells of the markdown table rows of `text`.
fn table_rows(text: &str) -> Vec<Vec<&str>> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix('|')?.strip_suffix('|'))
        .map(|row| row.split('|').map(str::trim).collect())
        .collect()
}

/// The words of `cell` written in backticks.
fn ticked(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

#[test]
fn every_function_the_architecture_walk_names_exists_in_the_file_it_names() {
    let architecture = read("ARCHITECTURE.md");
    let mut checked = 0;
    let mut missing = Vec::new();
    // Walk rows: | step number | `file` | `function`, … | what happens |
    for row in table_rows(&architecture) {
        let [step, file, functions, ..] = row[..] else {
            continue;
        };
        if step.parse::<u32>().is_err() {
            continue;
        }
        let [file] = ticked(file)[..] else {
            continue;
        };
        let source = read(file);
        for name in ticked(functions) {
            let name = name.rsplit("::").next().unwrap_or(name);
            let defined = if file.ends_with(".js") {
                source.contains(&format!("function {name}("))
            } else {
                source.contains(&format!("fn {name}(")) || source.contains(&format!("fn {name}<"))
            };
            checked += 1;
            if !defined {
                missing.push(format!("{file}: {name}"));
            }
        }
    }
    assert!(checked > 50, "only {checked} functions found in the walk");
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names functions its files do not define:\n  {}",
        missing.join("\n  ")
    );
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_constant_and_config_key_the_architecture_names_exists() {
    let architecture = read("ARCHITECTURE.md");
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let sources: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let example_text = read("config/gateway.example.toml");
    let example: toml::Table = example_text.parse().expect("the example config parses");
    let words: BTreeSet<&str> = ticked(&architecture).into_iter().collect();
    let mut constants = 0;
    let mut keys = 0;
    let mut missing = Vec::new();
    for word in words {
        let is_constant = word.contains('_')
            && word.starts_with(|c: char| c.is_ascii_uppercase())
            && word
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if is_constant {
            constants += 1;
            let defined = format!("const {word}:");
            if !sources.iter().any(|s| s.contains(&defined)) {
                missing.push(format!("constant {word}"));
            }
            continue;
        }
        // A config key: `section.key`, the section one of the example's.
        let parts: Vec<&str> = word.split('.').collect();
        let is_key = parts.len() > 1
            && example.contains_key(parts[0])
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            && !["db", "rs", "js", "json", "toml", "md", "sql"].contains(&parts[parts.len() - 1]);
        if !is_key {
            continue;
        }
        keys += 1;
        let mut value = example.get(parts[0]);
        for part in &parts[1..] {
            value = value.and_then(|v| v.get(*part));
        }
        // A key the example documents commented out counts too.
        let last = parts[parts.len() - 1];
        if value.is_none() && !example_text.contains(&format!("# {last} =")) {
            missing.push(format!("config key {word}"));
        }
    }
    assert!(
        constants > 10 && keys > 10,
        "found {constants} constants, {keys} keys"
    );
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names what neither src/ nor config/gateway.example.toml defines:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn the_lib_rs_tour_names_every_module() {
    let lib = read("src/lib.rs");
    let tour: String = lib
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    let modules: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod ")?.strip_suffix(';'))
        .collect();
    assert!(modules.len() > 10, "modules found: {modules:?}");
    let untold: Vec<_> = modules
        .iter()
        .filter(|m| !tour.contains(&format!("[`{m}`]")))
        .collect();
    assert!(
        untold.is_empty(),
        "the `//!` tour of src/lib.rs does not name {untold:?}"
    );
}

#[test]
fn the_docs_link_only_to_files_inside_the_repository() {
    let mut docs = vec!["README.md".to_string(), "ARCHITECTURE.md".to_string()];
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".md") {
            docs.push(format!("docs/{name}"));
        }
    }
    let repo = root().canonicalize().unwrap();
    let mut links = 0;
    let mut broken = Vec::new();
    for doc in &docs {
        let text = read(doc);
        let dir = root().join(doc).parent().unwrap().to_path_buf();
        for (i, _) in text.match_indices("](") {
            let target = &text[i + 2..];
            let target = &target[..target.find(')').unwrap_or(target.len())];
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            let file = target.split('#').next().unwrap_or_default();
            if file.is_empty() {
                continue;
            }
            links += 1;
            match dir.join(file).canonicalize() {
                Ok(path) if path.starts_with(&repo) => {}
                _ => broken.push(format!("{doc}: {target}")),
            }
        }
    }
    assert!(links >= 5, "only {links} relative links found");
    assert!(
        broken.is_empty(),
        "links to files that are missing or outside the repository:\n  {}",
        broken.join("\n  ")
    );
}
