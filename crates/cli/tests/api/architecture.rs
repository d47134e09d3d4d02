//! The layer diagram of `ARCHITECTURE.md`, checked against the code.
//!
//! Two rules hold the workspace together, and both are cheap to break without noticing:
//!
//! 1. **Crates depend downwards only.** Each crate has a layer (protocol → net → services →
//!    binary); a normal dependency on a crate of the same or a higher layer is refused, except
//!    the few service-to-service edges listed in [`SERVICE_EDGES`]. `cargo metadata` is the
//!    witness, so what is checked is what cargo builds.
//! 2. **Modules inside a crate form a DAG.** Sibling modules may use each other in one
//!    direction only; a cycle (`a` uses `b`, `b` uses `a`, directly or through others) is
//!    refused. The graph is read from `crate::`/`super::` paths in the sources.
//!
//! The protocol crates also promise no tokio and no I/O library among their dependencies.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The layer of every workspace crate. Lower layers never depend on higher ones.
const LAYERS: &[(&str, u8)] = &[
    // Protocol: pure data, grammar and decisions. No tokio, no sockets, no clock.
    ("mta-sts", 0),
    ("tlsrpt", 0),
    ("mta-sts-socketmap", 0),
    ("mta-sts-dkim", 0),
    ("mta-sts-config", 0),
    // Net: DNS, HTTPS, trust anchors, the clock.
    ("mta-sts-net", 1),
    // Services.
    ("mta-sts-resolver", 2),
    ("mta-sts-report-store", 2),
    ("mta-sts-checker", 2),
    ("mta-sts-policy-host", 2),
    ("mta-sts-daemon", 2),
    ("mta-sts-web", 2),
    // The binary: parses arguments, renders.
    ("mta-sts-cli", 3),
    // Test support: a dev-dependency of everyone, a normal dependency of no one.
    ("mta-sts-testkit", 4),
];

/// The service-to-service edges the architecture allows (from, to): the daemon answers from
/// the resolver's cache, records TLS-RPT results into the report store and probes the MX
/// hosts of `testing` domains with the checker's SMTP probe; the policy host stores the
/// reports it receives; the dashboard reads the report store.
const SERVICE_EDGES: &[(&str, &str)] = &[
    ("mta-sts-daemon", "mta-sts-resolver"),
    ("mta-sts-daemon", "mta-sts-report-store"),
    ("mta-sts-daemon", "mta-sts-checker"),
    ("mta-sts-policy-host", "mta-sts-report-store"),
    ("mta-sts-web", "mta-sts-report-store"),
];

/// Libraries that mean I/O or a runtime; a protocol crate must not depend on any of them.
const IO_LIBRARIES: &[&str] = &[
    "tokio",
    "hyper",
    "hyper-util",
    "hickory-resolver",
    "hickory-proto",
    "rustls",
    "tokio-rustls",
    "rusqlite",
    "redis",
    "tokio-postgres",
    "reqwest",
    "lettre",
    "mail-send",
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/cli sits two levels below the workspace root")
        .to_path_buf()
}

struct Package {
    name: String,
    manifest_dir: PathBuf,
    /// Normal (not dev, not build) dependencies, by package name.
    normal_deps: Vec<String>,
}

fn workspace_packages() -> Vec<Package> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let members: BTreeSet<&str> = metadata["workspace_members"]
        .as_array()
        .expect("workspace_members")
        .iter()
        .filter_map(|id| id.as_str())
        .collect();
    metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|p| p["id"].as_str().is_some_and(|id| members.contains(id)))
        .map(|p| Package {
            name: p["name"].as_str().expect("name").to_string(),
            manifest_dir: Path::new(p["manifest_path"].as_str().expect("manifest_path"))
                .parent()
                .expect("manifest dir")
                .to_path_buf(),
            normal_deps: p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().expect("dependency name").to_string())
                .collect(),
        })
        .collect()
}

fn layer_of(name: &str) -> Option<u8> {
    LAYERS.iter().find(|(n, _)| *n == name).map(|(_, l)| *l)
}

#[test]
fn every_workspace_crate_has_a_layer() {
    for package in workspace_packages() {
        assert!(
            layer_of(&package.name).is_some(),
            "{} has no layer: add it to LAYERS here and to the diagram in ARCHITECTURE.md",
            package.name
        );
    }
}

#[test]
fn crates_depend_downwards_only() {
    let mut wrong = Vec::new();
    for package in workspace_packages() {
        let Some(from) = layer_of(&package.name) else {
            continue;
        };
        for dep in &package.normal_deps {
            let Some(to) = layer_of(dep) else { continue };
            let allowed = to < from
                || SERVICE_EDGES.contains(&(package.name.as_str(), dep.as_str()))
                // Protocol crates may build on each other (tlsrpt uses mta-sts's domain type).
                || (from == 0 && to == 0 && dep == "mta-sts");
            if !allowed || dep == "mta-sts-testkit" {
                wrong.push(format!(
                    "{} (layer {from}) -> {dep} (layer {to})",
                    package.name
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "dependencies that point sideways or upwards:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn protocol_crates_link_no_io_library() {
    let mut wrong = Vec::new();
    for package in workspace_packages() {
        if layer_of(&package.name) != Some(0) {
            continue;
        }
        for dep in &package.normal_deps {
            if IO_LIBRARIES.contains(&dep.as_str()) {
                wrong.push(format!("{} -> {dep}", package.name));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "protocol crates with I/O dependencies:\n{}",
        wrong.join("\n")
    );
}

/// A module path inside a crate, e.g. `["tlsrpt", "recorder"]`; the crate root is `[]`.
type ModPath = Vec<String>;

/// Every module file of a crate's `src/`, by module path.
fn module_files(src: &Path) -> BTreeMap<ModPath, PathBuf> {
    let mut files = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let relative = path.strip_prefix(src).expect("under src");
            let mut parts: Vec<String> = relative
                .iter()
                .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
                .collect();
            if parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main") {
                parts.clear();
            } else if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            if parts.first().is_some_and(|p| p == "bin") {
                continue; // binaries are crates of their own
            }
            files.insert(parts, path);
        }
    }
    files
}

/// The source with `//` comments (doc comments included) removed, so that intra-doc links
/// and prose do not count as uses.
fn code_only(source: &str) -> String {
    source
        .lines()
        .map(|line| match line.find("//") {
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Parses a use-tree after `crate::` (or a resolved `super::`) into full paths.
fn use_tree(chars: &[char], mut i: usize, prefix: &[String], out: &mut Vec<ModPath>) -> usize {
    let skip_ws = |mut i: usize| {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        i
    };
    i = skip_ws(i);
    if i < chars.len() && chars[i] == '{' {
        i += 1;
        loop {
            i = skip_ws(i);
            if i >= chars.len() {
                return i;
            }
            if chars[i] == '}' {
                return i + 1;
            }
            if chars[i] == ',' {
                i += 1;
                continue;
            }
            let before = i;
            i = use_tree(chars, i, prefix, out);
            if i == before {
                i += 1;
            }
        }
    }
    let start = i;
    while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
        i += 1;
    }
    if i == start {
        return i;
    }
    let ident: String = chars[start..i].iter().collect();
    let mut path = prefix.to_vec();
    path.push(ident);
    if chars.get(i) == Some(&':') && chars.get(i + 1) == Some(&':') {
        use_tree(chars, i + 2, &path, out)
    } else {
        out.push(path);
        i
    }
}

/// The paths a module refers to through `crate::` and `super::`.
fn referenced_paths(module: &ModPath, is_dir_module: bool, source: &str) -> Vec<ModPath> {
    let code: Vec<char> = code_only(source).chars().collect();
    let text: String = code.iter().collect();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(found) = text[at..].find("crate::") {
        let start = at + found;
        let boundary = start == 0 || {
            let prev = text[..start].chars().next_back().unwrap_or(' ');
            !(prev.is_alphanumeric() || prev == '_' || prev == '$')
        };
        let char_index = text[..start].chars().count() + "crate::".len();
        if boundary {
            use_tree(&code, char_index, &[], &mut out);
        }
        at = start + "crate::".len();
    }
    // `super::` from a file module `a/b.rs` (path [a, b]) names `a`; from `a/mod.rs` it names
    // the parent of `a`.
    let parent_len = if is_dir_module {
        module.len().saturating_sub(1)
    } else {
        module.len()
    };
    let mut at = 0;
    while let Some(found) = text[at..].find("super::") {
        let start = at + found;
        let boundary = start == 0 || {
            let prev = text[..start].chars().next_back().unwrap_or(' ');
            !(prev.is_alphanumeric() || prev == '_' || prev == ':')
        };
        if boundary && parent_len > 0 {
            let base = module[..parent_len - 1].to_vec();
            let char_index = text[..start].chars().count() + "super::".len();
            use_tree(&code, char_index, &base, &mut out);
        }
        at = start + "super::".len();
    }
    out
}

/// The sibling-level edges: for a use from module `p` of path `q`, the edge between the
/// children of their common parent on the way to each.
fn sibling_edges(package: &Package) -> BTreeMap<ModPath, BTreeSet<(String, String)>> {
    let src = package.manifest_dir.join("src");
    let files = module_files(&src);
    let mut edges: BTreeMap<ModPath, BTreeSet<(String, String)>> = BTreeMap::new();
    for (module, file) in &files {
        // `#[cfg(test)] mod tests` inside a file belongs to that file: fine to count.
        let source = std::fs::read_to_string(file).expect("read module");
        let is_dir_module = file.file_name().is_some_and(|n| n == "mod.rs");
        for path in referenced_paths(module, is_dir_module, &source) {
            // Resolve to the longest prefix that is a module file.
            let target = (0..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|p| files.contains_key(p))
                .unwrap_or_default();
            let common = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common == module.len() || common == target.len() {
                continue; // parent and child: a parent declares its children
            }
            edges
                .entry(module[..common].to_vec())
                .or_default()
                .insert((module[common].clone(), target[common].clone()));
        }
    }
    edges
}

/// A cycle among the nodes of `edges`, if there is one.
fn find_cycle(edges: &BTreeSet<(String, String)>) -> Option<Vec<String>> {
    let mut graph: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in edges {
        graph.entry(a).or_default().push(b);
    }
    // 0 = unvisited, 1 = on the stack, 2 = done
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    fn visit<'a>(
        node: &'a str,
        graph: &BTreeMap<&'a str, Vec<&'a str>>,
        state: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        state.insert(node, 1);
        stack.push(node);
        for &next in graph.get(node).map(Vec::as_slice).unwrap_or_default() {
            match state.get(next).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|n| *n == next).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        stack[from..].iter().map(|s| s.to_string()).collect();
                    cycle.push(next.to_string());
                    return Some(cycle);
                }
                0 => {
                    if let Some(cycle) = visit(next, graph, state, stack) {
                        return Some(cycle);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node, 2);
        None
    }
    let nodes: Vec<&str> = graph.keys().copied().collect();
    for node in nodes {
        if state.get(node).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(cycle) = visit(node, &graph, &mut state, &mut stack) {
                return Some(cycle);
            }
        }
    }
    None
}

#[test]
fn modules_inside_every_crate_form_a_dag() {
    let mut cycles = Vec::new();
    for package in workspace_packages() {
        for (parent, edges) in sibling_edges(&package) {
            if let Some(cycle) = find_cycle(&edges) {
                let scope = if parent.is_empty() {
                    package.name.clone()
                } else {
                    format!("{}::{}", package.name, parent.join("::"))
                };
                cycles.push(format!("{scope}: {}", cycle.join(" -> ")));
            }
        }
    }
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_cycle_finder_finds_a_cycle_and_accepts_a_dag() {
    let edge = |a: &str, b: &str| (a.to_string(), b.to_string());
    let cyclic: BTreeSet<_> = [
        edge("app", "http"),
        edge("http", "metrics"),
        edge("metrics", "app"),
    ]
    .into_iter()
    .collect();
    assert!(find_cycle(&cyclic).is_some());
    let dag: BTreeSet<_> = [
        edge("app", "http"),
        edge("http", "metrics"),
        edge("app", "metrics"),
    ]
    .into_iter()
    .collect();
    assert_eq!(find_cycle(&dag), None);
}

#[test]
fn the_use_parser_reads_nested_groups_and_super() {
    let module: ModPath = vec!["tlsrpt".into(), "recorder".into()];
    let source = "use crate::{app::{self, Run}, http::serve};\nuse super::events::Event;\n// crate::ignored\nlet x = crate::metrics::COUNT;";
    let paths = referenced_paths(&module, false, source);
    let joined: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert!(joined.contains(&"app::self".to_string()), "{joined:?}");
    assert!(joined.contains(&"app::Run".to_string()), "{joined:?}");
    assert!(joined.contains(&"http::serve".to_string()), "{joined:?}");
    assert!(
        joined.contains(&"tlsrpt::events::Event".to_string()),
        "{joined:?}"
    );
    assert!(joined.contains(&"metrics::COUNT".to_string()), "{joined:?}");
    assert!(!joined.iter().any(|p| p.contains("ignored")), "{joined:?}");
}
