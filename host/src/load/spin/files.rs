//! The files a Spin component's `files` entries make visible to it, copied into a
//! private folder the guest sees read-only at `/`. A copy, as Spin makes one: the guest
//! sees exactly what was there when the version was loaded, whatever happens to the
//! originals afterwards, and nothing outside what the manifest names.
//!
//! Every path is normalised before it is used: a source must lie under the manifest's
//! folder and a destination under the staged folder, as plain names with no `..`. A glob
//! part such as `.*` matches the `..` entry of a folder (the `glob` crate lists `.` and
//! `..` for a pattern that starts with a dot), so matches are normalised too, and those
//! that leave the folder are dropped.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use sha2::{Digest, Sha256};

use super::manifest::{ComponentSpec, FileSpec};

/// A component's files, staged. The folder is removed when the last request using this
/// version is done with it.
#[derive(Debug)]
pub struct StagedFiles {
    /// Shared with the instances that see it, which keep it as long as they live.
    folder: Arc<tempfile::TempDir>,
    sha256: String,
}

impl StagedFiles {
    /// Copies what `component`'s `files` name (relative to `manifest_folder`, less its
    /// `exclude_files`) into a new folder; `None` if it names nothing.
    pub fn stage(component: &ComponentSpec, manifest_folder: &Path) -> Result<Option<Self>> {
        if component.files.is_empty() {
            return Ok(None);
        }
        let id = &component.id;
        let excluded = exclusions(component)?;
        let mut copies: Vec<Copy> = Vec::new();
        for entry in &component.files {
            collect_entry(id, entry, manifest_folder, &mut copies)?;
        }
        // Matched against the source's normalised path, so that no spelling of a path
        // (`./a`, `a//b`, `a/./b`) slips past a pattern.
        let is_excluded = |source: &Path| {
            source
                .strip_prefix(manifest_folder)
                .ok()
                .and_then(normalised)
                .is_some_and(|relative| {
                    excluded
                        .iter()
                        .any(|pattern| pattern.matches_path(&relative))
                })
        };
        copies.retain(|(source, _)| !is_excluded(source));
        copies.sort_by(|a, b| a.1.cmp(&b.1));
        copies.dedup_by(|a, b| a.1 == b.1);
        Self::copy(id, &copies).map(Some)
    }

    /// Copies each of `copies` into a new folder, hashing paths and contents.
    fn copy(id: &str, copies: &[Copy]) -> Result<Self> {
        let folder = tempfile::Builder::new()
            .prefix("wasi-host-files-")
            .tempdir()
            .context("cannot create a folder for the component's files")?;
        let mut hasher = Sha256::new();
        for (source, relative) in copies {
            // Every target was normalised when collected; checked again here, where a
            // file is written, so that no later change can write outside the folder.
            ensure!(
                normalised(relative).as_ref() == Some(relative),
                "component `{id}`: `{}` is outside the component's files",
                relative.display()
            );
            let target = folder.path().join(relative);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create `{}`", parent.display()))?;
            }
            let bytes = std::fs::read(source)
                .with_context(|| format!("component `{id}`: cannot read `{}`", source.display()))?;
            std::fs::write(&target, &bytes)
                .with_context(|| format!("cannot write `{}`", target.display()))?;
            hasher.update(relative.to_string_lossy().as_bytes());
            hasher.update([0]);
            hasher.update(Sha256::digest(&bytes));
        }
        Ok(Self {
            folder: Arc::new(folder),
            sha256: format!("{:x}", hasher.finalize()),
        })
    }

    /// The folder the guest sees as `/`.
    pub fn folder(&self) -> Arc<tempfile::TempDir> {
        self.folder.clone()
    }

    /// A digest of the paths and contents, to tell whether anything changed.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
}

/// A file to stage: its source on the host, and its path under the staged folder.
type Copy = (PathBuf, PathBuf);

/// `path` as plain names only (`.` parts and repeated `/` dropped), or `None` if it has
/// a `..`, a root or a prefix: a path that may lead out of the folder it is relative to.
fn normalised(path: &Path) -> Option<PathBuf> {
    let mut plain = PathBuf::new();
    for part in path.components() {
        match part {
            Component::Normal(name) => plain.push(name),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(plain)
}

/// `component`'s `exclude_files`, normalised as the paths they are matched against are.
fn exclusions(component: &ComponentSpec) -> Result<Vec<glob::Pattern>> {
    component
        .exclude_files
        .iter()
        .map(|pattern| {
            let context = || format!("component `{}`: exclude_files `{pattern}`", component.id);
            let plain = normalised(Path::new(pattern)).with_context(|| {
                format!("{}: it must stay inside the manifest's folder", context())
            })?;
            glob::Pattern::new(&plain.to_string_lossy()).with_context(context)
        })
        .collect()
}

/// Adds the files one `files` entry names to `copies`.
fn collect_entry(
    id: &str,
    entry: &FileSpec,
    manifest_folder: &Path,
    copies: &mut Vec<Copy>,
) -> Result<()> {
    match entry {
        FileSpec::Pattern(pattern) => {
            let full = manifest_folder.join(pattern);
            let full = full.to_str().with_context(|| {
                format!("component `{id}`: files entry `{pattern}` is not UTF-8")
            })?;
            let matches = glob::glob(full).with_context(|| {
                format!("component `{id}`: files entry `{pattern}` is not a glob pattern")
            })?;
            for source in matches {
                let source = source.with_context(|| {
                    format!("component `{id}`: cannot read files for `{pattern}`")
                })?;
                // A match through `..` (which `.*` matches) is outside the folder.
                let relative = source
                    .strip_prefix(manifest_folder)
                    .ok()
                    .and_then(normalised);
                if let Some(relative) = relative.filter(|_| source.is_file()) {
                    copies.push((source.clone(), relative));
                }
            }
        }
        FileSpec::Mapping {
            source,
            destination,
        } => {
            let target =
                normalised(Path::new(destination.trim_start_matches('/'))).with_context(|| {
                    format!(
                        "component `{id}`: files destination `{destination}` leads out of the \
                         guest's `/`"
                    )
                })?;
            ensure!(
                source.exists(),
                "component `{id}`: files source `{}` does not exist",
                source.display()
            );
            collect_tree(source, &target, copies)
                .with_context(|| format!("component `{id}`: cannot read `{}`", source.display()))?;
        }
    }
    Ok(())
}

/// Adds `source` (a file, or a folder and everything under it) to `copies`, at `target`.
fn collect_tree(source: &Path, target: &Path, copies: &mut Vec<Copy>) -> Result<()> {
    if source.is_file() {
        copies.push((source.to_path_buf(), target.to_path_buf()));
        return Ok(());
    }
    for entry in std::fs::read_dir(source)? {
        let entry = entry?;
        collect_tree(&entry.path(), &target.join(entry.file_name()), copies)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(files: Vec<FileSpec>, exclude_files: &[&str]) -> ComponentSpec {
        ComponentSpec {
            id: "c".into(),
            source: "c.wasm".into(),
            allowed_outbound: Vec::new(),
            environment: Vec::new(),
            variables: Default::default(),
            files,
            exclude_files: exclude_files.iter().map(|p| p.to_string()).collect(),
            key_value_stores: Vec::new(),
        }
    }

    #[test]
    fn patterns_keep_their_paths_and_mappings_move_to_their_destination() {
        let app = tempfile::tempdir().unwrap();
        let write = |path: &str, text: &str| {
            let path = app.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write("static/a.txt", "a");
        write("static/secret.txt", "s");
        write("static/b.html", "b");
        write("assets/img/c.png", "c");
        let spec = component(
            vec![
                FileSpec::Pattern("static/*.txt".into()),
                FileSpec::Mapping {
                    source: app.path().join("assets"),
                    destination: "/pictures".into(),
                },
            ],
            &["static/secret.txt"],
        );
        let staged = StagedFiles::stage(&spec, app.path()).unwrap().unwrap();
        let read = |path: &str| std::fs::read_to_string(staged.folder().path().join(path)).ok();
        assert_eq!(read("static/a.txt").as_deref(), Some("a"));
        assert_eq!(read("pictures/img/c.png").as_deref(), Some("c"));
        assert_eq!(read("static/secret.txt"), None, "excluded");
        assert_eq!(read("static/b.html"), None, "not matched");

        let again = StagedFiles::stage(&spec, app.path()).unwrap().unwrap();
        assert_eq!(again.sha256(), staged.sha256());
        write("static/a.txt", "changed");
        let changed = StagedFiles::stage(&spec, app.path()).unwrap().unwrap();
        assert_ne!(changed.sha256(), staged.sha256());
    }

    #[test]
    fn no_files_stage_nothing_and_a_missing_source_is_named() {
        let app = tempfile::tempdir().unwrap();
        assert!(
            StagedFiles::stage(&component(Vec::new(), &[]), app.path())
                .unwrap()
                .is_none()
        );
        let missing = component(
            vec![FileSpec::Mapping {
                source: app.path().join("nowhere"),
                destination: "/x".into(),
            }],
            &[],
        );
        let error = StagedFiles::stage(&missing, app.path()).unwrap_err();
        assert!(format!("{error:#}").contains("nowhere"), "{error:#}");
    }

    /// An application folder inside a parent that holds a file the application must
    /// never see.
    fn nested_app() -> (tempfile::TempDir, PathBuf) {
        let parent = tempfile::tempdir().unwrap();
        std::fs::write(parent.path().join("outside.txt"), "private").unwrap();
        let app = parent.path().join("app");
        std::fs::create_dir_all(app.join("static")).unwrap();
        std::fs::write(app.join("static/a.txt"), "a").unwrap();
        std::fs::write(app.join("static/secret.txt"), "s").unwrap();
        std::fs::write(app.join(".hidden"), "h").unwrap();
        (parent, app)
    }

    /// Every file under `folder`, relative to it.
    fn staged_paths(folder: &Path) -> Vec<String> {
        let mut paths = Vec::new();
        let mut copies = Vec::new();
        collect_tree(folder, Path::new(""), &mut copies).unwrap();
        for (_, relative) in copies {
            paths.push(relative.to_string_lossy().into_owned());
        }
        paths.sort();
        paths
    }

    #[test]
    fn a_dot_glob_never_matches_the_parent_folder() {
        let (parent, app) = nested_app();
        let spec = component(
            vec![
                FileSpec::Pattern(".*/outside.txt".into()),
                FileSpec::Pattern(".*".into()),
            ],
            &[],
        );
        let staged = StagedFiles::stage(&spec, &app).unwrap().unwrap();
        assert_eq!(staged_paths(staged.folder().path()), [".hidden"]);
        // Nothing was written beside the staged folder either.
        let beside = staged.folder().path().parent().unwrap().join("outside.txt");
        assert!(!beside.exists(), "{}", beside.display());
        drop(parent);
    }

    #[test]
    fn a_destination_that_climbs_out_is_refused() {
        let (_parent, app) = nested_app();
        for destination in ["/../../x", "/a/../../x", "/.."] {
            let spec = component(
                vec![FileSpec::Mapping {
                    source: app.join("static/a.txt"),
                    destination: destination.into(),
                }],
                &[],
            );
            let error = StagedFiles::stage(&spec, &app).unwrap_err();
            assert!(
                format!("{error:#}").contains("leads out of the guest's `/`"),
                "{destination}: {error:#}"
            );
        }
        let inside = component(
            vec![FileSpec::Mapping {
                source: app.join("static/a.txt"),
                destination: "/etc/./a.txt".into(),
            }],
            &[],
        );
        let staged = StagedFiles::stage(&inside, &app).unwrap().unwrap();
        assert_eq!(staged_paths(staged.folder().path()), ["etc/a.txt"]);
    }

    #[test]
    fn exclusions_hold_however_a_path_is_spelled() {
        let (_parent, app) = nested_app();
        for pattern in [
            "./static/secret.txt",
            "static//secret.txt",
            "static/./secret.txt",
            "./static/*",
            ".*/app/static/secret.txt",
        ] {
            for exclusion in ["static/secret.txt", "./static/secret.txt"] {
                let spec = component(vec![FileSpec::Pattern(pattern.into())], &[exclusion]);
                let staged = StagedFiles::stage(&spec, &app).unwrap();
                let paths = staged.map_or_else(Vec::new, |s| staged_paths(s.folder().path()));
                assert!(
                    !paths.contains(&"static/secret.txt".to_owned()),
                    "{pattern} excluding {exclusion}: {paths:?}"
                );
            }
        }
        let climbing = component(vec![FileSpec::Pattern("static/*".into())], &["../x"]);
        assert!(StagedFiles::stage(&climbing, &app).is_err());
    }
}
