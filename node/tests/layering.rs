//! The layering of `node/src`: each module imports only modules on lower floors, as the
//! table in `lib.rs`'s top comment says. The table is read from `lib.rs` itself, so the
//! map people read and the rule the build enforces cannot drift apart; a module missing
//! from the table fails too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The floors of `lib.rs`'s layer table: module -> floor.
fn floors(lib: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let mut in_table = false;
    for line in lib.lines() {
        let Some(text) = line.strip_prefix("//!") else {
            continue;
        };
        let text = text.trim();
        if text.starts_with("floor") && text.contains("modules") {
            in_table = true;
            continue;
        }
        if !in_table {
            continue;
        }
        if text.starts_with("```") {
            break;
        }
        let Some((floor, modules)) = text.split_once(char::is_whitespace) else {
            continue;
        };
        let Ok(floor) = floor.parse::<usize>() else {
            continue;
        };
        // Words after a dash explain the floor; they are not modules.
        let modules = modules.split(" -").next().unwrap_or_default();
        for module in modules.split(',') {
            let module = module.trim();
            if !module.is_empty() {
                out.insert(module.to_string(), floor);
            }
        }
    }
    out
}

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        entries.sort();
        for e in entries {
            rust_files(&e, out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

/// The crate modules a source names (`crate::x`, `crate::{x, y::z}`, across lines),
/// outside comments, each with its line number.
fn named_modules(source: &str) -> Vec<(usize, String)> {
    let code: String = source
        .lines()
        .map(|line| match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = code[from..].find("crate::") {
        let at = from + i;
        from = at + "crate::".len();
        // `$crate::`, or part of a longer path like `my_crate::`.
        let before = code[..at].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &code[from..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or_default();
            for item in inner.split(',') {
                let first = item.trim().split("::").next().unwrap_or_default();
                if !first.is_empty() {
                    out.push((line_of(at), first.to_string()));
                }
            }
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.push((line_of(at), name));
        }
    }
    out
}

#[test]
fn every_module_imports_only_lower_floors() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs is readable");
    let floors = floors(&lib);
    assert!(
        floors.len() > 10,
        "lib.rs has no layer table (a line `floor  modules` in a ```text block): {floors:?}"
    );
    let mut problems = Vec::new();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    for file in files {
        let relative = file.strip_prefix(&src).unwrap_or(&file);
        let top = relative
            .components()
            .next()
            .map(|c| {
                c.as_os_str()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_string()
            })
            .unwrap_or_default();
        if top == "lib" || top == "main" {
            continue;
        }
        let Some(&floor) = floors.get(&top) else {
            problems.push(format!(
                "{}: module `{top}` is not in lib.rs's layer table",
                relative.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("source is readable");
        {
            for (line, named) in named_modules(&text) {
                if named == top {
                    continue;
                }
                match floors.get(&named) {
                    Some(&other) if other < floor => {}
                    Some(&other) => problems.push(format!(
                        "{}:{}: `{top}` (floor {floor}) imports `{named}` (floor {other}); a module imports only lower floors",
                        relative.display(),
                        line
                    )),
                    None => problems.push(format!(
                        "{}:{}: `{named}` is not in lib.rs's layer table",
                        relative.display(),
                        line
                    )),
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "layering broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_check_sees_imports_and_ignores_comments() {
    let names = |s: &str| -> Vec<String> { named_modules(s).into_iter().map(|(_, n)| n).collect() };
    assert_eq!(names("use crate::table::{Block, Part};"), ["table"]);
    assert_eq!(
        named_modules("use std::fmt;\nuse crate::{\n    catalog::Catalog,\n    state,\n};"),
        [(2, "catalog".to_string()), (2, "state".to_string())]
    );
    assert_eq!(
        names("let x = crate::query::run(); // crate::admin"),
        ["query"]
    );
    assert!(names("/// see crate::cluster").is_empty());
    assert!(names("$crate::foo!()").is_empty());
    let table = "//! ```text\n//! floor  modules\n//! 2      query, raft - reads\n//! 0      topology\n//! ```\n";
    let f = floors(table);
    assert_eq!(f.get("query"), Some(&2));
    assert_eq!(f.get("raft"), Some(&2));
    assert_eq!(f.get("topology"), Some(&0));
    assert_eq!(f.len(), 3);
}
