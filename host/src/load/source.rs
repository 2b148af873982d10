//! Where the served code comes from, as configured: a component file, a Spin manifest,
//! or a registry reference. Parsing one does no I/O but for telling a folder from a file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Result;

use super::registry::{self, ComponentReference};
use super::spin::manifest;

/// Where the served code comes from, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppSource {
    /// A component file (`.wasm` or `.cwasm`), served for every path.
    Component(PathBuf),
    /// A Spin manifest (`spin.toml`), its components served on its routes.
    Manifest(PathBuf),
    /// A component in an OCI registry, served for every path.
    Registry(ComponentReference),
}

impl AppSource {
    /// The source `path` names: a manifest for a `.toml` file or a folder (its
    /// `spin.toml`), a component otherwise.
    pub fn from_path(path: &Path) -> Self {
        if manifest::is_manifest_path(path) {
            Self::Manifest(manifest::manifest_file(path))
        } else {
            Self::Component(path.to_path_buf())
        }
    }

    /// The file the source is read from, unless it is a registry reference.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Self::Component(path) | Self::Manifest(path) => Some(path),
            Self::Registry(_) => None,
        }
    }
}

impl FromStr for AppSource {
    type Err = anyhow::Error;

    /// A registry reference if it starts with `oci://`, a path otherwise.
    fn from_str(source: &str) -> Result<Self> {
        if source.starts_with(registry::SCHEME) {
            source.parse().map(Self::Registry)
        } else {
            Ok(Self::from_path(Path::new(source)))
        }
    }
}

impl fmt::Display for AppSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Component(path) | Self::Manifest(path) => path.display().fmt(f),
            Self::Registry(reference) => reference.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_components_manifests_or_references() {
        assert_eq!(
            "app.wasm".parse::<AppSource>().unwrap(),
            AppSource::Component("app.wasm".into())
        );
        assert_eq!(
            "app/spin.toml".parse::<AppSource>().unwrap(),
            AppSource::Manifest("app/spin.toml".into())
        );
        assert!(matches!(
            "oci://ghcr.io/org/hello:v1".parse::<AppSource>().unwrap(),
            AppSource::Registry(_)
        ));
        assert!("oci://nothing".parse::<AppSource>().is_err());
    }
}
