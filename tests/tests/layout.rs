//! The shape of the code: dependencies point one way, between crates and between the files of
//! each crate, and the node never links the runtime's logic.
//!
//! Both are read from the sources, the way a reviewer would: a crate's dependencies from the
//! `[dependencies]` of its manifest (workspace crates only), a module's from the `crate::<module>`
//! paths in its files (a top-level module is a file or directory directly under `src/`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
        .to_path_buf()
}

/// The workspace members, from the root manifest's `members = [...]`.
fn members() -> Vec<String> {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    let line = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("a members line");
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// A member's package name and the workspace crates its `[dependencies]` name.
fn manifest(member: &str) -> (String, Vec<String>) {
    let text = std::fs::read_to_string(root().join(member).join("Cargo.toml"))
        .unwrap_or_else(|e| panic!("{member}/Cargo.toml: {e}"));
    let mut name = None;
    let mut section = String::new();
    let mut deps = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.to_string();
            continue;
        }
        let key = line.split(['=', '.', ' ']).next().unwrap_or("");
        if section == "[package]" && key == "name" && name.is_none() {
            name = line.split('"').nth(1).map(str::to_string);
        }
        if section == "[dependencies]" && (key.starts_with("vexidus") || key == "vexvisor") {
            deps.push(key.to_string());
        }
    }
    (name.expect("a package name"), deps)
}

/// One cycle of `graph` (from the first node in order that leads into one), if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut cycle = path[i..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for next in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, graph, done, path) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut done, &mut Vec::new()))
}

/// The node's library reaches none of the runtime's crates (it runs the runtime only as a blob),
/// and no workspace crate depends on one that depends back on it.
#[test]
fn the_node_never_links_the_runtime_and_crates_depend_one_way() {
    let graph: BTreeMap<String, BTreeSet<String>> = members()
        .iter()
        .map(|m| {
            let (name, deps) = manifest(m);
            (name, deps.into_iter().collect())
        })
        .collect();
    assert!(graph.contains_key("vexidus-node"), "{:?}", graph.keys());
    assert_eq!(find_cycle(&graph), None);
    let mut reached = BTreeSet::new();
    let mut todo = vec!["vexidus-node".to_string()];
    while let Some(n) = todo.pop() {
        for d in graph.get(&n).into_iter().flatten() {
            if reached.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    for runtime in ["vexidus-runtime", "vexidus-governance", "vexidus-bench"] {
        assert!(
            !reached.contains(runtime),
            "vexidus-node reaches {runtime}: {reached:?}"
        );
    }
    assert!(reached.contains("vexidus-chain"), "{reached:?}");
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The `crate::<name>` paths in `text`, whatever follows them.
fn crate_paths(text: &str) -> BTreeSet<String> {
    paths_after(text, "crate::")
}

/// The names that follow `prefix` (a path ending in `::`) in `text`, braced groups included.
fn paths_after(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (i, _) in text.match_indices(prefix) {
        // `vexidus_crate::` or `$crate::` are other paths.
        let before = text[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &text[i + prefix.len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            found.insert(name);
        }
        if rest.starts_with('{') {
            let inner = &rest[1..rest.find('}').unwrap_or(rest.len())];
            for part in inner.split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        }
    }
    found
}

/// A file's code without its comment lines (doc links name modules without importing them).
fn code_of(f: &Path) -> String {
    std::fs::read_to_string(f)
        .expect("a source file")
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// For every module directory under `src` (such as `stm/`), the graph of its child modules:
/// which siblings each names, through `super::` in its own file or the full `crate::` path
/// from anywhere inside it.
fn nested_graphs(src: &Path) -> Vec<(String, BTreeMap<String, BTreeSet<String>>)> {
    fn dirs(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                out.push(p.clone());
                dirs(&p, out);
            }
        }
    }
    let mut found = Vec::new();
    dirs(src, &mut found);
    let mut graphs = Vec::new();
    for dir in found {
        let rel = dir.strip_prefix(src).expect("under src");
        if rel
            .components()
            .next()
            .is_some_and(|c| c.as_os_str() == "bin")
        {
            continue;
        }
        let path: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let full = format!("crate::{}::", path.join("::"));
        let mut children: BTreeMap<String, Vec<(PathBuf, bool)>> = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = entry.path();
            let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned());
            let Some(name) = stem.filter(|n| n != "mod") else {
                continue;
            };
            if p.is_dir() {
                let mut files = Vec::new();
                rust_files(&p, &mut files);
                children
                    .entry(name)
                    .or_default()
                    .extend(files.into_iter().map(|f| (f, false)));
            } else if p.extension().is_some_and(|e| e == "rs") {
                children.entry(name).or_default().push((p, true));
            }
        }
        let names: BTreeSet<String> = children.keys().cloned().collect();
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (name, files) in &children {
            let edges = graph.entry(name.clone()).or_default();
            for (f, direct) in files {
                let code = code_of(f);
                let mut used = paths_after(&code, &full);
                if *direct {
                    used.extend(paths_after(&code, "super::"));
                }
                edges.extend(used.into_iter().filter(|u| u != name && names.contains(u)));
            }
        }
        graphs.push((path.join("/"), graph));
    }
    graphs
}

/// The top-level modules of a crate and, for each, the others its files name.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let module_of = |f: &Path| -> Option<String> {
        let rel = f.strip_prefix(src).ok()?;
        let first = rel.components().next()?.as_os_str().to_string_lossy();
        let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
        (!matches!(name.as_str(), "lib" | "main" | "bin")).then_some(name)
    };
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = modules
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    for f in &files {
        let Some(m) = module_of(f) else { continue };
        for used in crate_paths(&code_of(f)) {
            if used != m && modules.contains(&used) {
                graph.get_mut(&m).expect("a module").insert(used);
            }
        }
    }
    graph
}

/// No two files (top-level modules) of one crate name each other, directly or around a circle,
/// and no two children of a module directory (such as `stm/`) either.
#[test]
fn no_crate_has_an_import_circle_between_its_files() {
    let mut checked = 0;
    let mut circles = Vec::new();
    for member in members() {
        let src = root().join(&member).join("src");
        let graph = module_graph(&src);
        if let Some(cycle) = find_cycle(&graph) {
            circles.push(format!("{member}: {}", cycle.join(" → ")));
        }
        checked += graph.len();
        for (dir, nested) in nested_graphs(&src) {
            if let Some(cycle) = find_cycle(&nested) {
                circles.push(format!("{member}: {dir}/: {}", cycle.join(" → ")));
            }
            checked += nested.len();
        }
    }
    assert!(
        circles.is_empty(),
        "modules that import each other:\n{}",
        circles.join("\n")
    );
    assert!(checked > 30, "only {checked} modules found");
}

/// The checker finds circles (it is not vacuous): two modules naming each other, and a circle
/// of three through a braced import.
#[test]
fn the_circle_check_finds_circles() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = dir.path();
    let write = |name: &str, text: &str| std::fs::write(src.join(name), text).expect("write");
    write("lib.rs", "pub mod a; pub mod b; pub mod c;");
    write("a.rs", "use crate::b::X;");
    write("b.rs", "pub struct X; fn f() { crate::a::g() }");
    write("c.rs", "");
    assert_eq!(
        find_cycle(&module_graph(src)),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
    write("b.rs", "use crate::{c::Y, self as _};");
    write("c.rs", "fn f() -> crate::a::Z { todo!() }");
    assert_eq!(
        find_cycle(&module_graph(src)),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    // Paths of other crates and of macros, and doc links, do not import this crate's modules.
    write(
        "c.rs",
        "/// See [`crate::a`].\nuse vexidus_crate::a; fn f() { $crate::a::g() }",
    );
    assert_eq!(find_cycle(&module_graph(src)), None);
    // Inside a module directory: siblings through `super::` and through the full path.
    std::fs::create_dir(src.join("d")).expect("mkdir");
    write("d/mod.rs", "mod x; mod y;");
    write("d/x.rs", "use super::y::A;");
    write("d/y.rs", "use crate::d::x::B;");
    let nested = nested_graphs(src);
    assert_eq!(nested.len(), 1);
    assert_eq!(
        find_cycle(&nested[0].1),
        Some(vec!["x".into(), "y".into(), "x".into()])
    );
    write("d/y.rs", "use super::super::a;");
    assert_eq!(find_cycle(&nested_graphs(src)[0].1), None);
}

/// Whether Rust source uses `unsafe` (a block, function, impl or trait), comments aside.
fn uses_unsafe(text: &str) -> bool {
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .any(|code| {
            [
                "unsafe {",
                "unsafe fn",
                "unsafe impl",
                "unsafe trait",
                "unsafe extern",
            ]
            .iter()
            .any(|u| code.contains(u))
        })
}

#[test]
fn a_crate_without_unsafe_code_forbids_it() {
    let mut missing = Vec::new();
    for member in members() {
        let src = root().join(&member).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let any_unsafe = files
            .iter()
            .any(|f| uses_unsafe(&std::fs::read_to_string(f).unwrap_or_default()));
        if any_unsafe {
            continue;
        }
        // Every crate root: the library, the main binary and each binary under src/bin.
        let mut roots = vec![src.join("lib.rs"), src.join("main.rs")];
        roots.extend(
            std::fs::read_dir(src.join("bin"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "rs")),
        );
        for path in roots {
            if let Ok(text) = std::fs::read_to_string(&path)
                && !text.contains("#![forbid(unsafe_code)]")
            {
                missing.push(path.display().to_string());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "crates without unsafe code that do not forbid it: {missing:?}"
    );
    assert!(uses_unsafe("let x = unsafe { f() };"));
    assert!(!uses_unsafe("// an unsafe { block } in a comment"));
}
