//! The crate's import graph, checked: the layer rule written at the top of
//! `src/lib.rs`, and no import cycle between modules.
//!
//! Reads every file under `src/`, takes the module paths its code names
//! (`crate::…`, `super::…`, `self::…` and its own child modules, inside
//! braced `use` groups too; comments are skipped), and resolves each to
//! the module file it lands in.
//! - **Layers.** A module may name modules of its own layer or of a lower
//!   one, never of a higher one. The binary (`src/main.rs` and the modules
//!   it declares itself) sits above them all. Test-only modules (`tests.rs`, `tests/`)
//!   sit outside the layers: they may build values through the config
//!   pipeline, as a user would.
//! - **Cycles.** Between modules, no chain of imports leads back to where
//!   it started. A module naming its own ancestor (a child using its
//!   folder's `mod.rs`, as `super::Proxy`) is not counted: the folder's
//!   root is the room's front door, and that edge is how Rust modules
//!   share a parent's types.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level modules from the highest layer to the lowest. A module may
/// import modules of its own layer or of any layer after it.
const LAYERS: &[&[&str]] = &[
    &["cli", "fuzzing"],
    &["edge"],
    &["config"],
    &["proxy"],
    &["upstream", "store"],
    &["domain", "tls", "metrics"],
    &["util"],
];

fn rank(top: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&top))
}

/// One source file: its module path (`["edge", "http1"]`) and its code
/// without comments.
struct Module {
    path: Vec<String>,
    code: String,
    /// `mod.rs` or `lib.rs`: its `super` is its parent's parent.
    folder_root: bool,
}

fn collect(dir: &Path, prefix: &[String], out: &mut Vec<Module>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for entry in entries {
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        if entry.is_dir() {
            let mut path = prefix.to_vec();
            path.push(name);
            collect(&entry, &path, out);
            continue;
        }
        let Some(stem) = name.strip_suffix(".rs") else {
            continue;
        };
        let folder_root = matches!(stem, "mod" | "lib");
        let mut path = prefix.to_vec();
        if prefix.is_empty() && (stem == "main" || binary_modules().contains(stem)) {
            continue; // the binary and its own modules: above every layer
        }
        if !folder_root {
            path.push(stem.to_owned());
        }
        let text = std::fs::read_to_string(&entry).unwrap();
        out.push(Module {
            path,
            code: strip_comments(&text),
            folder_root,
        });
    }
}

/// The modules `src/main.rs` declares (`mod allocator;`): the binary's
/// own, not the library's.
fn binary_modules() -> BTreeSet<String> {
    let main = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/main.rs");
    let code = strip_comments(&std::fs::read_to_string(main).unwrap());
    code.lines()
        .filter_map(|line| line.trim().strip_prefix("mod ")?.strip_suffix(';'))
        .map(|name| name.trim().to_owned())
        .collect()
}

fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `a::b::c` path in `code` that starts with one of `starts`,
/// braced groups expanded one level (`crate::{a, b::c}`).
fn paths(code: &str, starts: &BTreeSet<String>) -> Vec<Vec<String>> {
    let bytes = code.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !is_ident(bytes[i]) || (i > 0 && (is_ident(bytes[i - 1]) || bytes[i - 1] == b':')) {
            i += 1;
            continue;
        }
        let mut end = i;
        while end < bytes.len() && is_ident(bytes[end]) {
            end += 1;
        }
        let first = &code[i..end];
        if !starts.contains(first) || !code[end..].starts_with("::") {
            i = end;
            continue;
        }
        let (segments, next) = read_path(code, i);
        if code[next..].starts_with("::{") {
            let close = code[next..].find('}').map_or(code.len(), |c| next + c);
            for item in code[next + 3..close].split(',') {
                let mut path = segments.clone();
                path.extend(
                    item.split("::")
                        .map(|s| s.trim().trim_start_matches("self").to_owned())
                        .filter(|s| {
                            !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_')
                        }),
                );
                found.push(path);
            }
            i = close;
        } else {
            found.push(segments);
            i = next;
        }
    }
    found
}

/// The `::`-separated identifiers starting at `at`, and where they end.
fn read_path(code: &str, mut at: usize) -> (Vec<String>, usize) {
    let bytes = code.as_bytes();
    let mut segments = Vec::new();
    loop {
        let start = at;
        while at < bytes.len() && (bytes[at].is_ascii_alphanumeric() || bytes[at] == b'_') {
            at += 1;
        }
        segments.push(code[start..at].to_owned());
        let more = code[at..].starts_with("::")
            && code[at + 2..]
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !more {
            return (segments, at);
        }
        at += 2;
    }
}

/// The longest known module that `path` (absolute) lands in.
fn resolve(path: &[String], known: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|prefix| known.contains(prefix))
}

struct Graph {
    edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
}

fn graph() -> Graph {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = Vec::new();
    collect(&root, &[], &mut modules);
    let known: BTreeSet<Vec<String>> = modules.iter().map(|m| m.path.clone()).collect();
    let mut edges = BTreeMap::new();
    for module in &modules {
        // Where `super` and `self` point, and the module's own children.
        let own = module.path.clone();
        let parent = if module.folder_root || own.is_empty() {
            own.iter()
                .take(own.len().saturating_sub(1))
                .cloned()
                .collect()
        } else {
            own[..own.len() - 1].to_vec()
        };
        let folder = if module.folder_root {
            own.clone()
        } else {
            parent.clone()
        };
        let children: BTreeSet<String> = known
            .iter()
            .filter(|k| k.len() == folder.len() + 1 && k.starts_with(&folder))
            .filter(|_| module.folder_root)
            .map(|k| k[folder.len()].clone())
            .collect();
        let mut starts: BTreeSet<String> = ["crate", "super", "self"].map(String::from).into();
        starts.extend(children.iter().cloned());
        let mut targets = BTreeSet::new();
        for path in paths(&module.code, &starts) {
            let absolute: Vec<String> = match path[0].as_str() {
                "crate" => path[1..].to_vec(),
                "self" => [own.clone(), path[1..].to_vec()].concat(),
                "super" => {
                    let mut base = parent.clone();
                    let mut rest = &path[1..];
                    while rest.first().is_some_and(|s| s == "super") {
                        base.pop();
                        rest = &rest[1..];
                    }
                    [base, rest.to_vec()].concat()
                }
                child => [folder.clone(), vec![child.to_owned()], path[1..].to_vec()].concat(),
            };
            if let Some(target) = resolve(&absolute, &known) {
                // Not itself, and not its own ancestor (see the module doc).
                if target != own && !own.starts_with(&target) {
                    targets.insert(target);
                }
            }
        }
        edges.insert(own, targets);
    }
    Graph { edges }
}

fn name(path: &[String]) -> String {
    if path.is_empty() {
        "crate".into()
    } else {
        path.join("::")
    }
}

#[test]
fn every_module_imports_only_its_own_layer_or_lower_ones() {
    let graph = graph();
    let mut violations = Vec::new();
    for (from, targets) in &graph.edges {
        let Some(from_top) = from.first() else {
            continue; // the crate root re-exports what it makes public
        };
        if from.iter().any(|segment| segment == "tests") {
            continue; // test-only code (see the module doc)
        }
        let from_rank = rank(from_top).unwrap_or_else(|| {
            panic!("src/{from_top} is in no layer: add it to LAYERS here and to the rule in src/lib.rs")
        });
        for to in targets {
            let to_rank = rank(&to[0]).expect("every top-level module has a layer");
            if to_rank < from_rank {
                violations.push(format!("{} imports {}", name(from), name(to)));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports against the layer rule (src/lib.rs):\n  {}",
        violations.join("\n  ")
    );
}

#[test]
fn no_import_cycle_between_modules() {
    let graph = graph();
    // Depth-first search; a back edge is a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &Vec<String>,
        graph: &Graph,
        marks: &mut BTreeMap<Vec<String>, Mark>,
        stack: &mut Vec<Vec<String>>,
        cycles: &mut Vec<String>,
    ) {
        marks.insert(node.clone(), Mark::Open);
        stack.push(node.clone());
        for next in graph.edges.get(node).into_iter().flatten() {
            match marks.get(next) {
                Some(Mark::Open) => {
                    let at = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle: Vec<String> = stack[at..].iter().map(|n| name(n)).collect();
                    cycle.push(name(next));
                    cycles.push(cycle.join(" -> "));
                }
                Some(Mark::Done) => {}
                None => visit(next, graph, marks, stack, cycles),
            }
        }
        stack.pop();
        marks.insert(node.clone(), Mark::Done);
    }
    let mut marks = BTreeMap::new();
    let mut cycles = Vec::new();
    for node in graph.edges.keys() {
        if !marks.contains_key(node) {
            visit(node, &graph, &mut marks, &mut Vec::new(), &mut cycles);
        }
    }
    assert!(
        cycles.is_empty(),
        "import cycles:\n  {}",
        cycles.join("\n  ")
    );
}

#[test]
fn the_checker_sees_imports_in_every_form() {
    let starts: BTreeSet<String> = ["crate", "super", "pool"].map(String::from).into();
    let code = "use crate::{edge::peer::Peer, proxy};\nlet x = super::pool::Error;\nuse pool::X;";
    let found = paths(code, &starts);
    assert_eq!(
        found,
        vec![
            vec!["crate", "edge", "peer", "Peer"],
            vec!["crate", "proxy"],
            vec!["super", "pool", "Error"],
            vec!["pool", "X"],
        ]
        .into_iter()
        .map(|p| p.into_iter().map(String::from).collect::<Vec<_>>())
        .collect::<Vec<_>>()
    );
    assert!(
        graph().edges.len() > 40,
        "the checker found too few modules"
    );
}
