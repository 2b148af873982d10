//! The files a Spin component's `files` entries make visible to it, copied into a
//! private folder the guest sees read-only at `/`. A copy, as Spin makes one: the guest
//! sees exactly what was there when the version was loaded, whatever happens to the
//! originals afterwards, and nothing outside what the manifest names.

use std::path::{Path, PathBuf};
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
        let is_excluded = |source: &Path| {
            source.strip_prefix(manifest_folder).is_ok_and(|relative| {
                excluded
                    .iter()
                    .any(|pattern| pattern.matches_path(relative))
            })
        };
        copies.retain(|(source, _)| !is_excluded(source));
        copies.sort_by(|a, b| a.1.cmp(&b.1));
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

/// `component`'s `exclude_files`, compiled.
fn exclusions(component: &ComponentSpec) -> Result<Vec<glob::Pattern>> {
    component
        .exclude_files
        .iter()
        .map(|pattern| {
            glob::Pattern::new(pattern)
                .with_context(|| format!("component `{}`: exclude_files `{pattern}`", component.id))
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
                if source.is_file() {
                    let relative = source.strip_prefix(manifest_folder).unwrap_or(&source);
                    copies.push((source.clone(), relative.to_path_buf()));
                }
            }
        }
        FileSpec::Mapping {
            source,
            destination,
        } => {
            let target = PathBuf::from(destination.trim_start_matches('/'));
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
}
