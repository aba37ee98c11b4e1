//! The layers' import rules, checked on the source itself.
//!
//! Every file under `src/` belongs to a layer: the folder it is in (`raft`,
//! `storage`, `node`, `kv`, `redis`, `metrics`, `cli`), or `codec` for the one shared
//! module at the top. A layer may only name the layers listed for it in
//! [`ALLOWED`]: the Raft rules depend on nothing, storage only on Raft's
//! types, the node never on the application above it. Every path a file
//! names (`crate::…`, `super::…`, `self::…`, and child modules in a
//! `mod.rs`) is resolved to the file that defines it; the resulting graph of
//! files must have no cycle, so that each file can be read knowing only what
//! it imports. `mod` declarations are not imports. Comments and string
//! literals are ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each layer and the layers it may name (itself always allowed).
const ALLOWED: &[(&str, &[&str])] = &[
    ("codec", &[]),
    ("raft", &[]),
    ("storage", &["raft", "codec"]),
    ("node", &["raft", "storage", "codec"]),
    ("kv", &["node", "raft", "codec"]),
    ("redis", &["kv", "node", "raft", "codec"]),
    (
        "metrics",
        &["redis", "kv", "node", "storage", "raft", "codec"],
    ),
    (
        "cli",
        &["metrics", "redis", "kv", "node", "storage", "raft", "codec"],
    ),
    (
        "lib",
        &[
            "cli", "metrics", "redis", "kv", "node", "storage", "raft", "codec",
        ],
    ),
];

/// A source file, named by its module path (`["raft", "core", "election"]`).
type Module = Vec<String>;

struct Source {
    modules: BTreeMap<Module, PathBuf>,
}

impl Source {
    fn read(src: &Path) -> Source {
        let mut modules = BTreeMap::new();
        collect(src, src, &mut modules);
        Source { modules }
    }

    fn is_module(&self, module: &[String]) -> bool {
        self.modules.contains_key(module)
    }

    /// The deepest module file that `path` (absolute segments) reaches.
    fn resolve(&self, path: &[String]) -> Option<Module> {
        (1..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|m| self.is_module(m))
    }

    /// Every file each file names.
    fn graph(&self) -> BTreeMap<Module, BTreeSet<Module>> {
        let mut graph = BTreeMap::new();
        for (module, file) in &self.modules {
            let text = strip(&std::fs::read_to_string(file).unwrap());
            let mut targets = BTreeSet::new();
            let inline = inline_modules(&text);
            for (at, path) in paths_in(&text) {
                let depth = inline.iter().filter(|r| r.contains(&at)).count();
                if let Some(abs) = self.absolute(module, file, &path, depth) {
                    if let Some(target) = self.resolve(&abs) {
                        if &target != module && !target.is_empty() {
                            targets.insert(target);
                        }
                    }
                }
            }
            graph.insert(module.clone(), targets);
        }
        graph
    }

    /// `path` as named in `module`, `depth` inline modules (`mod tests { … }`)
    /// deep in its file, made absolute from the crate root.
    fn absolute(
        &self,
        module: &Module,
        file: &Path,
        path: &[String],
        depth: usize,
    ) -> Option<Vec<String>> {
        // The module a `mod.rs` or `lib.rs` stands for is its own folder's;
        // `super` of any other file is its parent module.
        let is_dir_module = matches!(
            file.file_name().and_then(|n| n.to_str()),
            Some("mod.rs") | Some("lib.rs")
        );
        let mut base = module.clone();
        let mut rest = path;
        match path.first().map(String::as_str) {
            Some("crate") => {
                base.clear();
                rest = &path[1..];
            }
            Some("self") => rest = &path[1..],
            Some("super") => {
                // The first `super`s leave the inline modules, still in this file.
                let mut inline = depth;
                while rest.first().map(String::as_str) == Some("super") {
                    if inline > 0 {
                        inline -= 1;
                    } else {
                        base.pop()?;
                    }
                    rest = &rest[1..];
                }
            }
            // A child module named directly, as `mod.rs` files may.
            Some(first) if depth == 0 && (is_dir_module || module.is_empty()) => {
                let mut child = module.clone();
                child.push(first.to_string());
                if !self.is_module(&child) {
                    return None;
                }
            }
            _ => return None,
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }
}

fn collect(root: &Path, dir: &Path, modules: &mut BTreeMap<Module, PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(root, &path, modules);
            continue;
        }
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let rel = path.strip_prefix(root).unwrap();
        let mut module: Module = rel
            .with_extension("")
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        if matches!(module.last().map(String::as_str), Some("mod") | Some("lib")) {
            module.pop();
        }
        modules.insert(module, path);
    }
}

/// The source without comments and string literals (kept as empty `""`).
fn strip(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
            }
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    match (escaped, c) {
                        (false, '\\') => escaped = true,
                        (false, '"') => break,
                        _ => escaped = false,
                    }
                }
                out.push_str("\"\"");
            }
            // A char literal such as '"' must not open a string.
            '\'' => {
                out.push(c);
                let lookahead: String = chars.clone().take(3).collect();
                if lookahead.starts_with("\"'") || lookahead.starts_with("\\\"'") {
                    for c in chars.by_ref() {
                        if c == '\'' {
                            break;
                        }
                    }
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Every path a file names, with where it stands: `use` trees expanded, plus
/// `crate::`, `super::` and `self::` paths anywhere in the code.
fn paths_in(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut paths = Vec::new();
    let mut from = 0;
    while let Some(at) = find_use(&text[from..]) {
        let tree_start = from + at + "use ".len();
        let Some(len) = text[tree_start..].find(';') else {
            break;
        };
        let mut expanded = Vec::new();
        expand(
            &text[tree_start..tree_start + len],
            &mut Vec::new(),
            &mut expanded,
        );
        paths.extend(expanded.into_iter().map(|p| (tree_start, p)));
        from = tree_start + len;
    }
    let mut at = 0;
    for word in text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')) {
        if ["crate::", "super::", "self::"]
            .iter()
            .any(|p| word.starts_with(p))
        {
            let path = word
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            paths.push((at, path));
        }
        at += word.len() + 1;
    }
    paths
}

/// The byte ranges of inline module bodies (`mod name { … }`).
fn inline_modules(text: &str) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find("mod ") {
        let at = from + i;
        from = at + 4;
        let before = text[..at].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &text[from..];
        let name_len = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let after = rest[name_len..].trim_start();
        if !after.starts_with('{') {
            continue; // `mod name;`: another file
        }
        let open = from + name_len + (rest[name_len..].len() - after.len());
        let mut depth = 0;
        for (i, c) in text[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        ranges.push(open..open + i);
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    ranges
}

/// The next `use` statement (not `r#use` or part of a word).
fn find_use(text: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = text[from..].find("use ") {
        let at = from + i;
        let before = text[..at].chars().last();
        if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_')) {
            return Some(at);
        }
        from = at + 4;
    }
    None
}

/// Expands a `use` tree such as `a::{b, c::{d, e}}` into its paths.
fn expand(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head: Vec<String> = tree[..open]
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let depth = prefix.len();
        prefix.extend(head);
        for part in split_top_level(inner) {
            expand(part, prefix, out);
        }
        prefix.truncate(depth);
        return;
    }
    let path = tree.split(" as ").next().unwrap_or(tree);
    let mut full = prefix.clone();
    full.extend(
        path.split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty() && *s != "*")
            .map(str::to_string),
    );
    if full.last().map(String::as_str) == Some("self") {
        full.pop();
    }
    out.push(full);
}

fn split_top_level(text: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

fn layer(module: &Module) -> &str {
    module.first().map_or("lib", String::as_str)
}

/// Every cycle in the graph, each as the files around it.
fn cycles(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    fn visit(
        node: &Module,
        graph: &BTreeMap<Module, BTreeSet<Module>>,
        stack: &mut Vec<Module>,
        done: &mut BTreeSet<Module>,
        found: &mut Vec<Vec<Module>>,
    ) {
        if let Some(at) = stack.iter().position(|m| m == node) {
            found.push(stack[at..].to_vec());
            return;
        }
        if done.contains(node) {
            return;
        }
        stack.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, stack, done, found);
        }
        stack.pop();
        done.insert(node.clone());
    }
    let (mut done, mut found) = (BTreeSet::new(), Vec::new());
    for node in graph.keys() {
        visit(node, graph, &mut Vec::new(), &mut done, &mut found);
    }
    found
}

fn show(module: &Module) -> String {
    if module.is_empty() {
        "lib".into()
    } else {
        module.join("/")
    }
}

fn source() -> Source {
    Source::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

#[test]
fn each_layer_names_only_the_layers_below_it() {
    let source = source();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut violations = Vec::new();
    for (from, targets) in source.graph() {
        let from_layer = layer(&from);
        let may = allowed
            .get(from_layer)
            .unwrap_or_else(|| panic!("{} is in no known layer", show(&from)));
        for target in targets {
            let to_layer = layer(&target);
            if to_layer != from_layer && !may.contains(&to_layer) {
                violations.push(format!("{} names {}", show(&from), show(&target)));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn no_two_files_import_each_other_even_indirectly() {
    let found = cycles(&source().graph());
    let shown: Vec<String> = found
        .iter()
        .map(|c| c.iter().map(show).collect::<Vec<_>>().join(" -> "))
        .collect();
    assert!(shown.is_empty(), "import cycles:\n{}", shown.join("\n"));
}

#[test]
fn every_layer_says_what_it_is_for_and_what_it_depends_on() {
    let source = source();
    for (layer, _) in ALLOWED
        .iter()
        .filter(|(l, _)| !["lib", "codec"].contains(l))
    {
        let file = &source.modules[&vec![layer.to_string()]];
        let text = std::fs::read_to_string(file).unwrap();
        let doc: String = text
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            doc.len() > 200,
            "{} has no module doc to speak of",
            file.display()
        );
        assert!(
            doc.contains("Dependencies") || doc.contains("depend"),
            "{}'s module doc does not say what the layer may depend on",
            file.display()
        );
    }
}

// ----- The checker's own tests: it must be able to fail. ------------------

#[test]
fn the_checker_resolves_use_trees_and_paths() {
    let text = strip(
        "use super::{a::{B, c}, d as e};\n// use crate::commented;\n\
         let s = \"crate::in_a_string\"; let c = '\"'; crate::x::y(); use self::z;",
    );
    let paths = paths_in(&text);
    let shown: Vec<String> = paths.iter().map(|(_, p)| p.join("::")).collect();
    for want in [
        "super::a::B",
        "super::a::c",
        "super::d",
        "crate::x::y",
        "self::z",
    ] {
        assert!(shown.contains(&want.to_string()), "{want} in {shown:?}");
    }
    assert!(!shown
        .iter()
        .any(|p| p.contains("commented") || p.contains("in_a_string")));
}

#[test]
fn the_checker_finds_a_cycle_and_a_forbidden_layer() {
    let m = |s: &str| -> Module { s.split('/').map(str::to_string).collect() };
    let mut graph: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    graph.insert(m("node/a"), [m("node/b")].into());
    graph.insert(m("node/b"), [m("node/c")].into());
    graph.insert(m("node/c"), [m("node/a"), m("kv")].into());
    graph.insert(m("kv"), BTreeSet::new());
    let found = cycles(&graph);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].len(), 3);
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    assert!(!allowed["node"].contains(&layer(&m("kv"))));
    // And the real tree resolves paths to files.
    let source = source();
    let election = m("raft/core/election");
    let file = source.modules[&election].clone();
    let path = [String::from("super"), String::from("Role")];
    let abs = source.absolute(&election, &file, &path, 0).unwrap();
    assert_eq!(source.resolve(&abs), Some(m("raft/core")));
    // Inside `mod tests { … }`, the first `super` is the file itself.
    let abs = source.absolute(&election, &file, &path, 1).unwrap();
    assert_eq!(source.resolve(&abs), Some(election.clone()));
    let text = "mod a;\nmod tests {\n    use super::*;\n    mod deeper { fn f() {} }\n}\n";
    let ranges = inline_modules(text);
    assert_eq!(ranges.len(), 2);
    let use_at = text.find("use").unwrap();
    assert_eq!(ranges.iter().filter(|r| r.contains(&use_at)).count(), 1);
}
