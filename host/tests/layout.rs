//! The shape of `host/src`: imports run one way, from a folder to the folders listed
//! after it in `lib.rs`'s module docs, and no two files import each other, directly or
//! around a loop. Some folders also keep away from what is not their job: `config`
//! does no I/O, `load` runs no server.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// A module, as the path of names from the crate root (`["load", "registry"]`).
type ModulePath = Vec<String>;

/// What a folder's files must not mention, and why; `environment.rs` is where
/// configuration reads the process's environment, so it is the one exception there.
const FORBIDDEN: &[(&str, &[&str], &str)] = &[
    (
        "config",
        &["std::env", "std::fs", "tokio::", "std::thread"],
        "configuration is checked without I/O; read the outside world through HostEnv",
    ),
    (
        "load",
        &["hyper::server", "hyper_util::server", "service_fn"],
        "loading serves nothing",
    ),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every source file and the module it is.
fn modules() -> BTreeMap<ModulePath, PathBuf> {
    let mut found = BTreeMap::new();
    let mut folders = vec![src()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("src is readable") {
            let path = entry.expect("src is readable").path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                found.insert(module_of(&path), path);
            }
        }
    }
    found
}

fn module_of(file: &Path) -> ModulePath {
    let relative = file.strip_prefix(src()).expect("under src");
    let mut names: ModulePath = relative
        .with_extension("")
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    if matches!(
        names.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        names.pop();
    }
    names
}

/// Collects every `crate::`, `super::` and `self::` path a file uses, resolved from
/// the crate root.
struct Imports {
    /// The module the visitor is in: the file's, deeper in an inline `mod`.
    scope: ModulePath,
    found: BTreeSet<ModulePath>,
}

impl Imports {
    fn resolve(&mut self, segments: &[String]) {
        let mut resolved = match segments.first().map(String::as_str) {
            Some("crate") => Vec::new(),
            Some("super" | "self") => self.scope.clone(),
            _ => return,
        };
        let mut rest = segments;
        if rest[0] == "crate" {
            rest = &rest[1..];
        } else {
            while let Some(first) = rest.first() {
                match first.as_str() {
                    "super" => {
                        resolved.pop();
                    }
                    "self" => {}
                    _ => break,
                }
                rest = &rest[1..];
            }
        }
        resolved.extend(rest.iter().cloned());
        self.found.insert(resolved);
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(path) => {
                prefix.push(path.ident.to_string());
                self.use_tree(prefix, &path.tree);
                prefix.pop();
            }
            syn::UseTree::Name(name) => {
                prefix.push(name.ident.to_string());
                self.resolve(prefix);
                prefix.pop();
            }
            syn::UseTree::Rename(rename) => {
                prefix.push(rename.ident.to_string());
                self.resolve(prefix);
                prefix.pop();
            }
            syn::UseTree::Glob(_) => self.resolve(prefix),
            syn::UseTree::Group(group) => {
                for tree in &group.items {
                    self.use_tree(prefix, tree);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for Imports {
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &item.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        self.resolve(&segments);
        syn::visit::visit_path(self, path);
    }

    // `pub(super)` names a module but imports nothing.
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}

    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        self.scope.push(item.ident.to_string());
        syn::visit::visit_item_mod(self, item);
        self.scope.pop();
    }
}

/// The modules `file` imports from, each cut to the longest prefix that is a file.
fn imports(
    file: &Path,
    module: &ModulePath,
    known: &BTreeMap<ModulePath, PathBuf>,
) -> BTreeSet<ModulePath> {
    let text = std::fs::read_to_string(file).expect("readable source");
    let syntax =
        syn::parse_file(&text).unwrap_or_else(|error| panic!("{}: {error}", file.display()));
    let mut visitor = Imports {
        scope: module.clone(),
        found: BTreeSet::new(),
    };
    visitor.visit_file(&syntax);
    visitor
        .found
        .into_iter()
        .filter_map(|mut path| {
            while !known.contains_key(&path) {
                path.pop()?;
            }
            Some(path)
        })
        .filter(|target| target != module && !target.is_empty())
        .collect()
}

fn graph() -> BTreeMap<ModulePath, BTreeSet<ModulePath>> {
    let known = modules();
    known
        .iter()
        .map(|(module, file)| (module.clone(), imports(file, module, &known)))
        .collect()
}

/// The top-level folders, lowest first, as `lib.rs` lists them (highest first).
fn ranks() -> Vec<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("lib.rs");
    let mut names: Vec<String> = lib
        .lines()
        .filter_map(|line| line.strip_prefix("//! - `")?.split_once('`'))
        .map(|(name, _)| name.to_owned())
        .collect();
    names.reverse();
    names
}

fn shown(module: &ModulePath) -> String {
    if module.is_empty() {
        "crate".to_owned()
    } else {
        module.join("::")
    }
}

#[test]
fn imports_run_down_the_request_path() {
    let ranks = ranks();
    assert!(ranks.len() >= 5, "lib.rs lists the folders: {ranks:?}");
    let rank = |module: &ModulePath| {
        module
            .first()
            .and_then(|top| ranks.iter().position(|r| r == top))
    };
    let mut wrong = Vec::new();
    for (module, targets) in graph() {
        if module.is_empty() {
            continue;
        }
        let from = rank(&module)
            .unwrap_or_else(|| panic!("`{}` is in no folder lib.rs lists", shown(&module)));
        for target in targets {
            let to = rank(&target)
                .unwrap_or_else(|| panic!("`{}` is in no folder lib.rs lists", shown(&target)));
            if to > from {
                wrong.push(format!("{} imports {}", shown(&module), shown(&target)));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layering of lib.rs:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_two_files_import_each_other() {
    let graph = graph();
    // Depth-first search; a module on the current path that is reached again closes a loop.
    fn visit(
        module: &ModulePath,
        graph: &BTreeMap<ModulePath, BTreeSet<ModulePath>>,
        path: &mut Vec<ModulePath>,
        done: &mut BTreeSet<ModulePath>,
    ) -> Option<Vec<ModulePath>> {
        if let Some(start) = path.iter().position(|seen| seen == module) {
            let mut cycle = path[start..].to_vec();
            cycle.push(module.clone());
            return Some(cycle);
        }
        if !done.insert(module.clone()) {
            return None;
        }
        path.push(module.clone());
        for target in graph.get(module).into_iter().flatten() {
            if let Some(cycle) = visit(target, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if let Some(cycle) = visit(module, &graph, &mut Vec::new(), &mut done) {
            let cycle: Vec<String> = cycle.iter().map(shown).collect();
            panic!("files import each other: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn folders_keep_to_their_job() {
    let mut wrong = Vec::new();
    for (module, file) in modules() {
        let text = std::fs::read_to_string(&file).expect("readable source");
        for (folder, forbidden, why) in FORBIDDEN {
            let exempt = file
                .file_name()
                .is_some_and(|name| name == "environment.rs");
            if module.first().map(String::as_str) != Some(*folder) || exempt {
                continue;
            }
            for needle in *forbidden {
                if text.contains(needle) {
                    wrong.push(format!("{} mentions `{needle}`: {why}", shown(&module)));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The checks themselves: a file that imports upwards, and two that import each other,
/// are found.
#[test]
fn the_checks_find_what_they_look_for() {
    let module: ModulePath = vec!["load".into(), "app".into()];
    let mut visitor = Imports {
        scope: module.clone(),
        found: BTreeSet::new(),
    };
    let syntax: syn::File = syn::parse_str(
        "use crate::serve::serve; use super::spin::{files::StagedFiles, routes};\n\
         pub(super) fn f() { crate::swap::active::x(); }\n\
         mod tests { use super::*; }",
    )
    .unwrap();
    visitor.visit_file(&syntax);
    let found: Vec<String> = visitor.found.iter().map(shown).collect();
    assert!(
        !found.contains(&"load".to_owned()),
        "a visibility is no import: {found:?}"
    );
    for expected in [
        "serve::serve",
        "load::spin::files::StagedFiles",
        "load::spin::routes",
        "swap::active::x",
        "load::app",
    ] {
        assert!(
            found.contains(&expected.to_owned()),
            "{expected} in {found:?}"
        );
    }
}
